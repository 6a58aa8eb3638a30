//! Number analysis (pure, synchronous): this module owns everything that can be
//! decided from the digits alone, before any LRN lookup.
//!
//! * dial-plan prefix stripping (`*30` PSTN, `*31` Standard, `*32` Premium,
//!   `*4TTT` trunk TTT) → [`PlanSelector`];
//! * normalisation of `cli` / `dialed` to E.164 digits → [`E164`];
//! * caller-id validity (missing / malformed / not E.164) → [`CliStatus`];
//! * country (ISO 3166 alpha-2) and [`NumberType`] of a number → [`NumberInfo`];
//! * the replaceable NANP NPA-NXX → state/OCN table → [`NpaNxxTable`];
//! * US jurisdiction (intrastate / interstate) → [`Jurisdiction`].
//!
//! # Normalisation rules (documented choices)
//!
//! Input may be a bare number or a `sip:`/`sips:`/`tel:` URI; the scheme, the
//! `@host` part and any `;param` suffix are dropped. Visual separators
//! (space, `-`, `.`, `(`, `)`, `/`) are ignored. Then, on the remaining text:
//!
//! | form | result |
//! | --- | --- |
//! | `+CC…` | digits after `+` |
//! | `00CC…` (ITU international prefix) | digits after `00` |
//! | `011CC…` (NANP international prefix) | digits after `011` |
//! | 10 digits `NXXNXXXXXX` (N = 2‥9, NANP national) | `1` + the 10 digits |
//! | anything else made of digits | taken as already-international digits |
//!
//! The result must then be E.164-shaped: 8‥=15 digits in total (country code
//! included), first digit not `0`. The canonical text form is `+digits`
//! ([`E164`]'s `Display`); normalising that form again is the identity.
//!
//! # Country and number type
//!
//! Country and type come from the maintained libphonenumber port
//! (`phonenumber` crate, Google metadata), with overrides applied first:
//! NANP toll-free NPAs 800/833/844/855/866/877/888 → `TollFree`, NPA 900 →
//! `Premium`; satellite ranges +870 (Inmarsat), +881 (GMSS: Iridium,
//! Globalstar), +88216 (Thuraya) → `Satellite`. libphonenumber cannot tell
//! fixed from mobile in NANP (`FixedLineOrMobile`); we report that as
//! [`NumberType::Fixed`]. A number in an unassigned range of a shared code
//! gets the main country of its country code (`+447700900123` → `GB`). Cost: ~20 µs per classified number after warm-up (first
//! call per country compiles regexes; call [`warm_up`] at start-up).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Route-plan selector carried as a dial prefix in front of the dialed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlanSelector {
    /// `*30` — PSTN route.
    Pstn,
    /// `*31` — Standard route.
    Standard,
    /// `*32` — Premium route.
    Premium,
    /// `*4TTT` — a specific termination trunk (000‥=999).
    Trunk(u16),
}

impl PlanSelector {
    /// The dial prefix that selects this plan (inverse of [`strip_plan_prefix`]).
    pub fn prefix(&self) -> String {
        match self {
            PlanSelector::Pstn => "*30".to_string(),
            PlanSelector::Standard => "*31".to_string(),
            PlanSelector::Premium => "*32".to_string(),
            PlanSelector::Trunk(t) => format!("*4{:03}", t),
        }
    }
}

