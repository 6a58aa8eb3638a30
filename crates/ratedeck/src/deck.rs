//! Rate-deck import: parsing and row-level validation of the four deck formats.
//!
//! Owns the deck data model ([`DeckRow`], [`Plan`], [`Increment`],
//! [`ObrTier`]) and the parsers. Parsing never touches the filesystem: the
//! caller hands in a `&str` ([`parse_deck`]) or an `impl BufRead`
//! ([`parse_deck_reader`], [`parse_deck_reader_sized`]). Every row is
//! validated on its own so that one bad line costs one [`RowError`] and not
//! the whole deck (unless the caller asks for [`ImportMode::Strict`], where
//! an operator wants all-or-nothing).
//!
//! The reader takes each line as UTF-8, and a line that is not as
//! ISO-8859-1 (every byte one character): vendor decks from Windows tools
//! arrive in Latin-1 (`Côte d'Ivoire`, `Réunion`), and only destination
//! names carry such bytes. One such line once made the whole file
//! unreadable.
//!
//! Formats (see the crate README for full detail):
//! 1. A–Z: `dialprefix;destination name;rate;initial billing time;billing increment`
//! 2. US48: `dialprefix;destination name;rate interstate;rate intrastate;initial billing time;billing increment`
//! 3. Per-trunk: A–Z fields + `trunk number;trunk rating` (0 Std, 1 Prem, 2 PSTN)
//! 4. Breakout CSV with a header `destination,code,rate_usd,increment,effective_from`
//!
//! Formats 1–3 accept optional trailing
//! `connection_fee;min_billed_seconds;short_surcharge_amount;short_surcharge_threshold_s;end_date;start_date`
//! (per-row dates, so one file can say "decrease now, increase in 7 days");
//! format 4 accepts the named columns
//! `connection_fee,min_seconds,short_surcharge,short_threshold_s,effective_to,obr_tier`.

use crate::prefix::{Prefix, PrefixError};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::BufRead;
use std::str::FromStr;
use std::sync::Arc;

/// Rating plan (deck set). `Retail` is the A–Z deck set applied to retail
/// accounts, downgraded wholesale accounts and calls from behind NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Plan {
    Standard,
    Premium,
    Pstn,
    Retail,
}

impl Plan {
    /// Per-trunk deck `trunk rating` code: 0 Standard, 1 Premium, 2 PSTN.
    pub fn from_trunk_rating(code: u8) -> Option<Plan> {
        match code {
            0 => Some(Plan::Standard),
            1 => Some(Plan::Premium),
            2 => Some(Plan::Pstn),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Standard => "standard",
            Plan::Premium => "premium",
            Plan::Pstn => "pstn",
            Plan::Retail => "retail",
        }
    }
}

/// Which of the four file formats a deck is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeckKind {
    /// Format 1, for the given plan.
    AZ(Plan),
    /// Format 2 (NPANXX-based US48 deck with inter/intrastate rates).
    Us48,
    /// Format 3 (A–Z + trunk number + trunk rating).
    PerTrunk,
    /// Format 4 (breakout CSV with header and per-row effective dates).
    Breakout,
}

/// How to treat bad rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ImportMode {
    /// Load every good row, report bad rows in [`ParsedDeck::rejected`].
    #[default]
    Lenient,
    /// Refuse the whole deck if any row is bad.
    Strict,
}

/// Billing increment `X/Y`: bill at least `initial` seconds, then round up in
/// `step`-second steps. Both are ≥ 1 (a zero would be a deck typo, and a zero
/// step would make the arithmetic undefined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Increment {
    pub initial: u32,
    pub step: u32,
}

impl Increment {
    pub const fn new(initial: u32, step: u32) -> Increment {
        Increment { initial, step }
    }

    /// Billed seconds for an answered duration, see [`crate::rate::billed_seconds`].
    pub fn bill(self, duration_s: u32, min_billed_s: u32) -> u32 {
        crate::rate::billed_seconds(duration_s, self, min_billed_s)
    }
}

impl std::fmt::Display for Increment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.initial, self.step)
    }
}

/// Origin-based-rating tier of a breakout row. Rows without a tier apply to
/// every origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObrTier {
    /// Caller in the EEA (regulated, cheap tier).
    Eea,
    /// Rest of world, including missing/malformed caller id.
    RestOfWorld,
}

impl ObrTier {
    /// The name on rated CDRs and published deck rows (`rate_for_cdr.sql`
    /// joins on it).
    pub fn as_str(self) -> &'static str {
        match self {
            ObrTier::Eea => "eea",
            ObrTier::RestOfWorld => "rest_of_world",
        }
    }
}

