//! Kamailio: its `kafka` module publishes whatever the script builds, so
//! this crate defines the message (the `kafka_send` template in the crate
//! README, built from `dialog` variables in `event_route[dialog:end]` and
//! `event_route[dialog:failed]`) and adapts exactly that: one JSON object per
//! finished dialog → one `cdr` event.

use cdr_model::event::{EventKind, SwitchEvent};
use serde_json::{Map, Value};

use crate::common::{epoch_s_to_ms, sip_status, Draft, IdBasis};
use crate::config::AdapterConfig;
use crate::error::AdaptError;
use crate::Format;

const F: Format = Format::Kamailio;

/// Template version this adapter reads.
pub const TEMPLATE_VERSION: &str = "1";

/// A value as the script printed it: Kamailio prints an unset variable as
/// `<null>`, which means absent.
fn get(o: &Map<String, Value>, k: &str) -> Option<String> {
    let s = match o.get(k)? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s != "<null>").then_some(s)
}

fn time(o: &Map<String, Value>, k: &str) -> Result<Option<i64>, AdaptError> {
    epoch_s_to_ms(F, k, get(o, k).as_deref())
}

/// One template message → one `cdr` event.
///
/// `event` is `answered` (dialog confirmed and ended: billable = end_time −
/// answer_time, both `$TV(Sn)` "seconds.microseconds", truncated to the
/// millisecond) or `failed` (dialog never confirmed: `sip_code` is the final
/// reply the caller got).
pub fn adapt_event(bytes: &[u8], cfg: &AdapterConfig) -> Result<Vec<SwitchEvent>, AdaptError> {
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
    match get(&o, "v").as_deref() {
        Some(TEMPLATE_VERSION) => {}
        Some(other) => {
            return Err(AdaptError::bad(
                F,
                "v",
                other,
                "unsupported template version",
            ))
        }
        None => return Err(AdaptError::wrong(F, "no template version `v`")),
    }
    let event = get(&o, "event").ok_or_else(|| AdaptError::missing(F, "event"))?;
    let answered = match event.as_str() {
        "answered" => true,
        "failed" => false,
        other => return Err(AdaptError::bad(F, "event", other, "not answered|failed")),
    };
    let call_id = get(&o, "callid").ok_or_else(|| AdaptError::missing(F, "callid"))?;
    let setup = time(&o, "setup_time")?.ok_or_else(|| AdaptError::missing(F, "setup_time"))?;
    let end = time(&o, "end_time")?.ok_or_else(|| AdaptError::missing(F, "end_time"))?;
    let progress = time(&o, "progress_time")?;
    let code = match get(&o, "sip_code") {
        Some(c) => Some(
            sip_status(&c)
                .ok_or_else(|| AdaptError::bad(F, "sip_code", &c, "not a final SIP status"))?,
        ),
        None => None,
    };
    let (answer, sip) = if answered {
        let a = time(&o, "answer_time")?.ok_or_else(|| AdaptError::missing(F, "answer_time"))?;
        (Some(a), 200)
    } else {
        match code {
            Some(c) if c >= 300 => (None, c),
            Some(c) => {
                return Err(AdaptError::bad(
                    F,
                    "sip_code",
                    &c.to_string(),
                    "a failed dialog needs a final failure (>= 300)",
                ))
            }
            None => return Err(AdaptError::missing(F, "sip_code")),
        }
    };
    let mut d = Draft::new(call_id, EventKind::Cdr, end);
    d.setup_ms = Some(setup);
    d.progress_ms = progress;
    d.answer_ms = answer;
    d.end_ms = Some(end);
    d.sip_code = Some(sip);
    d.cli = get(&o, "cli");
    d.dialed = get(&o, "dialed");
    d.account_key = get(&o, "account");
    d.trunk_id = get(&o, "trunk");
    d.source_ip = get(&o, "source_ip");
    d.id_basis = IdBasis::Content;
    Ok(vec![d.finish(F, cfg)?])
}
