//! Versioned deck store and the longest-prefix-match index.
//!
//! Owns [`DeckSet`] (all deck versions, grouped by [`Scope`]: an A–Z plan, a
//! US48 plan or a trunk), [`DeckVersion`], the allocation-free prefix index
//! and [`diff`] between two decks.
//!
//! Version selection: a call is rated by the latest version (by
//! `effective_from`, then import order) whose `effective_from <= answer time`
//! and which has not ended. Each version is a complete replacement of the
//! previous one, as wholesale decks are; inside a version, row-level dates
//! (breakout `effective_from`/`effective_to`, A–Z `end_date`) decide which
//! rows are in force, so a deck may carry today's rate and a dated future
//! increase for the same code.
//!
//! Index design (target ≥ 2M lookups/s/core on ≥ 200k prefixes): every
//! prefix, and every proper prefix of one, is encoded as one u64 key (see
//! [`crate::prefix`]) in an open-addressing table with a multiplicative
//! hash and linear probing: an implicit digit trie with compact 12-byte
//! nodes. A lookup walks the number's digits once, on the stack, probing one
//! node per digit until the trie ends, then takes the longest entry on the
//! path that is in force. No allocation per lookup.

use crate::deck::{parse_deck, DeckError, DeckKind, DeckRow, ImportMode, ObrTier, Plan, RowError};
use crate::prefix::{Prefix, MAX_PREFIX_LEN, POW10, REPUNIT};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where a deck version applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// A–Z (or breakout) deck of a plan.
    Az(Plan),
    /// US48 NPANXX deck. Standard and Premium share one deck (the seed: "call
    /// rates to US48 are common for std and prem plans"), so `Us48(Standard)`
    /// is normalised to `Us48(Premium)`.
    Us48(Plan),
    /// Per-trunk deck of trunk `TTT`.
    Trunk(u32),
}

impl Scope {
    pub fn normalized(self) -> Scope {
        match self {
            Scope::Us48(Plan::Standard) => Scope::Us48(Plan::Premium),
            s => s,
        }
    }
}

/// Where an import goes. Per-trunk files fan out to one [`Scope::Trunk`]
/// version per trunk number found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeckTarget {
    Az(Plan),
    Us48(Plan),
    PerTrunk,
}

impl DeckTarget {
    /// Natural target for a deck kind; `plan` is used by US48 and breakout
    /// decks, whose file format does not name a plan.
    pub fn for_kind(kind: DeckKind, plan: Plan) -> DeckTarget {
        match kind {
            DeckKind::AZ(p) => DeckTarget::Az(p),
            DeckKind::Us48 => DeckTarget::Us48(plan),
            DeckKind::PerTrunk => DeckTarget::PerTrunk,
            DeckKind::Breakout => DeckTarget::Az(plan),
        }
    }
}

/// Open-addressing table of trie nodes over a sorted row order.
///
/// Every prefix in the deck is a node, and so is every proper prefix of one
/// ("marker" nodes), which turns the hash table into an implicit digit trie:
/// a lookup walks the number digit by digit from the shortest prefix and
/// stops at the first absent node or at a node without children. The short
/// nodes every walk starts with stay hot in cache, so a lookup costs about
/// one cold probe per matched digit beyond the country code, instead of one
/// cold miss per candidate length as a longest-first probe would.
#[derive(Debug, Clone, Default)]
struct PrefixIndex {
    keys: Vec<u64>,
    /// `HAS_CHILDREN | IS_ENTRY | start` (start = first position in `order`).
    vals: Vec<u32>,
    shift: u32,
    /// Row indices grouped by prefix; `LAST` marks the end of each run.
    order: Vec<u32>,
}

const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
const HAS_CHILDREN: u32 = 1 << 31;
const IS_ENTRY: u32 = 1 << 30;
const START_MASK: u32 = IS_ENTRY - 1;
const LAST: u32 = 1 << 31;

