//! Short-duration / dialer traffic profiling per account and per route, and
//! the "undeclared dialer" account alert.
//!
//! This module owns [`ProfileMonitor`], [`ProfileConfig`],
//! [`TrafficProfile`], [`ProfileSnapshot`] and [`AccountAlert`].
//!
//! Predictive dialers have a recognisable shape: many attempts per minute,
//! low ASR (cold outbound: most calls are not answered) and many answered
//! calls that end within a few seconds (answering machines, abandoned
//! calls, "wrong person" hang-ups). Carriers treat it differently from
//! conversational traffic (surcharges, caps, dedicated routes), so a
//! customer is expected to declare it. This module only *observes*: it
//! never changes a rate, a route or an amount; an undeclared dialer yields
//! an [`AccountAlert`] for a human (or the commercial process) to act on.
//!
//! # Windows
//! Epoch-aligned tumbling windows of `window_ms` by event time
//! ([`crate::event_ts_ms`]); the window of a call is the one containing it,
//! so window bounds and alert ids depend only on the input. Each window is
//! re-judged on every call of the account, and alerts at most once per
//! account and window. Windows are kept until `allowed_lateness_ms` after
//! their end (by the event-time watermark), then dropped together with idle
//! accounts and routes, which bounds memory.
//!
//! # Classification
//! A window is [`TrafficProfile::Dialer`] when all of:
//! - attempts `>= min_attempts` (enough evidence at all),
//! - attempts per minute of the window `>= dialer_min_attempts_per_min`
//!   (the rate is over the full window length, so a window still filling
//!   can only understate it: it never fires early on a short burst),
//! - answered calls `>= min_answered` and ASR `<= dialer_max_asr`,
//! - and either the share of answered calls shorter than `short_call_ms`
//!   (6 s, the usual contractual short-duration bound) is `>=
//!   dialer_min_short_share`, or the ACD is `<= dialer_max_acd_s`;
//!
//! otherwise [`TrafficProfile::Conversational`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::stable_id;
use crate::signals::CallFacts;
use crate::{check_range, event_ts_ms, invalid, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficProfile {
    Conversational,
    Dialer,
}

impl TrafficProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conversational => "conversational",
            Self::Dialer => "dialer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "conversational" => Some(Self::Conversational),
            "dialer" => Some(Self::Dialer),
            _ => None,
        }
    }
}

impl std::fmt::Display for TrafficProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    pub window_ms: i64,
    pub allowed_lateness_ms: i64,
    /// Answered calls shorter than this are "short-duration".
    pub short_call_ms: i64,
    pub min_attempts: u64,
    pub min_answered: u64,
    pub dialer_min_attempts_per_min: f64,
    pub dialer_max_asr: f64,
    pub dialer_min_short_share: f64,
    pub dialer_max_acd_s: f64,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            window_ms: 15 * 60_000,
            allowed_lateness_ms: 5 * 60_000,
            short_call_ms: 6_000,
            min_attempts: 100,
            min_answered: 10,
            dialer_min_attempts_per_min: 10.0,
            dialer_max_asr: 0.35,
            dialer_min_short_share: 0.3,
            dialer_max_acd_s: 30.0,
        }
    }
}

impl ProfileConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window_ms < 60_000 {
            // Attempts "per minute" over less than a minute is noise.
            return Err(invalid("window_ms", "must be >= 60000"));
        }
        if self.allowed_lateness_ms < 0 {
            return Err(invalid("allowed_lateness_ms", "must be >= 0"));
        }
        if self.short_call_ms <= 0 {
            return Err(invalid("short_call_ms", "must be > 0"));
        }
        if self.min_attempts < 1 {
            return Err(invalid("min_attempts", "must be >= 1"));
        }
        if self.min_answered < 1 {
            return Err(invalid("min_answered", "must be >= 1"));
        }
        check_range(
            "dialer_min_attempts_per_min",
            self.dialer_min_attempts_per_min,
            0.0,
            f64::MAX,
        )?;
        check_range("dialer_max_asr", self.dialer_max_asr, 0.0, 1.0)?;
        check_range(
            "dialer_min_short_share",
            self.dialer_min_short_share,
            0.0,
            1.0,
        )?;
        check_range("dialer_max_acd_s", self.dialer_max_acd_s, 0.0, f64::MAX)?;
        Ok(())
    }
}

/// Figures of one window of one account or route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSnapshot {
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub attempts: u64,
    pub answered: u64,
    pub short_calls: u64,
    pub attempts_per_min: f64,
    pub asr: f64,
    /// Seconds; 0 with no answered call.
    pub acd_s: f64,
    /// Share of answered calls shorter than `short_call_ms`.
    pub short_share: f64,
    pub observed: TrafficProfile,
}

