//! Dead-letter envelope: the original bytes (base64), the reason label, a
//! human message naming the field, and where the record came from, so an
//! operator can fix and replay it.

use base64::Engine;
use serde::{Deserialize, Serialize};

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
    pub payload_b64: String,
    pub at_ms: i64,
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
        DeadLetter {
            reason: reason.to_string(),
            field: field.map(str::to_string),
            message,
            service: service.to_string(),
            topic: topic.to_string(),
            partition,
            offset,
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            payload_b64: base64::engine::general_purpose::STANDARD.encode(payload),
            at_ms,
        }
    }

    pub fn payload(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload_b64)
            .unwrap_or_default()
    }

    /// Deterministic id: one dead letter per source record.
    pub fn id(&self) -> String {
        crate::ids::bucket_id(&[
            &self.topic,
            &self.partition.to_string(),
            &self.offset.to_string(),
            &self.reason,
        ])
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("dead letter serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_original_bytes() {
        let raw = b"{broken \xff";
        let d = DeadLetter::new(
            "assembler",
            "bad_json",
            None,
            "x".into(),
            "call-events",
            2,
            17,
            Some(b"k"),
            raw,
            1,
        );
        let back: DeadLetter = serde_json::from_slice(&d.to_json()).unwrap();
        assert_eq!(back.payload(), raw.to_vec());
        assert_eq!(back.offset, 17);
        assert_eq!(back.id(), d.id());
    }
}
