//! End-to-end: hostile input and faults against the real stack. Each test
//! mixes bad records or a fault into simulated traffic and asserts both the
//! bad record's dead letter and that every other call of the run landed
//! exactly as the simulator expected.

use std::collections::BTreeMap;
use std::time::Duration;

use cdr_e2e::*;
use cdr_model::event::format_ts;
use cdrctl::simulate::{generate, Msg, SimConfig};
use clickhouse::Row;
use serde::Deserialize;

fn as_map(v: &[cdrctl::report::Count]) -> BTreeMap<String, usize> {
    v.iter().map(|c| (c.label.clone(), c.n as usize)).collect()
}

/// Waits for a run and asserts it landed exactly as the simulator expected:
/// calls, dispositions, answered seconds and dead letters by reason.
async fn landed_exactly(
    run: &str,
    expected: &cdrctl::simulate::Expected,
    timeout: Duration,
) -> cdrctl::report::Report {
    let r = wait_for(
        run,
        expected.calls as u64,
        expected.dead_letters as u64,
        timeout,
    )
    .await;
    assert_eq!(r.calls as usize, expected.calls, "{r}");
    assert_eq!(as_map(&r.by_disposition), expected.by_disposition, "{r}");
    assert_eq!(r.answered_seconds, expected.answered_seconds, "{r}");
    assert_eq!(as_map(&r.dead_by_reason), expected.dead_by_reason, "{r}");
    r
}

fn sim(run: &str, calls: usize, seed: u64) -> (Vec<Msg>, cdrctl::simulate::Expected) {
    generate(&SimConfig {
        calls,
        seed,
        run_id: run.to_string(),
        malformed_pct: 1.0,
        start_ms: cdr_kafka::now_ms() - 3_600_000,
        ..Default::default()
    })
}

