//! Assembler service: consumes raw switch events from `call-events`, folds
//! them into calls with the pure [`core::Assembler`], produces each closed
//! call (Avro) to `calls.assembled` keyed by the dialed number (so one dialed
//! number always reaches the same enricher instance), and dead-letters
//! malformed events to `call-events.dlq`.
//!
//! Crash and rebalance safety: offsets are committed only up to the first
//! offset of the oldest call still in memory (never inside a call), and only
//! after every produced record was acknowledged. A restart re-reads from
//! there and rebuilds the open calls; calls already emitted are emitted again
//! with the same deterministic id and collapse downstream. Restart cost: the
//! replay covers at most the longest call in progress (bounded by
//! `max_call_secs`) plus the closed-call retention.

pub mod core;
pub mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::runtime::{self, StageConsumer};
use cdr_kafka::{now_ms, CancellationToken, KafkaConfig};
use cdr_model::avro::Codec;
use cdr_model::call::AssembledCall;
use cdr_model::event::SwitchEvent;
use cdr_model::topics;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use serde::Deserialize;

use crate::core::{Assembler, AssemblyConfig, Ingest, Pos};
use crate::metrics::AssemblerMetrics;

pub const SERVICE: &str = "assembler";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default = "default_metrics")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "default_max_call")]
    pub max_call_secs: i64,
    #[serde(default = "default_grace")]
    pub reorder_grace_ms: i64,
    #[serde(default = "default_skew")]
    pub skew_ms: i64,
    #[serde(default = "default_retention")]
    pub closed_retention_secs: i64,
    #[serde(default = "default_commit")]
    pub commit_interval_ms: u64,
}

fn default_metrics() -> SocketAddr {
    "127.0.0.1:9101".parse().unwrap()
}
fn default_max_call() -> i64 {
    4 * 3600
}
fn default_grace() -> i64 {
    2000
}
fn default_skew() -> i64 {
    2000
}
fn default_retention() -> i64 {
    600
}
fn default_commit() -> u64 {
    1000
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        anyhow::ensure!(self.max_call_secs > 0, "max_call_secs must be positive");
        anyhow::ensure!(
            self.reorder_grace_ms >= 0,
            "reorder_grace_ms must not be negative"
        );
        anyhow::ensure!(self.skew_ms >= 0, "skew_ms must not be negative");
        anyhow::ensure!(
            self.closed_retention_secs >= 0,
            "closed_retention_secs must not be negative"
        );
        anyhow::ensure!(
            self.commit_interval_ms > 0,
            "commit_interval_ms must be positive"
        );
        Ok(())
    }

    fn assembly(&self) -> AssemblyConfig {
        AssemblyConfig {
            max_call_ms: self.max_call_secs * 1000,
            reorder_grace_ms: self.reorder_grace_ms,
            skew_ms: self.skew_ms,
            closed_retention_ms: self.closed_retention_secs * 1000,
        }
    }
}

