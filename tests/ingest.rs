//! End-to-end: each way a real switch's payload enters the pipeline, through
//! the whole pipeline into `rated_cdrs_final` on the real broker and
//! ClickHouse:
//! * HTTP: a FreeSWITCH mod_json_cdr POST (form-encoded `cdr=`, as
//!   FreeSWITCH sends it) and a Kamailio template record on
//!   `/v1/events/kamailio`, the same POST twice billing once, a truncated
//!   document dead-lettered with format, reason and the raw record's offset;
//! * raw topic: a Kamailio record produced straight to `raw.kamailio`;
//! * file import: `cdrctl import` of an Asterisk Master.csv with one broken
//!   row (exit code 3, the row in the rejected-rows report, the good calls
//!   landed).
//!
//! The payloads are this project's own, written from the vendors' field
//! lists with this run's ids and current times.

use std::process::Command;
use std::time::{Duration, Instant};

use cdr_e2e::*;

fn http_port() -> u16 {
    std::env::var("CDR_INGEST_HTTP_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9180)
}

/// POSTs `body` with curl; returns (status, response body).
fn post(path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let f = std::env::temp_dir().join(format!(
        "ingest-{}-{}",
        std::process::id(),
        cdr_kafka::now_ms()
    ));
    std::fs::write(&f, body).unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            &format!("@{}", f.display()),
            &format!("http://127.0.0.1:{}{path}", http_port()),
        ])
        .output()
        .expect("curl");
    let _ = std::fs::remove_file(&f);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn kamailio(callid: &str, setup_s: f64, talk_s: f64) -> String {
    serde_json::json!({
        "v": "1", "event": "answered", "callid": callid, "from_tag": "ft1",
        "cli": "12125550100", "dialed": "4930123456", "account": "acc-1001",
        "trunk": "carrier-h", "source_ip": "198.51.100.30", "sip_code": "200",
        "sip_reason": "OK",
        "setup_time": format!("{setup_s:.6}"),
        "answer_time": format!("{:.6}", setup_s + 4.0),
        "end_time": format!("{:.6}", setup_s + 4.0 + talk_s),
    })
    .to_string()
}

/// A FreeSWITCH A-leg JSON CDR of an answered call (the fields mod_json_cdr
/// writes that the adapter reads), set up at `setup_us`.
fn freeswitch(uuid: &str, sip_call_id: &str, setup_us: i64, talk_ms: i64) -> String {
    let answer = setup_us + 4_000_000;
    let end = answer + talk_ms * 1000;
    let s = |us: i64| (us / 1_000_000).to_string();
    serde_json::json!({
        "core-uuid": "0d0c0b0a-0000-4000-8000-00000000e2e0",
        "switchname": "fs-lab-1",
        "channel_data": {"state": "CS_REPORTING", "direction": "inbound"},
        "variables": {
            "direction": "inbound", "uuid": uuid, "call_uuid": uuid,
            "sip_from_user": "12125550100", "sip_req_user": "4930123456",
            "sip_to_user": "4930123456", "sip_call_id": sip_call_id,
            "sip_network_ip": "203.0.113.10", "accountcode": "acc-1001",
            "last_bridge_role": "originator", "rtp_use_codec_name": "PCMA",
            "sip_term_status": "200", "hangup_cause": "NORMAL_CLEARING",
            "hangup_cause_q850": "16",
            "start_epoch": s(setup_us), "start_uepoch": setup_us.to_string(),
            "answer_epoch": s(answer), "answer_uepoch": answer.to_string(),
            "end_epoch": s(end), "end_uepoch": end.to_string(),
            "duration": ((end - setup_us) / 1_000_000).to_string(),
            "billsec": ((end - answer) / 1_000_000).to_string(),
            "billmsec": ((end - answer) / 1000).to_string(),
            "billusec": (end - answer).to_string(),
        }
    })
    .to_string()
}

