//! Detector service: consumes `cdrs.rated`, adds the detection section (FAS
//! score and the signals that fired) and produces `cdrs.scored` keyed by
//! cdr_id. Per-call signals plug into [`score`] (the pure core).

use std::net::SocketAddr;
use std::time::Duration;

use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{run_stateless, AvroMap, BatchSpec, Reject};
use cdr_kafka::{runtime, CancellationToken, KafkaConfig};
use cdr_model::call::{Detection, RatedCdr};
use cdr_model::topics;
use serde::Deserialize;

pub const SERVICE: &str = "detector";

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
    "127.0.0.1:9104".parse().unwrap()
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

/// Pure scoring of one CDR.
pub fn score(mut cdr: RatedCdr) -> Result<(String, RatedCdr), Reject> {
    cdr.detection = Some(Detection {
        fas_score: 0.0,
        fas_signals: vec![],
        evaluated: false,
    });
    Ok((cdr.call.cdr_id.clone(), cdr))
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let metrics = StageMetrics::new(SERVICE);
    let (consumer, producer) = runtime::start_stage(
        &config.kafka,
        SERVICE,
        config.metrics_listen,
        &metrics,
        &[topics::CDRS_RATED],
        &shutdown,
    )
    .await?;
    let spec = BatchSpec {
        max_records: config.batch_max_records,
        linger: Duration::from_millis(config.batch_linger_ms),
    };
    let processor = AvroMap::new(topics::CDRS_SCORED, score);
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
