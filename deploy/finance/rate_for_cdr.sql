-- The deck row that priced one CDR, and what the CDR recorded about it.
-- Parameter: {cdr_id:String}.
-- A rated CDR records every pricing input (migration 012): deck id and
-- version (of the version that published the row: an earlier version's
-- row stays in force until a later row for its prefix starts), matched
-- prefix, the row's effective date (its own, else its version's start),
-- OBR tier and per-trunk deck. Together they name exactly one row of
-- rate_deck_rows (the parser refuses two rows with the same prefix, trunk,
-- tier and start), so this returns one row per CDR: the CDR's columns and
-- the deck row's. The deck columns are empty when the call was not rated
-- or the deck version was never published (`cdrctl deck publish`).
-- `rate_matches` checks the applied rate against the row (interstate or,
-- for US48 rows, intrastate).
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
    c.row_effective_from AS row_effective_from,
    c.obr_tier AS obr_tier,
    c.rated_trunk AS rated_trunk,
    c.rated_number AS rated_number,
    c.jurisdiction_applied AS jurisdiction_applied,
    c.destination AS cdr_destination,
    c.rate_per_min AS applied_rate_per_min,
    c.surcharge_per_min AS surcharge_per_min,
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
    r.row_effective_from AS deck_row_effective_from,
    r.row_effective_to AS deck_row_effective_to,
    r.trunk AS deck_trunk,
    r.obr_tier AS deck_obr_tier,
    r.source_line AS deck_source_line,
    r.published_at AS deck_published_at,
    r.prefix != '' AND (c.rate_per_min = r.rate_per_min
                        OR c.rate_per_min = ifNull(r.rate_intrastate, r.rate_per_min)) AS rate_matches
FROM
(
    SELECT
        *,
        ifNull(obr_tier, '') AS k_tier,
        ifNull(rated_trunk, 0) AS k_trunk,
        ifNull(toUnixTimestamp64Milli(row_effective_from), -1) AS k_from
    FROM cdr.rated_cdrs_final
    WHERE cdr_id = {cdr_id:String}
) AS c
LEFT JOIN
(
    SELECT
        rows.*,
        ifNull(rows.obr_tier, '') AS k_tier,
        ifNull(rows.trunk, 0) AS k_trunk,
        ifNull(toUnixTimestamp64Milli(ifNull(rows.row_effective_from, heads.effective_from)), -2) AS k_from
    FROM
    (
        SELECT *
        FROM cdr.rate_deck_rows
        ORDER BY published_at DESC
        LIMIT 1 BY deck_id, deck_version, scope, prefix, source_line
    ) AS rows
    LEFT JOIN
    (
        SELECT deck_id, deck_version, scope, effective_from
        FROM cdr.rate_decks
        ORDER BY published_at DESC
        LIMIT 1 BY deck_id, deck_version, scope
    ) AS heads ON heads.deck_id = rows.deck_id AND heads.deck_version = rows.deck_version AND heads.scope = rows.scope
) AS r ON r.deck_id = c.deck_id AND r.deck_version = c.deck_version AND r.prefix = c.matched_prefix
      AND r.k_tier = c.k_tier AND r.k_trunk = c.k_trunk AND r.k_from = c.k_from
