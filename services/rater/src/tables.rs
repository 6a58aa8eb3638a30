//! Rating reference data the rater loads at start-up: rate decks, accounts,
//! NPA-NXX states, UK surcharges and (optionally) the EEA country list.
//!
//! Configuration (part of the rater's TOML, paths relative to the working
//! directory, which is the repository root for `deploy/local/services.sh`):
//!
//! ```toml
//! accounts = "deploy/local/data/accounts.txt"
//! # npanxx_states = "..."        # accepted, not read: see below
//! uk_surcharges = "deploy/local/data/uk_surcharges.txt"
//! # eea_countries = "..."          # optional; default EU-27 + IS, LI, NO
//!
//! [[decks]]
//! path = "deploy/local/data/standard_az.txt"
//! kind = "az"                       # az | us48 | per_trunk | breakout
//! plan = "standard"                 # az, us48, breakout: standard | premium | pstn | retail
//! deck_id = "std-az-2026-01"
//! mode = "replace"                  # required: replace (a full deck) | overlay (amends the prefixes it lists)
//! effective_from = "2026-01-01"     # YYYY-MM-DD or RFC 3339; required for az, us48, per_trunk
//! # effective_to = "2027-01-01"     # optional, exclusive
//! # notified_at = "2025-12-20"      # when customers were told; default effective_from
//! strict = false                    # true: one bad row refuses the whole deck
//!
//! [notice]                          # optional: the notice rule for increases
//! days = 7                          # default 7
//! short_notice = "flag"             # flag (apply, warn) | refuse (keep the previous row)
//! ```
//!
//! Versions follow each other row by row (`ratedeck::history`): a row stays
//! in force until a later version's row for its prefix starts or a
//! `replace` version leaves the prefix out.
//!
//! The US jurisdiction a US48 call is priced by is the one the enricher
//! recorded (`enrichment.jurisdiction`, decided by `numbering` with the
//! enricher's NPA-NXX table): one table, one rule. `npanxx_states` is still
//! accepted so older configurations load, but it is not read.
//!
//! Loading also checks every A–Z and trunk deck for NANP areas outside the
//! contiguous US (Canada, the Caribbean, Alaska, Hawaii, …) that only a
//! catch-all `1` row would price: each is logged as a warning and listed in
//! [`LoadSummary::warnings`]; such calls are rated `unrated`
//! (`nanp_catch_all`) rather than at the catch-all rate.
//!
//! Decks load in the order listed; every file (or every trunk of a per-trunk
//! file) becomes one version with a global, increasing version number, so the
//! same configuration always yields the same versions.
//!
//! Accounts file: one account per line, `;`-separated, `#` comments and
//! blank lines skipped, a header line starting with `id;` tolerated:
//!
//! ```text
//! id;kind;default_plan;allow_uk_surcharge;default_max_rate[;plan_override]
//! acc-1001;wholesale;standard;no;0.5000
//! acc-2001;retail;retail;no;
//! ```
//!
//! `kind` is `wholesale` or `retail`; plans are `standard`, `premium`, `pstn`,
//! `retail`; `allow_uk_surcharge` is `yes`/`no` (also `true`/`false`, `1`/`0`);
//! `default_max_rate` is a non-negative USD-per-minute decimal or empty;
//! `plan_override` (optional) is a plan, normally `retail` for a wholesale
//! account downgraded to retail. A bad row is rejected (file, line, field)
//! and the rest load; a repeated id keeps the first row.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use ratedeck::{
    Account, AccountKind, AccountMap, DeckKind, DeckMode, DeckSet, DeckTarget, EeaCountries,
    ImportMode, NoticePolicy, Plan, RatingContext, ShortNoticeAction, UkSurcharges, VersionSpec,
};
use rust_decimal::Decimal;
use serde::Deserialize;

/// Deck file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeckFormat {
    /// Format 1, A–Z.
    Az,
    /// Format 2, US48 NPANXX with inter/intrastate rates.
    Us48,
    /// Format 3, A–Z + trunk number + trunk rating.
    PerTrunk,
    /// Format 4, breakout CSV with a header and per-row dates.
    Breakout,
}

impl DeckFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DeckFormat::Az => "az",
            DeckFormat::Us48 => "us48",
            DeckFormat::PerTrunk => "per_trunk",
            DeckFormat::Breakout => "breakout",
        }
    }
}

