//! The switch-facing contract on topic `call-events` (JSON, key = call_id):
//! parsing raw bytes into a typed [`SwitchEvent`] with an error that names the
//! field, so the assembler can dead-letter it with a precise reason.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Milestone carried by one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Setup,
    Progress,
    Answer,
    Hangup,
    /// One self-contained record from switches that only emit at call end.
    Cdr,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::Progress => "progress",
            Self::Answer => "answer",
            Self::Hangup => "hangup",
            Self::Cdr => "cdr",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "setup" => Self::Setup,
            "progress" => Self::Progress,
            "answer" => Self::Answer,
            "hangup" => Self::Hangup,
            "cdr" => Self::Cdr,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Outbound,
    Inbound,
}

/// Media statistics a switch may attach to a hangup (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaStats {
    pub rtp_rx_packets: Option<i64>,
    pub rtp_rx_before_answer: Option<i64>,
    pub silence_ratio: Option<f64>,
    pub mos: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
}

/// Loose shape of the JSON: every field optional so that a missing field is
/// reported by name instead of as a generic serde error.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RawEvent {
    pub event_id: Option<String>,
    pub call_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub ts: Option<String>,
    pub switch_id: Option<String>,
    pub account_id: Option<String>,
    pub direction: Option<String>,
    pub cli: Option<String>,
    pub dialed: Option<String>,
    pub trunk_id: Option<String>,
    pub sip_code: Option<i64>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub source_ip: Option<String>,
    pub behind_nat: Option<bool>,
    pub media: Option<MediaStats>,
    pub codec: Option<String>,
    pub setup_ts: Option<String>,
    pub progress_ts: Option<String>,
    pub answer_ts: Option<String>,
    pub end_ts: Option<String>,
}

/// A validated switch event. Timestamps are UTC milliseconds since the epoch.
/// Serialisable so the assembler can checkpoint the events of a long call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchEvent {
    pub event_id: String,
    pub call_id: String,
    pub kind: EventKind,
    pub ts_ms: i64,
    pub switch_id: String,
    pub account_id: String,
    pub direction: Direction,
    pub cli: Option<String>,
    pub dialed: Option<String>,
    pub trunk_id: Option<String>,
    pub sip_code: Option<i32>,
    pub headers: BTreeMap<String, String>,
    pub source_ip: Option<String>,
    pub behind_nat: Option<bool>,
    pub media: Option<MediaStats>,
    pub codec: Option<String>,
    /// Only for `cdr` events.
    pub setup_ts_ms: Option<i64>,
    pub progress_ts_ms: Option<i64>,
    pub answer_ts_ms: Option<i64>,
    pub end_ts_ms: Option<i64>,
}

/// Why an event was refused. `reason()` is the stable label used in the DLQ
/// envelope and in the per-reason dead-letter counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("malformed JSON: {0}")]
    BadJson(String),
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("field `{field}` is not an RFC 3339 UTC timestamp: `{value}`")]
    BadTimestamp { field: &'static str, value: String },
    #[error("field `{field}` has an invalid value: {message}")]
    BadValue {
        field: &'static str,
        message: String,
    },
    #[error(
        "answer at {answer_ms} ms is before setup at {setup_ms} ms by more than the skew tolerance"
    )]
    AnswerBeforeSetup { setup_ms: i64, answer_ms: i64 },
    #[error("negative duration: end {end_ms} ms is before answer {answer_ms} ms")]
    NegativeDuration { answer_ms: i64, end_ms: i64 },
    #[error("event for call already closed more than the retention ago or after close: {0}")]
    EventAfterClose(String),
    /// A timestamp too far from the time the record entered the log: a
    /// switch clock that is wrong, not a call that happened then.
    #[error("field `{field}` = {ts_ms} ms is {delta_ms} ms from the record's log time {log_ms} ms (allowed: {min_ms}..={max_ms})")]
    ClockOutOfRange {
        field: &'static str,
        ts_ms: i64,
        log_ms: i64,
        delta_ms: i64,
        min_ms: i64,
        max_ms: i64,
    },
    #[error("call already holds {limit} events; further events are refused")]
    TooManyEvents { limit: usize },
    #[error("{count} headers exceed the limit of {limit}")]
    TooManyHeaders { count: usize, limit: usize },
}

