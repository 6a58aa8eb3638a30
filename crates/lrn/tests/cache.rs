//! LrnCache: fee decision, coalescing, TTL, flush + replay, and failure modes.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{down_template, start, Mode};
use lrn::{
    EnrichmentRecord, HttpDip, HttpDipConfig, LrnAnswer, LrnCache, LrnCacheConfig, LrnError,
    LrnSource, LrnSourceKind, PortedDb,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

fn cfg() -> LrnCacheConfig {
    LrnCacheConfig {
        deadline: Duration::from_millis(300),
        retry_backoff: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(40),
        ..LrnCacheConfig::default()
    }
}

fn dip_cfg(template: String) -> HttpDipConfig {
    let mut c = HttpDipConfig::new(template);
    c.timeout = Duration::from_millis(200);
    c.max_attempts = 1;
    c
}

/// Counting source over a PortedDb, optionally failing (retryably) first and slow.
struct Mock {
    db: PortedDb,
    calls: AtomicUsize,
    fail_first: usize,
    delay: Duration,
}

impl Mock {
    fn new(fail_first: usize, delay: Duration) -> Self {
        let (db, _) =
            PortedDb::from_reader(&b"2125550001;2125559999\n2125550002;7185550000\n"[..]).unwrap();
        Mock {
            db,
            calls: AtomicUsize::new(0),
            fail_first,
            delay,
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl LrnSource for Mock {
    async fn lookup(&self, tn10: &str) -> Result<LrnAnswer, LrnError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if n < self.fail_first {
            return Err(LrnError::Transport("connection refused".into()));
        }
        self.db.get(tn10)
    }
}

#[tokio::test]
async fn three_calls_one_dip_two_hits() {
    for fast_slots in [1 << 10, 0] {
        let srv = start(Mode::Ok).await;
        let cache = LrnCache::new(
            HttpDip::new(dip_cfg(srv.template())).unwrap(),
            LrnCacheConfig {
                fast_slots,
                ..cfg()
            },
        );
        let mut outs = Vec::new();
        for _ in 0..3 {
            outs.push(cache.resolve("2125550001").await);
        }
        assert_eq!(
            outs.iter().map(|o| o.source).collect::<Vec<_>>(),
            [
                LrnSourceKind::Dip,
                LrnSourceKind::Cache,
                LrnSourceKind::Cache
            ]
        );
        assert_eq!(
            outs.iter().map(|o| o.fee).collect::<Vec<_>>(),
            [dec!(0.0003), dec!(0), dec!(0)]
        );
        assert!(outs
            .iter()
            .all(|o| o.lrn.as_deref() == Some("2125559999") && o.ported));
        assert_eq!(outs.iter().map(|o| o.fee).sum::<Decimal>(), dec!(0.0003));
        assert_eq!(srv.hits(), 1, "exactly one dip reached the LNP service");
        assert_eq!(cache.stats().dips, 1);
    }
}

#[tokio::test]
async fn fee_is_configurable_and_not_ported_numbers_are_cached_too() {
    let mock = Arc::new(Mock::new(0, Duration::ZERO));
    let cache = LrnCache::new(
        mock.clone(),
        LrnCacheConfig {
            dip_fee: dec!(0.0005),
            ..cfg()
        },
    );
    let a = cache.resolve("3105550003").await;
    assert_eq!(
        (a.lrn.as_deref(), a.ported, a.fee),
        (Some("3105550003"), false, dec!(0.0005))
    );
    let b = cache.resolve("3105550003").await;
    assert_eq!((b.source, b.fee), (LrnSourceKind::Cache, Decimal::ZERO));
    assert_eq!(mock.calls(), 1);
}

#[tokio::test]
async fn get_cached_is_cache_only_and_flush_empties_it() {
    let mock = Arc::new(Mock::new(0, Duration::ZERO));
    let cache = LrnCache::new(mock.clone(), cfg());
    assert_eq!(cache.get_cached("2125550002"), None);
    cache.resolve("2125550002").await;
    let c = cache.get_cached("2125550002").unwrap();
    assert_eq!((c.lrn10(), c.ported), ("7185550000".to_string(), true));
    cache.flush();
    assert_eq!(cache.get_cached("2125550002"), None);
    assert_eq!(mock.calls(), 1, "get_cached never asks the source");
}

#[tokio::test]
async fn replay_uses_the_recorded_decision_after_flush() {
    let srv = start(Mode::Ok).await;
    let cache = LrnCache::new(HttpDip::new(dip_cfg(srv.template())).unwrap(), cfg());
    let first = cache.enrich("+12125550001", None).await;
    let second = cache.enrich("12125550001", None).await;
    assert_eq!(
        (first.source, first.fee),
        (Some(LrnSourceKind::Dip), dec!(0.0003))
    );
    assert_eq!(
        (second.source, second.fee),
        (Some(LrnSourceKind::Cache), dec!(0))
    );
    assert_eq!(second.rated_number("2125550001"), "2125559999");

    // The records travel with the CDR (e.g. as JSON); the fee survives as an exact decimal.
    let stored = serde_json::to_string(&second).unwrap();
    assert!(stored.contains(r#""fee":"0""#), "{stored}");
    let stored_first = serde_json::to_string(&first).unwrap();
    assert!(stored_first.contains(r#""fee":"0.0003""#), "{stored_first}");

    cache.flush();
    // Replaying the already-enriched second call: not recomputed (would be a new 0.0003 dip now).
    let replayed: EnrichmentRecord = serde_json::from_str(&stored).unwrap();
    let again = cache.enrich("12125550001", Some(replayed.clone())).await;
    assert_eq!(again, replayed);
    assert_eq!(again.fee, dec!(0));
    let again_first = cache.enrich("12125550001", Some(first.clone())).await;
    assert_eq!(again_first, first);
    assert_eq!(srv.hits(), 1, "replay performed no lookup");

    // A genuinely new call after the flush is a miss and is charged.
    let fresh = cache.enrich("12125550001", None).await;
    assert_eq!(
        (fresh.source, fresh.fee),
        (Some(LrnSourceKind::Dip), dec!(0.0003))
    );
    assert_eq!(srv.hits(), 2);
}

#[tokio::test]
async fn non_nanp_and_toll_free_are_not_dipped() {
    let mock = Arc::new(Mock::new(0, Duration::ZERO));
    let cache = LrnCache::new(mock.clone(), cfg());
    for n in ["+442071838750", "18005550123", "+882163456789"] {
        let r = cache.enrich(n, None).await;
        assert_eq!(r, EnrichmentRecord::not_eligible());
        assert_eq!(r.rated_number(n), n);
    }
    assert_eq!(mock.calls(), 0);
    let bad = cache.resolve("12345").await;
    assert_eq!(
        (bad.source, bad.lrn, bad.fee),
        (LrnSourceKind::Unavailable, None, dec!(0))
    );
}

async fn assert_unavailable_within_deadline<S: LrnSource>(cache: LrnCache<S>) {
    let t = Instant::now();
    let o = cache.resolve("2125550001").await;
    let el = t.elapsed();
    assert_eq!(o.source, LrnSourceKind::Unavailable);
    assert_eq!(o.lrn, None);
    assert_eq!(o.fee, Decimal::ZERO);
    assert!(
        el < Duration::from_millis(800),
        "took {el:?} with a 300 ms deadline"
    );
    assert_eq!(cache.stats().unavailable, 1);
    assert_eq!(
        cache.get_cached("2125550001"),
        None,
        "failures are not cached"
    );
    let rec = EnrichmentRecord::from_outcome("2125550001", &o);
    assert!(rec.lrn_unavailable());
    assert_eq!(rec.rated_number("2125550001"), "2125550001");
}

#[tokio::test]
async fn dip_down_is_unavailable_within_deadline() {
    let dip = HttpDip::new(dip_cfg(down_template().await)).unwrap();
    assert_unavailable_within_deadline(LrnCache::new(dip, cfg())).await;
}

#[tokio::test]
async fn dip_slow_is_unavailable_within_deadline() {
    let srv = start(Mode::Slow(Duration::from_secs(5))).await;
    let mut c = dip_cfg(srv.template());
    c.timeout = Duration::from_secs(3); // longer than the cache deadline: the deadline must win
    assert_unavailable_within_deadline(LrnCache::new(HttpDip::new(c).unwrap(), cfg())).await;
}

#[tokio::test]
async fn dip_garbage_is_unavailable_fast() {
    let srv = start(Mode::Garbage).await;
    let cache = LrnCache::new(HttpDip::new(dip_cfg(srv.template())).unwrap(), cfg());
    assert_unavailable_within_deadline(cache).await;
    assert_eq!(srv.hits(), 1, "garbage is not retried");
}

#[tokio::test]
async fn dip_5xx_is_retried_until_deadline_then_unavailable() {
    let srv = start(Mode::FailFirst(usize::MAX, 503)).await;
    let cache = LrnCache::new(HttpDip::new(dip_cfg(srv.template())).unwrap(), cfg());
    assert_unavailable_within_deadline(cache).await;
    assert!(srv.hits() >= 3, "retried: {} hits", srv.hits());
}

#[tokio::test]
async fn transient_failures_recover_before_deadline_and_charge_once() {
    let mock = Arc::new(Mock::new(2, Duration::ZERO));
    let cache = LrnCache::new(mock.clone(), cfg());
    let o = cache.resolve("2125550001").await;
    assert_eq!(
        (o.source, o.fee, o.lrn.as_deref()),
        (LrnSourceKind::Dip, dec!(0.0003), Some("2125559999"))
    );
    assert_eq!(mock.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_are_coalesced_into_one_charged_dip() {
    let mock = Arc::new(Mock::new(0, Duration::from_millis(250)));
    let cache = Arc::new(LrnCache::new(mock.clone(), cfg()));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.resolve("2125550002").await })
        })
        .collect();
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await.unwrap());
    }
    assert_eq!(mock.calls(), 1);
    assert_eq!(
        outs.iter()
            .filter(|o| o.source == LrnSourceKind::Dip)
            .count(),
        1
    );
    assert_eq!(outs.iter().map(|o| o.fee).sum::<Decimal>(), dec!(0.0003));
    assert!(outs.iter().all(|o| o.lrn.as_deref() == Some("7185550000")));
    // Tasks that started after the dip finished are plain cache hits; the rest waited on it.
    assert!(
        (1..=9).contains(&cache.stats().coalesced),
        "{:?}",
        cache.stats()
    );
}

#[tokio::test]
async fn ttl_expiry_causes_a_new_charged_dip() {
    let mock = Arc::new(Mock::new(0, Duration::ZERO));
    let cache = LrnCache::new(
        mock.clone(),
        LrnCacheConfig {
            ttl: Duration::from_millis(150),
            ..cfg()
        },
    );
    assert_eq!(cache.resolve("2125550001").await.fee, dec!(0.0003));
    assert_eq!(cache.resolve("2125550001").await.fee, dec!(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cache.get_cached("2125550001"), None);
    let o = cache.resolve("2125550001").await;
    assert_eq!((o.source, o.fee), (LrnSourceKind::Dip, dec!(0.0003)));
    assert_eq!(mock.calls(), 2);
}

#[tokio::test]
async fn reload_through_the_cache_source_after_flush() {
    let path = common::temp_path("reload");
    std::fs::write(&path, "2125550001;2125559999\n").unwrap();
    let (db, _) = PortedDb::open(&path).unwrap();
    let cache = LrnCache::new(Arc::new(db), cfg());
    assert_eq!(
        cache.resolve("2125550001").await.lrn.as_deref(),
        Some("2125559999")
    );
    std::fs::write(&path, "2125550001;3105550000\n").unwrap();
    cache.source().reload(&path).unwrap();
    // Cached answer stays until flush/TTL.
    assert_eq!(
        cache.resolve("2125550001").await.lrn.as_deref(),
        Some("2125559999")
    );
    cache.flush();
    assert_eq!(
        cache.resolve("2125550001").await.lrn.as_deref(),
        Some("3105550000")
    );
    std::fs::remove_file(&path).ok();
}

#[tokio::test]
async fn jurisdiction_is_decided_on_the_lrn_when_ported() {
    let (db, _) =
        PortedDb::open(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ported.txt")).unwrap();
    let (table, errs) =
        lrn::NpaNxxTable::load(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/npanxx.txt"))
            .unwrap();
    assert!(errs.is_empty());
    let cache = LrnCache::new(db, cfg());
    let call = lrn::analyze_call(Some("+1 212 555 0123"), "*31+12125550002");
    let caller = call.caller.as_ref().map(|c| &c.e164);
    let dialed = call.callee.as_ref().unwrap().e164.nanp_tn10().unwrap();
    // Dialed 212-555 (NY) from NY: intrastate on the dialed number.
    assert_eq!(
        table.jurisdiction(caller, dialed),
        lrn::Jurisdiction::Intrastate
    );
    // Ported to a 718-555 LRN (NY): rated on the LRN, still intrastate.
    let rec = cache
        .enrich(call.callee.as_ref().unwrap().e164.digits(), None)
        .await;
    assert_eq!(rec.rated_number(dialed), "7185550000");
    assert_eq!(
        table.jurisdiction(caller, rec.rated_number(dialed)),
        lrn::Jurisdiction::Intrastate
    );
    // A NY caller to a CA number ported within CA: interstate on the LRN.
    let rec = cache.enrich("13105550003", None).await;
    assert_eq!(rec.rated_number("3105550003"), "3105559998");
    assert_eq!(
        table.jurisdiction(caller, rec.rated_number("3105550003")),
        lrn::Jurisdiction::Interstate
    );
}

#[tokio::test]
async fn porting_across_states_changes_jurisdiction() {
    let (db, _) =
        PortedDb::open(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ported.txt")).unwrap();
    let (table, _) =
        lrn::NpaNxxTable::load(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/npanxx.txt"))
            .unwrap();
    let cache = LrnCache::new(db, cfg());
    let caller = lrn::normalize("+12125550123").unwrap();
    // 212-555-0004 (NY) ported to a 310-555 (CA) LRN: NY→NY by dialed number, but interstate by LRN.
    assert_eq!(
        table.jurisdiction(Some(&caller), "2125550004"),
        lrn::Jurisdiction::Intrastate
    );
    let rec = cache.enrich("12125550004", None).await;
    assert!(rec.ported);
    assert_eq!(
        table.jurisdiction(Some(&caller), rec.rated_number("2125550004")),
        lrn::Jurisdiction::Interstate
    );
}
