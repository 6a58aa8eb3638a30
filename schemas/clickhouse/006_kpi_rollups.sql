-- KPI columns added for issue 5 and the hour/day rollups.
-- ner_ok: answered + user busy + ring no answer + terminal rejections
-- (final answers that mean "the network delivered the call and the far end
-- refused it": 404, 410, 484, 485, 600, 603, 604; busy 486 and no answer
-- 480 are counted under their own dispositions); NER = ner_ok / seizures.
-- The list lives in services/kpi/src/core.rs (TERMINAL_REJECTIONS).
-- Media: sums and counts so averages combine exactly across buckets.
-- pdd_p95_ms is the bucket's own p95 (exact within the bucket); p95 over
-- longer spans is computed from rated_cdrs_final, since percentiles do not
-- add up.
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS ner_ok Int64 DEFAULT 0;
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS pdd_p95_ms Int64 DEFAULT 0;
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS mos_sum Float64 DEFAULT 0;
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS mos_count Int64 DEFAULT 0;
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS jitter_sum Float64 DEFAULT 0;
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS jitter_count Int64 DEFAULT 0;
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS loss_sum Float64 DEFAULT 0;
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS loss_count Int64 DEFAULT 0;
ALTER TABLE cdr.kpi_minute ADD COLUMN IF NOT EXISTS lrn_fee Decimal(38, 18) DEFAULT 0;

-- `SELECT *` views capture their columns when created: recreate.
CREATE OR REPLACE VIEW cdr.kpi_minute_final AS
SELECT * FROM cdr.kpi_minute
ORDER BY bucket_id, version DESC
LIMIT 1 BY bucket_id;

-- Rollups are views over the deduplicated minute rows rather than
-- materialized views: an MV aggregates each insert block as it arrives, so
-- a redelivered CDR or KPI bucket (at-least-once delivery) would be added
-- twice and ASR/ACD would drift. Summing the minute rows after LIMIT 1 BY
-- is exact, and the minute table is small (one row per key and minute).
CREATE OR REPLACE VIEW cdr.kpi_hour AS
SELECT
    toStartOfHour(minute) AS hour,
    account_id, trunk_id, destination,
    sum(seizures) AS seizures, sum(answered) AS answered,
    sum(busy) AS busy, sum(no_answer) AS no_answer, sum(failed) AS failed,
    sum(cancelled) AS cancelled, sum(stale) AS stale, sum(ner_ok) AS ner_ok,
    sum(answered_ms) AS answered_ms, sum(pdd_sum_ms) AS pdd_sum_ms,
    sum(pdd_count) AS pdd_count, sum(short_calls) AS short_calls,
    sum(billed_seconds) AS billed_seconds, sum(amount) AS amount,
    sum(lrn_fee) AS lrn_fee,
    sum(mos_sum) AS mos_sum, sum(mos_count) AS mos_count,
    sum(jitter_sum) AS jitter_sum, sum(jitter_count) AS jitter_count,
    sum(loss_sum) AS loss_sum, sum(loss_count) AS loss_count,
    if(seizures = 0, 0, answered / seizures) AS asr,
    if(answered = 0, 0, answered_ms / 1000 / answered) AS acd_s,
    if(seizures = 0, 0, ner_ok / seizures) AS ner,
    if(pdd_count = 0, 0, pdd_sum_ms / pdd_count) AS pdd_mean_ms
FROM cdr.kpi_minute_final
GROUP BY hour, account_id, trunk_id, destination;

CREATE OR REPLACE VIEW cdr.kpi_day AS
SELECT
    toDate(hour) AS day,
    account_id, trunk_id, destination,
    sum(seizures) AS seizures, sum(answered) AS answered,
    sum(busy) AS busy, sum(no_answer) AS no_answer, sum(failed) AS failed,
    sum(cancelled) AS cancelled, sum(stale) AS stale, sum(ner_ok) AS ner_ok,
    sum(answered_ms) AS answered_ms, sum(pdd_sum_ms) AS pdd_sum_ms,
    sum(pdd_count) AS pdd_count, sum(short_calls) AS short_calls,
    sum(billed_seconds) AS billed_seconds, sum(amount) AS amount,
    sum(lrn_fee) AS lrn_fee,
    sum(mos_sum) AS mos_sum, sum(mos_count) AS mos_count,
    sum(jitter_sum) AS jitter_sum, sum(jitter_count) AS jitter_count,
    sum(loss_sum) AS loss_sum, sum(loss_count) AS loss_count,
    if(seizures = 0, 0, answered / seizures) AS asr,
    if(answered = 0, 0, answered_ms / 1000 / answered) AS acd_s,
    if(seizures = 0, 0, ner_ok / seizures) AS ner,
    if(pdd_count = 0, 0, pdd_sum_ms / pdd_count) AS pdd_mean_ms
FROM cdr.kpi_hour
GROUP BY day, account_id, trunk_id, destination;
