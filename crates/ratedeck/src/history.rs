//! How deck versions follow each other: row-level effect across versions.
//!
//! Owns [`DeckMode`], [`NoticePolicy`], [`RowOrigin`], [`ShortNotice`] and
//! [`materialise`], which turns one version's own rows into the rows in
//! force under it, given the version before it in the same scope:
//!
//! - a row stays in force until a later version's row for the same key
//!   (prefix, trunk, OBR tier) takes effect, or the key is removed;
//! - so a new version whose row for a key starts later than the version
//!   itself (a dated increase) keeps the previous row until then, instead
//!   of letting the key's numbers fall to a shorter prefix;
//! - `Replace` (a full deck) removes, from its start, every key it does
//!   not list; `Overlay` amends the keys it lists and keeps the rest;
//! - an increase announced with less than the notice period is flagged,
//!   or refused (the previous row stays in force, the new one is kept
//!   aside with the finding), as the policy says.
//!
//! Every kept row carries its [`RowOrigin`]: the deck and version that
//! published it, which is what a rated CDR records.

use crate::deck::DeckRow;
use crate::diff::{diff_at, row_key, RateChange, RowKey};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What a new version does to the keys it does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeckMode {
    /// A full deck: a key it does not list is removed from its start.
    Replace,
    /// Amends the keys it lists; every other row stays in force.
    Overlay,
}

impl DeckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeckMode::Replace => "replace",
            DeckMode::Overlay => "overlay",
        }
    }
}

/// What happens to an increase announced with less than the notice period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortNoticeAction {
    /// Applied as published, and reported.
    Flag,
    /// Not applied: the previous row stays in force; reported.
    Refuse,
}

/// The notice rule applied when a version is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticePolicy {
    pub period: Duration,
    pub action: ShortNoticeAction,
}

impl Default for NoticePolicy {
    fn default() -> Self {
        NoticePolicy {
            period: crate::diff::default_notice(),
            action: ShortNoticeAction::Flag,
        }
    }
}

/// The deck version that published a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowOrigin {
    pub deck_id: Arc<str>,
    pub version: u64,
    /// The version's start: the row's effective date when it has none.
    pub version_from: DateTime<Utc>,
}

/// A short-notice increase found when a version was loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ShortNotice {
    pub deck_id: Arc<str>,
    pub version: u64,
    pub change: RateChange,
    /// The increase was not applied (policy `Refuse`).
    pub refused: bool,
}

impl std::fmt::Display for ShortNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.change;
        write!(
            f,
            "deck {} v{}: increase on {} ({}) with short notice{}: {}",
            self.deck_id,
            self.version,
            c.prefix,
            c.destination,
            if self.refused {
                ", refused (previous row stays in force)"
            } else {
                ", applied"
            },
            c.terms.join(", ")
        )
    }
}

/// One version as loaded: what `materialise` needs to know about it.
#[derive(Debug, Clone, Copy)]
pub struct VersionFrame<'a> {
    pub deck_id: &'a Arc<str>,
    pub version: u64,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
    pub mode: DeckMode,
    /// When the version was announced (notice is counted from here).
    pub notified_at: DateTime<Utc>,
}

/// The rows in force under a version.
#[derive(Debug, Default)]
pub struct Materialised {
    /// The version's own rows that apply plus the previous version's rows
    /// that stay in force (clipped to when they stop).
    pub rows: Vec<DeckRow>,
    /// Own rows not applied (refused short-notice increases).
    pub refused: Vec<DeckRow>,
    pub findings: Vec<ShortNotice>,
}

/// Whether `r` was published by `version`.
pub fn is_own(r: &DeckRow, version: u64) -> bool {
    r.origin.as_ref().is_some_and(|o| o.version == version)
}

fn clipped(r: &DeckRow, end: Option<DateTime<Utc>>) -> DeckRow {
    let mut c = r.clone();
    c.effective_to = match (c.effective_to, end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    c
}

/// The previous rows that stay in force under `v`, given the start of each
/// key `v` lists and the keys whose new rows were refused.
fn carried(
    prev: &[DeckRow],
    prev_end: Option<DateTime<Utc>>,
    v: &VersionFrame<'_>,
    listed: &HashMap<RowKey, DateTime<Utc>>,
    refused: &BTreeSet<RowKey>,
) -> Vec<DeckRow> {
    let mut out = Vec::new();
    for r in prev {
        let k = row_key(r);
        let end = if refused.contains(&k) {
            prev_end
        } else if let Some(&starts) = listed.get(&k) {
            if starts <= v.effective_from {
                continue;
            }
            Some(prev_end.map_or(starts, |e| e.min(starts)))
        } else if v.mode == DeckMode::Overlay {
            prev_end
        } else {
            continue;
        };
        let c = clipped(r, end);
        // A row that has ended by the version's start can never apply.
        if c.effective_to.is_none_or(|t| t > v.effective_from) {
            out.push(c);
        }
    }
    out
}

/// The rows in force under version `v`, whose own rows are `own` (every
/// row it published, refused ones included), after `prev` (the previous
/// version's materialised rows and its end), under `policy`.
pub fn materialise(
    v: &VersionFrame<'_>,
    own: Vec<DeckRow>,
    prev: Option<(&[DeckRow], Option<DateTime<Utc>>)>,
    policy: NoticePolicy,
) -> Materialised {
    let Some((prev_rows, prev_end)) = prev else {
        return Materialised {
            rows: own,
            ..Materialised::default()
        };
    };
    let starts = |r: &DeckRow| {
        r.effective_from
            .map_or(v.effective_from, |f| f.max(v.effective_from))
    };
    let listed_of = |rows: &[DeckRow], skip: &BTreeSet<RowKey>| {
        let mut m: HashMap<RowKey, DateTime<Utc>> = HashMap::new();
        for r in rows.iter().filter(|r| !skip.contains(&row_key(r))) {
            let s = starts(r);
            m.entry(row_key(r))
                .and_modify(|e| *e = (*e).min(s))
                .or_insert(s);
        }
        m
    };
    let none = BTreeSet::new();
    let listed = listed_of(&own, &none);
    let mut rows = carried(prev_rows, prev_end, v, &listed, &none);
    rows.extend(own.iter().cloned());
    let d = diff_at(
        prev_rows,
        &rows,
        policy.period,
        v.notified_at,
        v.effective_from,
    );
    let refuse = policy.action == ShortNoticeAction::Refuse;
    let mut refused_keys = BTreeSet::new();
    let mut findings = Vec::new();
    for c in d.increased.into_iter().filter(|c| c.short_notice) {
        if refuse {
            refused_keys.insert((c.prefix, c.trunk, c.obr_tier));
        }
        findings.push(ShortNotice {
            deck_id: v.deck_id.clone(),
            version: v.version,
            change: c,
            refused: refuse,
        });
    }
    if refused_keys.is_empty() {
        return Materialised {
            rows,
            refused: Vec::new(),
            findings,
        };
    }
    let (refused, kept): (Vec<DeckRow>, Vec<DeckRow>) = own
        .into_iter()
        .partition(|r| refused_keys.contains(&row_key(r)));
    let listed = listed_of(&kept, &refused_keys);
    let mut rows = carried(prev_rows, prev_end, v, &listed, &refused_keys);
    rows.extend(kept);
    Materialised {
        rows,
        refused,
        findings,
    }
}
