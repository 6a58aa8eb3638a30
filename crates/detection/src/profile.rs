//! Short-duration / dialer traffic profiling per account, and the
//! "undeclared dialer" account alert.
//!
//! This module owns [`ProfileMonitor`], [`ProfileConfig`],
//! [`TrafficProfile`], [`ProfileSnapshot`], [`AccountAlert`] and the
//! monitor's persisted form [`ProfileRecord`].
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
//! # Windows: a pure function of the calls
//! Epoch-aligned tumbling windows of `window_ms` by event time
//! ([`crate::event_ts_ms`]). A window is judged once, when the account's
//! clock (its newest call, or its partition's newest minus `idle_close_ms`
//! for an idle account) passes the window's end plus
//! `allowed_lateness_ms`; calls of a judged window are late and ignored.
//! Each `cdr_id` counts once (ids are kept per minute slot). So the set of
//! calls judged, the verdict, the evidence and the alert id depend only on
//! the calls, not on their order within the lateness bound, on duplicates
//! or on restarts: the state is persisted per account and minute
//! ([`ProfileMonitor::take_changes`] / [`ProfileMonitor::restore`]) and
//! partitioned like the input (by account), so N instances judge every
//! account as one would. Memory is bounded the same way: judged windows
//! are dropped, and an account idle past any straggler's lateness is
//! forgotten.
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

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::ids::{id_hash, stable_id};
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
    /// An account without calls this long behind its partition's newest
    /// call follows the partition clock, so its last windows are judged.
    pub idle_close_ms: i64,
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
            idle_close_ms: 3_600_000,
        }
    }
}

impl ProfileConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window_ms < SLOT_MS || self.window_ms % SLOT_MS != 0 {
            // Attempts "per minute" over less than a minute is noise; whole
            // minutes because state is persisted per minute.
            return Err(invalid("window_ms", "must be a positive multiple of 60000"));
        }
        if self.allowed_lateness_ms < 0 {
            return Err(invalid("allowed_lateness_ms", "must be >= 0"));
        }
        if self.idle_close_ms < self.allowed_lateness_ms.max(SLOT_MS) {
            return Err(invalid(
                "idle_close_ms",
                "must be >= allowed_lateness_ms and >= 60000",
            ));
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    attempts: u64,
    answered: u64,
    short: u64,
    dur_sum_ms: i128,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.attempts += o.attempts;
        self.answered += o.answered;
        self.short += o.short;
        self.dur_sum_ms += o.dur_sum_ms;
    }
}

/// Persistent state of the monitor: one `ProfileMeta` per input partition
/// (its newest event time), one `ProfileAccount` per account (its clock)
/// and one `ProfileSlot` per account and minute (counts and the ids
/// already counted). A compacted topic keyed by [`ProfileRecord::key`]
/// holds the newest of each; a minute slot keeps every record small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProfileRecord {
    ProfileMeta {
        partition: i32,
        watermark_ms: i64,
    },
    ProfileAccount {
        account_id: String,
        clock_ms: i64,
    },
    ProfileSlot {
        account_id: String,
        slot_ms: i64,
        attempts: u64,
        answered: u64,
        short: u64,
        dur_sum_ms: i64,
        ids: Vec<u64>,
    },
}

impl ProfileRecord {
    pub fn key(&self) -> String {
        match self {
            ProfileRecord::ProfileMeta { partition, .. } => meta_key(*partition),
            ProfileRecord::ProfileAccount { account_id, .. } => account_key(account_id),
            ProfileRecord::ProfileSlot {
                account_id,
                slot_ms,
                ..
            } => slot_key(account_id, *slot_ms),
        }
    }
}

fn meta_key(partition: i32) -> String {
    format!("profile\u{0}partition\u{0}{partition}")
}

fn account_key(account: &str) -> String {
    format!("profile\u{0}{account}\u{0}clock")
}

fn slot_key(account: &str, slot_ms: i64) -> String {
    format!("profile\u{0}{account}\u{0}{slot_ms}")
}

/// A record to write (`Some`) or delete (`None`, a tombstone), with the
/// input partition it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileChange {
    pub partition: i32,
    pub key: String,
    pub record: Option<ProfileRecord>,
}

/// Length of a persisted slot: windows are whole numbers of them.
pub const SLOT_MS: i64 = 60_000;

#[derive(Debug, Default)]
struct Slot {
    counts: Counts,
    ids: HashSet<u64>,
}

