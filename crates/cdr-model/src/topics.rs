//! Topic names and their partition counts: the one place services and the
//! local stack agree on them.

pub const CALL_EVENTS: &str = "call-events";
/// Switch payloads as the switch sent them, one topic per vendor (the
/// ingest service's HTTP endpoint writes here; switches that publish to
/// Kafka themselves may too); the ingest adapter stage turns them into
/// `call-events`.
pub const RAW_FREESWITCH: &str = "raw.freeswitch";
pub const RAW_OPENSIPS: &str = "raw.opensips";
pub const RAW_ASTERISK: &str = "raw.asterisk";
pub const RAW_KAMAILIO: &str = "raw.kamailio";
pub const CALL_EVENTS_DLQ: &str = "call-events.dlq";
pub const CALLS_ASSEMBLED: &str = "calls.assembled";
pub const CALLS_ENRICHED: &str = "calls.enriched";
pub const CDRS_RATED: &str = "cdrs.rated";
pub const CDRS_SCORED: &str = "cdrs.scored";
/// One KPI record per call (key cdr_id); ClickHouse aggregates them.
pub const KPI_CALLS: &str = "kpi.calls";
pub const PIPELINE_DLQ: &str = "pipeline.dlq";
/// The enricher's dip ledger (compacted, key = 10-digit number, value
/// `lrn::LedgerRecord`): who paid each cache period's dip and its LRN.
/// Partition i holds the ledger of `calls.assembled` partition i, so it
/// must have as many partitions.
pub const LRN_DECISIONS: &str = "lrn.decisions";
/// Account rating-category changes (compacted, keyed by change id).
pub const ACCOUNTS_PLAN_CHANGES: &str = "accounts.plan-changes";
/// Account traffic-profile alerts (undeclared dialer traffic).
pub const ACCOUNTS_ALERTS: &str = "accounts.alerts";
/// Route FAS alerts (route pulled).
pub const ROUTES_ALERTS: &str = "routes.alerts";
/// Route status changes: pulls by the detector, restores by operators.
pub const ROUTES_STATUS: &str = "routes.status";
/// Credits and other adjustments referencing a CDR.
pub const BILLING_ADJUSTMENTS: &str = "billing.adjustments";

/// Checkpoints of long open calls (compacted, key cdr_id, tombstoned at
/// close); partition i holds the calls of `call-events` partition i, so it
/// must have as many partitions.
pub const ASSEMBLER_OPEN_CALLS: &str = "assembler.open-calls";

/// The rater's conformance windows (compacted, key account + slot,
/// tombstoned when a slot leaves the window); partition i holds the state
/// of the accounts on `calls.enriched` partition i, so it must have as many
/// partitions.
pub const RATER_CONFORMANCE: &str = "rater.conformance";

/// The detector's route windows and pulls (compacted, key = record key of
/// `detection::RouteRecord`); partition i holds the state of the breakouts
/// on `cdrs.rated` partition i, so it must have as many partitions.
pub const DETECTOR_ROUTES: &str = "detector.routes";

/// Topics whose records are state keyed by id (cleanup.policy=compact).
pub const COMPACTED: &[&str] = &[
    LRN_DECISIONS,
    ACCOUNTS_PLAN_CHANGES,
    ROUTES_STATUS,
    ASSEMBLER_OPEN_CALLS,
    RATER_CONFORMANCE,
    DETECTOR_ROUTES,
];

/// Every topic the pipeline uses with its partition count. Partition counts
/// bound consumer parallelism, so they are explicit rather than broker defaults.
pub const ALL: &[(&str, i32)] = &[
    (RAW_FREESWITCH, 4),
    (RAW_OPENSIPS, 4),
    (RAW_ASTERISK, 4),
    (RAW_KAMAILIO, 4),
    (CALL_EVENTS, 4),
    (ASSEMBLER_OPEN_CALLS, 4),
    (CALL_EVENTS_DLQ, 1),
    (CALLS_ASSEMBLED, 4),
    (CALLS_ENRICHED, 4),
    (RATER_CONFORMANCE, 4),
    (CDRS_RATED, 4),
    (DETECTOR_ROUTES, 4),
    (CDRS_SCORED, 4),
    (KPI_CALLS, 4),
    (PIPELINE_DLQ, 1),
    (LRN_DECISIONS, 4),
    (ACCOUNTS_PLAN_CHANGES, 1),
    (ACCOUNTS_ALERTS, 1),
    (ROUTES_ALERTS, 1),
    (ROUTES_STATUS, 1),
    (BILLING_ADJUSTMENTS, 2),
];
