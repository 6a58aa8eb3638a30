//! Reference tables used by rating, each parsed from small replaceable text
//! files so operations can update them without a rebuild.
//!
//! Owns [`UkSurcharges`] (UK origin-based charging surcharge per minute by caller
//! country and UK number type) and [`EeaCountries`] (origins that get the EEA
//! tier of origin-based-rating breakouts). The NPA-NXX table and the US
//! jurisdiction rule are not here: they belong to the `numbering` crate and
//! enrichment decides the jurisdiction a call is priced by.

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

/// Parts of EU member states that are inside the EU (so inside the EEA)
/// but carry an ISO code of their own, which is what libphonenumber reports
/// for their numbers: the outermost regions Guadeloupe, French Guiana,
/// Martinique, Réunion, Mayotte and Saint-Martin (France), and the Åland
/// Islands (Finland). (Azores, Madeira, the Canaries, Ceuta and Melilla
/// report PT / ES already.) Overseas countries and territories outside the
/// EU (Saint-Barthélemy, New Caledonia, Greenland, the Faroes, …) are not
/// listed. Each follows its member state: listing `FR` in an EEA file
/// includes them.
pub const EU_TERRITORIES: [(&str, &str); 7] = [
    ("GP", "FR"),
    ("GF", "FR"),
    ("MQ", "FR"),
    ("RE", "FR"),
    ("YT", "FR"),
    ("MF", "FR"),
    ("AX", "FI"),
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

    /// Add a country, and the EU territories of a member state
    /// ([`EU_TERRITORIES`]); returns false if `c` is not an alpha-2 code.
    pub fn insert(&mut self, c: &str) -> bool {
        let Some(i) = alpha2_index(c) else {
            return false;
        };
        self.bits[i / 64] |= 1 << (i % 64);
        for (t, state) in EU_TERRITORIES {
            if state.eq_ignore_ascii_case(c) {
                let j = alpha2_index(t).expect("alpha-2");
                self.bits[j / 64] |= 1 << (j % 64);
            }
        }
        true
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

    #[test]
    fn eu_outermost_regions_and_aland_are_eea() {
        let d = EeaCountries::default();
        for t in ["RE", "GP", "MQ", "GF", "YT", "MF", "AX"] {
            assert!(d.contains(t), "{t}");
        }
        // Overseas territories outside the EU stay rest of world.
        for t in ["BL", "NC", "PF", "GL", "FO", "PM", "GB"] {
            assert!(!d.contains(t), "{t}");
        }
        // A custom list naming the member state brings its territories.
        let p = EeaCountries::parse("FR\n").unwrap();
        assert!(p.contains("RE") && p.contains("GF") && !p.contains("AX"));
    }
}
