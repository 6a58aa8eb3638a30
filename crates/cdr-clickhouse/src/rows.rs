//! Row types as ClickHouse stores them, and their conversion from pipeline
//! records. Decimal columns are `Decimal(38, 18)`, sent in RowBinary as an
//! `i128` scaled by 10^18: exact for any per-call amount the rater produces.

use std::str::FromStr;

use cdr_model::call::{KpiCall, RatedCdr};
use cdr_model::control::{
    AccountAlertEvent, Adjustment, PlanChange, RouteAlertEvent, RouteStatusEvent,
};
use cdr_model::dlq::DeadLetter;
use clickhouse::Row;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("field `{field}`: `{value}` is not a decimal that fits Decimal(38, 18)")]
pub struct BadDecimal {
    pub field: &'static str,
    pub value: String,
}

/// Decimal string -> i128 scaled by 10^18 (rounded half away from zero at 18 places).
pub fn dec18(field: &'static str, s: &str) -> Result<i128, BadDecimal> {
    let bad = || BadDecimal {
        field,
        value: s.chars().take(40).collect(),
    };
    if s.trim().is_empty() {
        return Ok(0);
    }
    let d = Decimal::from_str(s.trim()).map_err(|_| bad())?;
    let d = d.round_dp_with_strategy(18, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let scale = d.scale();
    d.mantissa()
        .checked_mul(10i128.pow(18 - scale))
        .ok_or_else(bad)
}

/// Inverse of [`dec18`], for reading rows back.
pub fn from_dec18(v: i128) -> Decimal {
    Decimal::from_i128_with_scale(v, 18).normalize()
}

#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct RatedCdrRow {
    pub cdr_id: String,
    pub version: u64,
    pub call_id: String,
    pub switch_id: String,
    pub account_id: String,
    pub direction: String,
    pub cli: Option<String>,
    pub dialed: String,
    pub trunk_id: Option<String>,
    pub setup_ts: i64,
    pub progress_ts: Option<i64>,
    pub progress_code: Option<i32>,
    pub answer_ts: Option<i64>,
    pub end_ts: Option<i64>,
    pub final_sip_code: Option<i32>,
    pub disposition: String,
    pub duration_ms: i64,
    pub billable_seconds: i64,
    pub pdd_ms: Option<i64>,
    pub headers: Vec<(String, String)>,
    pub source_ip: Option<String>,
    pub behind_nat: bool,
    pub codec: Option<String>,
    pub rtp_rx_packets: Option<i64>,
    pub rtp_rx_before_answer: Option<i64>,
    pub silence_ratio: Option<f64>,
    pub mos: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub assembly_flags: Vec<String>,
    pub assembled_at: i64,
    pub cli_e164: Option<String>,
    pub cli_valid: bool,
    pub dialed_e164: String,
    pub plan_selector: Option<String>,
    pub trunk_selector: Option<String>,
    pub lrn: Option<String>,
    pub ported: bool,
    pub lrn_source: String,
    pub lrn_fee: i128,
    pub caller_country: Option<String>,
    pub callee_country: Option<String>,
    pub callee_number_type: Option<String>,
    pub jurisdiction: Option<String>,
    pub enrichment_flags: Vec<String>,
    pub rating_status: String,
    pub unrated_reason: Option<String>,
    pub plan: Option<String>,
    pub deck_id: Option<String>,
    pub deck_version: i64,
    pub matched_prefix: Option<String>,
    pub rated_number: Option<String>,
    /// Epoch ms (DateTime64(3)).
    pub row_effective_from: Option<i64>,
    pub obr_tier: Option<String>,
    pub jurisdiction_applied: Option<String>,
    pub rated_trunk: Option<u32>,
    pub destination: Option<String>,
    pub rate_per_min: i128,
    pub billed_seconds: i64,
    pub increment: Option<String>,
    pub connection_fee: i128,
    pub surcharge: i128,
    pub surcharge_per_min: i128,
    pub short_duration_surcharge: i128,
    pub amount: i128,
    pub currency: String,
    pub rating_flags: Vec<String>,
    pub max_rate: Option<i128>,
    pub max_route: Option<i32>,
    pub fas_score: f64,
    pub fas_signals: Vec<String>,
}

