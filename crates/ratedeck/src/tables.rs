//! Reference tables used by rating, each parsed from small replaceable text
//! files so operations can update them without a rebuild.
//!
//! Owns [`NpaNxxStates`] (NANP NPA-NXX → US state, for US48 jurisdiction),
//! [`UkSurcharges`] (UK origin-based charging surcharge per minute by caller
//! country and UK number type) and [`EeaCountries`] (origins that get the EEA
//! tier of origin-based-rating breakouts).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::str::FromStr;

/// A bad line in a reference table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{table}:{line}: {message}")]
pub struct TableError {
    pub table: &'static str,
    pub line: usize,
    pub message: String,
}

fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// NPA-NXX (6 digits) → state/province code, e.g. `212555;NY`.
///
/// Stored as a direct-indexed table (10^6 × u16 = 2 MB) rather than a hash
/// map: the rater hits it twice per US48 call, and one array read is the
/// cheapest lookup there is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NpaNxxStates {
    /// 0 = unknown, else index + 1 into `states`.
    table: Vec<u16>,
    states: Vec<String>,
    len: usize,
}

impl Default for NpaNxxStates {
    fn default() -> Self {
        NpaNxxStates {
            table: vec![0; 1_000_000],
            states: Vec::new(),
            len: 0,
        }
    }
}

impl NpaNxxStates {
    /// Parse `npanxx;state` lines (`#` comments and blank lines skipped; a
    /// header line starting with `npanxx` is tolerated).
    pub fn parse(text: &str) -> Result<Self, TableError> {
        let mut t = NpaNxxStates::default();
        for (line, l) in data_lines(text) {
            let err = |m: String| TableError {
                table: "npanxx_states",
                line,
                message: m,
            };
            if l.get(..6).is_some_and(|h| h.eq_ignore_ascii_case("npanxx")) {
                continue;
            }
            let (k, st) = l
                .split_once(';')
                .ok_or_else(|| err("expected `npanxx;state`".into()))?;
            let (k, st) = (k.trim(), st.trim());
            if k.len() != 6 || !k.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err(format!("`{k}` is not a 6-digit NPA-NXX")));
            }
            if st.is_empty() {
                return Err(err("empty state".into()));
            }
            t.insert(k.parse::<u32>().expect("digits"), st);
        }
        Ok(t)
    }

    /// Add or replace one NPA-NXX (`npanxx` < 1,000,000).
    pub fn insert(&mut self, npanxx: u32, state: &str) {
        let st = state.to_ascii_uppercase();
        let idx = match self.states.iter().position(|s| *s == st) {
            Some(i) => i,
            None => {
                self.states.push(st);
                self.states.len() - 1
            }
        };
        let slot = &mut self.table[npanxx as usize % 1_000_000];
        if *slot == 0 {
            self.len += 1;
        }
        *slot = u16::try_from(idx + 1).expect("fewer than 65535 states");
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// State of an E.164 NANP number (`1NPANXX...`, `+` optional). `None`
    /// when the number is not a well-formed NANP number or the NPA-NXX is
    /// unknown.
    pub fn state_of(&self, e164: &str) -> Option<&str> {
        let npanxx = nanp_npanxx(e164)?;
        match self.table[npanxx as usize] {
            0 => None,
            i => Some(self.states[usize::from(i) - 1].as_str()),
        }
    }
}

/// NPA-NXX of a NANP number in E.164 (`1` + 10 digits, NPA and NXX starting
/// 2–9). Anything else is not a valid NANP number.
pub fn nanp_npanxx(e164: &str) -> Option<u32> {
    let d = crate::prefix::normalize_digits(e164)?.as_bytes();
    if d.len() != 11 || d[0] != b'1' || d[1] < b'2' || d[4] < b'2' {
        return None;
    }
    let mut v = 0u32;
    for &c in &d[1..7] {
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// UK number type for origin-based charging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UkNumberType {
    Fixed,
    Mobile,
}

/// `caller_country;uk_number_type;surcharge_per_min`, e.g. `US;mobile;0.12`.
///
/// Country codes are ISO alpha-2. `XX` is the unknown-origin row used for
/// missing, malformed or invalid caller ids. `*` is an optional default for
/// valid countries not listed; without it an unlisted country falls back to
/// the `XX` row (the conservative choice: carriers surcharge unknown origins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UkSurcharges {
    map: HashMap<(String, UkNumberType), Decimal>,
}

