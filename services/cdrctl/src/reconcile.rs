//! `cdrctl reconcile`: compares a carrier's CDR file with the CDRs we hold
//! for that carrier (its account) and stores every discrepancy.
//!
//! The file is CSV with a header; a column mapping names which columns
//! hold the call id, calling and called numbers, start time, duration,
//! disposition and cost (only called, start and duration are required).
//! Or the file is in one of the switch adapters' formats (`--format
//! asterisk-csv`, `freeswitch-json`, …: the carrier runs that switch): its
//! records go through the same adapters and the assembler's `build_call`
//! as ours, and each call is one row (line = its order in the file), with
//! its disposition and no cost.
//! Matching, in this order:
//! 1. on the call id, where the file has one and it is one of our calls'
//!    SIP Call-ID;
//! 2. else on the called number (digits; international prefixes `+`, `00`,
//!    `011` dropped; one number a suffix of the other, at least 7 digits,
//!    for files in national format) and start time within a tolerance of
//!    our setup or answer time (carriers date calls by either); among
//!    several candidates the nearest start wins, then the nearest duration.
//!
//! A pair whose durations differ by more than the duration tolerance is a
//! `duration_mismatch`; else one whose cost differs from our amount by more
//! than the cost tolerance is a `cost_mismatch`; else `matched`. Our calls
//! without a pair are `only_ours`, their rows without one `only_theirs`.
//! Without a disposition column the file is taken to hold billable
//! (answered) calls only, and only our answered calls take part.
//!
//! The pairing is a pure function ([`reconcile`]); the command parses the
//! file (every bad row is reported with its line and field, kept out of the
//! matching, stored as `rejected`, and makes the command exit non-zero),
//! reads our side from `rated_cdrs_final`, and writes every result row to
//! `reconciliation` and the run's summary to `reconciliation_runs`
//! (migration 016). The disputed amount is the sum, over every row that is
//! not `matched`, of their cost minus our amount (an absent side counts 0).

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::Context as _;
use cdr_clickhouse::rows::{dec18, from_dec18};
use clickhouse::Row;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// How far apart the two sides may be and still agree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerances {
    pub start_ms: i64,
    pub duration_ms: i64,
    pub cost: Decimal,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            start_ms: 5_000,
            duration_ms: 1_000,
            cost: Decimal::new(1, 4),
        }
    }
}

/// One of our calls.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct OurCall {
    pub cdr_id: String,
    pub call_id: String,
    /// `dialed_e164` (with `+`).
    pub called: String,
    pub setup_ms: i64,
    pub answer_ms: Option<i64>,
    /// Answered duration; 0 when not answered.
    pub duration_ms: i64,
    pub disposition: String,
    pub amount: i128,
}

/// One row of their file.
#[derive(Debug, Clone, PartialEq)]
pub struct TheirCall {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    pub call_id: Option<String>,
    pub calling: Option<String>,
    /// Normalised digits.
    pub called: String,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub disposition: Option<String>,
    pub cost: Option<Decimal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Matched,
    DurationMismatch,
    CostMismatch,
    OnlyOurs,
    OnlyTheirs,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Matched,
        Status::DurationMismatch,
        Status::CostMismatch,
        Status::OnlyOurs,
        Status::OnlyTheirs,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::DurationMismatch => "duration_mismatch",
            Status::CostMismatch => "cost_mismatch",
            Status::OnlyOurs => "only_ours",
            Status::OnlyTheirs => "only_theirs",
        }
    }
}

/// One result: indexes into the two inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub status: Status,
    pub ours: Option<usize>,
    pub theirs: Option<usize>,
    /// `call_id` | `called_start` | `` (unpaired).
    pub matched_on: &'static str,
}

/// Digits of a number without international prefixes.
pub fn number_digits(s: &str) -> String {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    let trimmed = s.trim_start();
    if trimmed.starts_with('+') {
        return d;
    }
    if let Some(r) = d.strip_prefix("011") {
        return r.to_string();
    }
    if let Some(r) = d.strip_prefix("00") {
        return r.to_string();
    }
    d
}

/// The same number, possibly one in national and one in international form.
fn same_number(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= 7 && long.ends_with(short)
}

fn key(n: &str) -> &str {
    &n[n.len().saturating_sub(7)..]
}

