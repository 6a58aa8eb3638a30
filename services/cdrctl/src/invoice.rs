//! `cdrctl invoice`: one account's invoice for one calendar month (UTC),
//! computed by ClickHouse with the very queries finance runs
//! (`deploy/finance/invoice_lines.sql` and `invoice_total.sql`, compiled in),
//! written as CSV (lines, total) and one JSON document.
//!
//! Money stays decimal text end to end (ClickHouse `Decimal(38, 18)`,
//! decimals quoted in JSON): per-line figures are unrounded; the total is
//! rounded once, to cents, half away from zero, by `invoice_total.sql`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The invoice lines query (one line per destination, credits netted in).
pub const LINES_SQL: &str = include_str!("../../../deploy/finance/invoice_lines.sql");
/// The invoice total query (the only rounding).
pub const TOTAL_SQL: &str = include_str!("../../../deploy/finance/invoice_total.sql");

/// A calendar month, `YYYY-MM`, as the half-open UTC interval it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl std::str::FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("period {s:?}: expected YYYY-MM (e.g. 2026-11)");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        let (year, month): (i32, u32) =
            (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if y.len() != 4 || !(1..=12).contains(&month) || year < 1970 {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Month {
    /// `[first day 00:00:00.000, first day of the next month)` as
    /// ClickHouse `DateTime64(3)` text (UTC).
    pub fn bounds(&self) -> (String, String) {
        let next = if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        };
        let at = |m: Month| format!("{:04}-{:02}-01 00:00:00.000", m.year, m.month);
        (at(*self), at(next))
    }
}

/// The files one invoice run wrote.
#[derive(Debug)]
pub struct Written {
    pub lines_csv: PathBuf,
    pub total_csv: PathBuf,
    pub json: PathBuf,
    /// The rounded total, as ClickHouse printed it.
    pub total: String,
    pub lines: usize,
}

async fn fetch(
    client: &clickhouse::Client,
    sql: &str,
    account: &str,
    (from, to): &(String, String),
    format: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut cursor = client
        .query(sql)
        .param("account", account)
        .param("from", from)
        .param("to", to)
        .with_setting("output_format_json_quote_decimals", "1")
        .with_setting("output_format_json_quote_64bit_integers", "1")
        .fetch_bytes(format)?;
    Ok(cursor.collect().await?.to_vec())
}

fn json_rows(bytes: &[u8], what: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    std::str::from_utf8(bytes)
        .with_context(|| format!("{what}: not UTF-8"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{what}: {l}")))
        .collect()
}

/// Runs both queries for `account` in `month` and writes
/// `<dir>/invoice-<account>-<month>.{lines.csv,total.csv,json}`.
pub async fn write(
    client: &clickhouse::Client,
    account: &str,
    month: Month,
    dir: &Path,
) -> anyhow::Result<Written> {
    anyhow::ensure!(
        !account.is_empty()
            && account
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)),
        "account {account:?}: expected letters, digits and - _ . @ (it names the output files)"
    );
    let bounds = month.bounds();
    let lines_csv = fetch(client, LINES_SQL, account, &bounds, "CSVWithNames")
        .await
        .context("invoice lines")?;
    let total_csv = fetch(client, TOTAL_SQL, account, &bounds, "CSVWithNames")
        .await
        .context("invoice total")?;
    let lines = json_rows(
        &fetch(client, LINES_SQL, account, &bounds, "JSONEachRow")
            .await
            .context("invoice lines")?,
        "invoice lines",
    )?;
    let mut totals = json_rows(
        &fetch(client, TOTAL_SQL, account, &bounds, "JSONEachRow")
            .await
            .context("invoice total")?,
        "invoice total",
    )?;
    anyhow::ensure!(
        totals.len() == 1,
        "invoice total: {} rows, expected one",
        totals.len()
    );
    let total = totals.remove(0);
    let currencies = total["currencies"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(
        currencies.len() <= 1,
        "account {account} has charges in several currencies ({currencies:?}): one invoice cannot add them up"
    );
    let total_text = total["invoice_total"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| total["invoice_total"].to_string());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = dir.join(format!("invoice-{account}-{month}"));
    let path = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
    let w = Written {
        lines_csv: path("lines.csv"),
        total_csv: path("total.csv"),
        json: path("json"),
        total: total_text,
        lines: lines.len(),
    };
    let doc = serde_json::json!({
        "account_id": account,
        "period": month.to_string(),
        "period_from": bounds.0,
        "period_to": bounds.1,
        "rounding": "per-call and per-line amounts unrounded; the total rounded once to cents, half away from zero",
        "lines": lines,
        "total": total,
    });
    for (p, bytes) in [
        (&w.lines_csv, lines_csv),
        (&w.total_csv, total_csv),
        (&w.json, serde_json::to_vec_pretty(&doc)?),
    ] {
        std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound_half_open() {
        let m: Month = "2026-11".parse().unwrap();
        assert_eq!(
            m.bounds(),
            (
                "2026-11-01 00:00:00.000".to_string(),
                "2026-12-01 00:00:00.000".to_string()
            )
        );
        let d: Month = "2026-12".parse().unwrap();
        assert_eq!(d.bounds().1, "2027-01-01 00:00:00.000");
        assert_eq!(d.to_string(), "2026-12");
        for bad in ["2026-13", "2026-0", "26-11", "2026/11", "", "2026-1x"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_compiled_queries_are_the_finance_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/finance");
        assert_eq!(
            std::fs::read_to_string(dir.join("invoice_lines.sql")).unwrap(),
            LINES_SQL
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("invoice_total.sql")).unwrap(),
            TOTAL_SQL
        );
        for q in [LINES_SQL, TOTAL_SQL] {
            for p in [
                "{account:String}",
                "{from:DateTime64(3)}",
                "{to:DateTime64(3)}",
            ] {
                assert!(q.contains(p), "{p}");
            }
        }
    }
}
