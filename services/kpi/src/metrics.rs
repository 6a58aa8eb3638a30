//! KPI-service metrics.

use prometheus::{IntGauge, Registry};

#[derive(Clone)]
pub struct KpiMetrics {
    pub buckets: IntGauge,
}

impl KpiMetrics {
    pub fn register(registry: &Registry) -> Self {
        let buckets =
            IntGauge::new("cdr_kpi_buckets", "Per-minute buckets held in memory").unwrap();
        registry.register(Box::new(buckets.clone())).unwrap();
        KpiMetrics { buckets }
    }
}
