//! Dead-letter envelope: the original bytes (base64, at most
//! [`MAX_PAYLOAD_BYTES`] of them, with the full length and SHA-256 so an
//! oversized record is still identifiable), the reason label, a bounded human
//! message naming the field, and where the record came from, so an operator
//! can fix and replay it. Every part is bounded: a dead letter never exceeds
//! a producer's message size, whatever the record that caused it.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of the original payload kept in the envelope.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Characters of the human message kept.
pub const MAX_MESSAGE_CHARS: usize = 1024;
/// Bytes of the original key kept.
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: String,
    pub field: Option<String>,
    pub message: String,
    pub service: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The first [`MAX_PAYLOAD_BYTES`] of the original payload.
    pub payload_b64: String,
    /// Length of the whole original payload.
    #[serde(default)]
    pub payload_len: u64,
    /// Hex SHA-256 of the whole original payload.
    #[serde(default)]
    pub payload_sha256: String,
    /// True when `payload_b64` holds only a prefix.
    #[serde(default)]
    pub payload_truncated: bool,
    pub at_ms: i64,
    /// The source record's own timestamp (epoch ms), so a replay can give
    /// the record back its time (the assembler judges event clocks against
    /// it). `None` for dead letters of outputs and older dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ts_ms: Option<i64>,
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}… ({} bytes in all)", &s[..i], s.len()),
    }
}

impl DeadLetter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: &str,
        reason: &str,
        field: Option<&str>,
        message: String,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        at_ms: i64,
    ) -> Self {
        let kept = &payload[..payload.len().min(MAX_PAYLOAD_BYTES)];
        DeadLetter {
            reason: reason.to_string(),
            field: field.map(|f| bounded(f, 128)),
            message: bounded(&message, MAX_MESSAGE_CHARS),
            service: service.to_string(),
            topic: topic.to_string(),
            partition,
            offset,
            key: key
                .map(|k| String::from_utf8_lossy(&k[..k.len().min(MAX_KEY_BYTES)]).into_owned()),
            payload_b64: base64::engine::general_purpose::STANDARD.encode(kept),
            payload_len: payload.len() as u64,
            payload_sha256: hex::encode(Sha256::digest(payload)),
            payload_truncated: kept.len() < payload.len(),
            at_ms,
            source_ts_ms: None,
        }
    }

    /// Records the source record's timestamp.
    pub fn with_source_ts(mut self, ts_ms: Option<i64>) -> Self {
        self.source_ts_ms = ts_ms;
        self
    }

    /// The kept payload bytes (the whole payload unless `payload_truncated`).
    pub fn payload(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload_b64)
            .unwrap_or_default()
    }

    /// Deterministic id: one dead letter per source record. A dead letter
    /// of an output (no input position, offset < 0) is named by its key.
    pub fn id(&self) -> String {
        let (p, o) = (self.partition.to_string(), self.offset.to_string());
        let mut parts = vec![
            self.topic.as_str(),
            p.as_str(),
            o.as_str(),
            self.reason.as_str(),
        ];
        if self.offset < 0 {
            parts.push(self.key.as_deref().unwrap_or(""));
        }
        crate::ids::bucket_id(&parts)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("dead letter serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(payload: &[u8], message: String) -> DeadLetter {
        DeadLetter::new(
            "assembler",
            "bad_json",
            None,
            message,
            "call-events",
            2,
            17,
            Some(b"k"),
            payload,
            1,
        )
    }

    #[test]
    fn round_trips_original_bytes() {
        let raw = b"{broken \xff";
        let d = dl(raw, "x".into());
        let back: DeadLetter = serde_json::from_slice(&d.to_json()).unwrap();
        assert_eq!(back.payload(), raw.to_vec());
        assert_eq!(back.offset, 17);
        assert_eq!(back.id(), d.id());
        assert!(!back.payload_truncated);
        assert_eq!(back.payload_len, raw.len() as u64);
        assert_eq!(back.payload_sha256, hex::encode(Sha256::digest(raw)));
    }

    #[test]
    fn oversized_record_and_message_are_bounded() {
        let raw = vec![b'{'; 3 * 1024 * 1024];
        let d = dl(&raw, "m".repeat(100_000));
        let json = d.to_json();
        // Far under a producer's default 1 MB message limit.
        assert!(json.len() < 100 * 1024, "envelope {} bytes", json.len());
        assert!(d.payload_truncated);
        assert_eq!(d.payload().len(), MAX_PAYLOAD_BYTES);
        assert_eq!(d.payload_len, raw.len() as u64);
        assert_eq!(d.payload_sha256, hex::encode(Sha256::digest(&raw)));
        assert!(d.message.chars().count() < MAX_MESSAGE_CHARS + 40);
        assert!(
            d.message.ends_with("(100000 bytes in all)"),
            "{}",
            d.message
        );
    }

    #[test]
    fn bounded_cuts_on_char_boundaries() {
        assert_eq!(bounded("héllo", 10), "héllo");
        assert!(bounded("ééééé", 2).starts_with("éé…"));
    }
}
