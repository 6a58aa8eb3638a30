//! KPI service: consumes `cdrs.scored` and turns every CDR into its KPI
//! contribution ([`core::kpi_call`]) on `kpi.calls`, keyed by `cdr_id`.
//! The sink writes them to ClickHouse `kpi_calls`; `kpi_minute_final` and
//! the hour/day rollups aggregate the deduplicated rows. The service keeps
//! no state, so a restart, a rebalance, a second instance or a replay
//! rewrites the same rows and changes no KPI.

pub mod core;
pub mod metrics;

use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{Outbox, Reject, Rejection, StageError};
use cdr_kafka::{
    CancellationToken, CommitPolicy, Message, OwnedMessage, StageConfig, StageDefaults,
};
use cdr_model::avro::Codec;
use cdr_model::call::{KpiCall, RatedCdr};
use cdr_model::topics;
use serde::Deserialize;

use crate::core::{BadMoney, KpiConfig};

pub const SERVICE: &str = "kpi";

/// The KPI service's `[stage]` defaults (metrics on :9105).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults::new(9105);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka, metrics address, batching (shared by every service).
    #[serde(default)]
    pub stage: StageConfig,
    /// Answered calls shorter than this count as short calls.
    #[serde(default = "default_short_call")]
    pub short_call_ms: i64,
}

fn default_short_call() -> i64 {
    6_000
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.stage.resolve(STAGE_DEFAULTS)?;
        anyhow::ensure!(
            self.short_call_ms >= 0,
            "short_call_ms must not be negative"
        );
        Ok(())
    }
}

impl Rejection for BadMoney {
    fn reason(&self) -> &'static str {
        "bad_decimal"
    }
    fn field(&self) -> Option<&str> {
        Some(self.field)
    }
}

struct KpiStage {
    cfg: KpiConfig,
    input: Codec<RatedCdr>,
    output: Codec<KpiCall>,
    metrics: metrics::KpiMetrics,
}

impl cdr_kafka::Stage for KpiStage {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        for m in batch {
            let cdr = match self.input.decode(m.payload().unwrap_or_default()) {
                Ok(c) => c,
                Err(e) => {
                    out.reject(m, &Reject::BadAvro(e.to_string()));
                    continue;
                }
            };
            let row = match core::kpi_call(&cdr, &self.cfg) {
                Ok(r) => r,
                Err(e) => {
                    out.reject(m, &e);
                    continue;
                }
            };
            match self.output.encode(&row) {
                Ok(payload) => {
                    if row.answered {
                        self.metrics.answered.inc();
                    }
                    out.emit(topics::KPI_CALLS, row.cdr_id.as_bytes(), payload, Some(m));
                }
                Err(e) => out.reject(m, &Reject::EncodeFailed(e.to_string())),
            }
        }
        Ok(())
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let settings = config.stage.resolve(STAGE_DEFAULTS)?;
    let stage_metrics = StageMetrics::new(SERVICE);
    let km = metrics::KpiMetrics::register(&stage_metrics.registry);
    let stage = KpiStage {
        cfg: KpiConfig {
            short_call_ms: config.short_call_ms,
        },
        input: Codec::new(),
        output: Codec::new(),
        metrics: km,
    };
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &[topics::CDRS_SCORED],
        dlq_topic: topics::PIPELINE_DLQ,
        policy: CommitPolicy::AfterEachBatch,
        settings: &settings,
        metrics: stage_metrics,
    };
    Ok(cdr_kafka::run_stage(spec, stage, shutdown).await?)
}