#[derive(Debug)]
struct Account {
    /// The account's event-time clock: its newest call, or the partition's
    /// newest minus `idle_close_ms` when that is later.
    clock_ms: i64,
    clock_dirty: bool,
    slots: BTreeMap<i64, Slot>,
    dirty: BTreeSet<i64>,
    /// Listed in its partition's `touched` since the last take.
    queued: bool,
}

impl Account {
    fn new(clock_ms: i64) -> Self {
        Account {
            clock_ms,
            clock_dirty: true,
            slots: BTreeMap::new(),
            dirty: BTreeSet::new(),
            queued: false,
        }
    }
}

/// The state of one input partition: its newest event time and accounts.
#[derive(Debug)]
struct Part {
    watermark_ms: i64,
    meta_dirty: bool,
    accounts: BTreeMap<String, Account>,
    /// Keys deleted since the last `take_changes`.
    gone: Vec<String>,
    /// Accounts that may have changed since the last `take_changes`, so a
    /// take visits those and not every account the partition holds.
    touched: Vec<String>,
    /// `idle_close_ms + allowed_lateness_ms` behind the watermark, in
    /// windows: idle accounts can only have a window to judge once this
    /// moves, so they are visited then and not on every newer call.
    idle_window: i64,
}

/// Lists `a` for the next take (once per take).
fn touch(touched: &mut Vec<String>, id: &str, a: &mut Account) {
    if !a.queued {
        a.queued = true;
        touched.push(id.to_owned());
    }
}

impl Default for Part {
    fn default() -> Self {
        Part {
            watermark_ms: i64::MIN,
            meta_dirty: false,
            accounts: BTreeMap::new(),
            gone: Vec::new(),
            touched: Vec::new(),
            idle_window: i64::MIN,
        }
    }
}

/// Per-account dialer profiling over closed event-time windows, each call
/// counted once. Every account runs on its own clock, so its verdicts
/// depend on its own calls only; state is kept per input partition (the
/// input is keyed by account) for restore and revoke.
#[derive(Debug)]
pub struct ProfileMonitor {
    cfg: ProfileConfig,
    parts: BTreeMap<i32, Part>,
    late_calls: u64,
}

