//! Versioned deck store and the longest-prefix-match index.
//!
//! Owns [`DeckSet`] (all deck versions, grouped by [`Scope`]: an A–Z plan, a
//! US48 plan or a trunk), [`DeckVersion`], the allocation-free prefix index
//! and [`diff`] between two decks.
//!
//! Version selection: a call is rated by the latest version (by
//! `effective_from`, then import order) whose `effective_from <= answer time`
//! and which has not ended, over the rows in force under it: its own rows
//! and the earlier rows that stay in force ([`crate::history`]: a row lasts
//! until a later row for its key starts or the key is removed; `Replace`
//! and `Overlay` versions). Inside a version, row-level dates decide which
//! rows are in force, so a deck may carry today's rate and a dated future
//! increase for the same code.
//!
//! Index design (target ≥ 2M lookups/s/core on ≥ 200k prefixes): every
//! prefix, and every proper prefix of one, is encoded as one u64 key (see
//! [`crate::prefix`]) in an open-addressing table with a multiplicative
//! hash and linear probing: an implicit digit trie with compact 8-byte
//! nodes. A lookup walks the number's digits once, on the stack, probing one
//! node per digit until the trie ends, then takes the longest entry on the
//! path that is in force. No allocation per lookup.

use crate::deck::{parse_deck, DeckError, DeckKind, DeckRow, ImportMode, ObrTier, Plan, RowError};
use crate::history::{self, is_own, DeckMode, NoticePolicy, RowOrigin, ShortNotice, VersionFrame};
use crate::prefix::{Prefix, MAX_PREFIX_LEN, POW10, REPUNIT};
use chrono::{DateTime, Utc};
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
/// stops at the first absent node or at a node without children.
///
/// Slots are 8 bytes (32-bit key fingerprint + 32-bit value) so the table
/// of a 200k-prefix deck stays within a few MB of cache. Fingerprints are
/// made unambiguous for every key present at build time (the multiplier is
/// re-drawn if a key would probe past its own fingerprint), and entry hits are
/// verified against the row's real prefix, so a fingerprint collision with
/// an absent key can never produce a wrong match.
#[derive(Debug, Clone, Default)]
struct PrefixIndex {
    /// `fingerprint << 32 | value`; 0 = empty. Value is
    /// `HAS_CHILDREN | IS_ENTRY | start`, where start is the first row of the
    /// prefix: rows are stored sorted by prefix, so rows sharing a prefix
    /// are contiguous and a hit costs a single dependent load (the row).
    slots: Vec<u64>,
    shift: u32,
    mul: u64,
    /// Longest prefix in the deck: no need to look at more digits.
    max_len: usize,
}

