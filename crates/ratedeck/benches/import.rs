//! Parse + index a generated 1,000,000-row A–Z deck.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ratedeck::{DeckKind, DeckSet, ImportMode, Plan};
use std::time::Duration;

mod support;

fn bench_import(c: &mut Criterion) {
    let text = support::az_deck(1_000_000, 42);
    let mut g = c.benchmark_group("import");
    g.throughput(Throughput::Elements(1_000_000));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("parse_index_1m_rows", |b| {
        b.iter(|| {
            let mut set = DeckSet::new();
            let r = set
                .load(
                    "big.txt",
                    &text,
                    DeckKind::AZ(Plan::Standard),
                    Plan::Standard,
                    ImportMode::Lenient,
                    support::t0(),
                    None,
                )
                .unwrap();
            assert_eq!(r.rows_loaded, 1_000_000);
            set
        })
    });
    g.finish();
}

criterion_group!(benches, bench_import);
criterion_main!(benches);
