-- Per-minute KPI buckets written by the kpi service (minute of hangup),
-- per account x trunk x destination. Several bucket rows may exist for one
-- minute and key (one per input partition, plus rows for late CDRs): queries
-- SUM them. A recomputed copy of the same bucket_id replaces the older one
-- (version = seizures folded in).
CREATE TABLE IF NOT EXISTS cdr.kpi_minute
(
    bucket_id      String,
    minute         DateTime('UTC'),
    account_id     LowCardinality(String),
    trunk_id       LowCardinality(String),
    destination    LowCardinality(String),
    seizures       Int64,
    answered       Int64,
    busy           Int64,
    no_answer      Int64,
    failed         Int64,
    cancelled      Int64,
    stale          Int64,
    answered_ms    Int64,
    pdd_sum_ms     Int64,
    pdd_count      Int64,
    short_calls    Int64,
    billed_seconds Int64,
    amount         Decimal(38, 18),
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(minute)
ORDER BY (account_id, trunk_id, destination, minute, bucket_id);

CREATE VIEW IF NOT EXISTS cdr.kpi_minute_final AS
SELECT * FROM cdr.kpi_minute
ORDER BY bucket_id, version DESC
LIMIT 1 BY bucket_id;
