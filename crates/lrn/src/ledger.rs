//! The dip ledger: which call of a number pays the LRN dip fee, as a pure
//! function of the calls (not of a process's cache, its wall clock or its
//! restarts).
//!
//! The seed's rule is "if the dialed number is not in our cache, the call is
//! charged $0.0003". A real cache's contents depend on when a process
//! started, what it evicted and which instance owns the number, so a fee read
//! off it changes under a restart, a rebalance or a second instance. The
//! ledger models the cache in **event time** instead:
//!
//! * the cache lifetime (TTL) divides each number's timeline into periods;
//!   the period boundaries are shifted per number (a hash of the number), so
//!   the whole base does not expire at the same instant;
//! * the first call of a (number, period) seen on the partition is the
//!   **holder**: it pays the dip fee and its answer (LRN, ported) is the
//!   period's answer; every other call of that period is a cache hit (fee 0,
//!   the same LRN), whatever the process's in-memory cache holds;
//! * a lookup that fails until its deadline (`Unavailable`) decides nothing:
//!   the next call of the period tries again; the failed calls are
//!   remembered (capped per period) so their copies stay unavailable.
//!
//! The ledger is per input partition (the enricher's input is keyed by
//! dialed number, so one number lives on one partition) and persisted as one
//! [`LedgerRecord`] per number plus one meta record, written after every
//! batch and restored when the partition is assigned: a re-delivered call
//! finds its own decision, a call after a restart finds the period's holder.
//! Numbers whose newest period ended more than one TTL before the
//! partition's event-time watermark are evicted (tombstoned), so the state
//! is bounded by the numbers called within two TTLs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::cache::{EnrichmentRecord, LrnOutcome, LrnSourceKind};

/// Failed lookups remembered per (number, period): beyond this a further
/// failed call's copy may be looked up again (and then dipped).
pub const MAX_UNAVAILABLE_PER_PERIOD: usize = 32;
/// Periods kept per number (a late call to an older period starts afresh).
pub const MAX_PERIODS: usize = 3;
/// Key of the meta record (never a number: numbers are digits).
pub const META_KEY: &str = "~meta";

/// Answer of a period: who paid the dip and what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// `cdr_id` of the call that paid the dip.
    pub holder: String,
    /// 10-digit LRN.
    pub lrn: String,
    /// Whether the number is ported.
    pub ported: bool,
}

/// One cache period of one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// Period index (see [`DipLedger::period_of`]).
    pub period: i64,
    /// The dip that answered the period, once one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// Calls whose lookup failed before the period had an answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
}

/// What the ledger persists (JSON, compacted topic keyed by [`Self::key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerRecord {
    /// The partition's event-time watermark (drives eviction).
    Meta {
        /// Largest setup time seen, ms.
        watermark_ms: i64,
    },
    /// The periods of one number.
    Number {
        /// 10-digit number.
        tn10: String,
        /// Newest last.
        periods: Vec<Period>,
    },
}

impl LedgerRecord {
    /// The record's key on the state topic.
    pub fn key(&self) -> String {
        match self {
            LedgerRecord::Meta { .. } => META_KEY.to_string(),
            LedgerRecord::Number { tn10, .. } => tn10.clone(),
        }
    }
}

/// A state change to persist: `record: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerChange {
    /// Record key.
    pub key: String,
    /// New value, or `None` to delete the key.
    pub record: Option<LedgerRecord>,
}

/// What the ledger knows about a call before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ruling {
    /// Decided (holder, cache hit, or a remembered failure).
    Known(EnrichmentRecord),
    /// The period has no answer: look the number up, then [`DipLedger::record`].
    Lookup,
}

/// The per-partition dip ledger. See the module docs.
#[derive(Debug, Clone)]
pub struct DipLedger {
    ttl_ms: i64,
    dip_fee: Decimal,
    watermark_ms: i64,
    numbers: HashMap<String, Vec<Period>>,
    /// (end of newest period, number): eviction order.
    expiry: BTreeSet<(i64, String)>,
    changed: BTreeSet<String>,
    meta_changed: bool,
}

/// FNV-1a of the digits: a stable per-number shift of the period grid.
fn shift(tn10: &str, ttl_ms: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tn10.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % ttl_ms.max(1) as u64) as i64
}

impl DipLedger {
    /// A ledger for cache lifetime `ttl_ms` (> 0) charging `dip_fee` per dip.
    pub fn new(ttl_ms: i64, dip_fee: Decimal) -> Self {
        DipLedger {
            ttl_ms: ttl_ms.max(1),
            dip_fee,
            watermark_ms: i64::MIN,
            numbers: HashMap::new(),
            expiry: BTreeSet::new(),
            changed: BTreeSet::new(),
            meta_changed: false,
        }
    }