/// Pairs the two sides (pure; deterministic for the given order).
pub fn reconcile(ours: &[OurCall], theirs: &[TheirCall], tol: &Tolerances) -> Vec<Pair> {
    let mut taken = vec![false; ours.len()];
    let mut paired: Vec<Option<(usize, &'static str)>> = vec![None; theirs.len()];
    let by_call_id: HashMap<&str, usize> = ours
        .iter()
        .enumerate()
        .map(|(i, o)| (o.call_id.as_str(), i))
        .collect();
    for (t, th) in theirs.iter().enumerate() {
        if let Some(&i) = th.call_id.as_deref().and_then(|c| by_call_id.get(c)) {
            if !taken[i] {
                taken[i] = true;
                paired[t] = Some((i, "call_id"));
            }
        }
    }
    let our_digits: Vec<String> = ours.iter().map(|o| number_digits(&o.called)).collect();
    let mut by_number: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, d) in our_digits.iter().enumerate() {
        by_number.entry(key(d)).or_default().push(i);
    }
    let mut order: Vec<usize> = (0..theirs.len()).filter(|&t| paired[t].is_none()).collect();
    order.sort_by_key(|&t| (theirs[t].start_ms, theirs[t].line));
    for t in order {
        let th = &theirs[t];
        let Some(cands) = by_number.get(key(&th.called)) else {
            continue;
        };
        let best = cands
            .iter()
            .copied()
            .filter(|&i| !taken[i] && same_number(&our_digits[i], &th.called))
            .filter_map(|i| {
                let o = &ours[i];
                let ds = [Some(o.setup_ms), o.answer_ms]
                    .into_iter()
                    .flatten()
                    .map(|s| (s - th.start_ms).abs())
                    .min()
                    .unwrap_or(i64::MAX);
                (ds <= tol.start_ms).then(|| (ds, (o.duration_ms - th.duration_ms).abs(), i))
            })
            .min_by(|a, b| (a.0, a.1, &ours[a.2].cdr_id).cmp(&(b.0, b.1, &ours[b.2].cdr_id)));
        if let Some((_, _, i)) = best {
            taken[i] = true;
            paired[t] = Some((i, "called_start"));
        }
    }
    let mut out = Vec::with_capacity(ours.len() + theirs.len());
    for (t, p) in paired.iter().enumerate() {
        match p {
            Some((i, on)) => {
                let o = &ours[*i];
                let th = &theirs[t];
                let status = if (o.duration_ms - th.duration_ms).abs() > tol.duration_ms {
                    Status::DurationMismatch
                } else if th
                    .cost
                    .is_some_and(|c| (c - from_dec18(o.amount)).abs() > tol.cost)
                {
                    Status::CostMismatch
                } else {
                    Status::Matched
                };
                out.push(Pair {
                    status,
                    ours: Some(*i),
                    theirs: Some(t),
                    matched_on: on,
                });
            }
            None => out.push(Pair {
                status: Status::OnlyTheirs,
                ours: None,
                theirs: Some(t),
                matched_on: "",
            }),
        }
    }
    for (i, tk) in taken.iter().enumerate() {
        if !tk {
            out.push(Pair {
                status: Status::OnlyOurs,
                ours: Some(i),
                theirs: None,
                matched_on: "",
            });
        }
    }
    out
}

/// Which file column holds each field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapping {
    pub call_id: String,
    pub calling: String,
    pub called: String,
    pub start: String,
    pub duration: String,
    pub disposition: String,
    pub cost: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            call_id: "call_id".into(),
            calling: "calling".into(),
            called: "called".into(),
            start: "start".into(),
            duration: "duration".into(),
            disposition: "disposition".into(),
            cost: "cost".into(),
        }
    }
}

impl FromStr for Mapping {
    type Err = anyhow::Error;
    /// `field=Column,field=Column,…` over the defaults.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut m = Mapping::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (f, c) = part
                .split_once('=')
                .with_context(|| format!("--columns `{part}`: expected field=Column"))?;
            let slot = match f.trim() {
                "call_id" => &mut m.call_id,
                "calling" => &mut m.calling,
                "called" => &mut m.called,
                "start" => &mut m.start,
                "duration" => &mut m.duration,
                "disposition" => &mut m.disposition,
                "cost" => &mut m.cost,
                other => anyhow::bail!(
                    "--columns: unknown field `{other}` (call_id, calling, called, start, duration, disposition, cost)"
                ),
            };
            *slot = c.trim().to_string();
        }
        Ok(m)
    }
}

/// A row of their file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: field `{field}`: {message}")]
pub struct Rejected {
    pub line: u64,
    pub field: String,
    pub message: String,
}

/// Their file, parsed.
#[derive(Debug, Default)]
pub struct TheirFile {
    pub calls: Vec<TheirCall>,
    pub rejected: Vec<Rejected>,
    /// The file has a disposition column (else it lists billable calls).
    pub has_disposition: bool,
    pub has_cost: bool,
}

/// Latest start a row may have: a day past the run (clocks drift; a date
/// beyond that is a wrong column or format).
const FUTURE_SLACK_MS: i64 = 86_400_000;
/// 2000-01-01: earlier is a wrong column or format.
const EARLIEST_MS: i64 = 946_684_800_000;
/// 48 h: a longer "duration" is a wrong unit or column.
const MAX_DURATION_MS: i64 = 48 * 3_600_000;

