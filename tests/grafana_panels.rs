//! The Grafana dashboards in `deploy/grafana/dashboards` run against real
//! data: fixture rows (ids prefixed `gf-test-`, timestamps on 2025-01-15 UTC)
//! go into every table the panels read; every template-variable query and
//! every ClickHouse panel query is run with the ClickHouse plugin's macros
//! and the variables expanded, as the read-only Grafana user `cdr_grafana`.
//! A query fails the test when it errors, when it finds nothing although
//! the fixtures are in its window, or when it still finds something in an
//! empty window (its time filter does not work). Key panels are checked
//! against values computed from the fixtures. Prometheus panels: every
//! `cdr_*` metric a query names must be defined in the Rust sources.
//!
//! Needs ClickHouse only (no Kafka, no services); runs
//! `deploy/local/start.sh` when ClickHouse is not reachable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cdr_e2e::chttp::{self, User};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

/// Fixture window: 2025-01-15 00:00:00 .. 2025-01-16 00:00:00 UTC.
const FROM_S: i64 = 1_736_899_200;
const TO_S: i64 = FROM_S + 86_400;
/// A day with no data at all (2001-01-01): every time-filtered panel must
/// come back empty.
const EMPTY_FROM_S: i64 = 978_307_200;
/// `$__interval_s` / `$__timeInterval` bucket.
const INTERVAL_S: i64 = 60;
const PREFIX: &str = "gf-test-";

const WS1: &str = "gf-test-ws-1";
const WS2: &str = "gf-test-ws-2";
const RT1: &str = "gf-test-rt-1";
const TRK1: &str = "gf-test-trk-1";
const TRK2: &str = "gf-test-trk-2";
const DE: &str = "gf-test-Germany Fixed";
const UK: &str = "gf-test-UK Mobile";
const SVC: &str = "gf-test-enricher";
const ALERT: &str = "gf-test-alert-1";

const CH_UID: &str = "cdr-clickhouse";
const CH_TYPE: &str = "grafana-clickhouse-datasource";
const PROM_UID: &str = "cdr-prometheus";

// --- ClickHouse over plain HTTP ----------------------------------------------

/// Queries as the dashboards run them (see [`Ch::table`]).
struct Ch;

/// A query result (JSONCompact): column names and rows.
#[derive(Debug, Clone)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column `{name}` in {:?}", self.columns))
    }
    fn text(&self, row: &[Value], name: &str) -> String {
        match &row[self.col(name)] {
            Value::String(s) => s.clone(),
            Value::Null => "NULL".into(),
            v => v.to_string(),
        }
    }
    fn dec(&self, row: &[Value], name: &str) -> Decimal {
        let t = self.text(row, name);
        Decimal::from_str(&t)
            .or_else(|_| Decimal::from_scientific(&t))
            .unwrap_or_else(|e| panic!("column `{name}` = `{t}` is not a decimal: {e}"))
    }
    /// Rows whose column `name` starts with the fixture prefix.
    fn fixture_rows(&self, name: &str) -> Vec<&Vec<Value>> {
        self.rows
            .iter()
            .filter(|r| self.text(r, name).starts_with(PREFIX))
            .collect()
    }
    /// At least one cell that carries information (not NULL, 0, "", [] or
    /// the epoch): an aggregate over nothing returns one row of zeros.
    fn has_data(&self) -> bool {
        self.rows.iter().any(|r| r.iter().any(meaningful))
    }
}

