-- LRN dip fees per account and calendar month (UTC).
-- Parameters: {account:String} ('' = every account), {from:DateTime64(3)},
-- {to:DateTime64(3)}; half-open [from, to) on the call's setup time.
-- lrn_fees_in_amount is already inside the calls' `amount`: the rater adds
-- the dip fee to every rated attempt, answered or not (seed 000 charges the
-- dip per call). lrn_fees_not_invoiced sits on calls that are not rated
-- (unrated, blocked, inbound): in no amount until the call is re-rated.
SELECT
    toStartOfMonth(setup_ts) AS month,
    account_id,
    count() AS calls,
    countIf(lrn_source = 'dip') AS dips,
    countIf(lrn_fee != 0) AS calls_with_lrn_fee,
    sum(lrn_fee) AS lrn_fees,
    sumIf(lrn_fee, rating_status = 'rated') AS lrn_fees_in_amount,
    sumIf(lrn_fee, rating_status != 'rated') AS lrn_fees_not_invoiced
FROM cdr.rated_cdrs_final
WHERE ({account:String} = '' OR account_id = {account:String})
  AND setup_ts >= {from:DateTime64(3)}
  AND setup_ts < {to:DateTime64(3)}
GROUP BY month, account_id
ORDER BY account_id, month
