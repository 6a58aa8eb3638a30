//! Deck comparison: what a new deck changes for the customer.
//!
//! Owns [`diff`], [`DeckDiff`], [`RateChange`] and the notice rule for
//! increases. A change is judged on the price a customer pays, not on one
//! column: the rate(s), the increment, the billed minimum, the connection
//! fee and the short-duration surcharge all count, and so does a price
//! change that comes only from prefix shadowing (a new longer prefix priced
//! above the row that used to price its numbers, or a removed prefix whose
//! numbers fall back to a dearer shorter one).

use crate::deck::{DeckRow, ObrTier};
use crate::prefix::Prefix;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Default notice period for rate increases (industry practice: 7 days).
pub fn default_notice() -> Duration {
    Duration::days(7)
}

/// A price change between two decks for one prefix/trunk/tier.
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
    /// Every price term that changed, as `term old -> new` (rate,
    /// rate_intrastate, increment, min_billed_seconds, connection_fee,
    /// short_surcharge).
    pub terms: Vec<String>,
    /// Set when the change comes from prefix shadowing: for an added
    /// prefix, the old row that priced its numbers; for a removed one, the
    /// new row that prices them now.
    pub via_prefix: Option<Prefix>,
    /// When the new price applies (`None` = immediately).
    pub effective_from: Option<DateTime<Utc>>,
    /// An increase effective less than the notice period after the deck
    /// was announced.
    pub short_notice: bool,
}

/// Differences between two decks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeckDiff {
    /// Prefixes only the new deck has.
    pub added: Vec<DeckRow>,
    /// Prefixes only the old deck has.
    pub removed: Vec<DeckRow>,
    /// Some term costs more (a change that raises one term and lowers
    /// another is listed here: the customer may pay more).
    pub increased: Vec<RateChange>,
    /// Some term costs less and none more.
    pub decreased: Vec<RateChange>,
    pub unchanged: usize,
}

impl DeckDiff {
    /// Increases that violate the notice period.
    pub fn short_notice(&self) -> impl Iterator<Item = &RateChange> {
        self.increased.iter().filter(|c| c.short_notice)
    }
}

/// Identity of a deck line across versions.
pub(crate) type RowKey = (Prefix, Option<u32>, Option<ObrTier>);

pub(crate) fn row_key(r: &DeckRow) -> RowKey {
    (r.prefix, r.trunk, r.obr_tier)
}

fn latest_by_key(rows: &[DeckRow]) -> BTreeMap<RowKey, &DeckRow> {
    let mut m: BTreeMap<RowKey, &DeckRow> = BTreeMap::new();
    for r in rows {
        // With dated rows for one code, compare the newest (where the deck
        // is heading), which is what the notice rule is about.
        match m.get(&row_key(r)) {
            Some(o) if o.effective_from >= r.effective_from => {}
            _ => {
                m.insert(row_key(r), r);
            }
        }
    }
    m
}

/// The row that prices the numbers under `r.prefix` in `deck` when `deck`
/// has no row of its own for that key: the longest shorter prefix of the
/// same trunk, in the same OBR tier or untiered.
fn covering<'a>(deck: &BTreeMap<RowKey, &'a DeckRow>, r: &DeckRow) -> Option<&'a DeckRow> {
    (1..r.prefix.len()).rev().find_map(|len| {
        let q = r.prefix.truncate(len)?;
        deck.get(&(q, r.trunk, r.obr_tier))
            .or_else(|| deck.get(&(q, r.trunk, None)))
            .copied()
    })
}

/// Two parts of one price term: dearer when either part is (a mixed
/// change costs some calls more), cheaper when one is and none is dearer.
fn costlier(a: std::cmp::Ordering, b: std::cmp::Ordering) -> std::cmp::Ordering {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match (a, b) {
        (Greater, _) | (_, Greater) => Greater,
        (Equal, Equal) => Equal,
        _ => Less,
    }
}

