-- Invoice lines of one account for one period, one line per destination
-- (breakout; `(no destination)` for calls without one: unrated calls and,
-- today, unanswered calls, which the rater does not look up).
-- Parameters: {account:String}, {from:DateTime64(3)}, {to:DateTime64(3)};
-- the period is half-open [from, to) on the call's setup time (UTC).
-- Credits (cdr.adjustments, negative amounts) belong to the period of the
-- call they credit (call_setup_ts) and are netted into the line of that
-- call's destination; a credit whose CDR is not in the period (not landed
-- yet) gets its own line `(credit without CDR in period)`.
-- Money is Decimal(38, 18) and UNROUNDED here: `charges` is the sum of the
-- per-call `amount` (usage + connection fee + surcharges + the LRN fee of
-- billed calls). Only invoice_total.sql rounds, once, on the net total.
WITH cdrs AS
(
    SELECT cdr_id,
           ifNull(destination, '(no destination)') AS line,
           rating_status,
           billed_seconds,
           amount,
           lrn_fee,
           connection_fee,
           surcharge,
           short_duration_surcharge
    FROM cdr.rated_cdrs_final
    WHERE account_id = {account:String}
      AND setup_ts >= {from:DateTime64(3)}
      AND setup_ts < {to:DateTime64(3)}
)
SELECT
    line AS destination,
    u.calls AS calls,
    u.billed_calls AS billed_calls,
    u.unrated_calls AS unrated_calls,
    u.billed_seconds_sum AS billed_seconds,
    round(u.billed_seconds_sum / 60, 2) AS billed_minutes,
    u.charges AS charges,
    u.lrn_fees_in_amount AS lrn_fees_in_amount,
    u.lrn_fees_not_invoiced AS lrn_fees_not_invoiced,
    u.connection_fees AS connection_fees,
    u.uk_surcharges AS uk_surcharges,
    u.short_duration_surcharges AS short_duration_surcharges,
    cr.credit_count AS credit_count,
    cr.credits AS credits,
    u.charges + cr.credits AS net
FROM
(
    SELECT line,
           count() AS calls,
           countIf(billed_seconds > 0) AS billed_calls,
           countIf(rating_status = 'unrated') AS unrated_calls,
           sum(billed_seconds) AS billed_seconds_sum,
           sum(amount) AS charges,
           sumIf(lrn_fee, rating_status = 'rated') AS lrn_fees_in_amount,
           sumIf(lrn_fee, rating_status != 'rated') AS lrn_fees_not_invoiced,
           sum(connection_fee) AS connection_fees,
           sum(surcharge) AS uk_surcharges,
           sum(short_duration_surcharge) AS short_duration_surcharges
    FROM cdrs
    GROUP BY line
) AS u
FULL OUTER JOIN
(
    SELECT if(c.cdr_id = '', '(credit without CDR in period)', c.line) AS line,
           count() AS credit_count,
           sum(a.amount) AS credits
    FROM cdr.adjustments_final AS a
    LEFT JOIN cdrs AS c ON c.cdr_id = a.cdr_id
    WHERE a.account_id = {account:String}
      AND a.call_setup_ts >= {from:DateTime64(3)}
      AND a.call_setup_ts < {to:DateTime64(3)}
    GROUP BY line
) AS cr USING (line)
ORDER BY destination
