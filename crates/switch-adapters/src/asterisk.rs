//! Asterisk CDR records in their four transports — `cdr_csv` Master.csv
//! rows, `cdr_custom` rows with a configured column mapping, AMI
//! `Event: Cdr` blocks (`cdr_manager`) and one JSON object per record — all
//! normalised to the CDR variable names (`src`, `dst`, `start`, `billsec`,
//! `disposition`, ...) and turned into one `cdr` event per record.
//!
//! `disposition` alone decides whether a record was answered (never
//! `billsec > 0`). Local-time strings are read in the configured zone.
//! Asterisk writes one record per Dial attempt; [`billed_record`] keeps the
//! one that bills a call.

use std::collections::HashMap;

use cdr_model::event::{EventKind, SwitchEvent};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::common::{epoch_s_to_ms, parse_u64, Draft, IdBasis};
use crate::config::{AdapterConfig, AsteriskCallKey};
use crate::error::AdaptError;
use crate::{q850, Format, RecordResult};

/// `cdr_csv` columns, fixed by Asterisk: 16 always, then `uniqueid` and
/// `userfield` (`loguniqueid`, `loguserfield`, on by default), then (Asterisk
/// 12+) `peeraccount`, `linkedid`, `sequence`.
pub const CSV_COLUMNS: [&str; 21] = [
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "peeraccount",
    "linkedid",
    "sequence",
];

/// The column names of a `cdr_csv` row with `n` fields.
fn csv_columns(n: usize) -> Option<Vec<&'static str>> {
    let base = &CSV_COLUMNS[..16];
    let mut v: Vec<&str> = base.to_vec();
    match n {
        16 => {}
        17 => v.push("uniqueid"),
        18 => v.extend(["uniqueid", "userfield"]),
        // Asterisk 12+ with loguniqueid/loguserfield off.
        19 => v.extend(["peeraccount", "linkedid", "sequence"]),
        21 => v.extend(&CSV_COLUMNS[16..]),
        _ => return None,
    }
    Some(v)
}

/// AMI `Cdr` header and cdr_kafka-style JSON key → CDR variable name.
fn canonical(key: &str) -> String {
    let k = key.trim().to_ascii_lowercase();
    let name = match k.as_str() {
        "source" | "callerid_num" => "src",
        "destination" => "dst",
        "destinationcontext" => "dcontext",
        "callerid" => "clid",
        "destinationchannel" => "dstchannel",
        "lastapplication" => "lastapp",
        "starttime" => "start",
        "answertime" => "answer",
        "endtime" => "end",
        "billableseconds" => "billsec",
        "account" => "accountcode",
        "unique_id" => "uniqueid",
        "linked_id" => "linkedid",
        other => other,
    };
    name.to_string()
}

type Record = HashMap<String, String>;

/// Rows of a CSV file, each with its own result.
pub(crate) fn csv_records(
    format: Format,
    bytes: &[u8],
    cfg: &AdapterConfig,
) -> std::vec::IntoIter<RecordResult> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut out = Vec::new();
    let mut row = csv::ByteRecord::new();
    let mut n = 0usize;
    loop {
        n += 1;
        let before = rdr.position().line() as usize;
        match rdr.read_byte_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {
                let line = row.position().map_or(before, |p| p.line() as usize);
                let fields: Vec<String> = row
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                if fields.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                out.push(RecordResult {
                    record: line,
                    result: csv_row(format, &fields, cfg),
                });
            }
            Err(e) => {
                out.push(RecordResult {
                    record: before.max(n),
                    result: Err(AdaptError::malformed(format, e.to_string())),
                });
                // The reader cannot resynchronise after an I/O-level error.
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    break;
                }
            }
        }
    }
    out.into_iter()
}