/// Plan names as written in the configuration and the accounts file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanName {
    Standard,
    Premium,
    Pstn,
    Retail,
}

impl From<PlanName> for Plan {
    fn from(p: PlanName) -> Plan {
        match p {
            PlanName::Standard => Plan::Standard,
            PlanName::Premium => Plan::Premium,
            PlanName::Pstn => Plan::Pstn,
            PlanName::Retail => Plan::Retail,
        }
    }
}

fn parse_plan(s: &str) -> Option<Plan> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "standard" => Plan::Standard,
        "premium" => Plan::Premium,
        "pstn" => Plan::Pstn,
        "retail" => Plan::Retail,
        _ => return None,
    })
}

/// One deck file in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeckFileConfig {
    pub path: PathBuf,
    pub kind: DeckFormat,
    /// Required for `az`, `us48` and `breakout`; refused for `per_trunk`
    /// (each row names its trunk's rating).
    #[serde(default)]
    pub plan: Option<PlanName>,
    pub deck_id: String,
    /// Stated, never implied: `replace` (a full deck: prefixes it does not
    /// list are removed from its start) or `overlay` (amends the prefixes
    /// it lists, the rest stays in force).
    pub mode: DeckMode,
    /// When the deck was announced to customers (`YYYY-MM-DD` or RFC
    /// 3339); the notice period for increases counts from here. Default:
    /// `effective_from` (an increase in force at once had no notice).
    #[serde(default)]
    pub notified_at: Option<String>,
    /// `YYYY-MM-DD` (midnight UTC) or RFC 3339. Required for formats 1–3;
    /// for breakout decks it defaults to the earliest row date (or the epoch).
    #[serde(default)]
    pub effective_from: Option<String>,
    #[serde(default)]
    pub effective_to: Option<String>,
    /// Refuse the whole deck when any row is bad.
    #[serde(default)]
    pub strict: bool,
}

/// The notice rule for rate increases, applied when decks load.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeConfig {
    /// Days between announcement and an increase taking effect.
    #[serde(default = "default_notice_days")]
    pub days: u32,
    /// `flag`: apply the increase and warn; `refuse`: keep the previous
    /// row in force and report the refused rows.
    #[serde(default = "default_short_notice")]
    pub short_notice: ShortNoticeAction,
}

fn default_notice_days() -> u32 {
    7
}

fn default_short_notice() -> ShortNoticeAction {
    ShortNoticeAction::Flag
}

impl Default for NoticeConfig {
    fn default() -> Self {
        NoticeConfig {
            days: default_notice_days(),
            short_notice: default_short_notice(),
        }
    }
}

impl NoticeConfig {
    pub fn policy(&self) -> NoticePolicy {
        NoticePolicy {
            period: chrono::Duration::days(i64::from(self.days)),
            action: self.short_notice,
        }
    }
}

/// The rating part of the rater's configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingConfig {
    #[serde(default)]
    pub decks: Vec<DeckFileConfig>,
    #[serde(default)]
    pub notice: NoticeConfig,
    /// A deck directory holding a `decks.toml` manifest (`[[decks]]` entries
    /// whose paths are relative to the directory); its decks are loaded
    /// after the inline `decks`.
    #[serde(default)]
    pub decks_dir: Option<PathBuf>,
    #[serde(default)]
    pub accounts: Option<PathBuf>,
    /// Not read (the enricher's jurisdiction prices US48 calls); accepted
    /// so configurations that still name it load.
    #[serde(default)]
    pub npanxx_states: Option<PathBuf>,
    #[serde(default)]
    pub uk_surcharges: Option<PathBuf>,
    #[serde(default)]
    pub eea_countries: Option<PathBuf>,
}

/// File name of the manifest inside a deck directory.
pub const MANIFEST: &str = "decks.toml";

/// `decks.toml` in a deck directory.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeckManifest {
    pub decks: Vec<DeckFileConfig>,
}

/// A version start or end.
type When = DateTime<Utc>;

fn when(what: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    ratedeck::deck::parse_when("effective", s.trim())
        .map_err(|(_, m)| anyhow::anyhow!("{what}: {m} (use YYYY-MM-DD or RFC 3339)"))
}

