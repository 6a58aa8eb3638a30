//! Enricher service: consumes `calls.assembled`, adds the enrichment section
//! (E.164 numbers, caller-id validity, plan selector) and produces
//! `calls.enriched` keyed by the dialed number. LRN dips and numbering
//! classification plug into [`enrich`] (the pure core) as they land.

pub mod numbering;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{run_stateless, AvroMap, BatchSpec, Reject};
use cdr_kafka::{runtime, CancellationToken, KafkaConfig};
use cdr_model::call::{AssembledCall, EnrichedCall, Enrichment};
use cdr_model::topics;
use serde::Deserialize;

pub const SERVICE: &str = "enricher";

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
    "127.0.0.1:9102".parse().unwrap()
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

/// Pure enrichment of one call.
pub fn enrich(call: AssembledCall) -> Result<(String, EnrichedCall), Reject> {
    let sel = numbering::strip_plan_prefix(&call.dialed);
    let dialed_e164 = numbering::to_e164(sel.number).unwrap_or_default();
    let cli_e164 = call.cli.as_deref().and_then(numbering::to_e164);
    let mut flags = Vec::new();
    if dialed_e164.is_empty() {
        flags.push("dialed_not_e164".to_string());
    }
    let enrichment = Enrichment {
        cli_valid: cli_e164.is_some(),
        cli_e164,
        dialed_e164: dialed_e164.clone(),
        plan_selector: sel.plan.map(str::to_string),
        trunk_selector: sel.trunk.map(str::to_string),
        lrn: None,
        ported: false,
        lrn_source: "not_applicable".to_string(),
        lrn_fee: "0".to_string(),
        caller_country: None,
        callee_country: None,
        callee_number_type: None,
        jurisdiction: None,
        flags,
    };
    let key = if dialed_e164.is_empty() {
        call.cdr_id.clone()
    } else {
        dialed_e164
    };
    Ok((key, EnrichedCall { call, enrichment }))
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
        runtime::consumer(&config.kafka, SERVICE, &[topics::CALLS_ASSEMBLED], &metrics).await?;
    let producer = runtime::producer(&config.kafka, SERVICE)?;
    let spec = BatchSpec {
        max_records: config.batch_max_records,
        linger: Duration::from_millis(config.batch_linger_ms),
    };
    let processor = AvroMap::new(topics::CALLS_ENRICHED, enrich);
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
