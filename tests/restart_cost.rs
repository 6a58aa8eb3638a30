//! Restart cost of the stateful services (`make bench`, ignored by default):
//! simulated switch traffic at a steady `BENCH_CPS` calls/s (default 1,000)
//! for `BENCH_SECS` (default 80 s), and one `kill -9` + immediate restart
//! of each stateful service in turn (rater, detector, enricher, assembler,
//! 20 s apart). Its consumer group's lag (log end − committed offset, summed
//! over the input partitions) is sampled from the broker every 250 ms, and
//! per service the bench prints:
//! * **replayed**: the group's lag at the instant of the kill — everything
//!   after the last commit, which the successor reads again;
//! * **resumed**: kill → the successor's first commit (process start,
//!   state restored, group joined, first batch acknowledged);
//! * **recovered**: kill → the lag back under its steady level (the 90th
//!   percentile of the 5 s before the kill, plus one second of input).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cdr_e2e::*;
use cdr_model::topics;
use cdrctl::simulate::{generate, SimConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// The group whose lag says how far a service is behind its input.
struct Group {
    service: &'static str,
    topic: &'static str,
    consumer: BaseConsumer,
    partitions: i32,
}

impl Group {
    fn new(service: &'static str, topic: &'static str) -> Group {
        let k = kafka();
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &k.brokers)
            .set("group.id", format!("cdr-{service}"))
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().expect("lag consumer");
        let partitions = topics::ALL
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, n)| *n)
            .expect("known topic");
        Group {
            service,
            topic,
            consumer,
            partitions,
        }
    }

    /// (Σ committed, Σ log end) over the input partitions. Only reads
    /// offsets: never joins the group.
    fn offsets(&self) -> Option<(i64, i64)> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(self.topic, p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .ok()?;
        let (mut c, mut e) = (0, 0);
        for p in 0..self.partitions {
            let (lo, hi) = self
                .consumer
                .fetch_watermarks(self.topic, p, Duration::from_secs(5))
                .ok()?;
            let off = committed
                .find_partition(self.topic, p)
                .map(|x| x.offset())
                .unwrap_or(Offset::Invalid);
            c += match off {
                Offset::Offset(o) => o,
                _ => lo,
            };
            e += hi;
        }
        Some((c, e))
    }
}

#[derive(Debug)]
struct Cost {
    service: &'static str,
    steady_lag: i64,
    replayed: i64,
    resumed: Option<Duration>,
    recovered: Option<Duration>,
}

fn p90(v: &mut [i64]) -> i64 {
    v.sort_unstable();
    v.get(v.len() * 9 / 10).copied().unwrap_or(0)
}

// Kills the shared services on purpose (it measures the stack `make run`
// starts): `make bench` runs it alone, never beside other tests.
#[test]
#[ignore = "benchmark: run with make bench"]
fn restart_cost_of_each_stateful_service() {
    let _g = stack();
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (cps, secs) = (env("BENCH_CPS", 1_000), env("BENCH_SECS", 80));
    let run = unique_run("restart");
    let calls = (cps * secs) as usize;
    // Event times in the recent past: real-time windows, no clock rejects.
    let (mut msgs, expected) = generate(&SimConfig {
        calls,
        seed: 11,
        run_id: run.clone(),
        start_ms: cdr_kafka::now_ms() - 20 * 60_000,
        mean_gap_ms: 1,
        malformed_pct: 0.0,
        ..Default::default()
    });
    msgs.sort_by_key(|m| m.ts_ms);
    let rate = (msgs.len() as u64 / secs).max(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publisher = rt.spawn(async move { cdrctl::publish(&kafka(), &msgs, rate).await });
    let plan: [(&'static str, &'static str); 4] = [
        ("rater", topics::CALLS_ENRICHED),
        ("detector", topics::CDRS_RATED),
        ("enricher", topics::CALLS_ASSEMBLED),
        ("assembler", topics::CALL_EVENTS),
    ];
    let groups: Vec<Group> = plan.iter().map(|(s, t)| Group::new(s, t)).collect();
    let started = Instant::now();
    let mut samples: BTreeMap<&str, Vec<(Duration, i64, i64)>> = BTreeMap::new();
    let mut kills: BTreeMap<&str, (Duration, i64, i64)> = BTreeMap::new();
    let mut next = 0;
    let first_kill = Duration::from_secs(15);
    let gap = Duration::from_secs(20);
    let end = Duration::from_secs(secs) + Duration::from_secs(60);
    while started.elapsed() < end {
        let now = started.elapsed();
        for g in &groups {
            if let Some((c, e)) = g.offsets() {
                samples.entry(g.service).or_default().push((now, c, e));
            }
        }
        if next < groups.len() && now >= first_kill + gap * next as u32 {
            let g = &groups[next];
            kill9(g.service);
            let at = started.elapsed();
            // Read after the process is gone: nothing can commit for it
            // any more until its successor does.
            let (c, e) = g.offsets().expect("offsets after the kill");
            kills.insert(g.service, (at, e - c, c));
            restart(g.service);
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    rt.block_on(publisher)
        .expect("publisher task")
        .expect("publish");
    let input_per_sec = |svc: &str| -> i64 {
        let s = &samples[svc];
        let (t0, _, e0) = s[0];
        let (t1, _, e1) = s[s.len() - 1];
        ((e1 - e0) as f64 / (t1 - t0).as_secs_f64().max(1.0)) as i64
    };
    let mut costs = Vec::new();
    for g in &groups {
        let (at, replayed, committed_at_kill) = kills[g.service];
        let s = &samples[g.service];
        let mut before: Vec<i64> = s
            .iter()
            .filter(|(t, _, _)| *t < at && *t + Duration::from_secs(5) >= at)
            .map(|(_, c, e)| e - c)
            .collect();
        let steady = p90(&mut before);
        let threshold = steady + input_per_sec(g.service);
        let after = s.iter().filter(|(t, _, _)| *t > at);
        let resumed = after
            .clone()
            .find(|(_, c, _)| *c > committed_at_kill)
            .map(|(t, _, _)| *t - at);
        let recovered = after
            .filter(|(t, _, _)| resumed.is_some_and(|r| *t >= at + r))
            .find(|(_, c, e)| e - c <= threshold)
            .map(|(t, _, _)| *t - at);
        costs.push(Cost {
            service: g.service,
            steady_lag: steady,
            replayed,
            resumed,
            recovered,
        });
    }
    let r = rt.block_on(wait_for(
        &run,
        expected.calls as u64,
        expected.dead_letters as u64,
        Duration::from_secs(900),
    ));
    println!(
        "\nrestart cost at {cps} calls/s ({} events/s) for {secs} s, kill -9 + restart of each service 20 s apart:\n",
        rate
    );
    println!("| service | input | steady lag (records) | replayed after kill -9 (records) | ≈ seconds of input | resumed (first commit) | recovered (lag back to steady) |");
    println!("|---|---|---|---|---|---|---|");
    for (c, g) in costs.iter().zip(&groups) {
        let per_sec = input_per_sec(c.service).max(1);
        println!(
            "| {} | `{}` ({} rec/s) | {} | {} | {:.1} | {} | {} |",
            c.service,
            g.topic,
            per_sec,
            c.steady_lag,
            c.replayed,
            c.replayed as f64 / per_sec as f64,
            c.resumed
                .map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            c.recovered
                .map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        );
    }
    assert_eq!(r.calls as usize, expected.calls, "every call landed once");
    for c in &costs {
        assert!(c.resumed.is_some(), "{} never committed again", c.service);
    }
}