const HASH_MULS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
];
const FP_MASK: u64 = 0xFFFF_FFFF_0000_0000;
const HAS_CHILDREN: u32 = 1 << 31;
const IS_ENTRY: u32 = 1 << 30;
const START_MASK: u32 = IS_ENTRY - 1;

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
    #[inline]
    fn hash(&self, key: u64) -> (usize, u64) {
        let m = key.wrapping_mul(self.mul);
        // Home slot from the top bits, fingerprint from the low 32 bits of
        // a second mix (independent of the slot bits).
        let fp = (key ^ (key >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 32;
        ((m >> self.shift) as usize, fp << 32)
    }

    /// Sort `rows` by prefix (in place, no second copy of the deck) and
    /// build the index over them.
    fn build(rows: &mut [DeckRow]) -> PrefixIndex {
        assert!(
            rows.len() < START_MASK as usize,
            "deck too large for the index"
        );
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
        // Apply the permutation in place by following cycles: new[p] =
        // old[src[p]]. Avoids a transient second copy of a 1M-row deck.
        let mut src: Vec<u32> = pairs.iter().map(|p| p.2).collect();
        for p in 0..src.len() {
            let mut cur = p;
            loop {
                let s = src[cur] as usize;
                src[cur] = cur as u32;
                if s == p || s == cur {
                    break;
                }
                rows.swap(cur, s);
                cur = s;
            }
        }
        drop(src);
        // Nodes in trie order: (key, bits). Markers for proper prefixes not
        // shared with the previous prefix, then the entry itself. A key can
        // be emitted again only while it is still the latest node of its
        // length (trie order keeps a subtree contiguous), so remembering the
        // last node per length is enough to merge duplicates.
        let mut nodes: Vec<(u64, u32)> = Vec::with_capacity(pairs.len() * 3 / 2);
        let mut last_at_len = [(0u64, 0usize); MAX_PREFIX_LEN + 1];
        let mut emit = |nodes: &mut Vec<(u64, u32)>, l: usize, key: u64, bits: u32| {
            if last_at_len[l].0 == key {
                nodes[last_at_len[l].1].1 |= bits;
            } else {
                last_at_len[l] = (key, nodes.len());
                nodes.push((key, bits));
            }
        };
        let mut i = 0;
        let mut prev: Option<(u64, usize)> = None;
        while i < pairs.len() {
            let cur = (pairs[i].0, pairs[i].1 as usize);
            let mut j = i + 1;
            while j < pairs.len() && (pairs[j].0, pairs[j].1 as usize) == cur {
                j += 1;
            }
            let lcp = prev.map_or(0, |q| common_len(q, cur));
            // From `lcp` (not lcp+1): the previous prefix may be exactly the
            // parent, inserted without HAS_CHILDREN.
            for l in lcp.max(1)..cur.1 {
                let key = REPUNIT[l] + cur.0 / POW10[MAX_PREFIX_LEN - l];
                emit(&mut nodes, l, key, HAS_CHILDREN);
            }
            let key = REPUNIT[cur.1] + cur.0 / POW10[MAX_PREFIX_LEN - cur.1];
            emit(&mut nodes, cur.1, key, IS_ENTRY | i as u32);
            prev = Some(cur);
            i = j;
        }
        drop(pairs);
        // Load factor ≤ 0.8: with 8-byte slots a probe chain of a few slots
        // stays within one or two cache lines, and the smaller table keeps a
        // 1M-row import within its memory budget.
        let cap = (nodes.len().max(1) * 5 / 4 + 1).next_power_of_two().max(16);
        let max_len = rows.iter().map(|r| r.prefix.len()).max().unwrap_or(0);
        'attempt: for &mul in &HASH_MULS {
            let mut idx = PrefixIndex {
                slots: vec![0; cap],
                shift: 64 - cap.trailing_zeros(),
                mul,
                max_len,
            };
            for &(key, bits) in &nodes {
                let (mut h, fp) = idx.hash(key);
                // Slots never change once filled, so a key stays findable
                // iff no slot it probes past carries its fingerprint.
                while idx.slots[h] != 0 {
                    if idx.slots[h] & FP_MASK == fp {
                        continue 'attempt;
                    }
                    h = (h + 1) & (cap - 1);
                }
                idx.slots[h] = fp | u64::from(bits);
            }
            return idx;
        }
        panic!("prefix index: fingerprint collisions under every multiplier");
    }

    /// Longest in-force prefix of `digits` (ASCII digits only) for `tier`.
    #[inline]
    fn lookup(
        &self,
        rows: &[DeckRow],
        digits: &[u8],
        at: DateTime<Utc>,
        tier: ObrTier,
    ) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let n = digits.len().min(self.max_len);
        let mask = self.slots.len() - 1;
        // Gather phase: the home slot of every candidate length is known up
        // front, so load them all before walking. The loads are independent,
        // so the CPU overlaps their cache misses instead of paying one full
        // miss per trie level.
        let mut keys = [0u64; MAX_PREFIX_LEN + 1];
        let mut homes = [0usize; MAX_PREFIX_LEN + 1];
        let mut fps = [0u64; MAX_PREFIX_LEN + 1];
        let mut first = [0u64; MAX_PREFIX_LEN + 1];
        let mut v = 0u64;
        for l in 1..=n {
            v = v * 10 + u64::from(digits[l - 1].wrapping_sub(b'0'));
            let key = REPUNIT[l] + v;
            let (h, fp) = self.hash(key);
            keys[l] = key;
            homes[l] = h;
            fps[l] = fp;
            first[l] = self.slots[h];
        }
        // Walk phase: entries met on the path, shortest first.
        let mut path = [(0u32, 0u64); MAX_PREFIX_LEN];
        let mut np = 0;
        for l in 1..=n {
            let mut s = first[l];
            let mut h = homes[l];
            while s != 0 && s & FP_MASK != fps[l] {
                h = (h + 1) & mask;
                s = self.slots[h];
            }
            if s == 0 {
                break;
            }
            let val = s as u32;
            if val & IS_ENTRY != 0 {
                path[np] = (val & START_MASK, keys[l]);
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
            .find_map(|&(start, key)| self.pick(rows, start as usize, key, at, tier))
    }

    /// Choose among rows sharing one prefix: rows must be in force; a row of
    /// the caller's OBR tier beats an untiered row; rows of the other tier do
    /// not apply (the match then falls back to a shorter prefix); ties go to
    /// the latest row-level `effective_from`.
    #[inline]
    fn pick(
        &self,
        rows: &[DeckRow],
        start: usize,
        key: u64,
        at: DateTime<Utc>,
        tier: ObrTier,
    ) -> Option<usize> {
        let mut best: Option<(u8, Option<DateTime<Utc>>, usize)> = None;
        // The prefix check also rejects a fingerprint match for a key that
        // is not in the deck (it would land on another prefix's rows).
        for (ri, r) in rows
            .iter()
            .enumerate()
            .skip(start)
            .take_while(|(_, r)| r.prefix.key() == key)
        {
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
        }
        best.map(|b| b.2)
    }
}

/// One imported deck version.
#[derive(Debug, Clone)]
pub struct DeckVersion {
    /// Shared so rated calls can carry it without copying.
    pub deck_id: Arc<str>,
    pub version: u64,
    pub scope: Scope,
    pub effective_from: DateTime<Utc>,
    /// Exclusive end; `None` = open-ended.
    pub effective_to: Option<DateTime<Utc>>,
    /// What the version does to the keys it does not list.
    pub mode: DeckMode,
    /// When it was announced (the notice period counts from here).
    pub notified_at: DateTime<Utc>,
    /// Rows in force under this version: its own and those of earlier
    /// versions that stay in force (see [`crate::history`]).
    rows: Vec<DeckRow>,
    /// Own rows not applied (refused short-notice increases).
    refused: Vec<DeckRow>,
    findings: Vec<ShortNotice>,
    index: PrefixIndex,
}

impl DeckVersion {
    /// The rows in force under this version, sorted by prefix
    /// (lexicographically): its own and earlier versions' rows that stay in
    /// force; each row keeps its source `line` and [`DeckRow::origin`].
    pub fn rows(&self) -> &[DeckRow] {
        &self.rows
    }

    /// The rows this version published and applied (what `cdrctl deck
    /// publish` writes for it).
    pub fn own_rows(&self) -> impl Iterator<Item = &DeckRow> {
        self.rows.iter().filter(|r| is_own(r, self.version))
    }

    /// Rows this version published but did not apply (short notice).
    pub fn refused_rows(&self) -> &[DeckRow] {
        &self.refused
    }

    /// Short-notice increases found when the version was loaded.
    pub fn short_notice(&self) -> &[ShortNotice] {
        &self.findings
    }

    fn frame(&self) -> VersionFrame<'_> {
        VersionFrame {
            deck_id: &self.deck_id,
            version: self.version,
            effective_from: self.effective_from,
            effective_to: self.effective_to,
            mode: self.mode,
            notified_at: self.notified_at,
        }
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

/// A NANP area a deck version prices only through its catch-all `1` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NanpCatchAll {
    pub deck_id: String,
    pub version: u64,
    /// Area code (`876`).
    pub npa: &'static str,
    /// Country or area (`Jamaica`).
    pub area: &'static str,
}

impl std::fmt::Display for NanpCatchAll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deck {} v{}: NANP 1{} ({}) matches only the catch-all `1` row",
            self.deck_id, self.version, self.npa, self.area
        )
    }
}

