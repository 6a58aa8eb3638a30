//! Glue between rated CDRs and the pure conformance rule
//! ([`ratedeck::conformance`]): which calls feed the monitor and what a
//! downgrade looks like on `accounts.plan-changes`.

use cdr_model::call::RatedCdr;
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

/// Feeds one rated call of a currently wholesale account to the monitor.
/// Every attempt counts (failed and cancelled ones are seizures too, so ASR
/// cannot read 100% because failures were left out).
pub fn observe(m: &mut ConformanceMonitor, t: &RatingTables, cdr: &RatedCdr) -> Option<Downgrade> {
    if cdr_model::event::Direction::is_inbound_text(&cdr.call.direction) { return None; } // inbound calls are not terminations (issue 12)
    if current_category(t, &cdr.call.account_id)? != AccountKind::Wholesale {
        return None;
    }
    m.observe(&Attempt {
        account_id: cdr.call.account_id.clone(),
        setup_ms: cdr.call.setup_ts_ms,
        end_ms: cdr.call.end_ts_ms.unwrap_or(cdr.call.setup_ts_ms),
        answered: cdr.call.disposition == "answered",
        duration_ms: cdr.call.duration_ms,
    })
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
