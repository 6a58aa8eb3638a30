//! Pure KPI aggregation: folds scored CDRs into per-minute buckets (minute of
//! hangup, or of setup for calls that never ended) per account × trunk ×
//! destination, and decides which input offsets may be committed.
//!
//! A bucket's identity includes the input partition and the offset of its
//! first CDR, so a replay from a committed offset rebuilds exactly the same
//! bucket (same id, same content) and ClickHouse collapses the copies; a CDR
//! arriving after its minute was finalised opens a new bucket row for that
//! minute instead of corrupting the old one. Dashboards sum rows per minute.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use cdr_model::call::{KpiMinute, RatedCdr};
use cdr_model::ids::bucket_id;
use cdr_model::offsets::PartitionTracker;
use rust_decimal::Decimal;

#[derive(Debug, Clone)]
pub struct KpiConfig {
    /// A minute is final once the partition's event time passed its end by this much.
    pub lateness_ms: i64,
    /// Finalised buckets are remembered this long (wall clock) before being forgotten.
    pub retention_ms: i64,
    /// Answered calls shorter than this count as short calls.
    pub short_call_ms: i64,
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            lateness_ms: 120_000,
            retention_ms: 60_000,
            short_call_ms: 6_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    minute_ms: i64,
    account: String,
    trunk: String,
    destination: String,
}

struct Bucket {
    id_key: u64,
    first_offset: i64,
    last_offset: i64,
    agg: KpiMinute,
    acc: Exact,
    dirty: bool,
    finalised_at_wall: Option<i64>,
}

/// The minute a CDR counts in: its hangup minute, else its setup minute.
pub fn minute_of(cdr: &RatedCdr) -> i64 {
    let t = cdr.call.end_ts_ms.unwrap_or(cdr.call.setup_ts_ms);
    t - t.rem_euclid(60_000)
}

/// Final SIP answers that mean the network delivered the call to the far
/// end, which rejected it (number gone, address incomplete, busy or
/// declined everywhere). With answered, user busy and ring-no-answer they
/// make up the NER numerator (ITU-T E.425 / GSMA IR.42); network failures
/// (5xx, 408) and caller abandons (487) do not.
pub const TERMINAL_REJECTIONS: &[i32] = &[404, 410, 484, 485, 600, 603, 604];

/// The parts of a bucket kept exactly and finished at flush: money in
/// `Decimal`, PDDs for the bucket's p95.
#[derive(Debug, Clone, Default)]
pub struct Exact {
    pub amount: Decimal,
    pub lrn_fee: Decimal,
    pub pdds: Vec<i64>,
}

impl Exact {
    /// Writes the exact parts into the record.
    pub fn finish(&self, agg: &mut KpiMinute) {
        agg.amount = self.amount.normalize().to_string();
        agg.lrn_fee = self.lrn_fee.normalize().to_string();
        agg.pdd_p95_ms = p95(&self.pdds);
    }
}

/// Nearest-rank 95th percentile (0 for no samples).
pub fn p95(values: &[i64]) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = (v.len() * 95).div_ceil(100);
    v[rank.max(1) - 1]
}

/// Whether a call counts towards NER.
pub fn ner_ok(cdr: &RatedCdr) -> bool {
    match cdr.call.disposition.as_str() {
        "answered" | "busy" | "no_answer" => true,
        "failed" => cdr
            .call
            .final_sip_code
            .is_some_and(|c| TERMINAL_REJECTIONS.contains(&c)),
        _ => false,
    }
}

/// Adds one CDR to a bucket's counters.
pub fn fold(agg: &mut KpiMinute, acc: &mut Exact, cdr: &RatedCdr, short_call_ms: i64) {
    let c = &cdr.call;
    agg.seizures += 1;
    if ner_ok(cdr) {
        agg.ner_ok += 1;
    }
    if let Some(m) = &c.media {
        if let Some(v) = m.mos {
            agg.mos_sum += v;
            agg.mos_count += 1;
        }
        if let Some(v) = m.jitter_ms {
            agg.jitter_sum += v;
            agg.jitter_count += 1;
        }
        if let Some(v) = m.loss_pct {
            agg.loss_sum += v;
            agg.loss_count += 1;
        }
    }
    acc.lrn_fee += Decimal::from_str(&cdr.rating.lrn_fee).unwrap_or_default();
    match c.disposition.as_str() {
        "answered" => {
            agg.answered += 1;
            agg.answered_ms += c.duration_ms;
            if c.duration_ms < short_call_ms {
                agg.short_calls += 1;
            }
        }
        "busy" => agg.busy += 1,
        "no_answer" => agg.no_answer += 1,
        "cancelled" => agg.cancelled += 1,
        "stale" => agg.stale += 1,
        _ => agg.failed += 1,
    }
    if let Some(p) = c.pdd_ms {
        agg.pdd_sum_ms += p;
        agg.pdd_count += 1;
        acc.pdds.push(p);
    }
    agg.billed_seconds += cdr.rating.billed_seconds;
    acc.amount += Decimal::from_str(&cdr.rating.amount).unwrap_or_default();
    agg.version = agg.seizures;
}

pub struct KpiAggregator {
    cfg: KpiConfig,
    buckets: HashMap<(i32, Key), Bucket>,
    trackers: BTreeMap<i32, PartitionTracker>,
    watermarks: BTreeMap<i32, (i64, i64)>,
    /// Finalised buckets replaced by a late row: (partition, unit key, when).
    retired: Vec<(i32, u64, i64)>,
    next_key: u64,
}

