//! Per-route FAS patterns over a sliding event-time window, the route pull
//! decision and the credits for the suspect calls on a pulled route.
//!
//! A route is `trunk × breakout`: the same trunk can be honest on one
//! destination and fake answers on another, and the honest trunks on the
//! same breakout (its *peers*) are the best baseline there is, because they
//! see the same callees, the same mobile networks and the same time of day.
//!
//! This module owns [`RouteMonitor`] (all route state), [`RouteConfig`],
//! [`RouteAlert`] and [`Credit`].
//!
//! # Windows: a pure function of the calls
//! Event time is [`crate::event_ts_ms`]. Time is cut into epoch-aligned
//! slices of `slide_ms`; a window is the `window_ms / slide_ms` slices
//! ending at a slice boundary. A window is judged once, for every route of
//! the monitor, when the watermark (the newest slice seen) is
//! `allowed_lateness_ms` (at least one slice) past its last slice; a call
//! in a slice some judged window covered is late and counts in no window.
//! Each `cdr_id` counts once per route (ids are kept per slice). So the
//! calls judged, the verdict, the evidence and the alert id depend only on
//! the calls, not on copies, restarts or their order within the lateness
//! bound. The state persists as [`RouteRecord`]s
//! ([`RouteMonitor::take_changes`] / [`RouteMonitor::restore_record`]).
//! One monitor holds the routes of one input partition; the input is
//! keyed by breakout, so a route and all its peers are in one monitor
//! whatever the number of instances.
//!
//! # Patterns (any `min_patterns` of them pull the route)
//! Figures are over answered calls of the window unless said otherwise.
//! The *baseline* is the route's peers in the same slices (other trunks on
//! the breakout, pooled) when they have `min_peer_answered` answered calls,
//! else the median of the route's own last clean aligned windows (at least
//! `min_history_windows`), else none. A window is *clean* for history when
//! none of the absolute FAS markers hold (CV above `uniform_acd_cv_max`,
//! instant and silence rates below `rate_min`), so a route that was
//! faking answers all along does not become its own excuse.
//! - `uniform_acd`: coefficient of variation of answered durations
//!   `<= uniform_acd_cv_max` and, with a baseline CV, `<=
//!   uniform_acd_baseline_ratio × baseline CV`. Real conversations are
//!   roughly exponential (CV ≈ 1); a switch that bills a fixed dead-air
//!   length or hangs up on a timer produces near-constant durations.
//! - `instant_answer_rate`: share of calls with the `instant_answer` signal
//!   `>= rate_min` and `>= rate_baseline_multiple × baseline`, or `>=
//!   rate_no_baseline_min` without baseline.
//! - `silence_rate`: same rule on the share of calls with `media_silence` or
//!   `no_far_end_media`, over the calls that have media stats (needs
//!   `min_answered` of them).
//! - `high_asr_low_acd`: ASR `>= asr_high_min` and `>= baseline ASR +
//!   asr_baseline_margin`, and ACD `<= acd_baseline_ratio × baseline ACD`;
//!   without baseline ASR `>= asr_high_no_baseline` and ACD `<=
//!   acd_low_no_baseline_s`. Answering everything and then billing a few
//!   seconds of nothing is the economic shape of FAS; honest short-call
//!   (dialer) traffic has low ASR instead.
//!
//! # Pull and credits
//! When a route first meets the rule, [`RouteMonitor::observe`] returns one
//! [`RouteAlert`] (action `pull`) whose `credited` list holds a [`Credit`]
//! for every call in that window whose *own* verdict was suspect. The route
//! then stays pulled, and never alerts again, until
//! [`RouteMonitor::restore`]. Every suspect call of the route from the
//! window's start on that is not in the window (after it, arrived before
//! or after the pull, or late) is credited too, but has no new alert to
//! travel with: those credits queue in the monitor and are handed out by
//! [`RouteMonitor::take_credits`], carrying the `alert_id` of the pull that
//! justifies them. The caller drains after each `observe`, so the
//! queue holds at most the credits of one call. Calls that were not suspect
//! on their own are never credited, whatever the route did; a credit is
//! exactly the negated rated amount and only calls with a positive amount
//! get one.
//!
//! Credit ids depend only on the `cdr_id`, so a CDR is credited at most once
//! downstream even if it is redelivered; the monitor also drops duplicate
//! suspect `cdr_id`s it still holds in its retained slices.
//!
//! # Memory
//! Slices older than the window plus `allowed_lateness_ms` behind the
//! event-time watermark (the newest slice seen) are dropped; calls that old
//! no longer count in any window (they are still credited on a pulled
//! route). A route with no retained slice, no pull and no traffic for
//! `idle_route_ms` is forgotten with its history. A far-future timestamp
//! moves the watermark and flushes the windows, so the caller drops CDRs
//! with implausible clocks before they get here (the assembler does).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{id_hash, stable_id};
use crate::signals::{has_media_stats, CallFacts, CallVerdict, FasSignal};
use crate::{check_range, event_ts_ms, invalid, ConfigError};

/// Reason string of every FAS credit.
pub const CREDIT_REASON: &str = "fas_credit";
/// Action of every route alert.
pub const ACTION_PULL: &str = "pull";

/// Pattern names as they appear in [`RouteAlert::patterns`].
pub const PATTERN_UNIFORM_ACD: &str = "uniform_acd";
pub const PATTERN_INSTANT_ANSWER_RATE: &str = "instant_answer_rate";
pub const PATTERN_SILENCE_RATE: &str = "silence_rate";
pub const PATTERN_HIGH_ASR_LOW_ACD: &str = "high_asr_low_acd";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Window length (ms). Must be a multiple of `slide_ms`.
    pub window_ms: i64,
    /// Slice length (ms): the window slides in these steps.
    pub slide_ms: i64,
    /// How far behind the watermark a call may arrive and still count.
    pub allowed_lateness_ms: i64,
    /// Forget a route (and its history) after this long without traffic.
    pub idle_route_ms: i64,
    /// A route without traffic this long behind the partition's newest
    /// call follows the partition clock, so its last windows are judged.
    pub idle_close_ms: i64,
    /// Answered calls the route needs in the window before any pattern is
    /// judged (30 is where a CV or a rate stops being anecdote).
    pub min_answered: u64,
    /// Answered calls the pooled peers need to serve as baseline.
    pub min_peer_answered: u64,
    /// Clean aligned windows of own history kept per route.
    pub history_windows: usize,
    /// Clean windows needed before history serves as baseline.
    pub min_history_windows: usize,
    pub uniform_acd_cv_max: f64,
    pub uniform_acd_baseline_ratio: f64,
    pub rate_min: f64,
    pub rate_baseline_multiple: f64,
    pub rate_no_baseline_min: f64,
    pub asr_high_min: f64,
    pub asr_baseline_margin: f64,
    pub acd_baseline_ratio: f64,
    pub asr_high_no_baseline: f64,
    pub acd_low_no_baseline_s: f64,
    /// Patterns that must hold together to pull the route.
    pub min_patterns: usize,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            window_ms: 15 * 60_000,
            slide_ms: 60_000,
            allowed_lateness_ms: 5 * 60_000,
            idle_route_ms: 6 * 3_600_000,
            idle_close_ms: 3_600_000,
            min_answered: 30,
            min_peer_answered: 30,
            history_windows: 8,
            min_history_windows: 2,
            uniform_acd_cv_max: 0.15,
            uniform_acd_baseline_ratio: 0.5,
            rate_min: 0.5,
            rate_baseline_multiple: 3.0,
            rate_no_baseline_min: 0.7,
            asr_high_min: 0.7,
            asr_baseline_margin: 0.25,
            acd_baseline_ratio: 0.5,
            asr_high_no_baseline: 0.9,
            acd_low_no_baseline_s: 20.0,
            min_patterns: 1,
        }
    }
}

