//! Glue between rated CDRs and the pure conformance rule
//! ([`ratedeck::conformance`]): which calls feed the monitor and what a
//! downgrade looks like on `accounts.plan-changes`.

use cdr_model::control::{plan_change_id, PlanChange};
use ratedeck::conformance::{Attempt, ConformanceMonitor, Downgrade};
use ratedeck::{AccountKind, Plan};

use crate::tables::RatingTables;

pub const WHOLESALE: &str = "wholesale";
pub const RETAIL: &str = "retail";

/// `wholesale` | `retail` -> category.
pub fn category(plan: &str) -> Option<AccountKind> {
    match plan {
        WHOLESALE => Some(AccountKind::Wholesale),
        RETAIL => Some(AccountKind::Retail),
        _ => None,
    }
}

/// The account's category now: the latest recorded change, else the
/// accounts file (a wholesale account with `plan_override = retail` counts
/// as already downgraded). `None` for an unknown account.
pub fn current_category(t: &RatingTables, account_id: &str) -> Option<AccountKind> {
    let acct = t.accounts.get(account_id)?;
    Some(t.plans.current(account_id).unwrap_or(
        if acct.kind == AccountKind::Wholesale && acct.plan_override == Some(Plan::Retail) {
            AccountKind::Retail
        } else {
            acct.kind
        },
    ))
}

/// Final SIP codes that mean the carrier side refused the attempt (our
/// platform or a downstream route: server errors, overload, timeouts), not
/// the called party. They say nothing about the customer's traffic, so the
/// conformance rule does not count them as seizures; busy, no answer,
/// unallocated numbers and declines (the called side's answers) count.
pub fn carrier_rejected(call: &cdr_model::AssembledCall) -> bool {
    call.answer_ts_ms.is_none()
        && call
            .final_sip_code
            .is_some_and(|c| c == 408 || (500..600).contains(&c))
}

/// Feeds one call of a currently wholesale account, as it arrived on input
/// `partition`, to the monitor. Called *before* the call is rated, so a
/// decision this call completes is in force for it.
pub fn observe(
    m: &mut ConformanceMonitor,
    t: &RatingTables,
    partition: i32,
    call: &cdr_model::AssembledCall,
) -> Option<Downgrade> {
    if cdr_model::event::Direction::is_inbound_text(&call.direction) {
        return None;
    } // inbound calls are not terminations (issue 12)
    if current_category(t, &call.account_id)? != AccountKind::Wholesale {
        return None;
    }
    m.observe(
        partition,
        &Attempt {
            cdr_id: call.cdr_id.clone(),
            account_id: call.account_id.clone(),
            setup_ms: call.setup_ts_ms,
            end_ms: call.end_ts_ms.unwrap_or(call.setup_ts_ms),
            answered: call.disposition == cdr_model::Disposition::Answered.as_str(),
            duration_ms: call.duration_ms,
            carrier_rejected: carrier_rejected(call),
        },
    )
}

/// The `accounts.plan-changes` record of an automatic downgrade.
pub fn downgrade_event(d: &Downgrade) -> PlanChange {
    PlanChange {
        change_id: plan_change_id(&d.account_id, RETAIL, d.decided_at_ms),
        account_id: d.account_id.clone(),
        old_plan: WHOLESALE.into(),
        new_plan: RETAIL.into(),
        reason: d.reason.clone(),
        asr: Some(d.asr),
        acd_s: Some(d.acd_s),
        sample_seizures: d.seizures as i64,
        window_secs: d.window_secs,
        decided_at_ms: d.decided_at_ms,
        source: "auto".into(),
        actor: "rater/conformance".into(),
    }
}
