-- Dead letters sent through again (`cdrctl dlq replay`): one row per replay
-- of a dead letter, with where its original bytes went. A dead letter with
-- a row here is "replayed"; replay skips it unless asked to send it again.
-- The replayed record keeps its own content, so its ids (event_id, cdr_id)
-- are the ones it would have had: replaying twice bills once.
CREATE TABLE IF NOT EXISTS cdr.dead_letter_replays
(
    id          String,
    replayed_at DateTime64(3, 'UTC'),
    topic       LowCardinality(String),
    partition   Int32,
    offset      Int64,
    actor       String
)
ENGINE = MergeTree
ORDER BY (id, replayed_at);
