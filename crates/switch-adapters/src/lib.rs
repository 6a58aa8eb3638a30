//! Pure adapters from what real switches emit to the pipeline's validated
//! [`SwitchEvent`]s: FreeSWITCH `mod_json_cdr` documents and event-socket
//! events, OpenSIPS `E_ACC_CDR`, Asterisk `cdr_csv` / `cdr_custom` / AMI
//! `Cdr` / JSON records, and the Kamailio `kafka_send` template of this
//! crate's README. Bytes and a small [`AdapterConfig`] in; events or a typed
//! [`AdaptError`] out. No I/O, no clocks, no async: an HTTP ingest, a
//! raw-topic stage and `cdrctl import` can all call the same functions.
//!
//! A whole call from a switch that reports at call end becomes one `cdr`
//! event; per-event formats become setup/progress/answer events. Call ids and
//! event ids are chosen so that every leg or copy of one call lands on the
//! same `cdr_id` and duplicates collapse (see README, "One call per call").

pub mod asterisk;
mod common;
pub mod config;
mod error;
pub mod freeswitch;
pub mod freeswitch_esl;
pub mod kamailio;
pub mod opensips;
pub mod q850;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use cdr_model::event::SwitchEvent;
pub use config::{
    AccountMap, AdapterConfig, AsteriskCallKey, AsteriskRules, FreeswitchRules, KeyValueFields,
    LegRule, SwitchTz,
};
pub use error::AdaptError;

