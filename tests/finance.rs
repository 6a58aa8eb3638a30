//! The named finance queries in `deploy/finance/*.sql`, run the way finance
//! runs them: as the read-only ClickHouse user `cdr_finance`, with query
//! parameters. Fixture CDRs, credits, plan changes and deck rows (ids
//! prefixed `fin-test-`, February and March 2025) are inserted first (the
//! previous run's are deleted), including redelivered copies and rows just
//! outside the period. Invoice totals must reconcile EXACTLY with the
//! fixture amounts minus credits, rounded once, half away from zero
//! (ratedeck's invoice rule), and the finance user must not be able to
//! write anything.
//!
//! Needs ClickHouse only; runs `deploy/local/start.sh` when it is not
//! reachable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use cdr_e2e::chttp::{ensure_clickhouse, exec, insert, request, User};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

const PREFIX: &str = "fin-test-";
const A: &str = "fin-test-ws-1";
const B: &str = "fin-test-ws-2";
const C: &str = "fin-test-ws-3";
const D: &str = "fin-test-rt-1";
const DE: &str = "fin-test-Germany Fixed";
const FR: &str = "fin-test-France Fixed";
const UK: &str = "fin-test-UK Mobile";
const MX: &str = "fin-test-Mexico";
const TF: &str = "fin-test-USA Toll Free";
const UKF: &str = "fin-test-UK Freephone";
const DECK: &str = "fin-test-deck";
const NO_DEST: &str = "(no destination)";
const NO_CDR: &str = "(credit without CDR in period)";

/// Every file in deploy/finance; each is exercised below.
const QUERIES: &[&str] = &[
    "adjustments",
    "blocked_and_max_rate",
    "downgrade_history",
    "eligibility_monthly",
    "invoice_lines",
    "invoice_total",
    "lrn_fees_monthly",
    "rate_for_cdr",
    // Run and checked against planted discrepancies in tests/reconcile.rs.
    "reconciliation",
];

/// A TSVWithNames result.
#[derive(Debug)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn unescape_tsv(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('N') => out.push_str("NULL"),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Rows {
    fn parse(tsv: &str) -> Rows {
        let mut lines = tsv.lines();
        let columns = lines
            .next()
            .unwrap_or_default()
            .split('\t')
            .map(unescape_tsv)
            .collect();
        let rows = lines
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(unescape_tsv).collect())
            .collect();
        Rows { columns, rows }
    }
    fn get(&self, row: &[String], col: &str) -> String {
        let i = self
            .columns
            .iter()
            .position(|c| c == col)
            .unwrap_or_else(|| panic!("no column `{col}` in {:?}", self.columns));
        row[i].clone()
    }
    fn dec(&self, row: &[String], col: &str) -> Decimal {
        let t = self.get(row, col);
        Decimal::from_str(&t).unwrap_or_else(|e| panic!("`{col}` = `{t}`: {e}"))
    }
    fn only(&self) -> &Vec<String> {
        assert_eq!(self.rows.len(), 1, "expected one row: {self:?}");
        &self.rows[0]
    }
}

fn repo() -> PathBuf {
    cdr_e2e::repo()
}

/// Runs deploy/finance/<name>.sql as cdr_finance with `param_<k>=<v>`.
fn run(name: &str, params: &[(&str, &str)]) -> Rows {
    assert!(QUERIES.contains(&name), "{name} not in QUERIES");
    let path = repo().join(format!("deploy/finance/{name}.sql"));
    let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (format!("param_{k}"), v.to_string()))
        .collect();
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = request(
        &User::role("finance"),
        &params,
        &[("X-ClickHouse-Format", "TSVWithNames")],
        &sql,
    )
    .unwrap_or_else(|e| panic!("{name} {params:?}: {e}"));
    Rows::parse(&out)
}

// --- fixtures ------------------------------------------------------------------

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch milliseconds of a UTC date and time.
/// Start of every fixture deck version.
fn deck_from() -> i64 {
    at(2025, 1, 1, 0, 0, 0, 0)
}

fn at(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, ms: i64) -> i64 {
    days_from_civil(y, mo, d) * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + ms
}

