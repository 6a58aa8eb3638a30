//! End-to-end wholesale conformance (seed 000): an account with ASR 40% and
//! one with ACD 45 s over the minimum sample are downgraded once, at a
//! minute boundary of their own event time, their
//! calls before the decision rated wholesale and after it retail; a
//! conforming account and one under the minimum sample are never touched.
//!
//! Runs on its own `Pipeline` (topics, groups and service instances of its
//! own): the shared rater's partition clocks and windows carry other
//! tests' traffic, whose later event times would make this test's calls
//! (set up up to 150 minutes ago) late for its conformance monitor.

use std::time::{Duration, Instant};

use cdr_e2e::*;
use clickhouse::Row;
use serde::Deserialize;

#[derive(Row, Deserialize, Debug)]
struct Change {
    account_id: String,
    decided_at_ms: i64,
    asr: Option<f64>,
    acd_s: Option<f64>,
    sample_seizures: u64,
    reason: String,
}

#[derive(Row, Deserialize, Debug)]
struct Rated {
    account_id: String,
    answer_ts: Option<i64>,
    plan: Option<String>,
    rating_flags: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_conforming_wholesale_accounts_are_downgraded_once() {
    let _g = stack();
    let pl = Pipeline::start(
        "conf",
        &["assembler", "enricher", "rater", "detector", "sink"],
    );
    let ch = clickhouse().client();
    let run = unique_run("conf");
    let now = cdr_kafka::now_ms();
    // Setups over 140 minutes from now-150 min (talk <= 5 min, so every
    // call has ended). The monitor judges the calls set up more than an
    // hour (settle) before each minute boundary its clock passes, so the
    // decision falls about an hour and a half into the traffic and the
    // later calls show the switch. Every earlier decision for these
    // accounts must precede the reset below, or it would still be in force.
    let start = now - 150 * 60_000;
    let reset_at = start - 1_000;
    // A group of accounts no earlier run touched after `reset_at`.
    let mut group = None;
    for g in cdrctl::scenarios::CONFORMANCE_GROUPS {
        let prev: i64 = ch
            .query("SELECT toInt64(max(toUnixTimestamp64Milli(decided_at))) FROM account_plan_changes WHERE has(?, account_id)")
            .bind(g.to_vec())
            .fetch_one()
            .await
            .unwrap_or(0);
        if prev < reset_at {
            group = Some(g);
            break;
        }
    }
    let g = group
        .expect("every account group has a decision after this run's reset: re-run once an earlier run is 150 minutes old");
    // Operator reset to wholesale (the same path `cdrctl account set-plan` takes).
    for a in g {
        let c = cdrctl::control::plan_change(a, "wholesale", "e2e reset", "e2e", reset_at).unwrap();
        cdrctl::control::publish_plan_change(&pl.kafka(), &c)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (msgs, truth) = cdrctl::scenarios::conformance(&run, 5, start, 140, 400, g);
    cdrctl::publish(&pl.kafka(), &msgs, 0)
        .await
        .expect("publish");

    // Phase 1 rated and the decisions mirrored.
    let fetch_changes = || async {
        ch.query("SELECT account_id, toUnixTimestamp64Milli(decided_at) AS decided_at_ms, asr, acd_s, sample_seizures, reason FROM account_plan_changes FINAL WHERE source = 'auto' AND toUnixTimestamp64Milli(decided_at) > ? AND has(?, account_id) ORDER BY decided_at_ms")
            .bind(reset_at)
            .bind(g.to_vec())
            .fetch_all::<Change>()
            .await
            .unwrap_or_default()
    };
    let fetch_rated = || async {
        ch.query("SELECT account_id, toUnixTimestamp64Milli(answer_ts) AS answer_ts, plan, rating_flags FROM rated_cdrs_final WHERE call_id LIKE ?")
            .bind(format!("{run}-%"))
            .fetch_all::<Rated>()
            .await
            .unwrap_or_default()
    };
    let started = Instant::now();
    let first = loop {
        let rated = fetch_rated().await;
        let changes = fetch_changes().await;
        if rated.len() >= truth.calls && changes.len() >= 2 {
            break changes;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "{} of {} calls rated, changes {changes:?}",
            rated.len(),
            truth.calls
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Phase 2: traffic set up after the decisions (switches keep sending
    // it), which must be rated retail for the downgraded accounts and stay
    // wholesale for the others.
    let decided = first.iter().map(|c| c.decided_at_ms).max().unwrap();
    let mut specs = Vec::new();
    for (k, acct) in g.iter().enumerate().take(3) {
        for i in 0..30 {
            specs.push(cdrctl::scenarios::CallSpec {
                call_id: format!("{run}-late-{acct}-{i:03}"),
                account: acct.to_string(),
                trunk: "trk-1".into(),
                cli: "+12125550100".into(),
                dialed: "4930123456".into(),
                setup_ms: decided + 60_000 + (i * 3 + k as i64) * 1_000,
                pdd_ms: Some(2_000),
                answer_after_ms: Some(9_000),
                talk_ms: 90_000,
                fail_code: 0,
                silence_ratio: 0.2,
                rtp_rx_packets: 4_500,
                rtp_rx_before_answer: 0,
            });
        }
    }
    let mut late: Vec<_> = specs.iter().flat_map(cdrctl::scenarios::events).collect();
    late.sort_by_key(|m| m.ts_ms);
    cdrctl::publish(&pl.kafka(), &late, 0)
        .await
        .expect("publish");
    let rated = loop {
        let rated = fetch_rated().await;
        if rated.len() >= truth.calls + specs.len() {
            tokio::time::sleep(Duration::from_secs(3)).await;
            break fetch_rated().await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(360),
            "{} of {} calls rated",
            rated.len(),
            truth.calls + specs.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let changes: Vec<Change> = ch
        .query("SELECT account_id, toUnixTimestamp64Milli(decided_at) AS decided_at_ms, asr, acd_s, sample_seizures, reason FROM account_plan_changes FINAL WHERE source = 'auto' AND toUnixTimestamp64Milli(decided_at) > ? AND has(?, account_id) ORDER BY decided_at_ms")
        .bind(reset_at)
        .bind(g.to_vec())
        .fetch_all()
        .await
        .unwrap();
    assert!(rated.len() >= truth.calls);
    let of = |a: &str| {
        changes
            .iter()
            .filter(|c| c.account_id == a)
            .collect::<Vec<_>>()
    };
    let low_asr = of(g[0]);
    assert_eq!(low_asr.len(), 1, "downgraded exactly once: {changes:?}");
    assert!(
        low_asr[0].asr.unwrap() <= 0.5 && low_asr[0].sample_seizures >= 100,
        "{low_asr:?}"
    );
    assert!(low_asr[0].reason.contains("ASR"), "{}", low_asr[0].reason);
    let low_acd = of(g[1]);
    assert_eq!(low_acd.len(), 1, "{changes:?}");
    assert!(low_acd[0].acd_s.unwrap() <= 60.0, "{low_acd:?}");
    // Decisions take effect at a minute boundary plus the lateness (120 s):
    // a function of the calls, not of when the rater saw them.
    for c in [low_asr[0], low_acd[0]] {
        assert_eq!(c.decided_at_ms % 60_000, 0, "{c:?}");
    }
    assert!(
        of(g[2]).is_empty(),
        "conforming account touched: {changes:?}"
    );
    assert!(
        of(g[3]).is_empty(),
        "account under the minimum sample touched: {changes:?}"
    );

    for (acct, decided) in [
        (g[0], low_asr[0].decided_at_ms),
        (g[1], low_acd[0].decided_at_ms),
    ] {
        let (mut before, mut after) = (0, 0);
        for r in rated.iter().filter(|r| r.account_id == acct) {
            let Some(a) = r.answer_ts else { continue };
            if a < decided {
                before += 1;
                assert_eq!(
                    r.plan.as_deref(),
                    Some("standard"),
                    "{acct} answered before the decision: {r:?}"
                );
            } else {
                after += 1;
                assert_eq!(
                    r.plan.as_deref(),
                    Some("retail"),
                    "{acct} answered after the decision: {r:?}"
                );
                assert!(
                    r.rating_flags.iter().any(|f| f == "downgraded_to_retail"),
                    "{r:?}"
                );
            }
        }
        assert!(
            before >= 20 && after >= 5,
            "{acct}: {before} calls before, {after} after"
        );
    }
    for r in rated
        .iter()
        .filter(|r| r.account_id == g[2] && r.answer_ts.is_some())
    {
        assert_eq!(r.plan.as_deref(), Some("standard"), "{r:?}");
    }
}