fn meaningful(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => {
            !(s.is_empty()
                || s.parse::<f64>().map(|f| f == 0.0).unwrap_or(false)
                || s.starts_with("1970-01-01"))
        }
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl Ch {
    /// Runs a SELECT and returns it as a table; decimals and 64-bit integers
    /// come back as strings (exact).
    fn table(&self, user: &User, sql: &str) -> Result<Table, String> {
        let body = chttp::request(
            user,
            &[
                ("output_format_json_quote_decimals", "1"),
                ("output_format_json_quote_64bit_integers", "1"),
                // What the Grafana plugin sets on every query.
                ("max_execution_time", "60"),
            ],
            &[("X-ClickHouse-Format", "JSONCompact")],
            sql,
        )?;
        let v: Value =
            serde_json::from_str(&body).map_err(|e| format!("bad JSON ({e}): {body}"))?;
        let columns = v["meta"]
            .as_array()
            .ok_or("no meta")?
            .iter()
            .map(|m| m["name"].as_str().unwrap_or_default().to_string())
            .collect();
        let rows = v["data"]
            .as_array()
            .ok_or("no data")?
            .iter()
            .map(|r| r.as_array().cloned().unwrap_or_default())
            .collect();
        Ok(Table { columns, rows })
    }
}

fn repo() -> PathBuf {
    cdr_e2e::repo()
}

// --- fixtures ------------------------------------------------------------------

/// "YYYY-MM-DD hh:mm:ss.mmm" (UTC) of epoch milliseconds.
fn ts(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[derive(Clone)]
struct Call {
    cdr_id: String,
    account: &'static str,
    plan: &'static str,
    trunk: &'static str,
    dest: &'static str,
    setup_ms: i64,
    pdd_ms: i64,
    /// Answered seconds; 0 = not answered.
    talk_s: i64,
    disposition: &'static str,
    sip: i32,
    amount: Decimal,
    lrn_fee: Decimal,
    mos: f64,
    jitter: f64,
    loss: f64,
    fas_score: f64,
    fas_signals: Vec<&'static str>,
}

impl Call {
    fn answered(&self) -> bool {
        self.talk_s > 0
    }
    fn end_ms(&self) -> i64 {
        self.setup_ms
            + self.pdd_ms
            + if self.answered() {
                2000 + self.talk_s * 1000
            } else {
                1000
            }
    }
    fn row(&self, version: u64, amount: Decimal) -> Value {
        let answer = self
            .answered()
            .then(|| ts(self.setup_ms + self.pdd_ms + 2000));
        let media = |x: f64| {
            if self.answered() {
                json!(x)
            } else {
                Value::Null
            }
        };
        json!({
            "cdr_id": self.cdr_id, "version": version, "call_id": format!("{}-call", self.cdr_id),
            "switch_id": "gf-test-sw", "account_id": self.account, "direction": "outbound",
            "dialed": "4930123456", "trunk_id": self.trunk,
            "setup_ts": ts(self.setup_ms), "progress_ts": ts(self.setup_ms + self.pdd_ms),
            "answer_ts": answer, "end_ts": ts(self.end_ms()),
            "final_sip_code": self.sip, "disposition": self.disposition,
            "duration_ms": self.talk_s * 1000, "billable_seconds": self.talk_s,
            "pdd_ms": self.pdd_ms, "mos": media(self.mos), "jitter_ms": media(self.jitter),
            "loss_pct": media(self.loss), "assembled_at": ts(self.end_ms() + 500),
            "dialed_e164": "4930123456", "lrn_fee": self.lrn_fee.to_string(),
            "lrn_source": if self.lrn_fee.is_zero() { "cache" } else { "dip" },
            "callee_number_type": "fixed", "rating_status": "rated", "plan": self.plan,
            "deck_id": "gf-test-deck", "deck_version": 1, "matched_prefix": "49",
            "destination": self.dest, "billed_seconds": self.talk_s,
            "rate_per_min": "0.01", "increment": "1/1", "amount": amount.to_string(),
            "currency": "USD", "fas_score": self.fas_score, "fas_signals": self.fas_signals,
            "rating_flags": if self.plan == "retail" { vec![] } else { vec!["lrn_rated"] },
        })
    }
}

fn calls() -> Vec<Call> {
    let base = FROM_S * 1000 + 10 * 3_600_000; // 10:00 UTC
    let mut v = Vec::new();
    let mk = |id: String, account, plan, trunk, dest, minute: i64| Call {
        cdr_id: id,
        account,
        plan,
        trunk,
        dest,
        setup_ms: base + minute * 60_000 + 123,
        pdd_ms: 1500 + minute * 100,
        talk_s: 0,
        disposition: "failed",
        sip: 503,
        amount: Decimal::ZERO,
        lrn_fee: Decimal::ZERO,
        mos: 4.3,
        jitter: 5.0,
        loss: 0.1,
        fas_score: 0.0,
        fas_signals: vec![],
    };
    // Conforming wholesale account: 8 of 10 answered, 120 s each.
    for i in 0..10 {
        let mut c = mk(format!("gf-test-cdr-ws1-{i}"), WS1, "standard", TRK1, DE, i);
        if i < 8 {
            c.talk_s = 120;
            c.disposition = "answered";
            c.sip = 200;
            c.amount = d("0.019");
        } else {
            c.disposition = "busy";
            c.sip = 486;
        }
        if i < 2 || i == 8 {
            c.lrn_fee = d("0.0003");
            c.amount += if c.answered() {
                c.lrn_fee
            } else {
                Decimal::ZERO
            };
        }
        v.push(c);
    }
    // Non-conforming wholesale account on the FAS route: 3 of 10 answered, 20 s.
    for i in 0..10 {
        let mut c = mk(
            format!("gf-test-cdr-ws2-{i}"),
            WS2,
            "standard",
            TRK2,
            UK,
            20 + i,
        );
        if i < 3 {
            c.talk_s = 20;
            c.disposition = "answered";
            c.sip = 200;
            c.amount = d("0.016666666666666667");
            c.mos = 3.1;
            c.jitter = 40.0;
            c.loss = 2.5;
            c.fas_score = 0.9;
            c.fas_signals = vec!["instant_answer", "media_silence"];
        }
        v.push(c);
    }
    // Retail account: 4 answered 30 s calls.
    for i in 0..4 {
        let mut c = mk(
            format!("gf-test-cdr-rt1-{i}"),
            RT1,
            "retail",
            TRK1,
            UK,
            40 + i,
        );
        c.talk_s = 30;
        c.disposition = "answered";
        c.sip = 200;
        c.amount = d("0.03");
        v.push(c);
    }
    v
}

/// Mirrors `ner_ok` in services/kpi/src/core.rs (what kpi_calls.ner_ok counts).
fn ner_ok(c: &Call) -> bool {
    c.answered()
        || matches!(c.disposition, "busy" | "no_answer")
        || [404, 410, 484, 485, 600, 603, 604].contains(&c.sip)
}

/// One `kpi_calls` row per call (what the kpi service writes), plus an
/// older copy of the first call (lower version) that `kpi_minute_final`
/// must not count.
fn kpi_rows(calls: &[Call]) -> Vec<Value> {
    let mut rows = Vec::new();
    for c in calls {
        let minute = c.end_ms() / 60_000 * 60_000;
        let ans = c.answered();
        let media = |v: f64| if ans { json!(v) } else { Value::Null };
        rows.push(json!({
            "cdr_id": c.cdr_id, "call_id": c.cdr_id, "version": 2, "minute": ts(minute)[..19].to_string(),
            "account_id": c.account, "trunk_id": c.trunk, "destination": c.dest,
            "disposition": c.disposition, "answered": u8::from(ans),
            "busy": u8::from(c.disposition == "busy"), "no_answer": u8::from(c.disposition == "no_answer"),
            "failed": u8::from(c.disposition == "failed"), "cancelled": 0, "stale": 0,
            "ner_ok": u8::from(ner_ok(c)), "short_call": u8::from(ans && c.talk_s < 30),
            "answered_ms": c.talk_s * 1000, "pdd_ms": c.pdd_ms, "billed_seconds": c.talk_s,
            "amount": c.amount.to_string(), "lrn_fee": c.lrn_fee.to_string(),
            "mos": media(c.mos), "jitter_ms": media(c.jitter), "loss_pct": media(c.loss),
        }));
    }
    let mut stale = rows[0].clone();
    stale["version"] = json!(1);
    stale["answered"] = json!(0);
    stale["failed"] = json!(1);
    stale["amount"] = json!("9.99");
    rows.push(stale);
    rows
}

const FIXTURE_TABLES: &[(&str, &str)] = &[
    ("rated_cdrs", "account_id"),
    ("kpi_calls", "account_id"),
    ("dead_letters", "service"),
    ("account_plan_changes", "account_id"),
    ("account_alerts", "account_id"),
    ("route_alerts", "trunk_id"),
    ("route_status", "trunk_id"),
    ("adjustments", "account_id"),
    ("reconciliation_runs", "carrier"),
];

fn delete_fixtures() {
    for (table, col) in FIXTURE_TABLES {
        chttp::exec(
            &User::admin(),
            &format!("DELETE FROM cdr.{table} WHERE {col} LIKE '{PREFIX}%'"),
        )
        .unwrap_or_else(|e| panic!("clean {table}: {e}"));
    }
}

fn insert_fixtures(calls: &[Call]) {
    let t = |h: i64, m: i64| ts(FROM_S * 1000 + h * 3_600_000 + m * 60_000);
    // Redelivered copies go in separate INSERTs: ReplacingMergeTree would
    // collapse them within one insert block, and the dashboards must cope
    // with copies that are not merged yet.
    let cdrs: Vec<Value> = calls.iter().map(|c| c.row(2, c.amount)).collect();
    chttp::insert("rated_cdrs", &cdrs);
    // An older copy with another amount: rated_cdrs_final must keep version 2.
    chttp::insert("rated_cdrs", &[calls[0].row(1, d("9.99"))]);
    let mut kpi = kpi_rows(calls);
    let stale = kpi.pop().unwrap();
    chttp::insert("kpi_calls", &kpi);
    chttp::insert("kpi_calls", &[stale]);

    let dl = |id: &str, reason: &str| {
        json!({"id": id, "service": SVC, "reason": reason, "field": "payload",
               "message": "gf-test: not JSON", "topic": "cdr.enriched", "partition": 0,
               "offset": 42, "key": "k", "payload_b64": "eA==", "at": t(10, 5)})
    };
    chttp::insert(
        "dead_letters",
        &[
            dl("gf-test-dl-1", "gf_test_bad_json"),
            dl("gf-test-dl-2", "gf_test_bad_json"),
            dl("gf-test-dl-3", "gf_test_schema"),
        ],
    );
    chttp::insert("dead_letters", &[dl("gf-test-dl-1", "gf_test_bad_json")]);

    let change = json!({"change_id": "gf-test-change-1", "account_id": WS2, "old_plan": "wholesale",
        "new_plan": "retail", "reason": "ASR 0.30 < 0.50 and ACD 20 s < 60 s over 24 h",
        "asr": 0.3, "acd_s": 20.0, "sample_seizures": 10, "window_secs": 86400,
        "decided_at": t(12, 0), "source": "auto", "actor": "rater"});
    chttp::insert("account_plan_changes", std::slice::from_ref(&change));
    chttp::insert("account_plan_changes", &[change]);

    chttp::insert(
        "account_alerts",
        &[
            json!({"alert_id": "gf-test-aa-1", "account_id": WS2, "kind": "undeclared_dialer",
            "declared": "conversational", "observed": "dialer",
            "evidence": {"asr": 0.3, "short_call_share": 1.0},
            "window_start": t(10, 0), "window_end": t(11, 0), "raised_at": t(11, 1)}),
        ],
    );

    let credits: Vec<&Call> = calls
        .iter()
        .filter(|c| c.account == WS2 && c.answered())
        .collect();
    let credited: Decimal = credits.iter().map(|c| -c.amount).sum();
    let alert = json!({"alert_id": ALERT, "trunk_id": TRK2, "breakout": UK,
        "window_start": t(10, 0), "window_end": t(10, 30),
        "patterns": ["instant_answer_rate", "high_asr_low_acd"],
        "evidence": {"instant_answer_rate": 1.0, "asr": 0.3}, "action": "pull",
        "credited_calls": credits.len(), "credited_amount": credited.to_string(),
        "raised_at": t(10, 31)});
    chttp::insert("route_alerts", std::slice::from_ref(&alert));
    chttp::insert("route_alerts", &[alert]);

    let status = |id: &str, trunk: &str, breakout: &str, status: &str, at: String| {
        json!({"event_id": id, "trunk_id": trunk, "breakout": breakout, "status": status,
               "reason": "gf-test", "alert_id": ALERT, "actor": "detector", "changed_at": at})
    };
    chttp::insert(
        "route_status",
        &[
            status("gf-test-ev-1", TRK2, UK, "pulled", t(10, 31)),
            status("gf-test-ev-2", TRK1, DE, "pulled", t(9, 0)),
            status("gf-test-ev-3", TRK1, DE, "active", t(11, 0)),
        ],
    );

    let adj: Vec<Value> = credits
        .iter()
        .map(|c| {
            json!({"adjustment_id": format!("gf-test-adj-{}", c.cdr_id), "cdr_id": c.cdr_id,
                "account_id": c.account, "amount": (-c.amount).to_string(), "currency": "USD",
                "reason": "fas_credit", "alert_id": ALERT, "call_setup_ts": ts(c.setup_ms),
                "created_at": t(10, 31)})
        })
        .collect();
    chttp::insert("adjustments", &adj);
    chttp::insert("adjustments", &adj[..1]); // redelivered

    let rec = json!({"run_id": "gf-test-rc-1", "carrier": WS2, "file": "gf-test.csv",
        "file_sha256": "00", "reconciled_at": t(13, 0), "period_from": t(0, 0),
        "period_to": t(24, 0), "tolerances": "{}", "actor": "gf-test", "our_calls": 10,
        "their_calls": 9, "our_seconds": 600, "their_seconds": 570, "our_amount": "1.5",
        "their_cost": "1.45", "matched": 8, "duration_mismatch": 1, "cost_mismatch": 0,
        "only_ours": 1, "only_theirs": 0, "rejected": 0, "disputed_amount": "-0.05"});
    chttp::insert("reconciliation_runs", &[rec]);
}

// --- dashboards ----------------------------------------------------------------

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f.file_name().unwrap().to_string_lossy().to_string(), v)
        })
        .collect()
}