impl DeckFileConfig {
    fn deck_kind(&self) -> anyhow::Result<(DeckKind, Plan)> {
        let what = format!("decks[{}] ({})", self.deck_id, self.path.display());
        let plan = self.plan.map(Plan::from);
        Ok(match (self.kind, plan) {
            (DeckFormat::PerTrunk, None) => (DeckKind::PerTrunk, Plan::Standard),
            (DeckFormat::PerTrunk, Some(_)) => {
                bail!("{what}: `plan` is not allowed for kind per_trunk (each row carries its trunk rating)")
            }
            (k, None) => bail!(
                "{what}: kind {} needs `plan` (standard, premium, pstn or retail)",
                k.as_str()
            ),
            (DeckFormat::Az, Some(p)) => (DeckKind::AZ(p), p),
            (DeckFormat::Us48, Some(p)) => (DeckKind::Us48, p),
            (DeckFormat::Breakout, Some(p)) => (DeckKind::Breakout, p),
        })
    }

    fn dates(&self) -> anyhow::Result<(Option<When>, Option<When>)> {
        let what = format!("decks[{}] ({})", self.deck_id, self.path.display());
        let from = match (&self.effective_from, self.kind) {
            (Some(s), _) => Some(when(&format!("{what}: effective_from"), s)?),
            (None, DeckFormat::Breakout) => None,
            (None, k) => bail!("{what}: kind {} needs `effective_from`", k.as_str()),
        };
        let to = self
            .effective_to
            .as_deref()
            .map(|s| when(&format!("{what}: effective_to"), s))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            anyhow::ensure!(t > f, "{what}: effective_to must be after effective_from");
        }
        Ok((from, to))
    }

    fn notified(&self) -> anyhow::Result<Option<When>> {
        let what = format!("decks[{}] ({})", self.deck_id, self.path.display());
        self.notified_at
            .as_deref()
            .map(|s| when(&format!("{what}: notified_at"), s))
            .transpose()
    }
}

impl RatingConfig {
    /// True when decks are configured (otherwise the rater runs in its
    /// pass-through mode, marking every call `no_rate_deck_loaded`).
    pub fn enabled(&self) -> bool {
        !self.decks.is_empty() || self.decks_dir.is_some()
    }

    /// Folds the `decks_dir` manifest into `decks` (paths made relative to
    /// `base` through the directory), so the rest of loading sees one list.
    pub fn resolve(&self, base: &Path) -> anyhow::Result<RatingConfig> {
        let mut out = self.clone();
        if let Some(dir) = out.decks_dir.take() {
            let full = if dir.is_absolute() {
                dir.clone()
            } else {
                base.join(&dir)
            };
            let manifest = full.join(MANIFEST);
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading deck manifest {}", manifest.display()))?;
            let m: DeckManifest = toml::from_str(&text)
                .with_context(|| format!("parsing deck manifest {}", manifest.display()))?;
            anyhow::ensure!(
                !m.decks.is_empty(),
                "deck manifest {} lists no [[decks]]",
                manifest.display()
            );
            for mut d in m.decks {
                d.path = dir.join(&d.path);
                out.decks.push(d);
            }
        }
        Ok(out)
    }

    /// Checks the configuration without touching the files.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.enabled() {
            anyhow::ensure!(
                self.accounts.is_none()
                    && self.npanxx_states.is_none()
                    && self.uk_surcharges.is_none()
                    && self.eea_countries.is_none(),
                "rating tables are configured but `decks` is empty: add [[decks]] entries"
            );
            return Ok(());
        }
        anyhow::ensure!(
            self.accounts.is_some(),
            "`accounts` (path of the accounts file) is required when decks are configured"
        );
        anyhow::ensure!(
            self.uk_surcharges.is_some(),
            "`uk_surcharges` (path of the UK surcharge table) is required when decks are configured"
        );
        let mut ids = HashSet::new();
        for (i, d) in self.decks.iter().enumerate() {
            anyhow::ensure!(
                !d.deck_id.trim().is_empty(),
                "decks[{i}] ({}): deck_id must not be empty",
                d.path.display()
            );
            anyhow::ensure!(
                ids.insert(d.deck_id.as_str()),
                "decks[{i}]: deck_id `{}` is used twice",
                d.deck_id
            );
            anyhow::ensure!(
                !d.path.as_os_str().is_empty(),
                "decks[{i}] ({}): path must not be empty",
                d.deck_id
            );
            d.deck_kind()?;
            d.dates()?;
        }
        Ok(())
    }
}

