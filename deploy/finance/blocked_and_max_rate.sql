-- Calls the account's limits did not allow, oldest first: blocked attempts
-- (rating_status = 'blocked', never charged; reason e.g.
-- uk_surcharge_not_allowed, seed 000) and max-rate breaches (the full
-- per-minute price, rate plus UK surcharge per minute, above the effective
-- max rate; charged as rated). Parameters: {account:String} ('' = every
-- account), {from:DateTime64(3)}, {to:DateTime64(3)}; half-open on setup.
SELECT
    setup_ts,
    cdr_id,
    account_id,
    dialed,
    destination,
    if(rating_status = 'blocked', 'blocked', 'max_rate_exceeded') AS kind,
    unrated_reason AS reason,
    rate_per_min,
    max_rate,
    billed_seconds,
    amount
FROM cdr.rated_cdrs_final
WHERE ({account:String} = '' OR account_id = {account:String})
  AND setup_ts >= {from:DateTime64(3)}
  AND setup_ts < {to:DateTime64(3)}
  AND (rating_status = 'blocked' OR has(rating_flags, 'max_rate_exceeded'))
ORDER BY setup_ts, cdr_id
