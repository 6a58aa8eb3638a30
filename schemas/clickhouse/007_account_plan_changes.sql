-- Wholesale -> retail downgrades (automatic, by the rater's conformance
-- monitor) and operator plan changes (`cdrctl account set-plan`), mirrored
-- from the compacted topic accounts.plan-changes. change_id is
-- deterministic, so a re-emitted decision replaces its row.
CREATE TABLE IF NOT EXISTS cdr.account_plan_changes
(
    change_id       String,
    account_id      LowCardinality(String),
    old_plan        LowCardinality(String),
    new_plan        LowCardinality(String),
    reason          String,
    asr             Nullable(Float64),
    acd_s           Nullable(Float64),
    sample_seizures UInt64,
    window_secs     UInt64,
    decided_at      DateTime64(3, 'UTC'),
    source          LowCardinality(String),
    actor           String,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (account_id, decided_at, change_id);

-- Current rating category per account (the latest change wins). argMax is
-- idempotent under duplicate rows, so a plain view is exact.
CREATE OR REPLACE VIEW cdr.account_plan_current AS
SELECT
    account_id,
    argMax(new_plan, (decided_at, change_id)) AS plan,
    max(decided_at) AS since,
    argMax(reason, (decided_at, change_id)) AS reason
FROM cdr.account_plan_changes
GROUP BY account_id;