/// Slices per window are capped so one `observe` stays cheap.
const MAX_SLICES_PER_WINDOW: i64 = 1440;

impl RouteConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.slide_ms <= 0 {
            return Err(invalid("slide_ms", "must be > 0"));
        }
        if self.window_ms <= 0 || self.window_ms % self.slide_ms != 0 {
            return Err(invalid(
                "window_ms",
                "must be a positive multiple of slide_ms",
            ));
        }
        if self.window_ms / self.slide_ms > MAX_SLICES_PER_WINDOW {
            return Err(invalid(
                "window_ms",
                format!("at most {MAX_SLICES_PER_WINDOW} slices per window"),
            ));
        }
        if self.allowed_lateness_ms < 0 {
            return Err(invalid("allowed_lateness_ms", "must be >= 0"));
        }
        if self.idle_close_ms < self.allowed_lateness_ms.max(self.slide_ms) {
            return Err(invalid(
                "idle_close_ms",
                "must be >= allowed_lateness_ms and >= slide_ms",
            ));
        }
        let history_ms = self
            .window_ms
            .saturating_mul(self.history_windows as i64 + 1);
        if self.idle_route_ms
            < self
                .idle_close_ms
                .saturating_add(self.window_ms)
                .saturating_add(self.allowed_lateness_ms)
                .max(history_ms)
        {
            return Err(invalid(
                "idle_route_ms",
                "must be >= idle_close_ms + window_ms + allowed_lateness_ms and >= (history_windows + 1) × window_ms",
            ));
        }
        if self.min_answered < 2 {
            return Err(invalid(
                "min_answered",
                "must be >= 2 (a CV needs two calls)",
            ));
        }
        if self.min_peer_answered < 1 {
            return Err(invalid("min_peer_answered", "must be >= 1"));
        }
        if self.min_history_windows < 1 {
            return Err(invalid("min_history_windows", "must be >= 1"));
        }
        if self.history_windows < self.min_history_windows {
            return Err(invalid("history_windows", "must be >= min_history_windows"));
        }
        check_range("uniform_acd_cv_max", self.uniform_acd_cv_max, 0.0, f64::MAX)?;
        check_range(
            "uniform_acd_baseline_ratio",
            self.uniform_acd_baseline_ratio,
            0.0,
            1.0,
        )?;
        check_range("rate_min", self.rate_min, 0.0, 1.0)?;
        check_range(
            "rate_baseline_multiple",
            self.rate_baseline_multiple,
            1.0,
            f64::MAX,
        )?;
        check_range("rate_no_baseline_min", self.rate_no_baseline_min, 0.0, 1.0)?;
        check_range("asr_high_min", self.asr_high_min, 0.0, 1.0)?;
        check_range("asr_baseline_margin", self.asr_baseline_margin, 0.0, 1.0)?;
        check_range("acd_baseline_ratio", self.acd_baseline_ratio, 0.0, 1.0)?;
        check_range("asr_high_no_baseline", self.asr_high_no_baseline, 0.0, 1.0)?;
        check_range(
            "acd_low_no_baseline_s",
            self.acd_low_no_baseline_s,
            0.0,
            f64::MAX,
        )?;
        if !(1..=4).contains(&self.min_patterns) {
            return Err(invalid("min_patterns", "must be within 1..=4"));
        }
        Ok(())
    }

    fn slices_per_window(&self) -> i64 {
        self.window_ms / self.slide_ms
    }

    fn lateness_slices(&self) -> i64 {
        // Round up: a partial slice of lateness still needs the whole slice.
        (self.allowed_lateness_ms + self.slide_ms - 1) / self.slide_ms
    }
}

/// A money adjustment for one suspect call on a pulled route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// `stable_id(cdr_id, "fas_credit")`: one credit per CDR, ever.
    pub adjustment_id: String,
    pub cdr_id: String,
    pub account_id: String,
    /// Negative: minus the rated amount of the call.
    pub amount: Decimal,
    /// Always [`CREDIT_REASON`].
    pub reason: String,
    /// The pull alert that justifies the credit.
    pub alert_id: String,
    /// Currency of the credited call.
    pub currency: String,
    /// Setup and event time of the credited call (a credit is dated by the
    /// call it refunds, so it lands in that call's billing period).
    pub call_setup_ts_ms: i64,
    pub call_event_ts_ms: i64,
}

/// A route crossed the FAS rule: pull it and credit its suspect calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteAlert {
    /// `stable_id("fas_route_alert", trunk, breakout, window_start_ms)`.
    pub alert_id: String,
    pub trunk_id: String,
    pub breakout: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Pattern names (`uniform_acd`, …) in a fixed order.
    pub patterns: Vec<String>,
    pub evidence: BTreeMap<String, f64>,
    /// Always [`ACTION_PULL`].
    pub action: String,
    pub credited: Vec<Credit>,
}

/// Gauges for the detector's metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteMonitorStats {
    pub breakouts: usize,
    pub routes: usize,
    pub pulled: usize,
    pub retained_slices: usize,
    /// Calls too late to count in any window (cumulative).
    pub late_calls: u64,
    pub pending_credits: usize,
}

