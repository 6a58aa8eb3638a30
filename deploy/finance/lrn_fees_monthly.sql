-- LRN dip fees per account and calendar month (UTC).
-- Parameters: {account:String} ('' = every account), {from:DateTime64(3)},
-- {to:DateTime64(3)}; half-open [from, to) on the call's setup time.
-- lrn_fees_billed is already inside the calls' `amount` (the rater adds the
-- LRN fee to billed calls); lrn_fees_unbilled was charged by the LRN
-- provider on calls with no billed time (unanswered, unrated) and is NOT in
-- any amount (see README: open question).
SELECT
    toStartOfMonth(setup_ts) AS month,
    account_id,
    count() AS calls,
    countIf(lrn_source = 'dip') AS dips,
    countIf(lrn_fee != 0) AS calls_with_lrn_fee,
    sum(lrn_fee) AS lrn_fees,
    sumIf(lrn_fee, billed_seconds > 0) AS lrn_fees_billed,
    sumIf(lrn_fee, billed_seconds = 0) AS lrn_fees_unbilled
FROM cdr.rated_cdrs_final
WHERE ({account:String} = '' OR account_id = {account:String})
  AND setup_ts >= {from:DateTime64(3)}
  AND setup_ts < {to:DateTime64(3)}
GROUP BY month, account_id
ORDER BY account_id, month