/// Payload formats, named as an ingest path or `cdrctl import --format`
/// spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// FreeSWITCH `mod_json_cdr` document (one per leg).
    FreeswitchJson,
    /// FreeSWITCH event-socket event, JSON or text/event-plain.
    FreeswitchEsl,
    /// OpenSIPS `E_ACC_CDR` / `E_ACC_MC`, event_kafka JSON-RPC or
    /// event_datagram `key::value`.
    Opensips,
    /// Asterisk `cdr_csv` Master.csv rows.
    AsteriskCsv,
    /// Asterisk `cdr_custom` rows with a configured column mapping.
    AsteriskCustom,
    /// Asterisk AMI `Event: Cdr` blocks (`cdr_manager`).
    AsteriskAmi,
    /// One Asterisk CDR as a JSON object (cdr_kafka-style publishers).
    AsteriskJson,
    /// The Kamailio `kafka_send` template of this crate's README.
    Kamailio,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::FreeswitchJson,
        Format::FreeswitchEsl,
        Format::Opensips,
        Format::AsteriskCsv,
        Format::AsteriskCustom,
        Format::AsteriskAmi,
        Format::AsteriskJson,
        Format::Kamailio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::FreeswitchJson => "freeswitch-json",
            Format::FreeswitchEsl => "freeswitch-esl",
            Format::Opensips => "opensips",
            Format::AsteriskCsv => "asterisk-csv",
            Format::AsteriskCustom => "asterisk-custom",
            Format::AsteriskAmi => "asterisk-ami",
            Format::AsteriskJson => "asterisk-json",
            Format::Kamailio => "kamailio",
        }
    }

    /// The vendor, part of every event id: the two FreeSWITCH transports of
    /// one leg give the same id, two vendors never do.
    pub(crate) fn family(self) -> &'static str {
        match self {
            Format::FreeswitchJson | Format::FreeswitchEsl => "freeswitch",
            Format::Opensips => "opensips",
            Format::AsteriskCsv
            | Format::AsteriskCustom
            | Format::AsteriskAmi
            | Format::AsteriskJson => "asterisk",
            Format::Kamailio => "kamailio",
        }
    }

    /// Raw Kafka topic a switch publishing this format writes to.
    pub fn raw_topic(self) -> &'static str {
        match self.family() {
            "freeswitch" => "raw.freeswitch",
            "opensips" => "raw.opensips",
            "asterisk" => "raw.asterisk",
            _ => "raw.kamailio",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}` (known: freeswitch-json, freeswitch-esl, opensips, asterisk-csv, asterisk-custom, asterisk-ami, asterisk-json, kamailio)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match t.as_str() {
            "freeswitch-json" | "freeswitch" | "mod-json-cdr" | "json-cdr" => {
                Format::FreeswitchJson
            }
            "freeswitch-esl" | "esl" => Format::FreeswitchEsl,
            "opensips" | "opensips-acc" => Format::Opensips,
            "asterisk-csv" | "cdr-csv" => Format::AsteriskCsv,
            "asterisk-custom" | "cdr-custom" => Format::AsteriskCustom,
            "asterisk-ami" | "ami" => Format::AsteriskAmi,
            "asterisk-json" => Format::AsteriskJson,
            "kamailio" => Format::Kamailio,
            _ => return Err(UnknownFormat(s.chars().take(64).collect())),
        })
    }
}

/// The outcome of one record of a multi-record input (a CSV row, an AMI
/// block, an element of a JSON array, a line of NDJSON).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordResult {
    /// 1-based: the CSV line, the block or element number.
    pub record: usize,
    pub result: Result<Vec<SwitchEvent>, AdaptError>,
}

/// Adapts one payload. Multi-record inputs (a CSV file, several AMI blocks, a
/// JSON array) must be valid throughout: the first bad record is returned
/// (use [`adapt_records`] or [`adapt_file`] to keep the good ones). An empty
/// `Ok` means the payload was understood and reports nothing billable (a
/// B-leg under the A-leg rule, an event type the pipeline does not use).
pub fn adapt(
    format: Format,
    bytes: &[u8],
    cfg: &AdapterConfig,
) -> Result<Vec<SwitchEvent>, AdaptError> {
    let mut out = Vec::new();
    for r in adapt_records(format, bytes, cfg) {
        out.extend(r.result?);
    }
    Ok(select_billed(format, out, cfg).0)
}

/// Every record of a multi-record input with its own result, so one bad row
/// never hides the others. Records are not grouped into calls here (see
/// [`adapt_file`]).
pub fn adapt_records<'a>(
    format: Format,
    bytes: &'a [u8],
    cfg: &'a AdapterConfig,
) -> impl Iterator<Item = RecordResult> + 'a {
    let records: Box<dyn Iterator<Item = RecordResult> + 'a> = match format {
        Format::AsteriskCsv | Format::AsteriskCustom => {
            Box::new(asterisk::csv_records(format, bytes, cfg))
        }
        _ => Box::new(
            split_records(format, bytes)
                .into_iter()
                .map(move |(record, body)| RecordResult {
                    record,
                    result: adapt_one(format, &body, cfg),
                }),
        ),
    };
    records
}

/// What a file import produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileOutcome {
    pub events: Vec<SwitchEvent>,
    /// Records refused, with their record number.
    pub rejected: Vec<(usize, AdaptError)>,
    /// Records of a call that another record of the same call bills (Asterisk
    /// writes one record per Dial attempt; see README).
    pub superseded: usize,
}

/// A whole file: good records adapted, bad ones reported with their number,
/// and (Asterisk) one billed record kept per call.
pub fn adapt_file(format: Format, bytes: &[u8], cfg: &AdapterConfig) -> FileOutcome {
    let mut out = FileOutcome::default();
    let mut events = Vec::new();
    for r in adapt_records(format, bytes, cfg) {
        match r.result {
            Ok(evs) => events.extend(evs),
            Err(e) => out.rejected.push((r.record, e)),
        }
    }
    let (events, superseded) = select_billed(format, events, cfg);
    out.events = events;
    out.superseded = superseded;
    out
}

/// Asterisk keyed by linkedid: keep one `cdr` per call (the billed record).
fn select_billed(
    format: Format,
    events: Vec<SwitchEvent>,
    cfg: &AdapterConfig,
) -> (Vec<SwitchEvent>, usize) {
    if format.family() != "asterisk" || cfg.asterisk.call_key != AsteriskCallKey::Linkedid {
        return (events, 0);
    }
    let n = events.len();
    let mut by_call: BTreeMap<String, Vec<SwitchEvent>> = BTreeMap::new();
    let mut order = Vec::new();
    for e in events {
        if !by_call.contains_key(&e.call_id) {
            order.push(e.call_id.clone());
        }
        by_call.entry(e.call_id.clone()).or_default().push(e);
    }
    let kept: Vec<SwitchEvent> = order
        .into_iter()
        .filter_map(|id| by_call.remove(&id).and_then(asterisk::billed_record))
        .collect();
    let dropped = n - kept.len();
    (kept, dropped)
}

fn adapt_one(
    format: Format,
    body: &[u8],
    cfg: &AdapterConfig,
) -> Result<Vec<SwitchEvent>, AdaptError> {
    match format {
        Format::FreeswitchJson => freeswitch::adapt_json_cdr(body, cfg),
        Format::FreeswitchEsl => freeswitch_esl::adapt_event(body, cfg),
        Format::Opensips => opensips::adapt_event(body, cfg),
        Format::AsteriskAmi => asterisk::adapt_ami(body, cfg),
        Format::AsteriskJson => asterisk::adapt_json(body, cfg),
        Format::Kamailio => kamailio::adapt_event(body, cfg),
        Format::AsteriskCsv | Format::AsteriskCustom => asterisk::csv_records(format, body, cfg)
            .map(|r| r.result)
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.into_iter().flatten().collect()),
    }
}

/// Splits a payload into records: a JSON array into its elements, NDJSON
/// into lines, text formats (event-plain, AMI, event_datagram) into
/// blank-line separated blocks. A single document is one record.
fn split_records(format: Format, bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.starts_with('[') {
        if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(trimmed) {
            return items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i + 1, v.to_string().into_bytes()))
                .collect();
        }
        return vec![(1, bytes.to_vec())];
    }
    if trimmed.starts_with('{') {
        let lines: Vec<&str> = trimmed.lines().filter(|l| !l.trim().is_empty()).collect();
        // NDJSON: several lines, each a whole object.
        if lines.len() > 1
            && lines
                .iter()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()))
        {
            return lines
                .into_iter()
                .enumerate()
                .map(|(i, l)| (i + 1, l.as_bytes().to_vec()))
                .collect();
        }
        return vec![(1, bytes.to_vec())];
    }
    match format {
        Format::FreeswitchEsl | Format::AsteriskAmi | Format::Opensips => {
            let mut blocks = text_blocks(trimmed);
            // An event-plain body or an AMI response between events is not
            // a record of its own.
            let marker = match format {
                Format::FreeswitchEsl => Some("event-name:"),
                Format::AsteriskAmi => Some("event:"),
                _ => None,
            };
            if let Some(m) = marker {
                let has = |b: &String| b.lines().any(|l| l.to_ascii_lowercase().starts_with(m));
                if blocks.iter().any(has) {
                    blocks.retain(has);
                }
            }
            if blocks.len() <= 1 {
                let one = blocks
                    .pop()
                    .map_or_else(|| bytes.to_vec(), String::into_bytes);
                return vec![(1, one)];
            }
            blocks
                .into_iter()
                .enumerate()
                .map(|(i, b)| (i + 1, b.into_bytes()))
                .collect()
        }
        _ => vec![(1, bytes.to_vec())],
    }
}

/// Blank-line separated blocks that carry a record: event-plain envelopes
/// (`Content-Length` / `Content-Type` only) and AMI banners are dropped.
fn text_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.trim().is_empty() {
                blocks.push(std::mem::take(&mut cur));
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        blocks.push(cur);
    }
    let is_envelope = |b: &str| {
        b.lines().all(|l| {
            let k = l.split(':').next().unwrap_or("").trim();
            k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("content-type")
                || l.starts_with("Asterisk Call Manager")
        })
    };
    let kept: Vec<String> = blocks.iter().filter(|b| !is_envelope(b)).cloned().collect();
    if kept.is_empty() {
        blocks
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
            assert_eq!(f.to_string(), f.as_str());
        }
        assert_eq!(
            "FREESWITCH_JSON".parse::<Format>().unwrap(),
            Format::FreeswitchJson
        );
        assert!("sip".parse::<Format>().is_err());
    }

    #[test]
    fn records_split() {
        let r = split_records(
            Format::AsteriskAmi,
            b"Event: Cdr\nA: 1\n\nEvent: Cdr\nA: 2\n\n",
        );
        assert_eq!(r.len(), 2);
        let r = split_records(Format::Kamailio, b"[{\"a\":1},{\"a\":2},{\"a\":3}]");
        assert_eq!(r.len(), 3);
        let r = split_records(Format::Kamailio, b"{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(r.len(), 2);
        let r = split_records(Format::Kamailio, b"{\"a\":\n1}");
        assert_eq!(r.len(), 1);
        let r = split_records(
            Format::FreeswitchEsl,
            b"Content-Length: 20\nContent-Type: text/event-plain\n\nEvent-Name: CHANNEL_ANSWER\n",
        );
        assert_eq!(r.len(), 1);
        assert!(String::from_utf8_lossy(&r[0].1).starts_with("Event-Name"));
    }
}
