-- Rate decks as imported, so finance can see the rate applied to any CDR:
-- rated_cdrs (deck_id, deck_version, matched_prefix) joins rate_deck_rows.
-- `cdrctl deck publish` writes them from the same files the rater loads
-- (deploy/local/data/decks.toml); re-publishing the same deck replaces its
-- rows (ReplacingMergeTree on the natural key), never duplicates them.
CREATE TABLE IF NOT EXISTS cdr.rate_decks
(
    deck_id        String,
    deck_version   Int64,
    -- az:standard | az:premium | az:pstn | az:retail | us48:<plan> | trunk:<n>
    scope          LowCardinality(String),
    format         LowCardinality(String),
    source_file    String,
    effective_from DateTime64(3, 'UTC'),
    effective_to   Nullable(DateTime64(3, 'UTC')),
    rows           UInt64,
    rejected_rows  UInt64,
    content_sha256 String,
    published_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(published_at)
ORDER BY (deck_id, deck_version, scope);

CREATE TABLE IF NOT EXISTS cdr.rate_deck_rows
(
    deck_id            String,
    deck_version       Int64,
    scope              LowCardinality(String),
    prefix             String,
    destination        String,
    rate_per_min       Decimal(38, 18),
    rate_intrastate    Nullable(Decimal(38, 18)),
    increment          LowCardinality(String),
    connection_fee     Decimal(38, 18),
    min_billed_seconds UInt32,
    short_surcharge    Decimal(38, 18),
    short_threshold_s  UInt32,
    row_effective_from Nullable(DateTime64(3, 'UTC')),
    row_effective_to   Nullable(DateTime64(3, 'UTC')),
    trunk              Nullable(UInt32),
    trunk_plan         Nullable(String),
    obr_tier           Nullable(String),
    source_line        UInt64,
    published_at       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(published_at)
ORDER BY (deck_id, deck_version, scope, prefix, source_line);
