//! Sink-specific metrics.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct SinkMetrics {
    pub rows_inserted: IntCounterVec,
    pub insert_retries: IntCounterVec,
    pub insert_splits: IntCounter,
    pub rows_refused: IntCounterVec,
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
        let insert_retries = IntCounterVec::new(
            Opts::new(
                "cdr_sink_insert_retries_total",
                "ClickHouse insert attempts that failed transiently and were retried, by table",
            ),
            &["table"],
        )
        .unwrap();
        let insert_splits = IntCounter::new(
            "cdr_sink_insert_splits_total",
            "Inserts split in two to isolate rows ClickHouse refused",
        )
        .unwrap();
        let rows_refused = IntCounterVec::new(
            Opts::new(
                "cdr_sink_rows_refused_total",
                "Rows ClickHouse refused for their content (dead-lettered), by table",
            ),
            &["table"],
        )
        .unwrap();
        registry.register(Box::new(rows_inserted.clone())).unwrap();
        registry.register(Box::new(insert_retries.clone())).unwrap();
        registry.register(Box::new(insert_splits.clone())).unwrap();
        registry.register(Box::new(rows_refused.clone())).unwrap();
        SinkMetrics {
            rows_inserted,
            insert_retries,
            insert_splits,
            rows_refused,
        }
    }
}
