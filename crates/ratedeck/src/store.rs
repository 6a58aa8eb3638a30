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
//! [`crate::prefix`]): an implicit digit trie. The top levels (up to 4
//! digits) are a directly indexed array; each subtree below them has its
//! own small open-addressing table (multiplicative hash, linear probing,
//! compact 8-byte slots), so one lookup touches one compact table rather
//! than scattered slots of one big one. A lookup walks the number's digits
//! once, on the stack, until the trie ends, then takes the longest entry on
//! the path that is in force. No allocation per lookup.

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

/// Implicit digit trie over a sorted row order.
///
/// Every prefix in the deck is a node, and so is every proper prefix of one
/// ("marker" nodes). A lookup walks the number digit by digit from the
/// shortest prefix and stops at the first absent node or at a node without
/// children.
///
/// Nodes of up to `top_len` digits (the few, hot top levels) sit in a
/// directly indexed array (`top`, indexed by the node's key). Every deeper
/// node belongs to the subtree of one `top_len`-digit node, and each such
/// subtree has its own small open-addressing table (a `Group`, a slice of
/// `slots`). So a lookup touches the hot top array and then one compact
/// table (usually within one page) instead of one random slot of a big
/// table per digit: on the full decks the page walks and cache misses of
/// the scattered probes were most of the cost of rating a call.
///
/// Slots are 8 bytes (32-bit key fingerprint + 32-bit value). Fingerprints
/// are made unambiguous for every key present at build time (the multiplier
/// is re-drawn if a key would probe past its own fingerprint), and entry
/// hits are verified against the row's real prefix, so a fingerprint
/// collision with an absent key can never produce a wrong match.
#[derive(Debug, Clone, Default)]
struct PrefixIndex {
    /// Nodes of 1..=`top_len` digits, indexed by key; `bits` 0 = absent.
    top: Vec<TopNode>,
    top_len: usize,
    /// Sub-tables of the `top_len`-digit nodes that have children.
    groups: Vec<Group>,
    /// `fingerprint << 32 | value`; 0 = empty. Value is
    /// `HAS_CHILDREN | IS_ENTRY | start`, where start is the first row of the
    /// prefix: rows are stored sorted by prefix, so rows sharing a prefix
    /// are contiguous and a hit costs a single dependent load (the row).
    slots: Vec<u64>,
    mul: u64,
    /// Longest prefix in the deck: no need to look at more digits.
    max_len: usize,
}

/// A node of the directly indexed top levels.
#[derive(Debug, Clone, Copy, Default)]
struct TopNode {
    /// `HAS_CHILDREN | IS_ENTRY | start` as in a slot; 0 = no node.
    bits: u32,
    /// Index into `groups` (a `top_len`-digit node with children only).
    group: u32,
}

/// One subtree's open-addressing table: `slots[off .. off + size]`.
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    off: u32,
    /// Any size (not a power of two, so a deck's tables add up to ~1.25
    /// slots per node); the home slot is `hash * size >> 32`.
    size: u32,
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

/// Depth of the directly indexed top levels for a trie of `nodes` nodes:
/// the top array has `REPUNIT[len + 1]` entries (8 bytes each), so it only
/// grows to 89 KB (4 digits) for decks big enough to dwarf it.
fn top_len_for(nodes: usize, max_len: usize) -> usize {
    let l = match nodes {
        0..=63 => 1,
        64..=1_999 => 2,
        2_000..=29_999 => 3,
        _ => 4,
    };
    l.min(max_len.max(1))
}