/// A rejected row of a deck or of the accounts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for RejectedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: field `{}`: {}",
            self.file, self.line, self.field, self.message
        )
    }
}

/// One loaded deck file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDeck {
    pub deck_id: String,
    pub path: String,
    pub version: u64,
    pub rows: usize,
    pub rejected: usize,
}

/// What loading found: per-deck counts and every rejected row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadSummary {
    pub decks: Vec<LoadedDeck>,
    pub accounts: usize,
    pub rejected: Vec<RejectedRow>,
    /// Load-time warnings: each NANP area a deck prices only through a
    /// catch-all `1` row (see the module doc) and each short-notice
    /// increase.
    pub warnings: Vec<String>,
    /// Short-notice increases found (flagged or refused).
    pub short_notice: usize,
}

/// Everything rating reads besides the call, owned.
#[derive(Debug, Clone, Default)]
pub struct RatingTables {
    pub decks: DeckSet,
    pub accounts: AccountMap,
    pub uk_surcharges: UkSurcharges,
    pub eea: EeaCountries,
    pub plans: ratedeck::conformance::PlanHistory,
}

impl RatingTables {
    pub fn context(&self) -> RatingContext<'_> {
        RatingContext {
            decks: &self.decks,
            accounts: &self.accounts,
            uk_surcharges: &self.uk_surcharges,
            eea: &self.eea,
            plans: &self.plans,
        }
    }
}

/// `p` as given when absolute, else under `base`.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read(base: &Path, p: &Path, what: &str) -> anyhow::Result<(String, String)> {
    let full = resolve(base, p);
    let text = std::fs::read_to_string(&full)
        .with_context(|| format!("reading {what} file {}", full.display()))?;
    Ok((p.display().to_string(), text))
}

/// Parses the deck file at `p` streamed, never holding its text: it is
/// read twice, once to count its lines (so the row vector is allocated
/// once, at its final size) and once to parse. A 1M-row deck then peaks at
/// its rows and index (`cargo run --release -p ratedeck --example
/// deck_import_mem`). The outer error is I/O; the inner one the parser's.
fn parse_deck_file(
    base: &Path,
    p: &Path,
    kind: ratedeck::DeckKind,
    mode: ImportMode,
) -> anyhow::Result<(String, Result<ratedeck::ParsedDeck, ratedeck::DeckError>)> {
    use std::io::{Seek as _, SeekFrom};
    let full = resolve(base, p);
    let ctx = || format!("reading deck file {}", full.display());
    let mut f = std::fs::File::open(&full).with_context(ctx)?;
    let lines = ratedeck::count_lines(&mut f).with_context(ctx)?;
    f.seek(SeekFrom::Start(0)).with_context(ctx)?;
    let name = p.display().to_string();
    let reader = std::io::BufReader::with_capacity(256 * 1024, f);
    let parsed = ratedeck::parse_deck_reader_sized(&name, reader, kind, mode, lines);
    Ok((name, parsed))
}