impl ProfileMonitor {
    pub fn new(cfg: ProfileConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            parts: BTreeMap::new(),
            late_calls: 0,
        })
    }

    pub fn config(&self) -> &ProfileConfig {
        &self.cfg
    }

    /// Folds one call (answered or not: every attempt counts) that arrived
    /// on input `partition` into its account's minute slot, then judges
    /// every window of the account its clock closed (window end +
    /// `allowed_lateness_ms` reached), and of accounts idle for
    /// `idle_close_ms`. Returns an alert per closed window that looks like
    /// a dialer while the account's `declared` profile is not `Dialer`
    /// (`None` = nothing declared). A copy of a counted call, or a call
    /// whose window was already judged, changes nothing.
    pub fn observe(
        &mut self,
        partition: i32,
        facts: &CallFacts,
        declared: &dyn Fn(&str) -> Option<TrafficProfile>,
    ) -> Vec<AccountAlert> {
        let cfg = self.cfg;
        let ts = event_ts_ms(facts);
        let part = self.parts.entry(partition).or_default();
        let idle_clock = part.watermark_ms.saturating_sub(cfg.idle_close_ms);
        let mut alerts = Vec::new();
        let acct = part
            .accounts
            .entry(facts.account_id.clone())
            .or_insert_with(|| Account::new(i64::MIN));
        touch(&mut part.touched, &facts.account_id, acct);
        if idle_clock > acct.clock_ms {
            // Far behind the partition (new, or idle): follow its clock
            // first, so old calls are late like anyone's.
            acct.clock_ms = idle_clock;
            acct.clock_dirty = true;
            alerts.extend(judge(
                &cfg,
                &facts.account_id,
                acct,
                &mut part.gone,
                declared,
            ));
        }
        let win_end = floor(ts, cfg.window_ms).saturating_add(cfg.window_ms);
        if acct.clock_ms != i64::MIN
            && win_end.saturating_add(cfg.allowed_lateness_ms) <= acct.clock_ms
        {
            self.late_calls += 1;
            return alerts;
        }
        let slot_ms = floor(ts, SLOT_MS);
        let slot = acct.slots.entry(slot_ms).or_default();
        if !slot.ids.insert(id_hash(&facts.cdr_id)) {
            return alerts;
        }
        slot.counts.attempts += 1;
        if facts.answered {
            let d = facts.duration_ms.max(0);
            slot.counts.answered += 1;
            slot.counts.dur_sum_ms += i128::from(d);
            slot.counts.short += u64::from(d < cfg.short_call_ms);
        }
        acct.dirty.insert(slot_ms);
        if ts > acct.clock_ms {
            acct.clock_ms = ts;
            acct.clock_dirty = true;
            alerts.extend(judge(
                &cfg,
                &facts.account_id,
                acct,
                &mut part.gone,
                declared,
            ));
        }
        if ts > part.watermark_ms {
            part.watermark_ms = ts;
            part.meta_dirty = true;
            let w = ts
                .saturating_sub(cfg.idle_close_ms)
                .saturating_sub(cfg.allowed_lateness_ms)
                .div_euclid(cfg.window_ms);
            if w > part.idle_window {
                part.idle_window = w;
                alerts.extend(idle(&cfg, part, declared));
            }
        }
        alerts
    }

    /// The newest open window of an account.
    pub fn account_snapshot(&self, account_id: &str) -> Option<ProfileSnapshot> {
        let a = self
            .parts
            .values()
            .find_map(|p| p.accounts.get(account_id))?;
        let (newest, _) = a.slots.last_key_value()?;
        let start = floor(*newest, self.cfg.window_ms);
        let mut c = Counts::default();
        for (_, s) in a.slots.range(start..) {
            c.add(&s.counts);
        }
        Some(snapshot(
            &self.cfg,
            start.div_euclid(self.cfg.window_ms),
            &c,
        ))
    }

    /// Accounts with an open window (gauge).
    pub fn tracked(&self) -> usize {
        self.parts
            .values()
            .map(|p| p.accounts.values().filter(|a| !a.slots.is_empty()).count())
            .sum()
    }

    /// Calls whose window was already judged (cumulative).
    pub fn late_calls(&self) -> u64 {
        self.late_calls
    }

    /// Drops the state of `partition` (revoked: the new owner restores it).
    pub fn revoke(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }

    /// Restores one persisted record read back from `partition`.
    pub fn restore(&mut self, partition: i32, rec: ProfileRecord) {
        let part = self.parts.entry(partition).or_default();
        match rec {
            ProfileRecord::ProfileMeta { watermark_ms, .. } => {
                part.watermark_ms = part.watermark_ms.max(watermark_ms);
            }
            ProfileRecord::ProfileAccount {
                account_id,
                clock_ms,
            } => {
                let a = part
                    .accounts
                    .entry(account_id.clone())
                    .or_insert_with(|| Account::new(clock_ms));
                a.clock_ms = clock_ms;
                a.clock_dirty = false;
                touch(&mut part.touched, &account_id, a);
            }
            ProfileRecord::ProfileSlot {
                account_id,
                slot_ms,
                attempts,
                answered,
                short,
                dur_sum_ms,
                ids,
            } => {
                let a = part
                    .accounts
                    .entry(account_id.clone())
                    .or_insert_with(|| Account::new(i64::MIN));
                touch(&mut part.touched, &account_id, a);
                a.slots.insert(
                    slot_ms,
                    Slot {
                        counts: Counts {
                            attempts,
                            answered,
                            short,
                            dur_sum_ms: i128::from(dur_sum_ms),
                        },
                        ids: ids.into_iter().collect(),
                    },
                );
            }
        }
    }

    /// Every record changed since the last call: slots written, judged
    /// slots and forgotten accounts tombstoned, clocks. The caller writes
    /// them after the alerts they led to were acknowledged.
    pub fn take_changes(&mut self) -> Vec<ProfileChange> {
        let mut out = Vec::new();
        for (p, part) in self.parts.iter_mut() {
            for key in std::mem::take(&mut part.gone) {
                out.push(ProfileChange {
                    partition: *p,
                    key,
                    record: None,
                });
            }
            for id in std::mem::take(&mut part.touched) {
                // Forgotten since it was touched: its tombstone is in `gone`.
                let Some(a) = part.accounts.get_mut(&id) else {
                    continue;
                };
                a.queued = false;
                let id = &id;
                for s in std::mem::take(&mut a.dirty) {
                    let Some(sl) = a.slots.get(&s) else { continue };
                    let mut ids: Vec<u64> = sl.ids.iter().copied().collect();
                    ids.sort_unstable();
                    let record = ProfileRecord::ProfileSlot {
                        account_id: id.clone(),
                        slot_ms: s,
                        attempts: sl.counts.attempts,
                        answered: sl.counts.answered,
                        short: sl.counts.short,
                        dur_sum_ms: i64::try_from(sl.counts.dur_sum_ms).unwrap_or(i64::MAX),
                        ids,
                    };
                    out.push(ProfileChange {
                        partition: *p,
                        key: record.key(),
                        record: Some(record),
                    });
                }
                if std::mem::take(&mut a.clock_dirty) {
                    let record = ProfileRecord::ProfileAccount {
                        account_id: id.clone(),
                        clock_ms: a.clock_ms,
                    };
                    out.push(ProfileChange {
                        partition: *p,
                        key: record.key(),
                        record: Some(record),
                    });
                }
            }
            if std::mem::take(&mut part.meta_dirty) {
                let record = ProfileRecord::ProfileMeta {
                    partition: *p,
                    watermark_ms: part.watermark_ms,
                };
                out.push(ProfileChange {
                    partition: *p,
                    key: record.key(),
                    record: Some(record),
                });
            }
        }
        out
    }
}

