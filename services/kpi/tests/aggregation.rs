//! KPI bucketing: counts equal the raw calls, replays rebuild identical
//! buckets, late CDRs open a new row instead of corrupting a final one.

use std::collections::HashMap;

use cdr_model::call::{AssembledCall, Enrichment, KpiMinute, RatedCdr, Rating};
use kpi::core::{KpiAggregator, KpiConfig};
use proptest::prelude::*;

const T0: i64 = 1_790_000_000_000 - (1_790_000_000_000 % 60_000);

fn cdr(i: usize, disp: &str, end_offset_ms: i64, dur_ms: i64, acct: &str) -> RatedCdr {
    RatedCdr {
        call: AssembledCall {
            cdr_id: format!("id{i}"),
            call_id: format!("c{i}"),
            switch_id: "sw".into(),
            account_id: acct.into(),
            direction: "outbound".into(),
            cli: None,
            dialed: "4420".into(),
            trunk_id: Some("t1".into()),
            setup_ts_ms: T0 + end_offset_ms - dur_ms - 5000,
            progress_ts_ms: Some(T0 + end_offset_ms - dur_ms - 4000),
            progress_code: Some(180),
            answer_ts_ms: (disp == "answered").then_some(T0 + end_offset_ms - dur_ms),
            end_ts_ms: Some(T0 + end_offset_ms),
            final_sip_code: Some(200),
            disposition: disp.into(),
            duration_ms: if disp == "answered" { dur_ms } else { 0 },
            billable_seconds: if disp == "answered" {
                (dur_ms + 999) / 1000
            } else {
                0
            },
            pdd_ms: Some(1000),
            headers: Default::default(),
            source_ip: None,
            behind_nat: false,
            codec: None,
            media: None,
            flags: vec![],
            event_count: 4,
            assembled_at_ms: 0,
        },
        enrichment: Enrichment::default(),
        rating: Rating {
            amount: "0.001".into(),
            billed_seconds: (dur_ms + 999) / 1000,
            ..Default::default()
        },
        detection: None,
    }
}

fn latest(rows: &[KpiMinute]) -> HashMap<String, KpiMinute> {
    let mut m: HashMap<String, KpiMinute> = HashMap::new();
    for r in rows {
        let e = m.entry(r.bucket_id.clone()).or_insert_with(|| r.clone());
        if r.version >= e.version {
            *e = r.clone();
        }
    }
    m
}

proptest! {
    #[test]
    fn bucket_totals_equal_raw_calls(calls in proptest::collection::vec((0usize..5, 0i64..600_000, 0i64..300_000, 0usize..2), 1..200)) {
        let disps = ["answered", "busy", "no_answer", "failed", "cancelled"];
        let mut agg = KpiAggregator::new(KpiConfig::default());
        let mut rows = Vec::new();
        let (mut answered, mut answered_ms, mut short) = (0, 0, 0);
        for (i, (d, end, dur, a)) in calls.iter().enumerate() {
            let c = cdr(i, disps[*d], *end, *dur, ["a1", "a2"][*a]);
            if *d == 0 { answered += 1; answered_ms += dur; if *dur < 6000 { short += 1; } }
            agg.add(&c, 0, i as i64, 0);
            if i % 17 == 0 { rows.extend(agg.flush(0)); }
        }
        rows.extend(agg.flush(0));
        let final_rows = latest(&rows);
        let seizures: i64 = final_rows.values().map(|r| r.seizures).sum();
        prop_assert_eq!(seizures as usize, calls.len());
        prop_assert_eq!(final_rows.values().map(|r| r.answered).sum::<i64>(), answered);
        prop_assert_eq!(final_rows.values().map(|r| r.answered_ms).sum::<i64>(), answered_ms);
        prop_assert_eq!(final_rows.values().map(|r| r.short_calls).sum::<i64>(), short);
        for r in final_rows.values() {
            prop_assert_eq!(r.seizures, r.answered + r.busy + r.no_answer + r.failed + r.cancelled + r.stale);
            prop_assert_eq!(r.minute_ms % 60_000, 0);
        }
    }
}

#[test]
fn replay_from_commit_rebuilds_identical_buckets() {
    let mut a = KpiAggregator::new(KpiConfig::default());
    let cdrs: Vec<RatedCdr> = (0..10)
        .map(|i| cdr(i, "answered", (i as i64) * 1000, 30_000, "a1"))
        .collect();
    for (i, c) in cdrs.iter().enumerate() {
        a.add(c, 0, i as i64, 0);
    }
    let first = latest(&a.flush(0));
    let c = *a.committable().get(&0).unwrap();
    assert_eq!(
        c, 0,
        "bucket still open: commit must not move past its first CDR"
    );
    let mut b = KpiAggregator::new(KpiConfig::default());
    for (i, cdr) in cdrs.iter().enumerate().skip(c as usize) {
        b.add(cdr, 0, i as i64, 0);
    }
    assert_eq!(latest(&b.flush(0)), first);
}

#[test]
fn late_cdr_after_finalisation_opens_a_new_row() {
    let cfg = KpiConfig {
        lateness_ms: 1000,
        retention_ms: 1_000_000,
        short_call_ms: 6000,
    };
    let mut a = KpiAggregator::new(cfg);
    a.add(&cdr(0, "answered", 1000, 10_000, "a1"), 0, 0, 0);
    a.add(&cdr(1, "busy", 200_000, 0, "a1"), 0, 1, 0); // moves event time 3 minutes on
    let r1 = latest(&a.flush(0));
    a.add(&cdr(2, "answered", 2000, 10_000, "a1"), 0, 2, 0); // late for minute 0
    let r2 = latest(&a.flush(0));
    let minute0: Vec<_> = r2.values().filter(|r| r.minute_ms == T0).collect();
    assert_eq!(
        minute0.len(),
        1,
        "only the new late row changed in this flush"
    );
    let all: HashMap<_, _> = r1.into_iter().chain(r2).collect();
    let total_m0: i64 = all
        .values()
        .filter(|r| r.minute_ms == T0)
        .map(|r| r.seizures)
        .sum();
    assert_eq!(total_m0, 2, "both CDRs of minute 0 counted once: {all:?}");
}
