//! Calls rated per CPU-second on one core, measured with the thread's own
//! CPU time (/proc/thread-self/schedstat), so a busy shared machine does not
//! distort the figure the way wall-clock benches do.
//!
//! Runs as the rater does: linked with `cdr_kafka`, it gets the services'
//! global allocator (mimalloc, so the owned strings of each `RatedCall`
//! cost what they cost there), and it turns transparent huge pages off as
//! every service does at start (with them on, the decks' TLB misses would
//! be fewer than in production).
//!
//! `cargo run --release --example rate_throughput`

#[path = "../benches/support/mod.rs"]
mod support;

use ratedeck::{rate, ObrTier, Plan, Scope};
use std::hint::black_box;
use std::time::Instant;

/// CPU nanoseconds consumed by this thread (Linux); falls back to wall time.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn measure(label: &str, per_iter: usize, mut f: impl FnMut() -> u64) {
    f(); // warm caches
    let (c0, w0) = (cpu_ns(), Instant::now());
    let mut iters = 0u64;
    let mut sink = 0u64;
    while w0.elapsed().as_secs_f64() < 3.0 || iters < 3 {
        sink = sink.wrapping_add(f());
        iters += 1;
    }
    let wall = w0.elapsed().as_secs_f64();
    let cpu = match (c0, cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => wall,
    };
    let n = iters as f64 * per_iter as f64;
    println!(
        "{label}: {:.2} M/s per CPU-second ({:.0} ns each; wall {:.2} M/s, cpu share {:.0}%) [{sink}]",
        n / cpu / 1e6,
        cpu * 1e9 / n,
        n / wall / 1e6,
        100.0 * cpu / wall
    );
}

fn main() {
    let thp_off = cdr_kafka::disable_transparent_huge_pages();
    // `RATEDECK_BENCH_PREFIXES=N` shrinks/grows the generated decks (per
    // deck), e.g. to separate compute cost from cache-miss cost.
    let per_deck: usize = std::env::var("RATEDECK_BENCH_PREFIXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let w = support::world(per_deck, per_deck);
    let calls = support::calls(&w, 100_000, 7);
    let ctx = w.ctx();
    println!(
        "deck rows: {} (4 A-Z plans + 2 US48 decks, {per_deck} rows each); \
         allocator mimalloc, transparent huge pages off: {thp_off}",
        w.decks.total_rows()
    );
    measure("rate()", calls.len(), || {
        calls
            .iter()
            .map(|c| u64::from(rate(black_box(c), &ctx).billed_seconds))
            .sum()
    });
    // Baseline: only reading each input's strings (cold in a 100k-call
    // batch, hot in a service that has just deserialised the CDR).
    measure("input scan only", calls.len(), || {
        calls
            .iter()
            .map(|c| {
                let c = black_box(c);
                (c.call_id.len()
                    + c.account_id.as_bytes()[0] as usize
                    + c.dialed.as_bytes()[0] as usize
                    + c.cli.as_deref().map_or(0, |s| s.as_bytes()[0] as usize)
                    + c.cli_country
                        .as_deref()
                        .map_or(0, |s| s.as_bytes()[0] as usize)) as u64
            })
            .sum()
    });
    if std::env::args().any(|a| a == "--rate-only") {
        return;
    }
    let numbers: Vec<String> = calls
        .iter()
        .map(|c| c.dialed.trim_start_matches(['*', '3']).to_string())
        .collect();
    let at = support::t0() + chrono::Duration::days(1);
    measure("lookup", numbers.len(), || {
        numbers
            .iter()
            .filter(|n| {
                w.decks
                    .lookup(Scope::Az(Plan::Standard), black_box(n), at, ObrTier::Eea)
                    .is_some()
            })
            .count() as u64
    });
}
