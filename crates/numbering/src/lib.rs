//! `numbering`: the one dial-plan and numbering module of the CDR pipeline.
//! Every service (assembler key, enricher, rater) and `cdrctl` read numbers
//! through this crate, so a number means the same thing everywhere. Pure and
//! synchronous: everything that can be decided from the digits alone, before
//! any LRN lookup.
//!
//! * the dial plan: `*30` PSTN, `*31` Standard, `*32` Premium, `*4TTT` trunk
//!   TTT → [`PlanSelector`], [`parse_dialed`] (selector + normalised number),
//!   [`dial_key`] (the assembler's partition key);
//! * normalisation of `cli` / `dialed` to E.164 digits → [`E164`];
//! * caller-id validity (missing / malformed / not E.164 / invalid) → [`CliStatus`];
//! * country (ISO 3166 alpha-2) and [`NumberType`] of a number → [`NumberInfo`];
//! * the replaceable NANP NPA-NXX → state/OCN table → [`NpaNxxTable`];
//! * THE US jurisdiction rule (intrastate / interstate / indeterminate) →
//!   [`NpaNxxTable::jurisdiction`], [`call_jurisdiction`];
//! * the NANP areas outside the contiguous US ([`NANP_NON_US48`]), which a
//!   deck must price explicitly.
//!
//! `NumberType` and `Jurisdiction` are the wire kinds of `cdr_model::kinds`
//! (re-exported here), so the enricher writes and the rater reads one enum.
//!
//! # Normalisation rules (documented choices)
//!
//! Input may be a bare number or a `sip:`/`sips:`/`tel:` URI; the scheme, the
//! `@host` part and any `;param` suffix are dropped. Visual separators
//! (space, `-`, `.`, `(`, `)`, `/`) are ignored. A `(0)` written inside an
//! international number (`+44 (0)20 7946 0123`) is the national trunk prefix
//! shown for national callers and is dropped, unless keeping the 0 gives a
//! valid number and dropping it does not (Italy, where the 0 belongs to the
//! number). Then, on the remaining text:
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

pub use cdr_model::kinds::{Jurisdiction, NumberType};

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

    /// The name written in `enrichment.plan_selector`: `pstn`, `standard`,
    /// `premium` or `trunk` (the trunk number goes to `trunk_selector`).
    pub fn name(&self) -> &'static str {
        match self {
            PlanSelector::Pstn => "pstn",
            PlanSelector::Standard => "standard",
            PlanSelector::Premium => "premium",
            PlanSelector::Trunk(_) => "trunk",
        }
    }

    /// `trunk_selector` text (`007`) for a trunk selector.
    pub fn trunk_text(&self) -> Option<String> {
        match self {
            PlanSelector::Trunk(t) => Some(format!("{t:03}")),
            _ => None,
        }
    }

    /// Inverse of [`PlanSelector::name`] / [`PlanSelector::trunk_text`]: the
    /// selector recorded on an enriched call. `None` for no selector or an
    /// unreadable record.
    pub fn from_record(plan: Option<&str>, trunk: Option<&str>) -> Option<Self> {
        Some(match plan? {
            "pstn" => PlanSelector::Pstn,
            "standard" => PlanSelector::Standard,
            "premium" => PlanSelector::Premium,
            "trunk" => {
                let t = trunk?;
                if t.len() != 3 || !t.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                PlanSelector::Trunk(t.parse().ok()?)
            }
            _ => return None,
        })
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

/// Why a dialed string cannot be rated.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum DialError {
    /// A `*` code that is none of `*30`, `*31`, `*32`, `*4TTT`.
    #[error("unknown dial prefix in `{0}`")]
    UnknownPlanPrefix(String),
    /// The number after the selector is unusable.
    #[error("dialed number: {0}")]
    Number(NumberError),
}

/// A dialed string read through the dial plan: the selector and the
/// normalised number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dialed {
    /// Plan selector, `None` when the account default applies.
    pub plan: Option<PlanSelector>,
    /// The number, E.164.
    pub number: E164,
}

