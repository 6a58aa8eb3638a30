-- KPIs as a pure function of the calls (issue 11). The kpi service writes
-- one row per call (`kpi_calls`, id = cdr_id, version = the CDR's version)
-- instead of accumulating buckets in memory: buckets keyed by partition and
-- offset were counted again for every redelivered CDR (a kill -9 of the
-- assembler turned 15,000 calls into 19,201 seizures). `kpi_minute_final`
-- now sums the newest version of each call, so a redelivered, replayed or
-- re-rated call changes its own row and never adds one. The bucket id is
-- derived from the bucket's dimensions and minute only.
CREATE TABLE IF NOT EXISTS cdr.kpi_calls
(
    cdr_id         String,
    call_id        String,
    version        UInt64,
    minute         DateTime('UTC'),
    account_id     LowCardinality(String),
    trunk_id       LowCardinality(String),
    destination    LowCardinality(String),
    disposition    LowCardinality(String),
    answered       UInt8,
    busy           UInt8,
    no_answer      UInt8,
    failed         UInt8,
    cancelled      UInt8,
    stale          UInt8,
    ner_ok         UInt8,
    short_call     UInt8,
    answered_ms    Int64,
    pdd_ms         Nullable(Int64),
    billed_seconds Int64,
    amount         Decimal(38, 18),
    lrn_fee        Decimal(38, 18),
    mos            Nullable(Float64),
    jitter_ms      Nullable(Float64),
    loss_pct       Nullable(Float64)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(minute)
ORDER BY (account_id, cdr_id);

CREATE OR REPLACE VIEW cdr.kpi_calls_final AS
SELECT * FROM cdr.kpi_calls
ORDER BY cdr_id, version DESC
LIMIT 1 BY cdr_id;

-- pdd_p95_ms: nearest rank (ceil(0.95 n)-th smallest), as kpi::core::p95.
-- version: the calls in the bucket (kept for readers of the old table).
CREATE OR REPLACE VIEW cdr.kpi_minute_final AS
SELECT
    lower(hex(substring(SHA256(concat(toString(toUnixTimestamp(minute) * 1000), '\0',
        account_id, '\0', trunk_id, '\0', destination, '\0')), 1, 16))) AS bucket_id,
    minute, account_id, trunk_id, destination,
    toInt64(count()) AS seizures,
    toInt64(sum(answered)) AS answered,
    toInt64(sum(busy)) AS busy,
    toInt64(sum(no_answer)) AS no_answer,
    toInt64(sum(failed)) AS failed,
    toInt64(sum(cancelled)) AS cancelled,
    toInt64(sum(stale)) AS stale,
    toInt64(sum(answered_ms)) AS answered_ms,
    toInt64(sum(ifNull(pdd_ms, 0))) AS pdd_sum_ms,
    toInt64(count(pdd_ms)) AS pdd_count,
    toInt64(sum(short_call)) AS short_calls,
    toInt64(sum(billed_seconds)) AS billed_seconds,
    sum(amount) AS amount,
    toUInt64(count()) AS version,
    toInt64(sum(ner_ok)) AS ner_ok,
    toInt64(if(count(pdd_ms) = 0, 0,
        arrayElement(arraySort(groupArray(pdd_ms)),
                     toUInt64(ceil(count(pdd_ms) * 95 / 100))))) AS pdd_p95_ms,
    sum(ifNull(mos, 0)) AS mos_sum,
    toInt64(count(mos)) AS mos_count,
    sum(ifNull(jitter_ms, 0)) AS jitter_sum,
    toInt64(count(jitter_ms)) AS jitter_count,
    sum(ifNull(loss_pct, 0)) AS loss_sum,
    toInt64(count(loss_pct)) AS loss_count,
    sum(lrn_fee) AS lrn_fee
FROM cdr.kpi_calls_final
GROUP BY minute, account_id, trunk_id, destination;

-- The old bucket table goes; `kpi_minute` stays a name dashboards can read.
DROP TABLE IF EXISTS cdr.kpi_minute;

CREATE OR REPLACE VIEW cdr.kpi_minute AS
SELECT * FROM cdr.kpi_minute_final;
