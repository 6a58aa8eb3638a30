//! Ingest service: how real switches get into the pipeline.
//!
//! Two halves in one process, both thin around the pure adapters of
//! `crates/switch-adapters`:
//!
//! * **HTTP** ([`http`]): `POST /v1/cdr/freeswitch` (mod_json_cdr's POST,
//!   form-encoded `cdr=` or a JSON body) and `POST /v1/events/{format}`
//!   (any adapter format). The body is produced, unchanged, to the raw topic
//!   of its vendor (`raw.freeswitch`, `raw.opensips`, `raw.asterisk`,
//!   `raw.kamailio`) with `format` and `switch-id` headers; the answer is
//!   200 only once the broker acknowledged it, 503 otherwise, so the
//!   switch's own retry and error-log directory keep a CDR we failed to
//!   take. Body size limit (413), bearer or basic auth (401).
//! * **Adapter stage** ([`AdapterStage`]): consumes the raw topics (a
//!   switch that publishes to Kafka itself writes there directly, no HTTP
//!   hop), adapts each record with its switch's configuration and produces
//!   the resulting events to `call-events` (the contract JSON, keyed by
//!   `call_id`). A payload the adapter refuses is dead-lettered on
//!   `call-events.dlq` with the format, reason and field; nothing else is
//!   affected. Event ids are derived from the switch's own ids, so the same
//!   payload twice (a switch retry, a replay) bills once.

pub mod config;
pub mod http;
pub mod metrics;
pub mod tls;

use std::sync::Arc;

use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{Outbox, Rejection, StageError};
use cdr_kafka::{CancellationToken, CommitPolicy, Message, OwnedMessage};
use cdr_model::topics;
use rdkafka::message::Headers;
use switch_adapters::{AdaptError, Format};

use config::SwitchError;
pub use config::{Config, STAGE_DEFAULTS};
use metrics::IngestMetrics;

pub const SERVICE: &str = "ingest";

/// Kafka header naming a raw record's format (`freeswitch-json`, …).
pub const FORMAT_HEADER: &str = "format";
/// Kafka header naming a raw record's switch.
pub const SWITCH_HEADER: &str = "switch-id";

/// Why a raw record produced no events.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestReject {
    #[error(transparent)]
    Adapt(#[from] AdaptError),
    #[error(transparent)]
    Switch(#[from] SwitchError),
    #[error("{0}")]
    Format(String),
}

impl Rejection for IngestReject {
    fn reason(&self) -> &'static str {
        match self {
            IngestReject::Adapt(e) => e.reason(),
            IngestReject::Switch(_) => "unknown_switch",
            IngestReject::Format(_) => "unknown_format",
        }
    }
    fn field(&self) -> Option<&str> {
        match self {
            IngestReject::Adapt(e) => e.field(),
            IngestReject::Switch(_) => Some("switch_id"),
            IngestReject::Format(_) => Some("format"),
        }
    }
}

/// The format of a raw record: its `format` header, else recognised from
/// the topic's vendor (`raw.<vendor>` or `raw.<vendor>.<anything>`) and the
/// payload's shape.
pub fn format_of(
    topic: &str,
    header: Option<&str>,
    payload: &[u8],
) -> Result<Format, IngestReject> {
    if let Some(h) = header {
        return h
            .parse()
            .map_err(|e: switch_adapters::UnknownFormat| IngestReject::Format(e.to_string()));
    }
    let head = String::from_utf8_lossy(&payload[..payload.len().min(4096)]);
    let t = head.trim_start_matches('\u{feff}').trim_start();
    let lower = t.to_ascii_lowercase();
    let vendor = topic.split('.').take(2).collect::<Vec<_>>().join(".");
    Ok(match vendor.as_str() {
        topics::RAW_FREESWITCH => {
            if lower.starts_with("event-name:")
                || lower.contains("\nevent-name:")
                || t.contains("\"Event-Name\"")
            {
                Format::FreeswitchEsl
            } else {
                Format::FreeswitchJson
            }
        }
        topics::RAW_OPENSIPS => Format::Opensips,
        topics::RAW_KAMAILIO => Format::Kamailio,
        topics::RAW_ASTERISK => {
            if t.starts_with('{') || t.starts_with('[') {
                Format::AsteriskJson
            } else if lower.starts_with("event:") || lower.contains("\nevent: cdr") {
                Format::AsteriskAmi
            } else {
                Format::AsteriskCsv
            }
        }
        other => {
            return Err(IngestReject::Format(format!(
                "no format header and topic `{}` names no vendor",
                other.chars().take(64).collect::<String>()
            )))
        }
    })
}

fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let h = m.headers()?;
    (0..h.count())
        .map(|i| h.get(i))
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// `call-events` records (key = call id, value = the contract JSON).
pub type Adapted = Vec<(String, Vec<u8>)>;

/// Adapts one raw record into `call-events` records.
pub fn adapt_record(
    cfg: &Config,
    topic: &str,
    format_header: Option<&str>,
    switch_header: Option<&str>,
    payload: &[u8],
) -> Result<(Format, Adapted), IngestReject> {
    let format = format_of(topic, format_header, payload)?;
    let named = switch_header.or_else(|| cfg.topic_switches.get(topic).map(String::as_str));
    let sw = cfg.switch(named)?;
    let events = switch_adapters::adapt(format, payload, sw)?;
    Ok((
        format,
        events
            .into_iter()
            .map(|e| (e.call_id.clone(), e.to_json()))
            .collect(),
    ))
}

/// The adapter stage: raw.* → call-events.
pub struct AdapterStage {
    cfg: Arc<Config>,
    metrics: IngestMetrics,
}

impl cdr_kafka::Stage for AdapterStage {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        for m in batch {
            let payload = m.payload().unwrap_or_default();
            match adapt_record(
                &self.cfg,
                m.topic(),
                header(m, FORMAT_HEADER),
                header(m, SWITCH_HEADER),
                payload,
            ) {
                Ok((format, events)) => {
                    if events.is_empty() {
                        self.metrics
                            .ignored
                            .with_label_values(&[format.as_str()])
                            .inc();
                    }
                    for (key, json) in events {
                        self.metrics
                            .events
                            .with_label_values(&[format.as_str()])
                            .inc();
                        out.emit(topics::CALL_EVENTS, key.into_bytes(), json, Some(m));
                    }
                }
                Err(e) => {
                    let format = match &e {
                        IngestReject::Adapt(a) => a.format().as_str(),
                        _ => "unknown",
                    };
                    self.metrics
                        .rejected
                        .with_label_values(&[format, e.reason()])
                        .inc();
                    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), reason = e.reason(), field = e.field().unwrap_or(""), error = %e, "raw record refused");
                    out.reject(m, &e);
                }
            }
        }
        Ok(())
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let settings = config.stage.resolve(STAGE_DEFAULTS)?;
    let metrics = StageMetrics::new(SERVICE);
    let im = IngestMetrics::new(&metrics.registry);
    let cfg = Arc::new(config);
    // One producer for both halves: an idle Kafka client costs CPU.
    let producer = cdr_kafka::runtime::producer(&settings.kafka, SERVICE)?;
    let server = if cfg.http.enabled {
        Some(http::start(cfg.clone(), producer.clone(), im.clone(), shutdown.clone()).await?)
    } else {
        None
    };
    let raw: Vec<&str> = cfg.raw_topics.iter().map(String::as_str).collect();
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &raw,
        dlq_topic: topics::CALL_EVENTS_DLQ,
        policy: CommitPolicy::AfterEachBatch,
        settings: &settings,
        metrics,
    };
    let stage = AdapterStage {
        cfg: cfg.clone(),
        metrics: im,
    };
    let result = cdr_kafka::run_stage_with_producer(spec, stage, producer, shutdown.clone()).await;
    // The stage ended (shutdown or error): the HTTP side goes with it.
    shutdown.cancel();
    if let Some(s) = server {
        let _ = s.await;
    }
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdr_kafka::stage::Rejection;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../crates/switch-adapters/tests/fixtures")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn config() -> Config {
        toml::from_str(
            r#"
            default_switch = "fs-1"
            [[switches]]
            switch_id = "fs-1"
            [[switches]]
            switch_id = "ast-1"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn formats_are_recognised_from_topic_and_shape() {
        let cases = [
            (
                topics::RAW_FREESWITCH,
                "freeswitch_aleg_answered.json",
                Format::FreeswitchJson,
            ),
            (
                topics::RAW_FREESWITCH,
                "freeswitch_esl_create.txt",
                Format::FreeswitchEsl,
            ),
            (
                topics::RAW_FREESWITCH,
                "freeswitch_esl_answer.json",
                Format::FreeswitchEsl,
            ),
            (
                topics::RAW_ASTERISK,
                "asterisk_master.csv",
                Format::AsteriskCsv,
            ),
            (
                topics::RAW_ASTERISK,
                "asterisk_ami.txt",
                Format::AsteriskAmi,
            ),
            (
                topics::RAW_ASTERISK,
                "asterisk_cdr.json",
                Format::AsteriskJson,
            ),
            (
                topics::RAW_OPENSIPS,
                "opensips_acc_cdr.json",
                Format::Opensips,
            ),
            (
                topics::RAW_KAMAILIO,
                "kamailio_answered.json",
                Format::Kamailio,
            ),
        ];
        for (topic, file, want) in cases {
            assert_eq!(
                format_of(topic, None, &fixture(file)).unwrap(),
                want,
                "{file}"
            );
        }
        // The header wins; a bad header or a foreign topic is refused by name.
        assert_eq!(
            format_of(topics::RAW_ASTERISK, Some("asterisk-custom"), b"x").unwrap(),
            Format::AsteriskCustom
        );
        let e = format_of(topics::RAW_ASTERISK, Some("sip-trace"), b"x").unwrap_err();
        assert_eq!((e.reason(), e.field()), ("unknown_format", Some("format")));
        let e = format_of("elsewhere", None, b"{}").unwrap_err();
        assert_eq!(e.reason(), "unknown_format");
    }

    #[test]
    fn records_become_contract_events_or_typed_rejections() {
        let cfg = config();
        let doc = fixture("freeswitch_aleg_answered.json");
        let (f, out) = adapt_record(&cfg, topics::RAW_FREESWITCH, None, None, &doc).unwrap();
        assert_eq!(f, Format::FreeswitchJson);
        assert!(!out.is_empty());
        for (key, json) in &out {
            let e = cdr_model::event::SwitchEvent::from_json(json, 2000).unwrap();
            assert_eq!(&e.call_id, key, "keyed by call id");
            assert_eq!(e.switch_id, "fs-1", "the default switch");
        }
        // Twice the same record: the same events (ids from the switch's ids).
        let (_, again) = adapt_record(&cfg, topics::RAW_FREESWITCH, None, None, &doc).unwrap();
        assert_eq!(out, again);
        let e = adapt_record(&cfg, topics::RAW_FREESWITCH, None, Some("nope"), &doc).unwrap_err();
        assert_eq!(
            (e.reason(), e.field()),
            ("unknown_switch", Some("switch_id"))
        );
        let e = adapt_record(&cfg, topics::RAW_KAMAILIO, None, None, b"{\"v\":\"1\",").unwrap_err();
        assert_eq!(e.reason(), "malformed");
        assert!(e.to_string().contains("kamailio"), "{e}");
    }

    #[test]
    fn config_is_validated_with_field_names() {
        let mut c = config();
        c.default_switch = Some("ghost".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("default_switch"));
        let mut c = config();
        c.switches.push(c.switches[0].clone());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
        let mut c = config();
        c.http.auth = config::Auth::Bearer {
            token_env: "CDR_TEST_INGEST_TOKEN_UNSET".into(),
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("CDR_TEST_INGEST_TOKEN_UNSET"), "{e}");
        let shipped = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/local/config/ingest.toml");
        let c: Config = toml::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
        c.validate().unwrap();
    }
}