/// Strip one leading dial-plan prefix. Returns the selector (if any) and the rest
/// of the string, untouched. Leading/trailing whitespace is ignored. A `*4`
/// must be followed by exactly three digits to count as a trunk selector;
/// other `*` codes are left in place (normalisation then rejects them).
pub fn strip_plan_prefix(dialed: &str) -> (Option<PlanSelector>, &str) {
    let s = dialed.trim();
    let b = s.as_bytes();
    if b.len() >= 3 && b[0] == b'*' {
        match (b[1], b[2]) {
            (b'3', b'0') => return (Some(PlanSelector::Pstn), &s[3..]),
            (b'3', b'1') => return (Some(PlanSelector::Standard), &s[3..]),
            (b'3', b'2') => return (Some(PlanSelector::Premium), &s[3..]),
            (b'4', _) if b.len() >= 5 && b[2..5].iter().all(u8::is_ascii_digit) => {
                let t =
                    (b[2] - b'0') as u16 * 100 + (b[3] - b'0') as u16 * 10 + (b[4] - b'0') as u16;
                return (Some(PlanSelector::Trunk(t)), &s[5..]);
            }
            _ => {}
        }
    }
    (None, s)
}

/// A normalised E.164 number: country code + national significant number,
/// digits only (no `+`), 8‥=15 digits, first digit not `0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct E164(String);

impl E164 {
    /// The digits, without `+`.
    pub fn digits(&self) -> &str {
        &self.0
    }
    /// `true` for NANP (country code 1).
    pub fn is_nanp(&self) -> bool {
        self.0.len() == 11 && self.0.starts_with('1')
    }
    /// The 10-digit NANP number (`NPANXXXXXX`) when this is a NANP number.
    pub fn nanp_tn10(&self) -> Option<&str> {
        if self.is_nanp() {
            Some(&self.0[1..])
        } else {
            None
        }
    }
    /// Validate already-clean digits (optionally with a leading `+`) as E.164.
    pub fn from_digits(digits: &str) -> Result<Self, NumberError> {
        let d = digits.strip_prefix('+').unwrap_or(digits);
        check_e164_shape(d)?;
        Ok(E164(d.to_string()))
    }
}

impl fmt::Display for E164 {
    /// Canonical text form `+digits`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// Why a string is not a usable E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum NumberError {
    /// Empty, or an anonymity token (`anonymous`, `restricted`, …).
    #[error("number missing")]
    Missing,
    /// Contains characters that cannot be part of a phone number.
    #[error("malformed number: {0:?}")]
    Malformed(String),
    /// Digits only, but not E.164-shaped (length or leading zero).
    #[error("not E.164: {0}")]
    NotE164(String),
}

/// Caller-id quality, as needed for origin-based surcharges and CLI policing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CliStatus {
    /// Normalised to E.164 and its country code is assigned.
    Valid,
    /// Absent, empty or withheld (`anonymous`, `restricted`, `private`, `unknown`).
    Missing,
    /// Contains non-number characters.
    Malformed,
    /// Numeric but not E.164 (wrong length, leading 0, unassigned country code).
    NotE164,
}

const ANON_TOKENS: [&str; 6] = [
    "anonymous",
    "restricted",
    "private",
    "unknown",
    "unavailable",
    "withheld",
];

fn strip_uri(s: &str) -> &str {
    let mut s = s.trim();
    for scheme in ["sip:", "sips:", "tel:"] {
        if s.get(..scheme.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(scheme))
        {
            s = &s[scheme.len()..];
            break;
        }
    }
    if let Some(i) = s.find('@') {
        s = &s[..i];
    }
    if let Some(i) = s.find(';') {
        s = &s[..i];
    }
    s.trim()
}

fn check_e164_shape(d: &str) -> Result<(), NumberError> {
    if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
        return Err(NumberError::Malformed(d.to_string()));
    }
    if !(8..=15).contains(&d.len()) || d.starts_with('0') {
        return Err(NumberError::NotE164(d.to_string()));
    }
    Ok(())
}

fn is_nanp_national(d: &[u8]) -> bool {
    d.len() == 10 && (b'2'..=b'9').contains(&d[0]) && (b'2'..=b'9').contains(&d[3])
}