/// Accounts idle for `idle_close_ms` follow the partition clock (their
/// last windows get judged); accounts with nothing open, idle long enough
/// that any straggler of theirs would be late anyway, are forgotten.
fn idle(
    cfg: &ProfileConfig,
    part: &mut Part,
    declared: &dyn Fn(&str) -> Option<TrafficProfile>,
) -> Vec<AccountAlert> {
    let idle_clock = part.watermark_ms.saturating_sub(cfg.idle_close_ms);
    let forget_before = idle_clock
        .saturating_sub(cfg.window_ms)
        .saturating_sub(cfg.allowed_lateness_ms);
    let mut alerts = Vec::new();
    let mut forget = Vec::new();
    for (id, a) in part.accounts.iter_mut() {
        if a.clock_ms < idle_clock {
            a.clock_ms = idle_clock;
            a.clock_dirty = true;
            touch(&mut part.touched, id, a);
            alerts.extend(judge(cfg, id, a, &mut part.gone, declared));
        }
        if a.slots.is_empty() && a.clock_ms < forget_before {
            forget.push(id.clone());
        }
    }
    for id in forget {
        part.accounts.remove(&id);
        part.gone.push(account_key(&id));
    }
    alerts
}

/// Judges and drops every window of the account its clock closed.
fn judge(
    cfg: &ProfileConfig,
    account: &str,
    a: &mut Account,
    gone: &mut Vec<String>,
    declared: &dyn Fn(&str) -> Option<TrafficProfile>,
) -> Vec<AccountAlert> {
    let before = floor(
        a.clock_ms.saturating_sub(cfg.allowed_lateness_ms),
        cfg.window_ms,
    );
    let done: Vec<i64> = a.slots.range(..before).map(|(s, _)| *s).collect();
    if done.is_empty() {
        return Vec::new();
    }
    let mut windows: BTreeMap<i64, Counts> = BTreeMap::new();
    for s in done {
        if let Some(sl) = a.slots.remove(&s) {
            windows
                .entry(floor(s, cfg.window_ms))
                .or_default()
                .add(&sl.counts);
        }
        a.dirty.remove(&s);
        gone.push(slot_key(account, s));
    }
    let declared = declared(account);
    if declared == Some(TrafficProfile::Dialer) {
        return Vec::new();
    }
    let mut alerts = Vec::new();
    for (start, c) in windows {
        let snap = snapshot(cfg, start.div_euclid(cfg.window_ms), &c);
        if snap.observed != TrafficProfile::Dialer {
            continue;
        }
        let start_s = snap.window_start_ms.to_string();
        alerts.push(AccountAlert {
            alert_id: stable_id(&["undeclared_dialer", account, &start_s]),
            account_id: account.to_string(),
            declared,
            observed: snap.observed,
            evidence: snap.evidence(),
            window_start_ms: snap.window_start_ms,
            window_end_ms: snap.window_end_ms,
        });
    }
    alerts
}

fn floor(t: i64, unit: i64) -> i64 {
    t - t.rem_euclid(unit)
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

/// Parses the declared-profile file: `account;profile` lines
/// (`conversational` | `dialer`), `#` comments. Bad lines are returned as
/// `line: message` errors, the rest loads.
pub fn parse_profiles(text: &str) -> (BTreeMap<String, TrafficProfile>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("account;") {
            continue;
        }
        let mut it = l.split(';').map(str::trim);
        match (it.next(), it.next().and_then(TrafficProfile::parse)) {
            (Some(a), Some(p)) if !a.is_empty() => {
                out.insert(a.to_string(), p);
            }
            _ => errors.push(format!(
                "line {}: field `profile`: expected `account;conversational|dialer`, got `{l}`",
                i + 1
            )),
        }
    }
    (out, errors)
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
