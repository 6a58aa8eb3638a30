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
    pub destination: Option<String>,
    pub rate_per_min: String,
    pub billed_seconds: i64,
    pub increment: Option<String>,
    pub connection_fee: String,
    pub surcharge: String,
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

/// One per-minute KPI bucket (topic `kpi.minute`), per account × trunk × destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "cdr")]
pub struct KpiMinute {
    pub bucket_id: String,
    pub minute_ms: i64,
    pub account_id: String,
    pub trunk_id: String,
    pub destination: String,
    pub seizures: i64,
    pub answered: i64,
    pub busy: i64,
    pub no_answer: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub stale: i64,
    pub answered_ms: i64,
    pub pdd_sum_ms: i64,
    pub pdd_count: i64,
    pub short_calls: i64,
    pub billed_seconds: i64,
    /// Decimal string, unrounded.
    pub amount: String,
    /// Seizures folded in: a complete recomputation has the highest version.
    pub version: i64,
    /// Answered + user busy + ring no answer + terminal rejections (NER numerator).
    pub ner_ok: i64,
    /// p95 of PDD within this bucket (0 when no PDD was measured).
    pub pdd_p95_ms: i64,
    pub mos_sum: f64,
    pub mos_count: i64,
    pub jitter_sum: f64,
    pub jitter_count: i64,
    pub loss_sum: f64,
    pub loss_count: i64,
    /// Decimal string: LRN dip fees of the bucket's calls.
    pub lrn_fee: String,
}