/// "YYYY-MM-DD hh:mm:ss.mmm" of epoch milliseconds (UTC).
fn ts(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
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

fn feb() -> (i64, i64) {
    (at(2025, 2, 1, 0, 0, 0, 0), at(2025, 3, 1, 0, 0, 0, 0))
}

#[derive(Clone, Debug)]
struct Cdr {
    id: String,
    version: u64,
    account: &'static str,
    plan: &'static str,
    setup_ms: i64,
    dest: Option<&'static str>,
    rated: bool,
    billed_s: i64,
    amount: Decimal,
    lrn_fee: Decimal,
    toll_free: bool,
    dialed: &'static str,
    rate: Decimal,
    deck: Option<(&'static str, i64, &'static str)>,
    /// A blocked attempt (UK surcharge not allowed).
    blocked: bool,
    max_rate: Option<Decimal>,
    flags: Vec<&'static str>,
}

impl Cdr {
    fn new(id: &str, account: &'static str, setup_ms: i64, dest: &'static str) -> Cdr {
        Cdr {
            id: format!("fin-test-cdr-{id}"),
            version: 2,
            account,
            plan: if account == D { "retail" } else { "standard" },
            setup_ms,
            dest: Some(dest),
            rated: true,
            billed_s: 60,
            amount: Decimal::ZERO,
            lrn_fee: Decimal::ZERO,
            toll_free: false,
            dialed: "4930123456",
            rate: d("0.01"),
            deck: None,
            blocked: false,
            max_rate: None,
            flags: Vec::new(),
        }
    }
    fn billed(mut self, s: i64, amount: &str) -> Cdr {
        self.billed_s = s;
        self.amount = d(amount);
        self
    }
    fn row(&self) -> Value {
        let answered = self.billed_s > 0;
        let answer = answered.then(|| ts(self.setup_ms + 3000));
        let (deck_id, deck_version, prefix) = match self.deck {
            Some((id, v, p)) => (Some(id), v, Some(p)),
            None => (None, 0, None),
        };
        json!({
            "cdr_id": self.id, "version": self.version, "call_id": self.id,
            "switch_id": "fin-test-sw", "account_id": self.account, "direction": "outbound",
            "dialed": self.dialed, "trunk_id": "fin-test-trk",
            "setup_ts": ts(self.setup_ms), "answer_ts": answer,
            "end_ts": ts(self.setup_ms + 4000 + self.billed_s * 1000),
            "final_sip_code": if answered { 200 } else { 486 },
            "disposition": if answered { "answered" } else { "busy" },
            "duration_ms": self.billed_s * 1000, "billable_seconds": self.billed_s,
            "assembled_at": ts(self.setup_ms + 5000 + self.billed_s * 1000),
            "dialed_e164": self.dialed, "lrn_fee": self.lrn_fee.to_string(),
            "lrn_source": if self.lrn_fee.is_zero() { "cache" } else { "dip" },
            "callee_number_type": if self.toll_free { "toll_free" } else { "fixed" },
            "rating_status": if self.blocked { "blocked" } else if self.rated { "rated" } else { "unrated" },
            "unrated_reason": if self.blocked { json!("uk_surcharge_not_allowed") } else if self.rated { Value::Null } else { json!("no_matching_prefix") },
            "rating_flags": self.flags, "max_rate": self.max_rate.map(|m| m.to_string()),
            "plan": self.plan, "deck_id": deck_id, "deck_version": deck_version,
            "matched_prefix": prefix, "destination": self.dest,
            // The row's start as the rater records it: the version's
            // start for an undated row.
            "row_effective_from": self.deck.map(|_| ts(deck_from())),
            "rate_per_min": self.rate.to_string(), "billed_seconds": self.billed_s,
            "increment": "1/1", "amount": self.amount.to_string(), "currency": "USD",
        })
    }
}

#[derive(Clone, Debug)]
struct Adj {
    id: String,
    cdr_id: String,
    account: &'static str,
    amount: Decimal,
    reason: &'static str,
    call_setup_ms: i64,
}

impl Adj {
    fn row(&self) -> Value {
        json!({"adjustment_id": self.id, "cdr_id": self.cdr_id, "account_id": self.account,
               "amount": self.amount.to_string(), "currency": "USD", "reason": self.reason,
               "alert_id": if self.reason == "fas_credit" { json!("fin-test-alert-1") } else { Value::Null },
               "call_setup_ts": ts(self.call_setup_ms),
               "created_at": ts(self.call_setup_ms + 3_600_000)})
    }
}

struct Fixture {
    /// Every version inserted (redelivered copies included).
    cdrs: Vec<Cdr>,
    adjustments: Vec<Adj>,
}

impl Fixture {
    /// The copy rated_cdrs_final keeps: highest version per cdr_id.
    fn final_cdrs(&self) -> Vec<&Cdr> {
        let mut by_id: BTreeMap<&str, &Cdr> = BTreeMap::new();
        for c in &self.cdrs {
            let e = by_id.entry(&c.id).or_insert(c);
            if c.version > e.version {
                *e = c;
            }
        }
        by_id.into_values().collect()
    }
    fn cdrs_in(&self, account: &str, (from, to): (i64, i64)) -> Vec<&Cdr> {
        self.final_cdrs()
            .into_iter()
            .filter(|c| c.account == account && c.setup_ms >= from && c.setup_ms < to)
            .collect()
    }
    fn adjustments_in(&self, account: &str, (from, to): (i64, i64)) -> Vec<&Adj> {
        let mut seen = BTreeSet::new();
        self.adjustments
            .iter()
            .filter(|a| a.account == account && a.call_setup_ms >= from && a.call_setup_ms < to)
            .filter(|a| seen.insert(a.id.clone()))
            .collect()
    }
}

fn build() -> Fixture {
    let mut cdrs = Vec::new();
    // Account A, February: the invoice.
    let mut c1 =
        Cdr::new("a-c1", A, at(2025, 2, 3, 10, 0, 0, 0), DE).billed(4218, "40.073456789012345678");
    c1.lrn_fee = d("0.0003");
    c1.rate = d("0.0095");
    c1.deck = Some((DECK, 3, "49"));
    cdrs.push(c1);
    let mut c2 =
        Cdr::new("a-c2", A, at(2025, 2, 4, 11, 30, 0, 0), DE).billed(600, "29.121243210987654322");
    c2.lrn_fee = d("0.0003");
    let mut c2_old = c2.clone().billed(600, "29.000000000000000000");
    c2_old.version = 1; // redelivered older copy
    cdrs.push(c2);
    cdrs.push(c2_old);
    let mut tf = Cdr::new("a-tf", A, at(2025, 2, 5, 9, 0, 0, 0), TF).billed(60, "0.05");
    tf.toll_free = true;
    tf.dialed = "18005550100";
    cdrs.push(tf);
    for i in 0..100 {
        // 30 s at $0.01/min = $0.005 each; the first one on the period's
        // very first millisecond.
        let when = if i == 0 {
            feb().0
        } else {
            at(2025, 2, 6, 8, 0, 0, 0) + i * 60_000
        };
        cdrs.push(Cdr::new(&format!("a-s{i:03}"), A, when, FR).billed(30, "0.005"));
    }
    cdrs.push(
        Cdr::new("a-c3", A, at(2025, 2, 7, 15, 0, 0, 0), UK).billed(900, "12.345678901234567891"),
    );
    // Not billed: a busy call and an unrated one, both with an LRN dip. The
    // rated busy attempt's amount is its dip (the rater bills the dip per
    // call); the unrated one's is 0 until re-rated.
    let mut u1 = Cdr::new("a-u1", A, at(2025, 2, 8, 12, 0, 0, 0), DE).billed(0, "0.0003");
    u1.dest = None;
    u1.lrn_fee = d("0.0003");
    cdrs.push(u1);
    let mut u2 = Cdr::new("a-u2", A, at(2025, 2, 8, 12, 5, 0, 0), DE).billed(0, "0");
    u2.dest = None;
    u2.rated = false;
    u2.lrn_fee = d("0.0003");
    cdrs.push(u2);
    // Just outside February.
    cdrs.push(Cdr::new("a-out1", A, at(2025, 1, 31, 23, 59, 59, 999), DE).billed(60, "5"));
    cdrs.push(Cdr::new("a-out2", A, feb().1, DE).billed(60, "7"));

    // Account B: 98 + 1 UK freephone x 6000 s (counted) and 1 US toll-free
    // x 6000 s (not counted) in February = 9,900 min; 100 x 6000 s in March
    // = exactly 10,000 min.
    for i in 0..98 {
        cdrs.push(
            Cdr::new(
                &format!("b-f{i:03}"),
                B,
                at(2025, 2, 10, 0, 0, 0, 0) + i * 7_000_000,
                MX,
            )
            .billed(6000, "0.1"),
        );
    }
    let mut ukf = Cdr::new("b-ukf", B, at(2025, 2, 20, 10, 0, 0, 0), UKF).billed(6000, "0.1");
    ukf.toll_free = true;
    ukf.dialed = "448001234567";
    cdrs.push(ukf);
    let mut btf = Cdr::new("b-tf", B, at(2025, 2, 21, 10, 0, 0, 0), TF).billed(6000, "0.3");
    btf.toll_free = true;
    btf.dialed = "18885550100";
    cdrs.push(btf);
    for i in 0..100 {
        cdrs.push(
            Cdr::new(
                &format!("b-m{i:03}"),
                B,
                at(2025, 3, 2, 0, 0, 0, 0) + i * 7_000_000,
                MX,
            )
            .billed(6000, "0.1"),
        );
    }
    // Account C: exactly $100 in February. Retail account D: not wholesale.
    cdrs.push(
        Cdr::new("c-1", C, at(2025, 2, 12, 10, 0, 0, 0), DE).billed(60, "100.000000000000000000"),
    );
    cdrs.push(Cdr::new("d-1", D, at(2025, 2, 12, 10, 0, 0, 0), DE).billed(60, "500"));
    // D's limits: a blocked UK attempt and a max-rate breach.
    let mut blk = Cdr::new("d-blk", D, at(2025, 2, 13, 10, 0, 0, 0), UK).billed(0, "0");
    blk.blocked = true;
    blk.flags = vec!["uk_surcharge_blocked", "not_billed"];
    cdrs.push(blk);
    let mut max = Cdr::new("d-max", D, at(2025, 2, 13, 11, 0, 0, 0), UK).billed(60, "0.135");
    max.rate = d("0.015");
    max.max_rate = Some(d("0.10"));
    max.flags = vec!["max_rate_exceeded"];
    cdrs.push(max);

    let adj = |id: &str, cdr: &str, account, amount: &str, reason, when| Adj {
        id: format!("fin-test-adj-{id}"),
        cdr_id: format!("fin-test-cdr-{cdr}"),
        account,
        amount: d(amount),
        reason,
        call_setup_ms: when,
    };
    let adjustments = vec![
        adj(
            "a1",
            "a-c3",
            A,
            "-12.345678901234567891",
            "fas_credit",
            at(2025, 2, 7, 15, 0, 0, 0),
        ),
        adj(
            "a1",
            "a-c3",
            A,
            "-12.345678901234567891",
            "fas_credit",
            at(2025, 2, 7, 15, 0, 0, 0),
        ), // redelivered
        adj(
            "a2",
            "a-c1",
            A,
            "-0.5",
            "goodwill",
            at(2025, 2, 3, 10, 0, 0, 0),
        ),
        adj(
            "a3",
            "missing",
            A,
            "-0.02",
            "goodwill",
            at(2025, 2, 9, 0, 0, 0, 0),
        ),
        adj("a4", "a-out2", A, "-1", "goodwill", feb().1),
    ];
    Fixture { cdrs, adjustments }
}

/// Inserts the fixtures once per test binary (the previous run's first).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        ensure_clickhouse();
        for (table, col) in [
            ("rated_cdrs", "account_id"),
            ("adjustments", "account_id"),
            ("account_plan_changes", "account_id"),
            ("rate_deck_rows", "deck_id"),
            ("rate_decks", "deck_id"),
        ] {
            exec(&User::admin(), &format!("DELETE FROM cdr.{table} WHERE {col} LIKE '{PREFIX}%'"))
                .unwrap_or_else(|e| panic!("clean {table}: {e}"));
        }
        let f = build();
        // Redelivered copies in their own INSERT: ReplacingMergeTree
        // collapses duplicates within one insert block.
        let (old, cur): (Vec<&Cdr>, Vec<&Cdr>) = f.cdrs.iter().partition(|c| c.version == 1);
        insert("rated_cdrs", &cur.iter().map(|c| c.row()).collect::<Vec<_>>());
        insert("rated_cdrs", &old.iter().map(|c| c.row()).collect::<Vec<_>>());
        for a in &f.adjustments {
            // One INSERT per row, duplicates included.
            insert("adjustments", &[a.row()]);
        }

        let change = |id: &str, old: &str, new: &str, reason: &str, when: i64, source: &str| {
            json!({"change_id": format!("fin-test-change-{id}"), "account_id": B,
                   "old_plan": old, "new_plan": new, "reason": reason,
                   "asr": if source == "auto" { json!(0.31) } else { Value::Null },
                   "acd_s": if source == "auto" { json!(22.5) } else { Value::Null },
                   "sample_seizures": 5000, "window_secs": 86400, "decided_at": ts(when),
                   "source": source, "actor": if source == "auto" { "rater" } else { "ops@example" }})
        };
        let down = change("1", "wholesale", "retail", "ASR 0.31 < 0.50", at(2025, 2, 10, 12, 0, 0, 0), "auto");
        insert(
            "account_plan_changes",
            &[
                change("0", "retail", "wholesale", "customer request", at(2025, 1, 20, 9, 0, 0, 0), "operator"),
                down.clone(),
                change("2", "retail", "wholesale", "requalified", at(2025, 2, 20, 9, 0, 0, 0), "operator"),
            ],
        );
        insert("account_plan_changes", &[down]); // re-emitted decision

        let deck_row = |version: i64, prefix: &str, dest: &str, rate: &str, tier: Option<&str>, line: u64, published: i64| {
            json!({"deck_id": DECK, "deck_version": version, "scope": "az:standard", "prefix": prefix,
                   "destination": dest, "rate_per_min": rate, "increment": "1/1",
                   "connection_fee": "0", "min_billed_seconds": 0, "short_surcharge": "0",
                   "short_threshold_s": 0, "obr_tier": tier, "source_line": line,
                   "published_at": ts(published)})
        };
        let p1 = at(2025, 1, 29, 10, 0, 0, 0);
        let p2 = at(2025, 1, 30, 10, 0, 0, 0);
        insert(
            "rate_deck_rows",
            &[
                deck_row(3, "49", DE, "0.0095", None, 10, p2),
                deck_row(3, "49", "fin-test-Germany OBR ROW", "0.04", Some("ROW"), 11, p2),
                deck_row(3, "491", "fin-test-Germany Mobile", "0.02", None, 12, p2),
                deck_row(2, "49", DE, "0.009", None, 10, p1),
            ],
        );
        let head = |version: i64, published: i64| {
            json!({"deck_id": DECK, "deck_version": version, "scope": "az:standard",
                   "format": "az", "source_file": "fin-test.txt",
                   "effective_from": ts(deck_from()), "rows": 2, "rejected_rows": 0,
                   "content_sha256": "", "published_at": ts(published)})
        };
        insert("rate_decks", &[head(3, p2), head(2, p1)]);
        // An earlier publication of the same row: the latest one wins.
        insert(
            "rate_deck_rows",
            &[deck_row(3, "49", "fin-test-Germany (old name)", "0.0095", None, 10, p1)],
        );
        f
    })
}

