//! Enricher engine tests (no Kafka): LRN fee decisions against the shipped
//! sample data, HTTP dip sources that are down, slow or answer garbage (a tiny
//! local HTTP server), replay determinism, and start-up validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdr_model::call::AssembledCall;
use enricher::{Config, Enricher, HttpSourceConfig, LrnConfig, LrnSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data(f: &str) -> PathBuf {
    repo().join("deploy/local/data/lrn").join(f)
}

fn call(cdr_id: &str, cli: Option<&str>, dialed: &str, disposition: &str) -> AssembledCall {
    AssembledCall {
        cdr_id: cdr_id.into(),
        call_id: format!("call-{cdr_id}"),
        switch_id: "sw1".into(),
        account_id: "acct-1".into(),
        direction: "outbound".into(),
        cli: cli.map(str::to_string),
        dialed: dialed.into(),
        trunk_id: Some("trk-1".into()),
        setup_ts_ms: 1_700_000_000_000,
        progress_ts_ms: None,
        progress_code: None,
        answer_ts_ms: None,
        end_ts_ms: None,
        final_sip_code: None,
        disposition: disposition.into(),
        duration_ms: 0,
        billable_seconds: 0,
        pdd_ms: None,
        headers: HashMap::new(),
        source_ip: None,
        behind_nat: false,
        codec: None,
        media: None,
        flags: vec![],
        event_count: 2,
        assembled_at_ms: 0,
    }
}

fn file_enricher() -> Enricher {
    Enricher::from_config(&LrnConfig::with_files(
        data("npanxx.txt"),
        data("ported.txt"),
    ))
    .expect("shipped sample data loads")
}

#[tokio::test]
async fn three_calls_to_a_ported_number_one_dip_two_cache_hits() {
    let mut e = file_enricher();
    let mut out = Vec::new();
    // An unanswered attempt is dipped too: carriers dip at call setup.
    for (i, (dialed, disp)) in [
        ("*3012125550199", "busy"),
        ("12125550199", "answered"),
        ("+1 (212) 555-0199", "no_answer"),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(
            e.enrich(call(
                &format!("cdr-{i}"),
                Some("+12125550100"),
                dialed,
                disp,
            ))
            .await,
        );
    }
    let srcs: Vec<_> = out
        .iter()
        .map(|x| x.call.enrichment.lrn_source.as_str())
        .collect();
    let fees: Vec<_> = out
        .iter()
        .map(|x| x.call.enrichment.lrn_fee.as_str())
        .collect();
    assert_eq!(srcs, ["dip", "cache", "cache"]);
    assert_eq!(fees, ["0.0003", "0", "0"]);
    for x in &out {
        let en = &x.call.enrichment;
        assert_eq!(en.lrn.as_deref(), Some("2125569999"));
        assert!(en.ported);
        assert_eq!(en.dialed_e164, "12125550199");
        assert_eq!(
            x.key, x.call.call.account_id,
            "keyed by account (the rater's per-account state)"
        );
        assert_eq!(en.jurisdiction.as_deref(), Some("intrastate"));
        assert_eq!(en.callee_country.as_deref(), Some("US"));
        assert_eq!(en.caller_country.as_deref(), Some("US"));
        assert!(en.cli_valid);
        assert!(en.flags.is_empty(), "{:?}", en.flags);
    }
    assert_eq!(
        out[0].call.enrichment.plan_selector.as_deref(),
        Some("pstn")
    );
    assert_eq!(e.cache().stats().dips, 1);
}

#[tokio::test]
async fn concurrent_misses_in_one_batch_are_one_dip() {
    let mut e = file_enricher();
    let calls = (0..3)
        .map(|i| {
            (
                0,
                call(
                    &format!("b-{i}"),
                    Some("+12125550100"),
                    "13105550123",
                    "answered",
                ),
            )
        })
        .collect();
    let out = e.enrich_all(calls, 16).await;
    let fees: Vec<_> = out
        .iter()
        .map(|x| x.call.enrichment.lrn_fee.clone())
        .collect();
    assert_eq!(
        fees.iter().filter(|f| *f == "0.0003").count(),
        1,
        "{fees:?}"
    );
    assert_eq!(fees.iter().filter(|f| *f == "0").count(), 2, "{fees:?}");
    for x in &out {
        assert_eq!(x.call.enrichment.lrn.as_deref(), Some("3105550123"));
        assert!(!x.call.enrichment.ported);
        assert_eq!(
            x.call.enrichment.jurisdiction.as_deref(),
            Some("interstate")
        );
    }
    assert_eq!(e.cache().stats().dips, 1);
}

#[tokio::test]
async fn redelivered_call_keeps_its_decision_and_fee() {
    let mut e = file_enricher();
    let first = e
        .enrich(call("same", None, "12125550199", "answered"))
        .await;
    assert_eq!(first.call.enrichment.lrn_fee, "0.0003");
    // A different, later call now hits the cache (fee 0)...
    let mut later = call("other", None, "12125550199", "answered");
    later.setup_ts_ms += 1000;
    let other = e.enrich(later).await;
    assert_eq!(other.call.enrichment.lrn_source, "cache");
    // ...but the re-delivered first call keeps its dip and fee.
    let again = e
        .enrich(call("same", None, "12125550199", "answered"))
        .await;
    assert!(again.replayed);
    assert_eq!(again.call.enrichment, first.call.enrichment);
    // Duplicates inside one batch agree with each other too.
    let out = e
        .enrich_all(
            vec![
                (0, call("dup", None, "12125550002", "answered")),
                (0, call("dup", None, "12125550002", "answered")),
            ],
            8,
        )
        .await;
    assert_eq!(out[0].call.enrichment, out[1].call.enrichment);
    assert_eq!(out[0].call.enrichment.lrn_fee, "0.0003");
    assert_eq!(e.cache().stats().dips, 2);
}

fn at(mut c: AssembledCall, setup_ts_ms: i64) -> AssembledCall {
    c.setup_ts_ms = setup_ts_ms;
    c
}

/// Persists `e`'s ledger changes into `store` (what `lrn.decisions` holds).
fn persist(e: &mut Enricher, store: &mut HashMap<(i32, String), lrn::LedgerRecord>) {
    for (p, c) in e.take_changes() {
        match c.record {
            Some(r) => store.insert((p, c.key), r),
            None => store.remove(&(p, c.key)),
        };
    }
}

fn restored(store: &HashMap<(i32, String), lrn::LedgerRecord>, partition: i32) -> Enricher {
    let mut e = file_enricher();
    let recs = store
        .iter()
        .filter(|((p, _), _)| *p == partition)
        .map(|(_, r)| r.clone())
        .collect();
    e.restore_partition(partition, recs);
    e
}

fn fees(out: &[enricher::Enriched]) -> Vec<(String, String, Option<String>)> {
    out.iter()
        .map(|x| {
            let en = &x.call.enrichment;
            (en.lrn_source.clone(), en.lrn_fee.clone(), en.lrn.clone())
        })
        .collect()
}

/// The fee is the ledger's, not the process's cache's: a restarted
/// enricher (cold cache, ledger restored) gives every copy, in any order,
/// the decision the first run gave; a new call in the same period is a
/// cache hit although this process never looked the number up.
#[tokio::test]
async fn a_restarted_enricher_keeps_every_fee_whatever_its_cache() {
    let t0 = 1_700_000_000_000;
    let batch = |ids: &[(&str, i64)]| -> Vec<(i32, AssembledCall)> {
        ids.iter()
            .map(|(id, dt)| {
                (
                    2,
                    at(
                        call(id, Some("+12125550100"), "12125550199", "answered"),
                        t0 + dt,
                    ),
                )
            })
            .collect()
    };
    let mut first = file_enricher();
    let mut store = HashMap::new();
    let a = first
        .enrich_all(batch(&[("r1", 0), ("r2", 60_000), ("r3", 120_000)]), 8)
        .await;
    persist(&mut first, &mut store);
    assert_eq!(
        fees(&a).iter().map(|f| f.1.as_str()).collect::<Vec<_>>(),
        ["0.0003", "0", "0"]
    );
    let mut again = restored(&store, 2);
    assert_eq!(again.cache().stats().entries, 0, "cold cache");
    let b = again
        .enrich_all(
            batch(&[("r3", 120_000), ("r1", 0), ("r2", 60_000), ("r4", 180_000)]),
            8,
        )
        .await;
    let want = fees(&a);
    assert_eq!(
        fees(&b)[..3],
        [want[2].clone(), want[0].clone(), want[1].clone()]
    );
    assert_eq!(
        fees(&b)[3],
        ("cache".into(), "0".into(), Some("2125569999".into()))
    );
    assert!(
        !b[0].replayed && b[1].replayed,
        "only the holder's copy is its own decision"
    );
    assert_eq!(
        again.cache().stats().dips,
        0,
        "nothing looked up: the ledger knew"
    );
    // Another partition's ledger is its own: the same number there pays.
    let c = again
        .enrich_all(
            vec![(3, at(call("r5", None, "12125550199", "answered"), t0))],
            8,
        )
        .await;
    assert_eq!(c[0].call.enrichment.lrn_fee, "0.0003");
}

/// A warm in-memory cache does not make a new period free: the first call
/// of each cache period pays the dip.
#[tokio::test]
async fn each_cache_period_pays_one_dip_even_with_a_warm_cache() {
    let mut e = file_enricher();
    let ttl = 21_600_000;
    let t0 = 1_700_000_000_000;
    let mut paid = 0;
    for i in 0..12 {
        let x = e
            .enrich_all(
                vec![(
                    0,
                    at(
                        call(&format!("p{i}"), None, "13105550123", "answered"),
                        t0 + i * ttl / 4,
                    ),
                )],
                4,
            )
            .await;
        if x[0].call.enrichment.lrn_fee == "0.0003" {
            paid += 1;
        }
    }
    // 12 calls over 3 TTLs: the periods they touch, each paying once.
    assert!((3..=4).contains(&paid), "{paid} dips over 3 TTLs");
}

#[tokio::test]
async fn non_nanp_and_toll_free_are_not_dipped() {
    let mut e = file_enricher();
    for (dialed, ty, country) in [
        ("*31442079460123", "fixed", Some("GB")),
        ("4915112345678", "mobile", Some("DE")),
        ("18005550100", "toll_free", Some("US")),
        ("8821612345678", "satellite", None),
    ] {
        let x = e
            .enrich(call("n", Some("+442079460000"), dialed, "answered"))
            .await;
        let en = &x.call.enrichment;
        assert_eq!(en.lrn_source, "not_applicable", "{dialed}");
        assert_eq!(en.lrn_fee, "0");
        assert_eq!(en.lrn, None);
        assert_eq!(en.callee_number_type.as_deref(), Some(ty), "{dialed}");
        assert_eq!(en.callee_country.as_deref(), country, "{dialed}");
    }
    assert_eq!(e.cache().stats().dips, 0);
}

// ---------------------------------------------------------------------------
// HTTP dip source: a tiny local server
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Mode {
    Slow,
    Garbage,
    Error500,
    Good,
}

async fn server(mode: Mode) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            h.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let tn = req
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.rsplit('/').next())
                    .unwrap_or("")
                    .to_string();
                let (status, body) = match mode {
                    Mode::Slow => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        ("200 OK", String::new())
                    }
                    Mode::Garbage => ("200 OK", "<html>lnp says hi</html>".to_string()),
                    Mode::Error500 => ("500 Internal Server Error", "oops".to_string()),
                    Mode::Good => (
                        "200 OK",
                        format!(r#"{{"tn":"{tn}","lrn":"7185550000","ported":true}}"#),
                    ),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/lrn/{{tn}}"), hits)
}

