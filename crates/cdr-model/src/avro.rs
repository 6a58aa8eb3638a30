//! Avro single-object encoding (marker `C3 01`, 8-byte CRC-64-AVRO
//! fingerprint, binary datum) so internal topics need no schema registry: a
//! reader checks the fingerprint and refuses a record written with another
//! schema instead of misreading it.

use apache_avro::rabin::Rabin;
use apache_avro::schema::Schema;
use apache_avro::{from_avro_datum, from_value, to_avro_datum, to_value, AvroSchema};
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("not single-object Avro (missing C3 01 marker)")]
    NoMarker,
    #[error("schema fingerprint {found} does not match expected {expected}")]
    Fingerprint { found: String, expected: String },
    #[error("avro: {0}")]
    Avro(String),
}

/// A typed codec for one record type. Build once per service and reuse.
pub struct Codec<T> {
    schema: Schema,
    fingerprint: [u8; 8],
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: AvroSchema + Serialize + DeserializeOwned> Default for Codec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: AvroSchema + Serialize + DeserializeOwned> Codec<T> {
    pub fn new() -> Self {
        let schema = T::get_schema();
        let fp = schema.fingerprint::<Rabin>().bytes;
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&fp[..8]);
        Codec {
            schema,
            fingerprint,
            _t: std::marker::PhantomData,
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Canonical JSON of the schema, as checked into `schemas/avro/`.
    pub fn schema_json(&self) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.schema.canonical_form()).expect("schema json");
        serde_json::to_string_pretty(&v).expect("pretty")
    }

    pub fn encode(&self, rec: &T) -> Result<Vec<u8>, AvroError> {
        let value = to_value(rec).map_err(|e| AvroError::Avro(e.to_string()))?;
        let value = value
            .resolve(&self.schema)
            .map_err(|e| AvroError::Avro(e.to_string()))?;
        let body =
            to_avro_datum(&self.schema, value).map_err(|e| AvroError::Avro(e.to_string()))?;
        let mut out = Vec::with_capacity(body.len() + 10);
        out.extend_from_slice(&[0xC3, 0x01]);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<T, AvroError> {
        if bytes.len() < 10 || bytes[0] != 0xC3 || bytes[1] != 0x01 {
            return Err(AvroError::NoMarker);
        }
        if bytes[2..10] != self.fingerprint {
            return Err(AvroError::Fingerprint {
                found: hex::encode(&bytes[2..10]),
                expected: hex::encode(self.fingerprint),
            });
        }
        let mut body = &bytes[10..];
        let value = from_avro_datum(&self.schema, &mut body, None)
            .map_err(|e| AvroError::Avro(e.to_string()))?;
        from_value::<T>(&value).map_err(|e| AvroError::Avro(e.to_string()))
    }
}

/// Every internal topic's record schema, by file stem, as checked into `schemas/avro/`.
pub fn all_schemas() -> Vec<(&'static str, String)> {
    use crate::call::*;
    vec![
        (
            "calls.assembled",
            Codec::<AssembledCall>::new().schema_json(),
        ),
        ("calls.enriched", Codec::<EnrichedCall>::new().schema_json()),
        ("cdrs.rated", Codec::<RatedCdr>::new().schema_json()),
        ("kpi.calls", Codec::<KpiCall>::new().schema_json()),
        (
            "accounts.plan-changes",
            Codec::<crate::control::PlanChange>::new().schema_json(),
        ),
        (
            "routes.alerts",
            Codec::<crate::control::RouteAlertEvent>::new().schema_json(),
        ),
        (
            "routes.status",
            Codec::<crate::control::RouteStatusEvent>::new().schema_json(),
        ),
        (
            "billing.adjustments",
            Codec::<crate::control::Adjustment>::new().schema_json(),
        ),
        (
            "accounts.alerts",
            Codec::<crate::control::AccountAlertEvent>::new().schema_json(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::*;

    pub(crate) fn sample_call() -> AssembledCall {
        AssembledCall {
            cdr_id: crate::ids::cdr_id("sw1", "c1"),
            call_id: "c1".into(),
            switch_id: "sw1".into(),
            account_id: "acc1".into(),
            direction: "outbound".into(),
            cli: Some("+12125550100".into()),
            dialed: "442079460000".into(),
            trunk_id: Some("t1".into()),
            setup_ts_ms: 1_700_000_000_000,
            progress_ts_ms: Some(1_700_000_001_000),
            progress_code: Some(180),
            answer_ts_ms: Some(1_700_000_005_000),
            end_ts_ms: Some(1_700_000_065_000),
            final_sip_code: Some(200),
            disposition: "answered".into(),
            duration_ms: 60_000,
            billable_seconds: 60,
            pdd_ms: Some(1000),
            headers: [("X-CWU-maxrate".to_string(), "0.05".to_string())]
                .into_iter()
                .collect(),
            source_ip: None,
            behind_nat: false,
            codec: Some("PCMA".into()),
            media: Some(Media {
                mos: Some(4.1),
                ..Default::default()
            }),
            flags: vec![],
            event_count: 4,
            assembled_at_ms: 1,
        }
    }

    #[test]
    fn round_trip_and_fingerprint_guard() {
        let c: Codec<RatedCdr> = Codec::new();
        let rec = RatedCdr {
            call: sample_call(),
            enrichment: Enrichment {
                lrn_fee: "0.0003".into(),
                ..Default::default()
            },
            rating: Rating {
                amount: "0.123456789".into(),
                ..Default::default()
            },
            detection: None,
        };
        let bytes = c.encode(&rec).unwrap();
        assert_eq!(c.decode(&bytes).unwrap(), rec);
        let other: Codec<AssembledCall> = Codec::new();
        assert!(matches!(
            other.decode(&bytes),
            Err(AvroError::Fingerprint { .. })
        ));
        assert!(matches!(other.decode(b"{}"), Err(AvroError::NoMarker)));
    }
}