/// Normalise a number (caller id or dialed number **after** prefix stripping)
/// to E.164 digits. See the module docs for the accepted forms.
pub fn normalize(raw: &str) -> Result<E164, NumberError> {
    let s = strip_uri(raw);
    if s.is_empty() || ANON_TOKENS.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        return Err(NumberError::Missing);
    }
    let mut plus = false;
    let mut digits = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => plus = true,
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return Err(NumberError::Malformed(raw.to_string())),
        }
    }
    if digits.is_empty() {
        return Err(NumberError::Malformed(raw.to_string()));
    }
    let d = if plus {
        digits.as_str()
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest
    } else if let Some(rest) = digits.strip_prefix("011") {
        rest
    } else if is_nanp_national(digits.as_bytes()) && !international_not_nanp(&digits) {
        digits.insert(0, '1');
        digits.as_str()
    } else {
        digits.as_str()
    };
    check_e164_shape(d)?;
    Ok(E164(d.to_string()))
}

/// Ten bare digits can be a NANP national number (NPA-NXX-XXXX) or an
/// international one without `+` (Suriname `597 612 3456`). Read them as
/// international only when the numbering data says so: valid under their
/// own country code and not valid as `+1` (so 212-555-0199, which is not a
/// valid Moroccan number, stays NANP, and unknown cases keep the NANP
/// reading switches in North America use).
fn international_not_nanp(digits: &str) -> bool {
    let valid = |s: String| {
        phonenumber::parse(None, s)
            .map(|p| phonenumber::is_valid(&p))
            .unwrap_or(false)
    };
    valid(format!("+{digits}")) && !valid(format!("+1{digits}"))
}

/// Caller-id check: the normalised number (when usable) and its status.
/// `Valid` additionally requires an assigned ITU country code.
pub fn check_cli(cli: Option<&str>) -> (CliStatus, Option<E164>) {
    let Some(cli) = cli else {
        return (CliStatus::Missing, None);
    };
    match normalize(cli) {
        Ok(n) => {
            if country_code_of(&n).is_some() {
                (CliStatus::Valid, Some(n))
            } else {
                (CliStatus::NotE164, None)
            }
        }
        Err(NumberError::Missing) => (CliStatus::Missing, None),
        Err(NumberError::Malformed(_)) => (CliStatus::Malformed, None),
        Err(NumberError::NotE164(_)) => (CliStatus::NotE164, None),
    }
}

/// Number type used for rating and surcharge decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NumberType {
    /// Geographic / fixed line (also NANP numbers, which cannot be told apart from mobiles).
    Fixed,
    /// Mobile.
    Mobile,
    /// Freephone.
    TollFree,
    /// Premium rate.
    Premium,
    /// Satellite (Inmarsat +870, GMSS +881, Thuraya +88216).
    Satellite,
    /// Anything else (VoIP, personal, shared-cost, unassigned ranges, …).
    Unknown,
}

/// NANP toll-free NPAs.
pub const NANP_TOLL_FREE_NPAS: [&str; 7] = ["800", "833", "844", "855", "866", "877", "888"];
/// NANP premium NPA.
pub const NANP_PREMIUM_NPA: &str = "900";

/// Country/type analysis of one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberInfo {
    /// The number analysed.
    pub e164: E164,
    /// ITU country code (1‥3 digits) if assigned.
    pub country_code: Option<u16>,
    /// ISO 3166-1 alpha-2 country (`"US"`, `"GB"`, …); `None` for non-geographic codes.
    pub country: Option<String>,
    /// Number type.
    pub number_type: NumberType,
}

fn parse_pn(n: &E164) -> Option<phonenumber::PhoneNumber> {
    let mut s = String::with_capacity(n.0.len() + 1);
    s.push('+');
    s.push_str(&n.0);
    phonenumber::parse(None, s).ok()
}

/// Assigned ITU country code at the start of the digits (metadata lookup, no regex).
fn country_code_of(n: &E164) -> Option<u16> {
    (1..=3).find_map(|len| {
        let code: u16 = n.0.get(..len)?.parse().ok()?;
        phonenumber::metadata::DATABASE.region(&code).map(|_| code)
    })
}