fn parse_time(v: &str, now_ms: i64) -> Result<i64, String> {
    let t = v.trim();
    let ms = if let Ok(n) = t.parse::<i64>() {
        if n > 100_000_000_000 {
            n
        } else {
            n.saturating_mul(1000)
        }
    } else if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        dt.timestamp_millis()
    } else {
        let naive = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .ok_or_else(|| {
                format!("`{t}` is not a time (RFC 3339, `YYYY-MM-DD hh:mm:ss[.fff]` UTC, or epoch seconds/ms)")
            })?;
        naive.and_utc().timestamp_millis()
    };
    if ms < EARLIEST_MS || ms > now_ms + FUTURE_SLACK_MS {
        return Err(format!(
            "`{t}` is out of range (before 2000 or more than a day ahead)"
        ));
    }
    Ok(ms)
}

fn parse_duration(v: &str) -> Result<i64, String> {
    let t = v.trim();
    let ms = if let Some((h, rest)) = t.split_once(':') {
        let parts: Vec<&str> = std::iter::once(h).chain(rest.split(':')).collect();
        if parts.len() != 3 {
            return Err(format!("`{t}` is not seconds or hh:mm:ss"));
        }
        let n: Result<Vec<i64>, _> = parts.iter().map(|p| p.parse::<i64>()).collect();
        let n = n.map_err(|_| format!("`{t}` is not seconds or hh:mm:ss"))?;
        if n.iter().any(|x| *x < 0) || n[1] > 59 || n[2] > 59 {
            return Err(format!("`{t}` is not seconds or hh:mm:ss"));
        }
        (n[0] * 3600 + n[1] * 60 + n[2]) * 1000
    } else {
        let d = Decimal::from_str(t).map_err(|_| format!("`{t}` is not a number of seconds"))?;
        if d.is_sign_negative() && !d.is_zero() {
            return Err(format!("`{t}` is negative"));
        }
        (d * Decimal::from(1000))
            .round()
            .to_string()
            .parse::<i64>()
            .map_err(|_| format!("`{t}` is too large"))?
    };
    if ms > MAX_DURATION_MS {
        return Err(format!("`{t}` is longer than 48 h"));
    }
    Ok(ms)
}

fn parse_cost(v: &str) -> Result<Decimal, String> {
    let t = v.trim().trim_start_matches('$');
    let d = Decimal::from_str(t).map_err(|_| format!("`{}` is not a decimal amount", v.trim()))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(format!("`{}` is negative", v.trim()));
    }
    dec18("cost", &d.to_string()).map_err(|e| e.to_string())?;
    Ok(d)
}

/// `answered` for the ways carriers spell an answered call, else the text
/// lower-cased.
pub fn disposition(v: &str) -> String {
    let l = v.trim().to_ascii_lowercase();
    match l.as_str() {
        "answered" | "answer" | "connected" | "completed" | "success" | "ok" | "200" => {
            "answered".into()
        }
        "no answer" | "no_answer" | "noanswer" | "480" => "no_answer".into(),
        "busy" | "486" => "busy".into(),
        _ => l,
    }
}

/// Parses their CSV: a header, then one call per row.
pub fn parse_file(
    text: &[u8],
    m: &Mapping,
    delimiter: u8,
    now_ms: i64,
) -> anyhow::Result<TheirFile> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let header: Vec<String> = r
        .headers()
        .context("reading the header line")?
        .iter()
        .map(str::to_string)
        .collect();
    let col = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let required = |field: &str, name: &str| {
        col(name).with_context(|| {
            format!("header has no column `{name}` for `{field}` (header: {header:?}; map it with --columns {field}=Column)")
        })
    };
    let called = required("called", &m.called)?;
    let start = required("start", &m.start)?;
    let duration = required("duration", &m.duration)?;
    let call_id = col(&m.call_id);
    let calling = col(&m.calling);
    let disp = col(&m.disposition);
    let cost = col(&m.cost);
    let mut out = TheirFile {
        has_disposition: disp.is_some(),
        has_cost: cost.is_some(),
        ..Default::default()
    };
    for (i, rec) in r.records().enumerate() {
        // The file's own line (blank lines are skipped by the reader).
        let line = match &rec {
            Ok(rec) => rec.position().map(|p| p.line()),
            Err(e) => e.position().map(|p| p.line()),
        }
        .unwrap_or(i as u64 + 2);
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                out.rejected.push(Rejected {
                    line,
                    field: "row".into(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).filter(|v| !v.is_empty());
        let reject = |field: &'static str, message: String| Rejected {
            line,
            field: field.to_string(),
            message,
        };
        let row = (|| {
            let called_raw = get(Some(called)).ok_or_else(|| reject("called", "missing".into()))?;
            let called_digits = number_digits(called_raw);
            if called_digits.len() < 3 || called_digits.len() > 18 {
                return Err(reject(
                    "called",
                    format!("`{called_raw}` is not a phone number"),
                ));
            }
            let start_ms = parse_time(
                get(Some(start)).ok_or_else(|| reject("start", "missing".into()))?,
                now_ms,
            )
            .map_err(|e| reject("start", e))?;
            let duration_ms = parse_duration(
                get(Some(duration)).ok_or_else(|| reject("duration", "missing".into()))?,
            )
            .map_err(|e| reject("duration", e))?;
            let cost = match get(cost) {
                Some(v) => Some(parse_cost(v).map_err(|e| reject("cost", e))?),
                None if out.has_cost => return Err(reject("cost", "missing".into())),
                None => None,
            };
            Ok(TheirCall {
                line,
                call_id: get(call_id).map(str::to_string),
                calling: get(calling).map(str::to_string),
                called: called_digits,
                start_ms,
                duration_ms,
                disposition: get(disp).map(disposition),
                cost,
            })
        })();
        match row {
            Ok(c) => out.calls.push(c),
            Err(e) => out.rejected.push(e),
        }
    }
    Ok(out)
}