/// Digits of a prefix left-aligned to MAX_PREFIX_LEN, so that integer order
/// is lexicographic order and common prefixes are easy to measure.
fn padded(p: Prefix) -> (u64, usize) {
    let len = p.len();
    (p.value() * POW10[MAX_PREFIX_LEN - len], len)
}

fn common_len(a: (u64, usize), b: (u64, usize)) -> usize {
    let max = a.1.min(b.1);
    let mut l = 0;
    while l < max {
        let d = POW10[MAX_PREFIX_LEN - l - 1];
        if (a.0 / d) % 10 != (b.0 / d) % 10 {
            break;
        }
        l += 1;
    }
    l
}

impl PrefixIndex {
    fn build(rows: &[DeckRow]) -> PrefixIndex {
        assert!(rows.len() < START_MASK as usize, "deck too large for the index");
        // Sort lexicographically (padded value, then length): a parent sorts
        // right before its descendants.
        let mut pairs: Vec<(u64, u8, u32)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (v, l) = padded(r.prefix);
                (v, l as u8, i as u32)
            })
            .collect();
        pairs.sort_unstable();
        let mut order: Vec<u32> = pairs.iter().map(|p| p.2).collect();
        // Upper bound of trie nodes: entries + markers not shared with the
        // previous prefix in lexicographic order.
        let mut nodes = 0usize;
        let mut prev: Option<(u64, usize)> = None;
        for p in &pairs {
            let cur = (p.0, p.1 as usize);
            if prev == Some(cur) {
                continue;
            }
            let lcp = prev.map_or(0, |q| common_len(q, cur));
            nodes += cur.1 - lcp.min(cur.1);
            prev = Some(cur);
        }
        // Load factor ≤ 2/3 keeps linear-probe chains short.
        let cap = (nodes.max(1) * 3 / 2 + 1).next_power_of_two().max(16);
        let mut idx = PrefixIndex {
            keys: vec![0; cap],
            vals: vec![0; cap],
            shift: 64 - cap.trailing_zeros(),
            order: Vec::new(),
        };
        let mut i = 0;
        let mut prev: Option<(u64, usize)> = None;
        while i < pairs.len() {
            let cur = (pairs[i].0, pairs[i].1 as usize);
            let mut j = i + 1;
            while j < pairs.len() && (pairs[j].0, pairs[j].1 as usize) == cur {
                j += 1;
            }
            order[j - 1] |= LAST;
            let lcp = prev.map_or(0, |q| common_len(q, cur));
            // Markers for proper prefixes not already inserted.
            for l in lcp.max(1)..cur.1 {
                let key = REPUNIT[l] + cur.0 / POW10[MAX_PREFIX_LEN - l];
                idx.upsert(key, HAS_CHILDREN);
            }
            let key = REPUNIT[cur.1] + cur.0 / POW10[MAX_PREFIX_LEN - cur.1];
            idx.upsert(key, IS_ENTRY | i as u32);
            prev = Some(cur);
            i = j;
        }
        idx.order = order;
        idx
    }

    fn upsert(&mut self, key: u64, bits: u32) {
        let mask = self.keys.len() - 1;
        let mut h = (key.wrapping_mul(HASH_MUL) >> self.shift) as usize;
        loop {
            if self.keys[h] == key {
                self.vals[h] |= bits;
                return;
            }
            if self.keys[h] == 0 {
                self.keys[h] = key;
                self.vals[h] = bits;
                return;
            }
            h = (h + 1) & mask;
        }
    }

    #[inline]
    fn find(&self, key: u64) -> Option<u32> {
        let mask = self.keys.len() - 1;
        let mut h = (key.wrapping_mul(HASH_MUL) >> self.shift) as usize;
        loop {
            let k = self.keys[h];
            if k == key {
                return Some(self.vals[h]);
            }
            if k == 0 {
                return None;
            }
            h = (h + 1) & mask;
        }
    }

    /// Longest in-force prefix of `digits` (ASCII digits only) for `tier`.
    #[inline]
    fn lookup(&self, rows: &[DeckRow], digits: &[u8], at: DateTime<Utc>, tier: ObrTier) -> Option<usize> {
        if self.keys.is_empty() {
            return None;
        }
        let n = digits.len().min(MAX_PREFIX_LEN);
        // Entries met on the walk, shortest first.
        let mut path = [0u32; MAX_PREFIX_LEN];
        let mut np = 0;
        let mut v = 0u64;
        for (l, &d) in digits[..n].iter().enumerate() {
            v = v * 10 + u64::from(d.wrapping_sub(b'0'));
            let Some(val) = self.find(REPUNIT[l + 1] + v) else {
                break;
            };
            if val & IS_ENTRY != 0 {
                path[np] = val & START_MASK;
                np += 1;
            }
            if val & HAS_CHILDREN == 0 {
                break;
            }
        }
        // Longest first; a prefix whose rows are all out of force or of the
        // other OBR tier yields to the next shorter one.
        path[..np]
            .iter()
            .rev()
            .find_map(|&start| self.pick(rows, start as usize, at, tier))
    }

    /// Choose among rows sharing one prefix: rows must be in force; a row of
    /// the caller's OBR tier beats an untiered row; rows of the other tier do
    /// not apply (the match then falls back to a shorter prefix); ties go to
    /// the latest row-level `effective_from`.
    #[inline]
    fn pick(&self, rows: &[DeckRow], start: usize, at: DateTime<Utc>, tier: ObrTier) -> Option<usize> {
        let mut best: Option<(u8, Option<DateTime<Utc>>, usize)> = None;
        for &o in &self.order[start..] {
            let ri = (o & !LAST) as usize;
            let r = &rows[ri];
            let rank = match r.obr_tier {
                _ if !r.in_force(at) => 0,
                None => 1u8,
                Some(t) if t == tier => 2,
                Some(_) => 0,
            };
            if rank > 0 {
                let cand = (rank, r.effective_from, ri);
                if best.is_none_or(|b| cand > b) {
                    best = Some(cand);
                }
            }
            if o & LAST != 0 {
                break;
            }
        }
        best.map(|b| b.2)
    }
}

