//! Wholesale conformance (seed 000): "ACD of your traffic must be more than
//! 60 seconds and ASR > 50%. Non-conforming wholesale accounts will be
//! switched to retail plan automatically without prior notice."
//!
//! This module owns the *decision* and the *history* of such switches:
//! [`ConformanceMonitor`] folds every attempt of an account into a sliding
//! event-time window and says when the account falls below the thresholds
//! over at least the minimum sample; [`PlanHistory`] records rating-category
//! changes with their effective instants, so a call is rated in the category
//! in force at its answer time — before the decision wholesale, after it
//! retail — whatever order the rater learns things in. Pure: no clock, no
//! I/O; time is the calls' own.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rate::{AccountKind, FastHash};

/// Thresholds of the conformance rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConformanceConfig {
    /// Evaluation window, seconds of event time (default 24 h).
    pub window_secs: i64,
    /// Seizures needed in the window before a decision (default 100), so a
    /// handful of failed calls cannot flip an account.
    pub min_seizures: u64,
    /// ACD below this (seconds) is non-conforming (default 60).
    pub min_acd_secs: f64,
    /// ASR below this is non-conforming (default 0.5).
    pub min_asr: f64,
    /// Window granularity, seconds (default 60).
    pub bucket_secs: i64,
    /// Attempts count once their *setup* is this far behind the newest
    /// hangup seen (default 900 s). Failed attempts end within seconds and
    /// answered ones minutes later, so judging by hangup time alone would
    /// see the failures of a burst before its conversations and read a
    /// falsely low ASR; waiting until the calls set up in a minute have had
    /// time to end removes that bias (calls longer than this still count,
    /// in the minute they set up, once they end).
    pub settle_secs: i64,
}

impl Default for ConformanceConfig {
    fn default() -> Self {
        ConformanceConfig {
            window_secs: 86_400,
            min_seizures: 100,
            min_acd_secs: 60.0,
            min_asr: 0.5,
            bucket_secs: 60,
            settle_secs: 900,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("conformance.{field}: {message}")]
pub struct ConformanceConfigError {
    pub field: &'static str,
    pub message: String,
}

impl ConformanceConfig {
    pub fn validate(&self) -> Result<(), ConformanceConfigError> {
        let bad = |field, message: &str| {
            Err(ConformanceConfigError {
                field,
                message: message.to_string(),
            })
        };
        if self.window_secs <= 0 {
            return bad("window_secs", "must be positive");
        }
        if self.bucket_secs <= 0 || self.bucket_secs > self.window_secs {
            return bad("bucket_secs", "must be positive and at most window_secs");
        }
        if self.settle_secs < 0 || self.settle_secs >= self.window_secs {
            return bad("settle_secs", "must be within 0..window_secs");
        }
        if self.min_seizures == 0 {
            return bad("min_seizures", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.min_asr) {
            return bad("min_asr", "must be within 0..=1");
        }
        if !self.min_acd_secs.is_finite() || self.min_acd_secs < 0.0 {
            return bad("min_acd_secs", "must be a non-negative number");
        }
        Ok(())
    }
}

/// One attempt as the monitor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub account_id: String,
    /// Event time of the attempt's setup, ms (the minute it counts in).
    pub setup_ms: i64,
    /// Event time of the attempt's end (hangup), ms.
    pub end_ms: i64,
    pub answered: bool,
    pub duration_ms: i64,
}

/// The monitor's verdict: switch `account_id` to retail from `decided_at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Downgrade {
    pub account_id: String,
    pub seizures: u64,
    pub answered: u64,
    pub asr: f64,
    pub acd_s: f64,
    pub decided_at_ms: i64,
    pub window_secs: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    start_ms: i64,
    seizures: u64,
    answered: u64,
    answered_ms: i64,
}

#[derive(Debug, Default)]
struct Window {
    /// By setup minute, sorted by start.
    slots: VecDeque<Slot>,
    /// Sums over the settled slots (start < `settled_edge`) in the window.
    seizures: u64,
    answered: u64,
    answered_ms: i64,
    settled_edge: i64,
    latest_ms: i64,
}

impl Window {
    fn add(&mut self, s: &Slot, sign: i64) {
        if sign > 0 {
            self.seizures += s.seizures;
            self.answered += s.answered;
            self.answered_ms += s.answered_ms;
        } else {
            self.seizures -= s.seizures;
            self.answered -= s.answered;
            self.answered_ms -= s.answered_ms;
        }
    }
}

/// Per-account sliding windows of seizures / answered / answered time.
#[derive(Debug)]
pub struct ConformanceMonitor {
    cfg: ConformanceConfig,
    accounts: HashMap<String, Window, FastHash>,
}

impl ConformanceMonitor {
    pub fn new(cfg: ConformanceConfig) -> Result<Self, ConformanceConfigError> {
        cfg.validate()?;
        Ok(ConformanceMonitor {
            cfg,
            accounts: HashMap::default(),
        })
    }

