//! Enricher-specific metrics (`cdr_enricher_*`), registered in the stage
//! registry next to the runtime's consumed/produced/lag metrics.

use prometheus::{Counter, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct EnricherMetrics {
    /// Dips performed (each charged the dip fee).
    pub lrn_dips: IntCounter,
    /// LRN answers served from the cache (fee 0), including coalesced waiters.
    pub lrn_cache_hits: IntCounter,
    /// Lookups that ended `unavailable` (no LRN, fee 0, call flagged).
    pub lrn_unavailable: IntCounter,
    /// Calls not eligible for a dip (non-NANP, toll-free, unusable number).
    pub lrn_not_applicable: IntCounter,
    /// Re-delivered calls answered from the per-cdr_id decision memo (no new fee).
    pub lrn_replayed: IntCounter,
    /// Sum of dip fees charged (USD).
    pub lrn_fees: Counter,
    /// Calls by callee number type.
    pub calls_by_type: IntCounterVec,
}

impl EnricherMetrics {
    pub fn new(registry: &Registry) -> Self {
        let c = |name: &str, help: &str| {
            let m = IntCounter::new(format!("cdr_enricher_{name}"), help).unwrap();
            registry.register(Box::new(m.clone())).unwrap();
            m
        };
        let lrn_fees = Counter::new(
            "cdr_enricher_lrn_fees_usd_total",
            "Sum of LRN dip fees charged, USD",
        )
        .unwrap();
        registry.register(Box::new(lrn_fees.clone())).unwrap();
        let calls_by_type = IntCounterVec::new(
            Opts::new(
                "cdr_enricher_calls_by_number_type_total",
                "Enriched calls by callee number type",
            ),
            &["type"],
        )
        .unwrap();
        registry.register(Box::new(calls_by_type.clone())).unwrap();
        EnricherMetrics {
            lrn_dips: c("lrn_dips_total", "LRN dips performed (each charged)"),
            lrn_cache_hits: c(
                "lrn_cache_hits_total",
                "LRN answers served from the cache (fee 0)",
            ),
            lrn_unavailable: c(
                "lrn_unavailable_total",
                "LRN lookups that failed until the deadline (no LRN, fee 0, flagged)",
            ),
            lrn_not_applicable: c(
                "lrn_not_applicable_total",
                "Calls not eligible for an LRN dip (non-NANP, toll-free, unusable number)",
            ),
            lrn_replayed: c(
                "lrn_replayed_total",
                "Re-delivered calls given their earlier LRN decision (no new fee)",
            ),
            lrn_fees,
            calls_by_type,
        }
    }
}