impl ProfileSnapshot {
    fn evidence(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("attempts".to_string(), self.attempts as f64),
            ("answered".to_string(), self.answered as f64),
            ("short_calls".to_string(), self.short_calls as f64),
            ("attempts_per_min".to_string(), self.attempts_per_min),
            ("asr".to_string(), self.asr),
            ("acd_s".to_string(), self.acd_s),
            ("short_share".to_string(), self.short_share),
        ])
    }
}

/// An account runs dialer traffic it did not declare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountAlert {
    /// `stable_id("undeclared_dialer", account_id, window_start_ms)`.
    pub alert_id: String,
    pub account_id: String,
    pub declared: Option<TrafficProfile>,
    pub observed: TrafficProfile,
    pub evidence: BTreeMap<String, f64>,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    attempts: u64,
    answered: u64,
    short: u64,
    dur_sum_ms: i128,
    alerted: bool,
}

#[derive(Debug, Default)]
struct Scope {
    windows: BTreeMap<i64, Counts>,
}

impl Scope {
    fn add(&mut self, w: i64, facts: &CallFacts, short_call_ms: i64) -> &mut Counts {
        let c = self.windows.entry(w).or_default();
        c.attempts += 1;
        if facts.answered {
            c.answered += 1;
            let d = facts.duration_ms.max(0);
            c.dur_sum_ms += i128::from(d);
            c.short += u64::from(d < short_call_ms);
        }
        c
    }
}

/// Owned per-account and per-route profiling state.
#[derive(Debug)]
pub struct ProfileMonitor {
    cfg: ProfileConfig,
    accounts: BTreeMap<String, Scope>,
    /// breakout → trunk → scope.
    routes: BTreeMap<String, BTreeMap<String, Scope>>,
    watermark_ts: Option<i64>,
    late_calls: u64,
}

impl ProfileMonitor {
    pub fn new(cfg: ProfileConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            accounts: BTreeMap::new(),
            routes: BTreeMap::new(),
            watermark_ts: None,
            late_calls: 0,
        })
    }

    pub fn config(&self) -> &ProfileConfig {
        &self.cfg
    }

    /// Folds one call (answered or not: every attempt counts) into its
    /// account's and route's window. Returns an alert the first time in a
    /// window that the account looks like a dialer while `declared` is not
    /// `Dialer` (`None` = nothing declared).
    pub fn observe(
        &mut self,
        facts: &CallFacts,
        declared: Option<TrafficProfile>,
    ) -> Option<AccountAlert> {
        let ts = event_ts_ms(facts);
        let w = ts.div_euclid(self.cfg.window_ms);
        let old_w = self.watermark_ts.map(|t| t.div_euclid(self.cfg.window_ms));
        if self.watermark_ts.is_none_or(|t| ts > t) {
            self.watermark_ts = Some(ts);
        }
        if old_w.is_none_or(|o| w > o) {
            self.sweep();
        }
        if !self.retained(w) {
            self.late_calls += 1;
            return None;
        }
        let cfg = self.cfg;
        self.routes
            .entry(facts.breakout.clone())
            .or_default()
            .entry(facts.trunk_id.clone())
            .or_default()
            .add(w, facts, cfg.short_call_ms);
        let counts = self
            .accounts
            .entry(facts.account_id.clone())
            .or_default()
            .add(w, facts, cfg.short_call_ms);
        if counts.alerted || declared == Some(TrafficProfile::Dialer) {
            return None;
        }
        let snap = snapshot(&cfg, w, counts);
        if snap.observed != TrafficProfile::Dialer {
            return None;
        }
        counts.alerted = true;
        let start_s = snap.window_start_ms.to_string();
        Some(AccountAlert {
            alert_id: stable_id(&["undeclared_dialer", &facts.account_id, &start_s]),
            account_id: facts.account_id.clone(),
            declared,
            observed: snap.observed,
            evidence: snap.evidence(),
            window_start_ms: snap.window_start_ms,
            window_end_ms: snap.window_end_ms,
        })
    }

    /// The newest retained window of an account.
    pub fn account_snapshot(&self, account_id: &str) -> Option<ProfileSnapshot> {
        let (w, c) = self.accounts.get(account_id)?.windows.last_key_value()?;
        Some(snapshot(&self.cfg, *w, c))
    }

    /// The newest retained window of a route (trunk × breakout).
    pub fn route_snapshot(&self, trunk_id: &str, breakout: &str) -> Option<ProfileSnapshot> {
        let (w, c) = self
            .routes
            .get(breakout)?
            .get(trunk_id)?
            .windows
            .last_key_value()?;
        Some(snapshot(&self.cfg, *w, c))
    }

    /// Accounts and routes currently held (gauges).
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.accounts.len(),
            self.routes.values().map(BTreeMap::len).sum(),
        )
    }

    /// Calls too late to count in any window (cumulative).
    pub fn late_calls(&self) -> u64 {
        self.late_calls
    }

    fn retained(&self, w: i64) -> bool {
        let end = w.saturating_add(1).saturating_mul(self.cfg.window_ms);
        self.watermark_ts
            .is_none_or(|t| end.saturating_add(self.cfg.allowed_lateness_ms) > t)
    }

    fn sweep(&mut self) {
        let (window_ms, lateness) = (self.cfg.window_ms, self.cfg.allowed_lateness_ms);
        let Some(t) = self.watermark_ts else { return };
        let keep = |w: &i64, _: &mut Counts| {
            w.saturating_add(1)
                .saturating_mul(window_ms)
                .saturating_add(lateness)
                > t
        };
        self.accounts.retain(|_, s| {
            s.windows.retain(keep);
            !s.windows.is_empty()
        });
        self.routes.retain(|_, trunks| {
            trunks.retain(|_, s| {
                s.windows.retain(keep);
                !s.windows.is_empty()
            });
            !trunks.is_empty()
        });
    }
}

