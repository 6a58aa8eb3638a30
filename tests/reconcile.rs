//! `cdrctl reconcile` against the real stack (issue 16): calls of a fresh
//! account land through the pipeline and are priced (`cdrctl rerate` once
//! the account is added); a carrier file is written from them in the
//! carrier's own columns and formats with planted discrepancies of every
//! kind (duration off, cost off, a call missing, calls we never saw, bad
//! rows), and reconciliation must find exactly those, store them, and the
//! finance query over the run must say the same.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use cdr_e2e::chttp::{request, User};
use cdr_e2e::*;
use cdrctl::simulate::{generate, SimConfig};
use clickhouse::Row;
use rust_decimal::Decimal;
use serde::Deserialize;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("not a decimal: {s:?}"))
}

#[derive(Debug, Row, Deserialize, Clone)]
struct Ours {
    cdr_id: String,
    call_id: String,
    dialed_e164: String,
    answer_ms: i64,
    duration_ms: i64,
    amount: String,
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_finds_exactly_the_planted_discrepancies() {
    let _g = stack();
    let run = unique_run("rc");
    let account = format!("acc-{run}");
    let (msgs, expected) = generate(&SimConfig {
        calls: 60,
        seed: 17,
        run_id: run.clone(),
        malformed_pct: 0.0,
        start_ms: cdr_kafka::now_ms() - 3_600_000,
        accounts: vec![account.clone()],
        // Calls 30 s apart on average: two calls to one number rarely
        // start within the start tolerance (the nearest start wins then).
        mean_gap_ms: 30_000,
        ..Default::default()
    });
    cdrctl::publish(&kafka(), &msgs, 0).await.expect("publish");
    let r = wait_for(&run, expected.calls as u64, 0, Duration::from_secs(180)).await;
    assert_eq!(r.calls as usize, expected.calls, "{r}");
    // Priced: the account is added and its calls re-rated.
    let tmp = std::env::temp_dir().join(format!("cdr-reconcile-{run}"));
    let cfg = rater_config_with_account(&tmp.join("cfg"), &account, None);
    let out = cdrctl_command()
        .args(["rerate", "--account", &account, "--reason", "account added"])
        .arg("--rater-config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ours: Vec<Ours> = clickhouse()
        .client()
        .query(
            "SELECT cdr_id, call_id, dialed_e164, toUnixTimestamp64Milli(assumeNotNull(answer_ts)) AS answer_ms, \
             duration_ms, toString(amount) AS amount FROM cdr.rated_cdrs_final \
             WHERE account_id = ? AND disposition = 'answered' ORDER BY setup_ts, cdr_id",
        )
        .bind(&account)
        .fetch_all()
        .await
        .unwrap();
    assert!(ours.len() >= 16, "{} answered calls", ours.len());
    assert!(ours.iter().filter(|o| d(&o.amount) > Decimal::ZERO).count() >= 8);

    // Their file: CallID, ANI, DNIS, StartTime (their start = our answer
    // time + 1 s), Secs (decimal seconds), Cost (5 places).
    let mut lines = vec!["CallID;ANI;DNIS;StartTime;Secs;Cost".to_string()];
    let mut want: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut disputed = Decimal::ZERO;
    let priced: Vec<usize> = (0..ours.len())
        .filter(|&i| d(&ours[i].amount) > Decimal::ZERO)
        .collect();
    let dur_off: Vec<usize> = priced[0..2].to_vec();
    let cost_off: Vec<usize> = priced[2..4].to_vec();
    let missing: Vec<usize> = priced[4..6].to_vec();
    for (i, o) in ours.iter().enumerate() {
        if missing.contains(&i) {
            want.entry("only_ours")
                .or_default()
                .insert(o.cdr_id.clone());
            disputed -= d(&o.amount);
            continue;
        }
        let mut secs = Decimal::new(o.duration_ms, 3);
        let mut cost = d(&o.amount).round_dp(5);
        let status = if dur_off.contains(&i) {
            secs += Decimal::from(30);
            "duration_mismatch"
        } else if cost_off.contains(&i) {
            cost += d("0.05");
            "cost_mismatch"
        } else {
            "matched"
        };
        if status != "matched" {
            disputed += cost - d(&o.amount);
        }
        want.entry(status).or_default().insert(o.cdr_id.clone());
        // Half of them carry our Call-ID; the others must match on the
        // number (national format with 00) and the start.
        let call_id = if i % 2 == 0 { o.call_id.as_str() } else { "" };
        lines.push(format!(
            "{call_id};12125550100;00{};{};{secs};{cost}",
            o.dialed_e164.trim_start_matches('+'),
            iso(o.answer_ms + 1_000)
        ));
    }
    // Calls we never saw: a number nobody dialed, and one of ours at a
    // time we have no call.
    let base = ours[0].answer_ms;
    lines.push(format!("x-1;1;+4930999999;{};61;0.012", iso(base)));
    lines.push(format!(
        "x-2;1;{};{};30;0.3",
        ours[1].dialed_e164,
        iso(base - 1_800_000)
    ));
    disputed += d("0.012") + d("0.3");
    // Bad rows.
    lines.push("x-3;1;+4930123;yesterday;61;0.01".to_string());
    lines.push(format!("x-4;1;+4930123;{};abc;0.01", iso(base)));
    let file = tmp.join("their_cdrs.csv");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let out = cdrctl_command()
        .args(["reconcile", "--carrier", &account, "--delimiter", ";"])
        .args([
            "--columns",
            "call_id=CallID,calling=ANI,called=DNIS,start=StartTime,duration=Secs,cost=Cost",
        ])
        .arg("--file")
        .arg(&file)
        .env("RUST_LOG", "warn")
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // Rejected rows: named by line and field, and a non-zero exit.
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let n = lines.len();
    assert!(
        stderr.contains(&format!("line {}: field `start`", n - 1)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("line {}: field `duration`", n)),
        "{stderr}"
    );
    let count = |k: &str| want.get(k).map_or(0, BTreeSet::len);
    assert!(
        stdout.contains(&format!(
            "matched {}, duration_mismatch 2, cost_mismatch 2, only_ours 2, only_theirs 2, rejected 2",
            count("matched")
        )),
        "{stdout}"
    );
    let run_id = stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    assert!(
        stdout.contains(&format!(
            "disputed amount (theirs - ours, unmatched rows): {}",
            disputed.normalize()
        )),
        "want {disputed}\n{stdout}"
    );

    // Stored: exactly the planted calls under each status.
    #[derive(Row, Deserialize)]
    struct R {
        status: String,
        cdr_id: String,
        their_line: u64,
        matched_on: String,
    }
    let rows: Vec<R> = clickhouse()
        .client()
        .query(
            "SELECT toString(status) AS status, cdr_id, their_line, toString(matched_on) AS matched_on \
             FROM cdr.reconciliation WHERE run_id = ?",
        )
        .bind(&run_id)
        .fetch_all()
        .await
        .unwrap();
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &rows {
        if !r.cdr_id.is_empty() {
            got.entry(r.status.clone())
                .or_default()
                .insert(r.cdr_id.clone());
        }
    }
    let want: BTreeMap<String, BTreeSet<String>> =
        want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(got, want);
    let theirs_only: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r.status == "only_theirs")
        .map(|r| r.their_line)
        .collect();
    assert_eq!(theirs_only, BTreeSet::from([n as u64 - 3, n as u64 - 2]));
    let on: BTreeSet<&str> = rows.iter().map(|r| r.matched_on.as_str()).collect();
    assert!(
        on.contains("call_id") && on.contains("called_start"),
        "{on:?}"
    );

    // The finance query over the run says the same, as the finance user.
    let sql = std::fs::read_to_string(repo().join("deploy/finance/reconciliation.sql")).unwrap();
    let tsv = request(
        &User::role("finance"),
        &[("param_carrier", account.as_str()), ("param_run_id", "")],
        &[("X-ClickHouse-Format", "TSV")],
        &sql,
    )
    .expect("reconciliation.sql");
    let mut by_status: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
    for l in tsv.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f[0], run_id, "{tsv}");
        by_status.insert(f[1].to_string(), (f[2].parse().unwrap(), d(f[9])));
    }
    assert_eq!(by_status["matched"].0 as usize, count_of(&got, "matched"));
    assert_eq!(by_status["only_theirs"].0, 2);
    assert_eq!(by_status["rejected"].0, 2);
    let q_disputed: Decimal = by_status
        .iter()
        .filter(|(k, _)| k.as_str() != "matched")
        .map(|(_, v)| v.1)
        .sum();
    assert_eq!(q_disputed, disputed);
    let _ = std::fs::remove_dir_all(&tmp);
}

fn count_of(m: &BTreeMap<String, BTreeSet<String>>, k: &str) -> usize {
    m.get(k).map_or(0, BTreeSet::len)
}
