//! `cdrctl rerate` against the real stack (issue 16): calls of an account
//! not yet in the accounts file land `unrated`; once the account is added,
//! re-rating prices them, and after a deck fix re-rating moves every
//! affected call by exactly the fix. Each time the printed diff per
//! breakout equals the change of the account's invoice lines, the old
//! rating stays queryable in `rerate_history`, the KPI rows follow, and a
//! second run changes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use cdr_e2e::*;
use cdrctl::simulate::{generate, SimConfig};
use clickhouse::Row;
use rust_decimal::Decimal;
use serde::Deserialize;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("not a decimal: {s:?}"))
}

/// Runs `cdrctl rerate` with `args`; returns (diff per breakout, changed,
/// selected, whole stdout).
fn rerate(args: &[&str]) -> (BTreeMap<String, Decimal>, u64, u64, String) {
    let out = cdrctl_command()
        .arg("rerate")
        .args(args)
        .env("RUST_LOG", "warn")
        .current_dir(repo())
        .output()
        .expect("cdrctl rerate");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut diff = BTreeMap::new();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("account\tbreakout\tcalls\told_amount\tnew_amount\tdelta")
    );
    let mut summed = Decimal::ZERO;
    for l in lines.by_ref() {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f.len(), 6, "{l}");
        if f[0] == "TOTAL" {
            assert_eq!(d(f[5]), summed, "{text}");
            assert_eq!(d(f[4]) - d(f[3]), summed, "{text}");
            break;
        }
        assert_eq!(d(f[4]) - d(f[3]), d(f[5]), "{l}");
        summed += d(f[5]);
        *diff.entry(f[1].to_string()).or_default() += d(f[5]);
    }
    let summary = lines.next().expect("summary line");
    // "run <id>: <changed> of <selected> selected calls re-rated; …"
    let w: Vec<&str> = summary.split_whitespace().collect();
    assert_eq!(w[0], "run", "{summary}");
    (diff, w[2].parse().unwrap(), w[4].parse().unwrap(), text)
}

/// The account's invoice lines of `month`: destination -> net (unrounded).
async fn invoice(
    account: &str,
    month: cdrctl::invoice::Month,
    dir: &Path,
) -> BTreeMap<String, Decimal> {
    let w = cdrctl::invoice::write(&clickhouse().client(), account, month, dir)
        .await
        .expect("invoice");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&w.json).unwrap()).unwrap();
    doc["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["destination"].as_str().unwrap().to_string(),
                d(l["net"].as_str().unwrap()),
            )
        })
        .collect()
}

fn delta(
    before: &BTreeMap<String, Decimal>,
    after: &BTreeMap<String, Decimal>,
) -> BTreeMap<String, Decimal> {
    let mut out = BTreeMap::new();
    for k in before.keys().chain(after.keys()) {
        let v =
            after.get(k).copied().unwrap_or_default() - before.get(k).copied().unwrap_or_default();
        if !v.is_zero() {
            out.insert(k.clone(), v);
        }
    }
    out
}

#[derive(Debug, Row, Deserialize, Clone, PartialEq)]
struct Cdr {
    cdr_id: String,
    version: u64,
    rating_status: String,
    deck_id: Option<String>,
    rate_per_min: String,
    amount: String,
    lrn_fee: String,
}

async fn cdrs(account: &str) -> BTreeMap<String, Cdr> {
    let rows: Vec<Cdr> = clickhouse()
        .client()
        .query(
            "SELECT cdr_id, version, toString(rating_status) AS rating_status, deck_id, \
             toString(rate_per_min) AS rate_per_min, toString(amount) AS amount, \
             toString(lrn_fee) AS lrn_fee \
             FROM cdr.rated_cdrs_final WHERE account_id = ?",
        )
        .bind(account)
        .fetch_all()
        .await
        .unwrap();
    rows.into_iter().map(|r| (r.cdr_id.clone(), r)).collect()
}

