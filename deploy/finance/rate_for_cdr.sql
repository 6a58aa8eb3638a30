-- The rate applied to one CDR: the rating recorded on the CDR next to the
-- deck row(s) it points at (rated_cdrs_final deck_id / deck_version /
-- matched_prefix = rate_deck_rows deck_id / deck_version / prefix).
-- Parameter: {cdr_id:String}.
-- A prefix can occur more than once in one deck version (OBR EEA/ROW tiers,
-- per-trunk rows, effective-dated rows), and the CDR does not record which
-- row (scope / source_line) matched, so every candidate is listed;
-- `rate_matches` marks the row(s) whose rate equals the applied rate
-- (interstate or intrastate) and `effective_at_answer` those effective at
-- the answer time. No row at all means the deck version was never
-- published (`cdrctl deck publish`) or the call was not rated.
SELECT
    c.cdr_id AS cdr_id,
    c.account_id AS account_id,
    c.setup_ts AS setup_ts,
    c.answer_ts AS answer_ts,
    c.rating_status AS rating_status,
    c.plan AS plan,
    c.deck_id AS deck_id,
    c.deck_version AS deck_version,
    c.matched_prefix AS matched_prefix,
    c.destination AS cdr_destination,
    c.rate_per_min AS applied_rate_per_min,
    c.increment AS applied_increment,
    c.billed_seconds AS billed_seconds,
    c.amount AS amount,
    r.scope AS deck_scope,
    r.destination AS deck_destination,
    r.rate_per_min AS deck_rate_per_min,
    r.rate_intrastate AS deck_rate_intrastate,
    r.increment AS deck_increment,
    r.connection_fee AS deck_connection_fee,
    r.min_billed_seconds AS deck_min_billed_seconds,
    r.short_surcharge AS deck_short_surcharge,
    r.short_threshold_s AS deck_short_threshold_s,
    r.row_effective_from AS row_effective_from,
    r.row_effective_to AS row_effective_to,
    r.trunk AS deck_trunk,
    r.obr_tier AS deck_obr_tier,
    r.source_line AS deck_source_line,
    r.published_at AS deck_published_at,
    r.prefix != '' AND (c.rate_per_min = r.rate_per_min
                        OR c.rate_per_min = ifNull(r.rate_intrastate, r.rate_per_min)) AS rate_matches,
    r.prefix != ''
        AND (r.row_effective_from IS NULL OR r.row_effective_from <= c.answer_ts)
        AND (r.row_effective_to IS NULL OR c.answer_ts < r.row_effective_to) AS effective_at_answer
FROM
(
    SELECT *
    FROM cdr.rated_cdrs_final
    WHERE cdr_id = {cdr_id:String}
) AS c
LEFT JOIN
(
    SELECT *
    FROM cdr.rate_deck_rows
    ORDER BY published_at DESC
    LIMIT 1 BY deck_id, deck_version, scope, prefix, source_line
) AS r ON r.deck_id = c.deck_id AND r.deck_version = c.deck_version AND r.prefix = c.matched_prefix
ORDER BY rate_matches DESC, effective_at_answer DESC, deck_scope, deck_source_line