impl PrefixIndex {
    /// Home slot inside group `g` and the fingerprint of `key`.
    #[inline]
    fn hash(&self, g: Group, key: u64) -> (usize, u64) {
        let m = key.wrapping_mul(self.mul) >> 32;
        // Home slot from the top bits (scaled to the table size),
        // fingerprint from the low 32 bits of a second mix (independent of
        // the slot bits).
        let fp = (key ^ (key >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 32;
        (((m * u64::from(g.size)) >> 32) as usize, fp << 32)
    }

    /// Sort `rows` by prefix (in place, no second copy of the deck) and
    /// build the index over them.
    fn build(rows: &mut [DeckRow]) -> PrefixIndex {
        PrefixIndex::build_with(rows, None)
    }

    /// `build`, with the depth of the top array forced (tests cover every
    /// depth on small decks).
    fn build_with(rows: &mut [DeckRow], force_top_len: Option<usize>) -> PrefixIndex {
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
        // Nodes in trie order (pre-order): (key, bits, length). Markers for
        // proper prefixes not shared with the previous prefix, then the
        // entry itself. A key can be emitted again only while it is still
        // the latest node of its length (trie order keeps a subtree
        // contiguous), so remembering the last node per length is enough to
        // merge duplicates.
        let mut nodes: Vec<(u64, u32, u8)> = Vec::with_capacity(pairs.len() * 3 / 2);
        let mut last_at_len = [(0u64, 0usize); MAX_PREFIX_LEN + 1];
        let mut emit = |nodes: &mut Vec<(u64, u32, u8)>, l: usize, key: u64, bits: u32| {
            if last_at_len[l].0 == key {
                nodes[last_at_len[l].1].1 |= bits;
            } else {
                last_at_len[l] = (key, nodes.len());
                nodes.push((key, bits, l as u8));
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
        let max_len = rows.iter().map(|r| r.prefix.len()).max().unwrap_or(0);
        if nodes.is_empty() {
            return PrefixIndex::default();
        }
        let top_len = force_top_len
            .unwrap_or_else(|| top_len_for(nodes.len(), max_len))
            .clamp(1, MAX_PREFIX_LEN);
        let mut top = vec![TopNode::default(); REPUNIT[top_len + 1] as usize];
        // Groups: in pre-order, the nodes deeper than `top_len` that follow
        // a `top_len`-digit node are exactly its subtree. `runs` holds
        // (top key, first node, end) per subtree.
        let mut runs: Vec<(u64, usize, usize)> = Vec::new();
        for (n, &(key, bits, l)) in nodes.iter().enumerate() {
            let l = usize::from(l);
            if l <= top_len {
                top[key as usize].bits = bits;
            } else {
                let v = key - REPUNIT[l];
                let root = REPUNIT[top_len] + v / POW10[l - top_len];
                match runs.last_mut() {
                    Some(r) if r.0 == root && r.2 == n => r.2 = n + 1,
                    _ => runs.push((root, n, n + 1)),
                }
            }
        }
        // Load factor ≤ 0.8 per table (at least one empty slot, so a probe
        // always ends). Tables follow each other in prefix order.
        let mut groups = Vec::with_capacity(runs.len());
        let mut total = 0usize;
        for r in &runs {
            let size = (r.2 - r.1) * 5 / 4 + 1;
            groups.push(Group {
                off: u32::try_from(total).expect("prefix index too large"),
                size: size as u32,
            });
            total += size;
        }
        for (g, r) in runs.iter().enumerate() {
            // Pre-order keeps a subtree contiguous: one run per root.
            debug_assert!(
                top[r.0 as usize].group == 0 && top[r.0 as usize].bits & HAS_CHILDREN != 0
            );
            top[r.0 as usize].group = g as u32;
        }
        'attempt: for &mul in &HASH_MULS {
            let mut idx = PrefixIndex {
                top: Vec::new(),
                top_len,
                groups: Vec::new(),
                slots: vec![0; total],
                mul,
                max_len,
            };
            for (g, r) in runs.iter().enumerate() {
                let grp = groups[g];
                let base = grp.off as usize;
                for &(key, bits, _) in &nodes[r.1..r.2] {
                    let (mut h, fp) = idx.hash(grp, key);
                    // Slots never change once filled, so a key stays
                    // findable iff no slot it probes past carries its
                    // fingerprint.
                    while idx.slots[base + h] != 0 {
                        if idx.slots[base + h] & FP_MASK == fp {
                            continue 'attempt;
                        }
                        h += 1;
                        if h == grp.size as usize {
                            h = 0;
                        }
                    }
                    idx.slots[base + h] = fp | u64::from(bits);
                }
            }
            idx.top = top;
            idx.groups = groups;
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
        if self.top.is_empty() {
            return None;
        }
        let n = digits.len().min(self.max_len);
        // Entries met on the path, shortest first.
        let mut path = [(0u32, 0u64); MAX_PREFIX_LEN];
        let mut np = 0;
        let mut v = 0u64;
        let mut group = None;
        for l in 1..=n.min(self.top_len) {
            v = v * 10 + u64::from(digits[l - 1].wrapping_sub(b'0'));
            let key = REPUNIT[l] + v;
            let t = self.top[key as usize];
            if t.bits & IS_ENTRY != 0 {
                path[np] = (t.bits & START_MASK, key);
                np += 1;
            }
            if t.bits & HAS_CHILDREN == 0 {
                break;
            }
            if l == self.top_len {
                group = Some(self.groups[t.group as usize]);
            }
        }
        if let Some(g) = group {
            let table = &self.slots[g.off as usize..(g.off + g.size) as usize];
            // Gather phase: the home slot of every remaining length is known
            // up front and lies in this one small table, so load them all
            // before walking; the CPU overlaps the cache misses.
            let mut keys = [0u64; MAX_PREFIX_LEN + 1];
            let mut homes = [0usize; MAX_PREFIX_LEN + 1];
            let mut fps = [0u64; MAX_PREFIX_LEN + 1];
            let mut first = [0u64; MAX_PREFIX_LEN + 1];
            for l in self.top_len + 1..=n {
                v = v * 10 + u64::from(digits[l - 1].wrapping_sub(b'0'));
                let key = REPUNIT[l] + v;
                let (h, fp) = self.hash(g, key);
                keys[l] = key;
                homes[l] = h;
                fps[l] = fp;
                first[l] = table[h];
            }
            for l in self.top_len + 1..=n {
                let (mut h, mut s) = (homes[l], first[l]);
                while s != 0 && s & FP_MASK != fps[l] {
                    h += 1;
                    if h == table.len() {
                        h = 0;
                    }
                    s = table[h];
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

    /// The reference the index must agree with: try every length from the
    /// longest down, with the same choice among rows sharing a prefix.
    fn brute_lookup(
        rows: &[DeckRow],
        digits: &str,
        at: DateTime<Utc>,
        tier: ObrTier,
    ) -> Option<usize> {
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        for l in (1..=digits.len().min(MAX_PREFIX_LEN)).rev() {
            let p = Prefix::parse(&digits[..l]).unwrap();
            let mut best: Option<(u8, Option<DateTime<Utc>>, usize)> = None;
            // Rows are sorted by prefix: binary search the run of `p`.
            let lo = rows.partition_point(|r| padded(r.prefix) < padded(p));
            for (ri, r) in rows
                .iter()
                .enumerate()
                .skip(lo)
                .take_while(|(_, r)| padded(r.prefix) <= padded(p))
                .filter(|(_, r)| r.prefix == p)
            {
                let rank = match r.obr_tier {
                    _ if !r.in_force(at) => 0,
                    None => 1u8,
                    Some(t) if t == tier => 2,
                    Some(_) => 0,
                };
                if rank > 0 && best.is_none_or(|b| (rank, r.effective_from, ri) > b) {
                    best = Some((rank, r.effective_from, ri));
                }
            }
            if let Some(b) = best {
                return Some(b.2);
            }
        }
        None
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        #[test]
        fn index_matches_brute_force(
            prefixes in proptest::collection::vec(("[0-2]{1,7}", 0u8..4, 0u8..3), 0..120),
            numbers in proptest::collection::vec("[0-2]{0,9}", 1..40),
            top_len in proptest::option::of(1usize..6),
            day in 1u32..4,
        ) {
            let mut rows: Vec<DeckRow> = prefixes
                .iter()
                .map(|(p, tier, date)| {
                    let mut r = row(p, dec!(0.01));
                    r.obr_tier = match tier {
                        1 => Some(ObrTier::Eea),
                        2 => Some(ObrTier::RestOfWorld),
                        _ => None,
                    };
                    match date {
                        1 => r.effective_from = Some(t(2)),
                        2 => r.effective_to = Some(t(3)),
                        _ => {}
                    }
                    r
                })
                .collect();
            let idx = PrefixIndex::build_with(&mut rows, top_len);
            for n in &numbers {
                for tier in [ObrTier::Eea, ObrTier::RestOfWorld] {
                    proptest::prop_assert_eq!(
                        idx.lookup(&rows, n.as_bytes(), t(day), tier),
                        brute_lookup(&rows, n, t(day), tier),
                        "number {} tier {:?}", n, tier
                    );
                }
            }
        }
    }

    #[test]
    fn index_depths_on_a_generated_deck() {
        // Big enough for the 4-digit top array, with 1-digit prefixes too.
        let mut rows: Vec<DeckRow> = (0..35_000u64)
            .map(|i| {
                let p = format!("{}{}", i % 9 + 1, i * 7919 % 1_000_003);
                row(&p[..(i as usize % 9 + 1).min(p.len())], dec!(0.01))
            })
            .collect();
        rows.sort_by_key(|r| r.prefix);
        rows.dedup_by_key(|r| r.prefix);
        let idx = PrefixIndex::build(&mut rows);
        assert_eq!(idx.top_len, 4);
        for i in 0..3_000u64 {
            let n = format!("{}{}", i % 9 + 1, i * 104_729 % 100_000_007);
            for tier in [ObrTier::Eea, ObrTier::RestOfWorld] {
                assert_eq!(
                    idx.lookup(&rows, n.as_bytes(), t(2), tier),
                    brute_lookup(&rows, &n, t(2), tier),
                    "{n}"
                );
            }
        }
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