/// Additive per-slice counters. Durations are integer milliseconds in
/// `i128`, so sums of squares are exact and peers can be computed as
/// `breakout − route` without floating-point drift.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    seizures: u64,
    answered: u64,
    #[serde(with = "i128_text")]
    dur_sum_ms: i128,
    #[serde(with = "i128_text")]
    dur_sq_sum_ms: i128,
    instant: u64,
    media_known: u64,
    silent: u64,
    /// Calls whose own verdict was suspect.
    suspect: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.seizures += o.seizures;
        self.answered += o.answered;
        self.dur_sum_ms += o.dur_sum_ms;
        self.dur_sq_sum_ms += o.dur_sq_sum_ms;
        self.instant += o.instant;
        self.media_known += o.media_known;
        self.silent += o.silent;
        self.suspect += o.suspect;
    }

    fn minus(&self, o: &Stats) -> Stats {
        Stats {
            seizures: self.seizures.saturating_sub(o.seizures),
            answered: self.answered.saturating_sub(o.answered),
            dur_sum_ms: (self.dur_sum_ms - o.dur_sum_ms).max(0),
            dur_sq_sum_ms: (self.dur_sq_sum_ms - o.dur_sq_sum_ms).max(0),
            instant: self.instant.saturating_sub(o.instant),
            media_known: self.media_known.saturating_sub(o.media_known),
            silent: self.silent.saturating_sub(o.silent),
            suspect: self.suspect.saturating_sub(o.suspect),
        }
    }

    fn of_call(facts: &CallFacts, verdict: &CallVerdict) -> Stats {
        let mut s = Stats {
            seizures: 1,
            ..Stats::default()
        };
        if facts.answered {
            let d = i128::from(facts.duration_ms.max(0));
            s.answered = 1;
            s.dur_sum_ms = d;
            s.dur_sq_sum_ms = d * d;
            s.instant = u64::from(verdict.has(FasSignal::InstantAnswer));
            s.media_known = u64::from(has_media_stats(facts));
            s.suspect = u64::from(verdict.suspect);
            s.silent =
                u64::from(s.media_known == 1 && verdict.signals.iter().any(|x| x.is_silence()));
        }
        s
    }

    fn asr(&self) -> Option<f64> {
        (self.seizures > 0).then(|| self.answered as f64 / self.seizures as f64)
    }

    fn acd_s(&self) -> Option<f64> {
        (self.answered > 0).then(|| self.dur_sum_ms as f64 / self.answered as f64 / 1000.0)
    }

    /// Population CV = sqrt(n·Σx² − (Σx)²) / Σx, exact up to the final
    /// conversion. None when every duration is zero.
    fn cv(&self) -> Option<f64> {
        if self.answered < 2 || self.dur_sum_ms <= 0 {
            return None;
        }
        let n = i128::from(self.answered);
        let num = (n * self.dur_sq_sum_ms - self.dur_sum_ms * self.dur_sum_ms).max(0);
        Some((num as f64).sqrt() / self.dur_sum_ms as f64)
    }

    fn instant_rate(&self) -> Option<f64> {
        (self.answered > 0).then(|| self.instant as f64 / self.answered as f64)
    }

    fn silence_rate(&self) -> Option<f64> {
        (self.media_known > 0).then(|| self.silent as f64 / self.media_known as f64)
    }
}

/// `i128` as a decimal string: JSON numbers do not carry it.
mod i128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A suspect call held for a possible credit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuspectCall {
    cdr_id: String,
    account_id: String,
    amount: Decimal,
    currency: String,
    setup_ts_ms: i64,
    event_ts_ms: i64,
    credited: bool,
}

impl SuspectCall {
    fn of(f: &CallFacts, credited: bool) -> Self {
        SuspectCall {
            cdr_id: f.cdr_id.clone(),
            account_id: f.account_id.clone(),
            amount: f.amount,
            currency: f.currency.clone(),
            setup_ts_ms: f.setup_ts_ms,
            event_ts_ms: event_ts_ms(f),
            credited,
        }
    }

    fn credit(&self, alert_id: &str) -> Credit {
        Credit {
            adjustment_id: stable_id(&[&self.cdr_id, CREDIT_REASON]),
            cdr_id: self.cdr_id.clone(),
            account_id: self.account_id.clone(),
            amount: -self.amount,
            reason: CREDIT_REASON.to_string(),
            alert_id: alert_id.to_string(),
            currency: self.currency.clone(),
            call_setup_ts_ms: self.setup_ts_ms,
            call_event_ts_ms: self.event_ts_ms,
        }
    }
}

/// One route's calls in one slice.
#[derive(Debug, Default, Clone, PartialEq)]
struct Slice {
    stats: Stats,
    /// Every cdr_id folded into this slice (hashed): a copy is ignored.
    ids: HashSet<u64>,
    suspects: Vec<SuspectCall>,
}

/// Figures of one closed, clean aligned window of a route.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Aligned window index (a summary older than `history_windows`
    /// windows before the judged one is not used).
    window: i64,
    asr: f64,
    acd_s: f64,
    cv: Option<f64>,
    instant_rate: f64,
    silence_rate: Option<f64>,
}

/// A pull in force: the alert that made it and the first slice its window
/// covered (suspect calls from there on are credited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pull {
    pub alert_id: String,
    pub from_slice: i64,
}

#[derive(Debug)]
struct RouteState {
    slices: BTreeMap<i64, Slice>,
    history: VecDeque<WindowSummary>,
    /// First aligned window index not yet summarised into `history`.
    next_hist_window: i64,
    last_slice: i64,
    /// The route's event-time clock: its newest slice, or the partition's
    /// newest minus `idle_close_ms` when that is later (so the last
    /// windows of a route whose traffic stopped are judged too).
    clock: i64,
    /// Windows ending at or before this slice boundary are judged; a call
    /// in an earlier slice is late.
    evaluated_through: Option<i64>,
    /// Slices up to and including this one are ignored by evaluation:
    /// set by `restore` so the evidence that pulled the route does not pull
    /// it again at once.
    restored_through: Option<i64>,
    pulled: Option<Pull>,
}

impl RouteState {
    fn new(idx: i64, k: i64) -> Self {
        RouteState {
            slices: BTreeMap::new(),
            history: VecDeque::new(),
            next_hist_window: idx.div_euclid(k),
            last_slice: idx,
            clock: idx,
            evaluated_through: None,
            restored_through: None,
            pulled: None,
        }
    }
}

#[derive(Debug, Default)]
struct BreakoutState {
    slices: BTreeMap<i64, Stats>,
    routes: BTreeMap<String, RouteState>,
}