    pub fn config(&self) -> &ConformanceConfig {
        &self.cfg
    }

    /// Accounts with a window in memory.
    pub fn tracked(&self) -> usize {
        self.accounts.len()
    }

    /// Forget an account's window (after it was downgraded: it is retail now
    /// and only an operator brings it back, with a fresh window).
    pub fn reset(&mut self, account_id: &str) {
        self.accounts.remove(account_id);
    }

    /// Folds one attempt of a *wholesale* account (the caller skips retail
    /// ones) and returns a downgrade when the window, with at least the
    /// minimum sample, has ACD or ASR below the thresholds. Decided at the
    /// latest event time seen for the account, the moment the evidence was
    /// complete.
    pub fn observe(&mut self, a: &Attempt) -> Option<Downgrade> {
        let bucket_ms = self.cfg.bucket_secs * 1000;
        let window_ms = self.cfg.window_secs * 1000;
        let settle_ms = self.cfg.settle_secs * 1000;
        let w = self.accounts.entry(a.account_id.clone()).or_default();
        if w.slots.is_empty() && w.seizures == 0 {
            w.settled_edge = i64::MIN;
        }
        w.latest_ms = w.latest_ms.max(a.end_ms);
        let horizon = w.latest_ms - window_ms;
        let start = a.setup_ms - a.setup_ms.rem_euclid(bucket_ms);
        if start + bucket_ms <= horizon {
            return None; // set up before the window: no longer evidence
        }
        let mut one = Slot {
            start_ms: start,
            seizures: 1,
            ..Default::default()
        };
        if a.answered {
            one.answered = 1;
            one.answered_ms = a.duration_ms.max(0);
        }
        // Slots stay sorted by start; a late attempt lands in its own slot.
        match w.slots.iter().rposition(|s| s.start_ms <= start) {
            Some(i) if w.slots[i].start_ms == start => {
                let s = &mut w.slots[i];
                s.seizures += 1;
                s.answered += one.answered;
                s.answered_ms += one.answered_ms;
            }
            Some(i) => w.slots.insert(i + 1, one),
            None => w.slots.push_front(one),
        }
        if start < w.settled_edge {
            w.add(&one, 1);
        }
        // Settle every slot whose calls have had `settle` to end.
        let edge = {
            let e = w.latest_ms - settle_ms;
            e - e.rem_euclid(bucket_ms)
        };
        if edge > w.settled_edge {
            let from = w.settled_edge;
            let newly: Vec<Slot> = w
                .slots
                .iter()
                .filter(|s| s.start_ms >= from && s.start_ms < edge)
                .copied()
                .collect();
            for s in &newly {
                w.add(s, 1);
            }
            w.settled_edge = edge;
        }
        while let Some(s) = w.slots.front().copied() {
            if s.start_ms + bucket_ms > horizon {
                break;
            }
            if s.start_ms < w.settled_edge {
                w.add(&s, -1);
            }
            w.slots.pop_front();
        }
        if w.seizures < self.cfg.min_seizures {
            return None;
        }
        let asr = w.answered as f64 / w.seizures as f64;
        let acd_s = if w.answered == 0 {
            0.0
        } else {
            w.answered_ms as f64 / 1000.0 / w.answered as f64
        };
        let low_asr = asr < self.cfg.min_asr;
        let low_acd = acd_s < self.cfg.min_acd_secs;
        if !(low_asr || low_acd) {
            return None;
        }
        let mut why = Vec::new();
        if low_acd {
            why.push(format!("ACD {acd_s:.1} s < {} s", self.cfg.min_acd_secs));
        }
        if low_asr {
            why.push(format!(
                "ASR {:.1}% < {:.0}%",
                asr * 100.0,
                self.cfg.min_asr * 100.0
            ));
        }
        Some(Downgrade {
            account_id: a.account_id.clone(),
            seizures: w.seizures,
            answered: w.answered,
            asr,
            acd_s,
            // The latest event time seen for the account, not the tipping
            // call's own: calls reach the rater slightly out of order, and
            // every call already rated must lie before the decision.
            decided_at_ms: w.latest_ms,
            window_secs: self.cfg.window_secs,
            reason: format!(
                "non-conforming wholesale traffic: {} over {} seizures in the last {} h",
                why.join(", "),
                w.seizures,
                self.cfg.window_secs as f64 / 3600.0
            ),
        })
    }
}

/// One recorded change of an account's rating category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryChange {
    pub effective: DateTime<Utc>,
    pub category: AccountKind,
    pub change_id: String,
}