    /// The cache period of `tn10` at event time `ts_ms`.
    pub fn period_of(&self, tn10: &str, ts_ms: i64) -> i64 {
        (ts_ms + shift(tn10, self.ttl_ms)).div_euclid(self.ttl_ms)
    }

    fn period_end(&self, tn10: &str, period: i64) -> i64 {
        (period + 1) * self.ttl_ms - shift(tn10, self.ttl_ms)
    }

    /// Numbers held.
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    /// `true` when no number is held.
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    fn known(&self, tn10: &str, cdr_id: &str, p: &Period) -> Option<EnrichmentRecord> {
        let rec = |lrn: Option<String>, ported, source, fee| EnrichmentRecord {
            tn10: Some(tn10.to_string()),
            lrn,
            ported,
            source: Some(source),
            fee,
        };
        if let Some(a) = &p.answer {
            return Some(if a.holder == cdr_id {
                rec(
                    Some(a.lrn.clone()),
                    a.ported,
                    LrnSourceKind::Dip,
                    self.dip_fee,
                )
            } else if p.unavailable.iter().any(|c| c == cdr_id) {
                rec(None, false, LrnSourceKind::Unavailable, Decimal::ZERO)
            } else {
                rec(
                    Some(a.lrn.clone()),
                    a.ported,
                    LrnSourceKind::Cache,
                    Decimal::ZERO,
                )
            });
        }
        p.unavailable
            .iter()
            .any(|c| c == cdr_id)
            .then(|| rec(None, false, LrnSourceKind::Unavailable, Decimal::ZERO))
    }

    /// What the ledger already says about call `cdr_id` to `tn10` set up at
    /// `setup_ms`.
    pub fn rule(&self, tn10: &str, cdr_id: &str, setup_ms: i64) -> Ruling {
        let period = self.period_of(tn10, setup_ms);
        self.numbers
            .get(tn10)
            .and_then(|ps| ps.iter().find(|p| p.period == period))
            .and_then(|p| self.known(tn10, cdr_id, p))
            .map_or(Ruling::Lookup, Ruling::Known)
    }

    /// Records the lookup made for a call the ledger [`rule`](Self::rule)d
    /// `Lookup` and returns the call's decision. Calls are recorded in
    /// partition order; one recorded after another of the same period got
    /// its answer is a cache hit whatever its own lookup said.
    pub fn record(
        &mut self,
        tn10: &str,
        cdr_id: &str,
        setup_ms: i64,
        outcome: &LrnOutcome,
    ) -> EnrichmentRecord {
        if let Ruling::Known(r) = self.rule(tn10, cdr_id, setup_ms) {
            return r;
        }
        self.advance(setup_ms);
        let period = self.period_of(tn10, setup_ms);
        let dip_fee = self.dip_fee;
        if let Some(old) = self.numbers.get(tn10).and_then(|ps| ps.last()) {
            let e = self.period_end(tn10, old.period);
            self.expiry.remove(&(e, tn10.to_string()));
        }
        let periods = self.numbers.entry(tn10.to_string()).or_default();
        let at = match periods.iter().position(|p| p.period == period) {
            Some(i) => i,
            None => {
                let i = periods.partition_point(|p| p.period < period);
                periods.insert(
                    i,
                    Period {
                        period,
                        answer: None,
                        unavailable: Vec::new(),
                    },
                );
                i
            }
        };
        let p = &mut periods[at];
        let lrn = outcome
            .lrn
            .clone()
            .filter(|_| outcome.source != LrnSourceKind::Unavailable);
        let decided = match lrn {
            Some(lrn) => {
                p.answer = Some(Answer {
                    holder: cdr_id.to_string(),
                    lrn: lrn.clone(),
                    ported: outcome.ported,
                });
                EnrichmentRecord {
                    tn10: Some(tn10.to_string()),
                    lrn: Some(lrn),
                    ported: outcome.ported,
                    source: Some(LrnSourceKind::Dip),
                    fee: dip_fee,
                }
            }
            None => {
                if p.unavailable.len() < MAX_UNAVAILABLE_PER_PERIOD {
                    p.unavailable.push(cdr_id.to_string());
                }
                EnrichmentRecord {
                    tn10: Some(tn10.to_string()),
                    lrn: None,
                    ported: false,
                    source: Some(LrnSourceKind::Unavailable),
                    fee: Decimal::ZERO,
                }
            }
        };
        while periods.len() > MAX_PERIODS {
            periods.remove(0);
        }
        let newest = periods.last().map_or(period, |p| p.period);
        let newest_end = self.period_end(tn10, newest);
        self.expiry.insert((newest_end, tn10.to_string()));
        self.changed.insert(tn10.to_string());
        self.evict();
        decided
    }

