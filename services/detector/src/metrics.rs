//! The detector's own Prometheus metrics (next to the stage metrics).

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct DetectorMetrics {
    pub suspect_calls: IntCounter,
    pub signals: IntCounterVec,
    pub route_alerts: IntCounter,
    pub credits: IntCounter,
    pub restores: IntCounter,
    pub state_records: IntCounter,
}

impl DetectorMetrics {
    pub fn register(r: &Registry) -> anyhow::Result<Self> {
        let m = DetectorMetrics {
            suspect_calls: IntCounter::new(
                "cdr_detector_fas_suspect_calls_total",
                "Calls whose own FAS score reached the suspect threshold",
            )?,
            signals: IntCounterVec::new(
                Opts::new(
                    "cdr_detector_fas_signals_total",
                    "FAS signals fired, by signal",
                ),
                &["signal"],
            )?,
            route_alerts: IntCounter::new(
                "cdr_detector_route_alerts_total",
                "Routes pulled for FAS patterns",
            )?,
            credits: IntCounter::new(
                "cdr_detector_fas_credits_total",
                "FAS credits (adjustments) emitted",
            )?,
            restores: IntCounter::new(
                "cdr_detector_route_restores_total",
                "Operator route restores applied",
            )?,
            state_records: IntCounter::new(
                "cdr_detector_state_records_total",
                "Route-window state records written to detector.routes",
            )?,
        };
        r.register(Box::new(m.suspect_calls.clone()))?;
        r.register(Box::new(m.signals.clone()))?;
        r.register(Box::new(m.route_alerts.clone()))?;
        r.register(Box::new(m.credits.clone()))?;
        r.register(Box::new(m.restores.clone()))?;
        r.register(Box::new(m.state_records.clone()))?;
        Ok(m)
    }
}