impl RatedCdrRow {
    pub fn from_record(r: &RatedCdr) -> Result<Self, BadDecimal> {
        let c = &r.call;
        let e = &r.enrichment;
        let g = &r.rating;
        let media = c.media.clone().unwrap_or_default();
        let det = r.detection.clone().unwrap_or_default();
        let mut headers: Vec<(String, String)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.sort();
        Ok(RatedCdrRow {
            cdr_id: c.cdr_id.clone(),
            version: cdr_model::call::row_version(c.event_count, &e.lrn_source),
            call_id: c.call_id.clone(),
            switch_id: c.switch_id.clone(),
            account_id: c.account_id.clone(),
            direction: c.direction.clone(),
            cli: c.cli.clone(),
            dialed: c.dialed.clone(),
            trunk_id: c.trunk_id.clone(),
            setup_ts: c.setup_ts_ms,
            progress_ts: c.progress_ts_ms,
            progress_code: c.progress_code,
            answer_ts: c.answer_ts_ms,
            end_ts: c.end_ts_ms,
            final_sip_code: c.final_sip_code,
            disposition: c.disposition.clone(),
            duration_ms: c.duration_ms,
            billable_seconds: c.billable_seconds,
            pdd_ms: c.pdd_ms,
            headers,
            source_ip: c.source_ip.clone(),
            behind_nat: c.behind_nat,
            codec: c.codec.clone(),
            rtp_rx_packets: media.rtp_rx_packets,
            rtp_rx_before_answer: media.rtp_rx_before_answer,
            silence_ratio: media.silence_ratio,
            mos: media.mos,
            jitter_ms: media.jitter_ms,
            loss_pct: media.loss_pct,
            assembly_flags: c.flags.clone(),
            assembled_at: c.assembled_at_ms,
            cli_e164: e.cli_e164.clone(),
            cli_valid: e.cli_valid,
            dialed_e164: e.dialed_e164.clone(),
            plan_selector: e.plan_selector.clone(),
            trunk_selector: e.trunk_selector.clone(),
            lrn: e.lrn.clone(),
            ported: e.ported,
            lrn_source: e.lrn_source.clone(),
            lrn_fee: dec18("lrn_fee", &e.lrn_fee)?,
            caller_country: e.caller_country.clone(),
            callee_country: e.callee_country.clone(),
            callee_number_type: e.callee_number_type.clone(),
            jurisdiction: e.jurisdiction.clone(),
            enrichment_flags: e.flags.clone(),
            rating_status: g.status.clone(),
            unrated_reason: g.unrated_reason.clone(),
            plan: g.plan.clone(),
            deck_id: g.deck_id.clone(),
            deck_version: g.deck_version,
            matched_prefix: g.matched_prefix.clone(),
            rated_number: g.rated_number.clone(),
            row_effective_from: g.row_effective_from_ms,
            obr_tier: g.obr_tier.clone(),
            jurisdiction_applied: g.jurisdiction_applied.clone(),
            rated_trunk: g.rated_trunk.and_then(|t| u32::try_from(t).ok()),
            destination: g.destination.clone(),
            rate_per_min: dec18("rate_per_min", &g.rate_per_min)?,
            billed_seconds: g.billed_seconds,
            increment: g.increment.clone(),
            connection_fee: dec18("connection_fee", &g.connection_fee)?,
            surcharge: dec18("surcharge", &g.surcharge)?,
            surcharge_per_min: dec18("surcharge_per_min", &g.surcharge_per_min)?,
            short_duration_surcharge: dec18(
                "short_duration_surcharge",
                &g.short_duration_surcharge,
            )?,
            amount: dec18("amount", &g.amount)?,
            currency: g.currency.clone(),
            rating_flags: g.flags.clone(),
            max_rate: g
                .max_rate
                .as_deref()
                .map(|m| dec18("max_rate", m))
                .transpose()?,
            max_route: g.max_route,
            fas_score: det.fas_score,
            fas_signals: det.fas_signals,
        })
    }
}