/// Waits until the ingest endpoint answers (the service may just have been
/// started by `stack()`).
fn ready() {
    let started = Instant::now();
    loop {
        let ok = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{}/healthz", http_port())])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ingest HTTP endpoint not up on port {}",
            http_port()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

async fn count(sql: &str) -> u64 {
    clickhouse()
        .client()
        .query(sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or(0)
}

/// Waits until `sql` (a count) reaches `want`; returns the last count.
async fn until(sql: &str, want: u64, timeout: Duration) -> u64 {
    let started = Instant::now();
    loop {
        let n = count(sql).await;
        if n >= want || started.elapsed() > timeout {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_raw_topic_and_file_import_all_land_rated() {
    let _g = stack();
    ready();
    let run = unique_run("ing");
    let now_ms = cdr_kafka::now_ms() - 120_000;
    let wait = Duration::from_secs(120);

    // 1. FreeSWITCH mod_json_cdr, form-encoded as FreeSWITCH posts it, twice.
    let fs_uuid = format!("{run}-fs-uuid");
    let doc = freeswitch(
        &fs_uuid,
        &format!("{run}-fs@203.0.113.10"),
        now_ms * 1000,
        61_250,
    );
    let form = format!("uuid={fs_uuid}&cdr={}", form_encode(&doc));
    for _ in 0..2 {
        let (code, body) = post(
            "/v1/cdr/freeswitch?switch=fs-lab-1",
            "application/x-www-form-urlencoded",
            form.as_bytes(),
        );
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("raw.freeswitch"), "{body}");
    }
    // 2. Kamailio on the generic endpoint.
    let kam_http = format!("{run}-kam-http@198.51.100.30");
    let (code, body) = post(
        "/v1/events/kamailio?switch=kam-lab-1",
        "application/json",
        kamailio(&kam_http, now_ms as f64 / 1000.0, 125.0).as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    // 3. A truncated document: accepted by HTTP (the broker has it), then
    // dead-lettered by the adapter stage naming the format.
    let (code, body) = post(
        "/v1/events/kamailio?switch=kam-lab-1",
        "application/json",
        br#"{"v":"1","event":"answered","callid":"trunc"#,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).expect("ack body");
    let (part, off) = (
        v["partition"].as_i64().unwrap(),
        v["offset"].as_i64().unwrap(),
    );
    // Unknown format and unknown switch are the caller's error: 400.
    assert_eq!(post("/v1/events/nope", "application/json", b"{}").0, 400);
    assert_eq!(
        post("/v1/events/kamailio?switch=nope", "application/json", b"{}").0,
        400
    );

    // 4. Raw topic: a switch publishing to Kafka itself.
    let kam_raw = format!("{run}-kam-raw@198.51.100.30");
    {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::FutureRecord;
        let p = cdr_kafka::runtime::producer(&kafka(), "e2e-raw").unwrap();
        let payload = kamailio(&kam_raw, now_ms as f64 / 1000.0 + 30.0, 65.0);
        let topic = p.topic("raw.kamailio");
        p.send(
            FutureRecord::to(&topic)
                .key(&kam_raw)
                .payload(&payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "switch-id",
                    value: Some("kam-lab-1"),
                })),
            Duration::from_secs(10),
        )
        .await
        .expect("raw record acknowledged");
    }

    // 5. File import: Asterisk Master.csv, two good calls and a broken row.
    let ts = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let (s1, s2) = (now_ms - 60_000, now_ms - 30_000);
    let csv = format!(
        "\"acc-1001\",\"12125550100\",\"4930123456\",\"from-customer\",\"\",\"SIP/c-1\",\"SIP/carrier-c-1\",\"Dial\",\"SIP/carrier-c/4930123456,60\",\"{}\",\"{}\",\"{}\",95,90,\"ANSWERED\",\"DOCUMENTATION\",\"{run}.1\",\"\",\"\",\"{run}.1\",1\n\
         \"acc-1001\",\"12125550100\",\"4930123457\",\"from-customer\",\"\",\"SIP/c-2\",\"SIP/carrier-c-2\",\"Dial\",\"SIP/carrier-c/4930123457,60\",\"{}\",,\"{}\",3,0,\"BUSY\",\"DOCUMENTATION\",\"{run}.2\",\"\",\"\",\"{run}.2\",2\n\
         \"acc-1001\",\"broken\"\n",
        ts(s1),
        ts(s1 + 5_000),
        ts(s1 + 95_000),
        ts(s2),
        ts(s2 + 3_000),
    );
    let dir = std::env::temp_dir().join(format!("e2e-import-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Master.csv");
    let rejects = dir.join("rejects.jsonl");
    std::fs::write(&file, csv).unwrap();
    let out = cdrctl_command()
        .current_dir(repo())
        .args([
            "import",
            "--format",
            "asterisk-csv",
            "--switch",
            "ast-lab-1",
            "--rejects",
            rejects.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .output()
        .expect("cdrctl import");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "a rejected row exits 3: {said}");
    assert!(said.contains("2 events published"), "{said}");
    let report = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(report.lines().count(), 1, "{report}");
    let row: serde_json::Value = serde_json::from_str(report.lines().next().unwrap()).unwrap();
    assert_eq!(row["record"], 3);
    assert_eq!(row["format"], "asterisk-csv");

    // Everything lands once, rated.
    let rated =
        |call: &str| format!("SELECT count() FROM cdr.rated_cdrs_final WHERE call_id = '{call}'");
    // FreeSWITCH: the call id is the A-leg's uuid (see the adapter README).
    let fs = until(
        &format!("SELECT count() FROM cdr.rated_cdrs_final WHERE call_id LIKE '%{fs_uuid}%' OR call_id LIKE '%{run}-fs@%'"),
        1,
        wait,
    )
    .await;
    assert_eq!(fs, 1, "the FreeSWITCH CDR posted twice is one call");
    assert_eq!(
        until(&rated(&kam_http), 1, wait).await,
        1,
        "Kamailio over HTTP"
    );
    assert_eq!(
        until(&rated(&kam_raw), 1, wait).await,
        1,
        "Kamailio on raw.kamailio"
    );
    let ast = until(
        &format!("SELECT count() FROM cdr.rated_cdrs_final WHERE call_id LIKE '%{run}.%'"),
        2,
        wait,
    )
    .await;
    assert_eq!(ast, 2, "both good Master.csv rows");
    let billed = count(&format!(
        "SELECT toUInt64(sum(billable_seconds)) FROM cdr.rated_cdrs_final WHERE call_id = '{kam_http}'"
    ))
    .await;
    assert_eq!(billed, 125, "Kamailio talk time 125 s");
    let answered = count(&format!(
        "SELECT count() FROM cdr.rated_cdrs_final WHERE (call_id LIKE '%{fs_uuid}%' OR call_id LIKE '%{run}-fs@%') AND disposition = 'answered' AND rating_status = 'rated'"
    ))
    .await;
    assert_eq!(answered, 1, "the FreeSWITCH call is answered and rated");
    // The truncated document's dead letter names the format and the record.
    let dead = until(
        &format!(
            "SELECT count() FROM cdr.dead_letters_final WHERE service = 'ingest' AND topic = 'raw.kamailio' AND partition = {part} AND offset = {off} AND reason = 'malformed' AND message LIKE '%kamailio%'"
        ),
        1,
        wait,
    )
    .await;
    assert_eq!(
        dead, 1,
        "the truncated payload is dead-lettered with its format"
    );
}
