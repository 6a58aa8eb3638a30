//! `ratedeck`: rate-deck import, versioned longest-prefix deck store and
//! pure per-call rating for the CDR rating pipeline.
//!
//! Module map (each module's own doc says what it owns):
//! - [`deck`]: the four deck file formats, row validation, [`deck::parse_deck`].
//! - [`store`]: [`store::DeckSet`] (versions by plan/US48/trunk, effective
//!   dates, fast longest-prefix match).
//! - [`history`]: how versions follow each other (row-level effect,
//!   replace/overlay, the notice rule for increases).
//! - [`diff`]: what a new deck changes for the customer.
//! - [`rate`]: [`rate::rate`], billing increments, invoice rounding.
//! - [`tables`]: UK surcharge table, EEA country list (with the EU's
//!   outermost regions).
//!
//! Numbers are read through the `numbering` crate (re-exported), the one
//! dial-plan module of the pipeline; the jurisdiction a US48 call is priced
//! by is the one enrichment decided with its NPA-NXX table.
//! - [`prefix`]: the compact digit-prefix type shared by all of the above.
//!
//! Money is `rust_decimal::Decimal` everywhere (never floats); per-call
//! amounts stay unrounded and only [`rate::invoice_total`] rounds.

pub mod conformance;
pub mod deck;
pub mod diff;
pub mod history;
pub mod prefix;
pub mod rate;
pub mod store;
pub mod tables;

pub use deck::{
    count_lines, parse_deck, parse_deck_reader, parse_deck_reader_sized, DeckError, DeckKind,
    DeckRow, ImportMode, Increment, ObrTier, ParsedDeck, Plan, RowError,
};
pub use diff::{default_notice, diff, diff_at, DeckDiff, RateChange};
pub use history::{DeckMode, NoticePolicy, RowOrigin, ShortNotice, ShortNoticeAction};
pub use numbering;
pub use prefix::Prefix;
pub use rate::{
    billed_seconds, invoice_total, rate, Account, AccountKind, AccountMap, Currency, FastHash,
    Flag, Flags, Jurisdiction, NumberType, RatedCall, RatingContext, RatingInput, RatingStatus,
    Unpriced, UnpricedReason, NANP_CATCH_ALL_REASON,
};
pub use store::{
    DeckMatch, DeckSet, DeckTarget, DeckVersion, LoadReport, NanpCatchAll, Scope, VersionSpec,
};
pub use tables::{EeaCountries, TableError, UkNumberType, UkSurcharges};
