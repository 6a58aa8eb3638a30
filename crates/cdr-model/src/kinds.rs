//! Classifications written on the wire as text and shared by every stage:
//! defined once here so producers and readers cannot drift apart.
//!
//! The Avro records in [`crate::call`] keep these as strings (the wire format
//! does not change); every stage produces them with `as_str` and reads them
//! with `parse`, never with string literals of its own. Serde uses the same
//! snake_case names.

use serde::{Deserialize, Serialize};

/// Defines a text-backed enum with `as_str`, `parse`, `ALL` and `Display`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire text (snake_case).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The value written as `s` on the wire (exact, case-sensitive).
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Outcome of rating (`rating.status`).
    pub enum RatingStatus {
        /// Priced from a deck row.
        Rated => "rated",
        /// Kept, not dropped, with a reason, so it can be fixed and re-rated.
        Unrated => "unrated",
        /// An inbound call: not a termination, left for DID rating (amount 0,
        /// no dip fee, not counted by the wholesale conformance rule).
        Inbound => "inbound",
        /// An attempt the account's settings do not allow (a UK number with
        /// an origin surcharge the account has not enabled, seed 000): kept
        /// with the reason, amount 0, never billed.
        Blocked => "blocked",
    }
}

wire_enum! {
    /// Where the LRN decision of a call came from (`enrichment.lrn_source`).
    pub enum LrnSource {
        /// Found in the LRN cache: no fee.
        Cache => "cache",
        /// Looked up in the LRN database: the dip fee is owed.
        Dip => "dip",
        /// The source failed until the deadline: rated on the dialed number, no fee.
        Unavailable => "unavailable",
        /// Not a dippable number (non-NANP, toll-free, unusable, inbound).
        NotApplicable => "not_applicable",
    }
}

wire_enum! {
    /// US regulatory jurisdiction of a call to a US number
    /// (`enrichment.jurisdiction`); selects the US48 interstate or intrastate rate.
    pub enum Jurisdiction {
        /// Caller and rated number in different US states.
        Interstate => "interstate",
        /// Caller and rated number in the same state.
        Intrastate => "intrastate",
        /// Cannot be determined (caller missing, invalid or not NANP, an
        /// NPA-NXX unknown, a non-US side): billed at the higher of the two rates.
        Indeterminate => "indeterminate",
    }
}

wire_enum! {
    /// Type of a number (`enrichment.callee_number_type`).
    pub enum NumberType {
        /// Geographic / fixed line (also NANP numbers, which libphonenumber
        /// cannot tell apart from mobiles).
        Fixed => "fixed",
        /// Mobile.
        Mobile => "mobile",
        /// Freephone.
        TollFree => "toll_free",
        /// Premium rate.
        Premium => "premium",
        /// Satellite (Inmarsat +870, GMSS +881, Thuraya +88216).
        Satellite => "satellite",
        /// Anything else (VoIP, personal, shared cost, unassigned ranges).
        Unknown => "unknown",
    }
}

/// The wire text of [`crate::event::Direction`] (`AssembledCall::direction`),
/// so stages compare enums, not literals.
impl crate::event::Direction {
    /// `outbound` | `inbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            crate::event::Direction::Outbound => "outbound",
            crate::event::Direction::Inbound => "inbound",
        }
    }

    /// The direction written as `s` (exact).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "outbound" => Some(crate::event::Direction::Outbound),
            "inbound" => Some(crate::event::Direction::Inbound),
            _ => None,
        }
    }

    /// `true` when the recorded direction is `inbound`.
    pub fn is_inbound_text(s: &str) -> bool {
        Self::parse(s) == Some(crate::event::Direction::Inbound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Copy + PartialEq + std::fmt::Debug + Serialize + for<'de> Deserialize<'de>,
    {
        for &v in all {
            let s = as_str(v);
            assert_eq!(parse(s), Some(v), "{s}");
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<T>(&format!("\"{s}\"")).unwrap(), v);
        }
        assert_eq!(parse("nonsense"), None);
    }

    #[test]
    fn every_kind_round_trips_through_its_wire_text() {
        round_trip(RatingStatus::ALL, RatingStatus::as_str, RatingStatus::parse);
        round_trip(LrnSource::ALL, LrnSource::as_str, LrnSource::parse);
        round_trip(Jurisdiction::ALL, Jurisdiction::as_str, Jurisdiction::parse);
        round_trip(NumberType::ALL, NumberType::as_str, NumberType::parse);
        assert_eq!(RatingStatus::Inbound.to_string(), "inbound");
        assert_eq!(LrnSource::NotApplicable.as_str(), "not_applicable");
        assert_eq!(NumberType::TollFree.as_str(), "toll_free");
        use crate::event::Direction;
        for d in [Direction::Outbound, Direction::Inbound] {
            assert_eq!(Direction::parse(d.as_str()), Some(d));
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.as_str())
            );
        }
        assert!(Direction::is_inbound_text("inbound"));
        assert!(!Direction::is_inbound_text("outbound"));
    }
}
