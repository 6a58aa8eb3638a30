-- Plan changes (rating category `wholesale` | `retail`): automatic
-- wholesale -> retail downgrades by the rater's conformance monitor
-- (source `auto`) and operator changes (source `operator`, cdrctl account
-- set-plan), oldest first.
-- Parameters: {account:String} ('' = every account), {from:DateTime64(3)},
-- {to:DateTime64(3)}; half-open [from, to) on decided_at.
-- Re-emitted decisions share change_id; the latest inserted copy wins.
SELECT
    decided_at,
    account_id,
    old_plan,
    new_plan,
    new_plan = 'retail' AND old_plan != 'retail' AS is_downgrade,
    reason,
    asr,
    acd_s,
    sample_seizures,
    window_secs,
    source,
    actor,
    change_id
FROM cdr.account_plan_changes
WHERE ({account:String} = '' OR account_id = {account:String})
  AND decided_at >= {from:DateTime64(3)}
  AND decided_at < {to:DateTime64(3)}
ORDER BY decided_at, change_id, inserted_at DESC
LIMIT 1 BY change_id
