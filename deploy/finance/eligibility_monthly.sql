-- Carrier-plan eligibility floor per wholesale account and calendar month
-- (UTC): at least 10,000 billed minutes excluding calls to US toll-free
-- numbers, OR at least $100 spend.
-- Parameters: {account:String} ('' = every wholesale account),
-- {from:DateTime64(3)}, {to:DateTime64(3)}; half-open [from, to) on the
-- call's setup time. Use whole months for meaningful results.
-- * Minutes are billed seconds (after increments) and compared as integer
--   seconds (>= 600,000 s), so the floor is exact.
-- * US toll-free = callee_number_type 'toll_free' on a NANP number
--   (dialed_e164 starting with 1; the 8xx toll-free NPAs are shared by the
--   US and Canada). Toll-free calls still count towards spend.
-- * Spend = sum of the unrounded call amounts plus credits (negative) of
--   the month, i.e. the unrounded invoice net; compared as Decimal.
-- * Wholesale account = any CDR of the month rated on a wholesale plan
--   (standard/premium/pstn) or flagged downgraded_to_retail /
--   behind_nat_retail, or any plan change on record (ClickHouse has no
--   accounts table).
SELECT
    u.month AS month,
    u.account_id AS account_id,
    u.seconds_counted AS billed_seconds_excl_us_toll_free,
    round(u.seconds_counted / 60, 2) AS billed_minutes_excl_us_toll_free,
    u.seconds_toll_free AS billed_seconds_us_toll_free,
    u.charges AS charges,
    cr.credits AS credits,
    u.charges + cr.credits AS spend,
    u.seconds_counted >= 600000 AS meets_minutes_floor,
    (u.charges + cr.credits) >= 100 AS meets_spend_floor,
    (u.seconds_counted >= 600000) OR ((u.charges + cr.credits) >= 100) AS eligible
FROM
(
    SELECT toStartOfMonth(setup_ts) AS month,
           account_id,
           sumIf(billed_seconds, NOT (ifNull(callee_number_type, '') = 'toll_free'
                                      AND startsWith(dialed_e164, '1'))) AS seconds_counted,
           sumIf(billed_seconds, ifNull(callee_number_type, '') = 'toll_free'
                                 AND startsWith(dialed_e164, '1')) AS seconds_toll_free,
           sum(amount) AS charges,
           countIf(plan IN ('standard', 'premium', 'pstn')
                   OR hasAny(rating_flags, ['downgraded_to_retail', 'behind_nat_retail'])) AS wholesale_calls
    FROM cdr.rated_cdrs_final
    WHERE ({account:String} = '' OR account_id = {account:String})
      AND setup_ts >= {from:DateTime64(3)}
      AND setup_ts < {to:DateTime64(3)}
    GROUP BY month, account_id
) AS u
LEFT JOIN
(
    SELECT toStartOfMonth(call_setup_ts) AS month,
           account_id,
           sum(amount) AS credits
    FROM cdr.adjustments_final
    WHERE ({account:String} = '' OR account_id = {account:String})
      AND call_setup_ts >= {from:DateTime64(3)}
      AND call_setup_ts < {to:DateTime64(3)}
    GROUP BY month, account_id
) AS cr ON cr.month = u.month AND cr.account_id = u.account_id
WHERE u.wholesale_calls > 0
   OR u.account_id IN (SELECT account_id FROM cdr.account_plan_changes)
ORDER BY account_id, month
