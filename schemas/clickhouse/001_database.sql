-- Database and migration ledger.
CREATE DATABASE IF NOT EXISTS cdr;

CREATE TABLE IF NOT EXISTS cdr.schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version;