/// The monitor's persisted form. A compacted topic keyed by
/// [`RouteRecord::key`] holds the newest of each: one `Meta` (watermark and
/// evaluation progress), one `Route` per route (history, pull, restore)
/// and one `Slice` per breakout and slice (the pool and every route's
/// counts, ids and suspect calls), so a batch rewrites only what it
/// touched and no record grows with the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RouteRecord {
    Meta {
        watermark: i64,
    },
    Route {
        breakout: String,
        trunk_id: String,
        last_slice: i64,
        clock: i64,
        evaluated_through: Option<i64>,
        next_hist_window: i64,
        restored_through: Option<i64>,
        pulled: Option<Pull>,
        history: Vec<WindowSummary>,
    },
    Slice {
        breakout: String,
        slice: i64,
        pool: Stats,
        routes: Vec<RouteSlice>,
    },
}

/// One route's part of a persisted slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSlice {
    trunk_id: String,
    stats: Stats,
    ids: Vec<u64>,
    suspects: Vec<SuspectCall>,
}

fn meta_key() -> String {
    "meta".to_string()
}

fn route_key(breakout: &str, trunk: &str) -> String {
    format!("route\u{0}{breakout}\u{0}{trunk}")
}

fn slice_key(breakout: &str, slice: i64) -> String {
    format!("slice\u{0}{breakout}\u{0}{slice}")
}

impl RouteRecord {
    pub fn key(&self) -> String {
        match self {
            RouteRecord::Meta { .. } => meta_key(),
            RouteRecord::Route {
                breakout, trunk_id, ..
            } => route_key(breakout, trunk_id),
            RouteRecord::Slice {
                breakout, slice, ..
            } => slice_key(breakout, *slice),
        }
    }
}

/// A record to write (`Some`) or delete (`None`, a tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteChange {
    pub key: String,
    pub record: Option<RouteRecord>,
}

#[derive(Debug, Clone, Copy)]
enum BaselineKind {
    Peers,
    History,
}

#[derive(Debug, Clone, Copy)]
struct Baseline {
    kind: BaselineKind,
    asr: Option<f64>,
    acd_s: Option<f64>,
    cv: Option<f64>,
    instant_rate: Option<f64>,
    silence_rate: Option<f64>,
}

/// Owned state of the routes of one input partition (the input is keyed
/// by breakout, so every route of a breakout, and so every peer, is here).
/// Feed it every scored call of the partition in (roughly) event-time
/// order.
#[derive(Debug)]
pub struct RouteMonitor {
    cfg: RouteConfig,
    breakouts: BTreeMap<String, BreakoutState>,
    /// Newest slice index seen (the partition clock).
    watermark: Option<i64>,
    pending: Vec<Credit>,
    late_calls: u64,
    dirty_slices: BTreeSet<(String, i64)>,
    dirty_routes: BTreeSet<(String, String)>,
    gone: Vec<String>,
    meta_dirty: bool,
}

