//! Wholesale conformance (seed 000): "ACD of your traffic must be more than
//! 60 seconds and ASR > 50%. Non-conforming wholesale accounts will be
//! switched to retail plan automatically without prior notice."
//!
//! This module owns the *decision* and the *history* of such switches:
//! [`ConformanceMonitor`] counts every attempt of an account once (by its
//! cdr_id), when it ends, in the minute it was set up, and evaluates the
//! rule at fixed minute boundaries of the account's event time; its state
//! can be written out and restored ([`StateRecord`]) so a restarted or
//! rebalanced rater decides exactly as an uninterrupted one.
//! [`PlanHistory`] records rating-category changes with their effective
//! instants, so a call is rated in the category in force at its answer
//! time — before the decision wholesale, after it retail — whatever order
//! the rater learns things in. Pure: no clock, no I/O; time is the calls'
//! own.
//!
//! Why the decision is a pure function of the calls, not of their arrival
//! order: the rule is evaluated at every boundary `E` (a minute) once the
//! account's newest hangup is `lateness` past it, over the attempts *set
//! up* in `[E - settle - window, E - settle)` that *ended* before `E`. Both
//! bounds are event times, so which calls an evaluation sees does not
//! depend on how upstream partitions interleave (given calls arrive less
//! than `lateness` out of hangup order). The decision takes effect at
//! `E + lateness`: every call answered from then on arrives after the
//! decision or is the call that triggers it, so each call is rated in one
//! category in every run. Counting by setup minute, `settle` after it,
//! removes the bias of judging a minute before its conversations ended
//! (failures end in seconds, conversations in minutes).

use std::collections::HashMap;

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
    /// ACD must be *more than* this (seconds, default 60): an ACD of
    /// exactly 60 s is non-conforming (seed 000).
    pub min_acd_secs: f64,
    /// ASR must be *above* this (default 0.5): exactly 50% is
    /// non-conforming (seed 000).
    pub min_asr: f64,
    /// Window granularity and evaluation step, seconds (default 60).
    pub bucket_secs: i64,
    /// An evaluation at `E` judges the attempts set up before `E - settle`
    /// (default 3600 s): by then nearly every conversation set up in the
    /// window has ended, so long calls do not read as missing answers.
    pub settle_secs: i64,
    /// How far out of hangup order calls may reach the monitor (default
    /// 120 s); an evaluation at `E` waits until a hangup `lateness` past `E`
    /// was seen.
    pub lateness_secs: i64,
}

impl Default for ConformanceConfig {
    fn default() -> Self {
        ConformanceConfig {
            window_secs: 86_400,
            min_seizures: 100,
            min_acd_secs: 60.0,
            min_asr: 0.5,
            bucket_secs: 60,
            settle_secs: 3_600,
            lateness_secs: 120,
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
        if self.lateness_secs < 0 || self.lateness_secs >= self.window_secs {
            return bad("lateness_secs", "must be within 0..window_secs");
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
    /// The call's id: a copy of a call already counted is not counted again.
    pub cdr_id: String,
    pub account_id: String,
    /// Event time of the attempt's setup, ms (the minute it counts in).
    pub setup_ms: i64,
    /// Event time of the attempt's end (hangup), ms.
    pub end_ms: i64,
    pub answered: bool,
    pub duration_ms: i64,
    /// Refused by the carrier side (our platform or a downstream route),
    /// not by the called party: it moves the account's clock but is not a
    /// seizure of the customer's traffic.
    pub carrier_rejected: bool,
}

/// The monitor's verdict: switch `account_id` to retail from `decided_at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Downgrade {
    pub account_id: String,
    pub seizures: u64,
    pub answered: u64,
    pub asr: f64,
    pub acd_s: f64,
    /// The boundary the rule was evaluated at.
    pub window_end_ms: i64,
    /// When the decision takes effect: `window_end_ms + lateness`.
    pub decided_at_ms: i64,
    pub window_secs: i64,
    pub reason: String,
}

/// Attempts of one (setup minute, end minute) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub setup_ms: i64,
    pub end_ms: i64,
    pub seizures: u64,
    pub answered: u64,
    pub answered_ms: i64,
}

/// Persistent state of the monitor, one record per account (`Meta`) and
/// per account and setup slot (`Slot`, one bucket: small records, so a
/// batch rewrites only the few slots it touched). A compacted topic keyed by
/// [`StateRecord::key`] holds the newest of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateRecord {
    Meta {
        account_id: String,
        watermark_ms: i64,
        evaluated_through_ms: i64,
    },
    Slot {
        account_id: String,
        slot_ms: i64,
        cells: Vec<Cell>,
        /// Hashes ([`id_hash`]) of the calls set up in this slot.
        ids: Vec<u64>,
    },
}

