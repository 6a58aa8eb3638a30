//! Records on the internal topics. Each stage adds its own section and keeps
//! the previous ones verbatim, so a rated CDR carries every input field.
//! Money travels as decimal strings (exact, parsed with rust_decimal by the
//! stages that do arithmetic); media statistics are measurements, not money,
//! and stay floating point.

use std::collections::HashMap;

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Answered,
    Busy,
    NoAnswer,
    Failed,
    Cancelled,
    /// No hangup arrived within the maximum call length.
    Stale,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Stale => "stale",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "answered" => Self::Answered,
            "busy" => Self::Busy,
            "no_answer" => Self::NoAnswer,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "stale" => Self::Stale,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct Media {
    pub rtp_rx_packets: Option<i64>,
    pub rtp_rx_before_answer: Option<i64>,
    pub silence_ratio: Option<f64>,
    pub mos: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
}

/// One call assembled from its signalling events (topic `calls.assembled`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct AssembledCall {
    /// Deterministic id: see [`crate::ids::cdr_id`].
    pub cdr_id: String,
    pub call_id: String,
    pub switch_id: String,
    pub account_id: String,
    pub direction: String,
    pub cli: Option<String>,
    pub dialed: String,
    pub trunk_id: Option<String>,
    pub setup_ts_ms: i64,
    pub progress_ts_ms: Option<i64>,
    pub progress_code: Option<i32>,
    pub answer_ts_ms: Option<i64>,
    pub end_ts_ms: Option<i64>,
    pub final_sip_code: Option<i32>,
    /// One of [`Disposition::as_str`].
    pub disposition: String,
    /// Answer to hangup, milliseconds; 0 unless answered.
    pub duration_ms: i64,
    /// Whole seconds billed before increments: duration rounded up.
    pub billable_seconds: i64,
    pub pdd_ms: Option<i64>,
    pub headers: HashMap<String, String>,
    pub source_ip: Option<String>,
    pub behind_nat: bool,
    pub codec: Option<String>,
    pub media: Option<Media>,
    /// Assembly flags, e.g. `stale`, `missing_setup`, `duplicate_milestone`.
    pub flags: Vec<String>,
    /// Distinct events folded into this call; doubles as the row version so a
    /// more complete copy of the same call replaces a less complete one.
    pub event_count: i32,
    pub assembled_at_ms: i64,
}

/// Bits of a row version that [`row_version`] uses; the bits above hold the
/// re-rating generation.
pub const ROW_VERSION_EVENT_BITS: u32 = 32;

/// The version of a call's next re-rating: the same pipeline part, the
/// generation above it one higher.
pub fn rerated_version(version: u64) -> u64 {
    let low = version & ((1u64 << ROW_VERSION_EVENT_BITS) - 1);
    let generation = version >> ROW_VERSION_EVENT_BITS;
    ((generation + 1) << ROW_VERSION_EVENT_BITS) | low
}

/// The re-rating generation of a row version (0: as the pipeline rated it).
pub fn rerate_generation(version: u64) -> u64 {
    version >> ROW_VERSION_EVENT_BITS
}

/// The row version of a CDR (ClickHouse's `ReplacingMergeTree` keeps the
/// highest per `cdr_id`): twice the distinct events folded in (a more
/// complete copy of a call replaces a less complete one), plus one unless
/// the call paid its LRN dip. The enricher may emit a call as its period's
/// dip payer and later, when a late call set up before it takes the period
/// over, again as a cache hit: the hit must win, and a call that was a hit
/// from the start must carry the same version, so the version is a
/// function of the call's final content, not of how often it was emitted.
///
/// The version fits in the low [`ROW_VERSION_EVENT_BITS`] bits; the bits
/// above count re-ratings (`cdrctl rerate`), so a re-rated row outranks
/// every pipeline copy of its call.
pub fn row_version(event_count: i32, lrn_source: &str) -> u64 {
    let events = u64::try_from(event_count).unwrap_or(0);
    events * 2 + u64::from(lrn_source != crate::kinds::LrnSource::Dip.as_str())
}