impl EventError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::MissingField(_) => "missing_field",
            Self::UnknownType(_) => "unknown_type",
            Self::BadTimestamp { .. } => "bad_timestamp",
            Self::BadValue { .. } => "bad_value",
            Self::AnswerBeforeSetup { .. } => "answer_before_setup",
            Self::NegativeDuration { .. } => "negative_duration",
            Self::EventAfterClose(_) => "event_after_close",
            Self::ClockOutOfRange { .. } => "clock_out_of_range",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::TooManyHeaders { .. } => "too_many_headers",
        }
    }

    /// The field the error is about, for the DLQ envelope.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::MissingField(f) => Some(f),
            Self::UnknownType(_) => Some("type"),
            Self::BadTimestamp { field, .. } | Self::BadValue { field, .. } => Some(field),
            Self::AnswerBeforeSetup { .. } => Some("answer_ts"),
            Self::NegativeDuration { .. } => Some("end_ts"),
            Self::ClockOutOfRange { field, .. } => Some(field),
            Self::TooManyHeaders { .. } => Some("headers"),
            _ => None,
        }
    }
}

/// SIP headers one event may carry, and the longest name or value: a switch
/// forwards a handful; thousands would only bloat the call downstream.
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 1024;

impl SwitchEvent {
    /// Every timestamp the event carries, with its field name.
    pub fn timestamps(&self) -> impl Iterator<Item = (&'static str, i64)> + '_ {
        [
            ("ts", Some(self.ts_ms)),
            ("setup_ts", self.setup_ts_ms),
            ("progress_ts", self.progress_ts_ms),
            ("answer_ts", self.answer_ts_ms),
            ("end_ts", self.end_ts_ms),
        ]
        .into_iter()
        .filter_map(|(f, t)| t.map(|t| (f, t)))
    }

    /// Refuses the event when any of its timestamps lies more than
    /// `max_behind_ms` before or `max_ahead_ms` after `log_ms`, the time the
    /// record entered the log (its Kafka timestamp).
    pub fn check_clock(
        &self,
        log_ms: i64,
        max_behind_ms: i64,
        max_ahead_ms: i64,
    ) -> Result<(), EventError> {
        for (field, ts) in self.timestamps() {
            let delta = ts - log_ms;
            if delta < -max_behind_ms || delta > max_ahead_ms {
                return Err(EventError::ClockOutOfRange {
                    field,
                    ts_ms: ts,
                    log_ms,
                    delta_ms: delta,
                    min_ms: -max_behind_ms,
                    max_ms: max_ahead_ms,
                });
            }
        }
        Ok(())
    }
}

/// Earliest and latest timestamps accepted: anything outside is a clock bug.
const MIN_TS_MS: i64 = 946_684_800_000; // 2000-01-01
const MAX_TS_MS: i64 = 4_102_444_800_000; // 2100-01-01

pub fn parse_ts(field: &'static str, s: &str) -> Result<i64, EventError> {
    let bad = || EventError::BadTimestamp {
        field,
        value: s.chars().take(64).collect(),
    };
    let dt = DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
    let ms = dt.with_timezone(&Utc).timestamp_millis();
    if !(MIN_TS_MS..MAX_TS_MS).contains(&ms) {
        return Err(bad());
    }
    Ok(ms)
}

/// Formats epoch milliseconds as the contract's RFC 3339 form (`...sssZ`).
pub fn format_ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn required(v: Option<String>, field: &'static str) -> Result<String, EventError> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(EventError::MissingField(field)),
    }
}

fn opt_ts(field: &'static str, v: &Option<String>) -> Result<Option<i64>, EventError> {
    v.as_deref().map(|s| parse_ts(field, s)).transpose()
}