/// One validated deck line.
///
/// Kept compact (no per-row `String` for the prefix, destination names are
/// interned `Arc<str>`) because a 1M-row deck must load in ≤ 300 MB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeckRow {
    pub prefix: Prefix,
    pub destination: Arc<str>,
    /// USD per minute. For US48 rows this is the interstate rate.
    pub rate: Decimal,
    /// US48 rows only: intrastate USD per minute.
    pub rate_intrastate: Option<Decimal>,
    pub increment: Increment,
    /// Flat per answered call, USD.
    pub connection_fee: Decimal,
    /// Billed floor in seconds (0 = none).
    pub min_billed_seconds: u32,
    /// Flat USD added when the answered duration is below the threshold.
    pub short_surcharge: Decimal,
    pub short_threshold_s: u32,
    /// Row-level start (format 4 `effective_from`); `None` = the version's.
    pub effective_from: Option<DateTime<Utc>>,
    /// Row-level end, exclusive (`end_date` / `effective_to`).
    pub effective_to: Option<DateTime<Utc>>,
    /// Per-trunk rows: trunk number and the plan its rating code denotes.
    pub trunk: Option<u32>,
    pub trunk_plan: Option<Plan>,
    pub obr_tier: Option<ObrTier>,
    /// 1-based source line, for audit trails back to the file.
    pub line: usize,
    /// The version that published the row; set when the row is loaded
    /// into a [`crate::DeckSet`] (`None` straight out of the parser).
    #[serde(skip)]
    pub origin: Option<Arc<crate::history::RowOrigin>>,
}

/// Optional trailing `;` fields after a format 1–3 row's own fields.
const EXTRAS: usize = 6;

impl DeckRow {
    /// A plain A–Z row with no extras (handy for tests and generators).
    pub fn simple(prefix: &str, destination: &str, rate: Decimal, increment: Increment) -> DeckRow {
        DeckRow {
            prefix: Prefix::parse(prefix).expect("valid prefix"),
            destination: Arc::from(destination),
            rate,
            rate_intrastate: None,
            increment,
            connection_fee: Decimal::ZERO,
            min_billed_seconds: 0,
            short_surcharge: Decimal::ZERO,
            short_threshold_s: 0,
            effective_from: None,
            effective_to: None,
            trunk: None,
            trunk_plan: None,
            obr_tier: None,
            line: 0,
            origin: None,
        }
    }

    /// Whether the row-level window covers `at` (start inclusive, end exclusive).
    #[inline]
    pub fn in_force(&self, at: DateTime<Utc>) -> bool {
        self.effective_from.is_none_or(|f| f <= at) && self.effective_to.is_none_or(|t| at < t)
    }
}

/// A rejected deck line: where it was and which field was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{file}:{line}: field `{field}`: {message}")]
pub struct RowError {
    pub file: String,
    pub line: usize,
    pub field: &'static str,
    pub message: String,
}

/// Every field name a [`RowError`] can carry; lets `RowError` round-trip
/// through serde despite its `&'static str` field.
pub const FIELD_NAMES: &[&str] = &[
    "columns",
    "dialprefix",
    "destination name",
    "rate",
    "rate interstate",
    "rate intrastate",
    "initial billing time",
    "billing increment",
    "trunk number",
    "trunk rating",
    "connection_fee",
    "min_billed_seconds",
    "short_surcharge_amount",
    "short_surcharge_threshold_s",
    "end_date",
    "destination",
    "code",
    "rate_usd",
    "increment",
    "effective_from",
    "min_seconds",
    "short_surcharge",
    "short_threshold_s",
    "effective_to",
    "obr_tier",
];

impl<'de> Deserialize<'de> for RowError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Owned {
            file: String,
            line: usize,
            field: String,
            message: String,
        }
        let o = Owned::deserialize(d)?;
        Ok(RowError {
            file: o.file,
            line: o.line,
            field: FIELD_NAMES
                .iter()
                .copied()
                .find(|f| *f == o.field)
                .unwrap_or("unknown"),
            message: o.message,
        })
    }
}

/// Whole-deck failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeckError {
    /// Strict mode and at least one row was bad; carries every row error.
    #[error("{file}: deck refused in strict mode, {} bad row(s)", errors.len())]
    Rejected { file: String, errors: Vec<RowError> },
    /// Breakout deck whose header is missing or lacks a required column.
    #[error("{file}:{line}: bad header: {message}")]
    Header {
        file: String,
        line: usize,
        message: String,
    },
    /// The reader failed (message of the underlying I/O error).
    #[error("{file}: read error: {message}")]
    Io { file: String, message: String },
}

/// Result of parsing one deck file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParsedDeck {
    pub rows: Vec<DeckRow>,
    pub rejected: Vec<RowError>,
}

impl ParsedDeck {
    /// Earliest row-level `effective_from`, useful as the version start of a
    /// breakout deck.
    pub fn earliest_effective(&self) -> Option<DateTime<Utc>> {
        self.rows.iter().filter_map(|r| r.effective_from).min()
    }
}

/// Parse a deck held in memory.
pub fn parse_deck(
    file_name: &str,
    text: &str,
    kind: DeckKind,
    mode: ImportMode,
) -> Result<ParsedDeck, DeckError> {
    // Pre-size from the newline count so a 1M-row deck does not go through
    // ~20 reallocations (and a transient 1.5x memory peak).
    let approx_rows = memchr_count(text.as_bytes(), b'\n') + 1;
    let mut p = Parser::new(file_name, kind, approx_rows);
    for (i, line) in text.lines().enumerate() {
        p.line(i + 1, line)?;
    }
    p.finish(mode)
}