impl RouteMonitor {
    pub fn new(cfg: RouteConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            breakouts: BTreeMap::new(),
            watermark: None,
            pending: Vec::new(),
            late_calls: 0,
            dirty_slices: BTreeSet::new(),
            dirty_routes: BTreeSet::new(),
            gone: Vec::new(),
            meta_dirty: false,
        })
    }

    pub fn config(&self) -> &RouteConfig {
        &self.cfg
    }

    /// Folds one call in, and judges every window of its route that the
    /// route's clock closed (its last slice `allowed_lateness_ms` behind the
    /// clock). Returns the alerts of the routes pulled now; credits for
    /// suspect calls on routes already pulled go to [`Self::take_credits`].
    pub fn observe(&mut self, facts: &CallFacts, verdict: &CallVerdict) -> Vec<RouteAlert> {
        let cfg = self.cfg;
        let k = cfg.slices_per_window();
        let idx = event_ts_ms(facts).div_euclid(cfg.slide_ms);
        let creditable = verdict.suspect && facts.answered && facts.amount > Decimal::ZERO;
        let bname = facts.breakout.clone();
        let tname = facts.trunk_id.clone();

        self.breakouts
            .entry(bname.clone())
            .or_default()
            .routes
            .entry(tname.clone())
            .or_insert_with(|| RouteState::new(idx, k));
        // A route far behind the partition (new, or idle) follows the
        // partition clock first: its old calls are late like anyone's.
        let mut alerts = Vec::new();
        if let Some(w) = self.watermark {
            alerts = self.advance_route(&bname, &tname, w - cfg.idle_close_ms / cfg.slide_ms);
        }
        let bo = self.breakouts.entry(bname.clone()).or_default();
        let route = bo
            .routes
            .entry(tname.clone())
            .or_insert_with(|| RouteState::new(idx, k));
        let late = route.evaluated_through.is_some_and(|e| idx < e);
        if idx < retention_floor(&cfg, route.clock) {
            // Older than any window still open: it counts nowhere, but a
            // suspect call on a route pulled from before it is credited.
            self.late_calls += 1;
            if let Some(p) = &route.pulled {
                if creditable && idx >= p.from_slice {
                    self.pending
                        .push(SuspectCall::of(facts, true).credit(&p.alert_id));
                }
            }
            alerts.extend(self.tick(idx));
            return alerts;
        }
        let slice = route.slices.entry(idx).or_default();
        if !slice.ids.insert(id_hash(&facts.cdr_id)) {
            // A copy of a call already folded in.
            alerts.extend(self.tick(idx));
            return alerts;
        }
        route.last_slice = route.last_slice.max(idx);
        self.dirty_slices.insert((bname.clone(), idx));
        self.dirty_routes.insert((bname.clone(), tname.clone()));
        if late {
            self.late_calls += 1;
        }
        let stats = Stats::of_call(facts, verdict);
        match &route.pulled {
            Some(p) => {
                // Not added to the breakout pool: a pulled route's traffic
                // is suspect and must not raise its peers' baseline.
                let credited = creditable && idx >= p.from_slice;
                if credited {
                    self.pending
                        .push(SuspectCall::of(facts, true).credit(&p.alert_id));
                }
                if !late {
                    slice.stats.add(&stats);
                }
                if creditable {
                    slice.suspects.push(SuspectCall::of(facts, credited));
                }
            }
            None => {
                if !late {
                    slice.stats.add(&stats);
                    bo.slices.entry(idx).or_default().add(&stats);
                }
                // Held for a credit even when late: a later pull whose
                // window covers it credits it whatever its arrival order.
                if creditable {
                    slice.suspects.push(SuspectCall::of(facts, false));
                }
            }
        }
        alerts.extend(self.advance_route(&bname, &tname, idx));
        alerts.extend(self.tick(idx));
        alerts
    }

    /// Moves the partition clock to `idx` if it is newer: routes idle for
    /// `idle_close_ms` follow it (their last windows get judged), then
    /// expired state is dropped.
    fn tick(&mut self, idx: i64) -> Vec<RouteAlert> {
        if self.watermark.is_some_and(|w| idx <= w) {
            return Vec::new();
        }
        self.watermark = Some(idx);
        self.meta_dirty = true;
        let idle_clock = idx - self.cfg.idle_close_ms / self.cfg.slide_ms;
        let behind: Vec<(String, String)> = self
            .breakouts
            .iter()
            .flat_map(|(b, bo)| {
                bo.routes
                    .iter()
                    .filter(|(_, r)| r.clock < idle_clock)
                    .map(move |(t, _)| (b.clone(), t.clone()))
            })
            .collect();
        let mut alerts = Vec::new();
        for (b, t) in behind {
            alerts.extend(self.advance_route(&b, &t, idle_clock));
        }
        self.sweep(idx);
        alerts
    }

    /// Moves a route's clock to `clock` if it is newer and judges the
    /// windows that closed, oldest first.
    fn advance_route(&mut self, bname: &str, tname: &str, clock: i64) -> Vec<RouteAlert> {
        let k = self.cfg.slices_per_window();
        let l = self.cfg.lateness_slices().max(1);
        let Some(route) = self
            .breakouts
            .get_mut(bname)
            .and_then(|b| b.routes.get_mut(tname))
        else {
            return Vec::new();
        };
        if clock <= route.clock && route.evaluated_through.is_some() {
            return Vec::new();
        }
        route.clock = route.clock.max(clock);
        self.dirty_routes
            .insert((bname.to_string(), tname.to_string()));
        // A window [b-k, b) is final when the clock is l slices past its
        // last slice.
        let last_b = route.clock - l + 1;
        let mut b = match route.evaluated_through {
            Some(e) => e + 1,
            // Nothing of this route was seen before its first call's
            // lateness horizon.
            None => last_b,
        };
        route.evaluated_through = Some(last_b.max(route.evaluated_through.unwrap_or(i64::MIN)));
        let mut alerts = Vec::new();
        while b <= last_b {
            let Some(route) = self
                .breakouts
                .get(bname)
                .and_then(|bo| bo.routes.get(tname))
            else {
                break;
            };
            if route.pulled.is_some() {
                break;
            }
            // Skip boundaries whose window holds none of the route's
            // slices (an idle route may be far behind).
            match route.slices.range(b - k..).next().map(|(s, _)| *s) {
                None => break,
                Some(s) if s >= b => {
                    b = s + 1;
                    continue;
                }
                Some(_) => {}
            }
            alerts.extend(self.evaluate(bname, tname, b));
            b += 1;
        }
        alerts
    }

    /// Judges one route (not pulled) on the window `[b-k, b)`.
    fn evaluate(&mut self, bname: &str, tname: &str, b: i64) -> Option<RouteAlert> {
        let cfg = self.cfg;
        let k = cfg.slices_per_window();
        let bo = self.breakouts.get_mut(bname)?;
        let route = bo.routes.get_mut(tname)?;
        let lo = (b - k).max(route.restored_through.map_or(i64::MIN, |r| r + 1));
        let hi = b - 1;
        if lo > hi {
            return None;
        }
        let mut own = Stats::default();
        for (_, s) in route.slices.range(lo..=hi) {
            own.add(&s.stats);
        }
        if own.answered < cfg.min_answered {
            return None;
        }
        let peers = if bname.is_empty() {
            // An unknown breakout is not a destination: no peers.
            None
        } else {
            let mut all = Stats::default();
            for (_, s) in bo.slices.range(lo..=hi) {
                all.add(s);
            }
            Some(all.minus(&own))
        };
        // Own history: clean windows among the `history_windows` aligned
        // windows before this one (bounded in time, so forgetting an idle
        // route changes nothing).
        let current = hi.div_euclid(k);
        let history: VecDeque<WindowSummary> = route
            .history
            .iter()
            .filter(|w| w.window < current && w.window >= current - cfg.history_windows as i64)
            .copied()
            .collect();
        let baseline = choose_baseline(&cfg, peers.as_ref(), &history);
        let patterns = judge(&cfg, &own, baseline.as_ref());
        if patterns.len() < cfg.min_patterns {
            return None;
        }
        let window_start_ms = lo.saturating_mul(cfg.slide_ms);
        let window_end_ms = b.saturating_mul(cfg.slide_ms);
        let lo_s = window_start_ms.to_string();
        let alert_id = stable_id(&["fas_route_alert", tname, bname, &lo_s]);
        // Every suspect call from the window's start on: those of the
        // window travel with the alert (so its figures are the window's
        // own), those after it that already arrived go out like any later
        // one.
        let mut credited = Vec::new();
        for (i, s) in route.slices.range_mut(lo..) {
            let mut touched = false;
            for c in s.suspects.iter_mut().filter(|c| !c.credited) {
                c.credited = true;
                touched = true;
                let cr = c.credit(&alert_id);
                if *i < b {
                    credited.push(cr);
                } else {
                    self.pending.push(cr);
                }
            }
            if touched {
                self.dirty_slices.insert((bname.to_string(), *i));
            }
        }
        route.pulled = Some(Pull {
            alert_id: alert_id.clone(),
            from_slice: lo,
        });
        self.dirty_routes
            .insert((bname.to_string(), tname.to_string()));
        // Take the pulled route's evidence out of the breakout pool, so a
        // second FAS route on the same breakout is judged against clean
        // peers, not against this one.
        for (i, sl) in &route.slices {
            if let Some(p) = bo.slices.get_mut(i) {
                *p = p.minus(&sl.stats);
                self.dirty_slices.insert((bname.to_string(), *i));
            }
        }

        let mut evidence = BTreeMap::new();
        put_stats(&mut evidence, "", &own);
        evidence.insert("credited_calls".into(), credited.len() as f64);
        let credited_total: Decimal = credited.iter().map(|c| c.amount).sum();
        evidence.insert(
            "credited_amount".into(),
            credited_total.to_f64().unwrap_or(0.0),
        );
        if let Some(p) = peers.filter(|p| p.seizures > 0) {
            put_stats(&mut evidence, "peer_", &p);
        }
        if let Some(h) = history_baseline(&cfg, &history).or_else(|| {
            // Report the history even when it was not enough to be used.
            (!history.is_empty()).then(|| median_summary(&history))
        }) {
            evidence.insert("history_windows".into(), history.len() as f64);
            put_opt(&mut evidence, "history_asr", h.asr);
            put_opt(&mut evidence, "history_acd_s", h.acd_s);
            put_opt(&mut evidence, "history_acd_cv", h.cv);
            put_opt(&mut evidence, "history_instant_answer_rate", h.instant_rate);
            put_opt(&mut evidence, "history_silence_rate", h.silence_rate);
        }
        let (bp, bh) = match baseline.map(|b| b.kind) {
            Some(BaselineKind::Peers) => (1.0, 0.0),
            Some(BaselineKind::History) => (0.0, 1.0),
            None => (0.0, 0.0),
        };
        evidence.insert("baseline_peers".into(), bp);
        evidence.insert("baseline_history".into(), bh);

        Some(RouteAlert {
            alert_id,
            trunk_id: tname.to_string(),
            breakout: bname.to_string(),
            window_start_ms,
            window_end_ms,
            patterns: patterns.into_iter().map(str::to_string).collect(),
            evidence,
            action: ACTION_PULL.to_string(),
            credited,
        })
    }

    /// Credits for suspect calls on already-pulled routes since the last
    /// call. Drain after every [`Self::observe`].
    pub fn take_credits(&mut self) -> Vec<Credit> {
        std::mem::take(&mut self.pending)
    }

    /// Puts a pulled route back into service. The evidence already in its
    /// window is set aside (the route starts a fresh window after the
    /// current watermark) so it is not pulled again by the calls that
    /// pulled it. Returns false when the route was not pulled.
    pub fn restore(&mut self, trunk_id: &str, breakout: &str) -> bool {
        let Some(route) = self
            .breakouts
            .get_mut(breakout)
            .and_then(|b| b.routes.get_mut(trunk_id))
        else {
            return false;
        };
        if route.pulled.take().is_none() {
            return false;
        }
        route.restored_through = Some(route.clock.max(route.last_slice));
        self.dirty_routes
            .insert((breakout.to_string(), trunk_id.to_string()));
        true
    }

    pub fn is_pulled(&self, trunk_id: &str, breakout: &str) -> bool {
        self.breakouts
            .get(breakout)
            .and_then(|b| b.routes.get(trunk_id))
            .is_some_and(|r| r.pulled.is_some())
    }

    /// `(trunk_id, breakout, alert_id)` of every pulled route.
    pub fn pulled_routes(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (bname, b) in &self.breakouts {
            for (tname, r) in &b.routes {
                if let Some(p) = &r.pulled {
                    out.push((tname.clone(), bname.clone(), p.alert_id.clone()));
                }
            }
        }
        out
    }

    pub fn stats(&self) -> RouteMonitorStats {
        let mut s = RouteMonitorStats {
            breakouts: self.breakouts.len(),
            late_calls: self.late_calls,
            pending_credits: self.pending.len(),
            ..Default::default()
        };
        for b in self.breakouts.values() {
            s.retained_slices += b.slices.len();
            for r in b.routes.values() {
                s.routes += 1;
                s.pulled += usize::from(r.pulled.is_some());
                s.retained_slices += r.slices.len();
            }
        }
        s
    }

    /// Every record changed since the last call (tombstones for slices
    /// and routes that left). The caller writes them after the outputs
    /// they led to were acknowledged.
    pub fn take_changes(&mut self) -> Vec<RouteChange> {
        let mut out: Vec<RouteChange> = std::mem::take(&mut self.gone)
            .into_iter()
            .map(|key| RouteChange { key, record: None })
            .collect();
        for (bname, i) in std::mem::take(&mut self.dirty_slices) {
            let Some(bo) = self.breakouts.get(&bname) else {
                continue;
            };
            let routes: Vec<RouteSlice> = bo
                .routes
                .iter()
                .filter_map(|(t, r)| {
                    let s = r.slices.get(&i)?;
                    let mut ids: Vec<u64> = s.ids.iter().copied().collect();
                    ids.sort_unstable();
                    Some(RouteSlice {
                        trunk_id: t.clone(),
                        stats: s.stats,
                        ids,
                        suspects: s.suspects.clone(),
                    })
                })
                .collect();
            if routes.is_empty() {
                continue;
            }
            let record = RouteRecord::Slice {
                pool: bo.slices.get(&i).copied().unwrap_or_default(),
                breakout: bname,
                slice: i,
                routes,
            };
            out.push(RouteChange {
                key: record.key(),
                record: Some(record),
            });
        }
        for (bname, tname) in std::mem::take(&mut self.dirty_routes) {
            let Some(r) = self
                .breakouts
                .get(&bname)
                .and_then(|b| b.routes.get(&tname))
            else {
                continue;
            };
            let record = RouteRecord::Route {
                breakout: bname,
                trunk_id: tname,
                last_slice: r.last_slice,
                clock: r.clock,
                evaluated_through: r.evaluated_through,
                next_hist_window: r.next_hist_window,
                restored_through: r.restored_through,
                pulled: r.pulled.clone(),
                history: r.history.iter().copied().collect(),
            };
            out.push(RouteChange {
                key: record.key(),
                record: Some(record),
            });
        }
        if std::mem::take(&mut self.meta_dirty) {
            if let Some(watermark) = self.watermark {
                out.push(RouteChange {
                    key: meta_key(),
                    record: Some(RouteRecord::Meta { watermark }),
                });
            }
        }
        out
    }

    /// Restores one persisted record (any order).
    pub fn restore_record(&mut self, rec: RouteRecord) {
        let k = self.cfg.slices_per_window();
        match rec {
            RouteRecord::Meta { watermark } => {
                self.watermark = Some(watermark);
            }
            RouteRecord::Route {
                breakout,
                trunk_id,
                last_slice,
                clock,
                evaluated_through,
                next_hist_window,
                restored_through,
                pulled,
                history,
            } => {
                let r = self
                    .breakouts
                    .entry(breakout)
                    .or_default()
                    .routes
                    .entry(trunk_id)
                    .or_insert_with(|| RouteState::new(last_slice, k));
                r.last_slice = last_slice;
                r.clock = clock;
                r.evaluated_through = evaluated_through;
                r.next_hist_window = next_hist_window;
                r.restored_through = restored_through;
                r.pulled = pulled;
                r.history = history.into_iter().collect();
            }
            RouteRecord::Slice {
                breakout,
                slice,
                pool,
                routes,
            } => {
                let bo = self.breakouts.entry(breakout).or_default();
                if pool != Stats::default() {
                    bo.slices.insert(slice, pool);
                }
                for rs in routes {
                    let r = bo
                        .routes
                        .entry(rs.trunk_id)
                        .or_insert_with(|| RouteState::new(slice, k));
                    r.slices.insert(
                        slice,
                        Slice {
                            stats: rs.stats,
                            ids: rs.ids.into_iter().collect(),
                            suspects: rs.suspects,
                        },
                    );
                }
            }
        }
    }

    /// Runs when the partition clock enters a new slice: summarise every
    /// route's finished aligned windows into history, drop slices no window
    /// can use any more, forget idle routes.
    fn sweep(&mut self, watermark: i64) {
        let cfg = self.cfg;
        let k = cfg.slices_per_window();
        let idle_slices = cfg.idle_route_ms / cfg.slide_ms;
        let gone = &mut self.gone;
        let dirty_routes = &mut self.dirty_routes;
        let dirty_slices = &mut self.dirty_slices;
        self.breakouts.retain(|bname, bo| {
            let mut dropped: BTreeSet<i64> = BTreeSet::new();
            bo.routes.retain(|tname, r| {
                let before = r.history.len();
                let next = r.next_hist_window;
                summarise_history(&cfg, r, last_final_window(&cfg, r.clock));
                // Summaries older than any window still to judge can use.
                let horizon = r.clock.div_euclid(k) - cfg.history_windows as i64 - 1;
                while r.history.front().is_some_and(|w| w.window < horizon) {
                    r.history.pop_front();
                }
                if r.history.len() != before || r.next_hist_window != next {
                    dirty_routes.insert((bname.clone(), tname.clone()));
                }
                let floor = retention_floor(&cfg, r.clock);
                let keep = r.slices.split_off(&floor);
                dropped.extend(std::mem::replace(&mut r.slices, keep).into_keys());
                let idle = watermark.saturating_sub(r.last_slice) > idle_slices;
                let forget = r.slices.is_empty() && r.pulled.is_none() && idle;
                if forget {
                    gone.push(route_key(bname, tname));
                    dirty_routes.remove(&(bname.clone(), tname.clone()));
                }
                !forget
            });
            // The pool keeps what the least advanced route may still judge.
            let floor = bo
                .routes
                .values()
                .map(|r| retention_floor(&cfg, r.clock))
                .min()
                .unwrap_or(i64::MAX);
            let keep = bo.slices.split_off(&floor);
            dropped.extend(std::mem::replace(&mut bo.slices, keep).into_keys());
            // A slice record is rewritten by the next change or deleted
            // once no route and no pool holds the slice.
            for i in dropped {
                let held = bo.slices.contains_key(&i)
                    || bo.routes.values().any(|r| r.slices.contains_key(&i));
                if held {
                    dirty_slices.insert((bname.clone(), i));
                } else {
                    dirty_slices.remove(&(bname.clone(), i));
                    gone.push(slice_key(bname, i));
                }
            }
            !(bo.routes.is_empty() && bo.slices.is_empty())
        });
    }
}