impl RatedCdrRow {
    /// The record this row was written from, as far as the row holds it
    /// (the inverse of [`RatedCdrRow::from_record`]): what `cdrctl rerate`
    /// rates again, so re-rating needs ClickHouse only, not Kafka
    /// retention. The event count comes from the version's low 32 bits
    /// ([`cdr_model::call::row_version`]); decimals come back at the 18
    /// places ClickHouse keeps; media is absent when every media column is
    /// NULL (as it was written); detection is marked evaluated (every row
    /// reaches ClickHouse through the detector).
    pub fn to_record(&self) -> RatedCdr {
        use cdr_model::call::{
            AssembledCall, Detection, Enrichment, Media, Rating, ROW_VERSION_EVENT_BITS,
        };
        let dec = |v: i128| from_dec18(v).to_string();
        let media = Media {
            rtp_rx_packets: self.rtp_rx_packets,
            rtp_rx_before_answer: self.rtp_rx_before_answer,
            silence_ratio: self.silence_ratio,
            mos: self.mos,
            jitter_ms: self.jitter_ms,
            loss_pct: self.loss_pct,
        };
        let base = self.version & ((1u64 << ROW_VERSION_EVENT_BITS) - 1);
        RatedCdr {
            call: AssembledCall {
                cdr_id: self.cdr_id.clone(),
                call_id: self.call_id.clone(),
                switch_id: self.switch_id.clone(),
                account_id: self.account_id.clone(),
                direction: self.direction.clone(),
                cli: self.cli.clone(),
                dialed: self.dialed.clone(),
                trunk_id: self.trunk_id.clone(),
                setup_ts_ms: self.setup_ts,
                progress_ts_ms: self.progress_ts,
                progress_code: self.progress_code,
                answer_ts_ms: self.answer_ts,
                end_ts_ms: self.end_ts,
                final_sip_code: self.final_sip_code,
                disposition: self.disposition.clone(),
                duration_ms: self.duration_ms,
                billable_seconds: self.billable_seconds,
                pdd_ms: self.pdd_ms,
                headers: self.headers.iter().cloned().collect(),
                source_ip: self.source_ip.clone(),
                behind_nat: self.behind_nat,
                codec: self.codec.clone(),
                media: (media != Media::default()).then_some(media),
                flags: self.assembly_flags.clone(),
                event_count: i32::try_from(base / 2).unwrap_or(i32::MAX),
                assembled_at_ms: self.assembled_at,
            },
            enrichment: Enrichment {
                cli_e164: self.cli_e164.clone(),
                cli_valid: self.cli_valid,
                dialed_e164: self.dialed_e164.clone(),
                plan_selector: self.plan_selector.clone(),
                trunk_selector: self.trunk_selector.clone(),
                lrn: self.lrn.clone(),
                ported: self.ported,
                lrn_source: self.lrn_source.clone(),
                lrn_fee: dec(self.lrn_fee),
                caller_country: self.caller_country.clone(),
                callee_country: self.callee_country.clone(),
                callee_number_type: self.callee_number_type.clone(),
                jurisdiction: self.jurisdiction.clone(),
                flags: self.enrichment_flags.clone(),
            },
            rating: Rating {
                status: self.rating_status.clone(),
                unrated_reason: self.unrated_reason.clone(),
                plan: self.plan.clone(),
                deck_id: self.deck_id.clone(),
                deck_version: self.deck_version,
                matched_prefix: self.matched_prefix.clone(),
                rated_number: self.rated_number.clone(),
                row_effective_from_ms: self.row_effective_from,
                obr_tier: self.obr_tier.clone(),
                jurisdiction_applied: self.jurisdiction_applied.clone(),
                rated_trunk: self.rated_trunk.and_then(|t| i32::try_from(t).ok()),
                destination: self.destination.clone(),
                rate_per_min: dec(self.rate_per_min),
                billed_seconds: self.billed_seconds,
                increment: self.increment.clone(),
                connection_fee: dec(self.connection_fee),
                surcharge: dec(self.surcharge),
                surcharge_per_min: dec(self.surcharge_per_min),
                short_duration_surcharge: dec(self.short_duration_surcharge),
                lrn_fee: dec(self.lrn_fee),
                amount: dec(self.amount),
                currency: self.currency.clone(),
                flags: self.rating_flags.clone(),
                max_rate: self.max_rate.map(dec),
                max_route: self.max_route,
            },
            detection: Some(Detection {
                fas_score: self.fas_score,
                fas_signals: self.fas_signals.clone(),
                evaluated: true,
            }),
        }
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct DeadLetterRow {
    pub id: String,
    pub service: String,
    pub reason: String,
    pub field: Option<String>,
    pub message: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload_b64: String,
    pub at: i64,
    pub payload_len: u64,
    pub payload_sha256: String,
    pub payload_truncated: bool,
    /// The source record's timestamp, epoch ms (`DateTime64(3)`).
    pub source_ts: Option<i64>,
}

impl From<&DeadLetter> for DeadLetterRow {
    fn from(d: &DeadLetter) -> Self {
        DeadLetterRow {
            id: d.id(),
            service: d.service.clone(),
            reason: d.reason.clone(),
            field: d.field.clone(),
            message: d.message.clone(),
            topic: d.topic.clone(),
            partition: d.partition,
            offset: d.offset,
            key: d.key.clone(),
            payload_b64: d.payload_b64.clone(),
            at: d.at_ms,
            payload_len: d.payload_len,
            payload_sha256: d.payload_sha256.clone(),
            payload_truncated: d.payload_truncated,
            source_ts: d.source_ts_ms,
        }
    }
}

/// `cdr.kpi_calls`: one row per call and version; `kpi_minute_final`
/// aggregates the newest version of each call.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct KpiCallRow {
    pub cdr_id: String,
    pub call_id: String,
    pub version: u64,
    /// Seconds since the epoch (`DateTime`).
    pub minute: u32,
    pub account_id: String,
    pub trunk_id: String,
    pub destination: String,
    pub disposition: String,
    pub answered: u8,
    pub busy: u8,
    pub no_answer: u8,
    pub failed: u8,
    pub cancelled: u8,
    pub stale: u8,
    pub ner_ok: u8,
    pub short_call: u8,
    pub answered_ms: i64,
    pub pdd_ms: Option<i64>,
    pub billed_seconds: i64,
    pub amount: i128,
    pub lrn_fee: i128,
    pub mos: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
}

impl KpiCallRow {
    pub fn from_record(k: &KpiCall) -> Result<Self, BadDecimal> {
        Ok(KpiCallRow {
            cdr_id: k.cdr_id.clone(),
            call_id: k.call_id.clone(),
            version: k.version.max(0) as u64,
            minute: (k.minute_ms / 1000).clamp(0, i64::from(u32::MAX)) as u32,
            account_id: k.account_id.clone(),
            trunk_id: k.trunk_id.clone(),
            destination: k.destination.clone(),
            disposition: k.disposition.clone(),
            answered: k.answered.into(),
            busy: k.busy.into(),
            no_answer: k.no_answer.into(),
            failed: k.failed.into(),
            cancelled: k.cancelled.into(),
            stale: k.stale.into(),
            ner_ok: k.ner_ok.into(),
            short_call: k.short_call.into(),
            answered_ms: k.answered_ms,
            pdd_ms: k.pdd_ms,
            billed_seconds: k.billed_seconds,
            amount: dec18("amount", &k.amount)?,
            lrn_fee: dec18("lrn_fee", &k.lrn_fee)?,
            mos: k.mos,
            jitter_ms: k.jitter_ms,
            loss_pct: k.loss_pct,
        })
    }
}

/// `cdr.rate_decks`: one row per imported deck version and scope.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct RateDeckRow {
    pub deck_id: String,
    pub deck_version: i64,
    pub scope: String,
    pub format: String,
    pub source_file: String,
    /// Milliseconds since the epoch (`DateTime64(3)`).
    pub effective_from: i64,
    pub effective_to: Option<i64>,
    pub rows: u64,
    pub rejected_rows: u64,
    pub content_sha256: String,
    pub published_at: i64,
}