/// Rating-category changes per account, ordered by effective time.
#[derive(Debug, Clone, Default)]
pub struct PlanHistory {
    by_account: HashMap<String, Vec<CategoryChange>, FastHash>,
}

impl PlanHistory {
    /// Records a change; `false` when this change id is already known.
    pub fn record(
        &mut self,
        account_id: &str,
        effective: DateTime<Utc>,
        category: AccountKind,
        change_id: &str,
    ) -> bool {
        let v = self.by_account.entry(account_id.to_string()).or_default();
        if v.iter().any(|c| c.change_id == change_id) {
            return false;
        }
        v.push(CategoryChange {
            effective,
            category,
            change_id: change_id.to_string(),
        });
        v.sort_by(|a, b| (a.effective, &a.change_id).cmp(&(b.effective, &b.change_id)));
        true
    }

    /// The category in force at `at` (the latest change effective at or
    /// before it), `None` when no change applies (use the accounts file).
    #[inline]
    pub fn category_at(&self, account_id: &str, at: DateTime<Utc>) -> Option<AccountKind> {
        if self.by_account.is_empty() {
            return None;
        }
        self.by_account
            .get(account_id)?
            .iter()
            .rev()
            .find(|c| c.effective <= at)
            .map(|c| c.category)
    }

    /// The latest recorded category.
    pub fn current(&self, account_id: &str) -> Option<AccountKind> {
        self.by_account.get(account_id)?.last().map(|c| c.category)
    }