impl StateRecord {
    pub fn key(&self) -> String {
        match self {
            Self::Meta { account_id, .. } => meta_key(account_id),
            Self::Slot {
                account_id,
                slot_ms,
                ..
            } => slot_key(account_id, *slot_ms),
        }
    }

    pub fn account_id(&self) -> &str {
        match self {
            Self::Meta { account_id, .. } | Self::Slot { account_id, .. } => account_id,
        }
    }
}

fn meta_key(account: &str) -> String {
    format!("{account}\u{0}meta")
}

fn slot_key(account: &str, slot_ms: i64) -> String {
    format!("{account}\u{0}{slot_ms}")
}

/// Stable 64-bit hash of a cdr_id (FNV-1a): the same in every process.
pub fn id_hash(cdr_id: &str) -> u64 {
    cdr_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn floor(t: i64, unit: i64) -> i64 {
    t - t.rem_euclid(unit)
}

#[derive(Debug)]
struct Account {
    /// Input partition the account's calls arrive on (where its state is written).
    partition: i32,
    watermark_ms: i64,
    evaluated_through_ms: i64,
    cells: std::collections::BTreeMap<(i64, i64), Cell>,
    ids: std::collections::BTreeMap<i64, std::collections::HashSet<u64>>,
    dirty_slots: std::collections::BTreeSet<i64>,
    gone_slots: std::collections::BTreeSet<i64>,
    meta_dirty: bool,
    /// Listed in [`ConformanceMonitor::touched`] since the last take.
    queued: bool,
}

impl Account {
    fn new(partition: i32) -> Self {
        Account {
            partition,
            watermark_ms: i64::MIN,
            evaluated_through_ms: i64::MIN,
            cells: Default::default(),
            ids: Default::default(),
            dirty_slots: Default::default(),
            gone_slots: Default::default(),
            meta_dirty: false,
            queued: false,
        }
    }
}

/// A state record to write (`Some`) or delete (`None`, a tombstone), with
/// the input partition it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub partition: i32,
    pub key: String,
    pub record: Option<StateRecord>,
}

/// Per-account conformance windows, each call counted once.
#[derive(Debug)]
pub struct ConformanceMonitor {
    cfg: ConformanceConfig,
    accounts: HashMap<String, Account, FastHash>,
    /// Accounts reset since the last [`ConformanceMonitor::take_changes`],
    /// with the keys their state was written under.
    removed: Vec<StateChange>,
    /// Accounts changed since the last take, so a take visits only those
    /// and not every account ever seen (its cost stays per call, not per
    /// account held).
    touched: Vec<String>,
}

