//! Which input offset may be committed when records are folded into state
//! that outlives a single message (assembler calls, KPI buckets).
//!
//! Each unit of state (a call, a bucket) covers an interval of input offsets
//! in one partition: `[first, last]`, with `last = ∞` while it is still open.
//! After a crash the consumer resumes at the committed offset `C`, so `C`
//! must never fall strictly inside an interval (`first < C <= last`):
//! otherwise the unit would be rebuilt from a suffix of its records. The
//! tracker therefore commits the largest `C <= next` that no interval
//! straddles. Units that are closed but still retained (to swallow late
//! duplicates) keep their interval so that a late duplicate re-read after a
//! restart is re-read together with the whole unit.

use std::collections::{BTreeMap, HashMap};

/// Per-partition interval bookkeeping, keyed by an opaque unit key.
#[derive(Debug, Default)]
pub struct PartitionTracker {
    /// `(first, key) -> last` (None = open).
    by_first: BTreeMap<(i64, u64), Option<i64>>,
    firsts: HashMap<u64, i64>,
    /// Offset after the last record handed to the tracker.
    next: Option<i64>,
    /// Last offset acknowledged as committed.
    committed: Option<i64>,
}

impl PartitionTracker {
    /// Records that `offset` was consumed (whether or not it joined a unit).
    pub fn seen(&mut self, offset: i64) {
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// Unit `key` received a record at `offset`; opens the unit if new.
    pub fn touch(&mut self, key: u64, offset: i64, open: bool) {
        self.seen(offset);
        match self.firsts.get(&key).copied() {
            None => {
                self.firsts.insert(key, offset);
                self.by_first
                    .insert((offset, key), if open { None } else { Some(offset) });
            }
            Some(first) => {
                let e = self.by_first.get_mut(&(first, key)).expect("tracked");
                if open {
                    *e = None;
                } else if let Some(l) = e {
                    *l = (*l).max(offset);
                }
            }
        }
    }

    /// Marks the unit closed: its interval ends at the largest offset it saw.
    pub fn close(&mut self, key: u64, last: i64) {
        if let Some(first) = self.firsts.get(&key) {
            self.by_first.insert((*first, key), Some(last));
        }
    }

    /// Forgets the unit entirely (retention over, or partition revoked).
    pub fn forget(&mut self, key: u64) {
        if let Some(first) = self.firsts.remove(&key) {
            self.by_first.remove(&(first, key));
        }
    }

    /// Records a successful commit of `offset`.
    pub fn mark_committed(&mut self, offset: i64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
    }

    /// True when the unit is closed and wholly before the committed offset:
    /// only then may it be forgotten, because a restart can no longer re-read
    /// any part of it.
    pub fn safely_committed(&self, key: u64) -> bool {
        let (Some(first), Some(c)) = (self.firsts.get(&key), self.committed) else {
            return false;
        };
        matches!(self.by_first.get(&(*first, key)), Some(Some(last)) if *last < c)
    }

    /// True while the tracker holds an interval for `key`.
    pub fn tracks(&self, key: u64) -> bool {
        self.firsts.contains_key(&key)
    }

    pub fn units(&self) -> usize {
        self.firsts.len()
    }

    /// The last offset acknowledged as committed.
    pub fn committed(&self) -> Option<i64> {
        self.committed
    }

    /// The first offset of the oldest open unit, or the next offset when
    /// none is open: the furthest a commit can reach while open units must
    /// be re-read whole. [`Self::committable`] reaches it once the closed
    /// units it would split ([`Self::splits`]) are forgotten.
    pub fn open_floor(&self) -> Option<i64> {
        let next = self.next?;
        let oldest_open = self
            .by_first
            .iter()
            .find(|(_, last)| last.is_none())
            .map(|((first, _), _)| *first);
        Some(oldest_open.map_or(next, |f| f.min(next)))
    }

    /// True when `key` is a closed unit that a commit at `at` would split
    /// (`first < at <= last`).
    pub fn splits(&self, key: u64, at: i64) -> bool {
        let Some(first) = self.firsts.get(&key) else {
            return false;
        };
        *first < at && matches!(self.by_first.get(&(*first, key)), Some(Some(last)) if *last >= at)
    }

    /// The offset safe to commit, or None before anything was consumed.
    pub fn committable(&self) -> Option<i64> {
        let mut c = self.next?;
        // Descending by first: once C moves down to a unit's first, units
        // already visited start at or after C and are re-read whole.
        for (&(first, _), &last) in self.by_first.iter().rev() {
            if first < c && last.is_none_or(|l| l >= c) {
                c = first;
            }
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn open_unit_holds_commit_back() {
        let mut t = PartitionTracker::default();
        t.touch(1, 5, true);
        t.touch(2, 6, true);
        t.close(2, 8);
        t.seen(9);
        assert_eq!(t.committable(), Some(5));
        t.close(1, 7);
        // unit 2 spans [6,8], unit 1 [5,7]: C=10 is safe.
        assert_eq!(t.committable(), Some(10));
    }

    #[test]
    fn forgetting_waits_for_the_commit() {
        let mut t = PartitionTracker::default();
        t.touch(1, 3, true);
        t.close(1, 4);
        assert!(!t.safely_committed(1));
        t.mark_committed(4);
        assert!(!t.safely_committed(1));
        t.mark_committed(5);
        assert!(t.safely_committed(1));
    }

    #[test]
    fn closed_unit_straddling_is_reread_whole() {
        let mut t = PartitionTracker::default();
        t.touch(1, 10, true); // A opens
        t.touch(2, 15, true); // B opens
        t.touch(1, 20, true);
        t.close(1, 20); // A closed [10,20]
                        // B open from 15 -> naive C=15 would cut A; tracker must return 10.
        assert_eq!(t.committable(), Some(10));
        t.forget(1);
        assert_eq!(t.committable(), Some(15));
    }

    #[test]
    fn forgetting_what_the_open_floor_splits_lets_the_commit_reach_it() {
        let mut t = PartitionTracker::default();
        t.touch(1, 10, true);
        t.touch(2, 15, true);
        t.touch(1, 20, true);
        t.close(1, 20);
        t.seen(30);
        assert_eq!(t.open_floor(), Some(15));
        assert!(t.splits(1, 15));
        assert!(
            !t.splits(2, 15),
            "open units are never split, they hold the floor"
        );
        t.forget(1);
        assert_eq!(t.committable(), Some(15));
        t.close(2, 25);
        assert_eq!(t.open_floor(), Some(31));
    }

    proptest! {
        /// Once every closed unit the open floor splits is forgotten, the
        /// commit reaches the open floor, and it never splits an open unit.
        #[test]
        fn cut_at_the_open_floor(units in proptest::collection::vec((0i64..200, 0i64..50, any::<bool>()), 1..30)) {
            let mut t = PartitionTracker::default();
            let mut opens = vec![];
            for (k, (first, len, open)) in units.iter().enumerate() {
                let k = k as u64;
                t.touch(k, *first, true);
                if *open { opens.push(*first); } else { t.close(k, first + len); }
                t.seen(first + len);
            }
            let floor = t.open_floor().unwrap();
            prop_assert!(opens.iter().all(|f| *f >= floor));
            let split: Vec<u64> = (0..units.len() as u64).filter(|k| t.splits(*k, floor)).collect();
            for k in split { t.forget(k); }
            prop_assert_eq!(t.committable(), Some(floor));
        }


        /// The committed offset never splits a unit, and is maximal among safe points.
        #[test]
        fn never_inside_an_interval(units in proptest::collection::vec((0i64..200, 0i64..50, any::<bool>()), 1..30)) {
            let mut t = PartitionTracker::default();
            let mut ivs = vec![];
            for (k, (first, len, open)) in units.iter().enumerate() {
                let k = k as u64;
                t.touch(k, *first, true);
                if !open { t.close(k, first + len); ivs.push((*first, Some(first + len))); } else { ivs.push((*first, None)); }
                t.seen(first + len);
            }
            let c = t.committable().unwrap();
            for (f, l) in &ivs {
                prop_assert!(!(*f < c && l.is_none_or(|l| l >= c)), "C={} inside [{},{:?}]", c, f, l);
            }
            // maximal: every larger candidate up to next is unsafe
            let next = t.next.unwrap();
            for cand in (c + 1)..=next {
                let safe = ivs.iter().all(|(f, l)| !(*f < cand && l.is_none_or(|l| l >= cand)));
                prop_assert!(!safe, "C={} but {} also safe", c, cand);
            }
        }
    }
}
