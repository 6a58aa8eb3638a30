//! LRN sources: this module owns *where an LRN answer comes from* — the
//! [`LrnSource`] trait, the embedded ported-numbers database [`PortedDb`], the
//! external HTTP dip client [`HttpDip`], and [`AnySource`] to pick one at run
//! time. It knows nothing about caching or fees (see [`crate::cache`]).
//!
//! All numbers here are 10-digit NANP numbers `NPANXXXXXX` (NPA first digit 2‥9).

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::numbering::RowError;

/// Answer of an LRN source for one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LrnAnswer {
    /// Location routing number, 10 digits. Equals the queried number when not ported.
    pub lrn: String,
    /// `true` when the number is ported (LRN differs from the number).
    pub ported: bool,
}

/// Failure of an LRN lookup.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LrnError {
    /// The queried number is not a 10-digit NANP number.
    #[error("invalid 10-digit NANP number: {0:?}")]
    InvalidNumber(String),
    /// The source did not answer in time.
    #[error("lookup timed out after {0:?}")]
    Timeout(Duration),
    /// Connection-level failure (refused, reset, DNS, …).
    #[error("transport error: {0}")]
    Transport(String),
    /// The source answered with a non-success HTTP status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The source answered with something that is not a valid LRN answer.
    #[error("garbage response: {0}")]
    Garbage(String),
    /// Bad client configuration.
    #[error("configuration: {0}")]
    Config(String),
}

impl LrnError {
    /// Whether retrying the same lookup may succeed (timeouts, transport
    /// errors, HTTP 5xx and 429). Garbage and invalid input are not retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            LrnError::Timeout(_) | LrnError::Transport(_) => true,
            LrnError::Status(s) => *s >= 500 || *s == 429,
            LrnError::InvalidNumber(_) | LrnError::Garbage(_) | LrnError::Config(_) => false,
        }
    }
}

/// A source of LRN answers. Implementations must be cheap to call concurrently.
pub trait LrnSource: Send + Sync {
    /// Look up a 10-digit NANP number.
    fn lookup(&self, tn10: &str) -> impl Future<Output = Result<LrnAnswer, LrnError>> + Send;
}

impl<S: LrnSource> LrnSource for Arc<S> {
    fn lookup(&self, tn10: &str) -> impl Future<Output = Result<LrnAnswer, LrnError>> + Send {
        (**self).lookup(tn10)
    }
}

/// Parse a 10-digit NANP number (`NPANXXXXXX`, first digit 2‥9) into an integer key.
pub fn parse_tn10(s: &str) -> Option<u64> {
    parse_tn10_bytes(s.as_bytes())
}

#[inline]
fn parse_tn10_bytes(b: &[u8]) -> Option<u64> {
    if b.len() != 10 || !(b'2'..=b'9').contains(&b[0]) {
        return None;
    }
    let mut v = 0u64;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u64;
    }
    Some(v)
}

/// Format an integer key back to 10 digits.
pub fn format_tn10(v: u64) -> String {
    format!("{:010}", v)
}

// ---------------------------------------------------------------------------
// PortedDb
// ---------------------------------------------------------------------------

/// Errors of [`PortedDb`] loading that abort the load (bad rows do not).
#[derive(Debug, Error)]
pub enum PortedDbError {
    /// The file could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// At most this many bad rows are kept in a [`LoadReport`] (all are counted).
pub const MAX_REPORTED_ROW_ERRORS: usize = 1000;

/// Outcome of loading a ported-numbers file.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Distinct numbers loaded.
    pub rows: usize,
    /// Bad rows (skipped).
    pub bad_rows: usize,
    /// Rows whose number appeared again later in the file (the later row wins).
    pub duplicates: usize,
    /// The first [`MAX_REPORTED_ROW_ERRORS`] bad rows, with line and field.
    pub errors: Vec<RowError>,
    /// Wall time of the load.
    pub elapsed: Duration,
}

/// Lowest and one-past-highest 10-digit NANP key.
const TN_MIN: u64 = 2_000_000_000;
const TN_END: u64 = 10_000_000_000;
/// One index bucket per NPA-NXX (tn / 10 000).
const BUCKET_DIV: u64 = 10_000;
const BUCKETS: usize = ((TN_END - TN_MIN) / BUCKET_DIV) as usize;

