-- Carrier CDR reconciliation (`cdrctl reconcile`): one row per status of
-- one run: rows, minutes and money on each side and the difference (their
-- cost - our amount, unrounded). The disputed amount of the run is the
-- sum of `difference` over every status but `matched`.
-- Parameters: {carrier:String}, {run_id:String} ('' = the carrier's
-- latest run).
WITH run AS
(
    SELECT if({run_id:String} != '', {run_id:String},
              (SELECT argMax(run_id, reconciled_at) FROM cdr.reconciliation_runs
               WHERE carrier = {carrier:String})) AS id
)
SELECT
    run_id,
    status,
    count() AS rows,
    countIf(cdr_id != '') AS our_calls,
    countIf(their_line != 0 AND status != 'rejected') AS their_calls,
    round(sum(our_duration_ms) / 60000, 2) AS our_minutes,
    round(sum(their_duration_ms) / 60000, 2) AS their_minutes,
    sum(our_amount) AS our_amount,
    sum(ifNull(their_cost, toDecimal128(0, 18))) AS their_cost,
    sum(difference) AS difference
FROM cdr.reconciliation
WHERE carrier = {carrier:String} AND run_id = (SELECT id FROM run)
GROUP BY run_id, status
ORDER BY status
