//! Enricher-specific metrics (`cdr_enricher_*`), registered in the stage
//! registry next to the runtime's consumed/produced/lag metrics.

use prometheus::{Counter, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct EnricherMetrics {
    /// Calls that paid the dip fee (first call of a number's cache period).
    pub lrn_dips: IntCounter,
    /// Calls that were cache hits in the ledger (fee 0).
    pub lrn_cache_hits: IntCounter,
    /// Lookups that ended `unavailable` (no LRN, fee 0, call flagged).
    pub lrn_unavailable: IntCounter,
    /// Calls not eligible for a dip (non-NANP, toll-free, unusable number).
    pub lrn_not_applicable: IntCounter,
    /// Re-delivered calls that found their own decision in the ledger.
    pub lrn_replayed: IntCounter,
    /// Dip holders demoted by a late earlier call and re-emitted as cache
    /// hits (their fee is then counted twice in `lrn_fees_usd_total`).
    pub lrn_demoted: IntCounter,
    /// Dip-ledger records written to `lrn.decisions` (incl. tombstones).
    pub ledger_records: IntCounter,
    /// Dip-ledger records read back when partitions were assigned.
    pub ledger_restored: IntCounter,
    /// Calls waiting for their number-period's dip holder to be fixed.
    pub held: IntGauge,
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
        let held = IntGauge::new(
            "cdr_enricher_lrn_held_calls",
            "Calls waiting for their number-period's dip holder to be fixed",
        )
        .unwrap();
        registry.register(Box::new(held.clone())).unwrap();
        EnricherMetrics {
            held,
            lrn_dips: c(
                "lrn_dips_total",
                "Calls charged the LRN dip fee (first call of a number's cache period)",
            ),
            lrn_cache_hits: c(
                "lrn_cache_hits_total",
                "Calls that were LRN cache hits (fee 0)",
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
                "Re-delivered calls that found their own LRN decision in the ledger",
            ),
            lrn_demoted: c(
                "lrn_demoted_total",
                "Dip holders demoted by a late call set up before them, re-emitted as cache hits",
            ),
            ledger_records: c(
                "lrn_ledger_records_total",
                "Dip-ledger records written to lrn.decisions (incl. tombstones)",
            ),
            ledger_restored: c(
                "lrn_ledger_restored_total",
                "Dip-ledger records read back on partition assignment",
            ),
            lrn_fees,
            calls_by_type,
        }
    }
}