/// Parse a deck from a caller-supplied reader (streaming, line by line).
pub fn parse_deck_reader(
    file_name: &str,
    reader: impl BufRead,
    kind: DeckKind,
    mode: ImportMode,
) -> Result<ParsedDeck, DeckError> {
    parse_deck_reader_sized(file_name, reader, kind, mode, 1024)
}

/// [`parse_deck_reader`] with the row vector pre-sized for `rows_hint`
/// rows (a line count, see [`count_lines`]). A caller that can read its
/// source twice (a file) gets the same single allocation as
/// [`parse_deck`] without ever holding the text: a 1M-row deck then peaks
/// at its rows and index instead of rows, index and 41 MB of text, and
/// the vector never doubles (1.5x its size in flight while it is copied).
pub fn parse_deck_reader_sized(
    file_name: &str,
    mut reader: impl BufRead,
    kind: DeckKind,
    mode: ImportMode,
    rows_hint: usize,
) -> Result<ParsedDeck, DeckError> {
    // A hint is only a hint: a wrong one costs a reallocation, never rows.
    let mut p = Parser::new(file_name, kind, rows_hint.clamp(16, 16 << 20));
    let mut buf = Vec::new();
    let mut latin1 = String::new();
    let mut lineno = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DeckError::Io {
                file: file_name.to_string(),
                message: e.to_string(),
            })?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l,
            Err(_) => {
                latin1.clear();
                latin1.extend(buf.iter().map(|&b| char::from(b)));
                &latin1
            }
        };
        p.line(lineno, line.trim_end_matches(['\n', '\r']))?;
    }
    p.finish(mode)
}

/// Lines in `reader` (newlines, plus one for a last line without one):
/// the row hint for [`parse_deck_reader_sized`], read in 64 KiB chunks.
pub fn count_lines(mut reader: impl std::io::Read) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut lines, mut last) = (0usize, b'\n');
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += memchr_count(&buf[..n], b'\n');
        last = buf[n - 1];
    }
    Ok(lines + usize::from(last != b'\n'))
}

fn memchr_count(b: &[u8], needle: u8) -> usize {
    b.iter().filter(|&&c| c == needle).count()
}

/// Column positions of a breakout header.
#[derive(Debug, Default)]
struct BreakoutCols {
    sep: u8,
    n: usize,
    destination: usize,
    code: usize,
    rate: usize,
    increment: usize,
    effective_from: Option<usize>,
    connection_fee: Option<usize>,
    min_seconds: Option<usize>,
    short_surcharge: Option<usize>,
    short_threshold: Option<usize>,
    effective_to: Option<usize>,
    obr_tier: Option<usize>,
}

struct Parser<'a> {
    file: &'a str,
    kind: DeckKind,
    rows: Vec<DeckRow>,
    rejected: Vec<RowError>,
    header: Option<BreakoutCols>,
    interner: HashMap<Box<str>, Arc<str>>,
    last_dest: Option<Arc<str>>,
}