impl KpiAggregator {
    pub fn new(cfg: KpiConfig) -> Self {
        KpiAggregator {
            cfg,
            buckets: HashMap::new(),
            trackers: BTreeMap::new(),
            watermarks: BTreeMap::new(),
            retired: Vec::new(),
            next_key: 0,
        }
    }

    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    pub fn add(&mut self, cdr: &RatedCdr, partition: i32, offset: i64, wall_ms: i64) {
        let t = cdr.call.end_ts_ms.unwrap_or(cdr.call.setup_ts_ms);
        let wm = self.watermarks.entry(partition).or_insert((t, wall_ms));
        if t > wm.0 {
            *wm = (t, wall_ms);
        }
        let key = Key {
            minute_ms: minute_of(cdr),
            account: cdr.call.account_id.clone(),
            trunk: cdr.call.trunk_id.clone().unwrap_or_default(),
            destination: cdr
                .rating
                .destination
                .clone()
                .unwrap_or_else(|| "unrated".to_string()),
        };
        let tracker = self.trackers.entry(partition).or_default();
        let entry = self.buckets.entry((partition, key.clone()));
        let b = match entry {
            std::collections::hash_map::Entry::Occupied(o)
                if o.get().finalised_at_wall.is_none() =>
            {
                o.into_mut()
            }
            e => {
                // New bucket, or the old one is final: a late CDR starts a new
                // row. The old bucket's interval stays tracked until committed.
                if let std::collections::hash_map::Entry::Occupied(o) = &e {
                    self.retired.push((partition, o.get().id_key, wall_ms));
                }
                let id_key = self.next_key;
                self.next_key += 1;
                let agg = KpiMinute {
                    bucket_id: bucket_id(&[
                        &partition.to_string(),
                        &offset.to_string(),
                        &key.minute_ms.to_string(),
                        &key.account,
                        &key.trunk,
                        &key.destination,
                    ]),
                    minute_ms: key.minute_ms,
                    account_id: key.account.clone(),
                    trunk_id: key.trunk.clone(),
                    destination: key.destination.clone(),
                    amount: "0".into(),
                    lrn_fee: "0".into(),
                    ..Default::default()
                };
                let b = Bucket {
                    id_key,
                    first_offset: offset,
                    last_offset: offset,
                    agg,
                    acc: Exact::default(),
                    dirty: false,
                    finalised_at_wall: None,
                };
                match e {
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        o.insert(b);
                        o.into_mut()
                    }
                    std::collections::hash_map::Entry::Vacant(v) => v.insert(b),
                }
            }
        };
        tracker.touch(b.id_key, offset, true);
        b.last_offset = b.last_offset.max(offset);
        debug_assert!(b.first_offset <= b.last_offset);
        fold(&mut b.agg, &mut b.acc, cdr, self.cfg.short_call_ms);
        b.dirty = true;
    }

    /// Returns every bucket that changed since the last flush (its full
    /// cumulative content), finalises minutes past the lateness, and forgets
    /// finalised buckets past the retention.
    pub fn flush(&mut self, wall_ms: i64) -> Vec<KpiMinute> {
        let mut out = Vec::new();
        let mut forget = Vec::new();
        for ((p, key), b) in self.buckets.iter_mut() {
            let wm = self
                .watermarks
                .get(p)
                .map(|(w, at)| w + (wall_ms - at).max(0))
                .unwrap_or(wall_ms);
            if b.dirty {
                let mut agg = b.agg.clone();
                b.acc.finish(&mut agg);
                out.push(agg);
                b.dirty = false;
            }
            match b.finalised_at_wall {
                None if wm >= key.minute_ms + 60_000 + self.cfg.lateness_ms => {
                    b.finalised_at_wall = Some(wall_ms);
                    self.trackers
                        .entry(*p)
                        .or_default()
                        .close(b.id_key, b.last_offset);
                }
                Some(at)
                    if wall_ms - at >= self.cfg.retention_ms
                        && self
                            .trackers
                            .get(p)
                            .is_some_and(|t| t.safely_committed(b.id_key)) =>
                {
                    forget.push((*p, key.clone()))
                }
                _ => {}
            }
        }
        for k in forget {
            if let Some(b) = self.buckets.remove(&k) {
                self.trackers.entry(k.0).or_default().forget(b.id_key);
            }
        }
        let trackers = &mut self.trackers;
        self.retired.retain(|(p, k, _)| {
            let t = trackers.entry(*p).or_default();
            if t.safely_committed(*k) {
                t.forget(*k);
                false
            } else {
                true
            }
        });
        out.sort_by(|a, b| a.bucket_id.cmp(&b.bucket_id));
        out
    }

    pub fn committed(&mut self, partition: i32, offset: i64) {
        self.trackers
            .entry(partition)
            .or_default()
            .mark_committed(offset);
    }

    pub fn seen(&mut self, partition: i32, offset: i64) {
        self.trackers.entry(partition).or_default().seen(offset);
    }

    pub fn revoke(&mut self, partition: i32) {
        self.buckets.retain(|(p, _), _| *p != partition);
        self.trackers.remove(&partition);
        self.watermarks.remove(&partition);
    }

    pub fn committable(&self) -> BTreeMap<i32, i64> {
        self.trackers
            .iter()
            .filter_map(|(p, t)| t.committable().map(|c| (*p, c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_nearest_rank() {
        assert_eq!(p95(&[]), 0);
        assert_eq!(p95(&[7]), 7);
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(p95(&v), 95);
        let v: Vec<i64> = (1..=20).rev().collect();
        assert_eq!(p95(&v), 19);
    }
}