/// How `new` prices against `old`: (costs more somewhere, costs less
/// somewhere, the terms that changed).
fn compare(old: &DeckRow, new: &DeckRow) -> (bool, bool, Vec<String>) {
    let mut up = false;
    let mut down = false;
    let mut terms = Vec::new();
    let mut term = |name: &str, o: String, n: String, ord: std::cmp::Ordering| {
        if o != n {
            terms.push(format!("{name} {o} -> {n}"));
        }
        match ord {
            std::cmp::Ordering::Greater => up = true,
            std::cmp::Ordering::Less => down = true,
            std::cmp::Ordering::Equal => {}
        }
    };
    term(
        "rate",
        old.rate.to_string(),
        new.rate.to_string(),
        new.rate.cmp(&old.rate),
    );
    // A US48 row without an intrastate rate bills its one rate either way.
    let (oi, ni) = (
        old.rate_intrastate.unwrap_or(old.rate),
        new.rate_intrastate.unwrap_or(new.rate),
    );
    if old.rate_intrastate.is_some() || new.rate_intrastate.is_some() {
        term(
            "rate_intrastate",
            oi.to_string(),
            ni.to_string(),
            ni.cmp(&oi),
        );
    }
    let (oinc, ninc) = (old.increment, new.increment);
    // A longer first period or a longer step bills more seconds; both
    // moving in opposite directions is a mixed change (listed as an
    // increase, since some calls pay more).
    let inc_ord = costlier(ninc.initial.cmp(&oinc.initial), ninc.step.cmp(&oinc.step));
    term("increment", oinc.to_string(), ninc.to_string(), inc_ord);
    term(
        "min_billed_seconds",
        old.min_billed_seconds.to_string(),
        new.min_billed_seconds.to_string(),
        new.min_billed_seconds.cmp(&old.min_billed_seconds),
    );
    term(
        "connection_fee",
        old.connection_fee.to_string(),
        new.connection_fee.to_string(),
        new.connection_fee.cmp(&old.connection_fee),
    );
    // The surcharge costs its amount on calls under the threshold: a larger
    // amount or a higher threshold (more calls under it) costs more.
    let short = |r: &DeckRow| {
        if r.short_surcharge.is_zero() {
            (Decimal::ZERO, 0)
        } else {
            (r.short_surcharge, r.short_threshold_s)
        }
    };
    let (os, ns) = (short(old), short(new));
    let short_ord = costlier(ns.0.cmp(&os.0), ns.1.cmp(&os.1));
    term(
        "short_surcharge",
        format!("{} (<{} s)", os.0, os.1),
        format!("{} (<{} s)", ns.0, ns.1),
        short_ord,
    );
    (up, down, terms)
}

/// Compare two decks row by row (keyed by prefix, trunk and OBR tier),
/// with the new deck announced at `now`: rows without a date apply at once.
/// See [`diff_at`].
pub fn diff(old: &[DeckRow], new: &[DeckRow], notice: Duration, now: DateTime<Utc>) -> DeckDiff {
    diff_at(old, new, notice, now, now)
}

/// Compare two decks: announced at `notified_at`, in force from `starts_at`
/// (the date of rows that carry none).
///
/// A key in both decks is *increased* when any price term costs more,
/// *decreased* when one costs less and none more. An added prefix is also
/// compared with the old row that priced its numbers, and a removed one
/// with the new row that prices them now (`via_prefix`): price changes
/// through shadowing count like any other. Increases whose date is less
/// than `notice` after `notified_at` are `short_notice`; decreases may
/// apply at once and are never flagged. Output is sorted by prefix.
pub fn diff_at(
    old: &[DeckRow],
    new: &[DeckRow],
    notice: Duration,
    notified_at: DateTime<Utc>,
    starts_at: DateTime<Utc>,
) -> DeckDiff {
    let o = latest_by_key(old);
    let n = latest_by_key(new);
    let mut d = DeckDiff::default();
    let record = |d: &mut DeckDiff, or: &DeckRow, nr: &DeckRow, via: Option<Prefix>, at| {
        let (up, down, terms) = compare(or, nr);
        if !up && !down {
            return false;
        }
        let eff: Option<DateTime<Utc>> = at;
        // The key the change is about: the removed row's when a removal
        // lets a shorter prefix price its numbers, else the new row's.
        let subject = if via.is_some() && nr.prefix.len() < or.prefix.len() {
            or
        } else {
            nr
        };
        let change = RateChange {
            prefix: subject.prefix,
            destination: subject.destination.clone(),
            trunk: subject.trunk,
            obr_tier: subject.obr_tier,
            old_rate: or.rate,
            new_rate: nr.rate,
            old_rate_intrastate: or.rate_intrastate,
            new_rate_intrastate: nr.rate_intrastate,
            terms,
            via_prefix: via,
            effective_from: eff,
            short_notice: up && eff.unwrap_or(starts_at).max(starts_at) - notified_at < notice,
        };
        if up {
            d.increased.push(change);
        } else {
            d.decreased.push(change);
        }
        true
    };
    for (k, nr) in &n {
        match o.get(k) {
            Some(or) => {
                if !record(&mut d, or, nr, None, nr.effective_from) {
                    d.unchanged += 1;
                }
            }
            None => {
                d.added.push((*nr).clone());
                if let Some(or) = covering(&o, nr) {
                    record(&mut d, or, nr, Some(or.prefix), nr.effective_from);
                }
            }
        }
    }
    for (k, or) in &o {
        if !n.contains_key(k) {
            d.removed.push((*or).clone());
            if let Some(nr) = covering(&n, or) {
                // The removal applies when the new deck does.
                record(&mut d, or, nr, Some(nr.prefix), None);
            }
        }
    }
    let by_prefix = |c: &RateChange| (c.prefix, c.trunk, c.obr_tier);
    d.increased.sort_by_key(by_prefix);
    d.decreased.sort_by_key(by_prefix);
    d
}