fn invoice_rule(x: Decimal) -> Decimal {
    // crates/ratedeck/src/rate.rs `invoice_total`.
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn period_params(account: &str, (from, to): (i64, i64)) -> Vec<(&'static str, String)> {
    vec![
        ("account", account.to_string()),
        ("from", ts(from)),
        ("to", ts(to)),
    ]
}

fn run_p(name: &str, p: &[(&'static str, String)]) -> Rows {
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(name, &p)
}

// --- tests -------------------------------------------------------------------------

#[test]
fn invoice_total_reconciles_exactly() {
    let f = fixture();
    let cdrs = f.cdrs_in(A, feb());
    let adjs = f.adjustments_in(A, feb());
    let charges: Decimal = cdrs.iter().map(|c| c.amount).sum();
    let credits: Decimal = adjs.iter().map(|a| a.amount).sum();
    let expected = invoice_rule(charges + credits);
    // The fixtures are built so that the net is a midpoint: half away from
    // zero gives .23 where banker's rounding or truncation give .22, and
    // rounding every call to cents first gives something else again.
    assert_eq!(charges + credits, d("69.225"));
    assert_eq!(expected, d("69.23"));
    let per_call: Decimal = cdrs.iter().map(|c| invoice_rule(c.amount)).sum::<Decimal>()
        + adjs.iter().map(|a| invoice_rule(a.amount)).sum::<Decimal>();
    assert_ne!(
        per_call, expected,
        "fixture does not distinguish per-call rounding"
    );

    let r = run_p("invoice_total", &period_params(A, feb()));
    let row = r.only();
    assert_eq!(r.get(row, "account_id"), A);
    assert_eq!(r.get(row, "calls"), cdrs.len().to_string());
    assert_eq!(
        r.get(row, "billed_calls"),
        cdrs.iter().filter(|c| c.billed_s > 0).count().to_string()
    );
    assert_eq!(r.get(row, "unrated_calls"), "1");
    assert_eq!(r.dec(row, "charges_unrounded"), charges);
    assert_eq!(r.dec(row, "credits_unrounded"), credits);
    assert_eq!(r.get(row, "credit_count"), adjs.len().to_string());
    assert_eq!(r.dec(row, "net_unrounded"), charges + credits);
    assert_eq!(r.get(row, "invoice_total"), "69.23");
    assert_eq!(r.dec(row, "invoice_total"), expected);
    assert_eq!(r.get(row, "currencies"), "['USD']");
    let lrn_in: Decimal = cdrs
        .iter()
        .filter(|c| c.rated && !c.blocked)
        .map(|c| c.lrn_fee)
        .sum();
    let lrn_out: Decimal = cdrs
        .iter()
        .filter(|c| !c.rated || c.blocked)
        .map(|c| c.lrn_fee)
        .sum();
    assert_eq!(r.dec(row, "lrn_fees_in_amount"), lrn_in);
    assert_eq!(r.dec(row, "lrn_fees_not_invoiced"), lrn_out);
    assert_eq!((lrn_in, lrn_out), (d("0.0009"), d("0.0003")));

    // Another account, same period: only its own call.
    let r = run_p("invoice_total", &period_params(C, feb()));
    assert_eq!(r.get(r.only(), "invoice_total"), "100");
    // No traffic: zero, not an error or no row.
    let r = run_p("invoice_total", &period_params("fin-test-nobody", feb()));
    assert_eq!(r.dec(r.only(), "invoice_total"), Decimal::ZERO);
}

#[test]
fn invoice_lines_net_to_the_invoice_total() {
    let f = fixture();
    let cdrs = f.cdrs_in(A, feb());
    let mut want: BTreeMap<String, (usize, Decimal, Decimal)> = BTreeMap::new();
    for c in &cdrs {
        let e = want
            .entry(c.dest.unwrap_or(NO_DEST).to_string())
            .or_default();
        e.0 += 1;
        e.1 += c.amount;
    }
    for a in f.adjustments_in(A, feb()) {
        let line = cdrs
            .iter()
            .find(|c| c.id == a.cdr_id)
            .map_or(NO_CDR, |c| c.dest.unwrap_or(NO_DEST));
        want.entry(line.to_string()).or_default().2 += a.amount;
    }
    let r = run_p("invoice_lines", &period_params(A, feb()));
    let mut got: BTreeMap<String, (usize, Decimal, Decimal)> = BTreeMap::new();
    let mut net = Decimal::ZERO;
    for row in &r.rows {
        let calls: usize = r.get(row, "calls").parse().unwrap();
        let (charges, credits) = (r.dec(row, "charges"), r.dec(row, "credits"));
        assert_eq!(r.dec(row, "net"), charges + credits, "{row:?}");
        net += r.dec(row, "net");
        got.insert(r.get(row, "destination"), (calls, charges, credits));
    }
    assert_eq!(got, want);
    assert!(
        got.contains_key(NO_CDR) && got.contains_key(NO_DEST),
        "{got:?}"
    );
    let fr = r
        .rows
        .iter()
        .find(|row| r.get(row, "destination") == FR)
        .unwrap();
    assert_eq!(r.get(fr, "billed_seconds"), "3000");
    assert_eq!(r.get(fr, "billed_minutes"), "50");
    // The lines add up to the invoice's unrounded net, to the last digit.
    let total = run_p("invoice_total", &period_params(A, feb()));
    assert_eq!(net, total.dec(total.only(), "net_unrounded"));
    assert_eq!(
        invoice_rule(net).to_string(),
        total.get(total.only(), "invoice_total")
    );
}

/// `cdrctl invoice` (issue 16): the same queries, written as CSV and JSON;
/// its lines sum exactly to the per-call amounts of the period net of the
/// credits, and its total is that net rounded once.
#[test]
fn cdrctl_invoice_writes_lines_that_sum_to_the_calls_net_of_credits() {
    let f = fixture();
    let cdrs = f.cdrs_in(A, feb());
    let charges: Decimal = cdrs.iter().map(|c| c.amount).sum();
    let credits: Decimal = f.adjustments_in(A, feb()).iter().map(|a| a.amount).sum();
    let dir = std::env::temp_dir().join(format!("cdrctl-invoice-{}", std::process::id()));
    let out = cdr_e2e::cdrctl_command()
        .args(["invoice", "--account", A, "--period", "2025-02", "--out"])
        .arg(&dir)
        .current_dir(repo())
        .output()
        .expect("cdrctl invoice");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("total 69.23"), "{stdout}");
    let base = dir.join(format!("invoice-{A}-2025-02"));
    let doc: Value = serde_json::from_slice(
        &std::fs::read(base.with_extension("json")).expect("the JSON invoice"),
    )
    .unwrap();
    let dec = |v: &Value| Decimal::from_str(v.as_str().expect("decimal as text")).unwrap();
    let lines = doc["lines"].as_array().unwrap();
    let (mut l_charges, mut l_credits, mut l_net, mut l_calls) =
        (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, 0usize);
    for l in lines {
        assert_eq!(
            dec(&l["net"]),
            dec(&l["charges"]) + dec(&l["credits"]),
            "{l}"
        );
        l_charges += dec(&l["charges"]);
        l_credits += dec(&l["credits"]);
        l_net += dec(&l["net"]);
        l_calls += l["calls"].as_str().unwrap().parse::<usize>().unwrap();
    }
    assert_eq!(l_charges, charges, "the lines carry every call's amount");
    assert_eq!(l_credits, credits, "and every credit of the period");
    assert_eq!(l_net, charges + credits);
    assert_eq!(l_calls, cdrs.len());
    let total = &doc["total"];
    assert_eq!(dec(&total["net_unrounded"]), l_net);
    assert_eq!(total["invoice_total"].as_str(), Some("69.23"));
    assert_eq!(dec(&total["invoice_total"]), invoice_rule(l_net));
    assert_eq!(doc["period_from"], "2025-02-01 00:00:00.000");
    assert_eq!(doc["period_to"], "2025-03-01 00:00:00.000");
    // The CSV files hold the same lines and total.
    let csv = std::fs::read_to_string(format!("{}.lines.csv", base.display())).unwrap();
    assert_eq!(csv.lines().count(), lines.len() + 1, "{csv}");
    assert!(csv.starts_with("\"destination\",\"calls\""), "{csv}");
    let total_csv = std::fs::read_to_string(format!("{}.total.csv", base.display())).unwrap();
    assert!(
        total_csv.lines().nth(1).unwrap().contains(",69.23,"),
        "{total_csv}"
    );
    // A malformed period is refused before anything is written.
    let bad = cdr_e2e::cdrctl_command()
        .args(["invoice", "--account", A, "--period", "2025-13"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn adjustments_detail_lists_each_credit_once() {
    let f = fixture();
    let r = run_p("adjustments", &period_params(A, feb()));
    let ids: Vec<String> = r
        .rows
        .iter()
        .map(|row| r.get(row, "adjustment_id"))
        .collect();
    let want: Vec<String> = {
        let mut v: Vec<&Adj> = f.adjustments_in(A, feb());
        v.sort_by_key(|a| (a.call_setup_ms, a.id.clone()));
        v.iter().map(|a| a.id.clone()).collect()
    };
    assert_eq!(ids, want);
    let fas = r
        .rows
        .iter()
        .find(|row| r.get(row, "reason") == "fas_credit")
        .unwrap();
    assert_eq!(r.get(fas, "destination"), UK);
    assert_eq!(r.dec(fas, "call_amount"), -r.dec(fas, "amount"));
    assert_eq!(r.get(fas, "alert_id"), "fin-test-alert-1");
}

#[test]
fn lrn_fees_per_account_and_month() {
    let f = fixture();
    let r = run_p("lrn_fees_monthly", &period_params(A, feb()));
    let row = r.only();
    let cdrs = f.cdrs_in(A, feb());
    assert_eq!(r.get(row, "month"), "2025-02-01");
    assert_eq!(r.get(row, "dips"), "4");
    assert_eq!(r.dec(row, "lrn_fees"), d("0.0012"));
    assert_eq!(
        r.dec(row, "lrn_fees"),
        cdrs.iter().map(|c| c.lrn_fee).sum::<Decimal>()
    );
    // In the amounts: the three rated calls' dips (answered or not); not
    // invoiced: the unrated call's.
    assert_eq!(r.dec(row, "lrn_fees_in_amount"), d("0.0009"));
    assert_eq!(r.dec(row, "lrn_fees_not_invoiced"), d("0.0003"));
    // '' = every account: A and B over Feb-Mar, one row per account-month.
    let p = period_params("", (feb().0, at(2025, 4, 1, 0, 0, 0, 0)));
    let r = run_p("lrn_fees_monthly", &p);
    let got: Vec<(String, String)> = r
        .rows
        .iter()
        .filter(|row| r.get(row, "account_id").starts_with(PREFIX))
        .map(|row| (r.get(row, "account_id"), r.get(row, "month")))
        .collect();
    let want: Vec<(String, String)> = [
        (D, "2025-02-01"),
        (A, "2025-02-01"),
        (A, "2025-03-01"),
        (B, "2025-02-01"),
        (B, "2025-03-01"),
        (C, "2025-02-01"),
    ]
    .iter()
    .map(|(a, m)| (a.to_string(), m.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn downgrade_history_in_order_without_copies() {
    fixture();
    for account in [B, ""] {
        let r = run_p("downgrade_history", &period_params(account, feb()));
        let got: Vec<(String, String, String, String)> = r
            .rows
            .iter()
            .filter(|row| r.get(row, "account_id").starts_with(PREFIX))
            .map(|row| {
                (
                    r.get(row, "decided_at"),
                    r.get(row, "old_plan"),
                    r.get(row, "new_plan"),
                    r.get(row, "is_downgrade"),
                )
            })
            .collect();
        let want = vec![
            (
                "2025-02-10 12:00:00.000".into(),
                "wholesale".into(),
                "retail".into(),
                "1".into(),
            ),
            (
                "2025-02-20 09:00:00.000".into(),
                "retail".into(),
                "wholesale".into(),
                "0".into(),
            ),
        ];
        assert_eq!(got, want, "account `{account}`");
        let first = &r
            .rows
            .iter()
            .find(|row| r.get(row, "account_id") == B)
            .unwrap();
        assert_eq!(r.get(first, "asr"), "0.31");
        assert_eq!(r.get(first, "source"), "auto");
    }
}

#[test]
fn eligibility_floor_excludes_us_toll_free_minutes() {
    let f = fixture();
    let p = period_params("", (feb().0, at(2025, 4, 1, 0, 0, 0, 0)));
    let r = run_p("eligibility_monthly", &p);
    let got: Vec<Vec<String>> = r
        .rows
        .iter()
        .filter(|row| r.get(row, "account_id").starts_with(PREFIX))
        .map(|row| {
            [
                "account_id",
                "month",
                "billed_seconds_excl_us_toll_free",
                "billed_seconds_us_toll_free",
                "meets_minutes_floor",
                "meets_spend_floor",
                "eligible",
            ]
            .iter()
            .map(|c| r.get(row, c))
            .collect()
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let a_feb: i64 = f
        .cdrs_in(A, feb())
        .iter()
        .filter(|c| !c.toll_free)
        .map(|c| c.billed_s)
        .sum();
    let a_feb = a_feb.to_string();
    let want = vec![
        s(&[A, "2025-02-01", &a_feb, "60", "0", "0", "0"]),
        s(&[A, "2025-03-01", "60", "0", "0", "0", "0"]),
        // 9,900 counted minutes (the UK freephone call counts, the US
        // toll-free one does not) and $10.20: not eligible.
        s(&[B, "2025-02-01", "594000", "6000", "0", "0", "0"]),
        // Exactly 10,000 minutes.
        s(&[B, "2025-03-01", "600000", "0", "1", "0", "1"]),
        // Exactly $100.
        s(&[C, "2025-02-01", "60", "0", "0", "1", "1"]),
        // D (retail) is not listed.
    ];
    assert_eq!(got, want);
    let a = r
        .rows
        .iter()
        .find(|row| r.get(row, "account_id") == A)
        .unwrap();
    assert_eq!(r.dec(a, "spend"), d("69.225"), "spend = charges + credits");
    // One account only.
    let r = run_p("eligibility_monthly", &period_params(C, feb()));
    assert_eq!(r.get(r.only(), "eligible"), "1");
}

#[test]
fn blocked_attempts_and_max_rate_breaches_are_listed() {
    fixture();
    let r = run_p("blocked_and_max_rate", &period_params(D, feb()));
    let got: Vec<(String, String, String)> = r
        .rows
        .iter()
        .map(|row| {
            (
                r.get(row, "cdr_id"),
                r.get(row, "kind"),
                r.get(row, "reason"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "fin-test-cdr-d-blk".to_string(),
                "blocked".to_string(),
                "uk_surcharge_not_allowed".to_string()
            ),
            (
                "fin-test-cdr-d-max".to_string(),
                "max_rate_exceeded".to_string(),
                "NULL".to_string()
            ),
        ]
    );
    assert_eq!(r.dec(&r.rows[0], "amount"), d("0"));
    assert_eq!(r.dec(&r.rows[1], "max_rate"), d("0.10"));
    // Other accounts have none.
    assert!(run_p("blocked_and_max_rate", &period_params(A, feb()))
        .rows
        .is_empty());
}

#[test]
fn rate_applied_to_a_cdr() {
    fixture();
    let r = run("rate_for_cdr", &[("cdr_id", "fin-test-cdr-a-c1")]);
    // Version 3 has two rows for 49 (untiered and ROW) and version 2 one:
    // the recorded inputs name exactly the untiered row of version 3.
    let hit = r.only();
    assert_eq!(r.get(hit, "rate_matches"), "1");
    assert_eq!(r.get(hit, "deck_source_line"), "10");
    assert_eq!(r.get(hit, "deck_obr_tier"), "NULL");
    assert_eq!(
        r.get(hit, "deck_destination"),
        DE,
        "latest publication wins"
    );
    assert_eq!(r.dec(hit, "deck_rate_per_min"), d("0.0095"));
    assert_eq!(r.dec(hit, "applied_rate_per_min"), d("0.0095"));
    assert_eq!(r.get(hit, "deck_version"), "3");
    // An unrated call has no deck row.
    let r = run("rate_for_cdr", &[("cdr_id", "fin-test-cdr-a-u2")]);
    let row = r.only();
    assert_eq!(r.get(row, "rating_status"), "unrated");
    assert_eq!(r.get(row, "rate_matches"), "0");
}

#[test]
fn finance_user_cannot_write() {
    fixture();
    let fin = User::role("finance");
    let attempts = [
        ("INSERT INTO cdr.adjustments (adjustment_id, account_id, amount) VALUES ('fin-test-evil', 'fin-test-ws-1', -1000)", "ACCESS_DENIED"),
        ("DROP TABLE cdr.adjustments", "ACCESS_DENIED"),
        ("TRUNCATE TABLE cdr.rated_cdrs", "ACCESS_DENIED"),
        ("ALTER TABLE cdr.rated_cdrs DELETE WHERE account_id = 'fin-test-ws-1'", "ACCESS_DENIED"),
        ("DELETE FROM cdr.rated_cdrs WHERE account_id = 'fin-test-ws-1'", "ACCESS_DENIED"),
        ("ALTER TABLE cdr.adjustments ADD COLUMN evil UInt8", "ACCESS_DENIED"),
        ("CREATE TABLE cdr.fin_test_evil (x UInt8) ENGINE = Memory", "ACCESS_DENIED"),
        ("SELECT 1 SETTINGS readonly = 0", "READONLY"),
    ];
    for (sql, code) in attempts {
        let err = exec(&fin, sql).expect_err(sql);
        assert!(err.contains(code), "{sql}: expected {code}, got {err}");
    }
    // Nothing changed.
    let count = |sql: &str| {
        exec(&User::admin(), sql)
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_string()
    };
    assert_eq!(
        count(
            "SELECT count() FROM cdr.adjustments WHERE adjustment_id = 'fin-test-evil' FORMAT TSV"
        ),
        "0"
    );
    assert_eq!(count("SELECT count() FROM system.tables WHERE database = 'cdr' AND name IN ('adjustments', 'fin_test_evil') FORMAT TSV"), "1");
    assert_eq!(count("SELECT count() FROM system.columns WHERE database = 'cdr' AND table = 'adjustments' AND name = 'evil' FORMAT TSV"), "0");
    let cdrs = fixture()
        .final_cdrs()
        .iter()
        .filter(|c| c.account == A)
        .count()
        .to_string();
    assert_eq!(count("SELECT count() FROM cdr.rated_cdrs_final WHERE account_id = 'fin-test-ws-1' FORMAT TSV"), cdrs);
    // Reading works.
    assert!(exec(&fin, "SELECT count() FROM cdr.rated_cdrs_final").is_ok());
}

#[test]
fn every_finance_query_is_tested_and_documented() {
    let dir = repo().join("deploy/finance");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    files.sort();
    assert_eq!(files, QUERIES, "add a test for every new finance query");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for q in QUERIES {
        assert!(
            readme.contains(&format!("{q}.sql")),
            "README.md does not document {q}.sql"
        );
        let sql = std::fs::read_to_string(dir.join(format!("{q}.sql"))).unwrap();
        // Appending `FORMAT …` must work (README): no trailing `;` or comment.
        let last = sql.trim_end().lines().last().unwrap_or_default();
        assert!(
            !sql.trim_end().ends_with(';') && !last.trim_start().starts_with("--"),
            "{q}.sql"
        );
        assert!(
            !sql.contains("Float") && !sql.contains("toFloat"),
            "{q}.sql: no floats for money"
        );
    }
}
