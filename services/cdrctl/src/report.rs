//! What landed in ClickHouse: calls by disposition, dead letters by reason,
//! ASR/ACD, read through the FINAL-free views finance uses.

use clickhouse::Row;
use serde::Deserialize;

#[derive(Debug, Clone, Row, Deserialize, PartialEq)]
pub struct Count {
    pub label: String,
    pub n: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub calls: u64,
    pub by_disposition: Vec<Count>,
    pub dead_letters: u64,
    pub dead_by_reason: Vec<Count>,
    pub answered_seconds: i64,
    pub asr: f64,
    pub acd_s: f64,
    pub raw_rows: u64,
    pub kpi_seizures: i64,
    pub rated: u64,
    pub unrated: u64,
    /// Sum of unrounded per-call amounts (decimal text, 18 places).
    pub amount: String,
    pub lrn_fees: String,
}

#[derive(Row, Deserialize)]
struct Money {
    rated: u64,
    unrated: u64,
    amount: String,
    lrn_fees: String,
}

#[derive(Row, Deserialize)]
struct Totals {
    calls: u64,
    answered: u64,
    answered_s: i64,
    raw: u64,
}

#[derive(Row, Deserialize)]
struct KpiTotal {
    seizures: i64,
}

/// `since_prefix`: restrict to call ids starting with this (a simulator run id), or "" for all.
pub async fn fetch(client: &clickhouse::Client, call_prefix: &str) -> anyhow::Result<Report> {
    let by_disposition = client
        .query("SELECT disposition AS label, count() AS n FROM rated_cdrs_final WHERE startsWith(call_id, ?) GROUP BY label ORDER BY label")
        .bind(call_prefix)
        .fetch_all::<Count>()
        .await?;
    let t = client
        .query(
            "SELECT count() AS calls, countIf(disposition = 'answered') AS answered, \
             toInt64(sumIf(billable_seconds, disposition = 'answered')) AS answered_s, \
             toUInt64(assumeNotNull((SELECT count() FROM rated_cdrs WHERE startsWith(call_id, ?)))) AS raw \
             FROM rated_cdrs_final WHERE startsWith(call_id, ?)",
        )
        .bind(call_prefix)
        .bind(call_prefix)
        .fetch_one::<Totals>()
        .await?;
    let dead_by_reason = client
        .query("SELECT reason AS label, count() AS n FROM dead_letters_final WHERE startsWith(ifNull(key, ''), ?) GROUP BY label ORDER BY label")
        .bind(call_prefix)
        .fetch_all::<Count>()
        .await?;
    let kpi = client
        .query(
            "SELECT toInt64(count()) AS seizures FROM kpi_calls_final WHERE startsWith(call_id, ?)",
        )
        .bind(call_prefix)
        .fetch_one::<KpiTotal>()
        .await?;
    let money = client
        .query(
            "SELECT countIf(rating_status = 'rated') AS rated, countIf(rating_status = 'unrated') AS unrated, \
             toString(sum(amount)) AS amount, toString(sum(lrn_fee)) AS lrn_fees \
             FROM rated_cdrs_final WHERE startsWith(call_id, ?)",
        )
        .bind(call_prefix)
        .fetch_one::<Money>()
        .await?;
    Ok(Report {
        rated: money.rated,
        unrated: money.unrated,
        amount: money.amount,
        lrn_fees: money.lrn_fees,
        calls: t.calls,
        dead_letters: dead_by_reason.iter().map(|c| c.n).sum(),
        by_disposition,
        dead_by_reason,
        answered_seconds: t.answered_s,
        asr: if t.calls > 0 {
            t.answered as f64 / t.calls as f64
        } else {
            0.0
        },
        acd_s: if t.answered > 0 {
            t.answered_s as f64 / t.answered as f64
        } else {
            0.0
        },
        raw_rows: t.raw,
        kpi_seizures: kpi.seizures,
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "calls in rated_cdrs_final: {} (raw rows incl. redelivered copies: {})",
            self.calls, self.raw_rows
        )?;
        for c in &self.by_disposition {
            writeln!(f, "  {:<10} {:>8}", c.label, c.n)?;
        }
        writeln!(f, "dead letters: {}", self.dead_letters)?;
        for c in &self.dead_by_reason {
            writeln!(f, "  {:<20} {:>6}", c.label, c.n)?;
        }
        writeln!(
            f,
            "ASR {:.1}%  ACD {:.1} s  answered seconds {}",
            self.asr * 100.0,
            self.acd_s,
            self.answered_seconds
        )?;
        writeln!(
            f,
            "rated {}  unrated {}  amount USD {} (unrounded)  LRN fees USD {}",
            self.rated, self.unrated, self.amount, self.lrn_fees
        )?;
        write!(
            f,
            "KPI: {} seizures (kpi_calls_final, one per call)",
            self.kpi_seizures
        )
    }
}
