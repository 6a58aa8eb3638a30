//! Throughput of the pass-through pipeline (calls/s and events/s from the
//! first publish to the last call visible in ClickHouse). Ignored in the
//! default test run; `make bench` runs it next to the broker's raw rate.

use std::time::{Duration, Instant};

use cdr_e2e::*;
use cdrctl::simulate::{generate, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with make bench"]
async fn pipeline_throughput() {
    let _g = stack();
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let run = unique_run("bench");
    let cfg = SimConfig {
        calls,
        seed: 3,
        run_id: run.clone(),
        malformed_pct: 0.5,
        start_ms: cdr_kafka::now_ms() - 7_200_000,
        ..Default::default()
    };
    let (msgs, expected) = generate(&cfg);
    let started = Instant::now();
    let publish = cdrctl::publish(&kafka(), &msgs, 0).await.expect("publish");
    let r = wait_for(&run, expected.calls as u64, 0, Duration::from_secs(1800)).await;
    let took = started.elapsed().as_secs_f64() - 3.0; // wait_for settles 3 s after the last row
    assert_eq!(r.calls as usize, expected.calls);
    println!(
        "pipeline: {} calls / {} events in {:.1}s -> {:.0} calls/s, {:.0} events/s (publish alone {:.1}s)",
        expected.calls,
        expected.events,
        took,
        expected.calls as f64 / took,
        expected.events as f64 / took,
        publish.as_secs_f64()
    );
}
