//! End-to-end LRN enrichment against the real stack: three calls to one
//! ported number pay one dip, are rated by the LRN's NPA-NXX, and keep their
//! fees when re-delivered after the enricher restarts with a cold cache.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cdr_e2e::*;
use cdr_model::avro::Codec;
use cdr_model::call::AssembledCall;
use clickhouse::Row;
use serde::Deserialize;

/// Ported in deploy/local/data/lrn/ported.txt: 212-555-0199 -> LRN 212-556-9999.
const PORTED: &str = "12125550199";

fn call(run: &str, i: i64, start_ms: i64) -> AssembledCall {
    let call_id = format!("{run}-{i}");
    let setup = start_ms + i * 2_000;
    AssembledCall {
        cdr_id: cdr_model::ids::cdr_id("sw-lrn", &call_id),
        call_id,
        switch_id: "sw-lrn".into(),
        account_id: "acc-1001".into(),
        direction: "outbound".into(),
        cli: Some("+12125550100".into()),
        dialed: PORTED.into(),
        trunk_id: Some("trk-1".into()),
        setup_ts_ms: setup,
        progress_ts_ms: Some(setup + 800),
        progress_code: Some(180),
        answer_ts_ms: Some(setup + 3_000),
        end_ts_ms: Some(setup + 63_000),
        final_sip_code: Some(200),
        disposition: "answered".into(),
        duration_ms: 60_000,
        billable_seconds: 60,
        pdd_ms: Some(800),
        headers: HashMap::new(),
        source_ip: None,
        behind_nat: false,
        codec: None,
        media: None,
        flags: vec![],
        event_count: 4,
        assembled_at_ms: setup + 63_000,
    }
}

async fn publish(kafka: &cdr_kafka::KafkaConfig, calls: &[AssembledCall]) {
    let codec: Codec<AssembledCall> = Codec::new();
    let producer = cdr_kafka::runtime::producer(kafka, "e2e-lrn").unwrap();
    let mut acks = Vec::new();
    for c in calls {
        let v = codec.encode(c).unwrap();
        acks.push(
            cdr_kafka::runtime::send(
                &producer,
                cdr_model::topics::CALLS_ASSEMBLED,
                c.dialed.as_bytes(),
                &v,
            )
            .await
            .unwrap(),
        );
    }
    cdr_kafka::runtime::await_acks(acks).await.unwrap();
}

#[derive(Row, Deserialize, Debug, Clone, PartialEq)]
struct Seen {
    call_id: String,
    lrn: Option<String>,
    ported: bool,
    lrn_source: String,
    fee: String,
    matched_prefix: Option<String>,
}

async fn rows(run: &str, want: usize) -> Vec<Seen> {
    let client = clickhouse().client();
    let started = Instant::now();
    loop {
        let r: Vec<Seen> = client
            .query("SELECT call_id, lrn, ported, lrn_source, toString(lrn_fee) AS fee, matched_prefix FROM rated_cdrs WHERE call_id LIKE ? ORDER BY call_id, inserted_at")
            .bind(format!("{run}-%"))
            .fetch_all()
            .await
            .unwrap_or_default();
        if r.len() >= want {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {want} rows for {run}: {r:?}",
            r.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dip_per_ported_number_and_fees_survive_a_cold_restart() {
    let _g = stack();
    // Its own enricher (cold cache, empty ledger) and its own downstream.
    let pl = Pipeline::start("lrn", &["enricher", "rater", "detector", "sink"]);
    let k = pl.kafka();
    let run = unique_run("lrn");
    let start = cdr_kafka::now_ms() - 600_000;
    let calls: Vec<_> = (0..3).map(|i| call(&run, i, start)).collect();
    publish(&k, &calls).await;
    let first = rows(&run, 3).await;
    let fees: Vec<&str> = first.iter().map(|r| r.fee.as_str()).collect();
    let sources: Vec<&str> = first.iter().map(|r| r.lrn_source.as_str()).collect();
    // The earliest call of the number's 6 h period pays, the others hit.
    assert_eq!(fees, ["0.0003", "0", "0"], "{first:?}");
    assert_eq!(sources, ["dip", "cache", "cache"], "{first:?}");
    for r in &first {
        assert!(r.ported, "{r:?}");
        assert_eq!(r.lrn.as_deref(), Some("2125569999"));
        // Rated on the LRN's NPA-NXX (212-556), not the dialed 212-555.
        assert_eq!(r.matched_prefix.as_deref(), Some("1212556"), "{r:?}");
    }
    // Exactly one dip in the number's period among this run's calls.
    let ledger = lrn::DipLedger::new(21_600_000, 0, rust_decimal::Decimal::ZERO);
    let (from, to) = ledger.period_bounds(&PORTED[1..], start);
    let dips: u64 = clickhouse()
        .client()
        .query("SELECT count() FROM cdr.rated_cdrs_final WHERE call_id LIKE ? AND dialed_e164 = ? AND lrn_source = 'dip' AND toUnixTimestamp64Milli(setup_ts) >= ? AND toUnixTimestamp64Milli(setup_ts) < ?")
        .bind(format!("{run}-%"))
        .bind(PORTED)
        .bind(from)
        .bind(to)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        dips, 1,
        "one dip per number and cache period [{from}, {to})"
    );

    // Cold restart, then the same calls again in reverse order: without the
    // persisted decisions the last call would now be the dip.
    pl.kill9("enricher");
    pl.restart("enricher");
    // Copies written from now on are the re-delivered ones. (Counting
    // rows would not do: ClickHouse may merge identical copies away at
    // any moment, and the merged row is the latest copy.)
    let since = cdr_kafka::now_ms();
    let mut again = calls.clone();
    again.reverse();
    publish(&k, &again).await;
    let redelivered = rows_since(&run, since, 3).await;
    let original: HashMap<&str, &Seen> = first.iter().map(|r| (r.call_id.as_str(), r)).collect();
    let mut seen_calls = std::collections::BTreeSet::new();
    for r in &redelivered {
        seen_calls.insert(r.call_id.as_str());
        assert_eq!(
            Some(&r),
            original.get(r.call_id.as_str()),
            "a re-delivered copy disagrees with the original"
        );
    }
    assert_eq!(seen_calls.len(), 3, "{redelivered:?}");
}

/// The rows of `run` written at or after `since_ms`, once `calls` distinct
/// calls have one.
async fn rows_since(run: &str, since_ms: i64, calls: usize) -> Vec<Seen> {
    let client = clickhouse().client();
    let started = Instant::now();
    loop {
        let r: Vec<Seen> = client
            .query("SELECT call_id, lrn, ported, lrn_source, toString(lrn_fee) AS fee, matched_prefix FROM rated_cdrs WHERE call_id LIKE ? AND toUnixTimestamp64Milli(inserted_at) >= ? ORDER BY call_id, inserted_at")
            .bind(format!("{run}-%"))
            .bind(since_ms)
            .fetch_all()
            .await
            .unwrap_or_default();
        let distinct: std::collections::BTreeSet<&str> =
            r.iter().map(|x| x.call_id.as_str()).collect();
        if distinct.len() >= calls {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {calls} calls re-delivered for {run}: {r:?}",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
