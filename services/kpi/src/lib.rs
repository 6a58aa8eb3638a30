//! KPI service: consumes `cdrs.scored`, folds CDRs into per-minute buckets
//! with the pure [`core::KpiAggregator`], and produces every changed bucket
//! to `kpi.minute` (the sink writes them to ClickHouse `kpi_minute`). Offsets
//! are committed only after the bucket records were acknowledged and never
//! inside a bucket that is still open, so a restart rebuilds identical rows.

pub mod core;
pub mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::{now_ms, runtime, CancellationToken, KafkaConfig};
use cdr_model::avro::Codec;
use cdr_model::call::{KpiMinute, RatedCdr};
use cdr_model::topics;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use serde::Deserialize;

use crate::core::{KpiAggregator, KpiConfig};

pub const SERVICE: &str = "kpi";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default = "default_metrics")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_lateness")]
    pub lateness_secs: i64,
    #[serde(default = "default_retention")]
    pub retention_secs: i64,
}

fn default_metrics() -> SocketAddr {
    "127.0.0.1:9105".parse().unwrap()
}
fn default_flush() -> u64 {
    1000
}
fn default_lateness() -> i64 {
    120
}
fn default_retention() -> i64 {
    60
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        anyhow::ensure!(
            self.flush_interval_ms > 0,
            "flush_interval_ms must be positive"
        );
        anyhow::ensure!(
            self.lateness_secs >= 0 && self.retention_secs >= 0,
            "lateness/retention must not be negative"
        );
        Ok(())
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let stage = StageMetrics::new(SERVICE);
    let km = metrics::KpiMetrics::register(&stage.registry);
    let (consumer, producer) = runtime::start_stage(
        &config.kafka,
        SERVICE,
        config.metrics_listen,
        &stage,
        &[topics::CDRS_SCORED],
        &shutdown,
    )
    .await?;
    let input: Codec<RatedCdr> = Codec::new();
    let output: Codec<KpiMinute> = Codec::new();
    let mut agg = KpiAggregator::new(KpiConfig {
        lateness_ms: config.lateness_secs * 1000,
        retention_ms: config.retention_secs * 1000,
        ..Default::default()
    });
    let mut flush = tokio::time::interval(Duration::from_millis(config.flush_interval_ms));
    let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled(), if !draining => { draining = true; }
            _ = flush.tick() => {
                let started = std::time::Instant::now();
                let mut acks = Vec::new();
                for b in agg.flush(now_ms()) {
                    let payload = output.encode(&b).context("encoding KPI bucket")?;
                    acks.push(runtime::send(&producer, topics::KPI_MINUTE, b.bucket_id.as_bytes(), &payload).await?);
                }
                let n = runtime::await_acks(acks).await?;
                stage.produced.inc_by(n as u64);
                let offsets: BTreeMap<(String, i32), i64> = agg.committable().into_iter().map(|(p, o)| ((topics::CDRS_SCORED.to_string(), p), o)).collect();
                let changed: BTreeMap<_, _> = offsets.into_iter().filter(|(k, v)| last.get(k) != Some(v)).collect();
                if !changed.is_empty() {
                    runtime::commit(&consumer, &changed, if draining { CommitMode::Sync } else { CommitMode::Async })?;
                    for ((_, p), o) in &changed { agg.committed(*p, *o); }
                    last.extend(changed);
                    stage.commits.inc();
                }
                km.buckets.set(agg.buckets() as i64);
                if n > 0 { stage.batch_latency.observe(started.elapsed().as_secs_f64()); }
                if draining { break; }
            }
            msg = consumer.recv(), if !draining => {
                let msg = match msg { Ok(m) => m, Err(e) => { tracing::warn!(error = %e, "consumer error"); continue; } };
                for (t, p) in consumer.context().revoked() { if t == topics::CDRS_SCORED { agg.revoke(p); } }
                stage.consumed.inc();
                match input.decode(msg.payload().unwrap_or_default()) {
                    Ok(cdr) => agg.add(&cdr, msg.partition(), msg.offset(), now_ms()),
                    Err(e) => {
                        agg.seen(msg.partition(), msg.offset());
                        stage.dead_lettered.with_label_values(&["bad_avro"]).inc();
                        let dl = cdr_kafka::stage::dead_letter(SERVICE, &msg.detach(), "bad_avro", None, e.to_string());
                        let ack = runtime::send(&producer, topics::PIPELINE_DLQ, dl.id().as_bytes(), &dl.to_json()).await?;
                        runtime::await_acks(vec![ack]).await?;
                    }
                }
            }
        }
    }
    runtime::flush(&producer);
    tracing::info!("drained; exiting");
    Ok(())
}