/// One imported deck version.
#[derive(Debug, Clone)]
pub struct DeckVersion {
    pub deck_id: String,
    pub version: u64,
    pub scope: Scope,
    pub effective_from: DateTime<Utc>,
    /// Exclusive end; `None` = open-ended.
    pub effective_to: Option<DateTime<Utc>>,
    rows: Vec<DeckRow>,
    index: PrefixIndex,
}

impl DeckVersion {
    pub fn rows(&self) -> &[DeckRow] {
        &self.rows
    }

    /// Whether this version is in force at `at`.
    pub fn in_force(&self, at: DateTime<Utc>) -> bool {
        self.effective_from <= at && self.effective_to.is_none_or(|t| at < t)
    }

    /// Longest-prefix match inside this version.
    pub fn lookup(&self, digits: &str, at: DateTime<Utc>, tier: ObrTier) -> Option<&DeckRow> {
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        self.index
            .lookup(&self.rows, digits.as_bytes(), at, tier)
            .map(|i| &self.rows[i])
    }
}

/// A successful lookup: which deck/version and which row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeckMatch<'a> {
    pub deck_id: &'a str,
    pub version: u64,
    pub row: &'a DeckRow,
}

/// What one import produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub version: u64,
    pub rows_loaded: usize,
    pub rejected: Vec<RowError>,
}

/// All deck versions for all plans, US48 decks and trunks.
///
/// Not serialisable on purpose: it is an in-memory index rebuilt from the
/// deck files; persist the files (or [`DeckVersion::rows`]) instead.
#[derive(Debug, Clone, Default)]
pub struct DeckSet {
    az: [Vec<DeckVersion>; 4],
    us48: [Vec<DeckVersion>; 4],
    trunks: HashMap<u32, Vec<DeckVersion>>,
    next_version: u64,
}

fn plan_idx(p: Plan) -> usize {
    match p {
        Plan::Standard => 0,
        Plan::Premium => 1,
        Plan::Pstn => 2,
        Plan::Retail => 3,
    }
}