#[cfg(test)]
mod topic_tests {
    use super::*;

    #[test]
    fn a_switch_of_its_own_topic_is_named_by_the_topic() {
        let cfg: Config = toml::from_str(
            r#"
            raw_topics = ["raw.kamailio", "raw.kamailio.kam-2"]
            topic_switches = { "raw.kamailio.kam-2" = "kam-2" }
            [[switches]]
            switch_id = "kam-1"
            [[switches]]
            switch_id = "kam-2"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let rec = br#"{"v":"1","event":"failed","callid":"c1","cli":"12125550100","dialed":"442079460123","account":"acc-1","sip_code":"486","setup_time":"1763462000.1","end_time":"1763462003.2"}"#;
        let (_, out) = adapt_record(&cfg, "raw.kamailio.kam-2", None, None, rec).unwrap();
        let e = cdr_model::event::SwitchEvent::from_json(&out[0].1, 2000).unwrap();
        assert_eq!(e.switch_id, "kam-2");
        // The shared topic without a header and without a default: refused.
        let err = adapt_record(&cfg, "raw.kamailio", None, None, rec).unwrap_err();
        assert_eq!(err.to_string(), config::SwitchError::Unnamed.to_string());
        // The header still wins.
        let (_, out) = adapt_record(&cfg, "raw.kamailio.kam-2", None, Some("kam-1"), rec).unwrap();
        let e = cdr_model::event::SwitchEvent::from_json(&out[0].1, 2000).unwrap();
        assert_eq!(e.switch_id, "kam-1");
        let bad: Config = toml::from_str(
            r#"
            raw_topics = ["sip.traces"]
            [[switches]]
            switch_id = "kam-1"
            "#,
        )
        .unwrap();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("sip.traces"));
    }
}
