-- The rated CDR records what priced it (issue 12): the number actually
-- matched (the LRN when ported), when the matched deck row took effect (its
-- own date, else its version's start), the OBR tier, the jurisdiction
-- applied, the trunk whose deck priced it, and the UK origin surcharge per minute. With deck_id,
-- deck_version and matched_prefix these name exactly one row of
-- rate_deck_rows (deploy/finance/rate_for_cdr.sql). Rows written before
-- this migration have NULL / 0.
ALTER TABLE cdr.rated_cdrs
    ADD COLUMN IF NOT EXISTS rated_number Nullable(String) AFTER matched_prefix,
    ADD COLUMN IF NOT EXISTS row_effective_from Nullable(DateTime64(3, 'UTC')) AFTER rated_number,
    ADD COLUMN IF NOT EXISTS obr_tier LowCardinality(Nullable(String)) AFTER row_effective_from,
    ADD COLUMN IF NOT EXISTS jurisdiction_applied Nullable(String) AFTER obr_tier,
    ADD COLUMN IF NOT EXISTS rated_trunk Nullable(UInt32) AFTER jurisdiction_applied,
    ADD COLUMN IF NOT EXISTS surcharge_per_min Decimal(38, 18) DEFAULT 0 AFTER surcharge;

-- A view's `SELECT *` is expanded when the view is created: re-create it so
-- finance sees the new columns (grants are by name and stay).
CREATE OR REPLACE VIEW cdr.rated_cdrs_final AS
SELECT *
FROM cdr.rated_cdrs
ORDER BY cdr_id, version DESC, inserted_at DESC
LIMIT 1 BY cdr_id;