    fn advance(&mut self, ts_ms: i64) {
        if ts_ms > self.watermark_ms {
            self.watermark_ms = ts_ms;
            self.meta_changed = true;
        }
    }

    /// Drops numbers whose newest period ended more than one TTL before the
    /// watermark.
    fn evict(&mut self) {
        let horizon = self.watermark_ms.saturating_sub(self.ttl_ms);
        while let Some((end, tn)) = self.expiry.first().cloned() {
            if end >= horizon {
                break;
            }
            self.expiry.pop_first();
            self.numbers.remove(&tn);
            self.changed.insert(tn);
        }
    }

    /// The records changed since the last call (tombstones for evicted
    /// numbers), meta record last.
    pub fn take_changes(&mut self) -> Vec<LedgerChange> {
        let mut out: Vec<LedgerChange> = std::mem::take(&mut self.changed)
            .into_iter()
            .map(|tn| LedgerChange {
                record: self.numbers.get(&tn).map(|ps| LedgerRecord::Number {
                    tn10: tn.clone(),
                    periods: ps.clone(),
                }),
                key: tn,
            })
            .collect();
        if std::mem::take(&mut self.meta_changed) {
            out.push(LedgerChange {
                key: META_KEY.into(),
                record: Some(LedgerRecord::Meta {
                    watermark_ms: self.watermark_ms,
                }),
            });
        }
        out
    }

    /// Puts a persisted record back (partition assignment).
    pub fn restore(&mut self, r: LedgerRecord) {
        match r {
            LedgerRecord::Meta { watermark_ms } => {
                self.watermark_ms = self.watermark_ms.max(watermark_ms)
            }
            LedgerRecord::Number { tn10, mut periods } => {
                periods.sort_by_key(|p| p.period);
                let Some(newest) = periods.last().map(|p| p.period) else {
                    return;
                };
                if let Some(old) = self.numbers.get(&tn10).and_then(|ps| ps.last()) {
                    let e = self.period_end(&tn10, old.period);
                    self.expiry.remove(&(e, tn10.clone()));
                }
                self.expiry
                    .insert((self.period_end(&tn10, newest), tn10.clone()));
                self.numbers.insert(tn10, periods);
            }
        }
    }

