//! Pure KPI classification: what one scored CDR contributes to the KPIs
//! (seizure, disposition, NER, short call, PDD, media, billed seconds,
//! money), as a [`KpiCall`] keyed by the call's own id.
//!
//! Nothing here accumulates: buckets are sums over the deduplicated
//! per-call rows (ClickHouse `kpi_minute_final`), so a CDR delivered twice,
//! replayed after a crash or processed by another instance after a
//! rebalance produces the same row and changes no bucket.

use std::str::FromStr;

use cdr_model::call::{Disposition, KpiCall, RatedCdr};
use rust_decimal::Decimal;

#[derive(Debug, Clone)]
pub struct KpiConfig {
    /// Answered calls shorter than this count as short calls.
    pub short_call_ms: i64,
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            short_call_ms: 6_000,
        }
    }
}

/// The minute a CDR counts in: its hangup minute, else its setup minute.
pub fn minute_of(cdr: &RatedCdr) -> i64 {
    let t = cdr.call.end_ts_ms.unwrap_or(cdr.call.setup_ts_ms);
    t - t.rem_euclid(60_000)
}

/// Final SIP answers that mean the network delivered the call to the far
/// end, which rejected it (number gone, address incomplete, busy or
/// declined everywhere). With answered, user busy and ring-no-answer they
/// make up the NER numerator (ITU-T E.425 / GSMA IR.42); network failures
/// (5xx, 408) and caller abandons (487) do not.
pub const TERMINAL_REJECTIONS: &[i32] = &[404, 410, 484, 485, 600, 603, 604];

/// Nearest-rank 95th percentile (0 for no samples); the SQL of
/// `kpi_minute_final` computes the same rank.
pub fn p95(values: &[i64]) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = (v.len() * 95).div_ceil(100);
    v[rank.max(1) - 1]
}

/// Whether a call counts towards NER.
pub fn ner_ok(cdr: &RatedCdr) -> bool {
    match Disposition::parse(&cdr.call.disposition) {
        Some(Disposition::Answered | Disposition::Busy | Disposition::NoAnswer) => true,
        Some(Disposition::Failed) | None => cdr
            .call
            .final_sip_code
            .is_some_and(|c| TERMINAL_REJECTIONS.contains(&c)),
        _ => false,
    }
}

/// Why a CDR cannot become a KPI row (a money field that is not a decimal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cdr {cdr_id}: field `{field}` is not a decimal: `{value}`")]
pub struct BadMoney {
    pub cdr_id: String,
    pub field: &'static str,
    pub value: String,
}

fn money(cdr: &RatedCdr, field: &'static str, value: &str) -> Result<Decimal, BadMoney> {
    Decimal::from_str(value).map_err(|_| BadMoney {
        cdr_id: cdr.call.cdr_id.clone(),
        field,
        value: value.chars().take(64).collect(),
    })
}

/// One CDR's KPI contribution. An unknown disposition counts as failed.
pub fn kpi_call(cdr: &RatedCdr, cfg: &KpiConfig) -> Result<KpiCall, BadMoney> {
    let c = &cdr.call;
    let amount = money(cdr, "rating.amount", &cdr.rating.amount)?;
    let lrn_fee = money(cdr, "rating.lrn_fee", &cdr.rating.lrn_fee)?;
    let disp = Disposition::parse(&c.disposition).unwrap_or(Disposition::Failed);
    let answered = disp == Disposition::Answered;
    let media = c.media.as_ref();
    Ok(KpiCall {
        cdr_id: c.cdr_id.clone(),
        call_id: c.call_id.clone(),
        version: cdr_model::call::row_version(c.event_count, &cdr.enrichment.lrn_source) as i64,
        minute_ms: minute_of(cdr),
        account_id: c.account_id.clone(),
        trunk_id: c.trunk_id.clone().unwrap_or_default(),
        destination: cdr
            .rating
            .destination
            .clone()
            .unwrap_or_else(|| "unrated".to_string()),
        disposition: disp.as_str().to_string(),
        answered,
        busy: disp == Disposition::Busy,
        no_answer: disp == Disposition::NoAnswer,
        failed: disp == Disposition::Failed,
        cancelled: disp == Disposition::Cancelled,
        stale: disp == Disposition::Stale,
        ner_ok: ner_ok(cdr),
        short_call: answered && c.duration_ms < cfg.short_call_ms,
        answered_ms: if answered { c.duration_ms } else { 0 },
        pdd_ms: c.pdd_ms,
        billed_seconds: cdr.rating.billed_seconds,
        amount: amount.normalize().to_string(),
        lrn_fee: lrn_fee.normalize().to_string(),
        mos: media.and_then(|m| m.mos),
        jitter_ms: media.and_then(|m| m.jitter_ms),
        loss_pct: media.and_then(|m| m.loss_pct),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_nearest_rank() {
        assert_eq!(p95(&[]), 0);
        assert_eq!(p95(&[7]), 7);
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(p95(&v), 95);
        let v: Vec<i64> = (1..=20).rev().collect();
        assert_eq!(p95(&v), 19);
    }
}
