//! `ratedeck`: rate-deck import, versioned longest-prefix deck store and
//! pure per-call rating for the CDR rating pipeline.
//!
//! Module map (each module's own doc says what it owns):
//! - [`deck`]: the four deck file formats, row validation, [`deck::parse_deck`].
//! - [`store`]: [`store::DeckSet`] (versions by plan/US48/trunk, effective
//!   dates, fast longest-prefix match) and [`store::diff`].
//! - [`rate`]: [`rate::rate`], billing increments, invoice rounding.
//! - [`tables`]: NPA-NXX states, UK surcharge table, EEA country list.
//! - [`prefix`]: the compact digit-prefix type shared by all of the above.
//!
//! Money is `rust_decimal::Decimal` everywhere (never floats); per-call
//! amounts stay unrounded and only [`rate::invoice_total`] rounds.

pub mod conformance;
pub mod deck;
pub mod prefix;
pub mod rate;
pub mod store;
pub mod tables;

pub use deck::{
    parse_deck, parse_deck_reader, DeckError, DeckKind, DeckRow, ImportMode, Increment, ObrTier,
    ParsedDeck, Plan, RowError,
};
pub use prefix::Prefix;
pub use rate::{
    billed_seconds, invoice_total, rate, Account, AccountKind, AccountMap, Currency, FastHash,
    Flag, Flags, Jurisdiction, NumberType, RatedCall, RatingContext, RatingInput, RatingStatus,
};
pub use store::{
    default_notice, diff, DeckDiff, DeckMatch, DeckSet, DeckTarget, DeckVersion, LoadReport,
    RateChange, Scope,
};
pub use tables::{EeaCountries, NpaNxxStates, TableError, UkNumberType, UkSurcharges};
