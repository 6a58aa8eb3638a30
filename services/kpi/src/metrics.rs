//! KPI-service metrics (the stage runtime's counters cover the rest).

use prometheus::{IntCounter, Registry};

#[derive(Clone)]
pub struct KpiMetrics {
    /// Answered calls seen (copies included: a replay counts again here,
    /// never in ClickHouse).
    pub answered: IntCounter,
}

impl KpiMetrics {
    pub fn register(registry: &Registry) -> Self {
        let answered = IntCounter::new(
            "cdr_kpi_answered_seen_total",
            "Answered CDRs turned into KPI rows (redelivered copies included)",
        )
        .unwrap();
        registry.register(Box::new(answered.clone())).unwrap();
        KpiMetrics { answered }
    }
}