/// A successful lookup: which row, and the deck version that published it
/// (an earlier version's row may still be in force).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeckMatch<'a> {
    pub deck_id: &'a Arc<str>,
    pub version: u64,
    /// When the row took effect: its own date, else its version's start.
    pub row_effective_from: DateTime<Utc>,
    pub row: &'a DeckRow,
}

/// A new version: its rows and how it follows the previous one.
#[derive(Debug, Clone)]
pub struct VersionSpec {
    pub deck_id: String,
    pub target: DeckTarget,
    pub rows: Vec<DeckRow>,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
    pub mode: DeckMode,
    /// When it was announced; `None` = at `effective_from` (so an increase
    /// that applies at once has no notice at all).
    pub notified_at: Option<DateTime<Utc>>,
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
    notice: NoticePolicy,
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

    /// The notice rule applied to the versions loaded from now on (and to
    /// later versions re-derived by an out-of-order load).
    pub fn set_notice_policy(&mut self, policy: NoticePolicy) {
        self.notice = policy;
    }

    fn push(&mut self, v: DeckVersion) {
        let policy = self.notice;
        let version = v.version;
        let list = match v.scope.normalized() {
            Scope::Az(p) => &mut self.az[plan_idx(p)],
            Scope::Us48(p) => &mut self.us48[plan_idx(p)],
            Scope::Trunk(t) => self.trunks.entry(t).or_default(),
        };
        list.push(v);
        // Stable: equal start dates keep import order, so a re-import of the
        // same date supersedes the earlier one.
        list.sort_by_key(|v| (v.effective_from, v.version));
        // The new version and every later one are re-derived: a version's
        // rows in force depend on the one before it.
        let at = list.iter().position(|v| v.version == version).unwrap_or(0);
        for k in at..list.len() {
            let (before, rest) = list.split_at_mut(k);
            let prev = before.last().map(|p| (p.rows.as_slice(), p.effective_to));
            let cur = &mut rest[0];
            let mut own: Vec<DeckRow> = std::mem::take(&mut cur.rows)
                .into_iter()
                .filter(|r| is_own(r, cur.version))
                .collect();
            own.append(&mut cur.refused);
            let m = history::materialise(&cur.frame(), own, prev, policy);
            cur.rows = m.rows;
            cur.refused = m.refused;
            cur.findings = m.findings;
            cur.index = PrefixIndex::build(&mut cur.rows);
        }
    }

