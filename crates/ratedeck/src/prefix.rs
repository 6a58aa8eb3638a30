//! Digit-string encoding for dial prefixes and numbers.
//!
//! Owns [`Prefix`], the compact (8-byte, allocation-free) representation of a
//! dial prefix that the deck rows, the prefix index and the rating output
//! share. A prefix of `L` digits with numeric value `v` is stored as
//! `REPUNIT[L] + v`, where `REPUNIT[L] = (10^L - 1) / 9`. That mapping is a
//! bijection between digit strings (leading zeros included) and integers, so
//! `"1"` and `"01"` never collide and the key can be hashed directly by the
//! index without a length side-channel.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Longest prefix we accept. E.164 numbers are at most 15 digits; 18 leaves
/// headroom for carrier-internal routing prefixes while still fitting in a u64.
pub const MAX_PREFIX_LEN: usize = 18;

/// `REPUNIT[L] = 111...1` (L ones) = sum of 10^k for k < L.
pub(crate) const REPUNIT: [u64; MAX_PREFIX_LEN + 2] = {
    let mut t = [0u64; MAX_PREFIX_LEN + 2];
    let mut i = 1;
    while i < MAX_PREFIX_LEN + 2 {
        t[i] = t[i - 1] * 10 + 1;
        i += 1;
    }
    t
};

pub(crate) const POW10: [u64; MAX_PREFIX_LEN + 1] = {
    let mut t = [1u64; MAX_PREFIX_LEN + 1];
    let mut i = 1;
    while i <= MAX_PREFIX_LEN {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// A non-empty dial prefix of at most [`MAX_PREFIX_LEN`] ASCII digits.
///
/// Serialises as its digit string so CDR consumers never see the encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(u64);

/// Why a string is not a valid prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    Empty,
    NonDigit,
    TooLong,
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::Empty => write!(f, "empty prefix"),
            PrefixError::NonDigit => write!(f, "prefix must contain only digits 0-9"),
            PrefixError::TooLong => write!(f, "prefix longer than {MAX_PREFIX_LEN} digits"),
        }
    }
}

impl Prefix {
    /// Parse a digit string. A single leading `+` is tolerated because decks
    /// exported from some switches write E.164 with it.
    pub fn parse(s: &str) -> Result<Prefix, PrefixError> {
        let b = s.as_bytes();
        let b = b.strip_prefix(b"+").unwrap_or(b);
        if b.is_empty() {
            return Err(PrefixError::Empty);
        }
        if b.len() > MAX_PREFIX_LEN {
            return Err(PrefixError::TooLong);
        }
        let mut v = 0u64;
        for &c in b {
            if !c.is_ascii_digit() {
                return Err(PrefixError::NonDigit);
            }
            v = v * 10 + u64::from(c - b'0');
        }
        Ok(Prefix(REPUNIT[b.len()] + v))
    }

    /// Build from a digit count and numeric value (`from_parts(3, 44)` is
    /// `"044"`). `None` if the length is out of range or the value too big.
    pub fn from_parts(len: usize, value: u64) -> Option<Prefix> {
        ((1..=MAX_PREFIX_LEN).contains(&len) && value < POW10[len])
            .then(|| Prefix(REPUNIT[len] + value))
    }

    /// The hashable key used by the index.
    #[inline]
    pub(crate) fn key(self) -> u64 {
        self.0
    }

    /// Number of digits.
    pub fn len(self) -> usize {
        // REPUNIT is increasing; at most 18 comparisons and only on the
        // cold (formatting) path.
        let mut l = 1;
        while l < MAX_PREFIX_LEN && self.0 >= REPUNIT[l + 1] {
            l += 1;
        }
        l
    }

    /// Always false: a prefix has at least one digit. Present for clippy's
    /// `len_without_is_empty` and API symmetry.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Numeric value of the digits (leading zeros lost; use `len` too).
    pub fn value(self) -> u64 {
        self.0 - REPUNIT[self.len()]
    }

    /// The first `len` digits (`None` unless `1 <= len <= self.len()`):
    /// the shorter prefixes a longer one shadows.
    pub fn truncate(self, len: usize) -> Option<Prefix> {
        let own = self.len();
        if len == 0 || len > own {
            return None;
        }
        Prefix::from_parts(len, self.value() / POW10[own - len])
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.len();
        write!(f, "{:0width$}", self.value(), width = len)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({self})")
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Prefix::parse(s)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Prefix::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Normalise a phone number to bare digits: strips one leading `+`, rejects
/// anything else that is not a digit. Returns `None` for empty input.
pub fn normalize_digits(s: &str) -> Option<&str> {
    let s = s.trim_ascii();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        None
    } else {
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_leading_zeros() {
        for s in ["0", "00", "1", "01", "4930", "882160", "999999999999999999"] {
            let p = Prefix::parse(s).unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(p.len(), s.len());
        }
        assert_ne!(Prefix::parse("1").unwrap(), Prefix::parse("01").unwrap());
        assert_eq!(Prefix::from_parts(3, 44).unwrap().to_string(), "044");
        assert_eq!(Prefix::from_parts(2, 100), None);
    }

    #[test]
    fn rejects_bad() {
        assert_eq!(Prefix::parse(""), Err(PrefixError::Empty));
        assert_eq!(Prefix::parse("12a"), Err(PrefixError::NonDigit));
        assert_eq!(
            Prefix::parse("1234567890123456789"),
            Err(PrefixError::TooLong)
        );
        assert_eq!(Prefix::parse("+44").unwrap().to_string(), "44");
    }
}