/// Reads and parses every configured file; relative paths are resolved
/// against `base` (the service passes its working directory). A missing or
/// unreadable file, a bad reference table or a deck refused in strict mode
/// is an error; bad rows of lenient decks and of the accounts file are
/// returned in the summary.
pub fn load(cfg: &RatingConfig, base: &Path) -> anyhow::Result<(RatingTables, LoadSummary)> {
    let cfg = &cfg.resolve(base)?;
    cfg.validate()?;
    let mut t = RatingTables::default();
    t.decks.set_notice_policy(cfg.notice.policy());
    let mut sum = LoadSummary::default();
    for d in &cfg.decks {
        let (kind, plan) = d.deck_kind()?;
        let (from, to) = d.dates()?;
        let notified_at = d.notified()?;
        let mode = if d.strict {
            ImportMode::Strict
        } else {
            ImportMode::Lenient
        };
        let (name, parsed) = parse_deck_file(base, &d.path, kind, mode)?;
        let parsed = match parsed {
            Ok(p) => p,
            Err(ratedeck::DeckError::Rejected { file, errors }) => {
                let mut msg = format!(
                    "deck {} ({file}) refused in strict mode: {} bad row(s)",
                    d.deck_id,
                    errors.len()
                );
                for e in errors.iter().take(20) {
                    msg.push_str(&format!("\n  {e}"));
                }
                bail!(msg)
            }
            Err(e) => bail!("deck {}: {e}", d.deck_id),
        };
        let from = from
            .or_else(|| parsed.earliest_effective())
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let rows = parsed.rows.len();
        anyhow::ensure!(
            rows > 0,
            "deck {} ({name}) has no valid rows ({} rejected)",
            d.deck_id,
            parsed.rejected.len()
        );
        let rejected = parsed.rejected.len();
        sum.rejected
            .extend(parsed.rejected.into_iter().map(|e| RejectedRow {
                file: e.file,
                line: e.line,
                field: e.field.to_string(),
                message: e.message,
            }));
        let version = t.decks.insert_version(VersionSpec {
            deck_id: d.deck_id.clone(),
            target: DeckTarget::for_kind(kind, plan),
            rows: parsed.rows,
            effective_from: from,
            effective_to: to,
            mode: d.mode,
            notified_at,
        });
        sum.decks.push(LoadedDeck {
            deck_id: d.deck_id.clone(),
            path: name,
            version,
            rows,
            rejected,
        });
    }
    if let Some(p) = &cfg.accounts {
        let (name, text) = read(base, p, "accounts")?;
        let (accounts, rejected) = parse_accounts(&name, &text);
        sum.accounts = accounts.len();
        sum.rejected.extend(rejected);
        t.accounts = accounts;
    }
    for f in t.decks.short_notice() {
        tracing::warn!(deck_id = %f.deck_id, version = f.version, prefix = %f.change.prefix, refused = f.refused, "{f}");
        sum.warnings.push(f.to_string());
        sum.short_notice += 1;
        if f.refused {
            // The refused rows are a rejected-rows report like bad lines.
            sum.rejected.push(RejectedRow {
                file: f.deck_id.to_string(),
                line: 0,
                field: "notice".into(),
                message: f.to_string(),
            });
        }
    }
    for w in t.decks.nanp_catch_all() {
        tracing::warn!(deck_id = %w.deck_id, version = w.version, npa = w.npa, area = w.area, "NANP area priced only by a catch-all `1` row: its calls stay unrated until the deck has a row");
        sum.warnings.push(w.to_string());
    }
    if let Some(p) = &cfg.uk_surcharges {
        let (name, text) = read(base, p, "uk_surcharges")?;
        t.uk_surcharges = UkSurcharges::parse(&text).with_context(|| format!("parsing {name}"))?;
    }
    if let Some(p) = &cfg.eea_countries {
        let (name, text) = read(base, p, "eea_countries")?;
        t.eea = EeaCountries::parse(&text).with_context(|| format!("parsing {name}"))?;
    }
    Ok((t, sum))
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" | "" => Some(false),
        _ => None,
    }
}