impl ConformanceMonitor {
    pub fn new(cfg: ConformanceConfig) -> Result<Self, ConformanceConfigError> {
        cfg.validate()?;
        Ok(ConformanceMonitor {
            cfg,
            accounts: HashMap::default(),
            removed: Vec::new(),
            touched: Vec::new(),
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
    /// and only an operator brings it back, with a fresh window). Its
    /// persisted state is deleted by the next [`Self::take_changes`].
    pub fn reset(&mut self, account_id: &str) {
        if let Some(a) = self.accounts.remove(account_id) {
            let p = a.partition;
            let mut keys: Vec<String> = a.ids.keys().map(|h| slot_key(account_id, *h)).collect();
            keys.extend(a.gone_slots.iter().map(|h| slot_key(account_id, *h)));
            keys.push(meta_key(account_id));
            self.removed.extend(keys.into_iter().map(|key| StateChange {
                partition: p,
                key,
                record: None,
            }));
        }
    }

    /// Drops the windows of accounts on `partition` (revoked from this
    /// instance; the new owner restores them).
    pub fn revoke(&mut self, partition: i32) {
        self.accounts.retain(|_, a| a.partition != partition);
        self.removed.retain(|c| c.partition != partition);
    }

    /// Restores one persisted record read back from `partition`.
    pub fn restore(&mut self, partition: i32, rec: StateRecord) {
        match rec {
            StateRecord::Meta {
                account_id,
                watermark_ms,
                evaluated_through_ms,
            } => {
                let a = self
                    .accounts
                    .entry(account_id)
                    .or_insert_with(|| Account::new(partition));
                a.watermark_ms = watermark_ms;
                a.evaluated_through_ms = evaluated_through_ms;
            }
            StateRecord::Slot {
                account_id,
                slot_ms,
                cells,
                ids,
            } => {
                let a = self
                    .accounts
                    .entry(account_id)
                    .or_insert_with(|| Account::new(partition));
                for c in cells {
                    a.cells.insert((c.setup_ms, c.end_ms), c);
                }
                a.ids.entry(slot_ms).or_default().extend(ids);
            }
        }
    }

    /// Every state record changed since the last call (the rater writes
    /// them after the decisions they led to were acknowledged).
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        let bucket = self.cfg.bucket_secs * 1000;
        let mut out = std::mem::take(&mut self.removed);
        for id in std::mem::take(&mut self.touched) {
            // Reset or revoked since it was touched: nothing of it to write.
            let Some(a) = self.accounts.get_mut(&id) else {
                continue;
            };
            a.queued = false;
            let id = &id;
            for h in std::mem::take(&mut a.gone_slots) {
                out.push(StateChange {
                    partition: a.partition,
                    key: slot_key(id, h),
                    record: None,
                });
            }
            for h in std::mem::take(&mut a.dirty_slots) {
                let Some(ids) = a.ids.get(&h) else { continue };
                let mut ids: Vec<u64> = ids.iter().copied().collect();
                ids.sort_unstable();
                let cells = a
                    .cells
                    .range((h, i64::MIN)..(h + bucket, i64::MIN))
                    .map(|(_, c)| *c)
                    .collect();
                let record = StateRecord::Slot {
                    account_id: id.clone(),
                    slot_ms: h,
                    cells,
                    ids,
                };
                out.push(StateChange {
                    partition: a.partition,
                    key: record.key(),
                    record: Some(record),
                });
            }
            if std::mem::take(&mut a.meta_dirty) {
                let record = StateRecord::Meta {
                    account_id: id.clone(),
                    watermark_ms: a.watermark_ms,
                    evaluated_through_ms: a.evaluated_through_ms,
                };
                out.push(StateChange {
                    partition: a.partition,
                    key: record.key(),
                    record: Some(record),
                });
            }
        }
        out
    }

    /// Folds one attempt of a *wholesale* account (the caller skips retail
    /// ones) that arrived on input `partition`, and returns a downgrade when
    /// an evaluation boundary the account's clock just passed finds, over
    /// at least the minimum sample, ACD or ASR at or below the thresholds.
    pub fn observe(&mut self, partition: i32, a: &Attempt) -> Option<Downgrade> {
        let cfg = &self.cfg;
        let bucket = cfg.bucket_secs * 1000;
        let span = (cfg.window_secs + cfg.settle_secs) * 1000;
        let lateness = cfg.lateness_secs * 1000;
        let acct = self
            .accounts
            .entry(a.account_id.clone())
            .or_insert_with(|| Account::new(partition));
        acct.partition = partition;
        let setup = floor(a.setup_ms, bucket);
        let end = floor(a.end_ms.max(a.setup_ms), bucket);
        // Evidence whose window has already been judged stays out.
        let too_old = acct.evaluated_through_ms != i64::MIN
            && setup < acct.evaluated_through_ms + bucket - span;
        if !too_old
            && acct
                .ids
                .entry(setup)
                .or_default()
                .insert(id_hash(&a.cdr_id))
        {
            acct.dirty_slots.insert(setup);
            if !a.carrier_rejected {
                let c = acct.cells.entry((setup, end)).or_insert(Cell {
                    setup_ms: setup,
                    end_ms: end,
                    ..Default::default()
                });
                c.seizures += 1;
                if a.answered {
                    c.answered += 1;
                    c.answered_ms += a.duration_ms.max(0);
                }
            }
        } else {
            return None; // a copy of a counted call, or too old: nothing changed
        }
        if !acct.queued {
            acct.queued = true;
            self.touched.push(a.account_id.clone());
        }
        if a.end_ms > acct.watermark_ms {
            acct.watermark_ms = a.end_ms;
            acct.meta_dirty = true;
        }
        let last = floor(acct.watermark_ms.saturating_sub(lateness), bucket);
        let mut e = if acct.evaluated_through_ms == i64::MIN {
            last - span
        } else {
            (acct.evaluated_through_ms + bucket).max(last - span)
        };
        let mut verdict = None;
        while e <= last {
            acct.evaluated_through_ms = e;
            acct.meta_dirty = true;
            if let Some(d) = evaluate(cfg, &a.account_id, acct, e) {
                verdict = Some(d);
                break;
            }
            e += bucket;
        }
        // Forget slots no future evaluation can see.
        let keep_from = acct.evaluated_through_ms + bucket - span;
        let old: Vec<i64> = acct.ids.range(..keep_from).map(|(h, _)| *h).collect();
        for h in old {
            acct.ids.remove(&h);
            acct.dirty_slots.remove(&h);
            acct.gone_slots.insert(h);
            let ks: Vec<(i64, i64)> = acct
                .cells
                .range((h, i64::MIN)..(h + bucket, i64::MIN))
                .map(|(k, _)| *k)
                .collect();
            for k in ks {
                acct.cells.remove(&k);
            }
        }
        verdict
    }
}

/// The rule at boundary `e`: attempts set up in `[e - settle - window,
/// e - settle)` that ended before `e`.
fn evaluate(cfg: &ConformanceConfig, account: &str, a: &Account, e: i64) -> Option<Downgrade> {
    let hi = e - cfg.settle_secs * 1000;
    let lo = hi - cfg.window_secs * 1000;
    let (mut seizures, mut answered, mut answered_ms) = (0u64, 0u64, 0i64);
    for c in a
        .cells
        .range((lo, i64::MIN)..(hi, i64::MIN))
        .map(|(_, c)| c)
        .filter(|c| c.end_ms < e)
    {
        seizures += c.seizures;
        answered += c.answered;
        answered_ms += c.answered_ms;
    }
    if seizures < cfg.min_seizures {
        return None;
    }
    let asr = answered as f64 / seizures as f64;
    let acd_s = if answered == 0 {
        0.0
    } else {
        answered_ms as f64 / 1000.0 / answered as f64
    };
    // Compared on the counts, so "exactly 50%" / "exactly 60 s" is exact.
    let low_asr = (answered as f64) <= cfg.min_asr * seizures as f64;
    let low_acd = (answered_ms as f64) <= cfg.min_acd_secs * 1000.0 * answered as f64;
    if !(low_asr || low_acd) {
        return None;
    }
    let mut why = Vec::new();
    if low_acd {
        why.push(format!("ACD {acd_s:.1} s <= {} s", cfg.min_acd_secs));
    }
    if low_asr {
        why.push(format!(
            "ASR {:.1}% <= {:.0}%",
            asr * 100.0,
            cfg.min_asr * 100.0
        ));
    }
    Some(Downgrade {
        account_id: account.to_string(),
        seizures,
        answered,
        asr,
        acd_s,
        window_end_ms: e,
        decided_at_ms: e + cfg.lateness_secs * 1000,
        window_secs: cfg.window_secs,
        reason: format!(
            "non-conforming wholesale traffic: {} over {} seizures set up in the {} h before {} (settle {} s)",
            why.join(", "),
            seizures,
            cfg.window_secs as f64 / 3600.0,
            DateTime::<Utc>::from_timestamp_millis(hi)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            cfg.settle_secs
        ),
    })
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
    use std::collections::BTreeMap;

    const T0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000;

    /// Attempt `i`, set up every 10 s from T0.
    fn att(i: i64, answered: bool, dur_s: i64) -> Attempt {
        let setup = T0 + i * 10_000;
        Attempt {
            cdr_id: format!("c{i}"),
            account_id: "w1".into(),
            setup_ms: setup,
            end_ms: setup + if answered { dur_s * 1000 } else { 5_000 },
            answered,
            duration_ms: if answered { dur_s * 1000 } else { 0 },
            carrier_rejected: false,
        }
    }

    /// Attempts in the order a rater sees them: by hangup.
    fn by_end(mut v: Vec<Attempt>) -> Vec<Attempt> {
        v.sort_by_key(|a| (a.end_ms, a.cdr_id.clone()));
        v
    }

    fn run(m: &mut ConformanceMonitor, calls: &[Attempt]) -> Vec<Downgrade> {
        run_wholesale(m, calls, &mut Default::default())
    }

    /// Observes the calls of accounts not in `retail` (as the rater does:
    /// a downgraded account's calls no longer feed the monitor).
    fn run_wholesale(
        m: &mut ConformanceMonitor,
        calls: &[Attempt],
        retail: &mut std::collections::BTreeSet<String>,
    ) -> Vec<Downgrade> {
        let mut out = Vec::new();
        for a in calls {
            if retail.contains(&a.account_id) {
                continue;
            }
            if let Some(d) = m.observe(0, a) {
                retail.insert(a.account_id.clone());
                m.reset(&a.account_id);
                out.push(d);
            }
        }
        out
    }

    fn monitor() -> ConformanceMonitor {
        ConformanceMonitor::new(ConformanceConfig::default()).unwrap()
    }

    /// Two hours of traffic: every 10 s, answered when `ans(i)`, lasting `dur(i)`.
    fn traffic(n: i64, ans: impl Fn(i64) -> bool, dur: impl Fn(i64) -> i64) -> Vec<Attempt> {
        by_end((0..n).map(|i| att(i, ans(i), dur(i))).collect())
    }

    #[test]
    fn low_asr_downgrades_at_a_boundary_and_takes_effect_after_the_lateness() {
        let mut m = monitor();
        // ASR 40%, ACD 120 s, for 3 hours.
        let d = run(&mut m, &traffic(1080, |i| i % 5 < 2, |_| 120));
        assert_eq!(d.len(), 1, "{d:?}");
        let d = &d[0];
        assert!((d.asr - 0.4).abs() < 0.03, "{d:?}");
        assert!(d.seizures >= 100);
        assert_eq!(d.window_end_ms % 60_000, 0);
        assert_eq!(d.decided_at_ms, d.window_end_ms + 120_000);
        // The window is judged an hour (settle) after its calls set up.
        assert!(d.window_end_ms >= T0 + 3_600_000, "{d:?}");
        assert!(
            d.reason.contains("ASR 4") && !d.reason.contains("ACD"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn exactly_on_the_thresholds_is_non_conforming() {
        // Seed 000: ACD must be *more than* 60 s and ASR *above* 50%.
        let mut m = monitor();
        assert_eq!(
            run(&mut m, &traffic(1080, |i| i % 2 == 0, |_| 90)).len(),
            1,
            "ASR exactly 50%"
        );
        let mut m = monitor();
        assert_eq!(
            run(&mut m, &traffic(1080, |i| i % 10 < 6, |_| 60)).len(),
            1,
            "ACD exactly 60 s"
        );
        let mut m = monitor();
        assert!(
            run(&mut m, &traffic(1080, |i| i % 10 < 6, |_| 61)).is_empty(),
            "ASR 60%, ACD 61 s"
        );
    }

    #[test]
    fn long_conversations_never_downgrade_conforming_traffic() {
        // ASR 60%, durations 1..60 min (mean ~20 min, spread pseudo-randomly),
        // for 30 hours: judged by ended calls, failures would dominate.
        let dur = |i: i64| 60 + (i * 7919 % 3541);
        let calls = traffic(30 * 360, |i| i % 10 < 6, dur);
        assert!(run(&mut monitor(), &calls).is_empty());
    }

    #[test]
    fn dialer_traffic_always_downgrades() {
        for seed in 0..5i64 {
            let calls = traffic(2000, |i| (i + seed) % 10 < 3, |i| 5 + (i * 31 + seed) % 30);
            assert_eq!(run(&mut monitor(), &calls).len(), 1, "seed {seed}");
        }
    }

    #[test]
    fn carrier_rejections_are_not_seizures() {
        // ASR 60% of the customer's attempts, plus as many 503s from our side.
        let mut calls = traffic(1080, |i| i % 10 < 6, |_| 120);
        for i in 0..1080 {
            let mut a = att(100_000 + i, false, 0);
            a.setup_ms = T0 + i * 10_000 + 1;
            a.end_ms = a.setup_ms + 1000;
            a.carrier_rejected = true;
            calls.push(a);
        }
        assert!(run(&mut monitor(), &by_end(calls.clone())).is_empty());
        for a in calls.iter_mut() {
            a.carrier_rejected = false;
        }
        assert_eq!(
            run(&mut monitor(), &by_end(calls)).len(),
            1,
            "counted, they would downgrade"
        );
    }

    #[test]
    fn old_evidence_leaves_the_window() {
        let cfg = ConformanceConfig {
            window_secs: 3600,
            settle_secs: 600,
            ..Default::default()
        };
        // 80 bad calls, 2 h of silence, 80 more: never 100 in one hour.
        let mut calls: Vec<Attempt> = (0..80).map(|i| att(i, false, 0)).collect();
        calls.extend((0..80).map(|i| att(720 + i, false, 0)));
        calls.push(att(2000, true, 100)); // moves the clock past the last window
        let mut m = ConformanceMonitor::new(cfg).unwrap();
        assert!(run(&mut m, &by_end(calls)).is_empty());
        // Forgotten state is deleted from the store too.
        let gone = m
            .take_changes()
            .iter()
            .filter(|c| c.record.is_none())
            .count();
        assert!(gone > 0);
    }

    /// A take carries the accounts observed since the last take, only those.
    #[test]
    fn a_take_carries_only_the_accounts_changed_since_the_last() {
        let mut m = ConformanceMonitor::new(ConformanceConfig::default()).unwrap();
        let other = |i: i64| Attempt {
            account_id: "w2".into(),
            cdr_id: format!("o{i}"),
            ..att(i, true, 90)
        };
        m.observe(0, &att(1, true, 90));
        m.observe(1, &other(1));
        let first = m.take_changes();
        for acct in ["w1", "w2"] {
            assert!(
                first.iter().any(|c| c.key.contains(acct)),
                "{acct}: {first:?}"
            );
        }
        assert!(m.take_changes().is_empty());
        m.observe(1, &other(2));
        let second = m.take_changes();
        assert!(!second.is_empty());
        assert!(
            second
                .iter()
                .all(|c| c.key.contains("w2") && c.partition == 1),
            "{second:?}"
        );
        // A copy of a counted call changes nothing and writes nothing.
        m.observe(1, &other(2));
        assert!(m.take_changes().is_empty());
    }

    /// Applies state changes to a key-value store, as a compacted topic does.
    fn persist(store: &mut BTreeMap<String, StateRecord>, changes: Vec<StateChange>) {
        for c in changes {
            match c.record {
                Some(r) => {
                    store.insert(c.key, r);
                }
                None => {
                    store.remove(&c.key);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
        /// Copies, reordering within the lateness, and a restart from the
        /// persisted state at any point (replaying calls already counted)
        /// give the same decision as one clean pass.
        #[test]
        fn decisions_are_a_function_of_the_calls(
            asr_pct in 30i64..75,
            acd_s in 20i64..200,
            cut in 0usize..1500,
            dup_every in 2usize..20,
            jitter in proptest::collection::vec(0i64..100_000, 1500),
        ) {
            let calls = traffic(1500, |i| i * 7 % 100 < asr_pct, |i| acd_s + i % 13);
            let clean = run(&mut monitor(), &calls);
            // Out of hangup order by up to 100 s, every `dup_every`-th call twice.
            let mut noisy: Vec<(i64, Attempt)> = Vec::new();
            for (i, a) in calls.iter().enumerate() {
                noisy.push((a.end_ms + jitter[i], a.clone()));
                if i % dup_every == 0 {
                    noisy.push((a.end_ms + jitter[(i * 7) % 1500], a.clone()));
                }
            }
            noisy.sort_by_key(|(t, a)| (*t, a.cdr_id.clone()));
            let noisy: Vec<Attempt> = noisy.into_iter().map(|(_, a)| a).collect();
            let cut = cut.min(noisy.len());
            let mut m = monitor();
            let mut store = BTreeMap::new();
            let mut retail = Default::default();
            let mut got = run_wholesale(&mut m, &noisy[..cut], &mut retail);
            persist(&mut store, m.take_changes());
            // Restart: a new monitor from the store, replaying from 50 calls back.
            let mut m2 = monitor();
            for r in store.values() {
                m2.restore(0, r.clone());
            }
            got.extend(run_wholesale(&mut m2, &noisy[cut.saturating_sub(50)..], &mut retail));
            proptest::prop_assert_eq!(got, clean);
        }
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
}