/// Parses a file in a switch adapter's format: one row per call.
pub fn parse_switch_file(
    bytes: &[u8],
    format: switch_adapters::Format,
    carrier: &str,
) -> anyhow::Result<TheirFile> {
    // Every record is the carrier's: no account mapping to consult.
    let cfg: switch_adapters::AdapterConfig = serde_json::from_value(serde_json::json!({
        "switch_id": format!("carrier:{carrier}"),
        "accounts": {"default_account": carrier, "pass_through": false},
    }))
    .context("adapter configuration")?;
    let adapted = switch_adapters::adapt_file(format, bytes, &cfg);
    let mut order: Vec<String> = Vec::new();
    let mut by_call: HashMap<String, Vec<switch_adapters::SwitchEvent>> = HashMap::new();
    for ev in adapted.events {
        let id = cdr_model::ids::cdr_id(&ev.switch_id, &ev.call_id);
        let evs = by_call.entry(id.clone()).or_default();
        if evs.is_empty() {
            order.push(id);
        }
        if !evs.iter().any(|e| e.event_id == ev.event_id) {
            evs.push(ev);
        }
    }
    let mut out = TheirFile {
        has_disposition: true,
        has_cost: false,
        ..Default::default()
    };
    for (n, id) in order.iter().enumerate() {
        let evs = &by_call[id];
        let at = evs.iter().map(|e| e.ts_ms).max().unwrap_or_default();
        let c = assembler::core::build_call(id, evs, None, at);
        let answered = c.disposition == "answered";
        out.calls.push(TheirCall {
            line: n as u64 + 1,
            call_id: Some(c.call_id.clone()),
            calling: c.cli.clone(),
            called: number_digits(&c.dialed),
            start_ms: c.answer_ts_ms.unwrap_or(c.setup_ts_ms),
            duration_ms: if answered { c.duration_ms } else { 0 },
            disposition: Some(c.disposition.clone()),
            cost: None,
        });
    }
    for (record, e) in adapted.rejected {
        out.rejected.push(Rejected {
            line: record as u64,
            field: e.field().unwrap_or("record").to_string(),
            message: e.to_string(),
        });
    }
    Ok(out)
}

/// One stored result row.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct ResultRow {
    pub run_id: String,
    pub carrier: String,
    pub reconciled_at: i64,
    pub status: String,
    pub matched_on: String,
    pub their_line: u64,
    pub cdr_id: String,
    pub call_id: String,
    pub called: String,
    pub our_start: Option<i64>,
    pub their_start: Option<i64>,
    pub our_duration_ms: i64,
    pub their_duration_ms: i64,
    pub our_amount: i128,
    pub their_cost: Option<i128>,
    pub difference: i128,
    pub detail: String,
}

/// One run's summary.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq, Default)]
pub struct RunRow {
    pub run_id: String,
    pub carrier: String,
    pub file: String,
    pub file_sha256: String,
    pub reconciled_at: i64,
    pub period_from: i64,
    pub period_to: i64,
    pub tolerances: String,
    pub actor: String,
    pub our_calls: u64,
    pub their_calls: u64,
    pub our_seconds: i64,
    pub their_seconds: i64,
    pub our_amount: i128,
    pub their_cost: i128,
    pub matched: u64,
    pub duration_mismatch: u64,
    pub cost_mismatch: u64,
    pub only_ours: u64,
    pub only_theirs: u64,
    pub rejected: u64,
    pub disputed_amount: i128,
}

