//! Glue between enriched calls and the pure per-account dialer profile
//! ([`detection::profile`]): which calls feed it, the declared profiles,
//! and what an alert looks like on `accounts.alerts`. It runs in the rater
//! because the rater's input is keyed by account: every call of an account
//! reaches one instance, whatever the number of instances.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use cdr_model::control::AccountAlertEvent;
use detection::{AccountAlert, CallFacts, ProfileMonitor, TrafficProfile};
use rust_decimal::Decimal;

/// Declared traffic profile per account.
pub type Declared = BTreeMap<String, TrafficProfile>;

/// Loads the declared-profile file (`account;conversational|dialer`); bad
/// lines are logged and skipped, a missing file stops start-up.
pub fn load_declared(path: Option<&Path>) -> anyhow::Result<Declared> {
    let Some(p) = path else {
        return Ok(Declared::new());
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let (map, errors) = detection::parse_profiles(&text);
    for e in errors {
        tracing::warn!(file = %p.display(), "traffic profile row rejected: {e}");
    }
    Ok(map)
}

/// The facts the profile needs from an assembled call.
pub fn facts(call: &cdr_model::AssembledCall) -> CallFacts {
    CallFacts {
        cdr_id: call.cdr_id.clone(),
        account_id: call.account_id.clone(),
        trunk_id: call.trunk_id.clone().unwrap_or_default(),
        breakout: String::new(),
        setup_ts_ms: call.setup_ts_ms,
        progress_ts_ms: call.progress_ts_ms,
        progress_code: call.progress_code,
        answer_ts_ms: call.answer_ts_ms,
        end_ts_ms: call.end_ts_ms,
        duration_ms: call.duration_ms,
        answered: call.disposition == cdr_model::Disposition::Answered.as_str(),
        disposition: call.disposition.clone(),
        rtp_rx_packets: None,
        rtp_rx_before_answer: None,
        silence_ratio: None,
        billed_seconds: 0,
        amount: Decimal::ZERO,
        currency: String::new(),
    }
}

/// Feeds one outbound call that arrived on input `partition`; returns the
/// alerts of the windows it closed.
pub fn observe(
    m: &mut ProfileMonitor,
    declared: &Declared,
    partition: i32,
    call: &cdr_model::AssembledCall,
) -> Vec<AccountAlertEvent> {
    if cdr_model::event::Direction::is_inbound_text(&call.direction) {
        return Vec::new(); // inbound calls are not the customer's dialing
    }
    let lateness = m.config().allowed_lateness_ms;
    m.observe(partition, &facts(call), &|a: &str| declared.get(a).copied())
        .iter()
        .map(|a| event(a, lateness))
        .collect()
}

/// The `accounts.alerts` record of an alert; raised at the event time the
/// window could be judged, so a replay writes the same row.
pub fn event(a: &AccountAlert, lateness_ms: i64) -> AccountAlertEvent {
    AccountAlertEvent {
        alert_id: a.alert_id.clone(),
        account_id: a.account_id.clone(),
        kind: "undeclared_dialer".into(),
        declared: a
            .declared
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "undeclared".into()),
        observed: a.observed.as_str().to_string(),
        evidence: a
            .evidence
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        window_start_ms: a.window_start_ms,
        window_end_ms: a.window_end_ms,
        raised_at_ms: a.window_end_ms.saturating_add(lateness_ms),
    }
}