fn csv_row(
    format: Format,
    fields: &[String],
    cfg: &AdapterConfig,
) -> Result<Vec<SwitchEvent>, AdaptError> {
    let names: Vec<String> = match format {
        Format::AsteriskCustom => cfg.asterisk.custom_columns.clone(),
        _ => csv_columns(fields.len())
            .ok_or_else(|| {
                AdaptError::wrong(
                    format,
                    format!(
                        "{} columns; cdr_csv rows have 16, 17, 18, 19 or 21",
                        fields.len()
                    ),
                )
            })?
            .into_iter()
            .map(String::from)
            .collect(),
    };
    if format == Format::AsteriskCustom && fields.len() != names.len() {
        return Err(AdaptError::wrong(
            format,
            format!(
                "{} columns, the configured mapping has {}",
                fields.len(),
                names.len()
            ),
        ));
    }
    let rec: Record = names
        .iter()
        .zip(fields)
        .map(|(k, v)| (canonical(k), v.clone()))
        .collect();
    // A header line (`cdr_custom` users often write one) reports nothing.
    if rec
        .get("disposition")
        .is_some_and(|d| d.trim().eq_ignore_ascii_case("disposition"))
    {
        return Ok(Vec::new());
    }
    record_to_event(format, &rec, cfg).map(|e| vec![e])
}

/// One AMI `Event: Cdr` block (`Key: value` lines). Other AMI events are
/// understood and ignored.
pub fn adapt_ami(bytes: &[u8], cfg: &AdapterConfig) -> Result<Vec<SwitchEvent>, AdaptError> {
    const F: Format = Format::AsteriskAmi;
    let text = String::from_utf8_lossy(bytes);
    let mut rec = Record::new();
    let mut event = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            if line.starts_with("Asterisk Call Manager") {
                continue;
            }
            return Err(AdaptError::malformed(
                F,
                format!("line `{}` is not `Key: value`", crate::error::quote(line)),
            ));
        };
        if k.trim().eq_ignore_ascii_case("event") {
            event = Some(v.trim().to_string());
        }
        rec.entry(canonical(k))
            .or_insert_with(|| v.trim().to_string());
    }
    match event.as_deref() {
        None => Err(AdaptError::wrong(F, "no `Event:` header")),
        Some(e) if e.eq_ignore_ascii_case("cdr") => record_to_event(F, &rec, cfg).map(|e| vec![e]),
        Some(_) => Ok(Vec::new()),
    }
}

/// One CDR as a JSON object whose keys are CDR variable names (or the AMI
/// names), values strings or numbers.
pub fn adapt_json(bytes: &[u8], cfg: &AdapterConfig) -> Result<Vec<SwitchEvent>, AdaptError> {
    const F: Format = Format::AsteriskJson;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            AdaptError::wrong(F, e.to_string())
        } else {
            AdaptError::malformed(F, e.to_string())
        }
    })?;
    let Value::Object(o) = v else {
        return Err(AdaptError::wrong(F, "not a JSON object"));
    };
    // A publisher may wrap the record: {"cdr": {...}}.
    let o = match o.get("cdr").and_then(Value::as_object) {
        Some(inner) => inner.clone(),
        None => o,
    };
    let rec: Record = o
        .into_iter()
        .filter_map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Null => String::new(),
                _ => return None,
            };
            Some((canonical(&k), s))
        })
        .collect();
    if !rec.contains_key("disposition") && !rec.contains_key("uniqueid") {
        return Err(AdaptError::wrong(
            F,
            "neither `disposition` nor `uniqueid`: not an Asterisk CDR",
        ));
    }
    record_to_event(F, &rec, cfg).map(|e| vec![e])
}