fn main_country_for_code(code: u16) -> Option<String> {
    let metas = phonenumber::metadata::DATABASE.by_code(&code)?;
    let id = metas.first()?.id();
    (id.len() == 2 && id.bytes().all(|c| c.is_ascii_uppercase())).then(|| id.to_string())
}

fn is_satellite(d: &str) -> bool {
    d.starts_with("870") || d.starts_with("881") || d.starts_with("88216")
}

/// Country and type of a normalised number.
pub fn classify(n: &E164) -> NumberInfo {
    let d = n.digits();
    let pn = parse_pn(n);
    let country_code = pn
        .as_ref()
        .map(|p| p.code().value())
        .or_else(|| country_code_of(n));
    let country = match pn.as_ref().and_then(|p| p.country().id()) {
        Some(id) => Some(AsRef::<str>::as_ref(&id).to_string()),
        // Unassigned/invalid national range: fall back to the main country of
        // the country code (e.g. UK drama range +447700900xxx → GB).
        None => country_code.and_then(main_country_for_code),
    };
    let override_type = if let Some(tn) = n.nanp_tn10() {
        let npa = &tn[..3];
        if NANP_TOLL_FREE_NPAS.contains(&npa) {
            Some(NumberType::TollFree)
        } else if npa == NANP_PREMIUM_NPA {
            Some(NumberType::Premium)
        } else {
            None
        }
    } else if is_satellite(d) {
        Some(NumberType::Satellite)
    } else {
        None
    };
    let number_type = override_type.unwrap_or_else(|| match &pn {
        None => NumberType::Unknown,
        Some(p) => match p.number_type(&phonenumber::metadata::DATABASE) {
            phonenumber::Type::FixedLine | phonenumber::Type::FixedLineOrMobile => {
                NumberType::Fixed
            }
            phonenumber::Type::Mobile => NumberType::Mobile,
            phonenumber::Type::TollFree => NumberType::TollFree,
            phonenumber::Type::PremiumRate => NumberType::Premium,
            _ => NumberType::Unknown,
        },
    });
    NumberInfo {
        e164: n.clone(),
        country_code,
        country,
        number_type,
    }
}

/// Load libphonenumber metadata and compile the regexes of the most common
/// regions so that the first real call does not pay ~100 ms.
pub fn warm_up() {
    for s in [
        "12125550123",
        "447911123456",
        "442071838750",
        "4915112345678",
        "33612345678",
        "525512345678",
    ] {
        if let Ok(n) = E164::from_digits(s) {
            let _ = classify(&n);
        }
    }
}

/// Result of analysing one call's `cli` and `dialed` fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallNumbers {
    /// Dial-plan selector stripped from the dialed number.
    pub plan: Option<PlanSelector>,
    /// Caller-id status.
    pub cli_status: CliStatus,
    /// Caller analysis when the caller id is valid.
    pub caller: Option<NumberInfo>,
    /// Callee analysis, or why the dialed number is unusable.
    pub callee: Result<NumberInfo, NumberError>,
}

/// Strip the plan prefix, normalise both numbers and classify them.
pub fn analyze_call(cli: Option<&str>, dialed: &str) -> CallNumbers {
    let (plan, rest) = strip_plan_prefix(dialed);
    let (cli_status, cli_n) = check_cli(cli);
    CallNumbers {
        plan,
        cli_status,
        caller: cli_n.as_ref().map(classify),
        callee: normalize(rest).map(|n| classify(&n)),
    }
}

// ---------------------------------------------------------------------------
// NPA-NXX table and jurisdiction
// ---------------------------------------------------------------------------

/// One NPA-NXX row: state/province (2 letters) and operating company number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpaNxxEntry {
    /// Two-letter US state / territory / Canadian province code, upper case.
    pub state: String,
    /// OCN (4 alphanumeric characters, e.g. `9740`, `508G`).
    pub ocn: String,
}

