-- Credits and other adjustments of one account for one period (the detail
-- behind the `credits` of invoice_lines / invoice_total), with the credited
-- call's destination and rated amount.
-- Parameters: {account:String}, {from:DateTime64(3)}, {to:DateTime64(3)};
-- half-open [from, to) on the credited call's setup time.
SELECT
    a.created_at AS created_at,
    a.call_setup_ts AS call_setup_ts,
    a.adjustment_id AS adjustment_id,
    a.cdr_id AS cdr_id,
    a.reason AS reason,
    a.alert_id AS alert_id,
    a.amount AS amount,
    a.currency AS currency,
    c.destination AS destination,
    c.amount AS call_amount
FROM cdr.adjustments_final AS a
LEFT JOIN
(
    SELECT cdr_id, destination, amount
    FROM cdr.rated_cdrs_final
    WHERE account_id = {account:String}
      AND setup_ts >= {from:DateTime64(3)}
      AND setup_ts < {to:DateTime64(3)}
) AS c ON c.cdr_id = a.cdr_id
WHERE a.account_id = {account:String}
  AND a.call_setup_ts >= {from:DateTime64(3)}
  AND a.call_setup_ts < {to:DateTime64(3)}
ORDER BY a.call_setup_ts, a.adjustment_id