#[derive(Default)]
struct PortedTable {
    /// Sorted by tn, unique tn.
    rows: Vec<(u64, u64)>,
    /// `rows[index[b]..index[b + 1]]` holds NPA-NXX bucket `b` (empty when no rows).
    index: Vec<u32>,
}

impl PortedTable {
    fn new(rows: Vec<(u64, u64)>) -> Self {
        let mut index = vec![0u32; BUCKETS + 1];
        for r in &rows {
            index[((r.0 - TN_MIN) / BUCKET_DIV) as usize + 1] += 1;
        }
        for b in 0..BUCKETS {
            index[b + 1] += index[b];
        }
        PortedTable { rows, index }
    }

    #[inline]
    fn get(&self, tn: u64) -> Option<u64> {
        if !(TN_MIN..TN_END).contains(&tn) || self.index.is_empty() {
            return None;
        }
        let b = ((tn - TN_MIN) / BUCKET_DIV) as usize;
        let bucket = &self.rows[self.index[b] as usize..self.index[b + 1] as usize];
        bucket
            .binary_search_by_key(&tn, |r| r.0)
            .ok()
            .map(|i| bucket[i].1)
    }
}

/// Embedded ported-numbers database.
///
/// File format: UTF-8/ASCII text, one `tn;lrn` row per line, both 10-digit
/// NANP numbers (`NPANXXXXXX`, first digit 2‥9). Blank lines and `#` comments
/// are ignored; whitespace and `\r` around fields are trimmed. A bad row is
/// reported (line, field: 1 = tn, 2 = lrn, 0 = row shape) and skipped; the rest
/// loads. If a tn repeats, the last row wins. A number absent from the file is
/// not ported: its LRN is itself. A row whose lrn equals its tn is "not ported".
///
/// Storage: one sorted `Vec<(u64, u64)>` (16 bytes/row, 160 MB for 10 M rows)
/// plus a 3.2 MB offset index per NPA-NXX, so a lookup is one index read and a
/// binary search over the few rows of that NPA-NXX (a few cache misses). [`PortedDb::reload`] builds a new table off to the
/// side and swaps it in atomically ([`ArcSwap`]); lookups never block.
pub struct PortedDb {
    table: ArcSwap<PortedTable>,
}

impl Default for PortedDb {
    fn default() -> Self {
        Self::empty()
    }
}

impl std::fmt::Debug for PortedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortedDb")
            .field("rows", &self.len())
            .finish()
    }
}

impl PortedDb {
    /// A database with no ported numbers (every number's LRN is itself).
    pub fn empty() -> Self {
        PortedDb {
            table: ArcSwap::from_pointee(PortedTable::default()),
        }
    }

    /// Load from a file.
    pub fn open(path: impl AsRef<Path>) -> Result<(Self, LoadReport), PortedDbError> {
        let (t, r) = load_table(path.as_ref())?;
        Ok((
            PortedDb {
                table: ArcSwap::from_pointee(t),
            },
            r,
        ))
    }

    /// Load from any buffered reader (e.g. an in-memory string in tests).
    pub fn from_reader(reader: impl BufRead) -> Result<(Self, LoadReport), PortedDbError> {
        let (t, r) = build_table(reader, 0, "<reader>")?;
        Ok((
            PortedDb {
                table: ArcSwap::from_pointee(t),
            },
            r,
        ))
    }

    /// Replace the contents from a file without blocking lookups. On an I/O
    /// error the old contents stay in place. Bad rows do not prevent the swap.
    pub fn reload(&self, path: impl AsRef<Path>) -> Result<LoadReport, PortedDbError> {
        let (t, r) = load_table(path.as_ref())?;
        self.table.store(Arc::new(t));
        Ok(r)
    }

    /// Number of ported-number rows.
    pub fn len(&self) -> usize {
        self.table.load().rows.len()
    }

    /// `true` when no rows are loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// LRN of a ported number given as integer key, `None` if not in the ported set.
    #[inline]
    pub fn ported_lrn(&self, tn: u64) -> Option<u64> {
        self.table.load().get(tn)
    }