/// Read a dialed string as the switch sent it: strip the plan selector,
/// refuse unknown `*` codes, normalise the rest to E.164.
pub fn parse_dialed(raw: &str) -> Result<Dialed, DialError> {
    let (plan, rest) = strip_plan_prefix(raw);
    if plan.is_none() && rest.starts_with('*') {
        return Err(DialError::UnknownPlanPrefix(raw.trim().to_string()));
    }
    let number = normalize(rest).map_err(DialError::Number)?;
    Ok(Dialed { plan, number })
}

/// Partition key of a call (the assembler keys `calls.assembled` by it so
/// one number's LRN lookups stay on one enricher's cache): the normalised
/// E.164 digits of the dialed number without its plan selector, so every
/// written form of one number (`7135550100`, `+1 713 555 0100`,
/// `*3017135550100`) gets the same key; the digits as written when the
/// number cannot be normalised.
pub fn dial_key(raw: &str) -> String {
    let (_, rest) = strip_plan_prefix(raw);
    match normalize(rest) {
        Ok(n) => n.0,
        Err(_) => rest.chars().filter(char::is_ascii_digit).collect(),
    }
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
    /// The digits, consuming the number.
    pub fn into_digits(self) -> String {
        self.0
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

/// Caller-id quality, as needed for origin-based surcharges, OBR tiers and
/// CLI policing (seed 000: "missing, malformed or Fake CLI's").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CliStatus {
    /// E.164, valid for libphonenumber and in a known region.
    Valid,
    /// Absent, empty or withheld (`anonymous`, `restricted`, `private`, `unknown`).
    Missing,
    /// Contains non-number characters.
    Malformed,
    /// Numeric but not E.164 (wrong length, leading 0, unassigned country code).
    NotE164,
    /// E.164-shaped with an assigned country code, but not a valid number of
    /// any region (a fake CLI such as `+4470000000` or `+33100000000`).
    Invalid,
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

/// Digits of `s` (separators dropped), whether it started with `+`, and
/// whether it contained a `(0)` group (kept in the digits). `Err` on any
/// other character.
fn scan(s: &str) -> Result<(String, bool, bool), ()> {
    let mut plus = false;
    let mut trunk0 = false;
    let mut digits = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => plus = true,
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return Err(()),
        }
    }
    if s.contains("(0)") {
        trunk0 = true;
    }
    Ok((digits, plus, trunk0))
}

fn strip_international(digits: &str, plus: bool) -> Option<&str> {
    if plus {
        Some(digits)
    } else if let Some(rest) = digits.strip_prefix("00") {
        Some(rest)
    } else {
        digits.strip_prefix("011")
    }
}

fn pn_valid(digits: &str) -> bool {
    pn_facts(digits).valid
}

/// What libphonenumber says about one string of E.164 digits: everything
/// this crate asks it, computed together once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PnFacts {
    /// `is_valid`: an assigned range of its country's plan, right length.
    valid: bool,
    /// Country calling code, when the digits parse.
    code: Option<u16>,
    /// ISO region, when the number's leading digits name one (an enum, so a
    /// memo hit copies no string).
    region: Option<phonenumber::country::Id>,
    /// libphonenumber's type, mapped (before this crate's NANP/satellite rules).
    pn_type: NumberType,
    /// Digits of the national number as libphonenumber reads it.
    national_len: usize,
}

fn compute_facts(digits: &str) -> PnFacts {
    let Ok(p) = phonenumber::parse(None, format!("+{digits}")) else {
        return PnFacts {
            valid: false,
            code: None,
            region: None,
            pn_type: NumberType::Unknown,
            national_len: 0,
        };
    };
    let pn_type = match p.number_type(&phonenumber::metadata::DATABASE) {
        phonenumber::Type::FixedLine | phonenumber::Type::FixedLineOrMobile => NumberType::Fixed,
        phonenumber::Type::Mobile => NumberType::Mobile,
        phonenumber::Type::TollFree => NumberType::TollFree,
        phonenumber::Type::PremiumRate => NumberType::Premium,
        _ => NumberType::Unknown,
    };
    PnFacts {
        valid: phonenumber::is_valid(&p),
        code: Some(p.code().value()),
        region: p.country().id(),
        pn_type,
        national_len: p.national().value().to_string().len(),
    }
}

