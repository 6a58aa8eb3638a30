//! Topic names and their partition counts: the one place services and the
//! local stack agree on them.

pub const CALL_EVENTS: &str = "call-events";
pub const CALL_EVENTS_DLQ: &str = "call-events.dlq";
pub const CALLS_ASSEMBLED: &str = "calls.assembled";
pub const CALLS_ENRICHED: &str = "calls.enriched";
pub const CDRS_RATED: &str = "cdrs.rated";
pub const CDRS_SCORED: &str = "cdrs.scored";
pub const KPI_MINUTE: &str = "kpi.minute";
pub const PIPELINE_DLQ: &str = "pipeline.dlq";

/// Every topic the pipeline uses with its partition count. Partition counts
/// bound consumer parallelism, so they are explicit rather than broker defaults.
pub const ALL: &[(&str, i32)] = &[
    (CALL_EVENTS, 4),
    (CALL_EVENTS_DLQ, 1),
    (CALLS_ASSEMBLED, 4),
    (CALLS_ENRICHED, 4),
    (CDRS_RATED, 4),
    (CDRS_SCORED, 4),
    (KPI_MINUTE, 2),
    (PIPELINE_DLQ, 1),
];