    /// Add already-parsed rows as a new full (replacing) version announced
    /// at its start, and return its number. See [`DeckSet::insert_version`].
    pub fn insert(
        &mut self,
        deck_id: &str,
        target: DeckTarget,
        rows: Vec<DeckRow>,
        effective_from: DateTime<Utc>,
        effective_to: Option<DateTime<Utc>>,
    ) -> u64 {
        self.insert_version(VersionSpec {
            deck_id: deck_id.to_string(),
            target,
            rows,
            effective_from,
            effective_to,
            mode: DeckMode::Replace,
            notified_at: None,
        })
    }

    /// Add a version and return its number. Version numbers are global and
    /// increase with every import. The rows in force under it follow
    /// [`crate::history`]: earlier rows stay in force until a row of this
    /// version for their key starts (or, in `Replace` mode, from its start
    /// when it does not list them); short-notice increases are handled by
    /// the [`NoticePolicy`].
    pub fn insert_version(&mut self, spec: VersionSpec) -> u64 {
        self.next_version += 1;
        let version = self.next_version;
        let VersionSpec {
            deck_id,
            target,
            rows,
            effective_from,
            effective_to,
            mode,
            notified_at,
        } = spec;
        let id: Arc<str> = Arc::from(deck_id.as_str());
        let origin = Arc::new(RowOrigin {
            deck_id: id.clone(),
            version,
            version_from: effective_from,
        });
        let mk = |scope: Scope, mut rows: Vec<DeckRow>| {
            for r in &mut rows {
                r.origin = Some(origin.clone());
            }
            DeckVersion {
                deck_id: id.clone(),
                version,
                scope: scope.normalized(),
                effective_from,
                effective_to,
                mode,
                notified_at: notified_at.unwrap_or(effective_from),
                rows,
                refused: Vec::new(),
                findings: Vec::new(),
                index: PrefixIndex::default(),
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
    pub fn lookup(
        &self,
        scope: Scope,
        digits: &str,
        at: DateTime<Utc>,
        tier: ObrTier,
    ) -> Option<DeckMatch<'_>> {
        let v = self.version_at(scope, at)?;
        let row = v.lookup(digits, at, tier)?;
        Some(match &row.origin {
            Some(o) => DeckMatch {
                deck_id: &o.deck_id,
                version: o.version,
                row_effective_from: row.effective_from.unwrap_or(o.version_from),
                row,
            },
            None => DeckMatch {
                deck_id: &v.deck_id,
                version: v.version,
                row_effective_from: row.effective_from.unwrap_or(v.effective_from),
                row,
            },
        })
    }

    /// Every version of every scope (A–Z, then US48, then trunks by number),
    /// oldest first within a scope: what `cdrctl deck publish` writes out.
    pub fn all_versions(&self) -> Vec<&DeckVersion> {
        let mut trunks: Vec<_> = self.trunks.iter().collect();
        trunks.sort_by_key(|(t, _)| **t);
        self.az
            .iter()
            .chain(self.us48.iter())
            .chain(trunks.into_iter().map(|(_, v)| v))
            .flat_map(|v| v.iter())
            .collect()
    }

    /// NANP areas outside the contiguous US ([`numbering::NANP_NON_US48`])
    /// that an A–Z or trunk version prices only through a catch-all `1`
    /// row, at the version's start, for either OBR tier. Such calls would
    /// be billed at the catch-all (usually US) rate, which invites
    /// revenue-share fraud to Caribbean numbers; `rate` leaves them
    /// unrated, and the loader warns with this list.
    pub fn nanp_catch_all(&self) -> Vec<NanpCatchAll> {
        let mut trunks: Vec<_> = self.trunks.iter().collect();
        trunks.sort_by_key(|(t, _)| **t);
        let mut out = Vec::new();
        for v in self
            .az
            .iter()
            .chain(trunks.into_iter().map(|(_, v)| v))
            .flat_map(|v| v.iter())
        {
            for (npa, area) in numbering::NANP_NON_US48 {
                let probe = format!("1{npa}5550100");
                let catch_all = [ObrTier::RestOfWorld, ObrTier::Eea]
                    .into_iter()
                    .any(|tier| {
                        v.lookup(&probe, v.effective_from, tier)
                            .is_some_and(|r| r.prefix.len() == 1)
                    });
                if catch_all {
                    out.push(NanpCatchAll {
                        deck_id: v.deck_id.to_string(),
                        version: v.version,
                        npa,
                        area,
                    });
                }
            }
        }
        out
    }

    /// Short-notice increases of every version (flagged or refused), in
    /// version order.
    pub fn short_notice(&self) -> Vec<&ShortNotice> {
        let mut out: Vec<&ShortNotice> = self
            .all_versions()
            .into_iter()
            .flat_map(|v| v.findings.iter())
            .collect();
        out.sort_by_key(|f| f.version);
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    fn t(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, d, 0, 0, 0).unwrap()
    }

    fn row(p: &str, rate: Decimal) -> DeckRow {
        DeckRow::simple(p, p, rate, crate::Increment::new(1, 1))
    }

    #[test]
    fn tiers_and_dates_fall_back_to_shorter_prefix() {
        let mut eea_only = row("3361", dec!(0.01));
        eea_only.obr_tier = Some(ObrTier::Eea);
        let mut later = row("3362", dec!(0.05));
        later.effective_from = Some(t(10));
        let mut cur = row("3363", dec!(0.02));
        cur.effective_to = Some(t(10));
        let rows = vec![
            row("33", dec!(0.1)),
            row("336", dec!(0.2)),
            eea_only,
            later,
            cur,
        ];
        let mut set = DeckSet::new();
        set.insert("d", DeckTarget::Az(Plan::Standard), rows, t(1), None);
        let at = |n: &str, when, tier| {
            set.lookup(Scope::Az(Plan::Standard), n, when, tier)
                .map(|m| m.row.rate)
        };
        assert_eq!(at("33612", t(5), ObrTier::Eea), Some(dec!(0.01)));
        assert_eq!(
            at("33612", t(5), ObrTier::RestOfWorld),
            Some(dec!(0.2)),
            "other tier skipped"
        );
        assert_eq!(
            at("33621", t(5), ObrTier::Eea),
            Some(dec!(0.2)),
            "not yet in force"
        );
        assert_eq!(at("33621", t(10), ObrTier::Eea), Some(dec!(0.05)));
        assert_eq!(at("33631", t(9), ObrTier::Eea), Some(dec!(0.02)));
        assert_eq!(
            at("33631", t(10), ObrTier::Eea),
            Some(dec!(0.2)),
            "row ended"
        );
        assert_eq!(at("34", t(5), ObrTier::Eea), None);
        assert_eq!(
            at("3", t(5), ObrTier::Eea),
            None,
            "marker node is not a match"
        );
        assert_eq!(at("", t(5), ObrTier::Eea), None);
        assert_eq!(
            at("33x", t(5), ObrTier::Eea),
            None,
            "non-digits never match"
        );
        assert_eq!(set.total_rows(), 5);
    }

    #[test]
    fn us48_standard_and_premium_share_a_deck() {
        let mut set = DeckSet::new();
        let v = set.insert(
            "us",
            DeckTarget::Us48(Plan::Standard),
            vec![row("1212555", dec!(0.001))],
            t(1),
            None,
        );
        let m = set
            .lookup(
                Scope::Us48(Plan::Premium),
                "12125550000",
                t(2),
                ObrTier::Eea,
            )
            .unwrap();
        assert_eq!((&**m.deck_id, m.version), ("us", v));
        assert!(set
            .lookup(Scope::Us48(Plan::Pstn), "12125550000", t(2), ObrTier::Eea)
            .is_none());
    }

    #[test]
    fn per_trunk_import_fans_out_by_trunk() {
        let mut a = row("44", dec!(0.01));
        a.trunk = Some(101);
        let mut b = row("44", dec!(0.02));
        b.trunk = Some(205);
        let mut set = DeckSet::new();
        let v = set.insert("trunks", DeckTarget::PerTrunk, vec![a, b], t(1), None);
        assert_eq!(set.versions(Scope::Trunk(101)).len(), 1);
        let m = set
            .lookup(Scope::Trunk(205), "4420", t(2), ObrTier::Eea)
            .unwrap();
        assert_eq!((m.row.rate, m.version), (dec!(0.02), v));
        assert!(set
            .lookup(Scope::Trunk(7), "4420", t(2), ObrTier::Eea)
            .is_none());
    }
}