/// Entries per generation of the per-thread memo (two generations: about
/// 2 × 64k numbers, ~15 MB, per thread that analyses numbers).
const MEMO_GENERATION: usize = 65_536;

#[derive(Default)]
struct FactsMemo {
    current: HashMap<Box<str>, PnFacts>,
    previous: HashMap<Box<str>, PnFacts>,
}

thread_local! {
    static FACTS: std::cell::RefCell<FactsMemo> = std::cell::RefCell::new(FactsMemo::default());
}

/// [`compute_facts`], memoised per whole number. libphonenumber spends most
/// of its time hashing its own regex patterns (its regex cache is keyed by
/// the pattern text), and a call asks about the same two numbers several
/// times (normalisation, caller-id validity, classification), while caller
/// ids and popular destinations repeat across calls. Keyed by the whole
/// number, not a prefix: a scan of 200,000 random numbers found answers
/// that change with the 9th and 10th digit (e.g. `+375 800 080 …`), so a
/// prefix key would misclassify some. The memo only saves work: the
/// answer is the same with or without it (tested).
fn pn_facts(digits: &str) -> PnFacts {
    FACTS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(f) = m.current.get(digits) {
            return *f;
        }
        let f = match m.previous.get(digits) {
            Some(f) => *f,
            None => compute_facts(digits),
        };
        if m.current.len() >= MEMO_GENERATION {
            m.previous = std::mem::take(&mut m.current);
        }
        m.current.insert(digits.into(), f);
        f
    })
}

/// Normalise a number (caller id or dialed number **after** prefix stripping)
/// to E.164 digits. See the crate docs for the accepted forms.
pub fn normalize(raw: &str) -> Result<E164, NumberError> {
    let s = strip_uri(raw);
    if s.is_empty() || ANON_TOKENS.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        return Err(NumberError::Missing);
    }
    let Ok((mut digits, plus, trunk0)) = scan(s) else {
        return Err(NumberError::Malformed(raw.to_string()));
    };
    if digits.is_empty() {
        return Err(NumberError::Malformed(raw.to_string()));
    }
    if let (true, Some(intl)) = (trunk0, strip_international(&digits, plus)) {
        // `+44 (0)20 …`: the bracketed 0 is the trunk prefix a national
        // caller dials. Drop it, unless only the kept 0 makes a valid
        // number (Italy writes its leading 0 as part of the number).
        let kept = intl.to_string();
        let dropped = s.replacen("(0)", "", 1);
        if let Ok((d2, p2, _)) = scan(&dropped) {
            if let Some(intl2) = strip_international(&d2, p2) {
                if pn_valid(intl2) || !pn_valid(&kept) {
                    digits = intl2.to_string();
                    return check_e164_shape(&digits).map(|_| E164(digits));
                }
            }
        }
    }
    let d = if let Some(intl) = strip_international(&digits, plus) {
        intl
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
    pn_valid(digits) && !pn_valid(&format!("1{digits}"))
}