    pub fn len(&self) -> usize {
        self.by_account.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_account.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attempt `i`, set up every 10 s; tests use `settle_secs = 0` unless
    /// they are about settling.
    fn att(i: i64, answered: bool, dur_s: i64) -> Attempt {
        let setup = 1_790_000_000_000 + i * 10_000;
        Attempt {
            account_id: "w1".into(),
            setup_ms: setup,
            end_ms: setup + dur_s * 1000,
            answered,
            duration_ms: dur_s * 1000,
        }
    }

    fn cfg0() -> ConformanceConfig {
        ConformanceConfig {
            settle_secs: 0,
            bucket_secs: 1,
            ..Default::default()
        }
    }

    fn run(m: &mut ConformanceMonitor, calls: impl IntoIterator<Item = Attempt>) -> Vec<Downgrade> {
        calls.into_iter().filter_map(|a| m.observe(&a)).collect()
    }

    #[test]
    fn low_asr_over_the_minimum_sample_downgrades_at_the_tipping_call() {
        let mut m = ConformanceMonitor::new(cfg0()).unwrap();
        // ASR 40%, ACD 120 s.
        let calls = (0..99).map(|i| att(i, i % 5 < 2, 120));
        assert!(run(&mut m, calls).is_empty(), "under the minimum sample");
        let d = m
            .observe(&att(99, false, 0))
            .expect("100th seizure decides");
        assert_eq!(d.seizures, 100);
        assert!((d.asr - 0.4).abs() < 1e-9, "{d:?}");
        // Decided at the newest hangup seen: attempt 98 (980 s + 120 s),
        // not the tipping attempt 99 (990 s + 0 s).
        assert_eq!(d.decided_at_ms, att(98, false, 120).end_ms);
        assert!(d.reason.contains("ASR 40.0%"), "{}", d.reason);
    }

    #[test]
    fn low_acd_downgrades_and_conforming_traffic_never_does() {
        let mut m = ConformanceMonitor::new(cfg0()).unwrap();
        let d = run(&mut m, (0..150).map(|i| att(i, i % 10 < 8, 45)));
        assert!(!d.is_empty());
        assert!((d[0].acd_s - 45.0).abs() < 1e-9);
        assert!(d[0].reason.contains("ACD 45.0 s"));
        let mut m = ConformanceMonitor::new(cfg0()).unwrap();
        // ASR 60%, ACD 90 s: conforming, however long it runs.
        assert!(run(&mut m, (0..5000).map(|i| att(i, i % 10 < 6, 90))).is_empty());
        // Exactly on the thresholds (ASR 50%, ACD 60 s) is not below them.
        let mut m = ConformanceMonitor::new(cfg0()).unwrap();
        assert!(run(&mut m, (0..400).map(|i| att(i, i % 2 == 0, 60))).is_empty());
    }

    #[test]
    fn old_evidence_leaves_the_window() {
        let cfg = ConformanceConfig {
            window_secs: 3600,
            ..cfg0()
        };
        let mut m = ConformanceMonitor::new(cfg).unwrap();
        // 80 bad calls, then 2 h of silence, then 80 more bad calls: never
        // 100 in one hour.
        let mut calls: Vec<Attempt> = (0..80).map(|i| att(i, false, 0)).collect();
        calls.extend((0..80).map(|i| att(720 + i, false, 0)));
        assert!(run(&mut m, calls).is_empty());
    }

    #[test]
    fn failures_of_a_burst_do_not_count_before_its_conversations_end() {
        // Calls set up every 10 s, ASR 60%: failures end after 15 s, the
        // answered ones after 10 min. Judged by hangup order without a
        // settle time the first 100 ended calls would be mostly failures.
        let run_burst = |settle_secs| {
            let mut m = ConformanceMonitor::new(ConformanceConfig {
                settle_secs,
                ..Default::default()
            })
            .unwrap();
            let mut calls: Vec<Attempt> = (0..600)
                .map(|i| {
                    let a = i % 10 < 6;
                    let mut c = att(i, a, if a { 600 } else { 0 });
                    if !a {
                        c.end_ms = c.setup_ms + 15_000;
                    }
                    c
                })
                .collect();
            calls.sort_by_key(|c| c.end_ms);
            run(&mut m, calls)
        };
        assert!(!run_burst(0).is_empty(), "hangup order alone is biased");
        assert!(
            run_burst(900).is_empty(),
            "settled figures are the true 60%"
        );
    }

    #[test]
    fn history_rates_by_the_category_in_force_at_answer_time() {
        let mut h = PlanHistory::default();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(h.record("a", t("2026-11-21T10:00:00Z"), AccountKind::Retail, "c1"));
        assert!(!h.record("a", t("2026-11-21T10:00:00Z"), AccountKind::Retail, "c1"));
        assert!(h.record("a", t("2026-11-22T09:00:00Z"), AccountKind::Wholesale, "c2"));
        assert_eq!(h.category_at("a", t("2026-11-21T09:59:59Z")), None);
        assert_eq!(
            h.category_at("a", t("2026-11-21T10:00:00Z")),
            Some(AccountKind::Retail)
        );
        assert_eq!(
            h.category_at("a", t("2026-11-22T08:00:00Z")),
            Some(AccountKind::Retail)
        );
        assert_eq!(
            h.category_at("a", t("2026-11-22T09:00:01Z")),
            Some(AccountKind::Wholesale)
        );
        assert_eq!(h.current("a"), Some(AccountKind::Wholesale));
        assert_eq!(h.category_at("b", t("2026-11-22T09:00:01Z")), None);
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = ConformanceMonitor::new(ConformanceConfig {
            min_asr: 1.5,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.field, "min_asr");
        let e = ConformanceMonitor::new(ConformanceConfig {
            settle_secs: 86_400,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.field, "settle_secs");
        assert!(toml_like_unknown_key_is_refused());
    }

    fn toml_like_unknown_key_is_refused() -> bool {
        serde_json::from_str::<ConformanceConfig>(r#"{"window_secs": 60, "colour": 1}"#).is_err()
    }

    proptest::proptest! {
        /// Within one window, the first decision comes exactly at the first
        /// attempt where the naive cumulative figures cross the rule.
        #[test]
        fn decision_matches_naive_arithmetic(
            calls in proptest::collection::vec((proptest::bool::ANY, 0i64..300), 1..400)
        ) {
            let mut m = ConformanceMonitor::new(cfg0()).unwrap();
            let (mut n, mut ans, mut ms) = (0u64, 0u64, 0i64);
            let mut want = None;
            for (i, (a, d)) in calls.iter().enumerate() {
                n += 1;
                if *a { ans += 1; ms += d * 1000; }
                let asr = ans as f64 / n as f64;
                let acd = if ans == 0 { 0.0 } else { ms as f64 / 1000.0 / ans as f64 };
                if want.is_none() && n >= 100 && (asr < 0.5 || acd < 60.0) {
                    want = Some(i);
                }
            }
            let got = calls
                .iter()
                .enumerate()
                .find_map(|(i, (a, d))| m.observe(&att(i as i64, *a, *d)).map(|_| i));
            proptest::prop_assert_eq!(got, want);
        }
    }
}
