//! Control and detection records: account plan changes, route alerts and
//! status changes, billing adjustments and account traffic alerts. Each has
//! a deterministic id so a re-emitted record replaces, never duplicates, its
//! row downstream. Money is a decimal string, like on the CDR.

use std::collections::HashMap;

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// Topic `accounts.plan-changes` (compacted, keyed by `account_id`): an
/// account's rating category changed at `decided_at_ms`. Calls answered at
/// or after that instant are rated in the new category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct PlanChange {
    pub change_id: String,
    pub account_id: String,
    /// `wholesale` | `retail`.
    pub old_plan: String,
    pub new_plan: String,
    /// Human-readable, with the measured figures.
    pub reason: String,
    pub asr: Option<f64>,
    pub acd_s: Option<f64>,
    pub sample_seizures: i64,
    pub window_secs: i64,
    pub decided_at_ms: i64,
    /// `auto` (conformance monitor) | `operator` (`cdrctl account set-plan`).
    pub source: String,
    pub actor: String,
}

/// Topic `routes.alerts`: a route (termination trunk × breakout) showed
/// FAS patterns; the recommended action is `pull`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct RouteAlertEvent {
    pub alert_id: String,
    pub trunk_id: String,
    pub breakout: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub patterns: Vec<String>,
    pub evidence: HashMap<String, f64>,
    pub action: String,
    pub credited_calls: i64,
    /// Decimal string (negative or zero).
    pub credited_amount: String,
    pub raised_at_ms: i64,
}

/// Topic `routes.status` (compacted by route): pulls and restores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct RouteStatusEvent {
    pub event_id: String,
    pub trunk_id: String,
    pub breakout: String,
    /// `pulled` | `active`.
    pub status: String,
    pub reason: String,
    pub alert_id: Option<String>,
    pub actor: String,
    pub changed_at_ms: i64,
}

/// Topic `billing.adjustments`: a credit (negative) or charge referencing a
/// CDR. The rated CDR itself is never rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct Adjustment {
    pub adjustment_id: String,
    pub cdr_id: String,
    pub account_id: String,
    /// Decimal string, USD.
    pub amount: String,
    pub currency: String,
    /// e.g. `fas_credit`.
    pub reason: String,
    pub alert_id: Option<String>,
    pub call_setup_ts_ms: i64,
    pub created_at_ms: i64,
}

/// Topic `accounts.alerts`: traffic that does not match the account's
/// declared profile (e.g. undeclared dialer traffic). Informational: it never
/// changes a rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct AccountAlertEvent {
    pub alert_id: String,
    pub account_id: String,
    /// e.g. `undeclared_dialer`.
    pub kind: String,
    pub declared: String,
    pub observed: String,
    pub evidence: HashMap<String, f64>,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub raised_at_ms: i64,
}

/// Deterministic id of an account plan change: the same decision (account,
/// new plan, instant) always gets the same id.
pub fn plan_change_id(account_id: &str, new_plan: &str, decided_at_ms: i64) -> String {
    crate::ids::stable_id(&[
        "plan_change",
        account_id,
        new_plan,
        &decided_at_ms.to_string(),
    ])
}
