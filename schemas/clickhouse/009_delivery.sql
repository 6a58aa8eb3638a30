-- Delivery hardening (issue 10).
-- Dead letters keep a bounded prefix of the original payload plus its full
-- length and SHA-256, so an oversized record is identifiable without
-- carrying megabytes through Kafka.
ALTER TABLE cdr.dead_letters ADD COLUMN IF NOT EXISTS payload_len UInt64 DEFAULT length(base64Decode(payload_b64));
ALTER TABLE cdr.dead_letters ADD COLUMN IF NOT EXISTS payload_sha256 String DEFAULT '';
ALTER TABLE cdr.dead_letters ADD COLUMN IF NOT EXISTS payload_truncated Bool DEFAULT false;

-- The sink sends an insert_deduplication_token derived from the rows of
-- each insert; non-replicated MergeTree tables honour it only with a
-- deduplication window. A batch retried after a lost acknowledgement is
-- then stored once.
ALTER TABLE cdr.rated_cdrs MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE cdr.kpi_minute MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE cdr.dead_letters MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE cdr.account_plan_changes MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE cdr.route_alerts MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE cdr.route_status MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE cdr.adjustments MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE cdr.account_alerts MODIFY SETTING non_replicated_deduplication_window = 10000;