/// The stored rows and summary of one reconciliation.
pub fn results(
    run: &RunRow,
    ours: &[OurCall],
    theirs: &TheirFile,
    pairs: &[Pair],
) -> (Vec<ResultRow>, RunRow) {
    let mut sum = run.clone();
    let mut rows = Vec::with_capacity(pairs.len() + theirs.rejected.len());
    for p in pairs {
        let o = p.ours.map(|i| &ours[i]);
        let t = p.theirs.map(|i| &theirs.calls[i]);
        let our_amount = o.map_or(0, |o| o.amount);
        let their_cost = t
            .and_then(|t| t.cost)
            .map(|c| dec18("cost", &c.to_string()).expect("checked when parsed"));
        let difference = their_cost.unwrap_or(0) - our_amount;
        match p.status {
            Status::Matched => sum.matched += 1,
            Status::DurationMismatch => sum.duration_mismatch += 1,
            Status::CostMismatch => sum.cost_mismatch += 1,
            Status::OnlyOurs => sum.only_ours += 1,
            Status::OnlyTheirs => sum.only_theirs += 1,
        }
        if p.status != Status::Matched {
            sum.disputed_amount += difference;
        }
        rows.push(ResultRow {
            run_id: run.run_id.clone(),
            carrier: run.carrier.clone(),
            reconciled_at: run.reconciled_at,
            status: p.status.as_str().into(),
            matched_on: p.matched_on.into(),
            their_line: t.map_or(0, |t| t.line),
            cdr_id: o.map(|o| o.cdr_id.clone()).unwrap_or_default(),
            call_id: o
                .map(|o| o.call_id.clone())
                .or_else(|| t.and_then(|t| t.call_id.clone()))
                .unwrap_or_default(),
            called: o
                .map(|o| o.called.clone())
                .or_else(|| t.map(|t| t.called.clone()))
                .unwrap_or_default(),
            our_start: o.map(|o| o.answer_ms.unwrap_or(o.setup_ms)),
            their_start: t.map(|t| t.start_ms),
            our_duration_ms: o.map_or(0, |o| o.duration_ms),
            their_duration_ms: t.map_or(0, |t| t.duration_ms),
            our_amount,
            their_cost,
            difference,
            detail: String::new(),
        });
    }
    sum.our_calls = ours.len() as u64;
    sum.their_calls = theirs.calls.len() as u64;
    sum.our_seconds = ours.iter().map(|o| o.duration_ms).sum::<i64>() / 1000;
    sum.their_seconds = theirs.calls.iter().map(|t| t.duration_ms).sum::<i64>() / 1000;
    sum.our_amount = ours.iter().map(|o| o.amount).sum();
    sum.their_cost = rows.iter().filter_map(|r| r.their_cost).sum();
    sum.rejected = theirs.rejected.len() as u64;
    for r in &theirs.rejected {
        rows.push(ResultRow {
            run_id: run.run_id.clone(),
            carrier: run.carrier.clone(),
            reconciled_at: run.reconciled_at,
            status: "rejected".into(),
            matched_on: String::new(),
            their_line: r.line,
            cdr_id: String::new(),
            call_id: String::new(),
            called: String::new(),
            our_start: None,
            their_start: None,
            our_duration_ms: 0,
            their_duration_ms: 0,
            our_amount: 0,
            their_cost: None,
            difference: 0,
            detail: r.to_string(),
        });
    }
    (rows, sum)
}

/// What the command needs besides the file.
#[derive(Debug, Clone)]
pub struct Request {
    pub carrier: String,
    pub file: std::path::PathBuf,
    pub mapping: Mapping,
    pub delimiter: u8,
    /// A switch adapter format instead of mapped CSV.
    pub format: Option<switch_adapters::Format>,
    pub tolerances: Tolerances,
    /// `[from, to)` on our setup time, UTC `YYYY-MM-DD[ hh:mm:ss]`; default:
    /// the whole UTC days their file covers.
    pub from: Option<String>,
    pub to: Option<String>,
    pub actor: String,
}

/// Whole UTC days covering `[min, max]`.
fn days(min_ms: i64, max_ms: i64) -> (i64, i64) {
    const DAY: i64 = 86_400_000;
    (
        min_ms - min_ms.rem_euclid(DAY),
        max_ms - max_ms.rem_euclid(DAY) + DAY,
    )
}

