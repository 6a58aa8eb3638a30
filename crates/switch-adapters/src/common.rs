//! What every adapter shares: the draft of one event before validation, its
//! checks (impossible times named by field), the contract's own validation
//! (`SwitchEvent::from_raw`, so an adapted event is exactly what the
//! assembler accepts), deterministic event ids, and small parsers for the
//! vendors' numbers, epochs and URL-encoded values.

use std::collections::BTreeMap;

use cdr_model::event::{format_ts, EventKind, MediaStats, RawEvent, SwitchEvent};
use sha2::{Digest, Sha256};

use crate::config::AdapterConfig;
use crate::error::{quote, AdaptError};
use crate::Format;

/// How an event's id is derived.
#[derive(Debug, Clone)]
pub(crate) enum IdBasis {
    /// From the switch's own identity of the record (e.g. the FreeSWITCH leg
    /// uuid and milestone): every re-send of that record, through any
    /// transport (mod_json_cdr POST or event socket), gets the same id, so
    /// the assembler swallows the copies.
    Identity(Vec<String>),
    /// From the event's whole content: the same payload always gets the same
    /// id, two different records of one call never do.
    Content,
}

/// One event as an adapter sees it, before the contract's validation.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub call_id: String,
    pub kind: EventKind,
    pub ts_ms: i64,
    /// The vendor's account code, resolved through [`AccountMap`].
    ///
    /// [`AccountMap`]: crate::config::AccountMap
    pub account_key: Option<String>,
    pub cli: Option<String>,
    pub dialed: Option<String>,
    pub trunk_id: Option<String>,
    pub sip_code: Option<i32>,
    pub headers: BTreeMap<String, String>,
    pub source_ip: Option<String>,
    pub behind_nat: Option<bool>,
    pub media: Option<MediaStats>,
    pub codec: Option<String>,
    pub setup_ms: Option<i64>,
    pub progress_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub id_basis: IdBasis,
}

impl Draft {
    pub fn new(call_id: String, kind: EventKind, ts_ms: i64) -> Self {
        Draft {
            call_id,
            kind,
            ts_ms,
            account_key: None,
            cli: None,
            dialed: None,
            trunk_id: None,
            sip_code: None,
            headers: BTreeMap::new(),
            source_ip: None,
            behind_nat: None,
            media: None,
            codec: None,
            setup_ms: None,
            progress_ms: None,
            answer_ms: None,
            end_ms: None,
            id_basis: IdBasis::Content,
        }
    }

    /// Validates the draft and turns it into the contract's event.
    pub fn finish(self, format: Format, cfg: &AdapterConfig) -> Result<SwitchEvent, AdaptError> {
        if self.call_id.trim().is_empty() {
            return Err(AdaptError::missing(format, "call_id"));
        }
        check_times(format, &self, cfg.skew_ms)?;
        let account = cfg
            .accounts
            .resolve(self.account_key.as_deref(), self.source_ip.as_deref())
            .ok_or_else(|| AdaptError::missing(format, "account"))?;
        let ts = |ms: Option<i64>| ms.map(format_ts);
        let raw = RawEvent {
            event_id: Some("pending".into()),
            call_id: Some(self.call_id.clone()),
            kind: Some(self.kind.as_str().into()),
            ts: Some(format_ts(self.ts_ms)),
            switch_id: Some(cfg.switch_id.clone()),
            account_id: Some(account),
            direction: Some(
                match cfg.direction {
                    cdr_model::Direction::Outbound => "outbound",
                    cdr_model::Direction::Inbound => "inbound",
                }
                .into(),
            ),
            cli: nonempty(self.cli),
            dialed: nonempty(self.dialed),
            trunk_id: nonempty(self.trunk_id),
            sip_code: self.sip_code.map(i64::from),
            headers: self.headers,
            source_ip: nonempty(self.source_ip),
            behind_nat: self.behind_nat,
            media: self.media,
            codec: nonempty(self.codec),
            setup_ts: ts(self.setup_ms),
            progress_ts: ts(self.progress_ms),
            answer_ts: ts(self.answer_ms),
            end_ts: ts(self.end_ms),
        };
        // Timestamps outside 2000..2100 come back as bad_value naming the field.
        let mut ev = SwitchEvent::from_raw(raw, cfg.skew_ms)
            .map_err(|e| AdaptError::from_event(format, e))?;
        ev.event_id = match self.id_basis {
            IdBasis::Identity(parts) => {
                let mut all = vec![cfg.switch_id.as_str(), format.family()];
                all.extend(parts.iter().map(String::as_str));
                digest(&all)
            }
            IdBasis::Content => {
                // Serialisation of the event is deterministic (struct field
                // order, BTreeMap headers), so equal content, equal id.
                let body = serde_json::to_string(&ev).unwrap_or_default();
                digest(&[cfg.switch_id.as_str(), format.family(), &body])
            }
        };
        Ok(ev)
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// 32 hex chars of SHA-256 over the NUL-separated parts.
pub(crate) fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Milestones of one record that cannot belong to one call, named by the
/// contract field, checked before the contract's own (less specific) checks.
fn check_times(format: Format, d: &Draft, skew: i64) -> Result<(), AdaptError> {
    let s = d.setup_ms;
    if let (Some(s), Some(e)) = (s, d.end_ms) {
        if e.saturating_add(skew) < s {
            return Err(AdaptError::times(
                format,
                "end_ts",
                format!("end {} is before setup {}", format_ts(e), format_ts(s)),
            ));
        }
    }
    if let (Some(s), Some(a)) = (s, d.answer_ms) {
        if a.saturating_add(skew) < s {
            return Err(AdaptError::times(
                format,
                "answer_ts",
                format!("answer {} is before setup {}", format_ts(a), format_ts(s)),
            ));
        }
    }
    if let (Some(a), Some(e)) = (d.answer_ms, d.end_ms) {
        if e < a {
            return Err(AdaptError::times(
                format,
                "end_ts",
                format!("end {} is before answer {}", format_ts(e), format_ts(a)),
            ));
        }
    }
    Ok(())
}

/// A non-negative integer field (epochs, durations, counters).
pub(crate) fn parse_u64(format: Format, field: &str, v: &str) -> Result<u64, AdaptError> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| AdaptError::bad(format, field, v, "not a non-negative integer"))
}

