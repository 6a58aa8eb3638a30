//! OpenSIPS accounting events: `E_ACC_CDR` (a whole answered call, from the
//! dialog: `created`, `setuptime`, `duration`, `ms_duration`) and `E_ACC_MC`
//! (a missed call: final negative reply), as event_kafka publishes them
//! (JSON-RPC `{"jsonrpc":"2.0","method":"E_ACC_CDR","params":{...}}`) or
//! event_datagram sends them (the event name on the first line, then
//! `key::value` lines). CLI, dialed number, account and trunk come from the
//! script's extra fields, named in [`KeyValueFields`].
//!
//! [`KeyValueFields`]: crate::config::KeyValueFields

use std::collections::HashMap;

use cdr_model::event::{EventKind, SwitchEvent};
use serde_json::Value;

use crate::common::{epoch_s_to_ms, parse_u64, sip_status, Draft, IdBasis};
use crate::config::AdapterConfig;
use crate::error::AdaptError;
use crate::Format;

const F: Format = Format::Opensips;

/// Event name and parameters.
fn parse(bytes: &[u8]) -> Result<(String, HashMap<String, String>), AdaptError> {
    let text = String::from_utf8_lossy(bytes);
    let t = text.trim_start_matches('\u{feff}').trim();
    if t.starts_with('{') {
        let v: Value =
            serde_json::from_str(t).map_err(|e| AdaptError::malformed(F, e.to_string()))?;
        let method = v
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| AdaptError::wrong(F, "no JSON-RPC `method`"))?
            .to_string();
        let params = v
            .get("params")
            .and_then(Value::as_object)
            .ok_or_else(|| AdaptError::missing(F, "params"))?;
        let p = params
            .iter()
            .filter_map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((k.clone(), s))
            })
            .collect();
        return Ok((method, p));
    }
    let mut lines = t.lines();
    let name = lines.next().unwrap_or("").trim().to_string();
    if name.contains("::") || name.is_empty() {
        return Err(AdaptError::wrong(F, "the first line is not an event name"));
    }
    let mut p = HashMap::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once("::") else {
            return Err(AdaptError::malformed(
                F,
                format!("line `{}` is not `key::value`", crate::error::quote(line)),
            ));
        };
        p.entry(k.trim().to_string())
            .or_insert_with(|| v.trim().to_string());
    }
    Ok((name, p))
}

fn first(p: &HashMap<String, String>, names: &[String]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| p.get(n))
        .map(|v| v.trim())
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// One OpenSIPS event → one `cdr` event (`E_ACC_CDR`, `E_ACC_MC`); other
/// `E_ACC_*` events are ignored.
///
/// Times: `created` (s) is the setup; answer = `created` + `setuptime`
/// (OpenSIPS' `time` field when present, which is the same instant);
/// billable = `ms_duration` exactly (else `duration` × 1000), end = answer +
/// billable. A missed call ends at `time` (the final reply).
pub fn adapt_event(bytes: &[u8], cfg: &AdapterConfig) -> Result<Vec<SwitchEvent>, AdaptError> {
    let (name, p) = parse(bytes)?;
    let missed = match name.as_str() {
        "E_ACC_CDR" => false,
        "E_ACC_MC" | "E_ACC_MISSED_EVENT" => true,
        n if n.starts_with("E_ACC_") => return Ok(Vec::new()),
        n => {
            return Err(AdaptError::wrong(
                F,
                format!("event `{}`", crate::error::quote(n)),
            ))
        }
    };
    let get = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let call_id = get("callid")
        .ok_or_else(|| AdaptError::missing(F, "callid"))?
        .to_string();
    let code_raw = get("sip_code").ok_or_else(|| AdaptError::missing(F, "sip_code"))?;
    let code = sip_status(code_raw)
        .ok_or_else(|| AdaptError::bad(F, "sip_code", code_raw, "not a final SIP status"))?;
    let time = epoch_s_to_ms(F, "time", get("time"))?;
    let created = epoch_s_to_ms(F, "created", get("created"))?;
    let setuptime = get("setuptime")
        .map(|v| parse_u64(F, "setuptime", v))
        .transpose()?
        .map(|s| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000));
    let mut d;
    if missed {
        let end = time
            .or(created)
            .ok_or_else(|| AdaptError::missing(F, "time"))?;
        let setup = created.unwrap_or(end);
        d = Draft::new(call_id, EventKind::Cdr, end);
        d.setup_ms = Some(setup);
        d.end_ms = Some(end);
        d.sip_code = Some(if code < 300 { 480 } else { code });
    } else {
        let setup = created
            .or_else(|| time.zip(setuptime).map(|(t, s)| t.saturating_sub(s)))
            .or(time)
            .ok_or_else(|| AdaptError::missing(F, "created"))?;
        let answer = match (time, setuptime) {
            (Some(t), _) => t,
            (None, Some(s)) => setup.saturating_add(s),
            (None, None) => setup,
        };
        let billable = match (get("ms_duration"), get("duration")) {
            (Some(ms), _) => i64::try_from(parse_u64(F, "ms_duration", ms)?).unwrap_or(i64::MAX),
            (None, Some(s)) => i64::try_from(parse_u64(F, "duration", s)?)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
            (None, None) => return Err(AdaptError::missing(F, "duration")),
        };
        if !(200..300).contains(&code) {
            return Err(AdaptError::bad(
                F,
                "sip_code",
                code_raw,
                "an E_ACC_CDR is an answered call",
            ));
        }
        let end = answer.saturating_add(billable);
        d = Draft::new(call_id, EventKind::Cdr, end);
        d.setup_ms = Some(setup);
        d.answer_ms = Some(answer);
        d.end_ms = Some(end);
        d.sip_code = Some(200);
    }
    let f = &cfg.opensips;
    d.cli = first(&p, &f.cli);
    d.dialed = first(&p, &f.dialed);
    d.account_key = first(&p, &f.account);
    d.trunk_id = first(&p, &f.trunk);
    d.source_ip = first(&p, &f.source_ip);
    d.id_basis = IdBasis::Content;
    Ok(vec![d.finish(F, cfg)?])
}
