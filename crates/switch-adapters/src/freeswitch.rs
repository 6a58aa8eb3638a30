//! FreeSWITCH `mod_json_cdr` documents (one per leg, values plain or
//! URL-encoded) and the leg model shared with the event socket
//! ([`crate::freeswitch_esl`]): which leg reports the call, the call id every
//! leg agrees on, timestamps from the µs epochs, billable time from
//! `billusec`/`billmsec`, the SIP code from answer, SIP status and hangup
//! cause together, and media statistics.

use std::collections::HashMap;

use cdr_model::event::{EventKind, MediaStats, SwitchEvent};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::common::{
    ceil_us_to_ms, epoch_s_to_ms, epoch_us_to_ms, parse_u64, shown, sip_status, stat, url_decode,
    Draft, IdBasis,
};
use crate::config::{AdapterConfig, LegRule};
use crate::error::AdaptError;
use crate::{q850, Format};

/// A leg's channel timetable (µs epochs as strings), from the callflow
/// `times` of a JSON CDR or the `Caller-Channel-*-Time` headers of an event.
#[derive(Debug, Clone, Default)]
pub(crate) struct Times {
    pub created: Option<String>,
    pub progress: Option<String>,
    pub progress_media: Option<String>,
    pub answered: Option<String>,
    pub hangup: Option<String>,
}

/// The caller profile fields the adapter reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Profile {
    pub uuid: Option<String>,
    pub caller_id_number: Option<String>,
    pub destination_number: Option<String>,
    pub network_addr: Option<String>,
}

/// Inbound RTP statistics of `callStats.audio.inbound` (JSON CDR only).
#[derive(Debug, Clone, Default)]
pub(crate) struct InStats {
    pub mos: Option<f64>,
    pub loss: Option<f64>,
    pub packets: Option<i64>,
}

/// One FreeSWITCH leg, whatever carried it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Leg {
    /// Channel variables, decoded.
    pub vars: HashMap<String, String>,
    pub profile: Profile,
    pub times: Times,
    pub stats: InStats,
    /// The A-leg's uuid when this leg was originated by another leg.
    pub originator: Option<String>,
    /// This leg originated (or bridged to) another leg.
    pub originated: bool,
    /// Own uuid from the transport (event socket `Unique-ID`).
    pub unique_id: Option<String>,
}

