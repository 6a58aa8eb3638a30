//! Cache hit-path throughput. Run: `cargo bench --bench lrn_cache`.
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lrn::{parse_tn10, LrnCache, LrnCacheConfig, PortedDb};

const KEYS: u64 = 4096;

fn tns() -> Vec<String> {
    (0..KEYS)
        .map(|i| format!("{}", 2_125_550_000 + i * 7))
        .collect()
}

fn warm(fast_slots: usize) -> LrnCache<Arc<PortedDb>> {
    let rows: String = (0..KEYS)
        .step_by(3)
        .map(|i| format!("{};3105550000\n", 2_125_550_000 + i * 7))
        .collect();
    let (db, _) = PortedDb::from_reader(rows.as_bytes()).unwrap();
    let cache = LrnCache::new(
        Arc::new(db),
        LrnCacheConfig {
            fast_slots,
            ttl: Duration::from_secs(3600),
            ..LrnCacheConfig::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        for t in tns() {
            cache.resolve(&t).await;
        }
    });
    cache
}

fn bench(c: &mut Criterion) {
    let tns = tns();
    let keys: Vec<u64> = tns.iter().map(|t| parse_tn10(t).unwrap()).collect();
    let mut g = c.benchmark_group("cache_hit");
    g.throughput(Throughput::Elements(KEYS));
    for (name, slots) in [("fast_layer", 1 << 17), ("moka_only", 0)] {
        let cache = warm(slots);
        assert!(keys.iter().all(|&k| cache.get_cached_u64(k).is_some()));
        g.bench_function(format!("get_cached_u64/{name}"), |b| {
            b.iter(|| {
                let mut n = 0u64;
                for &k in &keys {
                    n += cache.get_cached_u64(black_box(k)).map_or(0, |v| v.lrn & 1);
                }
                n
            })
        });
        g.bench_function(format!("get_cached_str/{name}"), |b| {
            b.iter(|| {
                let mut n = 0u64;
                for t in &tns {
                    n += cache.get_cached(black_box(t)).map_or(0, |v| v.lrn & 1);
                }
                n
            })
        });
    }
    let cache = warm(1 << 17);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    g.bench_function("resolve_hit_async/fast_layer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut n = 0usize;
                for t in &tns {
                    n += cache.resolve(black_box(t)).await.lrn.map_or(0, |l| l.len());
                }
                n
            })
        })
    });
    g.finish();

    let rows: String = (0..1_000_000u64)
        .map(|i| format!("{};3105550000\n", 2_000_000_000 + i * 3))
        .collect();
    let (db, _) = PortedDb::from_reader(rows.as_bytes()).unwrap();
    let probe: Vec<u64> = (0..KEYS).map(|i| 2_000_000_000 + i * 731).collect();
    let mut g = c.benchmark_group("ported_db_1m");
    g.throughput(Throughput::Elements(KEYS));
    g.bench_function("ported_lrn", |b| {
        b.iter(|| {
            probe
                .iter()
                .filter(|&&k| db.ported_lrn(black_box(k)).is_some())
                .count()
        })
    });
    g.finish();

    lrn::numbering::warm_up();
    let mut g = c.benchmark_group("numbering");
    g.throughput(Throughput::Elements(1));
    g.bench_function("analyze_call_us_to_uk", |b| {
        b.iter(|| {
            lrn::analyze_call(
                black_box(Some("+12125550123")),
                black_box("*31011447400123456"),
            )
        })
    });
    g.bench_function("normalize_and_strip", |b| {
        b.iter(|| lrn::normalize(lrn::strip_plan_prefix(black_box("*4123+1 (212) 555-0123")).1))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