/// A time value: `YYYY-MM-DD HH:MM:SS[.ffffff]` in the switch's zone, an
/// epoch with optional fraction (`${CDR(start,f)}`), or RFC 3339. Returns
/// the UTC milliseconds and whether it carries sub-second precision.
fn parse_time(
    format: Format,
    field: &str,
    v: Option<&String>,
    cfg: &AdapterConfig,
) -> Result<Option<(i64, bool)>, AdaptError> {
    let Some(s) = v.map(|s| s.trim()).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if s.starts_with("0000-00-00") {
        return Ok(None);
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Ok(epoch_s_to_ms(format, field, Some(s))?.map(|ms| (ms, s.contains('.'))));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some((
            dt.with_timezone(&Utc).timestamp_millis(),
            s.contains('.'),
        )));
    }
    let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|_| AdaptError::bad(format, field, s, "not YYYY-MM-DD HH:MM:SS"))?;
    let ms = cfg.time_zone.to_utc_ms(local).ok_or_else(|| {
        AdaptError::bad(
            format,
            field,
            s,
            &format!("does not exist in {}", cfg.time_zone.describe()),
        )
    })?;
    Ok(Some((ms, s.contains('.'))))
}

/// `SIP/carrier-0000002a` → `carrier`; `PJSIP/client2-00000003` → `client2`.
fn peer_of(channel: &str) -> Option<String> {
    let after = channel.split_once('/').map_or(channel, |(_, r)| r);
    let peer = match after.rsplit_once('-') {
        Some((p, suffix))
            if suffix.chars().all(|c| c.is_ascii_hexdigit()) && !suffix.is_empty() =>
        {
            p
        }
        _ => after,
    };
    let peer = peer.split(['@', ',', '/']).next().unwrap_or("");
    (!peer.trim().is_empty()).then(|| peer.trim().to_string())
}

/// The number in a `"Name" <number>` caller id.
fn number_of_clid(clid: &str) -> Option<String> {
    let n = match (clid.rfind('<'), clid.rfind('>')) {
        (Some(a), Some(b)) if a < b => &clid[a + 1..b],
        _ => clid,
    };
    let n = n.trim().trim_matches('"');
    (!n.is_empty()).then(|| n.to_string())
}

/// The SIP code standing for an unanswered disposition: NO ANSWER 480,
/// BUSY 486, FAILED / CONGESTION 503 — refined by a `hangupcause` column
/// (`${HANGUPCAUSE}`, Q.850 number or name) for FAILED / CONGESTION.
fn unanswered_sip(disposition: &str, cause: Option<&String>) -> i32 {
    let from_cause = || {
        let c = cause?.trim();
        let entry = match c.parse::<u16>() {
            Ok(n) => q850::by_q850(n),
            Err(_) => q850::by_name(c),
        }?;
        Some(i32::from(entry.sip))
    };
    match disposition {
        "NO ANSWER" => 480,
        "BUSY" => 486,
        _ => from_cause().unwrap_or(503),
    }
}

