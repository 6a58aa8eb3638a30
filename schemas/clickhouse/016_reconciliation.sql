-- Carrier CDR reconciliation (`cdrctl reconcile`, issue 16): every row of
-- a carrier's CDR file and every one of our calls in the period, once per
-- run, with what was found (matched, duration_mismatch, cost_mismatch,
-- only_ours, only_theirs, rejected). difference = their cost - our amount
-- (an absent side counts 0). Each run is its own report: running the same
-- file again adds a new run and changes no earlier one.
CREATE TABLE IF NOT EXISTS cdr.reconciliation
(
    run_id            String,
    carrier           LowCardinality(String),
    reconciled_at     DateTime64(3, 'UTC'),
    status            LowCardinality(String),
    matched_on        LowCardinality(String),
    their_line        UInt64,
    cdr_id            String,
    call_id           String,
    called            String,
    our_start         Nullable(DateTime64(3, 'UTC')),
    their_start       Nullable(DateTime64(3, 'UTC')),
    our_duration_ms   Int64,
    their_duration_ms Int64,
    our_amount        Decimal(38, 18),
    their_cost        Nullable(Decimal(38, 18)),
    difference        Decimal(38, 18),
    detail            String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(reconciled_at)
ORDER BY (carrier, run_id, status, their_line, cdr_id);

-- One row per run: both sides' calls, minutes and money, the count per
-- status and the disputed amount (the sum of `difference` over every row
-- that is not matched).
CREATE TABLE IF NOT EXISTS cdr.reconciliation_runs
(
    run_id            String,
    carrier           LowCardinality(String),
    file              String,
    file_sha256       String,
    reconciled_at     DateTime64(3, 'UTC'),
    period_from       DateTime64(3, 'UTC'),
    period_to         DateTime64(3, 'UTC'),
    tolerances        String,
    actor             String,
    our_calls         UInt64,
    their_calls       UInt64,
    our_seconds       Int64,
    their_seconds     Int64,
    our_amount        Decimal(38, 18),
    their_cost        Decimal(38, 18),
    matched           UInt64,
    duration_mismatch UInt64,
    cost_mismatch     UInt64,
    only_ours         UInt64,
    only_theirs       UInt64,
    rejected          UInt64,
    disputed_amount   Decimal(38, 18)
)
ENGINE = ReplacingMergeTree
ORDER BY (carrier, reconciled_at, run_id);