impl SwitchEvent {
    /// The `call-events` wire form of this event: what
    /// [`SwitchEvent::from_json`] reads back into an equal event (adapters
    /// produce it for switches that do not speak the contract themselves).
    pub fn to_raw(&self) -> RawEvent {
        let ts = |v: Option<i64>| v.map(format_ts);
        RawEvent {
            event_id: Some(self.event_id.clone()),
            call_id: Some(self.call_id.clone()),
            kind: Some(self.kind.as_str().to_string()),
            ts: Some(format_ts(self.ts_ms)),
            switch_id: Some(self.switch_id.clone()),
            account_id: Some(self.account_id.clone()),
            direction: Some(
                match self.direction {
                    Direction::Outbound => "outbound",
                    Direction::Inbound => "inbound",
                }
                .to_string(),
            ),
            cli: self.cli.clone(),
            dialed: self.dialed.clone(),
            trunk_id: self.trunk_id.clone(),
            sip_code: self.sip_code.map(i64::from),
            headers: self.headers.clone(),
            source_ip: self.source_ip.clone(),
            behind_nat: self.behind_nat,
            media: self.media.clone(),
            codec: self.codec.clone(),
            setup_ts: ts(self.setup_ts_ms),
            progress_ts: ts(self.progress_ts_ms),
            answer_ts: ts(self.answer_ts_ms),
            end_ts: ts(self.end_ts_ms),
        }
    }

    /// [`Self::to_raw`] as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_raw()).unwrap_or_default()
    }
}

impl SwitchEvent {
    /// Parses and validates one message value from `call-events`.
    /// `skew_ms` is the clock-skew tolerance applied to self-contained `cdr`
    /// records (answer may precede setup by at most this much).
    pub fn from_json(bytes: &[u8], skew_ms: i64) -> Result<Self, EventError> {
        let raw: RawEvent =
            serde_json::from_slice(bytes).map_err(|e| EventError::BadJson(e.to_string()))?;
        Self::from_raw(raw, skew_ms)
    }