impl UkSurcharges {
    pub fn parse(text: &str) -> Result<Self, TableError> {
        let mut map = HashMap::new();
        for (line, l) in data_lines(text) {
            let err = |m: String| TableError {
                table: "uk_surcharges",
                line,
                message: m,
            };
            if l.get(..14)
                .is_some_and(|h| h.eq_ignore_ascii_case("caller_country"))
            {
                continue;
            }
            let f: Vec<&str> = l.split(';').map(str::trim).collect();
            if f.len() != 3 {
                return Err(err(
                    "expected `caller_country;uk_number_type;surcharge_per_min`".into(),
                ));
            }
            let c = f[0].to_ascii_uppercase();
            if !(c == "*" || (c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))) {
                return Err(err(format!("`{}` is not an ISO alpha-2 country", f[0])));
            }
            let t = match f[1].to_ascii_lowercase().as_str() {
                "fixed" => UkNumberType::Fixed,
                "mobile" => UkNumberType::Mobile,
                _ => return Err(err(format!("`{}` is not fixed|mobile", f[1]))),
            };
            let v =
                Decimal::from_str(f[2]).map_err(|_| err(format!("`{}` is not a decimal", f[2])))?;
            if v.is_sign_negative() && !v.is_zero() {
                return Err(err("negative surcharge".into()));
            }
            map.insert((c, t), v);
        }
        Ok(UkSurcharges { map })
    }

    /// Surcharge per minute for a caller country (`None` = invalid/unknown
    /// caller id → the `XX` row). Missing entries resolve to 0.
    pub fn per_min(&self, country: Option<&str>, t: UkNumberType) -> Decimal {
        let get = |c: &str| self.map.get(&(c.to_string(), t)).copied();
        if let Some(c) = country {
            let c = c.to_ascii_uppercase();
            if let Some(v) = get(&c).or_else(|| get("*")) {
                return v;
            }
        }
        get("XX").unwrap_or(Decimal::ZERO)
    }
}

/// Countries whose callers get the EEA tier of OBR breakouts.
///
/// A 26×26 bitmap of ISO alpha-2 codes: membership is checked on every call,
/// and this needs neither hashing nor allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EeaCountries {
    bits: Vec<u64>,
}

fn alpha2_index(c: &str) -> Option<usize> {
    match c.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(
            usize::from(a.to_ascii_uppercase() - b'A') * 26
                + usize::from(b.to_ascii_uppercase() - b'A'),
        ),
        _ => None,
    }
}

/// EU-27 plus Iceland, Liechtenstein and Norway (the UK left in 2020).
pub const EEA_DEFAULT: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

impl Default for EeaCountries {
    fn default() -> Self {
        let mut e = EeaCountries::empty();
        for c in EEA_DEFAULT {
            e.insert(c);
        }
        e
    }
}

impl EeaCountries {
    /// Parse a list of ISO alpha-2 codes separated by newlines, `,` or `;`.
    pub fn empty() -> Self {
        EeaCountries { bits: vec![0; 11] }
    }

    /// Add a country; returns false if `c` is not an alpha-2 code.
    pub fn insert(&mut self, c: &str) -> bool {
        match alpha2_index(c) {
            Some(i) => {
                self.bits[i / 64] |= 1 << (i % 64);
                true
            }
            None => false,
        }
    }

    pub fn parse(text: &str) -> Result<Self, TableError> {
        let mut set = EeaCountries::empty();
        for (line, l) in data_lines(text) {
            for c in l.split([',', ';']).map(str::trim).filter(|c| !c.is_empty()) {
                if !set.insert(c) {
                    return Err(TableError {
                        table: "eea_countries",
                        line,
                        message: format!("`{c}` is not an ISO alpha-2 country"),
                    });
                }
            }
        }
        Ok(set)
    }

    pub fn contains(&self, country: &str) -> bool {
        alpha2_index(country).is_some_and(|i| self.bits[i / 64] & (1 << (i % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn npanxx_parse_and_lookup() {
        let t = NpaNxxStates::parse("# c\nnpanxx;state\n212555;NY\n310555;ca\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.state_of("12125551234"), Some("NY"));
        assert_eq!(t.state_of("+13105550000"), Some("CA"));
        assert_eq!(t.state_of("13105560000"), None, "unknown NPA-NXX");
        assert_eq!(t.state_of("2125551234"), None, "not E.164");
        assert_eq!(t.state_of("11125551234"), None, "NPA starting 1 invalid");
        let e = NpaNxxStates::parse("21255;NY\n").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn uk_surcharge_lookup_and_fallbacks() {
        let t = UkSurcharges::parse(
            "caller_country;uk_number_type;surcharge_per_min\nGB;fixed;0\nGB;mobile;0\nUS;mobile;0.12\nUS;fixed;0.05\nXX;fixed;0.20\nXX;mobile;0.30\n",
        )
        .unwrap();
        assert_eq!(t.per_min(Some("US"), UkNumberType::Mobile), dec!(0.12));
        assert_eq!(t.per_min(Some("gb"), UkNumberType::Mobile), dec!(0));
        assert_eq!(t.per_min(None, UkNumberType::Fixed), dec!(0.20));
        assert_eq!(t.per_min(Some("BR"), UkNumberType::Mobile), dec!(0.30));
        assert!(UkSurcharges::parse("US;satellite;0.1\n").is_err());
        assert!(UkSurcharges::parse("USA;fixed;0.1\n").is_err());
    }

    #[test]
    fn eea_list() {
        let d = EeaCountries::default();
        assert!(d.contains("DE") && d.contains("no") && !d.contains("GB"));
        let p = EeaCountries::parse("FR, DE\nIT;ES\n").unwrap();
        assert!(p.contains("IT") && !p.contains("AT"));
        assert!(EeaCountries::parse("FRA\n").is_err());
    }
}
