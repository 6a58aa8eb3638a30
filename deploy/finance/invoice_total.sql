-- Invoice total of one account for one period.
-- Parameters: {account:String}, {from:DateTime64(3)}, {to:DateTime64(3)};
-- half-open [from, to) on the call's setup time (UTC), like invoice_lines.
-- Rounding rule (the same as ratedeck::invoice_total in
-- crates/ratedeck/src/rate.rs): sum the UNROUNDED per-call amounts and the
-- unrounded credits, then round the net total ONCE to cents, half away from
-- zero. ClickHouse's round(x, 2) on a Decimal rounds half away from zero
-- (only floats use banker's rounding), and every operand here is
-- Decimal(38, 18): no float ever touches money. Rounding each call (or each
-- line) first would overbill short calls: 100,000 x 28 s at $0.01/min is
-- $466.67, not $470.
-- `currencies` should be ['USD']; anything else means the lines must not be
-- added up.
SELECT
    {account:String} AS account_id,
    {from:DateTime64(3)} AS period_from,
    {to:DateTime64(3)} AS period_to,
    u.calls AS calls,
    u.billed_calls AS billed_calls,
    u.unrated_calls AS unrated_calls,
    u.billed_seconds_sum AS billed_seconds,
    u.charges AS charges_unrounded,
    u.lrn_fees_in_amount AS lrn_fees_in_amount,
    u.lrn_fees_not_invoiced AS lrn_fees_not_invoiced,
    cr.credit_count AS credit_count,
    cr.credits AS credits_unrounded,
    u.charges + cr.credits AS net_unrounded,
    toDecimal128(round(u.charges + cr.credits, 2), 2) AS invoice_total,
    arraySort(arrayDistinct(arrayConcat(u.currencies, cr.currencies))) AS currencies
FROM
(
    SELECT count() AS calls,
           countIf(billed_seconds > 0) AS billed_calls,
           countIf(rating_status = 'unrated') AS unrated_calls,
           sum(billed_seconds) AS billed_seconds_sum,
           sum(amount) AS charges,
           sumIf(lrn_fee, rating_status = 'rated') AS lrn_fees_in_amount,
           sumIf(lrn_fee, rating_status != 'rated') AS lrn_fees_not_invoiced,
           groupUniqArrayIf(toString(currency), amount != 0) AS currencies
    FROM cdr.rated_cdrs_final
    WHERE account_id = {account:String}
      AND setup_ts >= {from:DateTime64(3)}
      AND setup_ts < {to:DateTime64(3)}
) AS u
CROSS JOIN
(
    SELECT count() AS credit_count,
           sum(amount) AS credits,
           groupUniqArray(toString(currency)) AS currencies
    FROM cdr.adjustments_final
    WHERE account_id = {account:String}
      AND call_setup_ts >= {from:DateTime64(3)}
      AND call_setup_ts < {to:DateTime64(3)}
) AS cr