type FieldResult<T> = Result<T, (&'static str, String)>;

fn ferr<T>(field: &'static str, msg: impl Into<String>) -> FieldResult<T> {
    Err((field, msg.into()))
}

impl<'a> Parser<'a> {
    fn new(file: &'a str, kind: DeckKind, cap: usize) -> Self {
        Parser {
            file,
            kind,
            rows: Vec::with_capacity(cap),
            rejected: Vec::new(),
            header: None,
            interner: HashMap::new(),
            last_dest: None,
        }
    }

    fn reject(&mut self, line: usize, field: &'static str, message: String) {
        self.rejected.push(RowError {
            file: self.file.to_string(),
            line,
            field,
            message,
        });
    }

    fn line(&mut self, lineno: usize, raw: &str) -> Result<(), DeckError> {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let res = match self.kind {
            DeckKind::Breakout => {
                if self.header.is_none() {
                    self.header = Some(parse_breakout_header(self.file, lineno, line)?);
                    return Ok(());
                }
                self.breakout_row(lineno, line)
            }
            _ => {
                if line
                    .get(..10)
                    .is_some_and(|h| h.eq_ignore_ascii_case("dialprefix"))
                {
                    return Ok(());
                }
                self.semicolon_row(lineno, line)
            }
        };
        match res {
            Ok(row) => self.rows.push(row),
            Err((field, msg)) => self.reject(lineno, field, msg),
        }
        Ok(())
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        // Decks list breakouts grouped by destination, so the previous name
        // is the usual hit and avoids hashing altogether.
        if let Some(last) = &self.last_dest {
            if &**last == name {
                return last.clone();
            }
        }
        let a = if let Some(a) = self.interner.get(name) {
            a.clone()
        } else {
            let a: Arc<str> = Arc::from(name);
            self.interner.insert(Box::from(name), a.clone());
            a
        };
        self.last_dest = Some(a.clone());
        a
    }

    /// Optional trailing fields of formats 1–3: connection fee, minimum,
    /// short surcharge, its threshold, end date, start date.
    fn semicolon_row(&mut self, lineno: usize, line: &str) -> FieldResult<DeckRow> {
        let mut f: [&str; 20] = [""; 20];
        let mut n = 0;
        for part in line.split(';') {
            if n == f.len() {
                return ferr("columns", "too many fields");
            }
            f[n] = part.trim();
            n += 1;
        }
        let base = match self.kind {
            DeckKind::AZ(_) => 5,
            DeckKind::Us48 => 6,
            DeckKind::PerTrunk => 7,
            DeckKind::Breakout => unreachable!(),
        };
        if n < base {
            return ferr(
                "columns",
                format!("expected at least {base} `;`-separated fields, found {n}"),
            );
        }
        // Trailing empty fields are common (spreadsheet exports); non-empty
        // fields beyond the documented extras are not.
        if n > base + EXTRAS && f[base + EXTRAS..n].iter().any(|s| !s.is_empty()) {
            return ferr(
                "columns",
                format!("more than {} fields", base + EXTRAS).to_string(),
            );
        }
        let prefix = parse_prefix("dialprefix", f[0])?;
        let destination = if f[1].is_empty() {
            return ferr("destination name", "empty destination name");
        } else {
            self.intern(f[1])
        };
        let (rate, rate_intra, inc_at) = match self.kind {
            DeckKind::Us48 => (
                parse_rate("rate interstate", f[2])?,
                Some(parse_rate("rate intrastate", f[3])?),
                4,
            ),
            _ => (parse_rate("rate", f[2])?, None, 3),
        };
        let initial = parse_secs("initial billing time", f[inc_at], true)?;
        let step = parse_secs("billing increment", f[inc_at + 1], true)?;
        let (trunk, trunk_plan) = if self.kind == DeckKind::PerTrunk {
            let t = f[5]
                .parse::<u32>()
                .or_else(|_| ferr("trunk number", format!("`{}` is not a trunk number", f[5])))?;
            let p = f[6]
                .parse::<u8>()
                .ok()
                .and_then(Plan::from_trunk_rating)
                .map_or_else(
                    || {
                        ferr(
                            "trunk rating",
                            format!("`{}` is not 0 (Std), 1 (Prem) or 2 (PSTN)", f[6]),
                        )
                    },
                    Ok,
                )?;
            (Some(t), Some(p))
        } else {
            (None, None)
        };
        let x = &f[base..base + EXTRAS];
        let connection_fee = opt_money("connection_fee", x[0])?;
        let min_billed_seconds = opt_secs("min_billed_seconds", x[1])?;
        let short_surcharge = opt_money("short_surcharge_amount", x[2])?;
        let short_threshold_s = opt_secs("short_surcharge_threshold_s", x[3])?;
        let effective_to = if x[4].is_empty() {
            None
        } else {
            Some(parse_when("end_date", x[4])?)
        };
        let effective_from = if x[5].is_empty() {
            None
        } else {
            Some(parse_when("start_date", x[5])?)
        };
        if let (Some(f), Some(t)) = (effective_from, effective_to) {
            if t <= f {
                return ferr("end_date", "end_date is not after start_date");
            }
        }
        check_short(
            short_surcharge,
            short_threshold_s,
            "short_surcharge_threshold_s",
        )?;
        let obr_tier = tier_from_name(&destination);
        Ok(DeckRow {
            prefix,
            destination,
            rate,
            rate_intrastate: rate_intra,
            increment: Increment { initial, step },
            connection_fee,
            min_billed_seconds,
            short_surcharge,
            short_threshold_s,
            effective_from,
            effective_to,
            trunk,
            trunk_plan,
            obr_tier,
            line: lineno,
            origin: None,
        })
    }

    fn breakout_row(&mut self, lineno: usize, line: &str) -> FieldResult<DeckRow> {
        let h = self.header.as_ref().expect("header parsed");
        let sep = h.sep;
        let fields = split_csv(line, sep);
        if fields.len() < h.n {
            // Trailing optional columns may be omitted entirely.
            let needed = [h.destination, h.code, h.rate, h.increment]
                .into_iter()
                .max()
                .unwrap_or(0);
            if fields.len() <= needed {
                return ferr(
                    "columns",
                    format!("expected {} fields, found {}", h.n, fields.len()),
                );
            }
        } else if fields.len() > h.n && fields[h.n..].iter().any(|s| !s.is_empty()) {
            return ferr(
                "columns",
                format!("expected {} fields, found {}", h.n, fields.len()),
            );
        }
        let get =
            |i: Option<usize>| -> &str { i.and_then(|i| fields.get(i)).map_or("", |s| s.as_str()) };
        let dest_s = get(Some(h.destination)).to_string();
        let code = get(Some(h.code)).to_string();
        let rate_s = get(Some(h.rate)).to_string();
        let inc_s = get(Some(h.increment)).to_string();
        let from_s = get(h.effective_from).to_string();
        let fee_s = get(h.connection_fee).to_string();
        let min_s = get(h.min_seconds).to_string();
        let ss_s = get(h.short_surcharge).to_string();
        let st_s = get(h.short_threshold).to_string();
        let to_s = get(h.effective_to).to_string();
        let tier_s = get(h.obr_tier).to_string();

        if dest_s.is_empty() {
            return ferr("destination", "empty destination");
        }
        let prefix = parse_prefix("code", &code)?;
        let rate = parse_rate("rate_usd", &rate_s)?;
        let increment = parse_increment("increment", &inc_s)?;
        let effective_from = if from_s.is_empty() {
            None
        } else {
            Some(parse_when("effective_from", &from_s)?)
        };
        let effective_to = if to_s.is_empty() {
            None
        } else {
            Some(parse_when("effective_to", &to_s)?)
        };
        if let (Some(f), Some(t)) = (effective_from, effective_to) {
            if t <= f {
                return ferr("effective_to", "effective_to is not after effective_from");
            }
        }
        let connection_fee = opt_money("connection_fee", &fee_s)?;
        let min_billed_seconds = opt_secs("min_seconds", &min_s)?;
        let short_surcharge = opt_money("short_surcharge", &ss_s)?;
        let short_threshold_s = opt_secs("short_threshold_s", &st_s)?;
        check_short(short_surcharge, short_threshold_s, "short_threshold_s")?;
        let obr_tier = if tier_s.is_empty() {
            tier_from_name(&dest_s)
        } else if tier_s.eq_ignore_ascii_case("eea") {
            Some(ObrTier::Eea)
        } else if tier_s.eq_ignore_ascii_case("row") {
            Some(ObrTier::RestOfWorld)
        } else {
            return ferr("obr_tier", format!("`{tier_s}` is not EEA or ROW"));
        };
        let destination = self.intern(&dest_s);
        Ok(DeckRow {
            prefix,
            destination,
            rate,
            rate_intrastate: None,
            increment,
            connection_fee,
            min_billed_seconds,
            short_surcharge,
            short_threshold_s,
            effective_from,
            effective_to,
            trunk: None,
            trunk_plan: None,
            obr_tier,
            line: lineno,
            origin: None,
        })
    }

    fn finish(mut self, mode: ImportMode) -> Result<ParsedDeck, DeckError> {
        self.reject_duplicates();
        if mode == ImportMode::Strict && !self.rejected.is_empty() {
            self.rejected.sort_by_key(|e| e.line);
            return Err(DeckError::Rejected {
                file: self.file.to_string(),
                errors: self.rejected,
            });
        }
        self.rejected.sort_by_key(|e| e.line);
        Ok(ParsedDeck {
            rows: self.rows,
            rejected: self.rejected,
        })
    }

    /// Two rows for the same prefix, trunk, OBR tier and start date would
    /// make the rate ambiguous: keep the first, reject the later one.
    fn reject_duplicates(&mut self) {
        let mut keys: Vec<(u64, u32)> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.prefix.key(), i as u32))
            .collect();
        keys.sort_unstable();
        let mut dead: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < keys.len() {
            let mut j = i + 1;
            while j < keys.len() && keys[j].0 == keys[i].0 {
                j += 1;
            }
            if j - i > 1 {
                // Rare: same prefix several times (tiers, dated rows, trunks).
                for a in i..j {
                    for b in i..a {
                        let (ra, rb) = (
                            &self.rows[keys[a].1 as usize],
                            &self.rows[keys[b].1 as usize],
                        );
                        if ra.trunk == rb.trunk
                            && ra.obr_tier == rb.obr_tier
                            && ra.effective_from == rb.effective_from
                            && !dead.contains(&keys[b].1)
                        {
                            dead.push(keys[a].1);
                            break;
                        }
                    }
                }
            }
            i = j;
        }
        if dead.is_empty() {
            return;
        }
        dead.sort_unstable();
        for &d in &dead {
            let r = &self.rows[d as usize];
            let first = keys
                .iter()
                .map(|k| &self.rows[k.1 as usize])
                .find(|o| {
                    o.prefix == r.prefix
                        && o.trunk == r.trunk
                        && o.obr_tier == r.obr_tier
                        && o.effective_from == r.effective_from
                        && o.line < r.line
                })
                .map_or(0, |o| o.line);
            let msg = format!(
                "duplicate prefix {} (same trunk/tier/effective date as line {first})",
                r.prefix
            );
            let line = r.line;
            let field = if self.kind == DeckKind::Breakout {
                "code"
            } else {
                "dialprefix"
            };
            self.reject(line, field, msg);
        }
        let mut k = 0u32;
        let mut di = 0;
        self.rows.retain(|_| {
            let keep = !(di < dead.len() && dead[di] == k);
            if !keep {
                di += 1;
            }
            k += 1;
            keep
        });
    }
}