/// Slices before this can no longer be in any window a route with clock
/// `clock` will judge.
fn retention_floor(cfg: &RouteConfig, clock: i64) -> i64 {
    let keep = cfg.slices_per_window() + cfg.lateness_slices().max(1);
    clock.saturating_sub(keep - 1)
}

/// Aligned window j (slices j·k ..= j·k+k−1) is final once its last slice
/// plus the lateness allowance is at or behind the watermark:
/// j·k + k − 1 + L <= watermark.
fn last_final_window(cfg: &RouteConfig, watermark: i64) -> i64 {
    let k = cfg.slices_per_window();
    (watermark - cfg.lateness_slices() - k + 1).div_euclid(k)
}

/// Summarises every finished aligned window of `r` up to `last_final`.
fn summarise_history(cfg: &RouteConfig, r: &mut RouteState, last_final: i64) {
    let k = cfg.slices_per_window();
    let mut j = r.next_hist_window;
    while j <= last_final {
        // Skip empty windows in one step (an idle route may be far behind).
        let Some((&first, _)) = r.slices.range(j * k..).next() else {
            j = last_final + 1;
            break;
        };
        j = first.div_euclid(k);
        if j > last_final {
            break;
        }
        let mut st = Stats::default();
        for (_, s) in r.slices.range(j * k..(j + 1) * k) {
            st.add(&s.stats);
        }
        if st.answered >= cfg.min_answered && is_clean(cfg, &st) {
            r.history.push_back(WindowSummary {
                window: j,
                asr: st.asr().unwrap_or(0.0),
                acd_s: st.acd_s().unwrap_or(0.0),
                cv: st.cv(),
                instant_rate: st.instant_rate().unwrap_or(0.0),
                silence_rate: st.silence_rate(),
            });
            while r.history.len() > cfg.history_windows {
                r.history.pop_front();
            }
        }
        j += 1;
    }
    r.next_hist_window = r.next_hist_window.max(j);
}