fn snapshot(cfg: &ProfileConfig, w: i64, c: &Counts) -> ProfileSnapshot {
    let minutes = cfg.window_ms as f64 / 60_000.0;
    let attempts_per_min = c.attempts as f64 / minutes;
    let asr = if c.attempts > 0 {
        c.answered as f64 / c.attempts as f64
    } else {
        0.0
    };
    let (acd_s, short_share) = if c.answered > 0 {
        (
            c.dur_sum_ms as f64 / c.answered as f64 / 1000.0,
            c.short as f64 / c.answered as f64,
        )
    } else {
        (0.0, 0.0)
    };
    let dialer = c.attempts >= cfg.min_attempts
        && attempts_per_min >= cfg.dialer_min_attempts_per_min
        && c.answered >= cfg.min_answered
        && asr <= cfg.dialer_max_asr
        && (short_share >= cfg.dialer_min_short_share || acd_s <= cfg.dialer_max_acd_s);
    ProfileSnapshot {
        window_start_ms: w.saturating_mul(cfg.window_ms),
        window_end_ms: w.saturating_add(1).saturating_mul(cfg.window_ms),
        attempts: c.attempts,
        answered: c.answered,
        short_calls: c.short,
        attempts_per_min,
        asr,
        acd_s,
        short_share,
        observed: if dialer {
            TrafficProfile::Dialer
        } else {
            TrafficProfile::Conversational
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
        use serde::de::value::{Error as DeError, MapDeserializer};
        let empty = MapDeserializer::<_, DeError>::new(Vec::<(&str, f64)>::new().into_iter());
        assert_eq!(
            ProfileConfig::deserialize(empty).unwrap(),
            ProfileConfig::default()
        );
        let typo =
            MapDeserializer::<_, DeError>::new(vec![("dialer_max_asr_", 0.4f64)].into_iter());
        assert!(ProfileConfig::deserialize(typo).is_err());
    }

    #[test]
    fn classification_thresholds_are_inclusive_and_all_required() {
        let cfg = ProfileConfig::default();
        // 150 attempts in 15 min = exactly 10/min; 30 answered = ASR 0.2;
        // 9 short = 30 %; long calls otherwise (ACD well above 30 s).
        let base = Counts {
            attempts: 150,
            answered: 30,
            short: 9,
            dur_sum_ms: 9 * 3_000 + 21 * 120_000,
            alerted: false,
        };
        assert_eq!(snapshot(&cfg, 0, &base).observed, TrafficProfile::Dialer);
        let fewer = Counts {
            attempts: 149,
            ..base
        };
        assert_eq!(
            snapshot(&cfg, 0, &fewer).observed,
            TrafficProfile::Conversational
        );
        let answered_more = Counts {
            answered: 60,
            short: 18,
            ..base
        };
        assert_eq!(
            snapshot(&cfg, 0, &answered_more).observed,
            TrafficProfile::Conversational,
            "ASR 0.4 is above 0.35"
        );
        let few_short = Counts { short: 8, ..base };
        assert_eq!(
            snapshot(&cfg, 0, &few_short).observed,
            TrafficProfile::Conversational
        );
        // …unless the ACD is short instead.
        let short_acd = Counts {
            short: 8,
            dur_sum_ms: 30 * 20_000,
            ..base
        };
        assert_eq!(
            snapshot(&cfg, 0, &short_acd).observed,
            TrafficProfile::Dialer
        );
        let no_answers = Counts {
            answered: 0,
            short: 0,
            dur_sum_ms: 0,
            ..base
        };
        assert_eq!(
            snapshot(&cfg, 0, &no_answers).observed,
            TrafficProfile::Conversational
        );
    }
}
