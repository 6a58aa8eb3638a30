-- Delivery hardening (issue 10).
-- Dead letters keep a bounded prefix of the original payload plus its full
-- length and SHA-256, so an oversized record is identifiable without
-- carrying megabytes through Kafka.
ALTER TABLE cdr.dead_letters ADD COLUMN IF NOT EXISTS payload_len UInt64 DEFAULT length(base64Decode(payload_b64));
ALTER TABLE cdr.dead_letters ADD COLUMN IF NOT EXISTS payload_sha256 String DEFAULT '';
ALTER TABLE cdr.dead_letters ADD COLUMN IF NOT EXISTS payload_truncated Bool DEFAULT false;