/// A window may serve as own history only if no absolute FAS marker holds.
fn is_clean(cfg: &RouteConfig, st: &Stats) -> bool {
    st.cv().is_none_or(|cv| cv > cfg.uniform_acd_cv_max)
        && st.instant_rate().is_none_or(|r| r < cfg.rate_min)
        && st.silence_rate().is_none_or(|r| r < cfg.rate_min)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn median_summary(h: &VecDeque<WindowSummary>) -> Baseline {
    Baseline {
        kind: BaselineKind::History,
        asr: median(h.iter().map(|w| w.asr).collect()),
        acd_s: median(h.iter().map(|w| w.acd_s).collect()),
        cv: median(h.iter().filter_map(|w| w.cv).collect()),
        instant_rate: median(h.iter().map(|w| w.instant_rate).collect()),
        silence_rate: median(h.iter().filter_map(|w| w.silence_rate).collect()),
    }
}

fn history_baseline(cfg: &RouteConfig, h: &VecDeque<WindowSummary>) -> Option<Baseline> {
    (h.len() >= cfg.min_history_windows).then(|| median_summary(h))
}

fn choose_baseline(
    cfg: &RouteConfig,
    peers: Option<&Stats>,
    history: &VecDeque<WindowSummary>,
) -> Option<Baseline> {
    if let Some(p) = peers.filter(|p| p.answered >= cfg.min_peer_answered) {
        return Some(Baseline {
            kind: BaselineKind::Peers,
            asr: p.asr(),
            acd_s: p.acd_s(),
            cv: p.cv(),
            instant_rate: p.instant_rate(),
            // A silence rate over a handful of measured calls is no baseline.
            silence_rate: p
                .silence_rate()
                .filter(|_| p.media_known >= cfg.min_peer_answered),
        });
    }
    history_baseline(cfg, history)
}

/// The rate rule shared by `instant_answer_rate` and `silence_rate`.
fn rate_far_above(cfg: &RouteConfig, rate: f64, baseline: Option<f64>) -> bool {
    match baseline {
        Some(b) => rate >= cfg.rate_min && rate >= cfg.rate_baseline_multiple * b,
        None => rate >= cfg.rate_no_baseline_min,
    }
}

/// Patterns that hold for `own` against `baseline`, in a fixed order.
fn judge(cfg: &RouteConfig, own: &Stats, baseline: Option<&Baseline>) -> Vec<&'static str> {
    let mut out = Vec::new();
    if let Some(cv) = own.cv() {
        let below_baseline = match baseline.and_then(|b| b.cv) {
            Some(bcv) => cv <= cfg.uniform_acd_baseline_ratio * bcv,
            None => true,
        };
        if cv <= cfg.uniform_acd_cv_max && below_baseline {
            out.push(PATTERN_UNIFORM_ACD);
        }
    }
    if let Some(r) = own.instant_rate() {
        if rate_far_above(cfg, r, baseline.and_then(|b| b.instant_rate)) {
            out.push(PATTERN_INSTANT_ANSWER_RATE);
        }
    }
    if own.media_known >= cfg.min_answered {
        if let Some(r) = own.silence_rate() {
            if rate_far_above(cfg, r, baseline.and_then(|b| b.silence_rate)) {
                out.push(PATTERN_SILENCE_RATE);
            }
        }
    }
    if let (Some(asr), Some(acd)) = (own.asr(), own.acd_s()) {
        let hit = match baseline.and_then(|b| b.asr.zip(b.acd_s)) {
            Some((basr, bacd)) => {
                asr >= cfg.asr_high_min
                    && asr >= basr + cfg.asr_baseline_margin
                    && acd <= cfg.acd_baseline_ratio * bacd
            }
            None => asr >= cfg.asr_high_no_baseline && acd <= cfg.acd_low_no_baseline_s,
        };
        if hit {
            out.push(PATTERN_HIGH_ASR_LOW_ACD);
        }
    }
    out
}