impl DeckSet {
    pub fn new() -> DeckSet {
        DeckSet::default()
    }

    fn slot(&self, scope: Scope) -> Option<&Vec<DeckVersion>> {
        match scope.normalized() {
            Scope::Az(p) => Some(&self.az[plan_idx(p)]),
            Scope::Us48(p) => Some(&self.us48[plan_idx(p)]),
            Scope::Trunk(t) => self.trunks.get(&t),
        }
    }

    fn push(&mut self, v: DeckVersion) {
        let list = match v.scope.normalized() {
            Scope::Az(p) => &mut self.az[plan_idx(p)],
            Scope::Us48(p) => &mut self.us48[plan_idx(p)],
            Scope::Trunk(t) => self.trunks.entry(t).or_default(),
        };
        list.push(v);
        // Stable: equal start dates keep import order, so a re-import of the
        // same date supersedes the earlier one.
        list.sort_by_key(|v| (v.effective_from, v.version));
    }

    /// Add already-parsed rows as a new version and return its number.
    /// Version numbers are global and increase with every import.
    pub fn insert(
        &mut self,
        deck_id: &str,
        target: DeckTarget,
        rows: Vec<DeckRow>,
        effective_from: DateTime<Utc>,
        effective_to: Option<DateTime<Utc>>,
    ) -> u64 {
        self.next_version += 1;
        let version = self.next_version;
        let mk = |scope: Scope, rows: Vec<DeckRow>| {
            let index = PrefixIndex::build(&rows);
            DeckVersion {
                deck_id: deck_id.to_string(),
                version,
                scope: scope.normalized(),
                effective_from,
                effective_to,
                rows,
                index,
            }
        };
        match target {
            DeckTarget::Az(p) => self.push(mk(Scope::Az(p), rows)),
            DeckTarget::Us48(p) => self.push(mk(Scope::Us48(p), rows)),
            DeckTarget::PerTrunk => {
                let mut by_trunk: BTreeMap<u32, Vec<DeckRow>> = BTreeMap::new();
                for r in rows {
                    by_trunk.entry(r.trunk.unwrap_or(0)).or_default().push(r);
                }
                for (t, rows) in by_trunk {
                    self.push(mk(Scope::Trunk(t), rows));
                }
            }
        }
        version
    }

    /// Parse and insert in one go. `plan` names the plan for US48 and
    /// breakout decks (ignored for A–Z, whose kind names it, and per-trunk).
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        &mut self,
        deck_id: &str,
        text: &str,
        kind: DeckKind,
        plan: Plan,
        mode: ImportMode,
        effective_from: DateTime<Utc>,
        effective_to: Option<DateTime<Utc>>,
    ) -> Result<LoadReport, DeckError> {
        let parsed = parse_deck(deck_id, text, kind, mode)?;
        let rows_loaded = parsed.rows.len();
        let version = self.insert(
            deck_id,
            DeckTarget::for_kind(kind, plan),
            parsed.rows,
            effective_from,
            effective_to,
        );
        Ok(LoadReport {
            version,
            rows_loaded,
            rejected: parsed.rejected,
        })
    }

    /// All versions of a scope, oldest first.
    pub fn versions(&self, scope: Scope) -> &[DeckVersion] {
        self.slot(scope).map_or(&[], |v| v.as_slice())
    }

    /// The version in force at `at`.
    #[inline]
    pub fn version_at(&self, scope: Scope, at: DateTime<Utc>) -> Option<&DeckVersion> {
        self.slot(scope)?.iter().rev().find(|v| v.in_force(at))
    }

    /// Longest-prefix match of `digits` in the version of `scope` in force at
    /// `at`. `tier` selects OBR breakouts (pass `RestOfWorld` when unknown).
    #[inline]
    pub fn lookup(&self, scope: Scope, digits: &str, at: DateTime<Utc>, tier: ObrTier) -> Option<DeckMatch<'_>> {
        let v = self.version_at(scope, at)?;
        let row = v.lookup(digits, at, tier)?;
        Some(DeckMatch {
            deck_id: &v.deck_id,
            version: v.version,
            row,
        })
    }

    /// Total rows across all versions (for metrics).
    pub fn total_rows(&self) -> usize {
        self.az
            .iter()
            .chain(self.us48.iter())
            .chain(self.trunks.values())
            .flatten()
            .map(|v| v.rows.len())
            .sum()
    }
}