/// Enrichment section added by the enricher.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct Enrichment {
    pub cli_e164: Option<String>,
    pub cli_valid: bool,
    pub dialed_e164: String,
    /// `pstn` | `standard` | `premium` | `trunk` when the dialed digits carried a plan prefix.
    pub plan_selector: Option<String>,
    pub trunk_selector: Option<String>,
    pub lrn: Option<String>,
    pub ported: bool,
    /// `cache` | `dip` | `unavailable` | `not_applicable`.
    pub lrn_source: String,
    /// Decimal string, USD.
    pub lrn_fee: String,
    pub caller_country: Option<String>,
    pub callee_country: Option<String>,
    pub callee_number_type: Option<String>,
    /// `intrastate` | `interstate` | `indeterminate` for US48 calls.
    pub jurisdiction: Option<String>,
    pub flags: Vec<String>,
}

/// Topic `calls.enriched`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct EnrichedCall {
    pub call: AssembledCall,
    pub enrichment: Enrichment,
}

/// Rating section added by the rater. Amounts are unrounded decimal strings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct Rating {
    /// `rated` | `unrated`.
    pub status: String,
    pub unrated_reason: Option<String>,
    pub plan: Option<String>,
    pub deck_id: Option<String>,
    pub deck_version: i64,
    pub matched_prefix: Option<String>,
    /// E.164 digits actually matched (the LRN when the number is ported).
    pub rated_number: Option<String>,
    /// When the matched row took effect (its own date, else its version's
    /// start), epoch ms: with deck id, version and prefix, the exact row.
    pub row_effective_from_ms: Option<i64>,
    /// OBR tier of the matched row (`eea` | `rest_of_world`), none when the
    /// row applies to every origin.
    pub obr_tier: Option<String>,
    /// The US jurisdiction the rate was chosen by (US48 rows only).
    pub jurisdiction_applied: Option<String>,
    /// The trunk whose per-trunk deck priced the call (`*4TTT`).
    pub rated_trunk: Option<i32>,
    pub destination: Option<String>,
    pub rate_per_min: String,
    pub billed_seconds: i64,
    pub increment: Option<String>,
    pub connection_fee: String,
    pub surcharge: String,
    /// UK origin surcharge per minute applied (`0` when none).
    pub surcharge_per_min: String,
    pub short_duration_surcharge: String,
    pub lrn_fee: String,
    pub amount: String,
    pub currency: String,
    pub flags: Vec<String>,
    pub max_rate: Option<String>,
    pub max_route: Option<i32>,
}

/// Detection section added by the detector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct Detection {
    pub fas_score: f64,
    pub fas_signals: Vec<String>,
    pub evaluated: bool,
}

/// Topics `cdrs.rated` (detection absent) and `cdrs.scored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct RatedCdr {
    pub call: AssembledCall,
    pub enrichment: Enrichment,
    pub rating: Rating,
    pub detection: Option<Detection>,
}

/// One call's contribution to the KPIs (topic `kpi.calls`, key `cdr_id`).
///
/// The KPI service is stateless: every scored CDR becomes one record whose
/// id is the call's own, so a redelivered or replayed CDR rewrites the same
/// row instead of adding to a bucket. ClickHouse aggregates the
/// deduplicated rows into minute buckets (`kpi_minute_final`), which makes
/// every KPI a pure function of the set of calls, whatever the faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct KpiCall {
    pub cdr_id: String,
    /// The switch's call id (lets a report select one run's calls).
    pub call_id: String,
    /// The CDR's row version (distinct events folded in): a more complete
    /// copy of the call replaces a less complete one.
    pub version: i64,
    /// Minute of hangup (of setup for calls that never ended), epoch ms.
    pub minute_ms: i64,
    pub account_id: String,
    pub trunk_id: String,
    /// Rated breakout, `unrated` when the call found no rate.
    pub destination: String,
    /// One of [`Disposition::as_str`].
    pub disposition: String,
    pub answered: bool,
    pub busy: bool,
    pub no_answer: bool,
    pub failed: bool,
    pub cancelled: bool,
    pub stale: bool,
    /// Counts towards NER (answered, user busy, ring no answer, terminal rejection).
    pub ner_ok: bool,
    /// Answered and shorter than the configured short-call threshold.
    pub short_call: bool,
    pub answered_ms: i64,
    pub pdd_ms: Option<i64>,
    pub billed_seconds: i64,
    /// Decimal string, unrounded.
    pub amount: String,
    /// Decimal string: the call's LRN dip fee.
    pub lrn_fee: String,
    pub mos: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
}
