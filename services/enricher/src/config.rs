//! Typed configuration of the enricher (`deny_unknown_fields` everywhere, so a
//! typo fails start-up), and [`Config::validate`], which also checks that every
//! configured file exists so a bad path is reported before joining the group.
//!
//! ```toml
//! [lrn]
//! npanxx_path = "deploy/local/data/lrn/npanxx.txt"   # npanxx;state;ocn
//! ported_db = "deploy/local/data/lrn/ported.txt"     # tn;lrn  (or [lrn.http], exactly one)
//! cache_max_entries = 1000000
//! cache_ttl_secs = 21600
//! dip_fee = "0.0003"
//! unavailable_deadline_ms = 2000
//!
//! # [lrn.http]
//! # url_template = "http://lnp.internal:8080/lrn/{tn}"
//! # timeout_ms = 500
//! # max_concurrency = 64
//! # max_attempts = 3
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::ensure;
use cdr_kafka::{StageConfig, StageDefaults};
use rust_decimal::Decimal;
use serde::Deserialize;

/// The whole service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka, metrics address, batching (shared by every service).
    #[serde(default)]
    pub stage: StageConfig,
    /// LRN resolutions in flight at once within a batch (overlaps HTTP dips).
    #[serde(default = "default_lookup_concurrency")]
    pub lookup_concurrency: usize,
    /// LRN source, cache, fee and NPA-NXX table.
    pub lrn: LrnConfig,
}

/// Where LRN answers come from: exactly one (in the file, `lrn.ported_db`
/// or an `[lrn.http]` table).
#[derive(Debug, Clone)]
pub enum LrnSource {
    /// Embedded ported-numbers file (`tn;lrn`).
    PortedDb(PathBuf),
    /// External HTTP dip service.
    Http(HttpSourceConfig),
}

/// LRN and numbering-data settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "LrnFile")]
pub struct LrnConfig {
    /// NPA-NXX table (`npanxx;state;ocn`), for jurisdiction.
    pub npanxx_path: PathBuf,
    pub source: LrnSource,
    pub tunables: LrnTunables,
}

/// `[lrn]` as written: the source is two optional keys there, of which
/// exactly one must be set; [`LrnConfig`] holds it as an [`LrnSource`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LrnFile {
    npanxx_path: PathBuf,
    #[serde(default)]
    ported_db: Option<PathBuf>,
    #[serde(default)]
    http: Option<HttpSourceConfig>,
    #[serde(flatten)]
    tunables: LrnTunables,
}

impl TryFrom<LrnFile> for LrnConfig {
    type Error = String;
    fn try_from(f: LrnFile) -> Result<Self, String> {
        let source = match (f.ported_db, f.http) {
            (Some(p), None) => LrnSource::PortedDb(p),
            (None, Some(h)) => LrnSource::Http(h),
            (Some(_), Some(_)) => {
                return Err("lrn: set only one of lrn.ported_db and [lrn.http]".into())
            }
            (None, None) => {
                return Err("lrn: an LRN source is required: lrn.ported_db or [lrn.http]".into())
            }
        };
        Ok(LrnConfig {
            npanxx_path: f.npanxx_path,
            source,
            tunables: f.tunables,
        })
    }
}

impl std::ops::Deref for LrnConfig {
    type Target = LrnTunables;
    fn deref(&self) -> &LrnTunables {
        &self.tunables
    }
}

impl std::ops::DerefMut for LrnConfig {
    fn deref_mut(&mut self) -> &mut LrnTunables {
        &mut self.tunables
    }
}

/// Cache, fee and ledger settings of `[lrn]` (every one has a default).
#[derive(Debug, Clone, Deserialize)]
pub struct LrnTunables {
    /// Maximum cached LRN answers.
    #[serde(default = "default_cache_entries")]
    pub cache_max_entries: u64,
    /// Cache lifetime: the length of a number's dip period in event time (the
    /// first call of each period pays the dip fee; a port takes effect after
    /// at most this long), and the in-memory cache's TTL.
    #[serde(default = "default_ttl")]
    pub cache_ttl_secs: u64,
    /// Fee charged to the call that pays a period's dip (USD, decimal string).
    #[serde(default = "default_fee")]
    pub dip_fee: Decimal,
    /// Event time the partition must move past a number-period's earliest
    /// call before its dip holder is fixed (calls of one number arrive from
    /// several assembler partitions in a timing-dependent order); the first
    /// calls of a period wait this long, measured on the partition's own
    /// event time. A call later than this that was set up before the fixed
    /// holder takes the period over (see `correction_window_secs`).
    #[serde(default = "default_dip_lateness")]
    pub dip_lateness_ms: u64,
    /// How long (event time after its setup) a dip holder can still be
    /// demoted by a late call set up before it: the holder's input copy is
    /// kept in `lrn.decisions` this long. A later call is a cache hit.
    /// 0 turns demotion off.
    #[serde(default = "default_correction_window")]
    pub correction_window_secs: u64,
    /// A partition whose event time has not moved for this long (wall
    /// clock) releases its waiting calls: nothing earlier can still come.
    #[serde(default = "default_idle_release")]
    pub idle_release_ms: u64,
    /// Give up on a failing source after this long: `lrn_source = unavailable`, fee 0.
    #[serde(default = "default_deadline")]
    pub unavailable_deadline_ms: u64,
}

/// `[lrn.http]`: the external LNP dip service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// URL with a `{tn}` placeholder (10-digit number).
    pub url_template: String,
    #[serde(default = "default_http_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_http_concurrency")]
    pub max_concurrency: usize,
    /// Attempts per lookup (1 = no retry); the cache keeps retrying until the deadline.
    #[serde(default = "default_http_attempts")]
    pub max_attempts: u32,
}