/// Default notice period for rate increases (industry practice: 7 days).
pub fn default_notice() -> Duration {
    Duration::days(7)
}

/// A rate change between two decks for one prefix/trunk/tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateChange {
    pub prefix: Prefix,
    pub destination: Arc<str>,
    pub trunk: Option<u32>,
    pub obr_tier: Option<ObrTier>,
    pub old_rate: Decimal,
    pub new_rate: Decimal,
    pub old_rate_intrastate: Option<Decimal>,
    pub new_rate_intrastate: Option<Decimal>,
    /// Row-level date of the new rate (`None` = immediately).
    pub effective_from: Option<DateTime<Utc>>,
    /// Increase effective less than the notice period after `now`.
    pub short_notice: bool,
}

/// Differences between two decks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeckDiff {
    pub added: Vec<DeckRow>,
    pub removed: Vec<DeckRow>,
    pub increased: Vec<RateChange>,
    pub decreased: Vec<RateChange>,
    pub unchanged: usize,
}

impl DeckDiff {
    /// Increases that violate the notice period.
    pub fn short_notice(&self) -> impl Iterator<Item = &RateChange> {
        self.increased.iter().filter(|c| c.short_notice)
    }
}

type DiffKey = (Prefix, Option<u32>, Option<ObrTier>);

fn latest_by_key(rows: &[DeckRow]) -> BTreeMap<DiffKey, &DeckRow> {
    let mut m: BTreeMap<DiffKey, &DeckRow> = BTreeMap::new();
    for r in rows {
        let k = (r.prefix, r.trunk, r.obr_tier);
        // With dated rows for one code, compare the newest (where the deck
        // is heading), which is what the notice rule is about.
        match m.get(&k) {
            Some(o) if o.effective_from >= r.effective_from => {}
            _ => {
                m.insert(k, r);
            }
        }
    }
    m
}

/// Compare two decks row by row (keyed by prefix, trunk and OBR tier).
///
/// A row is *increased* when its rate (or, for US48, either rate) went up,
/// *decreased* when a rate went down and none went up. Increases whose
/// effective date (row-level; none = immediate) is less than `notice` after
/// `now` are flagged `short_notice`; decreases may apply at once and are
/// never flagged. Output is sorted by prefix for deterministic reports.
pub fn diff(old: &[DeckRow], new: &[DeckRow], notice: Duration, now: DateTime<Utc>) -> DeckDiff {
    let o = latest_by_key(old);
    let n = latest_by_key(new);
    let mut d = DeckDiff::default();
    for (k, nr) in &n {
        let Some(or) = o.get(k) else {
            d.added.push((*nr).clone());
            continue;
        };
        let up = nr.rate > or.rate || gt(nr.rate_intrastate, or.rate_intrastate);
        let down = nr.rate < or.rate || gt(or.rate_intrastate, nr.rate_intrastate);
        if !up && !down {
            d.unchanged += 1;
            continue;
        }
        let eff = nr.effective_from.unwrap_or(now);
        let change = RateChange {
            prefix: nr.prefix,
            destination: nr.destination.clone(),
            trunk: nr.trunk,
            obr_tier: nr.obr_tier,
            old_rate: or.rate,
            new_rate: nr.rate,
            old_rate_intrastate: or.rate_intrastate,
            new_rate_intrastate: nr.rate_intrastate,
            effective_from: nr.effective_from,
            short_notice: up && eff - now < notice,
        };
        if up {
            d.increased.push(change);
        } else {
            d.decreased.push(change);
        }
    }
    for (k, or) in &o {
        if !n.contains_key(k) {
            d.removed.push((*or).clone());
        }
    }
    d
}

fn gt(a: Option<Decimal>, b: Option<Decimal>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a > b)
}