    /// Synchronous lookup (the async [`LrnSource::lookup`] just calls this).
    pub fn get(&self, tn10: &str) -> Result<LrnAnswer, LrnError> {
        let tn = parse_tn10(tn10).ok_or_else(|| LrnError::InvalidNumber(tn10.to_string()))?;
        Ok(match self.ported_lrn(tn) {
            Some(lrn) => LrnAnswer {
                lrn: format_tn10(lrn),
                ported: lrn != tn,
            },
            None => LrnAnswer {
                lrn: tn10.to_string(),
                ported: false,
            },
        })
    }
}

impl LrnSource for PortedDb {
    #[allow(clippy::manual_async_fn)]
    fn lookup(&self, tn10: &str) -> impl Future<Output = Result<LrnAnswer, LrnError>> + Send {
        let r = self.get(tn10);
        async move { r }
    }
}

fn load_table(path: &Path) -> Result<(PortedTable, LoadReport), PortedDbError> {
    let io = |source| PortedDbError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    build_table(
        BufReader::with_capacity(1 << 20, f),
        size,
        &path.display().to_string(),
    )
}

fn build_table(
    mut reader: impl BufRead,
    size_hint: u64,
    name: &str,
) -> Result<(PortedTable, LoadReport), PortedDbError> {
    let started = Instant::now();
    let mut report = LoadReport::default();
    // "2125550001;2125559999\n" is 22 bytes.
    let mut rows: Vec<(u64, u64)> = Vec::with_capacity((size_hint / 22) as usize + 16);
    let mut buf = Vec::with_capacity(128);
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| PortedDbError::Io {
                path: name.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line += 1;
        match parse_ported_row(&buf) {
            Ok(Some(r)) => rows.push(r),
            Ok(None) => {}
            Err((field, message)) => {
                report.bad_rows += 1;
                if report.errors.len() < MAX_REPORTED_ROW_ERRORS {
                    report.errors.push(RowError {
                        line,
                        field,
                        message,
                    });
                }
            }
        }
    }
    if !rows.windows(2).all(|w| w[0].0 < w[1].0) {
        // Stable, so among equal tns the file order is kept and the last row wins.
        rows.sort_by_key(|r| r.0);
        let before = rows.len();
        let mut w = 0usize;
        for i in 0..rows.len() {
            if i + 1 < rows.len() && rows[i + 1].0 == rows[i].0 {
                continue;
            }
            rows[w] = rows[i];
            w += 1;
        }
        rows.truncate(w);
        report.duplicates = before - w;
    }
    rows.shrink_to_fit();
    report.rows = rows.len();
    report.elapsed = started.elapsed();
    Ok((PortedTable::new(rows), report))
}

fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

type RowResult = Result<Option<(u64, u64)>, (usize, String)>;

#[inline]
fn parse_ported_row(raw: &[u8]) -> RowResult {
    // Fast path: exactly "NNNNNNNNNN;NNNNNNNNNN\n".
    if raw.len() >= 21 && raw[10] == b';' && (raw.len() == 21 || raw[21] == b'\n') {
        if let (Some(tn), Some(lrn)) =
            (parse_tn10_bytes(&raw[..10]), parse_tn10_bytes(&raw[11..21]))
        {
            return Ok(Some((tn, lrn)));
        }
    }
    let l = trim_ascii(raw);
    if l.is_empty() || l[0] == b'#' {
        return Ok(None);
    }
    let mut parts = l.split(|&c| c == b';');
    let tn = trim_ascii(parts.next().unwrap_or_default());
    let Some(lrn) = parts.next().map(trim_ascii) else {
        return Err((0, "expected 2 fields tn;lrn, got 1".into()));
    };
    let extra = parts.count();
    if extra > 0 {
        return Err((0, format!("expected 2 fields tn;lrn, got {}", 2 + extra)));
    }
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let tn = parse_tn10_bytes(tn)
        .ok_or_else(|| (1, format!("tn must be 10-digit NANP, got {:?}", show(tn))))?;
    let lrn = parse_tn10_bytes(lrn)
        .ok_or_else(|| (2, format!("lrn must be 10-digit NANP, got {:?}", show(lrn))))?;
    Ok(Some((tn, lrn)))
}