/// Runs a reconciliation and stores it; returns the summary and the
/// rejected rows.
pub async fn run(
    client: &clickhouse::Client,
    req: &Request,
) -> anyhow::Result<(RunRow, Vec<Rejected>)> {
    let bytes =
        std::fs::read(&req.file).with_context(|| format!("reading {}", req.file.display()))?;
    let now = cdr_kafka::now_ms();
    let theirs = match req.format {
        Some(f) => parse_switch_file(&bytes, f, &req.carrier),
        None => parse_file(&bytes, &req.mapping, req.delimiter, now),
    }
    .with_context(|| format!("{}", req.file.display()))?;
    let (from_ms, to_ms) = match (&req.from, &req.to) {
        (Some(f), Some(t)) => (
            parse_time(&crate::dlq::bound("from", &Some(f.clone()), "")?, now)
                .map_err(|e| anyhow::anyhow!("--from: {e}"))?,
            parse_time(
                &crate::dlq::bound("to", &Some(t.clone()), "")?,
                now + 400 * 86_400_000,
            )
            .map_err(|e| anyhow::anyhow!("--to: {e}"))?,
        ),
        (None, None) => {
            let min = theirs.calls.iter().map(|c| c.start_ms).min();
            let max = theirs.calls.iter().map(|c| c.start_ms).max();
            match (min, max) {
                (Some(a), Some(b)) => days(a, b),
                _ => anyhow::bail!("{}: no usable rows, and no --from/--to", req.file.display()),
            }
        }
        _ => anyhow::bail!("give both --from and --to, or neither"),
    };
    let answered_only = if theirs.has_disposition {
        ""
    } else {
        " AND disposition = 'answered'"
    };
    let ours: Vec<OurCall> = client
        .query(&format!(
            "SELECT cdr_id, call_id, dialed_e164 AS called, toUnixTimestamp64Milli(setup_ts) AS setup_ms, \
             toUnixTimestamp64Milli(answer_ts) AS answer_ms, \
             if(disposition = 'answered', duration_ms, 0) AS duration_ms, toString(disposition) AS disposition, \
             amount FROM cdr.rated_cdrs_final \
             WHERE account_id = ? AND setup_ts >= fromUnixTimestamp64Milli(?) AND setup_ts < fromUnixTimestamp64Milli(?){answered_only} \
             ORDER BY setup_ts, cdr_id"
        ))
        .bind(&req.carrier)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all()
        .await
        .context("reading our CDRs")?;
    eprintln!(
        "reconcile {}: {} of their rows ({} rejected), {} of our calls in [{}, {})",
        req.carrier,
        theirs.calls.len(),
        theirs.rejected.len(),
        ours.len(),
        chrono::DateTime::from_timestamp_millis(from_ms).unwrap_or_default(),
        chrono::DateTime::from_timestamp_millis(to_ms).unwrap_or_default()
    );
    let pairs = reconcile(&ours, &theirs.calls, &req.tolerances);
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let run_id = hex::encode(sha2::Sha256::digest(
        format!("{}|{sha}|{now}", req.carrier).as_bytes(),
    ))[..16]
        .to_string();
    let head = RunRow {
        run_id,
        carrier: req.carrier.clone(),
        file: req.file.display().to_string(),
        file_sha256: sha,
        reconciled_at: now,
        period_from: from_ms,
        period_to: to_ms,
        tolerances: serde_json::to_string(&req.tolerances)?,
        actor: req.actor.clone(),
        ..Default::default()
    };
    let (rows, summary) = results(&head, &ours, &theirs, &pairs);
    let mut ins = client.insert::<ResultRow>("reconciliation").await?;
    for r in &rows {
        ins.write(r).await?;
    }
    ins.end().await.context("writing reconciliation")?;
    let mut ins = client.insert::<RunRow>("reconciliation_runs").await?;
    ins.write(&summary).await?;
    ins.end().await.context("writing reconciliation_runs")?;
    Ok((summary, theirs.rejected))
}