/// `cdr.rate_deck_rows`: one row per deck line.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct RateDeckLineRow {
    pub deck_id: String,
    pub deck_version: i64,
    pub scope: String,
    pub prefix: String,
    pub destination: String,
    pub rate_per_min: i128,
    pub rate_intrastate: Option<i128>,
    pub increment: String,
    pub connection_fee: i128,
    pub min_billed_seconds: u32,
    pub short_surcharge: i128,
    pub short_threshold_s: u32,
    pub row_effective_from: Option<i64>,
    pub row_effective_to: Option<i64>,
    pub trunk: Option<u32>,
    pub trunk_plan: Option<String>,
    pub obr_tier: Option<String>,
    pub source_line: u64,
    pub published_at: i64,
}

/// `cdr.account_plan_changes`.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct PlanChangeRow {
    pub change_id: String,
    pub account_id: String,
    pub old_plan: String,
    pub new_plan: String,
    pub reason: String,
    pub asr: Option<f64>,
    pub acd_s: Option<f64>,
    pub sample_seizures: u64,
    pub window_secs: u64,
    pub decided_at: i64,
    pub source: String,
    pub actor: String,
}

impl From<&PlanChange> for PlanChangeRow {
    fn from(p: &PlanChange) -> Self {
        PlanChangeRow {
            change_id: p.change_id.clone(),
            account_id: p.account_id.clone(),
            old_plan: p.old_plan.clone(),
            new_plan: p.new_plan.clone(),
            reason: p.reason.clone(),
            asr: p.asr,
            acd_s: p.acd_s,
            sample_seizures: p.sample_seizures.max(0) as u64,
            window_secs: p.window_secs.max(0) as u64,
            decided_at: p.decided_at_ms,
            source: p.source.clone(),
            actor: p.actor.clone(),
        }
    }
}

