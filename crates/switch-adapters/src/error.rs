//! The typed rejection every adapter returns: which format refused the
//! payload, a stable reason label (for dead-letter envelopes and per-reason
//! counters) and the field it is about, so an operator can fix and replay it.

use cdr_model::event::EventError;

use crate::Format;

/// Longest vendor value quoted back in an error message: a rejection must
/// stay small whatever the payload.
const MAX_QUOTED: usize = 64;

pub(crate) fn quote(s: &str) -> String {
    s.chars().take(MAX_QUOTED).collect()
}

/// Why a payload could not be turned into switch events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdaptError {
    /// Not parseable at all (truncated JSON, broken CSV quoting, ...).
    #[error("{format}: malformed payload: {detail}")]
    Malformed { format: Format, detail: String },
    /// Parseable, but a different kind of document (an OpenSIPS event fed to
    /// the FreeSWITCH adapter, an unknown event name, ...).
    #[error("{format}: not a {format} payload: {detail}")]
    WrongFormat { format: Format, detail: String },
    #[error("{format}: missing field `{field}`")]
    MissingField { format: Format, field: String },
    #[error("{format}: field `{field}` has a bad value: {detail}")]
    BadValue {
        format: Format,
        field: String,
        detail: String,
    },
    /// Times that cannot belong to one call (end before start, answer
    /// before setup beyond the skew tolerance, ...).
    #[error("{format}: impossible times at `{field}`: {detail}")]
    ImpossibleTimes {
        format: Format,
        field: String,
        detail: String,
    },
}

impl AdaptError {
    /// Stable label for the dead-letter envelope and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::WrongFormat { .. } => "wrong_format",
            Self::MissingField { .. } => "missing_field",
            Self::BadValue { .. } => "bad_value",
            Self::ImpossibleTimes { .. } => "impossible_times",
        }
    }

    /// The vendor (or contract) field the rejection is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::MissingField { field, .. }
            | Self::BadValue { field, .. }
            | Self::ImpossibleTimes { field, .. } => Some(field),
            Self::Malformed { .. } | Self::WrongFormat { .. } => None,
        }
    }

    pub fn format(&self) -> Format {
        match self {
            Self::Malformed { format, .. }
            | Self::WrongFormat { format, .. }
            | Self::MissingField { format, .. }
            | Self::BadValue { format, .. }
            | Self::ImpossibleTimes { format, .. } => *format,
        }
    }

    pub(crate) fn malformed(format: Format, detail: impl Into<String>) -> Self {
        Self::Malformed {
            format,
            detail: detail.into(),
        }
    }

    pub(crate) fn wrong(format: Format, detail: impl Into<String>) -> Self {
        Self::WrongFormat {
            format,
            detail: detail.into(),
        }
    }

    pub(crate) fn missing(format: Format, field: &str) -> Self {
        Self::MissingField {
            format,
            field: field.to_string(),
        }
    }

    pub(crate) fn bad(format: Format, field: &str, value: &str, why: &str) -> Self {
        Self::BadValue {
            format,
            field: field.to_string(),
            detail: format!("`{}`: {why}", quote(value)),
        }
    }

    pub(crate) fn times(format: Format, field: &str, detail: impl Into<String>) -> Self {
        Self::ImpossibleTimes {
            format,
            field: field.to_string(),
            detail: detail.into(),
        }
    }

    /// The contract's own validation (`SwitchEvent::from_raw`) refused what
    /// the adapter built: translate it into the adapter's vocabulary.
    pub(crate) fn from_event(format: Format, e: EventError) -> Self {
        match e {
            EventError::MissingField(f) => Self::missing(format, f),
            EventError::BadTimestamp { field, value } => Self::bad(
                format,
                field,
                &value,
                "not a timestamp between 2000 and 2100",
            ),
            EventError::BadValue { field, message } => Self::BadValue {
                format,
                field: field.to_string(),
                detail: message,
            },
            EventError::AnswerBeforeSetup {
                setup_ms,
                answer_ms,
            } => Self::times(
                format,
                "answer_ts",
                format!("answer {answer_ms} ms before setup {setup_ms} ms"),
            ),
            EventError::NegativeDuration { answer_ms, end_ms } => Self::times(
                format,
                "end_ts",
                format!("end {end_ms} ms before {answer_ms} ms"),
            ),
            EventError::TooManyHeaders { count, limit } => Self::BadValue {
                format,
                field: "headers".into(),
                detail: format!("{count} headers exceed {limit}"),
            },
            other => Self::malformed(format, other.to_string()),
        }
    }
}