impl Leg {
    pub fn var(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn uuid(&self) -> Option<String> {
        self.var("uuid")
            .map(str::to_string)
            .or_else(|| self.unique_id.clone())
            .or_else(|| self.profile.uuid.clone())
            .filter(|u| !u.trim().is_empty())
    }

    /// The A-leg uuid if this leg was originated. Read from the variables
    /// FreeSWITCH sets on an originated leg (`originating_leg_uuid`,
    /// `originator`), the callflow's `originator` profile, or (event socket)
    /// `Other-Type: originator` / `Other-Leg-Unique-ID`; `bridge_uuid` /
    /// `signal_bond` only when `last_bridge_role` says this leg was the
    /// originatee, because on the A-leg they point the other way.
    fn originator_uuid(&self, own: &str) -> Option<String> {
        let role_b = self.var("last_bridge_role") == Some("originatee");
        [
            self.var("originating_leg_uuid").map(str::to_string),
            self.var("originator").map(str::to_string),
            self.originator.clone(),
            role_b
                .then(|| self.var("bridge_uuid").or(self.var("signal_bond")))
                .flatten()
                .map(str::to_string),
        ]
        .into_iter()
        .flatten()
        .find(|u| !u.trim().is_empty() && u != own)
    }

    fn has_originated(&self) -> bool {
        self.originated
            || [
                "originated_legs",
                "originate_signal_bond",
                "last_bridge_to",
                "bridge_uuid",
            ]
            .iter()
            .any(|k| self.var(k).is_some())
    }

    /// Which leg this is and the call id, or `None` when the configured leg
    /// rule says another leg reports the call.
    pub fn identity(
        &self,
        format: Format,
        cfg: &AdapterConfig,
    ) -> Result<Option<(String, String)>, AdaptError> {
        let uuid = self
            .uuid()
            .ok_or_else(|| AdaptError::missing(format, "uuid"))?;
        let originator = self.originator_uuid(&uuid);
        let reports = match cfg.freeswitch.leg {
            LegRule::ALeg => originator.is_none(),
            LegRule::BLeg => originator.is_some() || !self.has_originated(),
        };
        if !reports {
            return Ok(None);
        }
        let call_id = originator.unwrap_or_else(|| uuid.clone());
        Ok(Some((uuid, call_id)))
    }

    fn us(
        &self,
        format: Format,
        var: &str,
        alt: &Option<String>,
    ) -> Result<Option<i64>, AdaptError> {
        match epoch_us_to_ms(format, var, self.var(var))? {
            Some(t) => Ok(Some(t)),
            None => epoch_us_to_ms(format, var, alt.as_deref()),
        }
    }

    /// A milestone time: the `*_uepoch` variable, the timetable, then the
    /// whole-second `*_epoch` variable.
    fn milestone(
        &self,
        format: Format,
        uvar: &str,
        svar: &str,
        alt: &Option<String>,
    ) -> Result<Option<i64>, AdaptError> {
        match self.us(format, uvar, alt)? {
            Some(t) => Ok(Some(t)),
            None => match self.var(svar) {
                Some("0") | None => Ok(None),
                v => epoch_s_to_ms(format, svar, v),
            },
        }
    }

    pub fn setup_ms(&self, format: Format) -> Result<Option<i64>, AdaptError> {
        self.milestone(format, "start_uepoch", "start_epoch", &self.times.created)
    }

    pub fn answer_ms(&self, format: Format) -> Result<Option<i64>, AdaptError> {
        self.milestone(
            format,
            "answer_uepoch",
            "answer_epoch",
            &self.times.answered,
        )
    }

    pub fn progress_ms(&self, format: Format) -> Result<Option<i64>, AdaptError> {
        let p = self.milestone(
            format,
            "progress_uepoch",
            "progress_epoch",
            &self.times.progress,
        )?;
        let m = self.milestone(
            format,
            "progress_media_uepoch",
            "progress_media_epoch",
            &self.times.progress_media,
        )?;
        Ok(match (p, m) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    pub fn end_ms(&self, format: Format) -> Result<Option<i64>, AdaptError> {
        self.milestone(format, "end_uepoch", "end_epoch", &self.times.hangup)
    }

    /// CLI: `origination_caller_id_number` (an `originate` sets it; the
    /// profile of such a leg holds the callee), the caller profile's
    /// `caller_id_number`, then `sip_from_user`.
    pub fn cli(&self) -> Option<String> {
        self.var("origination_caller_id_number")
            .map(str::to_string)
            .or_else(|| self.profile.caller_id_number.clone())
            .or_else(|| self.var("caller_id_number").map(str::to_string))
            .or_else(|| self.var("sip_from_user").map(str::to_string))
    }

    /// Dialed: the caller profile's `destination_number` (after dialplan
    /// transfers: the latest profile), then `destination_number`,
    /// `sip_req_user`, `sip_to_user`.
    pub fn dialed(&self) -> Option<String> {
        self.profile
            .destination_number
            .clone()
            .or_else(|| self.var("destination_number").map(str::to_string))
            .or_else(|| self.var("sip_req_user").map(str::to_string))
            .or_else(|| self.var("sip_to_user").map(str::to_string))
    }

    pub fn source_ip(&self) -> Option<String> {
        self.var("sip_network_ip")
            .or(self.var("sip_received_ip"))
            .map(str::to_string)
            .or_else(|| self.profile.network_addr.clone())
    }

    pub fn trunk(&self, cfg: &AdapterConfig) -> Option<String> {
        for v in &cfg.freeswitch.trunk_variables {
            if let Some(t) = self.var(v) {
                return Some(t.to_string());
            }
        }
        ["channel_name", "bridge_channel", "last_bridge_channel"]
            .iter()
            .filter_map(|k| self.var(k))
            .find_map(gateway_of)
    }

    pub fn codec(&self) -> Option<String> {
        self.var("rtp_use_codec_name")
            .or(self.var("read_codec"))
            .map(str::to_string)
    }

    /// Inbound RTP: packets, loss (`jitter_loss_rate`, %) and MOS, from the
    /// `rtp_audio_in_*` variables (present in both transports, so a JSON CDR
    /// and its CHANNEL_HANGUP_COMPLETE agree), else `callStats`. A MOS is
    /// kept only when packets were received: FreeSWITCH reports 4.5 for a
    /// stream it never got. Jitter: FreeSWITCH reports only min/max variance
    /// of packet spacing, not a jitter figure, so it is left empty.
    pub fn media(&self) -> Option<MediaStats> {
        let packets = self
            .var("rtp_audio_in_packet_count")
            .and_then(|v| v.parse::<i64>().ok())
            .or(self.stats.packets)
            .filter(|p| *p >= 0);
        let mos = stat(self.var("rtp_audio_in_mos")).or(self.stats.mos);
        let loss = stat(self.var("rtp_audio_in_jitter_loss_rate")).or(self.stats.loss);
        if packets.is_none() && mos.is_none() && loss.is_none() {
            return None;
        }
        let received = packets.is_some_and(|p| p > 0);
        Some(MediaStats {
            rtp_rx_packets: packets,
            rtp_rx_before_answer: None,
            silence_ratio: None,
            mos: mos.filter(|_| received),
            jitter_ms: None,
            loss_pct: loss.filter(|_| received),
        })
    }

    /// Final SIP code of an unanswered leg, most specific first:
    /// ORIGINATOR_CANCEL is 487 whatever else the leg says (its
    /// `hangup_cause_q850` is 16); then the SIP status actually exchanged
    /// (`sip_term_status`, `last_bridge_proto_specific_hangup_cause`,
    /// `proto_specific_hangup_cause`, `sip_invite_failure_status`); then the
    /// cause name and the Q.850 number through [`q850::CAUSES`].
    pub fn unanswered_sip(&self) -> Option<i32> {
        let cause = self.var("hangup_cause");
        if cause.is_some_and(|c| c.eq_ignore_ascii_case("ORIGINATOR_CANCEL")) {
            return Some(487);
        }
        for k in [
            "sip_term_status",
            "last_bridge_proto_specific_hangup_cause",
            "proto_specific_hangup_cause",
            "sip_invite_failure_status",
        ] {
            if let Some(c) = self.var(k).and_then(sip_status).filter(|c| *c >= 300) {
                return Some(c);
            }
        }
        if let Some(c) = cause.and_then(q850::by_name) {
            return Some(i32::from(c.sip));
        }
        self.var("hangup_cause_q850")
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(q850::by_q850)
            .map(|c| i32::from(c.sip))
    }

    /// The leg as one `cdr` event (or nothing, when the leg rule says another
    /// leg reports the call).
    pub fn to_cdr(
        &self,
        format: Format,
        cfg: &AdapterConfig,
    ) -> Result<Vec<SwitchEvent>, AdaptError> {
        let Some((uuid, call_id)) = self.identity(format, cfg)? else {
            return Ok(Vec::new());
        };
        let setup = self
            .setup_ms(format)?
            .ok_or_else(|| AdaptError::missing(format, "start_uepoch"))?;
        let end = self
            .end_ms(format)?
            .ok_or_else(|| AdaptError::missing(format, "end_uepoch"))?;
        let answer = self.answer_ms(format)?;
        let progress = self.progress_ms(format)?;
        let (end, sip) = match answer {
            Some(a) => (a.saturating_add(self.billable_ms(format, a, end)?), 200),
            None => (end, self.unanswered_sip().unwrap_or(0)),
        };
        let mut d = Draft::new(call_id, EventKind::Cdr, end);
        d.account_key = self
            .var(&cfg.freeswitch.account_variable)
            .map(str::to_string);
        d.cli = self.cli();
        d.dialed = self.dialed();
        d.trunk_id = self.trunk(cfg);
        d.sip_code = (sip != 0).then_some(sip);
        d.source_ip = self.source_ip();
        d.behind_nat = self.var("sip_nat_detected").map(|v| v == "true");
        d.media = self.media();
        d.codec = self.codec();
        d.setup_ms = Some(setup);
        d.progress_ms = progress;
        d.answer_ms = answer;
        d.end_ms = Some(end);
        d.id_basis = IdBasis::Identity(vec!["cdr".into(), uuid]);
        Ok(vec![d.finish(format, cfg)?])
    }

    /// Billable milliseconds of an answered leg: `billusec` rounded up to the
    /// millisecond, else `billmsec`, else end − answer. FreeSWITCH computes
    /// them from the same timetable as `end_uepoch`, so one disagreeing by
    /// more than a second is a corrupt document.
    fn billable_ms(&self, format: Format, answer: i64, end: i64) -> Result<i64, AdaptError> {
        let span = end.saturating_sub(answer);
        let (field, ms) = if let Some(v) = self.var("billusec") {
            ("billusec", ceil_us_to_ms(parse_u64(format, "billusec", v)?))
        } else if let Some(v) = self.var("billmsec") {
            let ms = parse_u64(format, "billmsec", v)?;
            ("billmsec", i64::try_from(ms).unwrap_or(i64::MAX))
        } else {
            return Ok(span.max(0));
        };
        if (ms.saturating_sub(span)).abs() > 1000 {
            return Err(AdaptError::bad(
                format,
                field,
                &ms.to_string(),
                &format!("disagrees with end - answer = {span} ms"),
            ));
        }
        Ok(ms)
    }
}

/// `gw` out of `sofia/gateway/gw/12125550100`.
fn gateway_of(channel: &str) -> Option<String> {
    let rest = channel.split("/gateway/").nth(1)?;
    let gw = rest.split('/').next()?;
    (!gw.is_empty()).then(|| gw.to_string())
}

/// Top-level entries in document order, duplicates kept: the 2015 layout has
/// two `callflow` keys, which a map would collapse and a struct refuse.
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, Value>()? {
                    v.push((k, val));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// mod_json_cdr URL-encodes values unless `encode-values` is off. A document
/// is taken as encoded when fields that always hold a space, `@`, `:` or a
/// quote in plain form hold their escapes instead.
fn looks_encoded(vars: &serde_json::Map<String, Value>) -> bool {
    [
        "start_stamp",
        "end_stamp",
        "channel_name",
        "sip_from_uri",
        "caller_id",
        "sip_full_from",
    ]
    .iter()
    .filter_map(|k| vars.get(*k).and_then(Value::as_str))
    .any(|v| {
        ["%20", "%40", "%3A", "%22", "%3C"]
            .iter()
            .any(|e| v.contains(e))
    })
}

/// One `mod_json_cdr` document → a `cdr` event for the reporting leg, or
/// nothing for a leg the leg rule skips.
pub fn adapt_json_cdr(bytes: &[u8], cfg: &AdapterConfig) -> Result<Vec<SwitchEvent>, AdaptError> {
    let leg = parse_json_cdr(bytes)?;
    leg.to_cdr(Format::FreeswitchJson, cfg)
}

pub(crate) fn parse_json_cdr(bytes: &[u8]) -> Result<Leg, AdaptError> {
    const F: Format = Format::FreeswitchJson;
    let entries: Entries = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) if e.is_data() => {
            return Err(AdaptError::wrong(F, "the document is not a JSON object"))
        }
        Err(e) => return Err(AdaptError::malformed(F, e.to_string())),
    };
    let mut leg = Leg::default();
    let mut flows: Vec<&Value> = Vec::new();
    let mut vars_obj = None;
    let mut stats = None;
    for (k, v) in &entries.0 {
        match k.as_str() {
            "variables" => vars_obj = v.as_object(),
            "callflow" => match v {
                Value::Array(a) => flows.extend(a.iter()),
                Value::Object(_) => flows.push(v),
                _ => {}
            },
            "callStats" => stats = Some(v),
            _ => {}
        }
    }
    let Some(vars) = vars_obj else {
        let hint = entries
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .take(3)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(AdaptError::wrong(
            F,
            format!("no `variables` object (keys: {})", shown(&hint)),
        ));
    };
    let encoded = looks_encoded(vars);
    let dec = |s: String| if encoded { url_decode(&s) } else { s };
    leg.vars = vars
        .iter()
        .filter_map(|(k, v)| text(v).map(|t| (k.clone(), dec(t))))
        .collect();
    // The latest caller profile (highest profile_index) describes the leg as
    // it ended; earlier ones precede dialplan transfers.
    let index = |f: &Value| {
        f.get("profile_index")
            .and_then(text)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let mut best: Option<&Value> = None;
    for f in &flows {
        if best.is_none_or(|b| index(f) > index(b)) {
            best = Some(f);
        }
    }
    let field = |v: Option<&Value>, k: &str| {
        v.and_then(|o| o.get(k))
            .and_then(text)
            .map(dec)
            .filter(|s| !s.trim().is_empty())
    };
    if let Some(f) = best {
        let cp = f.get("caller_profile");
        leg.profile = Profile {
            uuid: field(cp, "uuid"),
            caller_id_number: field(cp, "caller_id_number"),
            destination_number: field(cp, "destination_number"),
            network_addr: field(cp, "network_addr"),
        };
        let t = f.get("times");
        leg.times = Times {
            created: field(t, "created_time"),
            progress: field(t, "progress_time"),
            progress_media: field(t, "progress_media_time"),
            answered: field(t, "answered_time"),
            hangup: field(t, "hangup_time"),
        };
    }
    for f in &flows {
        let cp = f.get("caller_profile");
        if let Some(o) = cp
            .and_then(|c| c.get("originator"))
            .and_then(|o| o.get("originator_caller_profiles"))
            .and_then(|a| a.get(0))
        {
            leg.originator = leg.originator.or(field(Some(o), "uuid"));
        }
        if cp.and_then(|c| c.get("originatee")).is_some() {
            leg.originated = true;
        }
    }
    if let Some(inb) = stats
        .and_then(|s| s.get("audio"))
        .and_then(|a| a.get("inbound"))
    {
        leg.stats = InStats {
            mos: inb
                .get("mos")
                .and_then(Value::as_f64)
                .filter(|f| f.is_finite()),
            loss: inb
                .get("jitter_loss_rate")
                .and_then(Value::as_f64)
                .filter(|f| f.is_finite()),
            packets: inb.get("packet_count").and_then(Value::as_i64),
        };
    }
    Ok(leg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways() {
        assert_eq!(
            gateway_of("sofia/gateway/carrier-1/4420").as_deref(),
            Some("carrier-1")
        );
        assert_eq!(gateway_of("sofia/internal/1002@10.0.0.1"), None);
        assert_eq!(gateway_of("sofia/gateway//x"), None);
    }

    #[test]
    fn duplicate_callflow_keys_are_all_read() {
        let doc = br#"{"variables":{"uuid":"a","start_uepoch":"1","end_uepoch":"2"},
            "callflow":{"profile_index":"2","caller_profile":{"destination_number":"44"}},
            "callflow":{"profile_index":"1","caller_profile":{"destination_number":"old"}}}"#;
        let leg = parse_json_cdr(doc).unwrap();
        assert_eq!(leg.profile.destination_number.as_deref(), Some("44"));
    }

    #[test]
    fn cancel_beats_q850() {
        let mut leg = Leg::default();
        leg.vars
            .insert("hangup_cause".into(), "ORIGINATOR_CANCEL".into());
        leg.vars.insert("hangup_cause_q850".into(), "16".into());
        assert_eq!(leg.unanswered_sip(), Some(487));
        leg.vars.insert("hangup_cause".into(), "USER_BUSY".into());
        assert_eq!(leg.unanswered_sip(), Some(486));
        leg.vars.insert("sip_term_status".into(), "603".into());
        assert_eq!(leg.unanswered_sip(), Some(603));
        leg.vars.clear();
        leg.vars.insert("hangup_cause_q850".into(), "34".into());
        assert_eq!(leg.unanswered_sip(), Some(503));
    }
}