/// Key of an assembled call: the dialed digits without a plan prefix, so the
/// enricher's LRN cache sees each number on one instance only.
pub fn affinity_key(dialed: &str) -> String {
    let d = dialed.trim();
    let d = if let Some(rest) = d.strip_prefix("*4") {
        rest.get(3..).unwrap_or("")
    } else if let Some(rest) = d.strip_prefix("*3") {
        rest.get(1..).unwrap_or("")
    } else {
        d
    };
    let digits: String = d.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.trim_start_matches("00").to_string()
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let stage = StageMetrics::new(SERVICE);
    let m = AssemblerMetrics::register(&stage.registry);
    let (consumer, producer) = runtime::start_stage(
        &config.kafka,
        SERVICE,
        config.metrics_listen,
        &stage,
        &[topics::CALL_EVENTS],
        &shutdown,
    )
    .await?;
    let codec: Codec<AssembledCall> = Codec::new();
    let mut asm = Assembler::new(config.assembly());
    let mut acks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut commit_tick = tokio::time::interval(Duration::from_millis(config.commit_interval_ms));
    let mut last_commit: BTreeMap<(String, i32), i64> = BTreeMap::new();

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = commit_tick.tick() => {
                commit(&consumer, &mut asm, &mut acks, &mut last_commit, &stage, CommitMode::Async).await?;
            }
            _ = tick.tick() => {
                emit_due(&mut asm, &codec, &producer, &m, &mut acks).await?;
                m.open_calls.set(asm.open_calls() as i64);
                m.retained_calls.set(asm.retained_calls() as i64);
            }
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(e) => { tracing::warn!(error = %e, "consumer error"); continue; }
                };
                for (topic, p) in consumer.context().revoked() {
                    if topic == topics::CALL_EVENTS { asm.revoke(p); }
                }
                stage.consumed.inc();
                let pos = Pos { partition: msg.partition(), offset: msg.offset() };
                let payload = msg.payload().unwrap_or_default();
                let rejected = match SwitchEvent::from_json(payload, config.skew_ms) {
                    Err(e) => { asm.skip(pos); Some(e) }
                    Ok(ev) => match asm.ingest(ev, pos, now_ms()) {
                        Ingest::Accepted => None,
                        Ingest::Duplicate => { m.duplicates.inc(); None }
                        Ingest::Rejected(e) => Some(e),
                    },
                };
                if let Some(e) = rejected {
                    let reason = e.reason();
                    tracing::warn!(reason, field = e.field(), partition = pos.partition, offset = pos.offset, error = %e, "dead-lettering event");
                    stage.dead_lettered.with_label_values(&[reason]).inc();
                    let dl = cdr_model::dlq::DeadLetter::new(SERVICE, reason, e.field(), e.to_string(), msg.topic(), pos.partition, pos.offset, msg.key(), payload, now_ms());
                    acks.push(runtime::send(&producer, topics::CALL_EVENTS_DLQ, dl.id().as_bytes(), &dl.to_json()).await?);
                }
            }
        }
    }
    // Drain: emit what is due, wait for acknowledgements, commit synchronously.
    emit_due(&mut asm, &codec, &producer, &m, &mut acks).await?;
    commit(
        &consumer,
        &mut asm,
        &mut acks,
        &mut last_commit,
        &stage,
        CommitMode::Sync,
    )
    .await?;
    runtime::flush(&producer);
    tracing::info!(
        open_calls = asm.open_calls(),
        "drained; open calls will be rebuilt by the next owner"
    );
    Ok(())
}

/// Produces every call the core closed since the last tick.
async fn emit_due(
    asm: &mut Assembler,
    codec: &Codec<AssembledCall>,
    producer: &rdkafka::producer::FutureProducer,
    m: &AssemblerMetrics,
    acks: &mut Vec<rdkafka::producer::DeliveryFuture>,
) -> anyhow::Result<()> {
    for call in asm.tick(now_ms()) {
        m.calls_closed.with_label_values(&[&call.disposition]).inc();
        let payload = codec.encode(&call).context("encoding assembled call")?;
        let key = affinity_key(&call.dialed);
        acks.push(
            runtime::send(producer, topics::CALLS_ASSEMBLED, key.as_bytes(), &payload).await?,
        );
    }
    Ok(())
}

async fn commit(
    consumer: &StageConsumer,
    asm: &mut Assembler,
    acks: &mut Vec<rdkafka::producer::DeliveryFuture>,
    last: &mut BTreeMap<(String, i32), i64>,
    stage: &StageMetrics,
    mode: CommitMode,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let n = runtime::await_acks(std::mem::take(acks)).await?;
    stage.produced.inc_by(n as u64);
    let offsets: BTreeMap<(String, i32), i64> = asm
        .committable()
        .into_iter()
        .map(|(p, o)| ((topics::CALL_EVENTS.to_string(), p), o))
        .collect();
    let changed: BTreeMap<_, _> = offsets
        .into_iter()
        .filter(|(k, v)| last.get(k) != Some(v))
        .collect();
    let sync = matches!(mode, CommitMode::Sync);
    if !changed.is_empty() || sync {
        let all: BTreeMap<_, _> = if sync {
            let mut a = last.clone();
            a.extend(changed.clone());
            a
        } else {
            changed.clone()
        };
        runtime::commit(consumer, &all, mode)?;
        for ((_, p), o) in &all {
            asm.committed(*p, *o);
        }
        stage.commits.inc();
        last.extend(changed);
    }
    if n > 0 {
        stage.batch_latency.observe(started.elapsed().as_secs_f64());
    }
    Ok(())
}