/// The enricher's `[stage]` defaults (metrics on :9102).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults::new(9102);
fn default_lookup_concurrency() -> usize {
    256
}
fn default_cache_entries() -> u64 {
    1_000_000
}
fn default_ttl() -> u64 {
    6 * 3600
}
fn default_fee() -> Decimal {
    lrn::DEFAULT_DIP_FEE
}
fn default_deadline() -> u64 {
    2000
}
fn default_dip_lateness() -> u64 {
    20_000
}
fn default_correction_window() -> u64 {
    3600
}
fn default_idle_release() -> u64 {
    5_000
}
fn default_http_timeout() -> u64 {
    500
}
fn default_http_concurrency() -> usize {
    64
}
fn default_http_attempts() -> u32 {
    3
}

impl LrnConfig {
    /// A config with every default and the given files (used by tests).
    pub fn with_files(npanxx: impl Into<PathBuf>, ported_db: impl Into<PathBuf>) -> Self {
        LrnConfig {
            npanxx_path: npanxx.into(),
            source: LrnSource::PortedDb(ported_db.into()),
            tunables: LrnTunables::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }
}

impl Default for LrnTunables {
    fn default() -> Self {
        LrnTunables {
            cache_max_entries: default_cache_entries(),
            cache_ttl_secs: default_ttl(),
            dip_fee: default_fee(),
            dip_lateness_ms: default_dip_lateness(),
            correction_window_secs: default_correction_window(),
            idle_release_ms: default_idle_release(),
            unavailable_deadline_ms: default_deadline(),
        }
    }
}

impl LrnConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        let npanxx = &self.npanxx_path;
        ensure!(
            npanxx.is_file(),
            "lrn.npanxx_path {} does not exist or is not a file (paths are relative to the working directory {})",
            npanxx.display(),
            cwd()
        );
        match &self.source {
            LrnSource::PortedDb(p) => ensure!(
                p.is_file(),
                "lrn.ported_db {} does not exist or is not a file (paths are relative to the working directory {})",
                p.display(),
                cwd()
            ),
            LrnSource::Http(h) => h.validate()?,
        }
        ensure!(
            self.cache_max_entries > 0,
            "lrn.cache_max_entries must be positive"
        );
        ensure!(
            self.cache_ttl_secs > 0,
            "lrn.cache_ttl_secs must be positive"
        );
        ensure!(
            self.dip_fee >= Decimal::ZERO && self.dip_fee < Decimal::ONE,
            "lrn.dip_fee must be in [0, 1) USD, got {}",
            self.dip_fee
        );
        ensure!(
            self.unavailable_deadline_ms > 0,
            "lrn.unavailable_deadline_ms must be positive"
        );
        Ok(())
    }
}

impl HttpSourceConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        let u = self.url_template.trim();
        ensure!(
            u.starts_with("http://") || u.starts_with("https://"),
            "lrn.http.url_template must be an http:// or https:// URL, got {u:?}"
        );
        ensure!(
            u.contains("{tn}"),
            "lrn.http.url_template must contain the {{tn}} placeholder"
        );
        ensure!(self.timeout_ms > 0, "lrn.http.timeout_ms must be positive");
        ensure!(
            self.max_concurrency > 0,
            "lrn.http.max_concurrency must be positive"
        );
        ensure!(
            self.max_attempts > 0,
            "lrn.http.max_attempts must be positive"
        );
        Ok(())
    }
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.stage.resolve(STAGE_DEFAULTS)?;
        ensure!(
            self.lookup_concurrency > 0,
            "lookup_concurrency must be positive"
        );
        self.lrn.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(s)?)
    }

    #[test]
    fn unknown_fields_refused() {
        assert!(parse("[lrn]\nnpanxx_path='x'\nported_db='y'\nbogus=1\n").is_err());
        assert!(parse("[lrn.http]\nurl_template='http://x/{tn}'\ntimeout=1\n").is_err());
    }

    #[test]
    fn fee_parses_as_decimal_string_and_defaults() {
        let c = parse("[lrn]\nnpanxx_path='x'\nported_db='y'\n").unwrap();
        assert_eq!(c.lrn.dip_fee.to_string(), "0.0003");
        assert!(matches!(c.lrn.source, LrnSource::PortedDb(_)));
        let c = parse("[lrn]\nnpanxx_path='x'\nported_db='y'\ndip_fee='0.0005'\n").unwrap();
        assert_eq!(c.lrn.dip_fee.to_string(), "0.0005");
    }

    #[test]
    fn validation_messages() {
        // Required by the types: no section, no NPA-NXX table, no source or
        // two sources are refused while parsing.
        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("lrn"), "{e}");
        let e = parse("[lrn]\nported_db='y'\n").unwrap_err().to_string();
        assert!(e.contains("npanxx_path"), "{e}");
        let e = parse(
            "[lrn]\nnpanxx_path='x'\nported_db='y'\n[lrn.http]\nurl_template='http://x/{tn}'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only one"), "{e}");
        let c = parse("[lrn]\nnpanxx_path='/nonexistent/npanxx.txt'\nported_db='y'\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/npanxx.txt"), "{e}");
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let e = parse(&format!("[lrn]\nnpanxx_path='{here}'\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("LRN source"), "{e}");
        let c = parse(&format!(
            "[lrn]\nnpanxx_path='{here}'\n[lrn.http]\nurl_template='http://x/lrn'\n"
        ))
        .unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("{tn}"));
        let c = parse(&format!(
            "[lrn]\nnpanxx_path='{here}'\ndip_fee='-1'\n[lrn.http]\nurl_template='http://x/{{tn}}'\n"
        ))
        .unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("dip_fee"));
    }
}
