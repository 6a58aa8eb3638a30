//! `detection`: the pure core of FAS and traffic-profile detection. No I/O, no async, no
//! clocks: plain synchronous functions and owned state machines fed with
//! facts extracted from rated CDRs, in (roughly) event-time order.
//!
//! Module map (each module's own doc says what it owns):
//! - [`signals`]: per-call FAS (false answer supervision) signals, each
//!   explainable on its own, and the combined per-call score/verdict.
//! - [`route`]: per-route (trunk × breakout) sliding-window FAS patterns,
//!   the route pull decision and the credits for suspect calls.
//! - [`profile`]: short-duration / dialer traffic profiling per account,
//!   and the undeclared-dialer account alert (run by the rater, whose input
//!   is keyed by account).
//!
//! Crate-wide rules:
//! - Money is `rust_decimal::Decimal`; nothing here changes a rate or an
//!   amount. The only money produced is a credit, which is exactly the
//!   negated rated amount of a suspect call.
//! - Every id (alert, credit) is derived from its inputs only, so replaying
//!   the same input produces the same ids and downstream stores collapse
//!   the copies.
//! - Memory is bounded by event time: old windows and idle routes/accounts
//!   are evicted as the event-time watermark advances.

pub mod profile;
pub mod route;
pub mod signals;

mod ids;

pub use profile::{
    parse_profiles, AccountAlert, ProfileChange, ProfileConfig, ProfileMonitor, ProfileRecord,
    ProfileSnapshot, TrafficProfile,
};
pub use route::{
    Credit, RouteAlert, RouteChange, RouteConfig, RouteMonitor, RouteMonitorStats, RouteRecord,
};
pub use signals::{evaluate_call, CallFacts, CallVerdict, FasConfig, FasSignal, SignalWeights};

/// A configuration value that cannot work. `field` is the (dotted) config
/// key, so an operator can find it in the service's config file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid detection config field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks a ratio/weight style value: finite and within `[lo, hi]`.
pub(crate) fn check_range(
    field: &'static str,
    v: f64,
    lo: f64,
    hi: f64,
) -> Result<(), ConfigError> {
    if !v.is_finite() || v < lo || v > hi {
        return Err(invalid(field, format!("{v} is not within [{lo}, {hi}]")));
    }
    Ok(())
}

/// Event time of a call for windowing: the hangup when known (the CDR is
/// final then), otherwise the setup. Both are switch clocks, never the
/// processing clock, so replays window identically.
pub fn event_ts_ms(facts: &CallFacts) -> i64 {
    facts.end_ts_ms.unwrap_or(facts.setup_ts_ms)
}