fn sorted_map(m: &std::collections::HashMap<String, f64>) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `cdr.route_alerts`.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct RouteAlertRow {
    pub alert_id: String,
    pub trunk_id: String,
    pub breakout: String,
    pub window_start: i64,
    pub window_end: i64,
    pub patterns: Vec<String>,
    pub evidence: Vec<(String, f64)>,
    pub action: String,
    pub credited_calls: u64,
    pub credited_amount: i128,
    pub raised_at: i64,
}

impl RouteAlertRow {
    pub fn from_record(a: &RouteAlertEvent) -> Result<Self, BadDecimal> {
        Ok(RouteAlertRow {
            alert_id: a.alert_id.clone(),
            trunk_id: a.trunk_id.clone(),
            breakout: a.breakout.clone(),
            window_start: a.window_start_ms,
            window_end: a.window_end_ms,
            patterns: a.patterns.clone(),
            evidence: sorted_map(&a.evidence),
            action: a.action.clone(),
            credited_calls: a.credited_calls.max(0) as u64,
            credited_amount: dec18("credited_amount", &a.credited_amount)?,
            raised_at: a.raised_at_ms,
        })
    }
}

/// `cdr.route_status`.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct RouteStatusRow {
    pub event_id: String,
    pub trunk_id: String,
    pub breakout: String,
    pub status: String,
    pub reason: String,
    pub alert_id: Option<String>,
    pub actor: String,
    pub changed_at: i64,
}

impl From<&RouteStatusEvent> for RouteStatusRow {
    fn from(e: &RouteStatusEvent) -> Self {
        RouteStatusRow {
            event_id: e.event_id.clone(),
            trunk_id: e.trunk_id.clone(),
            breakout: e.breakout.clone(),
            status: e.status.clone(),
            reason: e.reason.clone(),
            alert_id: e.alert_id.clone(),
            actor: e.actor.clone(),
            changed_at: e.changed_at_ms,
        }
    }
}

/// `cdr.adjustments`.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct AdjustmentRow {
    pub adjustment_id: String,
    pub cdr_id: String,
    pub account_id: String,
    pub amount: i128,
    pub currency: String,
    pub reason: String,
    pub alert_id: Option<String>,
    pub call_setup_ts: i64,
    pub created_at: i64,
}

impl AdjustmentRow {
    pub fn from_record(a: &Adjustment) -> Result<Self, BadDecimal> {
        Ok(AdjustmentRow {
            adjustment_id: a.adjustment_id.clone(),
            cdr_id: a.cdr_id.clone(),
            account_id: a.account_id.clone(),
            amount: dec18("amount", &a.amount)?,
            currency: a.currency.clone(),
            reason: a.reason.clone(),
            alert_id: a.alert_id.clone(),
            call_setup_ts: a.call_setup_ts_ms,
            created_at: a.created_at_ms,
        })
    }
}

/// `cdr.account_alerts`.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct AccountAlertRow {
    pub alert_id: String,
    pub account_id: String,
    pub kind: String,
    pub declared: String,
    pub observed: String,
    pub evidence: Vec<(String, f64)>,
    pub window_start: i64,
    pub window_end: i64,
    pub raised_at: i64,
}

impl From<&AccountAlertEvent> for AccountAlertRow {
    fn from(a: &AccountAlertEvent) -> Self {
        AccountAlertRow {
            alert_id: a.alert_id.clone(),
            account_id: a.account_id.clone(),
            kind: a.kind.clone(),
            declared: a.declared.clone(),
            observed: a.observed.clone(),
            evidence: sorted_map(&a.evidence),
            window_start: a.window_start_ms,
            window_end: a.window_end_ms,
            raised_at: a.raised_at_ms,
        }
    }
}

