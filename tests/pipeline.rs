//! End-to-end: simulated switch traffic through every service into
//! ClickHouse, with duplicates, reordering and malformed messages; then the
//! same with services killed -9 mid-stream.

use std::collections::BTreeMap;
use std::time::Duration;

use cdr_e2e::*;
use cdrctl::simulate::{generate, SimConfig};

fn as_map(v: &[cdrctl::report::Count]) -> BTreeMap<String, usize> {
    v.iter().map(|c| (c.label.clone(), c.n as usize)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_exactly_the_expected_calls_and_dead_letters() {
    let _g = stack();
    let run = unique_run("e2e");
    let cfg = SimConfig {
        calls: 1500,
        seed: 7,
        run_id: run.clone(),
        malformed_pct: 3.0,
        start_ms: cdr_kafka::now_ms() - 7_200_000,
        ..Default::default()
    };
    let (msgs, expected) = generate(&cfg);
    assert!(
        expected.dead_letters > 10,
        "scenario must include malformed messages"
    );
    cdrctl::publish(&kafka(), &msgs, 0).await.expect("publish");
    let r = wait_for(
        &run,
        expected.calls as u64,
        expected.dead_letters as u64,
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(r.calls as usize, expected.calls, "{r}");
    assert_eq!(as_map(&r.by_disposition), expected.by_disposition, "{r}");
    assert_eq!(
        r.answered_seconds, expected.answered_seconds,
        "billed from answer to hangup only"
    );
    assert_eq!(as_map(&r.dead_by_reason), expected.dead_by_reason, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_stream_loses_nothing_and_doubles_nothing() {
    let _g = stack();
    // Its own pipeline: the kills must not disturb the other tests.
    let pl = Pipeline::start(
        "crash",
        &["assembler", "enricher", "rater", "detector", "kpi", "sink"],
    );
    let run = unique_run("crash");
    let cfg = SimConfig {
        calls: 3000,
        seed: 11,
        run_id: run.clone(),
        malformed_pct: 1.0,
        start_ms: cdr_kafka::now_ms() - 7_200_000,
        ..Default::default()
    };
    let (msgs, expected) = generate(&cfg);
    let kafka = pl.kafka();
    let publisher = tokio::spawn(async move { cdrctl::publish(&kafka, &msgs, 2500).await });
    // Kill stages while traffic flows, at different points, then restart them.
    for (after, svc) in [
        (1500, "assembler"),
        (1000, "sink"),
        (800, "enricher"),
        (700, "kpi"),
    ] {
        tokio::time::sleep(Duration::from_millis(after)).await;
        pl.kill9(svc);
        tokio::time::sleep(Duration::from_millis(300)).await;
        pl.restart(svc);
    }
    publisher.await.unwrap().expect("publish");
    let r = wait_for(
        &run,
        expected.calls as u64,
        expected.dead_letters as u64,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(
        r.calls as usize, expected.calls,
        "finance view must hold exactly N calls\n{r}"
    );
    assert_eq!(as_map(&r.by_disposition), expected.by_disposition, "{r}");
    assert_eq!(r.answered_seconds, expected.answered_seconds);
    assert_eq!(as_map(&r.dead_by_reason), expected.dead_by_reason, "{r}");
    assert!(
        r.raw_rows >= r.calls,
        "raw rows {} < calls {}",
        r.raw_rows,
        r.calls
    );
}