/// Caller-id check: the status and the normalised number when it is
/// E.164-shaped (also for an `Invalid` CLI, so the record shows what was
/// sent; only a `Valid` one is trusted for its origin).
///
/// `Valid` needs libphonenumber's `is_valid` (the number is in an assigned
/// range of its country's plan, with the right length) **and** a region
/// (ISO country): a fake CLI whose country code exists (`+4470000000`) is
/// `Invalid`, and so is a non-geographic one (+870, +881): it proves no origin.
pub fn check_cli(cli: Option<&str>) -> (CliStatus, Option<E164>) {
    let Some(cli) = cli else {
        return (CliStatus::Missing, None);
    };
    match normalize(cli) {
        Ok(n) => {
            if country_code_of(&n).is_none() {
                (CliStatus::NotE164, None)
            } else if cli_valid(&n) {
                (CliStatus::Valid, Some(n))
            } else {
                (CliStatus::Invalid, Some(n))
            }
        }
        Err(NumberError::Missing) => (CliStatus::Missing, None),
        Err(NumberError::Malformed(_)) => (CliStatus::Malformed, None),
        Err(NumberError::NotE164(_)) => (CliStatus::NotE164, None),
    }
}

/// libphonenumber validity plus a region, and not an all-zero subscriber
/// part (`+33 1 00 00 00 00` fits the French fixed-line pattern but is no
/// subscriber: test and placeholder CLIs are written that way).
fn cli_valid(n: &E164) -> bool {
    let f = pn_facts(n.digits());
    if !f.valid || f.region.is_none() {
        return false;
    }
    // The national number is the tail of the E.164 digits.
    let d = n.digits().as_bytes();
    !(f.national_len >= 6 && d.len() >= 6 && d[d.len() - 6..].iter().all(|c| *c == b'0'))
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
    let f = pn_facts(d);
    let country_code = f.code.or_else(|| country_code_of(n));
    let country = match f.region {
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
    let number_type = override_type.unwrap_or(f.pn_type);
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
    /// The caller id normalised, when it is E.164-shaped (valid or not).
    pub cli_e164: Option<E164>,
    /// Caller analysis when the caller id is valid (only then is its
    /// country an origin anyone may price on).
    pub caller: Option<NumberInfo>,
    /// Callee analysis, or why the dialed number is unusable.
    pub callee: Result<NumberInfo, DialError>,
}

/// Strip the plan prefix, normalise both numbers and classify them.
pub fn analyze_call(cli: Option<&str>, dialed: &str) -> CallNumbers {
    let (plan, rest) = strip_plan_prefix(dialed);
    let (cli_status, cli_n) = check_cli(cli);
    let callee = if plan.is_none() && rest.starts_with('*') {
        Err(DialError::UnknownPlanPrefix(rest.to_string()))
    } else {
        normalize(rest).map_err(DialError::Number)
    };
    CallNumbers {
        plan,
        cli_status,
        caller: cli_n
            .as_ref()
            .filter(|_| cli_status == CliStatus::Valid)
            .map(classify),
        cli_e164: cli_n,
        callee: callee.map(|n| classify(&n)),
    }
}

/// Jurisdiction of a call, THE rule every stage uses: `None` unless the
/// callee is a US number (jurisdiction only selects US48 inter/intrastate
/// rates); otherwise [`NpaNxxTable::jurisdiction`] of the valid caller id
/// against `rated` (the LRN when one is known, else the dialed number).
pub fn call_jurisdiction(
    table: &NpaNxxTable,
    caller: Option<&NumberInfo>,
    callee: &NumberInfo,
    rated: &str,
) -> Option<Jurisdiction> {
    if callee.country.as_deref() != Some("US") {
        return None;
    }
    Some(table.jurisdiction(caller.map(|c| &c.e164), rated))
}

/// NANP area codes outside the 48 contiguous states (+ DC), by area: other
/// countries of the plan, Canada and the non-contiguous US. A deck must
/// price them by their own rows: a catch-all `1` row (usually priced as
/// the US) would let revenue-share fraud to, say, Jamaica (1876) be billed
/// at US rates. Source: NANPA area-code assignments (geographic NPAs).
pub const NANP_NON_US48: &[(&str, &str)] = &[
    // Canada
    ("204", "Canada"),
    ("226", "Canada"),
    ("236", "Canada"),
    ("249", "Canada"),
    ("250", "Canada"),
    ("263", "Canada"),
    ("289", "Canada"),
    ("306", "Canada"),
    ("343", "Canada"),
    ("354", "Canada"),
    ("365", "Canada"),
    ("367", "Canada"),
    ("368", "Canada"),
    ("382", "Canada"),
    ("403", "Canada"),
    ("416", "Canada"),
    ("418", "Canada"),
    ("428", "Canada"),
    ("431", "Canada"),
    ("437", "Canada"),
    ("438", "Canada"),
    ("450", "Canada"),
    ("468", "Canada"),
    ("474", "Canada"),
    ("506", "Canada"),
    ("514", "Canada"),
    ("519", "Canada"),
    ("548", "Canada"),
    ("579", "Canada"),
    ("581", "Canada"),
    ("584", "Canada"),
    ("587", "Canada"),
    ("604", "Canada"),
    ("613", "Canada"),
    ("639", "Canada"),
    ("647", "Canada"),
    ("672", "Canada"),
    ("683", "Canada"),
    ("705", "Canada"),
    ("709", "Canada"),
    ("742", "Canada"),
    ("753", "Canada"),
    ("778", "Canada"),
    ("780", "Canada"),
    ("782", "Canada"),
    ("807", "Canada"),
    ("819", "Canada"),
    ("825", "Canada"),
    ("867", "Canada"),
    ("873", "Canada"),
    ("879", "Canada"),
    ("902", "Canada"),
    ("905", "Canada"),
    // Other NANP countries
    ("242", "Bahamas"),
    ("246", "Barbados"),
    ("264", "Anguilla"),
    ("268", "Antigua and Barbuda"),
    ("284", "British Virgin Islands"),
    ("345", "Cayman Islands"),
    ("441", "Bermuda"),
    ("473", "Grenada"),
    ("649", "Turks and Caicos"),
    ("658", "Jamaica"),
    ("876", "Jamaica"),
    ("664", "Montserrat"),
    ("721", "Sint Maarten"),
    ("758", "Saint Lucia"),
    ("767", "Dominica"),
    ("784", "Saint Vincent and the Grenadines"),
    ("809", "Dominican Republic"),
    ("829", "Dominican Republic"),
    ("849", "Dominican Republic"),
    ("868", "Trinidad and Tobago"),
    ("869", "Saint Kitts and Nevis"),
    // Non-contiguous US and US territories
    ("907", "USA Alaska"),
    ("808", "USA Hawaii"),
    ("787", "Puerto Rico"),
    ("939", "Puerto Rico"),
    ("340", "US Virgin Islands"),
    ("671", "Guam"),
    ("670", "Northern Mariana Islands"),
    ("684", "American Samoa"),
];

/// The area of a NANP number (`1NPA…`) outside the contiguous US, if it is one.
pub fn nanp_non_us48_area(e164_digits: &str) -> Option<&'static str> {
    let npa = e164_digits.strip_prefix('1')?.get(..3)?;
    NANP_NON_US48
        .iter()
        .find(|(n, _)| *n == npa)
        .map(|(_, area)| *area)
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
/// `npanxx;state[;ocn]`, e.g. `212555;NY;9104`. `npanxx` is 6 digits
/// (`NXXNXX`, N = 2‥9), `state` two ASCII letters (upper-cased on load), `ocn`
/// optional, 0‥4 ASCII alphanumerics. Blank lines, lines starting with `#`
/// and a header line starting `npanxx;` are ignored; surrounding whitespace and `\r` are trimmed. A repeated NPA-NXX is
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
                Ok(None) => {}
                Ok(Some((k, e))) => {
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

/// One row; `Ok(None)` for a header line.
fn parse_npanxx_row(l: &str, line: usize) -> Result<Option<(u32, NpaNxxEntry)>, RowError> {
    let err = |field: usize, message: String| RowError {
        line,
        field,
        message,
    };
    let mut fields: Vec<&str> = l.split(';').map(str::trim).collect();
    // The OCN is optional (`npanxx;state` tables carry only the state).
    if fields.len() == 2 {
        fields.push("");
    }
    if fields.len() != 3 {
        return Err(err(
            0,
            format!("expected npanxx;state[;ocn], got {} fields", fields.len()),
        ));
    }
    if fields[0].eq_ignore_ascii_case("npanxx") {
        return Ok(None);
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
    if ocn.len() > 4 || !ocn.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(err(
            3,
            format!("ocn must be 1-4 alphanumerics, got {:?}", ocn),
        ));
    }
    let k: u32 = fields[0]
        .parse()
        .map_err(|_| err(1, "unparsable npanxx".into()))?;
    Ok(Some((
        k,
        NpaNxxEntry {
            state: state.to_ascii_uppercase(),
            ocn: ocn.to_ascii_uppercase(),
        },
    )))
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
        let text = "212555;NY;9104\n21255;NY;9104\n212556;N1;9104\n212557;NY;TOOLONG\n212558;NY;1;x\n\n112555;NY;1\n212555;NJ;1\n";
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

    #[test]
    fn every_written_form_of_a_number_normalises_alike() {
        for (raw, want) in [
            ("7135550100", "17135550100"),
            ("17135550100", "17135550100"),
            ("+1 713 555 0100", "17135550100"),
            ("(713) 555-0100", "17135550100"),
            ("713.555.0100", "17135550100"),
            ("3105550123", "13105550123"),
            ("011442079460123", "442079460123"),
            ("00442079460123", "442079460123"),
            ("+44 20 7946 0123", "442079460123"),
            ("+44 (0)20 7946 0123", "442079460123"),
            ("0044 (0)20 7946 0123", "442079460123"),
            ("011 44 (0)20 7946 0123", "442079460123"),
            ("sip:+442079460123@gw;user=phone", "442079460123"),
            ("sips:+442079460123@gw.example.net:5061", "442079460123"),
            ("tel:+44-20-7946-0123", "442079460123"),
            ("0033 1 23 45 67 89", "33123456789"),
            ("+1 212 555 0199", "12125550199"),
            ("011 49 30 123456", "4930123456"),
        ] {
            assert_eq!(normalize(raw).map(|n| n.0), Ok(want.to_string()), "{raw}");
        }
        // Italy keeps its leading 0: dropping it would give no valid number.
        assert_eq!(
            normalize("+39 (0)6 6982 1234").unwrap().digits(),
            "390669821234"
        );
    }

    #[test]
    fn parse_dialed_reads_the_plan_and_the_number() {
        let d = parse_dialed("*30+1 (713) 555-0100").unwrap();
        assert_eq!(d.plan, Some(PlanSelector::Pstn));
        assert_eq!(d.number.digits(), "17135550100");
        let d = parse_dialed("*4007sip:+442079460123@gw").unwrap();
        assert_eq!(d.plan, Some(PlanSelector::Trunk(7)));
        assert_eq!(d.number.digits(), "442079460123");
        assert_eq!(parse_dialed("7135550100").unwrap().plan, None);
        assert!(matches!(
            parse_dialed("*99442079460123"),
            Err(DialError::UnknownPlanPrefix(_))
        ));
        assert!(matches!(
            parse_dialed("*31abc"),
            Err(DialError::Number(NumberError::Malformed(_)))
        ));
        for (sel, name, trunk) in [
            (PlanSelector::Pstn, "pstn", None),
            (PlanSelector::Standard, "standard", None),
            (PlanSelector::Premium, "premium", None),
            (PlanSelector::Trunk(7), "trunk", Some("007")),
        ] {
            assert_eq!((sel.name(), sel.trunk_text().as_deref()), (name, trunk));
            assert_eq!(PlanSelector::from_record(Some(name), trunk), Some(sel));
        }
        assert_eq!(PlanSelector::from_record(Some("trunk"), Some("7")), None);
    }

    #[test]
    fn dial_key_is_the_same_for_every_form_of_one_number() {
        for raw in [
            "7135550100",
            "+1 713 555 0100",
            "*3017135550100",
            "*4007 713-555-0100",
            "0017135550100",
        ] {
            assert_eq!(dial_key(raw), "17135550100", "{raw}");
        }
        assert_eq!(
            dial_key("*99abc12"),
            "9912",
            "unusable: the digits as written"
        );
    }

    #[test]
    fn fake_cli_with_an_existing_country_code_is_invalid() {
        for fake in ["+4470000000", "+33100000000", "+447700900123"] {
            let (st, n) = check_cli(Some(fake));
            assert_eq!(st, CliStatus::Invalid, "{fake}");
            assert!(n.is_some(), "the normalised number is still recorded");
            let c = analyze_call(Some(fake), "442079460123");
            assert_eq!(c.caller, None, "an invalid CLI proves no origin: {fake}");
            assert_eq!(c.cli_status, CliStatus::Invalid);
        }
        for real in [
            "+442079460000",
            "+33123456789",
            "+12125550100",
            "+4930123456",
            "+262262123456",
        ] {
            assert_eq!(check_cli(Some(real)).0, CliStatus::Valid, "{real}");
        }
        // EU outermost regions are reported with their own ISO code.
        let re = analyze_call(Some("+262262123456"), "442079460123");
        assert_eq!(re.caller.unwrap().country.as_deref(), Some("RE"));
    }

    #[test]
    fn non_us48_nanp_areas_are_known() {
        assert_eq!(nanp_non_us48_area("18765551234"), Some("Jamaica"));
        assert_eq!(
            nanp_non_us48_area("18095551234"),
            Some("Dominican Republic")
        );
        assert_eq!(nanp_non_us48_area("19075551234"), Some("USA Alaska"));
        assert_eq!(nanp_non_us48_area("14035551234"), Some("Canada"));
        assert_eq!(nanp_non_us48_area("17135550100"), None);
        assert_eq!(nanp_non_us48_area("442079460123"), None);
    }

    #[test]
    fn jurisdiction_needs_a_us_callee_and_reads_a_two_field_table() {
        let t = NpaNxxTable::parse_strict("npanxx;state\n212555;NY\n713555;TX\n").unwrap();
        let ny = classify(&normalize("+12125550100").unwrap());
        let tx = classify(&normalize("7135550100").unwrap());
        assert_eq!(
            call_jurisdiction(&t, Some(&ny), &tx, "7135550100"),
            Some(Jurisdiction::Interstate)
        );
        assert_eq!(
            call_jurisdiction(&t, None, &tx, "7135550100"),
            Some(Jurisdiction::Indeterminate)
        );
        let uk = classify(&normalize("+442079460123").unwrap());
        assert_eq!(call_jurisdiction(&t, Some(&ny), &uk, "442079460123"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The memo changes no answer: a number asked first, again, and
        /// after the memo rolled over gets what libphonenumber says fresh.
        #[test]
        fn memoised_facts_equal_fresh_ones(
            cc in proptest::sample::select(vec!["1", "44", "49", "33", "39", "375", "86", "91", "234", "52", "7", "61", "880", "998"]),
            rest in "[0-9]{5,13}",
        ) {
            let d = format!("{cc}{rest}");
            let fresh = compute_facts(&d);
            proptest::prop_assert_eq!(&pn_facts(&d), &fresh);
            proptest::prop_assert_eq!(&pn_facts(&d), &fresh);
            FACTS.with(|m| {
                let mut m = m.borrow_mut();
                m.previous = std::mem::take(&mut m.current);
            });
            proptest::prop_assert_eq!(&pn_facts(&d), &fresh);
        }
    }

    #[test]
    fn all_zero_subscriber_cli_is_invalid_and_a_real_one_valid() {
        assert_eq!(check_cli(Some("+33100000000")).0, CliStatus::Invalid);
        assert_eq!(check_cli(Some("+33142685300")).0, CliStatus::Valid);
    }
}