/// Parses the accounts file (format in the module doc). Returns the good
/// accounts and one [`RejectedRow`] per bad line.
pub fn parse_accounts(file: &str, text: &str) -> (AccountMap, Vec<RejectedRow>) {
    let mut map = AccountMap::default();
    let mut rejected = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l.to_ascii_lowercase().starts_with("id;") {
            continue;
        }
        let mut reject = |field: &str, message: String| {
            rejected.push(RejectedRow {
                file: file.to_string(),
                line,
                field: field.to_string(),
                message,
            })
        };
        let f: Vec<&str> = l.split(';').map(str::trim).collect();
        if !(5..=6).contains(&f.len()) {
            reject(
                "columns",
                format!(
                    "expected 5 or 6 `;`-separated fields (id;kind;default_plan;allow_uk_surcharge;default_max_rate[;plan_override]), got {}",
                    f.len()
                ),
            );
            continue;
        }
        let id = f[0];
        if id.is_empty() || id.chars().any(char::is_whitespace) {
            reject("id", format!("`{id}` is not an account id"));
            continue;
        }
        let kind = match f[1].to_ascii_lowercase().as_str() {
            "wholesale" => AccountKind::Wholesale,
            "retail" => AccountKind::Retail,
            _ => {
                reject("kind", format!("`{}` is not wholesale or retail", f[1]));
                continue;
            }
        };
        let Some(default_plan) = parse_plan(f[2]) else {
            reject(
                "default_plan",
                format!("`{}` is not standard, premium, pstn or retail", f[2]),
            );
            continue;
        };
        let Some(allow_uk_surcharge) = parse_bool(f[3]) else {
            reject("allow_uk_surcharge", format!("`{}` is not yes or no", f[3]));
            continue;
        };
        let default_max_rate = if f[4].is_empty() {
            None
        } else {
            match Decimal::from_str(f[4]) {
                Ok(d) if !d.is_sign_negative() || d.is_zero() => Some(d),
                _ => {
                    reject(
                        "default_max_rate",
                        format!("`{}` is not a non-negative decimal", f[4]),
                    );
                    continue;
                }
            }
        };
        let plan_override = match f.get(5).copied().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match parse_plan(s) {
                Some(p) => Some(p),
                None => {
                    reject(
                        "plan_override",
                        format!("`{s}` is not standard, premium, pstn or retail"),
                    );
                    continue;
                }
            },
        };
        if map.contains_key(id) {
            reject("id", format!("account `{id}` repeated; the first row wins"));
            continue;
        }
        map.insert(
            id.to_string(),
            Account {
                id: id.to_string(),
                kind,
                default_plan,
                allow_uk_surcharge,
                default_max_rate,
                plan_override,
            },
        );
    }
    (map, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each call gets its own directory: tests run on parallel threads and
    /// `cfg()` writes the same file names, so a shared directory lets one test
    /// read another's half-written file.
    fn tmp(name: &str, text: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rater-tables-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn cfg(decks: Vec<DeckFileConfig>) -> RatingConfig {
        RatingConfig {
            decks,
            decks_dir: None,
            notice: NoticeConfig::default(),
            accounts: Some(tmp("acc.txt", "a1;wholesale;standard;no;\n")),
            npanxx_states: Some(tmp("np.txt", "212555;NY\n")),
            uk_surcharges: Some(tmp("uk.txt", "XX;fixed;0.1\n")),
            eea_countries: None,
        }
    }

    fn deck(path: PathBuf, kind: DeckFormat, plan: Option<PlanName>) -> DeckFileConfig {
        DeckFileConfig {
            path,
            kind,
            plan,
            deck_id: "d1".into(),
            mode: DeckMode::Replace,
            notified_at: None,
            effective_from: Some("2026-01-01".into()),
            effective_to: None,
            strict: false,
        }
    }

    #[test]
    fn accounts_file_rows_and_rejections() {
        let (m, rej) = parse_accounts(
            "acc.txt",
            "# c\nid;kind;default_plan;allow_uk_surcharge;default_max_rate\n\
             a1;wholesale;standard;no;0.5\n\
             a2;retail;retail;yes;\n\
             a3;wholesale;premium;no;;retail\n\
             a4;reseller;standard;no;\n\
             a5;wholesale;gold;no;\n\
             a6;wholesale;standard;maybe;\n\
             a7;wholesale;standard;no;-1\n\
             a1;wholesale;premium;no;\n\
             a8;wholesale\n",
        );
        assert_eq!(m.len(), 3);
        assert_eq!(
            m["a1"].default_max_rate,
            Some(Decimal::from_str("0.5").unwrap())
        );
        assert_eq!(m["a1"].default_plan, Plan::Standard, "first row wins");
        assert!(m["a2"].allow_uk_surcharge);
        assert_eq!(m["a3"].plan_override, Some(Plan::Retail));
        let fields: Vec<(usize, &str)> = rej.iter().map(|r| (r.line, r.field.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                (6, "kind"),
                (7, "default_plan"),
                (8, "allow_uk_surcharge"),
                (9, "default_max_rate"),
                (10, "id"),
                (11, "columns")
            ]
        );
        assert!(rej[0].to_string().starts_with("acc.txt:6: field `kind`"));
    }

    #[test]
    fn config_validation_errors_are_clear() {
        let p = tmp("az.txt", "1;USA;0.01;6;6\n");
        let e = cfg(vec![deck(p.clone(), DeckFormat::Az, None)])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("needs `plan`"), "{e}");
        let e = cfg(vec![deck(
            p.clone(),
            DeckFormat::PerTrunk,
            Some(PlanName::Standard),
        )])
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("not allowed"), "{e}");
        let mut d = deck(p.clone(), DeckFormat::Az, Some(PlanName::Standard));
        d.effective_from = None;
        let e = cfg(vec![d]).validate().unwrap_err();
        assert!(e.to_string().contains("effective_from"), "{e}");
        let mut d = deck(p.clone(), DeckFormat::Az, Some(PlanName::Standard));
        d.effective_from = Some("01/01/2026".into());
        let e = cfg(vec![d]).validate().unwrap_err();
        assert!(e.to_string().contains("not a date"), "{e}");
        let twice = vec![
            deck(p.clone(), DeckFormat::Az, Some(PlanName::Standard)),
            deck(p.clone(), DeckFormat::Az, Some(PlanName::Premium)),
        ];
        let e = cfg(twice).validate().unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
        let mut c = cfg(vec![deck(
            p.clone(),
            DeckFormat::Az,
            Some(PlanName::Standard),
        )]);
        c.accounts = None;
        assert!(c.validate().unwrap_err().to_string().contains("accounts"));
        let c = RatingConfig {
            accounts: Some(p),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("decks"));
        assert!(RatingConfig::default().validate().is_ok());
    }

    #[test]
    fn deck_directory_manifest_is_loaded_relative_to_the_directory() {
        let dir = std::env::temp_dir().join(format!("rater-decks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("std.txt"), "44;UK;0.01;1;1\n").unwrap();
        std::fs::write(
            dir.join(MANIFEST),
            "[[decks]]\npath = \"std.txt\"\nkind = \"az\"\nplan = \"standard\"\ndeck_id = \"d1\"\nmode = \"replace\"\neffective_from = \"2026-01-01\"\n",
        )
        .unwrap();
        let mut c = cfg(vec![]);
        c.decks_dir = Some(dir.clone());
        assert!(c.enabled());
        c.validate().unwrap();
        let (t, sum) = load(&c, Path::new("/")).unwrap();
        assert_eq!(sum.decks.len(), 1);
        assert_eq!(sum.decks[0].deck_id, "d1");
        assert_eq!(t.decks.total_rows(), 1);
        // A manifest with an unknown key is refused, not half-read.
        std::fs::write(dir.join(MANIFEST), "[[decks]]\npath = \"std.txt\"\nkind = \"az\"\nplan = \"standard\"\ndeck_id = \"d1\"\nmode = \"replace\"\neffective_from = \"2026-01-01\"\ncolour = 1\n").unwrap();
        assert!(format!("{:#}", load(&c, Path::new("/")).unwrap_err()).contains("colour"));
        // The mode is stated, never implied.
        std::fs::write(dir.join(MANIFEST), "[[decks]]\npath = \"std.txt\"\nkind = \"az\"\nplan = \"standard\"\ndeck_id = \"d1\"\neffective_from = \"2026-01-01\"\n").unwrap();
        let e = format!("{:#}", load(&c, Path::new("/")).unwrap_err());
        assert!(e.contains("missing field `mode`"), "{e}");
    }

    #[test]
    fn overlay_decks_and_the_notice_rule_load_as_configured() {
        let dir = std::env::temp_dir().join(format!("rater-notice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("full.txt"),
            "44;UK;0.01;1;1\n49;Germany;0.05;1;1\n",
        )
        .unwrap();
        // Announced on the 5th, UK up on the 8th: 3 days' notice.
        std::fs::write(dir.join("uk.txt"), "44;UK;0.02;1;1\n").unwrap();
        std::fs::write(
            dir.join(MANIFEST),
            "[[decks]]\npath = \"full.txt\"\nkind = \"az\"\nplan = \"standard\"\ndeck_id = \"full\"\nmode = \"replace\"\neffective_from = \"2026-06-01\"\n\
             [[decks]]\npath = \"uk.txt\"\nkind = \"az\"\nplan = \"standard\"\ndeck_id = \"uk\"\nmode = \"overlay\"\neffective_from = \"2026-06-08\"\nnotified_at = \"2026-06-05\"\n",
        )
        .unwrap();
        let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 6, 9, 0, 0, 0).unwrap();
        for (action, uk_rate) in [
            (ShortNoticeAction::Flag, "0.02"),
            (ShortNoticeAction::Refuse, "0.01"),
        ] {
            let mut c = cfg(vec![]);
            c.decks_dir = Some(dir.clone());
            c.notice = NoticeConfig {
                days: 7,
                short_notice: action,
            };
            let (t, sum) = load(&c, Path::new("/")).unwrap();
            assert_eq!(sum.short_notice, 1, "{action:?}");
            assert!(sum.warnings.iter().any(|w| w.contains("short notice")));
            let refused = sum.rejected.iter().filter(|r| r.field == "notice").count();
            assert_eq!(refused, usize::from(action == ShortNoticeAction::Refuse));
            let rate = |n: &str| {
                t.decks
                    .lookup(
                        ratedeck::Scope::Az(Plan::Standard),
                        n,
                        at,
                        ratedeck::ObrTier::RestOfWorld,
                    )
                    .map(|m| m.row.rate.to_string())
            };
            assert_eq!(rate("4420").as_deref(), Some(uk_rate), "{action:?}");
            assert_eq!(
                rate("4930").as_deref(),
                Some("0.05"),
                "the overlay keeps Germany"
            );
        }
        // Nine days' notice is enough.
        let mut c = cfg(vec![]);
        c.decks_dir = Some(dir.clone());
        c.notice.short_notice = ShortNoticeAction::Refuse;
        c.notice.days = 3;
        let (_, sum) = load(&c, Path::new("/")).unwrap();
        assert_eq!(sum.short_notice, 0);
    }

    #[test]
    fn missing_file_is_an_error_and_bad_rows_are_reported() {
        let e = load(
            &cfg(vec![deck(
                PathBuf::from("/nonexistent/deck.txt"),
                DeckFormat::Az,
                Some(PlanName::Standard),
            )]),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/deck.txt"), "{e:#}");

        let p = tmp(
            "bad.txt",
            "44;UK;0.01;1;1\n4A;Broken;0.01;1;1\n33;France;zero;1;1\n",
        );
        let (t, sum) = load(
            &cfg(vec![deck(
                p.clone(),
                DeckFormat::Az,
                Some(PlanName::Standard),
            )]),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(sum.decks[0].rows, 1);
        assert_eq!(sum.rejected.len(), 2);
        assert_eq!(
            (sum.rejected[0].line, sum.rejected[0].field.as_str()),
            (2, "dialprefix")
        );
        assert_eq!(t.decks.total_rows(), 1);
        assert_eq!(t.accounts.len(), 1);

        let mut strict = deck(p, DeckFormat::Az, Some(PlanName::Standard));
        strict.strict = true;
        let e = load(&cfg(vec![strict]), Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("strict"), "{e}");
    }

    #[test]
    fn a_latin1_deck_file_loads_every_row() {
        let p = tmp("latin1.txt", "");
        let mut bytes = b"225;C".to_vec();
        bytes.push(0xF4);
        bytes.extend_from_slice(b"te d'Ivoire;0.12;60;60\n44;UK;0.01;1;1");
        std::fs::write(&p, bytes).unwrap();
        let mut d = deck(p, DeckFormat::Az, Some(PlanName::Standard));
        d.strict = true;
        let (t, sum) = load(&cfg(vec![d]), Path::new("/")).unwrap();
        assert_eq!((sum.decks[0].rows, sum.rejected.len()), (2, 0));
        let at = "2026-02-01T00:00:00Z".parse().unwrap();
        let m = t
            .decks
            .lookup(
                ratedeck::Scope::Az(Plan::Standard),
                "2250101",
                at,
                ratedeck::ObrTier::RestOfWorld,
            )
            .unwrap();
        assert_eq!(&*m.row.destination, "Côte d'Ivoire");
    }

    #[test]
    fn breakout_version_starts_at_its_earliest_row() {
        let p = tmp(
            "bo.csv",
            "destination;code;rate_usd;increment;effective_from\nGermany Fixed;4930;0.0095;1/1;2026-06-01\n",
        );
        let mut d = deck(p, DeckFormat::Breakout, Some(PlanName::Premium));
        d.effective_from = None;
        let (t, _) = load(&cfg(vec![d]), Path::new("/")).unwrap();
        let v = &t.decks.versions(ratedeck::Scope::Az(Plan::Premium))[0];
        assert_eq!(v.effective_from.to_rfc3339(), "2026-06-01T00:00:00+00:00");
    }

    #[test]
    fn shipped_config_parses_with_deny_unknown_fields() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(repo.join("deploy/local/config/rater.toml")).unwrap();
        let c: crate::Config = toml::from_str(&text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.rating().resolve(&repo).unwrap().decks.len(), 7);
        let bad = format!("{text}\nbogus = 1\n");
        assert!(toml::from_str::<crate::Config>(&bad).is_err());
    }
}