fn record_to_event(
    format: Format,
    r: &Record,
    cfg: &AdapterConfig,
) -> Result<SwitchEvent, AdaptError> {
    let get = |k: &str| r.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let uniqueid = get("uniqueid");
    let call_id = match cfg.asterisk.call_key {
        AsteriskCallKey::Linkedid => get("linkedid").or(uniqueid).map(str::to_string),
        AsteriskCallKey::PerRecord => uniqueid.map(|u| match get("sequence") {
            Some(s) => format!("{u}#{s}"),
            None => u.to_string(),
        }),
    }
    .ok_or_else(|| AdaptError::missing(format, "uniqueid"))?;
    let disposition_raw =
        get("disposition").ok_or_else(|| AdaptError::missing(format, "disposition"))?;
    let disposition = disposition_raw.to_ascii_uppercase();
    if !["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"].contains(&disposition.as_str()) {
        return Err(AdaptError::bad(
            format,
            "disposition",
            disposition_raw,
            "not ANSWERED, NO ANSWER, BUSY, FAILED or CONGESTION",
        ));
    }
    let (start, _) = parse_time(format, "start", r.get("start"), cfg)?
        .ok_or_else(|| AdaptError::missing(format, "start"))?;
    let (end, end_precise) = parse_time(format, "end", r.get("end"), cfg)?
        .ok_or_else(|| AdaptError::missing(format, "end"))?;
    let answer_str = parse_time(format, "answer", r.get("answer"), cfg)?;
    let billsec = get("billsec")
        .map(|v| parse_u64(format, "billsec", v))
        .transpose()?
        .map(|s| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000));
    let (answer, sip) = if disposition == "ANSWERED" {
        let answer = match (answer_str, billsec) {
            // Sub-second times (`${CDR(answer,f)}`): exact.
            (Some((a, true)), _) if end_precise => a,
            // Whole seconds: Asterisk's billsec is the exact talk time
            // truncated to the second; anchoring it at the end makes the
            // pipeline bill exactly what the switch counted.
            (a, Some(b)) => {
                let derived = end.saturating_sub(b);
                if let Some((a, _)) = a {
                    if (derived - a).abs() > 2000 {
                        return Err(AdaptError::bad(
                            format,
                            "billsec",
                            &(b / 1000).to_string(),
                            "disagrees with end - answer",
                        ));
                    }
                }
                derived
            }
            (Some((a, _)), None) => a,
            (None, None) => return Err(AdaptError::missing(format, "answer")),
        };
        (Some(answer), 200)
    } else {
        (None, unanswered_sip(&disposition, r.get("hangupcause")))
    };
    let mut d = Draft::new(call_id, EventKind::Cdr, end);
    d.setup_ms = Some(start);
    d.answer_ms = answer;
    d.end_ms = Some(end);
    d.sip_code = Some(sip);
    d.account_key = get("accountcode").map(str::to_string);
    d.cli = get("src")
        .map(str::to_string)
        .or_else(|| get("clid").and_then(number_of_clid));
    d.dialed = get("dst").map(str::to_string);
    d.trunk_id = get("dstchannel").and_then(peer_of);
    d.id_basis = IdBasis::Content;
    d.finish(format, cfg)
}

/// The record that bills a call among the records Asterisk wrote for it (one
/// per Dial attempt, plus dialplan-only records): records with a destination
/// channel (a real attempt) first; among them an answered one with the
/// longest talk time, else the one that ended last; ties by event id.
pub fn billed_record(mut events: Vec<SwitchEvent>) -> Option<SwitchEvent> {
    if events.iter().any(|e| e.trunk_id.is_some()) {
        events.retain(|e| e.trunk_id.is_some());
    }
    events.into_iter().max_by(|a, b| {
        let key = |e: &SwitchEvent| {
            let talk = match (e.answer_ts_ms, e.end_ts_ms) {
                (Some(a), Some(z)) => Some(z - a),
                _ => None,
            };
            (
                talk.is_some(),
                talk.unwrap_or(0),
                e.end_ts_ms.unwrap_or(e.ts_ms),
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| b.event_id.cmp(&a.event_id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_clids() {
        assert_eq!(
            peer_of("SIP/stadionpbx-00000005").as_deref(),
            Some("stadionpbx")
        );
        assert_eq!(
            peer_of("PJSIP/client2-00000003").as_deref(),
            Some("client2")
        );
        assert_eq!(peer_of("DAHDI/1-1").as_deref(), Some("1"));
        assert_eq!(peer_of("").as_deref(), None);
        assert_eq!(
            number_of_clid("\"89245555937\" <89245555937>").as_deref(),
            Some("89245555937")
        );
        assert_eq!(number_of_clid("\"\" <client1>").as_deref(), Some("client1"));
    }

    #[test]
    fn dispositions_to_sip() {
        assert_eq!(unanswered_sip("NO ANSWER", None), 480);
        assert_eq!(unanswered_sip("BUSY", None), 486);
        assert_eq!(unanswered_sip("FAILED", None), 503);
        assert_eq!(unanswered_sip("FAILED", Some(&"1".to_string())), 404);
        assert_eq!(
            unanswered_sip("CONGESTION", Some(&"USER_BUSY".to_string())),
            486
        );
    }
}