fn http_enricher(url: &str) -> Enricher {
    let mut cfg = LrnConfig::with_files(data("npanxx.txt"), "unused");
    cfg.source = LrnSource::Http(HttpSourceConfig {
        url_template: url.to_string(),
        timeout_ms: 150,
        max_concurrency: 8,
        max_attempts: 2,
    });
    cfg.unavailable_deadline_ms = 400;
    Enricher::from_config(&cfg).expect("http config")
}

async fn assert_unavailable(e: &mut Enricher) {
    let t = Instant::now();
    let x = e
        .enrich(call(
            "u1",
            Some("+12125550100"),
            "*3213105550123",
            "answered",
        ))
        .await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "bounded by the deadline"
    );
    let en = &x.call.enrichment;
    assert_eq!(en.lrn_source, "unavailable");
    assert_eq!(en.lrn_fee, "0");
    assert_eq!(en.lrn, None);
    assert!(!en.ported);
    assert_eq!(en.flags, vec!["lrn_unavailable".to_string()]);
    // Enrichment still completes: numbering and jurisdiction on the dialed number.
    assert_eq!(en.dialed_e164, "13105550123");
    assert_eq!(en.plan_selector.as_deref(), Some("premium"));
    assert_eq!(en.jurisdiction.as_deref(), Some("interstate"));
    // Keyed by account for the rater's per-account state.
    assert_eq!(x.key, x.call.call.account_id);
}

