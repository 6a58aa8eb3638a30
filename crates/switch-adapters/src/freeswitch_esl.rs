//! FreeSWITCH event-socket events as mod_event_kafka / mod_amqp style
//! publishers send them: a flat JSON object, or text/event-plain
//! `Key: url-encoded-value` lines. CHANNEL_CREATE / CHANNEL_PROGRESS /
//! CHANNEL_PROGRESS_MEDIA / CHANNEL_ANSWER become setup / progress / answer
//! events; CHANNEL_HANGUP_COMPLETE, which carries every channel variable,
//! becomes the same `cdr` event (same id, same content) as the leg's
//! `mod_json_cdr` document, so a switch sending both bills once. Other
//! events are understood and ignored.

use std::collections::HashMap;

use cdr_model::event::{EventKind, SwitchEvent};
use serde_json::Value;

use crate::common::{epoch_us_to_ms, url_decode, Draft, IdBasis};
use crate::config::AdapterConfig;
use crate::error::AdaptError;
use crate::freeswitch::{Leg, Profile, Times};
use crate::Format;

const F: Format = Format::FreeswitchEsl;

/// Headers of one event, decoded.
fn parse_headers(bytes: &[u8]) -> Result<HashMap<String, String>, AdaptError> {
    let text = String::from_utf8_lossy(bytes);
    let t = text.trim_start_matches('\u{feff}').trim();
    if t.starts_with('{') {
        let v: Value =
            serde_json::from_str(t).map_err(|e| AdaptError::malformed(F, e.to_string()))?;
        let Value::Object(o) = v else {
            return Err(AdaptError::wrong(F, "not a JSON object"));
        };
        // JSON events carry plain values.
        return Ok(o
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Number(n) => Some((k, n.to_string())),
                Value::Bool(b) => Some((k, b.to_string())),
                _ => None,
            })
            .collect());
    }
    let mut h = HashMap::new();
    for line in t.lines() {
        if line.trim().is_empty() {
            // Headers end at the first blank line; a body may follow.
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(AdaptError::malformed(
                F,
                format!("line `{}` is not `Key: value`", crate::error::quote(line)),
            ));
        };
        // The first occurrence wins (event-plain repeats Hangup-Cause).
        h.entry(k.trim().to_string())
            .or_insert_with(|| url_decode(v.trim()));
    }
    Ok(h)
}

/// The leg an event describes.
fn leg_of(h: &HashMap<String, String>) -> Leg {
    let get = |k: &str| h.get(k).filter(|v| !v.trim().is_empty()).cloned();
    let mut leg = Leg {
        vars: h
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("variable_")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect(),
        profile: Profile {
            uuid: get("Caller-Unique-ID"),
            caller_id_number: get("Caller-Caller-ID-Number"),
            destination_number: get("Caller-Destination-Number"),
            network_addr: get("Caller-Network-Addr"),
        },
        times: Times {
            created: get("Caller-Channel-Created-Time"),
            progress: get("Caller-Channel-Progress-Time"),
            progress_media: get("Caller-Channel-Progress-Media-Time"),
            answered: get("Caller-Channel-Answered-Time"),
            hangup: get("Caller-Channel-Hangup-Time"),
        },
        unique_id: get("Unique-ID"),
        ..Leg::default()
    };
    match h.get("Other-Type").map(String::as_str) {
        Some("originator") => leg.originator = get("Other-Leg-Unique-ID"),
        Some("originatee") => leg.originated = true,
        _ => {}
    }
    leg
}

/// One event-socket event → events (see the module doc).
pub fn adapt_event(bytes: &[u8], cfg: &AdapterConfig) -> Result<Vec<SwitchEvent>, AdaptError> {
    let h = parse_headers(bytes)?;
    let Some(name) = h.get("Event-Name").cloned() else {
        return Err(AdaptError::wrong(F, "no `Event-Name` header"));
    };
    let leg = leg_of(&h);
    let milestone = match name.as_str() {
        "CHANNEL_HANGUP_COMPLETE" => return leg.to_cdr(F, cfg),
        "CHANNEL_CREATE" => (EventKind::Setup, "setup", None),
        "CHANNEL_PROGRESS" => (EventKind::Progress, "progress", Some(180)),
        "CHANNEL_PROGRESS_MEDIA" => (EventKind::Progress, "progress_media", Some(183)),
        "CHANNEL_ANSWER" => (EventKind::Answer, "answer", Some(200)),
        // CHANNEL_HANGUP, CHANNEL_BRIDGE, HEARTBEAT, ...: the pipeline needs
        // none of them (CHANNEL_HANGUP_COMPLETE reports the hangup).
        _ => return Ok(Vec::new()),
    };
    let (kind, label, sip) = milestone;
    let Some((uuid, call_id)) = leg.identity(F, cfg)? else {
        return Ok(Vec::new());
    };
    let ts = match kind {
        EventKind::Setup => leg.setup_ms(F)?,
        EventKind::Answer => leg.answer_ms(F)?,
        _ if label == "progress" => epoch_us_to_ms(
            F,
            "Caller-Channel-Progress-Time",
            leg.times.progress.as_deref(),
        )?,
        _ => epoch_us_to_ms(
            F,
            "Caller-Channel-Progress-Media-Time",
            leg.times.progress_media.as_deref(),
        )?,
    };
    // The channel's own timetable is the milestone's time; the event's
    // Event-Date-Timestamp (when it was sent) only if the timetable is empty.
    let ts = match ts {
        Some(t) => t,
        None => epoch_us_to_ms(
            F,
            "Event-Date-Timestamp",
            h.get("Event-Date-Timestamp").map(String::as_str),
        )?
        .ok_or_else(|| AdaptError::missing(F, "Event-Date-Timestamp"))?,
    };
    let mut d = Draft::new(call_id, kind, ts);
    d.account_key = leg
        .var(&cfg.freeswitch.account_variable)
        .map(str::to_string);
    d.sip_code = sip;
    if kind == EventKind::Setup {
        d.cli = leg.cli();
        d.dialed = leg.dialed();
        d.source_ip = leg.source_ip();
        d.behind_nat = leg.var("sip_nat_detected").map(|v| v == "true");
    }
    if kind == EventKind::Answer {
        d.trunk_id = leg.trunk(cfg);
        d.codec = leg.codec();
    }
    d.id_basis = IdBasis::Identity(vec![label.into(), uuid]);
    Ok(vec![d.finish(F, cfg)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_headers_decode_and_keep_first() {
        let h = parse_headers(
            b"Event-Name: X\nHangup-Cause: A\nHangup-Cause: B\nvariable_x: 1%402\n\nbody",
        )
        .unwrap();
        assert_eq!(h["Hangup-Cause"], "A");
        assert_eq!(h["variable_x"], "1@2");
        assert!(parse_headers(b"garbage without colon").is_err());
    }
}