/// Exact `Decimal` -> Decimal(38, 18) scaled integer.
pub fn decimal18(field: &'static str, d: Decimal) -> Result<i128, BadDecimal> {
    dec18(field, &d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_scale_exactly() {
        assert_eq!(dec18("a", "1").unwrap(), 1_000_000_000_000_000_000);
        assert_eq!(dec18("a", "0.0003").unwrap(), 300_000_000_000_000);
        assert_eq!(dec18("a", "").unwrap(), 0);
        // 28 s at $0.01/min = 0.004666.. : kept to 18 places, not cents.
        let v = dec18("a", "0.0046666666666666666666666667").unwrap();
        assert_eq!(v, 4_666_666_666_666_667);
        assert_eq!(from_dec18(300_000_000_000_000).to_string(), "0.0003");
        let e = dec18("amount", "12,5").unwrap_err();
        assert_eq!(e.field, "amount");
    }

    fn sample() -> RatedCdr {
        use cdr_model::call::*;
        RatedCdr {
            call: AssembledCall {
                cdr_id: "cdr-1".into(),
                call_id: "c1".into(),
                switch_id: "sw".into(),
                account_id: "acc-1001".into(),
                direction: "outbound".into(),
                cli: Some("+12125550100".into()),
                dialed: "442071234567".into(),
                trunk_id: Some("7".into()),
                setup_ts_ms: 1_780_000_000_000,
                progress_ts_ms: Some(1_780_000_001_000),
                progress_code: Some(183),
                answer_ts_ms: Some(1_780_000_003_000),
                end_ts_ms: Some(1_780_000_063_500),
                final_sip_code: Some(200),
                disposition: "answered".into(),
                duration_ms: 60_500,
                billable_seconds: 61,
                pdd_ms: Some(1000),
                headers: [("X-CWU-maxrate".to_string(), "0.5".to_string())].into(),
                source_ip: Some("10.0.0.1".into()),
                behind_nat: true,
                codec: Some("PCMU".into()),
                media: Some(Media {
                    mos: Some(4.1),
                    silence_ratio: Some(f64::NAN),
                    ..Default::default()
                }),
                flags: vec!["late_answer".into()],
                event_count: 4,
                assembled_at_ms: 1_780_000_070_000,
            },
            enrichment: Enrichment {
                cli_e164: Some("+12125550100".into()),
                cli_valid: true,
                dialed_e164: "+442071234567".into(),
                lrn_source: "dip".into(),
                lrn_fee: "0.0003".into(),
                callee_country: Some("GB".into()),
                flags: vec!["x".into()],
                ..Default::default()
            },
            rating: Rating {
                status: "rated".into(),
                plan: Some("standard".into()),
                deck_id: Some("standard-az-2026-01".into()),
                deck_version: 1,
                matched_prefix: Some("44".into()),
                destination: Some("United Kingdom".into()),
                rate_per_min: "0.0123".into(),
                billed_seconds: 61,
                increment: Some("1/1".into()),
                connection_fee: "0".into(),
                surcharge: "0".into(),
                surcharge_per_min: "0".into(),
                short_duration_surcharge: "0".into(),
                lrn_fee: "0.0003".into(),
                amount: "0.0128050000000000000001".into(),
                currency: "USD".into(),
                max_rate: Some("0.5".into()),
                rated_trunk: Some(7),
                ..Default::default()
            },
            detection: Some(cdr_model::call::Detection {
                fas_score: 0.25,
                fas_signals: vec!["early_media".into()],
                evaluated: true,
            }),
        }
    }

    /// Re-rating reads calls back from their rows: the row of the record
    /// read back is the row (NaN media and all), and the record keeps every
    /// field a row holds.
    #[test]
    fn a_row_reads_back_as_its_record() {
        let rec = sample();
        let row = RatedCdrRow::from_record(&rec).unwrap();
        let back = row.to_record();
        let again = RatedCdrRow::from_record(&back).unwrap();
        assert_eq!(format!("{row:?}"), format!("{again:?}"));
        assert_eq!(back.call.event_count, 4);
        assert_eq!(back.enrichment.lrn_fee, "0.0003");
        // Stored at 18 places: the 22nd is gone, the rest is exact.
        assert_eq!(back.rating.amount, "0.012805");
        assert_eq!(back.call.headers, rec.call.headers);
        // A re-rated row's version keeps its pipeline part.
        let mut r2 = row.clone();
        r2.version = cdr_model::call::rerated_version(row.version);
        assert_eq!(r2.to_record().call.event_count, 4);
        assert_eq!(cdr_model::call::rerate_generation(r2.version), 1);
        assert!(r2.version > cdr_model::call::row_version(i32::MAX, "cache"));
        // Without media columns, no media.
        let mut bare = rec.clone();
        bare.call.media = None;
        let r = RatedCdrRow::from_record(&bare).unwrap().to_record();
        assert_eq!(r.call.media, None);
    }
}