fn parse_breakout_header(file: &str, lineno: usize, line: &str) -> Result<BreakoutCols, DeckError> {
    // The documented format is comma-separated, but the seed sample uses `;`.
    let sep = if line.contains(';') && !line.contains(',') {
        b';'
    } else {
        b','
    };
    let names = split_csv(line, sep);
    let find = |n: &str| names.iter().position(|c| c.eq_ignore_ascii_case(n));
    let err = |m: String| DeckError::Header {
        file: file.to_string(),
        line: lineno,
        message: m,
    };
    let req = |n: &str| find(n).ok_or_else(|| err(format!("missing required column `{n}`")));
    Ok(BreakoutCols {
        sep,
        n: names.len(),
        destination: req("destination")?,
        code: req("code")?,
        rate: req("rate_usd")?,
        increment: req("increment")?,
        effective_from: find("effective_from"),
        connection_fee: find("connection_fee"),
        min_seconds: find("min_seconds"),
        short_surcharge: find("short_surcharge"),
        short_threshold: find("short_threshold_s"),
        effective_to: find("effective_to"),
        obr_tier: find("obr_tier"),
    })
}

/// Minimal RFC 4180-style splitter: double quotes protect separators and
/// `""` is an escaped quote. Destination names such as `"Korea, South"` need it.
fn split_csv(line: &str, sep: u8) -> Vec<String> {
    let mut out = Vec::with_capacity(8);
    if !line.contains('"') {
        out.extend(line.split(sep as char).map(|s| s.trim().to_string()));
        return out;
    }
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_q {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    in_q = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' {
            in_q = true;
        } else if c == sep as char {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    out.push(cur.trim().to_string());
    out
}

fn tier_from_name(name: &str) -> Option<ObrTier> {
    // Only scan (case-insensitively) when "OBR" is plausibly present.
    let b = name.as_bytes();
    let pos = b.windows(3).position(|w| w.eq_ignore_ascii_case(b"obr"))?;
    let rest = name[pos + 3..].trim_start();
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if word.eq_ignore_ascii_case("eea") {
        Some(ObrTier::Eea)
    } else if word.eq_ignore_ascii_case("row") {
        Some(ObrTier::RestOfWorld)
    } else {
        None
    }
}

fn parse_prefix(field: &'static str, s: &str) -> FieldResult<Prefix> {
    Prefix::parse(s).map_err(|e| {
        let m = match e {
            PrefixError::Empty => "empty prefix".to_string(),
            other => format!("`{s}`: {other}"),
        };
        (field, m)
    })
}

fn parse_rate(field: &'static str, s: &str) -> FieldResult<Decimal> {
    if s.is_empty() {
        return ferr(field, "empty rate");
    }
    let d = Decimal::from_str(s).or_else(|_| ferr(field, format!("`{s}` is not a decimal")))?;
    if d.is_sign_negative() && !d.is_zero() {
        return ferr(field, format!("negative rate {s}"));
    }
    Ok(d)
}

fn opt_money(field: &'static str, s: &str) -> FieldResult<Decimal> {
    if s.is_empty() {
        Ok(Decimal::ZERO)
    } else {
        parse_rate(field, s)
    }
}

fn parse_secs(field: &'static str, s: &str, nonzero: bool) -> FieldResult<u32> {
    let v = s
        .parse::<u32>()
        .or_else(|_| ferr(field, format!("`{s}` is not a whole number of seconds")))?;
    if nonzero && v == 0 {
        return ferr(field, "must be at least 1 second");
    }
    Ok(v)
}

fn opt_secs(field: &'static str, s: &str) -> FieldResult<u32> {
    if s.is_empty() {
        Ok(0)
    } else {
        parse_secs(field, s, false)
    }
}

fn check_short(amount: Decimal, threshold: u32, field: &'static str) -> FieldResult<()> {
    if !amount.is_zero() && threshold == 0 {
        return ferr(field, "a short-duration surcharge needs a threshold > 0");
    }
    Ok(())
}

/// `X/Y` increment notation.
pub fn parse_increment(field: &'static str, s: &str) -> Result<Increment, (&'static str, String)> {
    let Some((x, y)) = s.split_once('/') else {
        return ferr(field, format!("`{s}` is not X/Y (e.g. 1/1, 60/60)"));
    };
    let initial = parse_secs(field, x.trim(), true)?;
    let step = parse_secs(field, y.trim(), true)?;
    Ok(Increment { initial, step })
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 timestamp.
pub fn parse_when(field: &'static str, s: &str) -> Result<DateTime<Utc>, (&'static str, String)> {
    if s.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
        }
    } else if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    ferr(field, format!("`{s}` is not a date YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn az(text: &str) -> ParsedDeck {
        parse_deck(
            "az.txt",
            text,
            DeckKind::AZ(Plan::Standard),
            ImportMode::Lenient,
        )
        .unwrap()
    }

    #[test]
    fn az_rows_and_extras() {
        let d = az("# comment\n\ndialprefix;destination name;rate;initial billing time;billing increment\n\
                    4930;Germany Fixed;0.0095;1;1\n\
                    52;Mexico;0.02;60;60;0.01;30;0.005;6;2030-01-01\n");
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.rows[0].prefix.to_string(), "4930");
        assert_eq!(&*d.rows[0].destination, "Germany Fixed");
        assert_eq!(d.rows[0].rate, dec!(0.0095));
        assert_eq!(d.rows[0].line, 4);
        let m = &d.rows[1];
        assert_eq!(m.increment, Increment::new(60, 60));
        assert_eq!(m.connection_fee, dec!(0.01));
        assert_eq!(m.min_billed_seconds, 30);
        assert_eq!(m.short_surcharge, dec!(0.005));
        assert_eq!(m.short_threshold_s, 6);
        assert_eq!(
            m.effective_to.unwrap().to_rfc3339(),
            "2030-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn bad_rows_name_file_line_field_and_rest_loads() {
        let d = az("44;UK;0.01;1;1\n\
                    4x;Bad;0.01;1;1\n\
                    33;France;abc;1;1\n\
                    34;Spain;0.01;0;1\n\
                    35;Portugal;0.01;1\n\
                    36;Hungary;-0.5;1;1\n\
                    37;;0.01;1;1\n\
                    38;X;0.01;1;1;;;0.5;;\n\
                    39;Y;0.01;1;1;;;;;2020-13-01\n\
                    44;UK again;0.02;1;1\n\
                    49;Germany;0.01;1;1\n");
        let got: Vec<(usize, &str)> = d.rejected.iter().map(|e| (e.line, e.field)).collect();
        assert_eq!(
            got,
            vec![
                (2, "dialprefix"),
                (3, "rate"),
                (4, "initial billing time"),
                (5, "columns"),
                (6, "rate"),
                (7, "destination name"),
                (8, "short_surcharge_threshold_s"),
                (9, "end_date"),
                (10, "dialprefix"),
            ]
        );
        assert!(d.rejected.iter().all(|e| e.file == "az.txt"));
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.rows[0].rate, dec!(0.01), "first duplicate kept");
        assert_eq!(
            d.rejected[0].to_string(),
            "az.txt:2: field `dialprefix`: `4x`: prefix must contain only digits 0-9"
        );
    }

    #[test]
    fn strict_refuses_whole_deck_with_all_errors() {
        let text = "44;UK;0.01;1;1\n1x;Bad;0.01;1;1\n33;F;0.01;1;0\n";
        let e = parse_deck(
            "s.txt",
            text,
            DeckKind::AZ(Plan::Premium),
            ImportMode::Strict,
        )
        .unwrap_err();
        match e {
            DeckError::Rejected { file, errors } => {
                assert_eq!(file, "s.txt");
                assert_eq!(errors.len(), 2);
                assert_eq!((errors[0].line, errors[0].field), (2, "dialprefix"));
                assert_eq!((errors[1].line, errors[1].field), (3, "billing increment"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let ok = parse_deck(
            "s.txt",
            "44;UK;0.01;1;1\n",
            DeckKind::AZ(Plan::Premium),
            ImportMode::Strict,
        )
        .unwrap();
        assert_eq!(ok.rows.len(), 1);
    }

    #[test]
    fn us48_rows() {
        let d = parse_deck(
            "us48.txt",
            "1212555;USA New York;0.0015;0.0020;6;6\n1213;USA LA;0.002;x;6;6\n",
            DeckKind::Us48,
            ImportMode::Lenient,
        )
        .unwrap();
        assert_eq!(d.rows.len(), 1);
        assert_eq!(d.rows[0].rate, dec!(0.0015));
        assert_eq!(d.rows[0].rate_intrastate, Some(dec!(0.0020)));
        assert_eq!(d.rows[0].increment, Increment::new(6, 6));
        assert_eq!(
            (d.rejected[0].line, d.rejected[0].field),
            (2, "rate intrastate")
        );
    }

    #[test]
    fn per_trunk_rows() {
        let d = parse_deck(
            "trunk.txt",
            "44;UK;0.01;1;1;101;1\n44;UK;0.02;1;1;102;2\n33;F;0.01;1;1;abc;0\n34;S;0.01;1;1;7;3\n",
            DeckKind::PerTrunk,
            ImportMode::Lenient,
        )
        .unwrap();
        assert_eq!(d.rows.len(), 2, "same prefix on different trunks is fine");
        assert_eq!(d.rows[0].trunk, Some(101));
        assert_eq!(d.rows[0].trunk_plan, Some(Plan::Premium));
        assert_eq!(d.rows[1].trunk_plan, Some(Plan::Pstn));
        let f: Vec<_> = d.rejected.iter().map(|e| (e.line, e.field)).collect();
        assert_eq!(f, vec![(3, "trunk number"), (4, "trunk rating")]);
    }

    #[test]
    fn breakout_seed_sample_semicolon() {
        let text = "destination;code;rate_usd;increment;effective_from\n\
                    Germany Fixed;4930;0.0095;1/1;2026-06-01\n\
                    Germany Mobile T-Mobile;49151;0.0210;1/1;2026-06-01\n\
                    Germany Mobile Vodafone;49152;0.0205;1/1;2026-06-01\n";
        let d = parse_deck("b.csv", text, DeckKind::Breakout, ImportMode::Strict).unwrap();
        assert_eq!(d.rows.len(), 3);
        assert_eq!(d.rows[1].rate, dec!(0.0210));
        assert_eq!(
            d.rows[0].effective_from.unwrap().to_rfc3339(),
            "2026-06-01T00:00:00+00:00"
        );
        assert_eq!(d.earliest_effective(), d.rows[0].effective_from);
    }

    #[test]
    fn breakout_csv_with_extras_quotes_and_errors() {
        let text = "destination,code,rate_usd,increment,effective_from,connection_fee,min_seconds,short_surcharge,short_threshold_s,effective_to\n\
                    \"Korea, South\",82,0.03,30/6,2026-01-01,0.01,,0.002,6,2026-12-31\n\
                    Mexico,52,0.02,60,2026-01-01\n\
                    Fiji,679,0.2,60/60,2026-02-30\n\
                    Fiji OBR EEA,6790,0.2,60/60,2026-02-01,,,,,2026-01-01\n\
                    Germany OBR ROW,49,0.2,1/1,2026-02-01\n";
        let d = parse_deck("b.csv", text, DeckKind::Breakout, ImportMode::Lenient).unwrap();
        assert_eq!(d.rows.len(), 2);
        assert_eq!(&*d.rows[0].destination, "Korea, South");
        assert_eq!(d.rows[0].increment, Increment::new(30, 6));
        assert_eq!(d.rows[0].short_threshold_s, 6);
        assert_eq!(d.rows[1].obr_tier, Some(ObrTier::RestOfWorld));
        let f: Vec<_> = d.rejected.iter().map(|e| (e.line, e.field)).collect();
        assert_eq!(
            f,
            vec![(3, "increment"), (4, "effective_from"), (5, "effective_to")]
        );
    }

    #[test]
    fn breakout_header_required() {
        let e = parse_deck(
            "b.csv",
            "Germany,49,0.01,1/1,2026-01-01\n",
            DeckKind::Breakout,
            ImportMode::Lenient,
        )
        .unwrap_err();
        assert!(matches!(e, DeckError::Header { line: 1, .. }), "{e:?}");
    }

    #[test]
    fn reader_matches_str() {
        let text = "44;UK;0.01;1;1\r\n1x;Bad;0.01;1;1\r\n33;F;0.01;1;1\r\n";
        let a = az(text);
        let b = parse_deck_reader(
            "az.txt",
            std::io::Cursor::new(text),
            DeckKind::AZ(Plan::Standard),
            ImportMode::Lenient,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rows.len(), 2);
    }

    #[test]
    fn sized_reader_matches_str_whatever_the_hint() {
        let text = "44;UK;0.01;1;1\n1x;Bad;0.01;1;1\n33;F;0.01;1;1\n49;D;0.02;60;60";
        assert_eq!(count_lines(text.as_bytes()).unwrap(), 4);
        assert_eq!(count_lines(&text.as_bytes()[..text.len() - 15]).unwrap(), 3);
        assert_eq!(count_lines(&b""[..]).unwrap(), 0);
        let a = az(text);
        for hint in [0, 1, 3, 4, 1000] {
            let b = parse_deck_reader_sized(
                "az.txt",
                std::io::Cursor::new(text),
                DeckKind::AZ(Plan::Standard),
                ImportMode::Lenient,
                hint,
            )
            .unwrap();
            assert_eq!(a, b, "hint {hint}");
        }
        assert_eq!(a.rows.len(), 3);
    }

    #[test]
    fn a_latin1_line_is_read_as_latin1_and_costs_no_other_row() {
        let mut bytes = b"225;C".to_vec();
        bytes.push(0xF4); // ô in ISO-8859-1, invalid alone in UTF-8
        bytes.extend_from_slice(b"te d'Ivoire;0.12;60;60\r\n262;R\xc3\xa9union;0.2;60;60\n");
        let parsed = parse_deck_reader(
            "az.txt",
            std::io::Cursor::new(bytes),
            DeckKind::AZ(Plan::Standard),
            ImportMode::Strict,
        )
        .unwrap();
        let names: Vec<&str> = parsed.rows.iter().map(|r| &*r.destination).collect();
        assert_eq!(names, ["Côte d'Ivoire", "Réunion"]);
        assert_eq!(parsed.rows[0].rate, Decimal::new(12, 2));
    }

    #[test]
    fn obr_tier_from_name() {
        assert_eq!(tier_from_name("France Mobile OBR EEA"), Some(ObrTier::Eea));
        assert_eq!(tier_from_name("France obr row"), Some(ObrTier::RestOfWorld));
        assert_eq!(tier_from_name("Robrtown"), None);
        assert_eq!(tier_from_name("France"), None);
    }
}