/// A bad row of an NPA-NXX file. `field` is 1-based (`1` = npanxx, `2` = state, `3` = ocn).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}, field {field}: {message}")]
pub struct RowError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based field number (0 = whole row).
    pub field: usize,
    /// What is wrong.
    pub message: String,
}

/// Errors loading an NPA-NXX file.
#[derive(Debug, Error)]
pub enum NpaNxxError {
    /// File could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// First bad row (strict loading).
    #[error(transparent)]
    Row(#[from] RowError),
}

/// NANP NPA-NXX → (state, OCN) table.
///
/// File format (UTF-8 text, one row per line, `;`-separated):
/// `npanxx;state;ocn`, e.g. `212555;NY;9104`. `npanxx` is 6 digits
/// (`NXXNXX`, N = 2‥9), `state` two ASCII letters (upper-cased on load), `ocn`
/// 1‥4 ASCII alphanumerics. Blank lines and lines starting with `#` are
/// ignored; surrounding whitespace and `\r` are trimmed. A repeated NPA-NXX is
/// an error (the first row wins).
#[derive(Debug, Clone, Default)]
pub struct NpaNxxTable {
    map: HashMap<u32, NpaNxxEntry>,
}

impl NpaNxxTable {
    /// Parse leniently: good rows are loaded, bad rows are returned.
    pub fn parse(text: &str) -> (Self, Vec<RowError>) {
        let mut map = HashMap::new();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            match parse_npanxx_row(l, line) {
                Ok((k, e)) => {
                    if let std::collections::hash_map::Entry::Vacant(v) = map.entry(k) {
                        v.insert(e);
                    } else {
                        errors.push(RowError {
                            line,
                            field: 1,
                            message: format!("duplicate NPA-NXX {:06}", k),
                        });
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        (NpaNxxTable { map }, errors)
    }

    /// Parse strictly: the first bad row is an error.
    pub fn parse_strict(text: &str) -> Result<Self, RowError> {
        let (t, mut errs) = Self::parse(text);
        if errs.is_empty() {
            Ok(t)
        } else {
            Err(errs.swap_remove(0))
        }
    }

    /// Read a file and parse it leniently.
    pub fn load(path: impl AsRef<Path>) -> Result<(Self, Vec<RowError>), NpaNxxError> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|source| NpaNxxError::Io {
            path: p.display().to_string(),
            source,
        })?;
        Ok(Self::parse(&text))
    }

    /// Number of NPA-NXX rows.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// `true` when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Look up a NANP number given as 10 digits (`NPANXXXXXX`) or 11 (`1NPANXXXXXX`, optional `+`).
    pub fn lookup(&self, number: &str) -> Option<&NpaNxxEntry> {
        let n = number.strip_prefix('+').unwrap_or(number);
        let tn = match n.len() {
            10 => n,
            11 if n.starts_with('1') => &n[1..],
            _ => return None,
        };
        let k: u32 = tn.get(..6)?.parse().ok()?;
        self.map.get(&k)
    }

    /// Jurisdiction of a US call. `rated` is the number the call is rated on:
    /// the LRN when one is known, else the dialed number (10 or 11 digits).
    ///
    /// * caller missing, not NANP, or its NPA-NXX unknown → `Indeterminate`;
    /// * rated NPA-NXX unknown → `Indeterminate`;
    /// * same state → `Intrastate`;
    /// * two different US states (50 + DC) → `Interstate`;
    /// * otherwise (a Canadian province or US territory on one side) → `Indeterminate`.
    pub fn jurisdiction(&self, caller: Option<&E164>, rated: &str) -> Jurisdiction {
        let Some(caller) = caller.and_then(E164::nanp_tn10) else {
            return Jurisdiction::Indeterminate;
        };
        let (Some(a), Some(b)) = (self.lookup(caller), self.lookup(rated)) else {
            return Jurisdiction::Indeterminate;
        };
        if a.state == b.state {
            Jurisdiction::Intrastate
        } else if US_STATES.contains(&a.state.as_str()) && US_STATES.contains(&b.state.as_str()) {
            Jurisdiction::Interstate
        } else {
            Jurisdiction::Indeterminate
        }
    }
}

const US_STATES: [&str; 51] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY",
];

fn parse_npanxx_row(l: &str, line: usize) -> Result<(u32, NpaNxxEntry), RowError> {
    let err = |field: usize, message: String| RowError {
        line,
        field,
        message,
    };
    let fields: Vec<&str> = l.split(';').map(str::trim).collect();
    if fields.len() != 3 {
        return Err(err(
            0,
            format!("expected 3 fields npanxx;state;ocn, got {}", fields.len()),
        ));
    }
    let npanxx = fields[0].as_bytes();
    if npanxx.len() != 6 || !npanxx.iter().all(u8::is_ascii_digit) {
        return Err(err(
            1,
            format!("npanxx must be 6 digits, got {:?}", fields[0]),
        ));
    }
    if npanxx[0] < b'2' || npanxx[3] < b'2' {
        return Err(err(
            1,
            format!("npanxx {:?}: NPA and NXX must start with 2-9", fields[0]),
        ));
    }
    let state = fields[1];
    if state.len() != 2 || !state.bytes().all(|c| c.is_ascii_alphabetic()) {
        return Err(err(2, format!("state must be 2 letters, got {:?}", state)));
    }
    let ocn = fields[2];
    if ocn.is_empty() || ocn.len() > 4 || !ocn.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(err(
            3,
            format!("ocn must be 1-4 alphanumerics, got {:?}", ocn),
        ));
    }
    let k: u32 = fields[0]
        .parse()
        .map_err(|_| err(1, "unparsable npanxx".into()))?;
    Ok((
        k,
        NpaNxxEntry {
            state: state.to_ascii_uppercase(),
            ocn: ocn.to_ascii_uppercase(),
        },
    ))
}