    pub fn from_raw(raw: RawEvent, skew_ms: i64) -> Result<Self, EventError> {
        let call_id = required(raw.call_id, "call_id")?;
        let event_id = required(raw.event_id, "event_id")?;
        let kind_s = required(raw.kind, "type")?;
        let kind = EventKind::parse(&kind_s)
            .ok_or(EventError::UnknownType(kind_s.chars().take(32).collect()))?;
        let switch_id = required(raw.switch_id, "switch_id")?;
        let account_id = required(raw.account_id, "account_id")?;
        let ts_ms = parse_ts("ts", &required(raw.ts, "ts")?)?;
        let direction = match raw.direction.as_deref() {
            None | Some("outbound") => Direction::Outbound,
            Some("inbound") => Direction::Inbound,
            Some(other) => {
                return Err(EventError::BadValue {
                    field: "direction",
                    message: format!("`{other}` is not outbound|inbound"),
                })
            }
        };
        let sip_code = match raw.sip_code {
            None => None,
            Some(c) if (100..700).contains(&c) => Some(c as i32),
            Some(c) => {
                return Err(EventError::BadValue {
                    field: "sip_code",
                    message: format!("{c} is not a SIP status code"),
                })
            }
        };
        if raw.headers.len() > MAX_HEADERS {
            return Err(EventError::TooManyHeaders {
                count: raw.headers.len(),
                limit: MAX_HEADERS,
            });
        }
        if let Some((k, _)) = raw
            .headers
            .iter()
            .find(|(k, v)| k.len() > MAX_HEADER_BYTES || v.len() > MAX_HEADER_BYTES)
        {
            return Err(EventError::BadValue {
                field: "headers",
                message: format!(
                    "header `{}` is longer than {MAX_HEADER_BYTES} bytes",
                    k.chars().take(64).collect::<String>()
                ),
            });
        }
        if kind == EventKind::Setup && raw.dialed.as_deref().is_none_or(|d| d.trim().is_empty()) {
            return Err(EventError::MissingField("dialed"));
        }
        let setup_ts_ms = opt_ts("setup_ts", &raw.setup_ts)?;
        let progress_ts_ms = opt_ts("progress_ts", &raw.progress_ts)?;
        let answer_ts_ms = opt_ts("answer_ts", &raw.answer_ts)?;
        let end_ts_ms = opt_ts("end_ts", &raw.end_ts)?;
        if kind == EventKind::Cdr {
            let setup = setup_ts_ms.ok_or(EventError::MissingField("setup_ts"))?;
            let end = end_ts_ms.ok_or(EventError::MissingField("end_ts"))?;
            if raw.dialed.as_deref().is_none_or(|d| d.trim().is_empty()) {
                return Err(EventError::MissingField("dialed"));
            }
            if let Some(a) = answer_ts_ms {
                if a + skew_ms < setup {
                    return Err(EventError::AnswerBeforeSetup {
                        setup_ms: setup,
                        answer_ms: a,
                    });
                }
                if end < a {
                    return Err(EventError::NegativeDuration {
                        answer_ms: a,
                        end_ms: end,
                    });
                }
            }
            if end + skew_ms < setup {
                return Err(EventError::NegativeDuration {
                    answer_ms: setup,
                    end_ms: end,
                });
            }
        }
        Ok(SwitchEvent {
            event_id,
            call_id,
            kind,
            ts_ms,
            switch_id,
            account_id,
            direction,
            cli: raw.cli,
            dialed: raw.dialed,
            trunk_id: raw.trunk_id,
            sip_code,
            headers: raw.headers,
            source_ip: raw.source_ip,
            behind_nat: raw.behind_nat,
            media: raw.media,
            codec: raw.codec,
            setup_ts_ms,
            progress_ts_ms,
            answer_ts_ms,
            end_ts_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> Result<SwitchEvent, EventError> {
        SwitchEvent::from_json(json.as_bytes(), 2000)
    }

    #[test]
    fn parses_setup() {
        let e = ev(r#"{"event_id":"e1","call_id":"c1","type":"setup","ts":"2026-11-21T10:00:00.123Z","switch_id":"sw1","account_id":"acc1","cli":"+12125550100","dialed":"*3144207946000"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Setup);
        assert_eq!(e.ts_ms % 1000, 123);
        assert_eq!(e.dialed.as_deref(), Some("*3144207946000"));
    }

    #[test]
    fn names_the_failing_field() {
        assert_eq!(ev("{not json").unwrap_err().reason(), "bad_json");
        let e = ev(r#"{"event_id":"e1","type":"setup","ts":"2026-11-21T10:00:00.000Z","switch_id":"s","account_id":"a","dialed":"1"}"#).unwrap_err();
        assert_eq!(e, EventError::MissingField("call_id"));
        let e = ev(r#"{"event_id":"e1","call_id":"c","type":"ring","ts":"2026-11-21T10:00:00.000Z","switch_id":"s","account_id":"a"}"#).unwrap_err();
        assert_eq!(e.reason(), "unknown_type");
        let e = ev(r#"{"event_id":"e1","call_id":"c","type":"answer","ts":"yesterday","switch_id":"s","account_id":"a"}"#).unwrap_err();
        assert_eq!(e.field(), Some("ts"));
        assert_eq!(e.reason(), "bad_timestamp");
    }

    #[test]
    fn wire_form_reads_back_equal() {
        let base = r#""event_id":"e1","call_id":"c","type":"cdr","ts":"2026-11-21T10:00:10.000Z","switch_id":"s","account_id":"a","dialed":"4420","direction":"inbound","sip_code":486,"cli":"+12125550100","headers":{"X-A":"1"},"codec":"PCMA","#;
        let json = format!("{{{base}\"setup_ts\":\"2026-11-21T10:00:00.000Z\",\"answer_ts\":\"2026-11-21T10:00:05.250Z\",\"end_ts\":\"2026-11-21T10:00:09.000Z\"}}");
        let e = ev(&json).unwrap();
        let back = SwitchEvent::from_json(&e.to_json(), 2000).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.answer_ts_ms.unwrap() % 1000, 250);
    }

    #[test]
    fn cdr_record_checks_ordering() {
        let base = r#""event_id":"e1","call_id":"c","type":"cdr","ts":"2026-11-21T10:00:10.000Z","switch_id":"s","account_id":"a","dialed":"4420","#;
        let bad = format!("{{{base}\"setup_ts\":\"2026-11-21T10:00:00.000Z\",\"answer_ts\":\"2026-11-21T09:59:00.000Z\",\"end_ts\":\"2026-11-21T10:00:10.000Z\"}}");
        assert_eq!(ev(&bad).unwrap_err().reason(), "answer_before_setup");
        let neg = format!("{{{base}\"setup_ts\":\"2026-11-21T10:00:00.000Z\",\"answer_ts\":\"2026-11-21T10:00:05.000Z\",\"end_ts\":\"2026-11-21T10:00:01.000Z\"}}");
        assert_eq!(ev(&neg).unwrap_err().reason(), "negative_duration");
        let ok = format!("{{{base}\"setup_ts\":\"2026-11-21T10:00:00.000Z\",\"answer_ts\":\"2026-11-21T10:00:05.000Z\",\"end_ts\":\"2026-11-21T10:00:09.000Z\"}}");
        assert!(ev(&ok).is_ok());
    }

    #[test]
    fn clock_check_names_the_field_out_of_range() {
        let base = r#""event_id":"e1","call_id":"c","type":"cdr","ts":"2026-11-21T10:00:10.000Z","switch_id":"s","account_id":"a","dialed":"4420","#;
        let e = ev(&format!("{{{base}\"setup_ts\":\"2026-11-21T10:00:00.000Z\",\"end_ts\":\"2099-11-21T10:00:09.000Z\"}}"));
        // end_ts is after ts: the record is valid JSON, only its clock is wrong.
        let e = e.unwrap();
        let log = parse_ts("t", "2026-11-21T10:00:11.000Z").unwrap();
        let err = e.check_clock(log, 7 * 86_400_000, 900_000).unwrap_err();
        assert_eq!(err.reason(), "clock_out_of_range");
        assert_eq!(err.field(), Some("end_ts"));
        let ok = ev(&format!("{{{base}\"setup_ts\":\"2026-11-21T10:00:00.000Z\",\"end_ts\":\"2026-11-21T10:00:09.000Z\"}}")).unwrap();
        assert!(ok.check_clock(log, 7 * 86_400_000, 900_000).is_ok());
        assert_eq!(
            ok.check_clock(log + 8 * 86_400_000, 7 * 86_400_000, 900_000)
                .unwrap_err()
                .field(),
            Some("ts")
        );
    }

    #[test]
    fn header_floods_are_refused() {
        let mut h = String::new();
        for i in 0..65 {
            h.push_str(&format!("\"X-{i}\":\"v\","));
        }
        h.pop();
        let e = ev(&format!(r#"{{"event_id":"e1","call_id":"c","type":"hangup","ts":"2026-11-21T10:00:00.000Z","switch_id":"s","account_id":"a","headers":{{{h}}}}}"#)).unwrap_err();
        assert_eq!(e.reason(), "too_many_headers");
        let long = "x".repeat(2000);
        let e = ev(&format!(r#"{{"event_id":"e1","call_id":"c","type":"hangup","ts":"2026-11-21T10:00:00.000Z","switch_id":"s","account_id":"a","headers":{{"X-A":"{long}"}}}}"#)).unwrap_err();
        assert_eq!((e.reason(), e.field()), ("bad_value", Some("headers")));
    }

    #[test]
    fn impossible_timestamps_are_refused() {
        assert!(parse_ts("ts", "1970-01-01T00:00:00.000Z").is_err());
        assert!(parse_ts("ts", "2026-11-21T10:00:00.000+01:00").is_ok());
        assert_eq!(
            format_ts(parse_ts("ts", "2026-11-21T10:00:00.250Z").unwrap()),
            "2026-11-21T10:00:00.250Z"
        );
    }
}

#[cfg(test)]
mod contract_examples {
    use super::*;

    #[test]
    fn every_documented_example_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/examples");
        let mut kinds = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let ev = SwitchEvent::from_json(&bytes, 2000)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            kinds.push(ev.kind);
        }
        kinds.sort();
        assert_eq!(
            kinds,
            vec![
                EventKind::Setup,
                EventKind::Progress,
                EventKind::Answer,
                EventKind::Hangup,
                EventKind::Cdr
            ]
        );
    }

    #[test]
    fn checked_in_avro_schemas_match_the_code() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/avro");
        for (name, json) in crate::avro::all_schemas() {
            let path = format!("{dir}/{name}.avsc");
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                on_disk.trim(),
                json.trim(),
                "{path} drifted from the code: run `make schemas`"
            );
        }
    }
}
