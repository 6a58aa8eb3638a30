//! Avro single-object encoding (marker `C3 01`, 8-byte CRC-64-AVRO
//! fingerprint, binary datum) so internal topics need no schema registry: a
//! reader checks the fingerprint and refuses a record written with another
//! schema instead of misreading it.
//!
//! The schema comes from `apache_avro`'s derive (the source of truth, checked
//! into `schemas/avro/`); the bytes are written and read by `serde_avro_fast`
//! straight from and into the typed structs. Going through `apache_avro`'s
//! `Value` trees (kept as [`Codec::encode_via_value`] and
//! [`Codec::decode_via_value`]) allocated a tree, resolved it against the
//! schema and looked fields up by name for every record: most of a stage's
//! CPU. Property tests hold the two paths to the same bytes.

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
    /// The same schema, compiled for `serde_avro_fast`.
    fast: serde_avro_fast::Schema,
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
        // Parsing Canonical Form drops only what does not change the binary
        // encoding (docs, defaults, aliases).
        let fast = schema
            .canonical_form()
            .parse::<serde_avro_fast::Schema>()
            .expect("a derived schema is valid Avro");
        Codec {
            schema,
            fast,
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

    /// The single-object encoding of `rec`.
    pub fn encode(&self, rec: &T) -> Result<Vec<u8>, AvroError> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&[0xC3, 0x01]);
        out.extend_from_slice(&self.fingerprint);
        let mut config = serde_avro_fast::ser::SerializerConfig::new(&self.fast);
        serde_avro_fast::to_datum(rec, out, &mut config).map_err(|e| AvroError::Avro(e.to_string()))
    }

    /// The record in `bytes`, after checking marker and fingerprint.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, AvroError> {
        let body = self.body(bytes)?;
        serde_avro_fast::from_datum_slice::<T>(body, &self.fast)
            .map_err(|e| AvroError::Avro(e.to_string()))
    }

    fn body<'b>(&self, bytes: &'b [u8]) -> Result<&'b [u8], AvroError> {
        if bytes.len() < 10 || bytes[0] != 0xC3 || bytes[1] != 0x01 {
            return Err(AvroError::NoMarker);
        }
        if bytes[2..10] != self.fingerprint {
            return Err(AvroError::Fingerprint {
                found: hex::encode(&bytes[2..10]),
                expected: hex::encode(self.fingerprint),
            });
        }
        Ok(&bytes[10..])
    }

    /// [`Codec::encode`] through `apache_avro`'s `Value` tree: the reference
    /// the fast path is tested against.
    pub fn encode_via_value(&self, rec: &T) -> Result<Vec<u8>, AvroError> {
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

    /// [`Codec::decode`] through `apache_avro`'s `Value` tree.
    pub fn decode_via_value(&self, bytes: &[u8]) -> Result<T, AvroError> {
        let mut body = self.body(bytes)?;
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

    use proptest::prelude::*;

    fn opt<T: std::fmt::Debug + Clone>(
        s: impl Strategy<Value = T> + 'static,
    ) -> impl Strategy<Value = Option<T>> {
        proptest::option::of(s)
    }

    /// Calls with every optional field present or absent, any text
    /// (including non-ASCII and empty), extreme integers and at most one
    /// header (a `HashMap` iterates in no fixed order, so with two or more
    /// the two encoders may legitimately write them differently).
    fn arb_call() -> impl Strategy<Value = AssembledCall> {
        let ids = (
            ".{0,40}",
            ".{0,20}",
            "\\PC{0,12}",
            opt(".{0,16}"),
            "[0-9+]{0,18}",
        );
        let times = (
            any::<i64>(),
            opt(any::<i64>()),
            opt(any::<i32>()),
            opt(any::<i64>()),
            opt(any::<i64>()),
            opt(any::<i32>()),
            any::<i64>(),
            any::<i64>(),
            opt(any::<i64>()),
        );
        let rest = (
            proptest::collection::hash_map(".{0,12}", ".{0,12}", 0..=1),
            opt(".{0,15}"),
            any::<bool>(),
            opt((
                opt(any::<i64>()),
                opt(any::<i64>()),
                opt(-1e9f64..1e9),
                opt(any::<f64>().prop_filter("NaN never equals itself", |f| !f.is_nan())),
            )
                .prop_map(|(a, b, c, d)| Media {
                    rtp_rx_packets: a,
                    rtp_rx_before_answer: b,
                    silence_ratio: c,
                    mos: d,
                    ..Default::default()
                })),
            proptest::collection::vec(".{0,8}", 0..3),
            any::<i32>(),
        );
        (ids, times, rest).prop_map(|((cdr_id, call_id, account, cli, dialed), t, r)| {
            AssembledCall {
                cdr_id,
                call_id,
                switch_id: "sw".into(),
                account_id: account,
                direction: "outbound".into(),
                cli,
                dialed,
                trunk_id: r.1.clone(),
                setup_ts_ms: t.0,
                progress_ts_ms: t.1,
                progress_code: t.2,
                answer_ts_ms: t.3,
                end_ts_ms: t.4,
                final_sip_code: t.5,
                disposition: "answered".into(),
                duration_ms: t.6,
                billable_seconds: t.7,
                pdd_ms: t.8,
                headers: r.0,
                source_ip: r.1,
                behind_nat: r.2,
                codec: None,
                media: r.3,
                flags: r.4,
                event_count: r.5,
                assembled_at_ms: t.0 ^ 7,
            }
        })
    }

    fn arb_rated() -> impl Strategy<Value = RatedCdr> {
        (
            arb_call(),
            opt("[0-9]{10}"),
            any::<bool>(),
            "[0-9.]{0,12}",
            opt(any::<i32>()),
            opt((
                any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
                any::<bool>(),
            )),
        )
            .prop_map(|(call, lrn, ported, amount, trunk, det)| RatedCdr {
                call,
                enrichment: Enrichment {
                    lrn,
                    ported,
                    lrn_fee: "0.0003".into(),
                    ..Default::default()
                },
                rating: Rating {
                    amount,
                    rated_trunk: trunk,
                    deck_version: 3,
                    ..Default::default()
                },
                detection: det.map(|(fas_score, evaluated)| Detection {
                    fas_score,
                    fas_signals: vec!["ringback_missing".into()],
                    evaluated,
                }),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The fast path writes exactly what the `Value` path writes, and
        /// each reads the other's bytes: the wire format did not change.
        #[test]
        fn fast_and_value_paths_agree_on_the_bytes(rec in arb_rated()) {
            let c: Codec<RatedCdr> = Codec::new();
            let fast = c.encode(&rec).unwrap();
            let slow = c.encode_via_value(&rec).unwrap();
            prop_assert_eq!(&fast, &slow);
            prop_assert_eq!(c.decode(&slow).unwrap(), rec.clone());
            prop_assert_eq!(c.decode_via_value(&fast).unwrap(), rec);
        }

        #[test]
        fn assembled_calls_agree_too(call in arb_call()) {
            let c: Codec<AssembledCall> = Codec::new();
            let fast = c.encode(&call).unwrap();
            prop_assert_eq!(&fast, &c.encode_via_value(&call).unwrap());
            prop_assert_eq!(c.decode(&fast).unwrap(), call);
        }

        /// A damaged body (cut short or with flipped bytes) is an error or
        /// some record, never a panic or a runaway allocation.
        #[test]
        fn a_damaged_body_never_panics(
            rec in arb_rated(),
            cut in 0usize..400,
            flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
        ) {
            let c: Codec<RatedCdr> = Codec::new();
            let mut bytes = c.encode(&rec).unwrap();
            for (at, b) in flips {
                let i = 10 + at % (bytes.len() - 10).max(1);
                if i < bytes.len() {
                    bytes[i] ^= b;
                }
            }
            bytes.truncate(10 + cut.min(bytes.len() - 10));
            let _ = c.decode(&bytes);
            if cut == 0 {
                prop_assert!(c.decode(&bytes).is_err());
            }
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