fn put_opt(ev: &mut BTreeMap<String, f64>, key: &str, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        ev.insert(key.to_string(), v);
    }
}

fn put_stats(ev: &mut BTreeMap<String, f64>, prefix: &str, s: &Stats) {
    let k = |n: &str| format!("{prefix}{n}");
    ev.insert(k("seizures"), s.seizures as f64);
    ev.insert(k("answered"), s.answered as f64);
    ev.insert(k("media_known"), s.media_known as f64);
    ev.insert(k("suspect_calls"), s.suspect as f64);
    put_opt(ev, &k("asr"), s.asr());
    put_opt(ev, &k("acd_s"), s.acd_s());
    put_opt(ev, &k("acd_cv"), s.cv());
    put_opt(ev, &k("instant_answer_rate"), s.instant_rate());
    put_opt(ev, &k("silence_rate"), s.silence_rate());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(durations_ms: &[i64]) -> Stats {
        let mut s = Stats::default();
        for d in durations_ms {
            let d = i128::from(*d);
            s.add(&Stats {
                seizures: 1,
                answered: 1,
                dur_sum_ms: d,
                dur_sq_sum_ms: d * d,
                ..Stats::default()
            });
        }
        s
    }

    #[test]
    fn cv_is_the_population_coefficient_of_variation() {
        // 1, 2, 3 s: mean 2, population sd sqrt(2/3).
        let s = stats_of(&[1000, 2000, 3000]);
        assert!((s.cv().unwrap() - (2.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
        assert_eq!(stats_of(&[5000; 10]).cv(), Some(0.0));
        assert_eq!(stats_of(&[0, 0, 0]).cv(), None);
        assert_eq!(stats_of(&[1000]).cv(), None);
        assert_eq!(s.acd_s(), Some(2.0));
        assert_eq!(s.asr(), Some(1.0));
    }

    #[test]
    fn peers_by_subtraction_are_exact() {
        let route = stats_of(&[30_000, 31_000, 29_000]);
        let peers = stats_of(&[10_000, 200_000, 45_000, 7_000]);
        let mut all = route;
        all.add(&peers);
        assert_eq!(all.minus(&route), peers);
    }

    #[test]
    fn history_window_finality() {
        let cfg = RouteConfig::default(); // k = 15, lateness 5 slices
        let mut r = RouteState::new(0, cfg.slices_per_window());
        // 40 answered calls with natural spread in window 0 (slices 0..15).
        for i in 0..40i64 {
            let d = i128::from(1000 + (i * i * 997) % 200_000);
            r.slices.entry(i % 15).or_default().stats.add(&Stats {
                seizures: 2,
                answered: 1,
                dur_sum_ms: d,
                dur_sq_sum_ms: d * d,
                ..Stats::default()
            });
        }
        let last_final = |w: i64| last_final_window(&cfg, w);
        assert_eq!(last_final(18), -1, "window 0 still open for late calls");
        assert_eq!(last_final(19), 0);
        summarise_history(&cfg, &mut r, last_final(18));
        assert!(r.history.is_empty());
        summarise_history(&cfg, &mut r, last_final(19));
        assert_eq!(r.history.len(), 1);
        assert!((r.history[0].asr - 0.5).abs() < 1e-12);
        // Summarised once only.
        summarise_history(&cfg, &mut r, last_final(100));
        assert_eq!(r.history.len(), 1);
        assert_eq!(r.next_hist_window, last_final(100) + 1);
    }

    #[test]
    fn dirty_windows_do_not_become_history() {
        let cfg = RouteConfig::default();
        let uniform = stats_of(&[30_000; 40]);
        assert!(!is_clean(&cfg, &uniform));
        let natural = stats_of(&[1_000, 90_000, 15_000, 300_000, 45_000]);
        assert!(is_clean(&cfg, &natural));
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
        use serde::de::value::{Error as DeError, MapDeserializer};
        let empty = MapDeserializer::<_, DeError>::new(Vec::<(&str, f64)>::new().into_iter());
        assert_eq!(
            RouteConfig::deserialize(empty).unwrap(),
            RouteConfig::default()
        );
        let typo = MapDeserializer::<_, DeError>::new(vec![("rate_minimum", 0.4f64)].into_iter());
        let err = RouteConfig::deserialize(typo).unwrap_err();
        assert!(err.to_string().contains("rate_minimum"), "{err}");
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