/// An epoch in microseconds; `0` or empty means "never happened".
pub(crate) fn epoch_us_to_ms(
    format: Format,
    field: &str,
    v: Option<&str>,
) -> Result<Option<i64>, AdaptError> {
    match v.map(str::trim) {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => {
            let us = parse_u64(format, field, s)?;
            i64::try_from(us / 1000)
                .map(Some)
                .map_err(|_| AdaptError::bad(format, field, s, "out of range"))
        }
    }
}

/// An epoch in seconds, possibly with a fraction (`1690325492.123456`);
/// `0` or empty means "never happened". Truncated to the millisecond.
pub(crate) fn epoch_s_to_ms(
    format: Format,
    field: &str,
    v: Option<&str>,
) -> Result<Option<i64>, AdaptError> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => {
            let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
            let secs = parse_u64(format, field, whole)?;
            if !frac.chars().all(|c| c.is_ascii_digit()) {
                return Err(AdaptError::bad(format, field, s, "not an epoch"));
            }
            let ms_part: i64 = format!("{frac:0<3}")[..3].parse().unwrap_or(0);
            if secs == 0 && ms_part == 0 {
                return Ok(None);
            }
            i64::try_from(secs)
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .and_then(|s| s.checked_add(ms_part))
                .map(Some)
                .ok_or_else(|| AdaptError::bad(format, field, s, "out of range"))
        }
    }
}

/// Percent-decoding as FreeSWITCH and the event socket encode values
/// (invalid escapes are kept as they are; bytes that are not UTF-8 become
/// U+FFFD).
pub(crate) fn url_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A SIP status code out of `487`, `sip:487`, `SIP/2.0 487`: only final
/// responses 300..699 and 200.
pub(crate) fn sip_status(v: &str) -> Option<i32> {
    let t = v.trim();
    let t = t
        .strip_prefix("sips:")
        .or_else(|| t.strip_prefix("sip:"))
        .unwrap_or(t);
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    let code: i32 = digits.parse().ok()?;
    (code == 200 || (300..700).contains(&code)).then_some(code)
}

/// A float statistic (MOS, loss %) ignoring junk and non-finite values.
pub(crate) fn stat(v: Option<&str>) -> Option<f64> {
    v.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite())
}

/// Ceil of microseconds to milliseconds, saturating.
pub(crate) fn ceil_us_to_ms(us: u64) -> i64 {
    i64::try_from(us.div_ceil(1000)).unwrap_or(i64::MAX)
}

/// A value quoted back in messages.
pub(crate) fn shown(v: &str) -> String {
    quote(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs() {
        let f = Format::FreeswitchJson;
        assert_eq!(
            epoch_us_to_ms(f, "x", Some("1515666344534355")).unwrap(),
            Some(1515666344534)
        );
        assert_eq!(epoch_us_to_ms(f, "x", Some("0")).unwrap(), None);
        assert_eq!(
            epoch_us_to_ms(f, "x", Some("-5")).unwrap_err().reason(),
            "bad_value"
        );
        assert_eq!(
            epoch_s_to_ms(f, "x", Some("1690325492.2")).unwrap(),
            Some(1690325492200)
        );
        assert_eq!(
            epoch_s_to_ms(f, "x", Some("1690325492.123999")).unwrap(),
            Some(1690325492123)
        );
        assert!(epoch_s_to_ms(f, "x", Some("99999999999999999999")).is_err());
    }

    #[test]
    fn sip_codes_and_decoding() {
        assert_eq!(sip_status("sip:487"), Some(487));
        assert_eq!(sip_status("487"), Some(487));
        assert_eq!(sip_status("180"), None);
        assert_eq!(sip_status("x"), None);
        assert_eq!(url_decode("1001%4010.0.0.1"), "1001@10.0.0.1");
        assert_eq!(url_decode("%(2000,4000)"), "%(2000,4000)");
        assert_eq!(ceil_us_to_ms(67_539_896), 67_540);
        assert_eq!(ceil_us_to_ms(67_539_000), 67_539);
    }
}