/// Panels, including those nested in collapsed rows.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for q in p["panels"].as_array().into_iter().flatten() {
            out.push(q);
        }
    }
    out
}

/// Replaces `name(arg)` macros (balanced parentheses) with `f(arg)`.
fn replace_fn_macro(sql: &str, name: &str, f: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = sql;
    let open = format!("{name}(");
    while let Some(i) = rest.find(&open) {
        out.push_str(&rest[..i]);
        let args = &rest[i + open.len()..];
        let mut depth = 1;
        let mut end = None;
        for (j, ch) in args.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.unwrap_or_else(|| panic!("unbalanced {name}( in {sql}"));
        out.push_str(&f(args[..end].trim()));
        rest = &args[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Expands the ClickHouse plugin's macros as the plugin does (v4) for the
/// window [from, to] and the `${var:singlequote}` variables.
fn expand(sql: &str, from: i64, to: i64, vars: &BTreeMap<String, Vec<String>>) -> String {
    let mut s = replace_fn_macro(sql, "$__timeFilter", |c| {
        format!("{c} >= toDateTime({from}) AND {c} <= toDateTime({to})")
    });
    s = replace_fn_macro(&s, "$__timeInterval", |c| {
        format!("toStartOfInterval(toDateTime({c}), INTERVAL {INTERVAL_S} second)")
    });
    s = s
        .replace("$__fromTime", &format!("toDateTime({from})"))
        .replace("$__toTime", &format!("toDateTime({to})"))
        .replace("$__interval_s", &INTERVAL_S.to_string());
    for (name, values) in vars {
        let quoted: Vec<String> = values
            .iter()
            .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect();
        s = s.replace(&format!("${{{name}:singlequote}}"), &quoted.join(","));
    }
    assert!(
        !s.contains('$'),
        "unexpanded macro or variable (only $__timeFilter, $__timeInterval, $__fromTime, \
         $__toTime, $__interval_s and ${{var:singlequote}} are supported):\n{s}"
    );
    s
}

fn uses_time(sql: &str) -> bool {
    [
        "$__timeFilter",
        "$__timeInterval",
        "$__fromTime",
        "$__toTime",
    ]
    .iter()
    .any(|m| sql.contains(m))
}

// --- Prometheus metric names --------------------------------------------------

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// String literals whose opening quote is the last `"` of `marker` (e.g.
/// `"cdr_` or `("`), content from that quote on.
fn literals_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    let skip = marker.rfind('"').expect("marker ends in a quote") + 1;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let body = &rest[i + skip..];
        match body.find('"') {
            Some(end) => {
                out.push(&body[..end]);
                rest = &body[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// String literals of a Rust source (comments and char literals skipped;
/// raw strings are not handled, none names a metric).
fn string_literals(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') => i += 4,
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                out.push(&text[i + 1..j.min(b.len())]);
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Every metric name the services can register: `"cdr_…"` literals, plus
/// `format!("cdr_{service}_{what}")`-style templates, expanded with every
/// service's `SERVICE` name (all of them run the shared stage runtime) and
/// the word literals of the template's file (`n("consumed_total")`,
/// `c("lrn_dips_total", …)`).
fn known_metrics() -> BTreeSet<String> {
    let root = repo();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("services"), &mut files);
    let mut known = BTreeSet::new();
    let mut services = BTreeSet::new();
    let mut templates = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        if f.starts_with(root.join("services")) {
            for s in literals_after(&text, "const SERVICE: &str = \"") {
                services.insert(s.to_string());
            }
        }
        let literals = string_literals(&text);
        for name in literals.iter().filter(|l| l.starts_with("cdr_")) {
            if is_word(name) {
                known.insert(name.to_string());
            } else if name.contains('{') {
                let words: BTreeSet<String> = literals
                    .iter()
                    .filter(|w| is_word(w))
                    .map(|w| w.to_string())
                    .collect();
                templates.push((name.to_string(), words));
            }
        }
    }
    assert!(services.len() >= 6, "services not found: {services:?}");
    for (template, words) in templates {
        // Literal parts around the `{…}` placeholders.
        let mut parts = Vec::new();
        let mut rest = template.as_str();
        while let Some(i) = rest.find('{') {
            parts.push(&rest[..i]);
            rest = &rest[rest[i..].find('}').map(|j| i + j + 1).unwrap_or(rest.len())..];
        }
        parts.push(rest);
        for w in &words {
            match parts.len() {
                2 => {
                    known.insert(format!("{}{w}{}", parts[0], parts[1]));
                }
                3 => {
                    for s in &services {
                        known.insert(format!("{}{s}{}{w}{}", parts[0], parts[1], parts[2]));
                    }
                }
                _ => {}
            }
        }
    }
    known
}

/// `cdr_*` metric names in a PromQL expression; one `(a|b|c)` alternation
/// (from a `{__name__=~"…"}` matcher) is expanded.
fn promql_metrics(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(j) = expr[i..].find("cdr_") {
        let start = i + j;
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            i = start + 4;
            continue;
        }
        let mut k = start;
        let (mut head, mut alts, mut tail) = (String::new(), Vec::<String>::new(), String::new());
        while k < b.len() {
            let c = b[k] as char;
            if c.is_ascii_alphanumeric() || c == '_' {
                if alts.is_empty() {
                    head.push(c)
                } else {
                    tail.push(c)
                }
                k += 1;
            } else if c == '(' && alts.is_empty() {
                let close = expr[k..].find(')').map(|x| k + x).unwrap_or(b.len());
                alts = expr[k + 1..close].split('|').map(str::to_string).collect();
                k = close + 1;
            } else {
                break;
            }
        }
        if alts.is_empty() {
            out.push(head);
        } else {
            out.extend(alts.iter().map(|a| format!("{head}{a}{tail}")));
        }
        i = k.max(start + 4);
    }
    out
}

fn metric_defined(name: &str, known: &BTreeSet<String>) -> bool {
    known.contains(name)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s).is_some_and(|b| known.contains(b)))
}

// --- the test --------------------------------------------------------------------

fn check_provisioning() {
    let root = repo().join("deploy/grafana/provisioning");
    let ds = std::fs::read_to_string(root.join("datasources/clickhouse.yaml")).unwrap();
    for needle in [
        "type: grafana-clickhouse-datasource",
        "uid: cdr-clickhouse",
        "protocol: http",
        "port: 8123",
        "username: cdr_grafana",
        "$CDR_CH_GRAFANA_PASSWORD",
        "defaultDatabase: cdr",
        "type: prometheus",
        "uid: cdr-prometheus",
    ] {
        assert!(ds.contains(needle), "clickhouse.yaml lacks `{needle}`");
    }
    let db = std::fs::read_to_string(root.join("dashboards/dashboards.yaml")).unwrap();
    assert!(
        db.contains("type: file") && db.contains("path:"),
        "dashboards.yaml: {db}"
    );
}

/// Variables that must list exactly these fixture values.
fn expected_var_values(uid: &str, var: &str) -> Option<Vec<&'static str>> {
    Some(match (uid, var) {
        ("cdr-conformance", "account") => vec![WS1, WS2], // no retail account
        ("cdr-billing", "account") | ("cdr-traffic", "account") | ("cdr-quality", "account") => {
            vec![RT1, WS1, WS2]
        }
        (_, "trunk") => vec![TRK1, TRK2],
        (_, "breakout") => vec![DE, UK],
        ("cdr-pipeline", "service") => vec![SVC],
        _ => return None,
    })
}

#[test]
fn grafana_panels_run_against_fixtures() {
    check_provisioning();
    let ch = Ch;
    chttp::ensure_clickhouse();
    let grafana = User::role("grafana");
    match chttp::exec(&grafana, "SELECT currentUser()") {
        Ok(u) => assert!(u.contains("cdr_grafana"), "{u}"),
        Err(e) => panic!(
            "cannot log in as cdr_grafana ({e}); ClickHouse is running with an older \
             config: restart it (deploy/local/stop.sh, deploy/local/start.sh)"
        ),
    }
    // The dashboards' user is read-only.
    let denied = chttp::exec(
        &grafana,
        "INSERT INTO cdr.dead_letters (id, service) VALUES ('gf-test-evil', 'gf-test-evil')",
    )
    .expect_err("cdr_grafana must not insert");
    assert!(denied.contains("ACCESS_DENIED"), "{denied}");

    delete_fixtures();
    let calls = calls();
    insert_fixtures(&calls);

    let known = known_metrics();
    assert!(
        known.contains("cdr_sink_consumer_lag") && known.contains("cdr_enricher_lrn_dips_total"),
        "metric discovery broken: {known:?}"
    );

    let mut uids = BTreeSet::new();
    let mut results: BTreeMap<(String, String), Table> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut counts = (0, 0, 0);
    for (file, dash) in dashboards() {
        let uid = dash["uid"].as_str().unwrap_or_default().to_string();
        assert!(uids.insert(uid.clone()), "{file}: duplicate uid `{uid}`");

        // Template variables, in order (later ones may use earlier ones).
        let mut vars: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for v in dash["templating"]["list"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap().to_string();
            assert_eq!(v["datasource"]["uid"], CH_UID, "{file}: variable {name}");
            let q = match &v["query"] {
                Value::String(s) => s.clone(),
                o => o["rawSql"].as_str().unwrap_or_default().to_string(),
            };
            let sql = expand(&q, FROM_S, TO_S, &vars);
            let t = ch
                .table(&grafana, &sql)
                .unwrap_or_else(|e| panic!("{file}: variable {name}: {e}\n{sql}"));
            let mut got: Vec<String> = t
                .rows
                .iter()
                .map(|r| match &r[0] {
                    Value::String(s) => s.clone(),
                    x => x.to_string(),
                })
                .filter(|s| s.starts_with(PREFIX))
                .collect();
            got.sort();
            match expected_var_values(&uid, &name) {
                Some(want) => assert_eq!(got, want, "{file}: variable {name}\n{sql}"),
                None => assert!(
                    !got.is_empty(),
                    "{file}: variable {name} lists no fixture value"
                ),
            }
            vars.insert(name, got);
            counts.0 += 1;
        }

        let mut ids = BTreeSet::new();
        for p in panels(&dash) {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            if p["type"] == "row" {
                continue;
            }
            assert!(
                ids.insert(p["id"].to_string()),
                "{file}: duplicate panel id in `{title}`"
            );
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: panel `{title}` has no query");
            for t in targets {
                let ds = if t["datasource"].is_object() {
                    &t["datasource"]
                } else {
                    &p["datasource"]
                };
                match ds["uid"].as_str() {
                    Some(CH_UID) => {
                        assert_eq!(ds["type"], CH_TYPE, "{file}: `{title}`");
                        let raw = t["rawSql"].as_str().unwrap_or_default();
                        assert!(!raw.trim().is_empty(), "{file}: `{title}` has no rawSql");
                        let sql = expand(raw, FROM_S, TO_S, &vars);
                        match ch.table(&grafana, &sql) {
                            Err(e) => failures.push(format!("{file}: `{title}`: {e}\n{sql}")),
                            Ok(table) if !table.has_data() => failures.push(format!(
                                "{file}: `{title}` is empty over the fixtures\n{sql}"
                            )),
                            Ok(table) => {
                                results.insert((uid.clone(), title.clone()), table);
                            }
                        }
                        if uses_time(raw) {
                            let sql = expand(raw, EMPTY_FROM_S, EMPTY_FROM_S + 86_400, &vars);
                            match ch.table(&grafana, &sql) {
                                Ok(t) if t.has_data() => failures.push(format!(
                                    "{file}: `{title}` finds data in an empty window: {:?}",
                                    t.rows
                                )),
                                Ok(_) => {}
                                Err(e) => failures.push(format!("{file}: `{title}`: {e}")),
                            }
                        } else if !p["description"]
                            .as_str()
                            .unwrap_or_default()
                            .contains("not time-filtered")
                        {
                            failures.push(format!(
                                "{file}: `{title}` has no time filter: use $__timeFilter (or \
                                 say `not time-filtered` in the panel description)"
                            ));
                        }
                        counts.1 += 1;
                    }
                    Some(PROM_UID) => {
                        assert_eq!(ds["type"], "prometheus", "{file}: `{title}`");
                        let expr = t["expr"].as_str().unwrap_or_default();
                        let names = promql_metrics(expr);
                        if names.is_empty() && !expr.contains("up{") {
                            failures.push(format!("{file}: `{title}`: no cdr_ metric in `{expr}`"));
                        }
                        for n in names {
                            if !metric_defined(&n, &known) {
                                failures.push(format!(
                                    "{file}: `{title}`: metric `{n}` is not defined in the Rust sources"
                                ));
                            }
                        }
                        counts.2 += 1;
                    }
                    other => {
                        failures.push(format!("{file}: `{title}`: unknown datasource {other:?}"))
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} panel problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    for uid in [
        "cdr-traffic",
        "cdr-conformance",
        "cdr-quality",
        "cdr-billing",
        "cdr-pipeline",
        "cdr-fas-routes",
    ] {
        assert!(uids.contains(uid), "dashboard {uid} missing");
    }
    println!(
        "{} variables, {} ClickHouse queries, {} PromQL queries checked",
        counts.0, counts.1, counts.2
    );

    check_values(&results, &calls);
    delete_fixtures();
}

fn result<'a>(r: &'a BTreeMap<(String, String), Table>, uid: &str, title: &str) -> &'a Table {
    r.get(&(uid.to_string(), title.to_string()))
        .unwrap_or_else(|| panic!("no result for {uid} / `{title}` (renamed?)"))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Key panels against values computed from the fixtures.
fn check_values(r: &BTreeMap<(String, String), Table>, calls: &[Call]) {
    // Per-breakout KPIs (one stale KPI bucket copy must not count).
    let t = result(r, "cdr-traffic", "By breakout");
    for dest in [DE, UK] {
        let cs: Vec<&Call> = calls.iter().filter(|c| c.dest == dest).collect();
        let ans: Vec<&&Call> = cs.iter().filter(|c| c.answered()).collect();
        let row = t
            .rows
            .iter()
            .find(|row| t.text(row, "breakout") == dest)
            .unwrap_or_else(|| panic!("breakout {dest} missing: {:?}", t.rows));
        assert_eq!(t.text(row, "attempts"), cs.len().to_string(), "{dest}");
        let asr = ans.len() as f64 / cs.len() as f64;
        let ner = cs.iter().filter(|c| ner_ok(c)).count() as f64 / cs.len() as f64;
        let acd = ans.iter().map(|c| c.talk_s).sum::<i64>() as f64 / ans.len() as f64;
        let num = |c: &str| t.text(row, c).parse::<f64>().unwrap();
        assert_eq!(num("asr"), round4(asr), "{dest} ASR");
        assert_eq!(num("ner"), round4(ner), "{dest} NER");
        assert_eq!(num("acd_s"), (acd * 10.0).round() / 10.0, "{dest} ACD");
    }

    // Conformance: ws-1 conforms (ASR 0.8, ACD 120 s), ws-2 does not
    // (ASR 0.3, ACD 20 s); the retail account is not listed.
    let t = result(
        r,
        "cdr-conformance",
        "Conformance over the last 24 h (ASR >= 50 %, ACD >= 60 s)",
    );
    let rows = t.fixture_rows("account");
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|row| {
            (
                t.text(row, "account"),
                t.text(row, "asr"),
                t.text(row, "acd_s"),
                t.text(row, "status"),
            )
        })
        .collect();
    let want = vec![
        (
            WS2.into(),
            "0.3".into(),
            "20".into(),
            "NON-CONFORMING".into(),
        ),
        (WS1.into(), "0.8".into(), "120".into(), "conforming".into()),
    ];
    assert_eq!(got, want, "conformance table");
    let ws2 = rows
        .iter()
        .find(|row| t.text(row, "account") == WS2)
        .unwrap();
    assert_eq!(
        t.text(ws2, "current_plan"),
        "retail",
        "downgrade not joined"
    );

    // Billing: unrounded sums over the deduplicated CDRs (the stale 9.99
    // copy must not count), credits netted.
    let t = result(r, "cdr-billing", "Billing summary per account");
    for acct in [WS1, WS2, RT1] {
        let cs: Vec<&Call> = calls.iter().filter(|c| c.account == acct).collect();
        let amount: Decimal = cs.iter().map(|c| c.amount).sum();
        let lrn: Decimal = cs.iter().map(|c| c.lrn_fee).sum();
        let credits: Decimal = if acct == WS2 {
            cs.iter().filter(|c| c.answered()).map(|c| -c.amount).sum()
        } else {
            Decimal::ZERO
        };
        let row = t
            .rows
            .iter()
            .find(|row| t.text(row, "account") == acct)
            .unwrap_or_else(|| panic!("{acct} missing from billing summary"));
        assert_eq!(t.dec(row, "amount_usd"), amount, "{acct} amount");
        assert_eq!(t.dec(row, "lrn_fees_usd"), lrn, "{acct} LRN fees");
        assert_eq!(t.dec(row, "credits_usd"), credits, "{acct} credits");
        assert_eq!(t.dec(row, "net_usd"), amount + credits, "{acct} net");
        assert_eq!(
            t.dec(row, "net_rounded_usd"),
            (amount + credits).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero),
            "{acct} rounded net"
        );
        assert_eq!(t.text(row, "calls"), cs.len().to_string(), "{acct} calls");
    }

    // Dead letters: deduplicated by id.
    let t = result(r, "cdr-pipeline", "Dead letters by service and reason");
    let mut got: Vec<(String, String)> = t
        .fixture_rows("service")
        .iter()
        .map(|row| (t.text(row, "reason"), t.text(row, "dead_letters")))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("gf_test_bad_json".to_string(), "2".to_string()),
            ("gf_test_schema".to_string(), "1".to_string())
        ]
    );

    // Only the route whose latest status is `pulled`.
    let t = result(r, "cdr-fas-routes", "Routes currently pulled");
    let got: Vec<(String, String)> = t
        .fixture_rows("trunk_id")
        .iter()
        .map(|row| (t.text(row, "trunk_id"), t.text(row, "breakout")))
        .collect();
    assert_eq!(got, vec![(TRK2.to_string(), UK.to_string())]);

    // Credits per alert: 3 calls credited once each (one redelivered copy).
    let t = result(r, "cdr-fas-routes", "Credits per alert");
    let row = t
        .rows
        .iter()
        .find(|row| t.text(row, "alert_id") == ALERT)
        .expect("alert credits");
    let want: Decimal = calls
        .iter()
        .filter(|c| c.account == WS2 && c.answered())
        .map(|c| -c.amount)
        .sum();
    assert_eq!(t.text(row, "credits"), "3");
    assert_eq!(t.dec(row, "credits_usd"), want);
    assert_eq!(t.dec(row, "credited_amount_in_alert"), want);
}
