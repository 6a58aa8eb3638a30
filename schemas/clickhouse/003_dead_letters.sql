-- Dead letters from every service (the sink mirrors the DLQ topics here so
-- the NOC and the run report can count them by reason). One row per source
-- record: the id derives from topic/partition/offset/reason.
CREATE TABLE IF NOT EXISTS cdr.dead_letters
(
    id          String,
    service     LowCardinality(String),
    reason      LowCardinality(String),
    field       Nullable(String),
    message     String,
    topic       LowCardinality(String),
    partition   Int32,
    offset      Int64,
    key         Nullable(String),
    payload_b64 String,
    at          DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY id;

CREATE VIEW IF NOT EXISTS cdr.dead_letters_final AS
SELECT * FROM cdr.dead_letters LIMIT 1 BY id;