/// The summary as the command prints it.
pub fn summary_text(s: &RunRow) -> String {
    let m = |v: i128| from_dec18(v).normalize();
    format!(
        "run {}: carrier {}, {}\n\
         side\tcalls\tminutes\tamount\n\
         ours\t{}\t{:.2}\t{}\n\
         theirs\t{}\t{:.2}\t{}\n\
         matched {}, duration_mismatch {}, cost_mismatch {}, only_ours {}, only_theirs {}, rejected {}\n\
         disputed amount (theirs - ours, unmatched rows): {}\n",
        s.run_id,
        s.carrier,
        s.file,
        s.our_calls,
        Decimal::from(s.our_seconds) / Decimal::from(60),
        m(s.our_amount),
        s.their_calls,
        Decimal::from(s.their_seconds) / Decimal::from(60),
        m(s.their_cost),
        s.matched,
        s.duration_mismatch,
        s.cost_mismatch,
        s.only_ours,
        s.only_theirs,
        s.rejected,
        m(s.disputed_amount)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours(i: usize, called: &str, setup: i64, dur_s: i64, amount: &str) -> OurCall {
        OurCall {
            cdr_id: format!("cdr-{i}"),
            call_id: format!("call-{i}"),
            called: called.into(),
            setup_ms: setup,
            answer_ms: Some(setup + 3_000),
            duration_ms: dur_s * 1000,
            disposition: "answered".into(),
            amount: dec18("a", amount).unwrap(),
        }
    }

    fn theirs(line: u64, called: &str, start: i64, dur_ms: i64, cost: &str) -> TheirCall {
        TheirCall {
            line,
            call_id: None,
            calling: None,
            called: number_digits(called),
            start_ms: start,
            duration_ms: dur_ms,
            disposition: None,
            cost: Some(Decimal::from_str(cost).unwrap()),
        }
    }

    const T0: i64 = 1_780_000_000_000;

    #[test]
    fn every_kind_of_discrepancy_is_found() {
        let tol = Tolerances::default();
        let o = vec![
            ours(0, "+4930123456", T0, 60, "0.011"),
            ours(1, "+4930123457", T0 + 10_000, 120, "0.022"),
            ours(2, "+4930123458", T0 + 20_000, 30, "0.0055"),
            ours(3, "+4930123459", T0 + 30_000, 45, "0.008"),
            ours(4, "+33140000000", T0 + 40_000, 10, "0.001"),
        ];
        let mut by_id = theirs(9, "999", T0 + 999_999, 15_000, "0.001");
        by_id.call_id = Some("call-4".into());
        let t = vec![
            // Answer time, E.164 without +, within a second: matched.
            theirs(2, "4930123456", T0 + 3_500, 60_400, "0.011"),
            // National-format number with 00 prefix, setup time: duration off.
            theirs(3, "004930123457", T0 + 10_000, 125_000, "0.0229"),
            // Cost off.
            theirs(4, "+49 30 123458", T0 + 21_000, 30_000, "0.0100"),
            // Nobody called this.
            theirs(5, "+4930999999", T0 + 30_000, 45_000, "0.008"),
            by_id,
        ];
        let pairs = reconcile(&o, &t, &tol);
        let status_of_line = |l: u64| {
            pairs
                .iter()
                .find(|p| p.theirs.is_some_and(|i| t[i].line == l))
                .unwrap()
                .status
        };
        assert_eq!(status_of_line(2), Status::Matched);
        assert_eq!(status_of_line(3), Status::DurationMismatch);
        assert_eq!(status_of_line(4), Status::CostMismatch);
        assert_eq!(status_of_line(5), Status::OnlyTheirs);
        // Paired on the call id although number and start disagree: the
        // duration is the discrepancy then.
        let p = pairs.iter().find(|p| p.ours == Some(4)).unwrap();
        assert_eq!(p.matched_on, "call_id");
        assert_eq!(p.status, Status::DurationMismatch);
        let only_ours: Vec<usize> = pairs
            .iter()
            .filter(|p| p.status == Status::OnlyOurs)
            .map(|p| p.ours.unwrap())
            .collect();
        assert_eq!(only_ours, vec![3]);
        let run = RunRow::default();
        let file = TheirFile {
            calls: t.clone(),
            ..Default::default()
        };
        let (rows, sum) = results(&run, &o, &file, &pairs);
        assert_eq!(rows.len(), 6);
        assert_eq!(
            (
                sum.matched,
                sum.duration_mismatch,
                sum.cost_mismatch,
                sum.only_ours,
                sum.only_theirs
            ),
            (1, 2, 1, 1, 1)
        );
        // (0.0229-0.022) + (0.0100-0.0055) + (0.008-0) + (0-0.008) + (0.001-0.001)
        assert_eq!(
            from_dec18(sum.disputed_amount),
            Decimal::from_str("0.0054").unwrap()
        );
    }

    #[test]
    fn the_nearest_start_wins_among_repeated_calls() {
        let o = vec![
            ours(0, "+4930123456", T0, 60, "0.01"),
            ours(1, "+4930123456", T0 + 4_000, 61, "0.01"),
        ];
        let t = vec![
            theirs(2, "+4930123456", T0 + 4_100, 61_000, "0.01"),
            theirs(3, "+4930123456", T0 + 200, 60_000, "0.01"),
        ];
        let pairs = reconcile(&o, &t, &Tolerances::default());
        assert!(
            pairs.iter().all(|p| p.status == Status::Matched),
            "{pairs:?}"
        );
        assert_eq!(pairs[0].ours, Some(1));
        assert_eq!(pairs[1].ours, Some(0));
    }

    #[test]
    fn bad_rows_are_named_by_line_and_field() {
        let csv = "CallID,ANI,DNIS,Start,Secs,Cost\n\
                   a,1,4930123456,2026-11-02 10:00:00,60,0.011\n\
                   b,1,,2026-11-02 10:00:00,60,0.011\n\
                   c,1,4930123456,2026-13-02 10:00:00,60,0.011\n\
                   d,1,4930123456,2026-11-02 10:00:00,-5,0.011\n\
                   e,1,4930123456,2026-11-02 10:00:00,60,abc\n\
                   f,1,4930123456,1890-11-02 10:00:00,60,0.011\n\
                   g,1,4930123456,2026-11-02 10:00:00,00:01:05,\n\
                   \n\
                   h,1,+1 (212) 555-0100,1793613600,65.4,$0.02\n";
        let m: Mapping =
            "call_id=CallID,calling=ANI,called=DNIS,start=Start,duration=Secs,cost=Cost"
                .parse()
                .unwrap();
        let f = parse_file(csv.as_bytes(), &m, b',', T0 + 400 * 86_400_000).unwrap();
        let rej: Vec<(u64, &str)> = f
            .rejected
            .iter()
            .map(|r| (r.line, r.field.as_str()))
            .collect();
        assert_eq!(
            rej,
            vec![
                (3, "called"),
                (4, "start"),
                (5, "duration"),
                (6, "cost"),
                (7, "start"),
                (8, "cost")
            ]
        );
        assert_eq!(f.calls.len(), 2);
        assert_eq!(f.calls[0].duration_ms, 60_000);
        assert_eq!(f.calls[1].called, "12125550100");
        assert_eq!(f.calls[1].start_ms, 1_793_613_600_000);
        assert_eq!(f.calls[1].duration_ms, 65_400);
        assert_eq!(f.calls[1].cost, Some(Decimal::from_str("0.02").unwrap()));
        assert!(f.rejected[1].to_string().contains("line 4: field `start`"));
        assert!(!f.has_disposition);
        // A required column that is not there is an error for the file.
        let e = parse_file(b"a,b\n1,2\n", &Mapping::default(), b',', T0).unwrap_err();
        assert!(e.to_string().contains("`called`"), "{e}");
        assert!("nope=X".parse::<Mapping>().is_err());
    }

    /// A carrier running Asterisk sends its Master.csv: three calls (the
    /// first has two Dial attempts and a Hangup record), each one row, as
    /// our adapters and assembler read them.
    #[test]
    fn a_switch_format_file_gives_one_row_per_call() {
        let bytes = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../crates/switch-adapters/tests/fixtures/asterisk_master.csv"),
        )
        .unwrap();
        let f = parse_switch_file(&bytes, "asterisk-csv".parse().unwrap(), "acc-300").unwrap();
        assert!(f.rejected.is_empty(), "{:?}", f.rejected);
        assert_eq!(f.calls.len(), 3, "{:?}", f.calls);
        let first = &f.calls[0];
        assert_eq!(first.called, "4930123456");
        assert_eq!(first.disposition.as_deref(), Some("answered"));
        assert_eq!(first.duration_ms, 115_000);
        assert_eq!(first.call_id.as_deref(), Some("1763460300.10"));
        let disp: Vec<&str> = f
            .calls
            .iter()
            .map(|c| c.disposition.as_deref().unwrap())
            .collect();
        assert_eq!(disp, ["answered", "busy", "failed"]);
        assert_eq!(f.calls[1].duration_ms, 0);
        // A broken record is named, the others still count.
        let mut bad = bytes.clone();
        bad.extend_from_slice(b"\"acc-300\",\"1\",\"49301\",\"x\",\"\",\"\",\"\",\"Dial\",\"\",\"not a time\",,\"\",1,0,\"BUSY\",\"D\",\"9.9\",\"\",\"\",\"9.9\",1\n");
        let g = parse_switch_file(&bad, "asterisk-csv".parse().unwrap(), "acc-300").unwrap();
        assert_eq!(g.calls.len(), 3);
        assert_eq!(g.rejected.len(), 1, "{:?}", g.rejected);
    }

    proptest! {
        /// Their file made from our calls (shuffled, numbers reformatted,
        /// starts and durations jittered within the tolerances) matches
        /// every call exactly once; each call is in exactly one result row.
        #[test]
        fn a_faithful_file_matches_every_call_once(
            calls in proptest::collection::vec((0u32..50, 0i64..3_600_000, 0i64..3_600, 0u32..10_000), 1..60),
            jitter in proptest::collection::vec((-4_000i64..=4_000, -900i64..=900), 60),
            national in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let o: Vec<OurCall> = calls.iter().enumerate().map(|(i, (n, t, d, a))| {
                let mut c = ours(i, &format!("+4930{:07}", n), T0 + t, *d, &format!("0.{a:04}"));
                c.answer_ms = None;
                c
            }).collect();
            // Only distinct (number, start) pairs far enough apart are
            // unambiguous; keep one call per number and 10 s window.
            let mut seen = std::collections::HashSet::new();
            let o: Vec<OurCall> = o.into_iter().filter(|c| seen.insert((c.called.clone(), c.setup_ms / 20_000))).collect();
            let o: Vec<OurCall> = o.iter().filter(|c| !o.iter().any(|x| x.cdr_id != c.cdr_id && x.called == c.called && (x.setup_ms - c.setup_ms).abs() <= 20_000)).cloned().collect();
            let mut t: Vec<TheirCall> = o.iter().enumerate().map(|(i, c)| {
                let (js, jd) = jitter[i % jitter.len()];
                let called = if national { c.called.replacen("+49", "0", 1) } else { c.called.replacen('+', "00", 1) };
                let mut x = theirs(i as u64 + 2, &called, c.setup_ms + js, (c.duration_ms + jd).max(0), &from_dec18(c.amount).to_string());
                if national { x.called = called.trim_start_matches('0').to_string(); }
                x
            }).collect();
            let k = t.len();
            if k > 1 { t.rotate_left((seed as usize) % k); }
            let pairs = reconcile(&o, &t, &Tolerances::default());
            prop_assert_eq!(pairs.len(), o.len());
            prop_assert!(pairs.iter().all(|p| p.status == Status::Matched), "{:?}", pairs);
            let mut used: Vec<usize> = pairs.iter().filter_map(|p| p.ours).collect();
            used.sort();
            used.dedup();
            prop_assert_eq!(used.len(), o.len());
        }
    }
}