/// Regulatory jurisdiction of a US call (selects interstate vs intrastate rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Jurisdiction {
    /// Caller and rated number in the same state.
    Intrastate,
    /// Caller and rated number in different US states.
    Interstate,
    /// Cannot be determined (non-NANP or unknown caller, unknown NPA-NXX, non-US side).
    Indeterminate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            strip_plan_prefix("*3012125550123"),
            (Some(PlanSelector::Pstn), "12125550123")
        );
        assert_eq!(
            strip_plan_prefix("*31+4420"),
            (Some(PlanSelector::Standard), "+4420")
        );
        assert_eq!(
            strip_plan_prefix("*32 0044"),
            (Some(PlanSelector::Premium), " 0044")
        );
        assert_eq!(
            strip_plan_prefix("*4007441234"),
            (Some(PlanSelector::Trunk(7)), "441234")
        );
        assert_eq!(
            strip_plan_prefix("*4912"),
            (Some(PlanSelector::Trunk(912)), "")
        );
        assert_eq!(strip_plan_prefix("*41"), (None, "*41"));
        assert_eq!(strip_plan_prefix("*33123"), (None, "*33123"));
        assert_eq!(strip_plan_prefix("12125550123"), (None, "12125550123"));
        assert_eq!(PlanSelector::Trunk(7).prefix(), "*4007");
    }

    #[test]
    fn normalisation_forms() {
        let want = "12125550123";
        for s in [
            "+1 (212) 555-0123",
            "0012125550123",
            "12125550123",
            "2125550123",
            "212.555.0123",
            "sip:+12125550123@10.0.0.1;user=phone",
            "tel:+1-212-555-0123",
        ] {
            assert_eq!(normalize(s).unwrap().digits(), want, "{s}");
        }
        assert_eq!(
            normalize("011442071838750").unwrap().digits(),
            "442071838750"
        );
        assert_eq!(
            normalize("+442071838750").unwrap().to_string(),
            "+442071838750"
        );
        assert_eq!(normalize(""), Err(NumberError::Missing));
        assert_eq!(normalize("Anonymous"), Err(NumberError::Missing));
        // Multi-byte input near the URI-scheme check must not panic (found by proptest).
        assert!(matches!(normalize("A ᏸ"), Err(NumberError::Malformed(_))));
        assert!(matches!(normalize("siᏸ:1"), Err(NumberError::Malformed(_))));
        assert!(matches!(
            normalize("12a45678"),
            Err(NumberError::Malformed(_))
        ));
        assert!(matches!(normalize("+"), Err(NumberError::Malformed(_))));
        assert!(matches!(
            normalize("02071838750"),
            Err(NumberError::NotE164(_))
        ));
        assert!(matches!(
            normalize("+1234567"),
            Err(NumberError::NotE164(_))
        ));
        assert!(matches!(
            normalize("+1234567890123456"),
            Err(NumberError::NotE164(_))
        ));
        // 10 digits starting 0/1 are not NANP national and stay as given (still fine at length 10)
        assert_eq!(normalize("1234567890").unwrap().digits(), "1234567890");
    }

    #[test]
    fn cli_status() {
        assert_eq!(check_cli(None).0, CliStatus::Missing);
        assert_eq!(check_cli(Some("  ")).0, CliStatus::Missing);
        assert_eq!(check_cli(Some("restricted")).0, CliStatus::Missing);
        assert_eq!(
            check_cli(Some("+44 20 7183 8750")),
            (CliStatus::Valid, Some(E164("442071838750".into())))
        );
        assert_eq!(check_cli(Some("john.doe")).0, CliStatus::Malformed);
        assert_eq!(check_cli(Some("020 7183 8750")).0, CliStatus::NotE164);
        // +999 is not an assigned country code
        assert_eq!(check_cli(Some("+99912345678")).0, CliStatus::NotE164);
    }

    fn cls(s: &str) -> NumberInfo {
        classify(&normalize(s).unwrap())
    }

    #[test]
    fn classification() {
        let drama = cls("+447700900123");
        assert_eq!(
            (drama.country.as_deref(), drama.number_type),
            (Some("GB"), NumberType::Unknown)
        );
        let uk_mobile = cls("+447400123456");
        assert_eq!(uk_mobile.country.as_deref(), Some("GB"));
        assert_eq!(uk_mobile.number_type, NumberType::Mobile);
        let uk_fixed = cls("+442071838750");
        assert_eq!(uk_fixed.country.as_deref(), Some("GB"));
        assert_eq!(uk_fixed.number_type, NumberType::Fixed);
        assert_eq!(uk_fixed.country_code, Some(44));
        let us = cls("+12125550123");
        assert_eq!(
            (us.country.as_deref(), us.number_type),
            (Some("US"), NumberType::Fixed)
        );
        for npa in NANP_TOLL_FREE_NPAS {
            assert_eq!(
                cls(&format!("1{npa}5550123")).number_type,
                NumberType::TollFree,
                "{npa}"
            );
        }
        assert_eq!(cls("19005550123").number_type, NumberType::Premium);
        let thuraya = cls("+882163456789");
        assert_eq!(
            (thuraya.number_type, thuraya.country.as_deref()),
            (NumberType::Satellite, None)
        );
        assert_eq!(cls("+8816 31234567").number_type, NumberType::Satellite);
        assert_eq!(cls("+4915112345678").country.as_deref(), Some("DE"));
        assert_eq!(cls("+4915112345678").number_type, NumberType::Mobile);
        assert_eq!(cls("+18765551234").country.as_deref(), Some("JM"));
    }

    #[test]
    fn analyze() {
        let c = analyze_call(Some("+442071838750"), "*32011 44 7400 123456");
        assert_eq!(c.plan, Some(PlanSelector::Premium));
        assert_eq!(c.cli_status, CliStatus::Valid);
        assert_eq!(c.caller.unwrap().country.as_deref(), Some("GB"));
        let callee = c.callee.unwrap();
        assert_eq!(callee.e164.digits(), "447400123456");
        assert_eq!(callee.number_type, NumberType::Mobile);
        let c = analyze_call(None, "*4123bogus");
        assert_eq!(c.plan, Some(PlanSelector::Trunk(123)));
        assert_eq!(c.cli_status, CliStatus::Missing);
        assert!(c.callee.is_err());
    }

    const TABLE: &str =
        "# sample\n212555;NY;9104\n718555;ny;9104\n310555;CA;9740\n416555;ON;0001\n";

    #[test]
    fn npanxx_parse_and_jurisdiction() {
        let t = NpaNxxTable::parse_strict(TABLE).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup("+12125550123").unwrap().state, "NY");
        assert_eq!(t.lookup("7185550000").unwrap().state, "NY");
        let ny = normalize("2125550123").unwrap();
        assert_eq!(
            t.jurisdiction(Some(&ny), "7185551111"),
            Jurisdiction::Intrastate
        );
        assert_eq!(
            t.jurisdiction(Some(&ny), "13105551111"),
            Jurisdiction::Interstate
        );
        assert_eq!(
            t.jurisdiction(Some(&ny), "4165551111"),
            Jurisdiction::Indeterminate
        );
        assert_eq!(
            t.jurisdiction(None, "3105551111"),
            Jurisdiction::Indeterminate
        );
        let uk = normalize("+442071838750").unwrap();
        assert_eq!(
            t.jurisdiction(Some(&uk), "3105551111"),
            Jurisdiction::Indeterminate
        );
        let unknown = normalize("+13055550000").unwrap();
        assert_eq!(
            t.jurisdiction(Some(&unknown), "3105551111"),
            Jurisdiction::Indeterminate
        );
        assert_eq!(
            t.jurisdiction(Some(&ny), "9995551111"),
            Jurisdiction::Indeterminate
        );
    }

    #[test]
    fn npanxx_errors_have_line_and_field() {
        let text = "212555;NY;9104\n21255;NY;9104\n212556;N1;9104\n212557;NY;TOOLONG\n212558;NY\n\n112555;NY;1\n212555;NJ;1\n";
        let (t, errs) = NpaNxxTable::parse(text);
        assert_eq!(t.len(), 1);
        let got: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.field)).collect();
        assert_eq!(got, vec![(2, 1), (3, 2), (4, 3), (5, 0), (7, 1), (8, 1)]);
        assert!(errs[0].to_string().starts_with("line 2, field 1"));
        assert_eq!(NpaNxxTable::parse_strict(text).unwrap_err().line, 2);
    }

    #[test]
    fn sample_file_loads() {
        let (t, errs) =
            NpaNxxTable::load(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/npanxx.txt")).unwrap();
        assert!(errs.is_empty(), "{errs:?}");
        assert!(t.len() >= 10);
    }

    #[test]
    fn ten_bare_digits_are_nanp_unless_the_numbering_data_says_otherwise() {
        // Suriname mobile without `+`: 597 is no NANP area code.
        assert_eq!(normalize("5978123456").unwrap().digits(), "5978123456");
        // Valid nowhere: the NANP reading stays (what North American
        // switches mean by ten digits).
        assert_eq!(normalize("5976123456").unwrap().digits(), "15976123456");
        // Fictional-exchange US numbers stay NANP.
        assert_eq!(normalize("2125550199").unwrap().digits(), "12125550199");
        assert_eq!(normalize("3105550123").unwrap().digits(), "13105550123");
        assert_eq!(normalize("4155552671").unwrap().digits(), "14155552671");
    }
}
