//! Ingest-specific metrics (`cdr_ingest_*`), registered in the stage
//! registry next to the runtime's consumed/produced/lag metrics, so one
//! scrape of the metrics port shows both halves.

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct IngestMetrics {
    /// HTTP requests by route format and status code.
    pub requests: IntCounterVec,
    /// Events produced to call-events, by format.
    pub events: IntCounterVec,
    /// Raw records understood but reporting nothing billable (a B-leg under
    /// the A-leg rule, an event type the pipeline does not use), by format.
    pub ignored: IntCounterVec,
    /// Raw records dead-lettered, by format and reason.
    pub rejected: IntCounterVec,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> Self {
        let v = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(format!("cdr_ingest_{name}"), help), labels)
                .expect("valid metric");
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
            m
        };
        IngestMetrics {
            requests: v(
                "http_requests_total",
                "HTTP requests by format and status",
                &["format", "status"],
            ),
            events: v(
                "events_total",
                "Switch events produced to call-events, by format",
                &["format"],
            ),
            ignored: v(
                "ignored_total",
                "Raw records with nothing billable (e.g. a B-leg under the A-leg rule), by format",
                &["format"],
            ),
            rejected: v(
                "rejected_total",
                "Raw records dead-lettered, by format and reason",
                &["format", "reason"],
            ),
        }
    }
}