// ---------------------------------------------------------------------------
// HttpDip
// ---------------------------------------------------------------------------

/// Configuration of [`HttpDip`].
#[derive(Debug, Clone)]
pub struct HttpDipConfig {
    /// URL with a `{tn}` placeholder, e.g. `http://lnp.internal:8080/lrn/{tn}`.
    pub url_template: String,
    /// Per-attempt timeout (waiting for a concurrency slot + request + body).
    pub timeout: Duration,
    /// Maximum requests in flight from this client.
    pub max_concurrency: usize,
    /// Attempts per lookup (1 = no retry). Only retryable errors are retried.
    pub max_attempts: u32,
    /// First backoff; doubles per retry up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
}

impl HttpDipConfig {
    /// Defaults: 500 ms timeout, 64 in flight, 3 attempts, 20 ms → 200 ms backoff.
    pub fn new(url_template: impl Into<String>) -> Self {
        HttpDipConfig {
            url_template: url_template.into(),
            timeout: Duration::from_millis(500),
            max_concurrency: 64,
            max_attempts: 3,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
        }
    }
}

/// Largest response body accepted.
const MAX_BODY: usize = 16 * 1024;

/// HTTP dip client for an external LNP service.
///
/// `GET {url_template with {tn} replaced}` must answer 200 with JSON
/// `{"tn":"2125550001","lrn":"2125559999","ported":true}`. `tn` is optional
/// but must match when present; `lrn` may be 10 digits or `1`+10; when
/// `ported` is false, `lrn` may be null/empty (then LRN = tn); when `ported` is
/// absent it is derived as `lrn != tn`. Anything else is
/// [`LrnError::Garbage`]. System proxy variables are ignored.
#[derive(Debug, Clone)]
pub struct HttpDip {
    client: reqwest::Client,
    cfg: HttpDipConfig,
    sem: Arc<Semaphore>,
}

#[derive(Deserialize)]
struct DipBody {
    tn: Option<String>,
    lrn: Option<String>,
    ported: Option<bool>,
}

fn nanp10(s: &str) -> Option<u64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    let s = if s.len() == 11 {
        s.strip_prefix('1')?
    } else {
        s
    };
    parse_tn10(s)
}

