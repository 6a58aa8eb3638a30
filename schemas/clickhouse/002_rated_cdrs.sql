-- One row per call (answered or not) with every input field, enrichment,
-- rating and detection. Redelivered copies share cdr_id; ReplacingMergeTree
-- keeps the copy with the highest version (distinct events folded in), and
-- finance reads the FINAL-free view rated_cdrs_final, which collapses copies
-- at query time with LIMIT 1 BY.
-- Money: Decimal(38, 18), unrounded per call; invoices round totals only.
CREATE TABLE IF NOT EXISTS cdr.rated_cdrs
(
    cdr_id                   String,
    version                  UInt64,
    call_id                  String,
    switch_id                LowCardinality(String),
    account_id               LowCardinality(String),
    direction                LowCardinality(String),
    cli                      Nullable(String),
    dialed                   String,
    trunk_id                 Nullable(String),
    setup_ts                 DateTime64(3, 'UTC'),
    progress_ts              Nullable(DateTime64(3, 'UTC')),
    progress_code            Nullable(Int32),
    answer_ts                Nullable(DateTime64(3, 'UTC')),
    end_ts                   Nullable(DateTime64(3, 'UTC')),
    final_sip_code           Nullable(Int32),
    disposition              LowCardinality(String),
    duration_ms              Int64,
    billable_seconds         Int64,
    pdd_ms                   Nullable(Int64),
    headers                  Map(String, String),
    source_ip                Nullable(String),
    behind_nat               Bool,
    codec                    Nullable(String),
    rtp_rx_packets           Nullable(Int64),
    rtp_rx_before_answer     Nullable(Int64),
    silence_ratio            Nullable(Float64),
    mos                      Nullable(Float64),
    jitter_ms                Nullable(Float64),
    loss_pct                 Nullable(Float64),
    assembly_flags           Array(String),
    assembled_at             DateTime64(3, 'UTC'),
    cli_e164                 Nullable(String),
    cli_valid                Bool,
    dialed_e164              String,
    plan_selector            Nullable(String),
    trunk_selector           Nullable(String),
    lrn                      Nullable(String),
    ported                   Bool,
    lrn_source               LowCardinality(String),
    lrn_fee                  Decimal(38, 18),
    caller_country           Nullable(String),
    callee_country           Nullable(String),
    callee_number_type       Nullable(String),
    jurisdiction             Nullable(String),
    enrichment_flags         Array(String),
    rating_status            LowCardinality(String),
    unrated_reason           Nullable(String),
    plan                     Nullable(String),
    deck_id                  Nullable(String),
    deck_version             Int64,
    matched_prefix           Nullable(String),
    destination              Nullable(String),
    rate_per_min             Decimal(38, 18),
    billed_seconds           Int64,
    increment                Nullable(String),
    connection_fee           Decimal(38, 18),
    surcharge                Decimal(38, 18),
    short_duration_surcharge Decimal(38, 18),
    amount                   Decimal(38, 18),
    currency                 LowCardinality(String),
    rating_flags             Array(String),
    max_rate                 Nullable(Decimal(38, 18)),
    max_route                Nullable(Int32),
    fas_score                Float64,
    fas_signals              Array(String),
    inserted_at              DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(setup_ts)
ORDER BY (account_id, cdr_id);

CREATE VIEW IF NOT EXISTS cdr.rated_cdrs_final AS
SELECT *
FROM cdr.rated_cdrs
ORDER BY cdr_id, version DESC, inserted_at DESC
LIMIT 1 BY cdr_id;