    /// The whole state as records (tests, diagnostics).
    pub fn snapshot(&self) -> BTreeMap<String, LedgerRecord> {
        let mut m: BTreeMap<String, LedgerRecord> = self
            .numbers
            .iter()
            .map(|(tn, ps)| {
                (
                    tn.clone(),
                    LedgerRecord::Number {
                        tn10: tn.clone(),
                        periods: ps.clone(),
                    },
                )
            })
            .collect();
        m.insert(
            META_KEY.into(),
            LedgerRecord::Meta {
                watermark_ms: self.watermark_ms,
            },
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    const TTL: i64 = 6 * 3_600_000;

    fn dip(lrn: &str, ported: bool) -> LrnOutcome {
        LrnOutcome {
            lrn: Some(lrn.into()),
            ported,
            source: LrnSourceKind::Dip,
            fee: dec!(0.0003),
        }
    }

    fn down() -> LrnOutcome {
        LrnOutcome {
            lrn: None,
            ported: false,
            source: LrnSourceKind::Unavailable,
            fee: Decimal::ZERO,
        }
    }

    /// Runs calls through a ledger the way the enricher does.
    fn decide(l: &mut DipLedger, tn: &str, id: &str, ts: i64, o: &LrnOutcome) -> EnrichmentRecord {
        match l.rule(tn, id, ts) {
            Ruling::Known(r) => r,
            Ruling::Lookup => l.record(tn, id, ts, o),
        }
    }

    #[test]
    fn first_call_of_a_period_pays_later_ones_hit_and_copies_agree() {
        let mut l = DipLedger::new(TTL, dec!(0.0003));
        let tn = "2125550100";
        let t0 = 1_700_000_000_000;
        let a = decide(&mut l, tn, "a", t0, &dip("2125560000", true));
        assert_eq!(a.source, Some(LrnSourceKind::Dip));
        assert_eq!(a.fee, dec!(0.0003));
        assert_eq!(a.lrn.as_deref(), Some("2125560000"));
        // A later lookup answering differently is ignored: the period's answer holds.
        let b = decide(&mut l, tn, "b", t0 + 1000, &dip("9999999999", false));
        assert_eq!(b.source, Some(LrnSourceKind::Cache));
        assert_eq!(b.fee, Decimal::ZERO);
        assert_eq!(b.lrn.as_deref(), Some("2125560000"));
        assert!(b.ported);
        // The holder's copy pays again (same decision), b's copy does not.
        assert_eq!(decide(&mut l, tn, "a", t0, &dip("1", false)), a);
        assert_eq!(decide(&mut l, tn, "b", t0 + 1000, &dip("1", false)), b);
        // The next period pays again.
        let next = t0 + TTL;
        assert_ne!(l.period_of(tn, next), l.period_of(tn, t0));
        let c = decide(&mut l, tn, "c", next, &dip("2125560000", true));
        assert_eq!(c.fee, dec!(0.0003));
    }

    #[test]
    fn unavailable_decides_nothing_but_is_remembered() {
        let mut l = DipLedger::new(TTL, dec!(0.0003));
        let (tn, t0) = ("3125550100", 1_700_000_000_000);
        let a = decide(&mut l, tn, "a", t0, &down());
        assert_eq!(a.source, Some(LrnSourceKind::Unavailable));
        assert_eq!(a.fee, Decimal::ZERO);
        let b = decide(&mut l, tn, "b", t0 + 5, &dip("3125550100", false));
        assert_eq!(b.fee, dec!(0.0003));
        // a's copy stays unavailable even though the period has an answer now.
        assert_eq!(decide(&mut l, tn, "a", t0, &dip("3125550100", false)), a);
    }

    #[test]
    fn old_numbers_are_evicted_and_tombstoned() {
        let mut l = DipLedger::new(TTL, dec!(0.0003));
        let t0 = 1_700_000_000_000;
        decide(&mut l, "2125550100", "a", t0, &dip("2125550100", false));
        l.take_changes();
        decide(
            &mut l,
            "3125550100",
            "b",
            t0 + 3 * TTL,
            &dip("3125550100", false),
        );
        let ch = l.take_changes();
        assert!(ch
            .iter()
            .any(|c| c.key == "2125550100" && c.record.is_none()));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn meta_key_is_never_a_number() {
        assert!(crate::cache::should_dip(META_KEY).is_none());
        assert!(!META_KEY.bytes().all(|b| b.is_ascii_digit()));
    }

    proptest! {
        /// Whatever the copies and the restarts (state written after each
        /// call, restored from the written records), every call gets the
        /// decision it gets in one clean pass, and each (number, period)
        /// charges at most one fee. (Event times within one TTL: a copy
        /// re-delivered more than a TTL behind its partition may find its
        /// number evicted, the documented bound.)
        #[test]
        fn decisions_are_a_function_of_the_calls(
            calls in prop::collection::vec((0usize..4, 0i64..TTL, prop::bool::ANY), 1..60),
            copies in prop::collection::vec((0usize..60, 0usize..60), 0..30),
            restarts in prop::collection::vec(0usize..90, 0..4),
        ) {
            let tns = ["2125550100", "2125550101", "7135550100", "3105550123"];
            let t0 = 1_700_000_000_000;
            let ids: Vec<(String, &str, i64, bool)> = calls
                .iter()
                .enumerate()
                .map(|(i, (n, dt, up))| (format!("c{i}"), tns[*n], t0 + dt, *up))
                .collect();
            let outcome = |tn: &str, up: bool| if up { dip(tn, false) } else { down() };
            // Clean pass: each call once, in order.
            let mut clean = DipLedger::new(TTL, dec!(0.0003));
            let want: HashMap<String, EnrichmentRecord> = ids
                .iter()
                .map(|(id, tn, ts, up)| (id.clone(), decide(&mut clean, tn, id, *ts, &outcome(tn, *up))))
                .collect();
            // Faulty pass: re-deliveries of earlier calls interleaved, state
            // persisted and restored at the restart points.
            let mut log: Vec<usize> = (0..ids.len()).collect();
            for (at, which) in &copies {
                let at = (*at).min(log.len());
                let w = (*which).min(ids.len() - 1);
                if log[..at].contains(&w) {
                    log.insert(at, w);
                }
            }
            let mut l = DipLedger::new(TTL, dec!(0.0003));
            let mut store: BTreeMap<String, LedgerRecord> = BTreeMap::new();
            for (step, i) in log.iter().enumerate() {
                let (id, tn, ts, up) = &ids[*i];
                let got = decide(&mut l, tn, id, *ts, &outcome(tn, *up));
                prop_assert_eq!(&got, &want[id], "call {}", id);
                for c in l.take_changes() {
                    match c.record {
                        Some(r) => { store.insert(c.key, r); }
                        None => { store.remove(&c.key); }
                    }
                }
                if restarts.contains(&step) {
                    l = DipLedger::new(TTL, dec!(0.0003));
                    for r in store.values() {
                        l.restore(r.clone());
                    }
                }
            }
            let mut fees: HashMap<(String, i64), u32> = HashMap::new();
            for (id, tn, ts, _) in &ids {
                if want[id].fee > Decimal::ZERO {
                    *fees.entry((tn.to_string(), clean.period_of(tn, *ts))).or_default() += 1;
                }
            }
            prop_assert!(fees.values().all(|n| *n == 1));
        }
    }
}
