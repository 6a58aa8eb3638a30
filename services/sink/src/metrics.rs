//! Sink-specific metrics.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct SinkMetrics {
    pub rows_inserted: IntCounterVec,
    pub insert_retries: IntCounter,
}

impl SinkMetrics {
    pub fn register(registry: &Registry) -> Self {
        let rows_inserted = IntCounterVec::new(
            Opts::new(
                "cdr_sink_rows_inserted_total",
                "Rows acknowledged by ClickHouse, by table",
            ),
            &["table"],
        )
        .unwrap();
        let insert_retries = IntCounter::new(
            "cdr_sink_insert_retries_total",
            "ClickHouse insert attempts that failed and were retried",
        )
        .unwrap();
        registry.register(Box::new(rows_inserted.clone())).unwrap();
        registry.register(Box::new(insert_retries.clone())).unwrap();
        SinkMetrics {
            rows_inserted,
            insert_retries,
        }
    }
}
