//! Rater service: consumes `calls.enriched`, adds the rating section and
//! produces `cdrs.rated` keyed by cdr_id. Until rate decks are loaded every
//! call is emitted as `unrated` with its reason (never dropped), carrying the
//! LRN fee the rater decided, so finance sees it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{run_stateless, AvroMap, BatchSpec, Reject};
use cdr_kafka::{runtime, CancellationToken, KafkaConfig};
use cdr_model::call::{EnrichedCall, RatedCdr, Rating};
use cdr_model::topics;
use serde::Deserialize;

pub const SERVICE: &str = "rater";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default = "default_metrics")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "default_batch")]
    pub batch_max_records: usize,
    #[serde(default = "default_linger")]
    pub batch_linger_ms: u64,
}

fn default_metrics() -> SocketAddr {
    "127.0.0.1:9103".parse().unwrap()
}
fn default_batch() -> usize {
    2000
}
fn default_linger() -> u64 {
    50
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        anyhow::ensure!(
            self.batch_max_records > 0,
            "batch_max_records must be positive"
        );
        Ok(())
    }
}

/// Pure rating of one call.
pub fn rate(call: EnrichedCall) -> Result<(String, RatedCdr), Reject> {
    let rating = Rating {
        status: "unrated".to_string(),
        unrated_reason: Some("no_rate_deck_loaded".to_string()),
        lrn_fee: call.enrichment.lrn_fee.clone(),
        amount: call.enrichment.lrn_fee.clone(),
        rate_per_min: "0".into(),
        connection_fee: "0".into(),
        surcharge: "0".into(),
        short_duration_surcharge: "0".into(),
        currency: "USD".into(),
        max_rate: call.call.headers.get("X-CWU-maxrate").cloned(),
        max_route: call
            .call
            .headers
            .get("X-CWU-maxroute")
            .and_then(|v| v.trim().parse().ok()),
        ..Default::default()
    };
    let key = call.call.cdr_id.clone();
    Ok((
        key,
        RatedCdr {
            call: call.call,
            enrichment: call.enrichment,
            rating,
            detection: None,
        },
    ))
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let metrics = StageMetrics::new(SERVICE);
    cdr_kafka::metrics::serve(
        config.metrics_listen,
        metrics.registry.clone(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("binding metrics on {}", config.metrics_listen))?;
    let consumer =
        runtime::consumer(&config.kafka, SERVICE, &[topics::CALLS_ENRICHED], &metrics).await?;
    let producer = runtime::producer(&config.kafka, SERVICE)?;
    let spec = BatchSpec {
        max_records: config.batch_max_records,
        linger: Duration::from_millis(config.batch_linger_ms),
    };
    let processor = AvroMap::new(topics::CDRS_RATED, rate);
    run_stateless(
        SERVICE,
        consumer,
        producer,
        topics::PIPELINE_DLQ,
        spec,
        metrics,
        processor,
        shutdown,
    )
    .await
}
