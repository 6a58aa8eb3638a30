//! KPI service: consumes `cdrs.scored`, folds CDRs into per-minute buckets
//! with the pure [`core::KpiAggregator`], and produces every changed bucket
//! to `kpi.minute` (the sink writes them to ClickHouse `kpi_minute`). Offsets
//! are committed only after the bucket records were acknowledged and never
//! inside a bucket that is still open, so a restart rebuilds identical rows.

pub mod core;
pub mod metrics;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::runtime::Tp;
use cdr_kafka::stage::{of_topic, on_topic, Outbox, Reject, StageError};
use cdr_kafka::{
    now_ms, CancellationToken, CommitPolicy, Message, OwnedMessage, StageConfig, StageDefaults,
};
use cdr_model::avro::Codec;
use cdr_model::call::{KpiMinute, RatedCdr};
use cdr_model::topics;
use serde::Deserialize;

use crate::core::{KpiAggregator, KpiConfig};

pub const SERVICE: &str = "kpi";

/// The KPI service's `[stage]` defaults (metrics on :9105).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults::new(9105);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka, metrics address, batching (shared by every service).
    #[serde(default)]
    pub stage: StageConfig,
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_lateness")]
    pub lateness_secs: i64,
    #[serde(default = "default_retention")]
    pub retention_secs: i64,
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
        self.stage.resolve(STAGE_DEFAULTS)?;
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

/// The aggregator in the stage loop: CDRs fold into buckets, every flush
/// produces the changed buckets, and the commit point never passes a bucket
/// that is still open.
struct KpiStage {
    agg: KpiAggregator,
    input: Codec<RatedCdr>,
    output: Codec<KpiMinute>,
    flush_every: Duration,
    metrics: metrics::KpiMetrics,
}

impl KpiStage {
    fn flush(&mut self, wall_ms: i64, out: &mut Outbox) -> Result<(), StageError> {
        for b in self.agg.flush(wall_ms) {
            let payload = self
                .output
                .encode(&b)
                .context("encoding KPI bucket")
                .map_err(StageError::Fatal)?;
            out.emit(topics::KPI_MINUTE, b.bucket_id.as_bytes(), payload, None);
        }
        self.metrics.buckets.set(self.agg.buckets() as i64);
        Ok(())
    }
}

impl cdr_kafka::Stage for KpiStage {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        for m in batch {
            match self.input.decode(m.payload().unwrap_or_default()) {
                Ok(cdr) => self.agg.add(&cdr, m.partition(), m.offset(), now_ms()),
                Err(e) => {
                    self.agg.seen(m.partition(), m.offset());
                    out.reject(m, &Reject::BadAvro(e.to_string()));
                }
            }
        }
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.flush_every)
    }

    fn tick(&mut self, wall_ms: i64, out: &mut Outbox) -> Result<(), StageError> {
        self.flush(wall_ms, out)
    }

    fn skipped(&mut self, m: &OwnedMessage) {
        self.agg.seen(m.partition(), m.offset());
    }

    fn revoke(&mut self, partitions: &[Tp]) {
        for (_, p) in partitions.iter().filter(|(t, _)| t == topics::CDRS_SCORED) {
            self.agg.revoke(*p);
        }
    }

    fn commit_point(&self) -> BTreeMap<Tp, i64> {
        on_topic(topics::CDRS_SCORED, self.agg.committable())
    }

    fn committed(&mut self, offsets: &BTreeMap<Tp, i64>) {
        for (p, o) in of_topic(topics::CDRS_SCORED, offsets) {
            self.agg.committed(p, o);
        }
    }

    fn drain(&mut self, wall_ms: i64, out: &mut Outbox) -> Result<(), StageError> {
        self.flush(wall_ms, out)
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let settings = config.stage.resolve(STAGE_DEFAULTS)?;
    let stage_metrics = StageMetrics::new(SERVICE);
    let km = metrics::KpiMetrics::register(&stage_metrics.registry);
    let stage = KpiStage {
        agg: KpiAggregator::new(KpiConfig {
            lateness_ms: config.lateness_secs * 1000,
            retention_ms: config.retention_secs * 1000,
            ..Default::default()
        }),
        input: Codec::new(),
        output: Codec::new(),
        flush_every: Duration::from_millis(config.flush_interval_ms),
        metrics: km,
    };
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &[topics::CDRS_SCORED],
        dlq_topic: topics::PIPELINE_DLQ,
        policy: CommitPolicy::StageControlled,
        settings: &settings,
        metrics: stage_metrics,
    };
    Ok(cdr_kafka::run_stage(spec, stage, shutdown).await?)
}
