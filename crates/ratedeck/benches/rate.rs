//! Calls rated per second on a generated deck set of ≥ 200k prefixes
//! (4 A–Z plans × 60k + 2 US48 decks × 60k NPA-NXX = 360k rows).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ratedeck::{rate, ObrTier, Plan, Scope};

mod support;

fn bench_rate(c: &mut Criterion) {
    let w = support::world(60_000, 60_000);
    assert!(w.decks.total_rows() >= 200_000);
    let calls = support::calls(&w, 100_000, 7);
    let ctx = w.ctx();
    let rated = calls.iter().filter(|c| rate(c, &ctx).is_rated()).count();
    eprintln!(
        "deck rows: {}, calls: {}, rated: {rated}",
        w.decks.total_rows(),
        calls.len()
    );

    let mut g = c.benchmark_group("rate");
    g.throughput(Throughput::Elements(calls.len() as u64));
    g.sample_size(20);
    g.bench_function("rate_100k_calls", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for call in &calls {
                let out = rate(black_box(call), black_box(&ctx));
                n += u64::from(out.billed_seconds);
            }
            n
        })
    });
    // The bare longest-prefix lookup the rater is built on.
    let numbers: Vec<String> = calls
        .iter()
        .map(|c| c.dialed.trim_start_matches(['*', '3']).to_string())
        .collect();
    let at = support::t0() + chrono::Duration::days(1);
    g.bench_function("lookup_100k", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for n in &numbers {
                if w.decks
                    .lookup(Scope::Az(Plan::Standard), black_box(n), at, ObrTier::Eea)
                    .is_some()
                {
                    hits += 1;
                }
            }
            hits
        })
    });
    g.finish();
}

criterion_group!(benches, bench_rate);
criterion_main!(benches);