fn event(run: &str, name: &str, kind: &str, ts_ms: i64, extra: serde_json::Value) -> Msg {
    let call = format!("{run}-bad-{name}");
    let mut v = serde_json::json!({
        "event_id": format!("{call}-e"), "call_id": call, "type": kind,
        "ts": format_ts(ts_ms), "switch_id": "sw-nyc-1", "account_id": "acc-1001",
        "dialed": "442079460123", "cli": "+12125550100",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    Msg {
        key: call,
        payload: serde_json::to_vec(&v).unwrap(),
        ts_ms,
    }
}

#[derive(Row, Deserialize, Debug)]
struct DeadRow {
    reason: String,
    field: Option<String>,
    payload_len: u64,
    payload_truncated: bool,
    kept: u64,
    payload_sha256: String,
}

async fn dead_letter(key: &str) -> Vec<DeadRow> {
    clickhouse()
        .client()
        .query(
            "SELECT reason, field, payload_len, payload_truncated, \
             toUInt64(length(base64Decode(payload_b64))) AS kept, payload_sha256 \
             FROM dead_letters_final WHERE key = ?",
        )
        .bind(key)
        .fetch_all::<DeadRow>()
        .await
        .expect("dead letter query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_out_of_range_clock_records_are_dead_lettered_and_poison_nothing() {
    let _g = stack();
    let run = unique_run("hostile");
    let (mut msgs, mut expected) = sim(&run, 1500, 31);
    let now = cdr_kafka::now_ms();
    // 700 kB, over max_input_bytes (512 KiB): it used to kill the assembler
    // (its base64 dead letter exceeded the producer's message size).
    let big = event(
        &run,
        "big",
        "setup",
        now - 60_000,
        serde_json::json!({"headers": {"X-Pad": "x".repeat(1000)}, "pad": "y".repeat(700_000)}),
    );
    let big_len = big.payload.len() as u64;
    // A valid setup dated 2099: it used to drag the watermark and stale
    // every other call of the instance.
    let future = event(
        &run,
        "future",
        "setup",
        4_070_908_800_000,
        serde_json::json!({}),
    );
    // A valid hangup 30 days old (beyond the 7-day bound).
    let past = event(
        &run,
        "past",
        "hangup",
        now - 30 * 86_400_000,
        serde_json::json!({"sip_code": 200}),
    );
    let third = msgs.len() / 3;
    msgs.insert(third, future);
    msgs.insert(2 * third, big);
    msgs.insert(third / 2, past);
    *expected
        .dead_by_reason
        .entry("oversized".into())
        .or_default() += 1;
    *expected
        .dead_by_reason
        .entry("clock_out_of_range".into())
        .or_default() += 2;
    expected.dead_letters += 3;

    cdrctl::publish(&kafka(), &msgs, 0).await.expect("publish");
    landed_exactly(&run, &expected, Duration::from_secs(240)).await;
    assert!(running("svc-assembler"), "the assembler survived");

    let d = dead_letter(&format!("{run}-bad-big")).await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].reason, "oversized");
    assert_eq!(d[0].payload_len, big_len);
    assert!(d[0].payload_truncated);
    assert_eq!(d[0].kept, cdr_model::dlq::MAX_PAYLOAD_BYTES as u64);
    assert_eq!(d[0].payload_sha256.len(), 64);
    let d = dead_letter(&format!("{run}-bad-future")).await;
    assert_eq!(
        (d[0].reason.as_str(), d[0].field.as_deref()),
        ("clock_out_of_range", Some("ts"))
    );
}

fn scored(run: &str, i: usize, setup_ms: i64) -> cdr_model::RatedCdr {
    use cdr_model::call::{AssembledCall, Enrichment, Rating};
    let id = format!("{run}-m{i:03}");
    cdr_model::RatedCdr {
        call: AssembledCall {
            cdr_id: cdr_model::ids::cdr_id("sw-test", &id),
            call_id: id,
            switch_id: "sw-test".into(),
            account_id: "acc-1001".into(),
            direction: "outbound".into(),
            cli: None,
            dialed: "4930123456".into(),
            trunk_id: Some("trk-1".into()),
            setup_ts_ms: setup_ms,
            progress_ts_ms: None,
            progress_code: None,
            answer_ts_ms: Some(setup_ms + 5_000),
            end_ts_ms: Some(setup_ms + 65_000),
            final_sip_code: Some(200),
            disposition: "answered".into(),
            duration_ms: 60_000,
            billable_seconds: 60,
            pdd_ms: None,
            headers: Default::default(),
            source_ip: None,
            behind_nat: false,
            codec: None,
            media: None,
            flags: vec![],
            event_count: 4,
            assembled_at_ms: 0,
        },
        enrichment: Enrichment::default(),
        rating: Rating {
            status: "rated".into(),
            destination: Some("Germany".into()),
            amount: "0.012".into(),
            lrn_fee: "0".into(),
            billed_seconds: 60,
            ..Default::default()
        },
        detection: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_clickhouse_refuses_is_split_and_every_row_lands() {
    let _g = stack();
    // Its own sink: its split counter counts this test's inserts only.
    let pl = Pipeline::start("months", &["sink"]);
    let run = unique_run("months");
    // 101 CDRs in 101 different months: one insert of them all exceeds
    // ClickHouse's 100 partitions per INSERT block and is refused whole.
    let codec: cdr_model::avro::Codec<cdr_model::RatedCdr> = cdr_model::avro::Codec::new();
    let producer = cdr_kafka::runtime::producer(&pl.kafka(), "e2e-months").unwrap();
    let base = 1_577_836_800_000i64; // 2020-01-01
    let mut acks = Vec::new();
    for i in 0..101 {
        let setup = base + i as i64 * 31 * 86_400_000;
        let c = scored(&run, i, setup);
        let bytes = codec.encode(&c).unwrap();
        acks.push(
            cdr_kafka::runtime::send(
                &producer,
                cdr_model::topics::CDRS_SCORED,
                c.call.cdr_id.as_bytes(),
                &bytes,
            )
            .await
            .unwrap(),
        );
    }
    cdr_kafka::runtime::await_acks(acks).await.unwrap();
    let r = wait_for(&run, 101, 0, Duration::from_secs(120)).await;
    assert_eq!(r.calls, 101, "{r}");
    assert!(running(&pl.name("sink")));
    // They arrived in one batch: the sink had to split the insert.
    let splits = pl.metric("sink", "cdr_sink_insert_splits_total");
    assert!(splits >= 1.0, "no insert split ({splits})");
}

/// A ClickHouse that hangs: the kernel completes TCP connects into the
/// listen backlog, nothing ever accepts, reads or answers, exactly what a
/// SIGSTOPped server does to its clients. (Not the shared ClickHouse: a
/// frozen one would stall every test running beside this one.)
fn hung_clickhouse() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_sink_while_clickhouse_hangs_and_nothing_is_lost() {
    let _g = stack();
    let pl = Pipeline::start(
        "chstop",
        &["assembler", "enricher", "rater", "detector", "sink"],
    );
    let hung = hung_clickhouse();
    let url = format!("http://{}", hung.local_addr().unwrap());
    pl.restart_with("sink", &format!("CDR_CLICKHOUSE_URL={url}"));
    pl.wait_ready("sink");
    let run = unique_run("chstop");
    let (msgs, expected) = sim(&run, 400, 41);
    cdrctl::publish(&pl.kafka(), &msgs, 0)
        .await
        .expect("publish");
    // Let the sink reach the hung ClickHouse with a batch of this run.
    let started = std::time::Instant::now();
    while pl.metric("sink", "cdr_sink_consumed_total") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the sink never received a record"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&pl.name("sink"), "TERM");
    let took = wait_exit(&pl.name("sink"), Duration::from_secs(10));
    assert!(
        took.is_some(),
        "the sink ignored SIGTERM while ClickHouse hung"
    );
    drop(hung);
    // Back on the real ClickHouse: everything uncommitted is re-read.
    pl.restart("sink");
    landed_exactly(&run, &expected, Duration::from_secs(240)).await;
}

/// The offset `pl`'s `service` group committed for (plain) `topic`/`partition`.
fn committed_offset(pl: &Pipeline, service: &str, topic: &str, partition: i32) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let topic = &format!("{}{topic}", pl.prefix);
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka().brokers)
        .set("group.id", pl.group(service))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    let e = got.find_partition(topic, partition)?;
    match e.offset() {
        rdkafka::Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// One contract event of `call` (switch sw-nyc-1, account acc-1001) with
/// `extra` fields, keyed by the call id.
fn call_event(call: &str, kind: &str, ts: i64, extra: serde_json::Value) -> Msg {
    let mut v = serde_json::json!({
        "event_id": format!("{call}-{kind}"), "call_id": call, "type": kind,
        "ts": format_ts(ts), "switch_id": "sw-nyc-1", "account_id": "acc-1001",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    Msg {
        key: call.to_string(),
        payload: serde_json::to_vec(&v).unwrap(),
        ts_ms: ts,
    }
}

async fn publish_one(kafka: &cdr_kafka::KafkaConfig, m: &Msg) -> (i32, i64) {
    let producer = cdr_kafka::runtime::producer(kafka, "e2e-stuck").unwrap();
    let f = cdr_kafka::runtime::send(
        &producer,
        cdr_model::topics::CALL_EVENTS,
        m.key.as_bytes(),
        &m.payload,
    )
    .await
    .unwrap();
    let d = f.await.unwrap().unwrap();
    (d.partition, d.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_hangs_up_is_checkpointed_and_survives_kill9() {
    let _g = stack();
    // Its own pipeline: it kills its assembler.
    let pl = Pipeline::start(
        "stuck",
        &["assembler", "enricher", "rater", "detector", "sink"],
    );
    let k = pl.kafka();
    let run = unique_run("stuck");
    let now = cdr_kafka::now_ms();
    let call = format!("{run}-long");
    let ev = |kind: &str, ts: i64, extra: serde_json::Value| call_event(&call, kind, ts, extra);
    let setup = ev(
        "setup",
        now - 2_000,
        serde_json::json!({"dialed": "442079460123", "cli": "+12125550100"}),
    );
    let answer = ev(
        "answer",
        now - 1_000,
        serde_json::json!({"trunk_id": "trk-1"}),
    );
    publish_one(&k, &setup).await;
    let (p, answer_off) = publish_one(&k, &answer).await;
    // Other traffic on every partition keeps the commit moving.
    let (msgs, expected) = sim(&run, 300, 51);
    cdrctl::publish(&k, &msgs, 0).await.expect("publish");
    // Checkpoint after 20 s of partition clock (local stack config), scanned
    // every 5 s, then committed within a second.
    let started = std::time::Instant::now();
    loop {
        let c = committed_offset(&pl, "assembler", cdr_model::topics::CALL_EVENTS, p);
        if c.is_some_and(|c| c > answer_off) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the open call still holds the commit of partition {p} at {c:?} (answer at {answer_off})"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    pl.kill9("assembler");
    pl.restart("assembler");
    // The hangup arrives after the restart; setup and answer are behind the
    // committed offset, so only the checkpoint can still know them.
    let hangup = ev(
        "hangup",
        cdr_kafka::now_ms(),
        serde_json::json!({"sip_code": 200, "trunk_id": "trk-1"}),
    );
    let talk_ms = serde_json::from_slice::<serde_json::Value>(&hangup.payload).unwrap()["ts"]
        .as_str()
        .map(|t| cdr_model::event::parse_ts("ts", t).unwrap())
        .unwrap()
        - (now - 1_000);
    publish_one(&k, &hangup).await;
    let r = wait_for(
        &run,
        expected.calls as u64 + 1,
        expected.dead_letters as u64,
        Duration::from_secs(180),
    )
    .await;
    let mut want = expected.by_disposition.clone();
    *want.entry("answered".into()).or_default() += 1;
    assert_eq!(as_map(&r.by_disposition), want, "{r}");
    assert_eq!(
        r.answered_seconds,
        expected.answered_seconds + (talk_ms + 999) / 1000,
        "{r}"
    );
    assert!(pl.metric("assembler", "cdr_assembler_restored_calls_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_call_on_different_partitions_make_one_call() {
    let _g = stack();
    let run = unique_run("split");
    let (mut msgs, expected) = sim(&run, 600, 61);
    // A switch (or a load balancer in front of several) that does not key by
    // call_id: consecutive events of one call spread over the partitions.
    for (i, m) in msgs.iter_mut().enumerate() {
        if !m.key.contains("-bad-") {
            m.key = format!("{run}-lb-{}", i % 5);
        }
    }
    let before = metric("assembler", "cdr_assembler_rekeyed_events_total");
    cdrctl::publish(&kafka(), &msgs, 0).await.expect("publish");
    let r = landed_exactly(&run, &expected, Duration::from_secs(240)).await;
    // A call emitted in parts leaves rows of its cdr_id that fold in fewer
    // events than its final copy. Extra rows with the same events are
    // legitimate (a redelivered copy, or a demoted LRN holder written again
    // as a cache hit with the next version), so the raw row count is not
    // the measure.
    let parts: u64 = clickhouse()
        .client()
        .query(
            "SELECT count() FROM rated_cdrs AS r \
             INNER JOIN (SELECT cdr_id, max(intDiv(bitAnd(version, 4294967295), 2)) AS events \
                         FROM rated_cdrs WHERE startsWith(call_id, ?) GROUP BY cdr_id) AS m USING cdr_id \
             WHERE startsWith(r.call_id, ?) AND intDiv(bitAnd(r.version, 4294967295), 2) < m.events",
        )
        .bind(&run)
        .bind(&run)
        .fetch_one()
        .await
        .expect("parts query");
    assert_eq!(parts, 0, "no call was emitted in parts: {r}");
    assert!(r.raw_rows >= r.calls, "{r}");
    let rekeyed = metric("assembler", "cdr_assembler_rekeyed_events_total") - before;
    assert!(
        rekeyed >= (expected.events - expected.dead_letters) as f64 * 0.9,
        "{rekeyed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_assembler_joining_and_leaving_mid_stream_changes_nothing() {
    let _g = stack();
    // Its own pipeline: a second assembler joins its group.
    let pl = Pipeline::start(
        "rebal",
        &["assembler", "enricher", "rater", "detector", "sink"],
    );
    let run = unique_run("rebal");
    let (msgs, expected) = sim(&run, 3000, 71);
    let kafka = pl.kafka();
    // 200 events/s: the traffic outlasts the second instance's join delay.
    let publisher = tokio::spawn(async move { cdrctl::publish(&kafka, &msgs, 600).await });
    let log =
        std::fs::File::create(state_dir().join(format!("logs/assembler-{}b.log", pl.instance)))
            .unwrap();
    let mut second = std::process::Command::new(repo().join("target/release/assembler"))
        .arg(repo().join("deploy/local/config/assembler.toml"))
        .current_dir(repo())
        .env("CDR__STAGE__METRICS_LISTEN", "127.0.0.1:0")
        .env("CDR_TOPIC_PREFIX", &pl.prefix)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("second assembler");
    // It joins after its 7.5 s join delay (a rebalance revokes partitions
    // from the first instance), works a while, then leaves on SIGTERM
    // (a second rebalance gives them back).
    tokio::time::sleep(Duration::from_secs(14)).await;
    let st = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let exit = tokio::task::spawn_blocking(move || second.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "second assembler exited with {exit:?}");
    publisher.await.unwrap().expect("publish");
    landed_exactly(&run, &expected, Duration::from_secs(300)).await;
    assert!(running(&pl.name("assembler")));
    let revoked = pl.metric("assembler", "cdr_assembler_partitions_revoked_total");
    assert!(revoked >= 1.0, "the first instance saw no revocation");
}

#[derive(Row, Deserialize, Debug)]
struct LongCallRow {
    disposition: String,
    duration_ms: i64,
    version: u64,
    provisional: u8,
    rating_status: String,
    rows: u64,
}

async fn long_call(call: &str) -> Option<LongCallRow> {
    clickhouse()
        .client()
        .query(
            "SELECT any(disposition) AS disposition, any(duration_ms) AS duration_ms, \
             any(version) AS version, toUInt8(any(has(assembly_flags, 'provisional'))) AS provisional, \
             toString(any(rating_status)) AS rating_status, count() AS rows \
             FROM rated_cdrs_final WHERE call_id = ? HAVING rows > 0",
        )
        .bind(call)
        .fetch_optional::<LongCallRow>()
        .await
        .expect("rated_cdrs_final")
}

/// Issue 12: a lost BYE. The answered call is closed after the maximum
/// call length and billed provisionally; its hangup, arriving later, is
/// not dead-lettered but makes a complete new version of the same call
/// that replaces the provisional one in the finance and KPI views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bye_is_billed_provisionally_and_completed_by_the_late_hangup() {
    let _g = stack();
    // Its own pipeline: its assembler closes calls after 12 s.
    let pl = Pipeline::start(
        "lostbye",
        &["assembler", "enricher", "rater", "detector", "kpi", "sink"],
    );
    pl.restart_with("assembler", "CDR__MAX_CALL_SECS=12");
    pl.wait_ready("assembler");
    let k = pl.kafka();
    let run = unique_run("lostbye");
    let call = format!("{run}-long");
    let now = cdr_kafka::now_ms();
    let ev = |kind: &str, ts: i64, extra: serde_json::Value| call_event(&call, kind, ts, extra);
    let answer_ts = now - 1_000;
    publish_one(
        &k,
        &ev(
            "setup",
            now - 2_000,
            serde_json::json!({"dialed": "4930123456", "cli": "+4930987654"}),
        ),
    )
    .await;
    publish_one(
        &k,
        &ev(
            "answer",
            answer_ts,
            serde_json::json!({"trunk_id": "trk-1"}),
        ),
    )
    .await;
    // Closed stale after 12 s of partition clock: provisional, answered.
    let started = std::time::Instant::now();
    let first = loop {
        if let Some(r) = long_call(&call).await {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the provisional call never landed"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(
        (first.disposition.as_str(), first.provisional),
        ("answered", 1),
        "{first:?}"
    );
    assert_eq!(first.rating_status, "rated", "{first:?}");
    // The hangup 20 s after the answer, well after the stale closure.
    let end = cdr_kafka::now_ms().max(answer_ts + 20_000);
    publish_one(
        &k,
        &ev(
            "hangup",
            end,
            serde_json::json!({"sip_code": 200, "trunk_id": "trk-1"}),
        ),
    )
    .await;
    let started = std::time::Instant::now();
    let done = loop {
        let r = long_call(&call).await.expect("still there");
        if r.provisional == 0 {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the late hangup never completed the call: {r:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(done.rows, 1, "one call, not two");
    assert_eq!(done.disposition, "answered");
    assert_eq!(
        done.duration_ms,
        end - answer_ts,
        "answer to the real hangup"
    );
    assert!(done.version > first.version, "{first:?} -> {done:?}");
    // The KPI view counts the call once, at its complete version.
    #[derive(Row, Deserialize, Debug, PartialEq)]
    struct Kpi {
        n: u64,
        answered: u64,
        answered_ms: i64,
    }
    let want = Kpi {
        n: 1,
        answered: 1,
        answered_ms: end - answer_ts,
    };
    let started = std::time::Instant::now();
    loop {
        let k: Kpi = clickhouse()
            .client()
            .query(
                "SELECT count() AS n, toUInt64(sum(answered)) AS answered, toInt64(sum(answered_ms)) AS answered_ms \
                 FROM kpi_calls_final WHERE call_id = ?",
            )
            .bind(&call)
            .fetch_one()
            .await
            .expect("kpi_calls_final");
        if k == want {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "KPI row {k:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Issue 16: dead letters sent through again once their cause is fixed.
/// An assembler whose input limit is far too small dead-letters every
/// event as `oversized`; with the limit fixed, `cdrctl dlq replay` sends
/// the original bytes back and every call lands exactly as the simulator
/// expected; a second replay sends nothing, and a forced one bills nothing
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replayed_after_the_fix_land_once() {
    let _g = stack();
    let pl = Pipeline::start(
        "dlq",
        &["assembler", "enricher", "rater", "detector", "sink"],
    );
    pl.restart_with("assembler", "CDR__STAGE__MAX_INPUT_BYTES=1024");
    pl.wait_ready("assembler");
    let run = unique_run("dlq");
    let (mut msgs, expected) = generate(&SimConfig {
        calls: 80,
        seed: 81,
        run_id: run.clone(),
        malformed_pct: 0.0,
        start_ms: cdr_kafka::now_ms() - 3_600_000,
        ..Default::default()
    });
    assert_eq!(expected.dead_letters, 0);
    // Every event carries 1.1 kB of vendor padding (a field the contract
    // ignores): over this assembler's 1 kB limit, well under the default.
    for m in &mut msgs {
        let mut v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        v["x_vendor_pad"] = "p".repeat(1100).into();
        m.payload = serde_json::to_vec(&v).unwrap();
    }
    let events = msgs.len() as u64;
    cdrctl::publish(&pl.kafka(), &msgs, 0)
        .await
        .expect("publish");
    let r = wait_for(&run, 0, events, Duration::from_secs(120)).await;
    assert_eq!(r.calls, 0, "{r}");
    assert_eq!(
        as_map(&r.dead_by_reason),
        BTreeMap::from([("oversized".to_string(), events as usize)])
    );
    // The fix: the assembler's normal input limit.
    pl.restart_with("assembler", "");
    pl.wait_ready("assembler");
    let topic = format!("{}{}", pl.prefix, cdr_model::topics::CALL_EVENTS);
    let replay = |extra: &[&str]| {
        dlq_replay(&[&["--reason", "oversized", "--topic", &topic][..], extra].concat())
    };
    // Each dead letter kept its record's own time, which the replay gives
    // back (the assembler judges event clocks against it).
    let untimed: u64 = clickhouse()
        .client()
        .query("SELECT count() FROM dead_letters_final WHERE topic = ? AND source_ts IS NULL")
        .bind(&topic)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(untimed, 0);
    assert!(replay(&[]).contains(&format!("replayed {events} dead letters")));
    let r = wait_for(
        &run,
        expected.calls as u64,
        events,
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(r.calls as usize, expected.calls, "{r}");
    assert_eq!(as_map(&r.by_disposition), expected.by_disposition, "{r}");
    assert_eq!(r.answered_seconds, expected.answered_seconds, "{r}");
    // Marked replayed: nothing to send the second time.
    assert!(replay(&[]).contains("replayed 0 dead letters"));
    let list = cdrctl_command()
        .args(["dlq", "list", "--topic", &topic])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        list.contains(&format!("oversized\t{topic}\t{events}\t0\t{events}\t")),
        "{list}"
    );
    // Forced again: the same events, the same calls, billed once.
    let amount = |r: &cdrctl::report::Report| r.amount.clone();
    let before = amount(&r);
    assert!(replay(&["--again"]).contains(&format!("replayed {events} dead letters")));
    tokio::time::sleep(Duration::from_secs(15)).await;
    let again = wait_for(&run, expected.calls as u64, events, Duration::from_secs(60)).await;
    assert_eq!(again.calls as usize, expected.calls, "{again}");
    assert_eq!(amount(&again), before, "{again}");
    assert_eq!(again.answered_seconds, expected.answered_seconds);
}

/// Issue 16: dead letters replayed in a corrected form. A switch that
/// names the account `acct` gets every event dead-lettered; replayed with
/// the fix mapping `{"rename": {"acct": "account_id"}}` every call lands
/// exactly as the simulator expected, and a forced second replay bills
/// nothing twice (the corrected events keep their event ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replayed_with_a_fix_mapping_land_once() {
    let _g = stack();
    let pl = Pipeline::start(
        "dlqfix",
        &["assembler", "enricher", "rater", "detector", "sink"],
    );
    let run = unique_run("dlqfix");
    let (mut msgs, expected) = generate(&SimConfig {
        calls: 40,
        seed: 82,
        run_id: run.clone(),
        malformed_pct: 0.0,
        start_ms: cdr_kafka::now_ms() - 3_600_000,
        ..Default::default()
    });
    for m in &mut msgs {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&m.payload).unwrap();
        let a = v.remove("account_id").expect("account_id");
        v.insert("acct".into(), a);
        m.payload = serde_json::to_vec(&v).unwrap();
    }
    let events = msgs.len() as u64;
    cdrctl::publish(&pl.kafka(), &msgs, 0)
        .await
        .expect("publish");
    let r = wait_for(&run, 0, events, Duration::from_secs(120)).await;
    assert_eq!(r.calls, 0, "{r}");
    let topic = format!("{}{}", pl.prefix, cdr_model::topics::CALL_EVENTS);
    let dir = std::env::temp_dir().join(format!("dlqfix-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let fix = dir.join("fix.json");
    std::fs::write(&fix, r#"{"rename": {"acct": "account_id"}}"#).unwrap();
    let fix_path = fix.display().to_string();
    let replay = |extra: &[&str]| {
        dlq_replay(&[&["--topic", &topic, "--fix", &fix_path][..], extra].concat())
    };
    assert!(replay(&[]).contains(&format!("replayed {events} dead letters")));
    let r = wait_for(
        &run,
        expected.calls as u64,
        events,
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(r.calls as usize, expected.calls, "{r}");
    assert_eq!(as_map(&r.by_disposition), expected.by_disposition, "{r}");
    assert_eq!(r.answered_seconds, expected.answered_seconds, "{r}");
    // The fix is on record with each replay.
    let fixed: u64 = clickhouse()
        .client()
        .query("SELECT count() FROM cdr.dead_letter_replays WHERE topic = ? AND fix LIKE '%acct%'")
        .bind(&topic)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(fixed, events);
    assert!(replay(&[]).contains("replayed 0 dead letters"));
    let before = r.amount.clone();
    assert!(replay(&["--again"]).contains(&format!("replayed {events} dead letters")));
    tokio::time::sleep(Duration::from_secs(15)).await;
    let again = wait_for(&run, expected.calls as u64, events, Duration::from_secs(60)).await;
    assert_eq!(again.calls as usize, expected.calls, "{again}");
    assert_eq!(again.amount, before, "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cdrctl dlq replay ARGS`, which must succeed; its stdout.
fn dlq_replay(args: &[&str]) -> String {
    let out = cdrctl_command()
        .args(["dlq", "replay"])
        .args(args)
        .current_dir(repo())
        .output()
        .expect("cdrctl dlq replay");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A live assembler lets closed calls go once their retention is over and a
/// commit past them is confirmed by the broker. The confirmation has to come
/// back through librdkafka (rust-rdkafka's own asynchronous commit never
/// reports one, rust-rdkafka#856): without it every call ever seen stayed in
/// memory. Retention is 5 s here; an idle partition's clock runs on by the
/// wall time that passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_assembler_forgets_closed_calls_once_a_commit_is_confirmed() {
    let _g = stack();
    let pl = Pipeline::start("forget", &["assembler"]);
    pl.restart_with("assembler", "CDR__CLOSED_RETENTION_SECS=5");
    pl.wait_ready("assembler");
    let run = unique_run("forget");
    let (msgs, expected) = sim(&run, 300, 47);
    cdrctl::publish(&pl.kafka(), &msgs, 0)
        .await
        .expect("publish");
    let m = |name: &str| pl.metric("assembler", name);
    let started = std::time::Instant::now();
    while m("cdr_assembler_consumed_total") < msgs.len() as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the assembler consumed {} of {} records",
            m("cdr_assembler_consumed_total"),
            msgs.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let started = std::time::Instant::now();
    loop {
        let closed = m("cdr_assembler_calls_closed_total");
        let retained = m("cdr_assembler_retained_calls");
        let confirmed = m("cdr_assembler_commits_confirmed_total");
        if closed >= expected.calls as f64 && retained == 0.0 && confirmed > 0.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{closed} of {} calls closed, {retained} closed calls still held, \
             {confirmed} commit confirmations, {} commits issued",
            expected.calls,
            m("cdr_assembler_offset_commits_total")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(m("cdr_assembler_open_calls"), 0.0);
}

/// Every service reports how many input partitions exist beside how many
/// it owns, so a partition no live member owns (read by nobody, its lag
/// reported by nobody) raises `CdrPartitionsUnowned`
/// (deploy/prometheus/alerts.yml). One instance owns them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_reports_the_input_partitions_it_must_own() {
    let _g = stack();
    let pl = Pipeline::start("parts", &["kpi"]);
    let m = |name: &str| pl.metric("kpi", name);
    let started = std::time::Instant::now();
    // librdkafka's statistics come every 15 s.
    while m("cdr_kpi_input_partitions") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no input partition count reported"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let owned = m("cdr_kpi_partitions_owned");
    assert!(owned >= 1.0);
    assert_eq!(m("cdr_kpi_input_partitions"), owned);
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    assert!(alerts.contains("cdr_.*_input_partitions"));
}
