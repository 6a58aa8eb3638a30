//! Throughput of the pass-through pipeline (calls/s and events/s from the
//! first publish to the last call visible in ClickHouse), and what each
//! process spent: CPU-seconds from `/proc/<pid>/stat` (utime + stime)
//! before and after, and calls per CPU-second per service — the sizing
//! figure (calls/s one core sustains) in the README. Ignored in the default
//! test run; `make bench` runs it.
//!
//! In the same run it measures the broker's raw rate (produce, then
//! consume, of 300-byte records by one client) and counts what the pipeline
//! moved through the broker per call (records produced: the switch events
//! plus every service's `produced_total`; records consumed: every service's
//! `consumed_total`). The broker-bound ceiling is the call rate at which the
//! broker would do nothing but that traffic:
//! `1 / (produced per call / produce rate + consumed per call / consume rate)`.

use std::time::{Duration, Instant};

use cdr_e2e::*;
use cdrctl::simulate::{generate, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with make bench"]
async fn pipeline_throughput() {
    let _g = stack();
    assert_groups_whole();
    let store = broker_store_bytes();
    println!(
        "broker store: {} MB{}",
        store / 1_000_000,
        if store > 1_000_000_000 {
            " (large: tansu slows as its store grows; for figures comparable with \
             the README's, measure on a fresh stack: deploy/local/stop.sh; rm -rf .state; \
             make services)"
        } else {
            ""
        }
    );
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
    let procs: Vec<(&str, String)> = SERVICES
        .iter()
        .map(|s| (*s, format!("svc-{s}")))
        .chain([
            ("tansu", "tansu".to_string()),
            ("clickhouse", "clickhouse".to_string()),
        ])
        .collect();
    let (raw_p, raw_c) = cdrctl::bench_broker(&kafka(), 100_000, 300)
        .await
        .expect("broker raw rate");
    let stage_services: Vec<&str> = SERVICES
        .iter()
        .copied()
        .filter(|s| *s != "ingest")
        .collect();
    let counters = |what: &str| -> Vec<f64> {
        stage_services
            .iter()
            .map(|s| metric(s, &format!("cdr_{s}_{what}")))
            .collect()
    };
    let (consumed0, produced0) = (counters("consumed_total"), counters("produced_total"));
    let before: Vec<f64> = procs.iter().map(|(_, p)| cpu_seconds(p)).collect();
    let started = Instant::now();
    let publish = cdrctl::publish(&kafka(), &msgs, 0).await.expect("publish");
    let r = wait_for(&run, expected.calls as u64, 0, Duration::from_secs(1800)).await;
    let took = started.elapsed().as_secs_f64() - 3.0; // wait_for settles 3 s after the last row
    assert_eq!(r.calls as usize, expected.calls);
    let delta = |now: Vec<f64>, then: &[f64]| -> Vec<f64> {
        now.iter().zip(then).map(|(a, b)| a - b).collect()
    };
    let consumed = delta(counters("consumed_total"), &consumed0);
    let produced = delta(counters("produced_total"), &produced0);
    let calls = expected.calls as f64;
    let produced_per_call = (msgs.len() as f64 + produced.iter().sum::<f64>()) / calls;
    let consumed_per_call = consumed.iter().sum::<f64>() / calls;
    let ceiling = 1.0 / (produced_per_call / raw_p + consumed_per_call / raw_c);
    let rate = calls / took;
    println!(
        "broker raw rate (same run): produce {raw_p:.0} msg/s, consume {raw_c:.0} msg/s (100000 x 300 B)"
    );
    println!(
        "through the broker per call: {produced_per_call:.2} records produced, {consumed_per_call:.2} consumed -> broker-bound ceiling {ceiling:.0} calls/s"
    );
    println!(
        "pipeline: {} calls / {} events in {:.1}s -> {:.0} calls/s ({:.0}% of the ceiling), {:.0} events/s (publish alone {:.1}s)",
        expected.calls,
        expected.events,
        took,
        rate,
        100.0 * rate / ceiling,
        expected.events as f64 / took,
        publish.as_secs_f64()
    );
    println!("| process | CPU-s | input records | records per CPU-second | calls per CPU-second |\n|---|---|---|---|---|");
    let mut chain = 0.0;
    for ((name, pidf), b) in procs.iter().zip(&before) {
        let used = cpu_seconds(pidf) - b;
        match stage_services.iter().position(|s| s == name) {
            Some(i) => {
                chain += used;
                println!(
                    "| {name} | {used:.2} | {:.0} | {:.0} | {:.0} |",
                    consumed[i],
                    consumed[i] / used.max(1e-9),
                    calls / used.max(1e-9)
                );
            }
            None => println!("| {name} | {used:.2} | | | |"),
        }
    }
    println!(
        "| **service chain** | {chain:.2} | | | **{:.0}** |",
        calls / chain.max(1e-9)
    );
}

/// CPU-seconds (user + system) a process the scripts started has used.
fn cpu_seconds(pid_file: &str) -> f64 {
    let pid = pid_of(pid_file);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat ({pid_file}): {e}"));
    // Fields after the parenthesised command name: utime is the 14th
    // field overall, stime the 15th (the name may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}
