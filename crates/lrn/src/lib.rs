//! `lrn` — LRN (local routing number) resolution for the CDR pipeline.
//!
//! Calls to ported US numbers are rated on the LRN, not the dialed number, and
//! a call whose number was not in the LRN cache is charged an LRN-DB dip fee
//! (default `$0.0003`). This crate owns:
//!
//! * [`numbering`] — re-export of the `numbering` crate, the pipeline's one
//!   dial-plan and numbering module (plan prefixes, E.164 normalisation,
//!   caller-id validity, country/type, NPA-NXX table, jurisdiction);
//! * [`source`] — where LRN answers come from: [`PortedDb`] (embedded,
//!   reloadable) and [`HttpDip`] (external LNP service);
//! * [`cache`] — [`LrnCache`]: bounded TTL cache in front of the source
//!   (coalescing, deadline) and the replayable [`EnrichmentRecord`];
//! * [`ledger`] — [`DipLedger`]: which call pays the dip fee, in event time,
//!   as a pure function of the calls (the fee the enricher records).
//!
//! Typical use in the enricher:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use lrn::{analyze_call, should_dip, LrnCache, LrnCacheConfig, PortedDb};
//! let (db, report) = PortedDb::open("/data/ported.txt")?;
//! assert_eq!(report.bad_rows, 0);
//! let cache = LrnCache::new(Arc::new(db), LrnCacheConfig::default());
//! let call = analyze_call(Some("+12125550123"), "*3013105550003");
//! if let Ok(callee) = &call.callee {
//!     let rec = cache.enrich(callee.e164.digits(), None).await; // store `rec` with the CDR
//!     println!("rate on {} fee {}", rec.rated_number(callee.e164.digits()), rec.fee);
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod cache;
pub mod ledger;
pub mod source;

pub use ::numbering;

pub use cache::{
    should_dip, CacheStats, CachedLrn, EnrichmentRecord, LrnCache, LrnCacheConfig, LrnOutcome,
    LrnSourceKind, DEFAULT_DIP_FEE,
};
pub use ledger::{Demoted, DipLedger, HolderCopy, LedgerChange, LedgerRecord, Ruling};
pub use numbering::{
    analyze_call, call_jurisdiction, check_cli, classify, dial_key, normalize, parse_dialed,
    strip_plan_prefix, CallNumbers, CliStatus, DialError, Dialed, Jurisdiction, NpaNxxEntry,
    NpaNxxError, NpaNxxTable, NumberError, NumberInfo, NumberType, PlanSelector, RowError, E164,
};
pub use source::{
    format_tn10, parse_tn10, AnySource, HttpDip, HttpDipConfig, LoadReport, LrnAnswer, LrnError,
    LrnSource, PortedDb, PortedDbError,
};
