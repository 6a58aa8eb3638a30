-- Re-rating (`cdrctl rerate`, issue 16). A re-rated call is written to
-- rated_cdrs again under its own cdr_id with a higher version (the
-- re-rating generation sits above the pipeline's bits), so the finance
-- views show the new amount; ReplacingMergeTree may merge the old row
-- away, so what it was is kept here, one row per call and re-rating, with
-- who, when and why. A re-rating that changes nothing writes nothing.
CREATE TABLE IF NOT EXISTS cdr.rerate_history
(
    run_id            String,
    rerated_at        DateTime64(3, 'UTC'),
    actor             String,
    reason            String,
    cdr_id            String,
    account_id        LowCardinality(String),
    setup_ts          DateTime64(3, 'UTC'),
    old_version       UInt64,
    new_version       UInt64,
    old_status        LowCardinality(String),
    new_status        LowCardinality(String),
    old_unrated_reason Nullable(String),
    new_unrated_reason Nullable(String),
    old_deck_id       Nullable(String),
    old_deck_version  Int64,
    new_deck_id       Nullable(String),
    new_deck_version  Int64,
    old_destination   Nullable(String),
    new_destination   Nullable(String),
    old_rate_per_min  Decimal(38, 18),
    new_rate_per_min  Decimal(38, 18),
    old_billed_seconds Int64,
    new_billed_seconds Int64,
    old_amount        Decimal(38, 18),
    new_amount        Decimal(38, 18),
    -- The credit that follows a credited call's amount (a FAS credit is
    -- minus the rated amount): minus the delta, 0 for uncredited calls.
    credit_correction Decimal(38, 18)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(setup_ts)
ORDER BY (account_id, cdr_id, new_version);

-- One row per run: the selection, the tables it rated with and its totals.
CREATE TABLE IF NOT EXISTS cdr.rerate_runs
(
    run_id         String,
    started_at     DateTime64(3, 'UTC'),
    finished_at    DateTime64(3, 'UTC'),
    actor          String,
    reason         String,
    selection      String,
    tables         String,
    calls_selected UInt64,
    calls_changed  UInt64,
    old_amount     Decimal(38, 18),
    new_amount     Decimal(38, 18),
    dry_run        Bool
)
ENGINE = ReplacingMergeTree
ORDER BY (started_at, run_id);

-- The diff of each run per account and breakout (the line an invoice
-- shows: the new destination, else the old one).
CREATE OR REPLACE VIEW cdr.rerate_diff AS
SELECT
    run_id,
    any(at) AS rerated_at,
    any(who) AS actor,
    any(why) AS reason,
    account_id,
    breakout,
    count() AS calls,
    sum(o) AS old_amount,
    sum(n) AS new_amount,
    sum(n) - sum(o) AS delta,
    sum(cc) AS credit_correction
FROM
(
    SELECT run_id, rerated_at AS at, actor AS who, reason AS why, account_id,
           coalesce(new_destination, old_destination, '(no destination)') AS breakout,
           old_amount AS o, new_amount AS n, credit_correction AS cc
    FROM cdr.rerate_history
    ORDER BY account_id, cdr_id, new_version, rerated_at DESC
    LIMIT 1 BY account_id, cdr_id, new_version
)
GROUP BY run_id, account_id, breakout;