impl HttpDip {
    /// Build a client. Fails if the template has no `{tn}` or limits are zero.
    pub fn new(cfg: HttpDipConfig) -> Result<Self, LrnError> {
        if !cfg.url_template.contains("{tn}") {
            return Err(LrnError::Config("url_template must contain {tn}".into()));
        }
        if cfg.max_concurrency == 0 || cfg.max_attempts == 0 {
            return Err(LrnError::Config(
                "max_concurrency and max_attempts must be > 0".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(cfg.max_concurrency)
            .build()
            .map_err(|e| LrnError::Config(e.to_string()))?;
        Ok(HttpDip {
            client,
            sem: Arc::new(Semaphore::new(cfg.max_concurrency)),
            cfg,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &HttpDipConfig {
        &self.cfg
    }

    async fn attempt(&self, url: &str, tn: u64, tn10: &str) -> Result<LrnAnswer, LrnError> {
        let work = async {
            let _permit = self
                .sem
                .acquire()
                .await
                .map_err(|_| LrnError::Transport("semaphore closed".into()))?;
            let mut resp = self.client.get(url).send().await.map_err(map_reqwest)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(LrnError::Status(status.as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(map_reqwest)? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(LrnError::Garbage(format!(
                        "body larger than {MAX_BODY} bytes"
                    )));
                }
            }
            parse_dip_body(&body, tn, tn10)
        };
        match tokio::time::timeout(self.cfg.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(LrnError::Timeout(self.cfg.timeout)),
        }
    }
}

fn map_reqwest(e: reqwest::Error) -> LrnError {
    if e.is_timeout() {
        LrnError::Timeout(Duration::ZERO)
    } else {
        LrnError::Transport(e.to_string())
    }
}

fn parse_dip_body(body: &[u8], tn: u64, tn10: &str) -> Result<LrnAnswer, LrnError> {
    let b: DipBody = serde_json::from_slice(body)
        .map_err(|e| LrnError::Garbage(format!("not a JSON LRN answer: {e}")))?;
    if let Some(t) = &b.tn {
        if nanp10(t) != Some(tn) {
            return Err(LrnError::Garbage(format!(
                "answer is for {t:?}, asked {tn10}"
            )));
        }
    }
    let lrn = match b.lrn.as_deref() {
        None | Some("") if b.ported == Some(false) => tn,
        None | Some("") => return Err(LrnError::Garbage("missing lrn".into())),
        Some(l) => {
            nanp10(l).ok_or_else(|| LrnError::Garbage(format!("lrn {l:?} is not a NANP number")))?
        }
    };
    Ok(LrnAnswer {
        lrn: format_tn10(lrn),
        ported: b.ported.unwrap_or(lrn != tn),
    })
}

impl LrnSource for HttpDip {
    fn lookup(&self, tn10: &str) -> impl Future<Output = Result<LrnAnswer, LrnError>> + Send {
        let tn10 = tn10.to_string();
        async move {
            let tn = parse_tn10(&tn10).ok_or_else(|| LrnError::InvalidNumber(tn10.clone()))?;
            let url = self.cfg.url_template.replace("{tn}", &tn10);
            let mut backoff = self.cfg.backoff_initial;
            let mut attempt = 1;
            loop {
                match self.attempt(&url, tn, &tn10).await {
                    Err(e) if e.is_retryable() && attempt < self.cfg.max_attempts => {
                        tokio::time::sleep(jitter(backoff)).await;
                        backoff = (backoff * 2).min(self.cfg.backoff_max);
                        attempt += 1;
                    }
                    r => return r,
                }
            }
        }
    }
}

/// Backoff with ±25 % jitter (cheap, clock-derived) so retries of many calls spread out.
pub(crate) fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let f = 0.75 + (nanos % 1000) as f64 / 2000.0;
    d.mul_f64(f)
}

// ---------------------------------------------------------------------------
// AnySource
// ---------------------------------------------------------------------------

/// Run-time choice between the two real sources (config-driven deployments).
#[derive(Debug, Clone)]
pub enum AnySource {
    /// Embedded database (shared so it can be reloaded from outside the cache).
    Ported(Arc<PortedDb>),
    /// External HTTP dip service.
    Http(HttpDip),
}

impl LrnSource for AnySource {
    fn lookup(&self, tn10: &str) -> impl Future<Output = Result<LrnAnswer, LrnError>> + Send {
        let tn10 = tn10.to_string();
        async move {
            match self {
                AnySource::Ported(db) => db.get(&tn10),
                AnySource::Http(h) => h.lookup(&tn10).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tn10_parse() {
        assert_eq!(parse_tn10("2125550001"), Some(2125550001));
        assert_eq!(parse_tn10("1125550001"), None);
        assert_eq!(parse_tn10("212555000"), None);
        assert_eq!(parse_tn10("21255500a1"), None);
        assert_eq!(format_tn10(2125550001), "2125550001");
    }

    #[test]
    fn dip_body_rules() {
        let tn = 2125550001;
        let ok = parse_dip_body(
            br#"{"tn":"2125550001","lrn":"2125559999","ported":true}"#,
            tn,
            "2125550001",
        )
        .unwrap();
        assert_eq!(
            ok,
            LrnAnswer {
                lrn: "2125559999".into(),
                ported: true
            }
        );
        let not_ported = parse_dip_body(
            br#"{"tn":"12125550001","lrn":null,"ported":false}"#,
            tn,
            "2125550001",
        )
        .unwrap();
        assert_eq!(
            not_ported,
            LrnAnswer {
                lrn: "2125550001".into(),
                ported: false
            }
        );
        let derived = parse_dip_body(br#"{"lrn":"+17185550000"}"#, tn, "2125550001").unwrap();
        assert_eq!(
            derived,
            LrnAnswer {
                lrn: "7185550000".into(),
                ported: true
            }
        );
        for bad in [
            &b"<html>"[..],
            br#"{"tn":"2125550002","lrn":"2125559999"}"#,
            br#"{"lrn":"12"}"#,
            br#"{"ported":true}"#,
            b"[]",
        ] {
            assert!(
                matches!(
                    parse_dip_body(bad, tn, "2125550001"),
                    Err(LrnError::Garbage(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