#[tokio::test]
async fn http_source_down_is_unavailable_fee_zero_flagged() {
    // Bind and drop: nothing listens on that port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut e = http_enricher(&format!("http://127.0.0.1:{port}/lrn/{{tn}}"));
    assert_unavailable(&mut e).await;
    assert_eq!(e.cache().stats().unavailable, 1);
}

#[tokio::test]
async fn http_source_slow_is_unavailable_within_deadline() {
    let (url, hits) = server(Mode::Slow).await;
    let mut e = http_enricher(&url);
    assert_unavailable(&mut e).await;
    assert!(hits.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn http_source_garbage_is_unavailable_without_retry_storm() {
    let (url, hits) = server(Mode::Garbage).await;
    let mut e = http_enricher(&url);
    assert_unavailable(&mut e).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "garbage is not retried");
}

#[tokio::test]
async fn http_source_5xx_is_unavailable_and_not_cached() {
    let (url, _hits) = server(Mode::Error500).await;
    let mut e = http_enricher(&url);
    assert_unavailable(&mut e).await;
    // Failures are never cached: the next call tries again (and fails again).
    let x = e.enrich(call("u2", None, "13105550123", "busy")).await;
    assert_eq!(x.call.enrichment.lrn_source, "unavailable");
    assert_eq!(e.cache().stats().dips, 0);
}

#[tokio::test]
async fn http_source_good_dips_once_then_hits() {
    let (url, hits) = server(Mode::Good).await;
    let mut e = http_enricher(&url);
    let a = e
        .enrich(call("g1", Some("+12125550100"), "13105550123", "answered"))
        .await;
    let b = e
        .enrich(call("g2", Some("+12125550100"), "13105550123", "failed"))
        .await;
    assert_eq!(
        (
            a.call.enrichment.lrn_source.as_str(),
            a.call.enrichment.lrn_fee.as_str()
        ),
        ("dip", "0.0003")
    );
    assert_eq!(
        (
            b.call.enrichment.lrn_source.as_str(),
            b.call.enrichment.lrn_fee.as_str()
        ),
        ("cache", "0")
    );
    for x in [&a, &b] {
        assert_eq!(x.call.enrichment.lrn.as_deref(), Some("7185550000"));
        assert!(x.call.enrichment.ported);
        // Ported from CA to a NY LRN: a NY caller is now intrastate.
        assert_eq!(
            x.call.enrichment.jurisdiction.as_deref(),
            Some("intrastate")
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Start-up validation
// ---------------------------------------------------------------------------

#[test]
fn shipped_local_config_is_valid() {
    let text = std::fs::read_to_string(repo().join("deploy/local/config/enricher.toml")).unwrap();
    let mut cfg: Config = toml::from_str(&text).expect("parses with deny_unknown_fields");
    // Paths in it are relative to the repo root (the services' working dir).
    let l = &mut cfg.lrn;
    l.npanxx_path = repo().join(&l.npanxx_path);
    match &mut l.source {
        LrnSource::PortedDb(p) => *p = repo().join(&*p),
        LrnSource::Http(_) => panic!("the local stack dips the embedded ported file"),
    }
    cfg.validate().expect("valid");
    assert_eq!(cfg.lrn.dip_fee.to_string(), "0.0003");
}

#[test]
fn missing_files_fail_start_up_with_the_path() {
    let cfg = LrnConfig::with_files(data("npanxx.txt"), "/no/such/ported.txt");
    let err = Enricher::from_config(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("lrn.ported_db") && err.contains("/no/such/ported.txt"),
        "{err}"
    );
    let cfg = LrnConfig::with_files("/no/such/npanxx.txt", data("ported.txt"));
    let err = Enricher::from_config(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("lrn.npanxx_path") && err.contains("/no/such/npanxx.txt"),
        "{err}"
    );
}

/// Throughput of the engine alone (no Kafka), simulator-like mix, warm cache.
/// `cargo test --release -p enricher --test enrich -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn throughput_engine_only() {
    lrn::numbering::warm_up();
    let mut e = file_enricher();
    let dests = [
        "442079460123",
        "*31447700900123",
        "4930123456",
        "*324915112345678",
        "12125550199",
        "*3013105550123",
        "525512345678",
        "33123456789",
        "8821612345678",
        "*40072125550001",
    ];
    let clis = [
        Some("+12125550100"),
        Some("+442079460000"),
        Some("2125550111"),
        Some("anonymous"),
    ];
    let n = 50_000;
    let calls: Vec<_> = (0..n)
        .map(|i| {
            call(
                &format!("t-{i}"),
                clis[i % clis.len()],
                dests[i % dests.len()],
                "answered",
            )
        })
        .collect();
    let t = Instant::now();
    let mut done = 0;
    for chunk in calls.chunks(2000) {
        done += e
            .enrich_all(chunk.iter().map(|c| (0, c.clone())).collect(), 256)
            .await
            .len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "enricher engine: {done} calls in {secs:.2} s = {:.0} calls/s",
        done as f64 / secs
    );
}

/// A call set up before its period's fixed holder but delivered long after
/// (a stalled assembler partition, a rebalance) takes the period over: it
/// pays, the old holder comes back from `take_demoted` as a cache hit with
/// its own call otherwise unchanged and a higher row version; a restarted
/// enricher agrees, and so does a clean run in setup order.
#[tokio::test]
async fn a_late_earlier_call_demotes_the_holder() {
    let t0 = 1_700_000_000_000;
    let c = |id: &str, dt: i64| {
        at(
            call(id, Some("+12125550100"), "12125550199", "answered"),
            t0 + dt,
        )
    };
    let mut e = file_enricher();
    let mut store = HashMap::new();
    // "late" (set up at t0) is delivered after "first" (t0 + 5 s) was
    // fixed as the holder by another call 10 minutes of event time on.
    let (ready, held) = e
        .enrich_batch(
            vec![
                (1, 0, c("first", 5_000)),
                (
                    1,
                    1,
                    at(call("x", None, "13105550123", "answered"), t0 + 600_000),
                ),
            ],
            4,
        )
        .await;
    let mut held = held;
    let mut out: Vec<enricher::Enriched> = ready.into_iter().map(|(_, _, x)| x).collect();
    out.extend(
        e.release_partition(1, false, &mut held)
            .into_iter()
            .map(|(_, x)| x),
    );
    let first = out
        .iter()
        .find(|x| x.call.call.cdr_id == "first")
        .expect("first decided")
        .clone();
    assert_eq!(first.call.enrichment.lrn_fee, "0.0003");
    assert!(e.take_demoted().is_empty());
    persist(&mut e, &mut store);

    let (ready, held) = e.enrich_batch(vec![(1, 2, c("late", 0))], 4).await;
    assert!(held.is_empty(), "the period is fixed: decided at once");
    let late = &ready[0].2;
    assert_eq!(
        (
            late.call.enrichment.lrn_source.as_str(),
            late.call.enrichment.lrn_fee.as_str()
        ),
        ("dip", "0.0003")
    );
    let demoted = e.take_demoted();
    assert_eq!(demoted.len(), 1);
    let d = &demoted[0];
    assert_eq!(
        d.call.call, first.call.call,
        "the holder's own call, re-emitted"
    );
    assert_eq!(
        (
            d.call.enrichment.lrn_source.as_str(),
            d.call.enrichment.lrn_fee.as_str()
        ),
        ("cache", "0")
    );
    assert_eq!(d.call.enrichment.lrn, first.call.enrichment.lrn);
    assert_eq!(d.key, first.key);
    let v = |x: &enricher::Enriched| {
        cdr_model::call::row_version(x.call.call.event_count, &x.call.enrichment.lrn_source)
    };
    assert!(v(d) > v(&first), "the hit replaces the charged copy");
    persist(&mut e, &mut store);

    // A restart replays both copies: each keeps its final decision.
    let mut again = restored(&store, 1);
    let b = again
        .enrich_all(vec![(1, c("first", 5_000)), (1, c("late", 0))], 4)
        .await;
    assert_eq!(
        fees(&b),
        vec![
            fees(&demoted)[0].clone(),
            fees(std::slice::from_ref(late))[0].clone()
        ]
    );
    assert!(again.take_demoted().is_empty());
    // A clean run in setup order charges the same call, same versions.
    let mut clean = file_enricher();
    let c2 = clean
        .enrich_all(vec![(1, c("late", 0)), (1, c("first", 5_000))], 4)
        .await;
    assert_eq!(
        fees(&c2),
        vec![
            fees(std::slice::from_ref(late))[0].clone(),
            fees(&demoted)[0].clone()
        ]
    );
    assert_eq!(v(&c2[1]), v(d));
    assert_eq!(v(&c2[0]), v(late));
}