async fn scalar(sql: &str, account: &str) -> String {
    clickhouse()
        .client()
        .query(sql)
        .bind(account)
        .fetch_one::<String>()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerating_prices_an_added_account_then_a_deck_fix_once() {
    let _g = stack();
    let run = unique_run("rr");
    let account = format!("acc-{run}");
    let start_ms = cdr_kafka::now_ms() - 3_600_000;
    let (msgs, expected) = generate(&SimConfig {
        calls: 60,
        seed: 16,
        run_id: run.clone(),
        malformed_pct: 0.0,
        start_ms,
        accounts: vec![account.clone()],
        ..Default::default()
    });
    cdrctl::publish(&kafka(), &msgs, 0).await.expect("publish");
    let r = wait_for(&run, expected.calls as u64, 0, Duration::from_secs(180)).await;
    assert_eq!(r.calls as usize, expected.calls, "{r}");
    // Issue 15: every service that just moved these calls is live and
    // ready (assigned, caught up) on /healthz.
    for svc in ["assembler", "enricher", "rater", "detector", "kpi", "sink"] {
        let (code, body) = healthz(svc);
        assert_eq!(code, 200, "{svc}: {body}");
        assert!(
            body.contains("\"live\":true") && body.contains("\"ready\":true"),
            "{svc}: {body}"
        );
    }
    let landed = cdrs(&account).await;
    assert_eq!(landed.len(), expected.calls);
    assert!(landed.values().all(|c| c.rating_status != "rated"));
    let unknown: u64 = scalar(
        "SELECT toString(countIf(unrated_reason = 'unknown_account')) FROM cdr.rated_cdrs_final WHERE account_id = ?",
        &account,
    )
    .await
    .parse()
    .unwrap();
    assert!(unknown > 0);

    let month: cdrctl::invoice::Month = chrono::DateTime::from_timestamp_millis(start_ms)
        .unwrap()
        .format("%Y-%m")
        .to_string()
        .parse()
        .unwrap();
    let tmp = std::env::temp_dir().join(format!("cdr-rerate-{run}"));
    let inv0 = invoice(&account, month, &tmp.join("inv0")).await;

    // 1. The account is added: its unknown-account calls are priced.
    let added = rater_config_with_account(&tmp.join("added"), &account, None);
    let added = added.to_str().unwrap();
    let sel = ["--account", account.as_str(), "--rater-config", added];
    let (diff1, changed1, selected1, text1) =
        rerate(&[&sel[..], &["--reason", "account added"]].concat());
    assert_eq!(selected1 as usize, expected.calls, "{text1}");
    assert_eq!(changed1, unknown, "{text1}");
    let after1 = cdrs(&account).await;
    let rated1 = after1
        .values()
        .filter(|c| c.rating_status == "rated")
        .count();
    assert!(rated1 > 0, "{text1}");
    for (id, c) in &after1 {
        let old = &landed[id];
        if c.version != old.version {
            assert_eq!(cdr_model::call::rerate_generation(c.version), 1);
            // The dip fee stays the call's, once.
            assert_eq!(d(&c.lrn_fee), d(&old.lrn_fee));
        }
    }
    let inv1 = invoice(&account, month, &tmp.join("inv1")).await;
    let total = |m: &BTreeMap<String, Decimal>| m.values().copied().sum::<Decimal>();
    // The invoice moves by exactly the diff; the calls now on a
    // destination's line left the "(no destination)" line, which carried
    // no charge (unrated), so the lines move as the diff's breakouts.
    assert_eq!(total(&inv1) - total(&inv0), total(&diff1), "{text1}");
    let mut moved = delta(&inv0, &inv1);
    moved.retain(|_, v| !v.is_zero());
    let mut want = diff1.clone();
    want.retain(|_, v| !v.is_zero());
    assert_eq!(moved, want, "{text1}");

    // Again with the same tables: nothing changes.
    let (_, again, _, text) = rerate(&[&sel[..], &["--reason", "account added"]].concat());
    assert_eq!(again, 0, "{text}");
    assert_eq!(cdrs(&account).await, after1);

    // 2. A deck fix: every standard A–Z rate 0.01/min higher.
    let raise = d("0.01");
    let fixed = rater_config_with_account(&tmp.join("fixed"), &account, Some(raise));
    let fixed = fixed.to_str().unwrap();
    let sel2 = ["--account", account.as_str(), "--rater-config", fixed];
    let (diff2, changed2, _, text2) =
        rerate(&[&sel2[..], &["--reason", "standard deck fix"]].concat());
    let after2 = cdrs(&account).await;
    let std_az = |c: &Cdr| c.deck_id.as_deref() == Some("standard-az-2026-01");
    let billed = after1
        .values()
        .filter(|c| std_az(c) && d(&c.amount) > d(&c.lrn_fee))
        .count() as u64;
    assert!(billed > 0);
    assert!(changed2 >= billed, "{text2}");
    for (id, c) in &after2 {
        let old = &after1[id];
        if std_az(old) {
            assert_eq!(d(&c.rate_per_min), d(&old.rate_per_min) + raise, "{id}");
            assert_eq!(cdr_model::call::rerate_generation(c.version), 2, "{id}");
        } else {
            assert_eq!(c, old, "{id}: not on the fixed deck");
        }
    }
    let inv2 = invoice(&account, month, &tmp.join("inv2")).await;
    let mut want2 = diff2.clone();
    want2.retain(|_, v| !v.is_zero());
    assert_eq!(delta(&inv1, &inv2), want2, "{text2}");
    assert!(total(&diff2) > Decimal::ZERO);
    let (_, again, _, text) = rerate(&[&sel2[..], &["--reason", "standard deck fix"]].concat());
    assert_eq!(again, 0, "{text}");
    assert_eq!(cdrs(&account).await, after2);

    // History: every re-rated call's old rating, who and why; the stored
    // diff is the printed one.
    let history: u64 = scalar(
        "SELECT toString(count()) FROM (SELECT * FROM cdr.rerate_history WHERE account_id = ? LIMIT 1 BY cdr_id, new_version)",
        &account,
    )
    .await
    .parse()
    .unwrap();
    assert_eq!(history, changed1 + changed2);
    let stored_delta = scalar(
        "SELECT toString(sum(delta)) FROM cdr.rerate_diff WHERE account_id = ? AND reason = 'standard deck fix'",
        &account,
    )
    .await;
    assert_eq!(d(&stored_delta), total(&diff2));
    // The KPI rows follow the new amounts.
    let kpi = scalar(
        "SELECT toString(sum(amount)) FROM cdr.kpi_calls_final WHERE account_id = ?",
        &account,
    )
    .await;
    let cdr_total: Decimal = after2.values().map(|c| d(&c.amount)).sum();
    assert_eq!(d(&kpi), cdr_total);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `cdrctl rate --out FILE` (issue 16: its output went only to stdout):
/// the file holds exactly what stdout would, and stdout stays empty.
#[test]
fn cdrctl_rate_writes_its_cdrs_to_a_file() {
    let out_file = std::env::temp_dir().join(format!("rated-{}.jsonl", std::process::id()));
    let rate = |extra: &[&std::ffi::OsStr]| {
        let o = cdrctl_command()
            .args(["rate", "--decks-config", "deploy/local/config/rater.toml"])
            .args(["--numbering", "deploy/local/data/lrn/npanxx.txt"])
            .args(extra)
            .arg("schemas/examples/cdr.json")
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let printed = rate(&[]);
    assert_eq!(printed.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(v["rating"]["status"], "rated");
    let quiet = rate(&["--out".as_ref(), out_file.as_os_str()]);
    assert_eq!(quiet, "");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), printed);
    let _ = std::fs::remove_file(&out_file);
}
