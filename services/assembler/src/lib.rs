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
//!
//! Closing decisions follow each partition's log clock (see [`core`]), so a
//! replay of the same records closes the same calls with the same events.

pub mod core;
pub mod metrics;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::runtime::Tp;
use cdr_kafka::stage::{of_topic, on_topic, Outbox, StageError};
use cdr_kafka::{
    now_ms, CancellationToken, CommitPolicy, Message, OwnedMessage, StageConfig, StageDefaults,
};
use cdr_model::avro::Codec;
use cdr_model::call::AssembledCall;
use cdr_model::event::SwitchEvent;
use cdr_model::topics;
use serde::Deserialize;

use crate::core::{Assembler, AssemblyConfig, Clock, Ingest, OpenCall, Pos};
use crate::metrics::AssemblerMetrics;

pub const SERVICE: &str = "assembler";

/// The assembler's `[stage]` defaults (metrics on :9101).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults::new(9101);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka, metrics address, batching, input size limit (shared by every service).
    #[serde(default)]
    pub stage: StageConfig,
    #[serde(default = "default_max_call")]
    pub max_call_secs: i64,
    #[serde(default = "default_grace")]
    pub reorder_grace_ms: i64,
    #[serde(default = "default_skew")]
    pub skew_ms: i64,
    #[serde(default = "default_retention")]
    pub closed_retention_secs: i64,
    /// Event timestamps more than this before their record's Kafka timestamp
    /// are refused (`clock_out_of_range`).
    #[serde(default = "default_behind")]
    pub max_clock_behind_secs: i64,
    /// ... or more than this after it.
    #[serde(default = "default_ahead")]
    pub max_clock_ahead_secs: i64,
    /// A partition without records this long lets its clock run on wall time.
    #[serde(default = "default_idle")]
    pub idle_flush_ms: i64,
    /// Open calls per partition before the oldest is closed as stale.
    #[serde(default = "default_open_cap")]
    pub max_open_calls_per_partition: usize,
    /// Distinct events per call before further ones are refused.
    #[serde(default = "default_events_cap")]
    pub max_events_per_call: usize,
    /// Calls open this long are checkpointed to `assembler.open-calls` and
    /// stop holding the commit point back (0 disables checkpoints).
    #[serde(default = "default_checkpoint")]
    pub checkpoint_after_secs: i64,
    /// A call closed as stale (no hangup within `max_call_secs`; answered
    /// ones billed provisionally) stays reopenable this long: its late
    /// hangup makes a complete new version of it.
    #[serde(default = "default_provisional_retention")]
    pub provisional_retention_secs: i64,
}

fn default_provisional_retention() -> i64 {
    24 * 3600
}

fn default_checkpoint() -> i64 {
    300
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
fn default_behind() -> i64 {
    7 * 24 * 3600
}
fn default_ahead() -> i64 {
    15 * 60
}
fn default_idle() -> i64 {
    1000
}
fn default_open_cap() -> usize {
    500_000
}
fn default_events_cap() -> usize {
    64
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.stage.resolve(STAGE_DEFAULTS)?;
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
            self.max_clock_behind_secs >= self.max_call_secs,
            "max_clock_behind_secs must be at least max_call_secs (a cdr record carries its setup time)"
        );
        anyhow::ensure!(
            self.max_clock_ahead_secs > 0,
            "max_clock_ahead_secs must be positive"
        );
        anyhow::ensure!(self.idle_flush_ms > 0, "idle_flush_ms must be positive");
        anyhow::ensure!(
            self.checkpoint_after_secs >= 0,
            "checkpoint_after_secs must not be negative"
        );
        anyhow::ensure!(
            self.provisional_retention_secs >= 0,
            "provisional_retention_secs must not be negative"
        );
        anyhow::ensure!(
            self.max_open_calls_per_partition > 0 && self.max_events_per_call > 0,
            "max_open_calls_per_partition and max_events_per_call must be positive"
        );
        Ok(())
    }

    pub fn assembly(&self) -> AssemblyConfig {
        AssemblyConfig {
            max_call_ms: self.max_call_secs * 1000,
            reorder_grace_ms: self.reorder_grace_ms,
            skew_ms: self.skew_ms,
            closed_retention_ms: self.closed_retention_secs * 1000,
            max_behind_ms: self.max_clock_behind_secs * 1000,
            max_ahead_ms: self.max_clock_ahead_secs * 1000,
            idle_flush_ms: self.idle_flush_ms,
            max_open_calls: self.max_open_calls_per_partition,
            max_events_per_call: self.max_events_per_call,
            checkpoint_after_ms: (self.checkpoint_after_secs > 0)
                .then_some(self.checkpoint_after_secs * 1000),
            provisional_retention_ms: self.provisional_retention_secs * 1000,
        }
    }
}

/// Key of an assembled call: the dialed number without its plan prefix, read
/// by the pipeline's one dial plan (`numbering::dial_key`), so every written
/// form of a number lands on one enricher instance's LRN cache.
pub fn affinity_key(dialed: &str) -> String {
    numbering::dial_key(dialed)
}

/// The assembler in the stage loop (commit point controlled by the core).
struct AssemblerStage {
    asm: Assembler,
    codec: Codec<AssembledCall>,
    skew_ms: i64,
    metrics: AssemblerMetrics,
    kafka: cdr_kafka::KafkaConfig,
    /// Partitions whose checkpoints were restored since they were assigned.
    restored: std::collections::BTreeSet<i32>,
    ticks: u64,
}

/// Checkpoints are looked for every this many ticks (5 s).
const CHECKPOINT_EVERY_TICKS: u64 = 20;

impl AssemblerStage {
    /// Restores the checkpointed open calls of `partition` before any of
    /// its records is folded in.
    async fn restore(&mut self, partition: i32) -> Result<(), StageError> {
        let calls = cdr_kafka::table::TopicTable::restore_partition::<OpenCall>(
            &self.kafka,
            SERVICE,
            topics::ASSEMBLER_OPEN_CALLS,
            partition,
            Duration::from_secs(120),
        )
        .await
        .map_err(StageError::Fatal)?;
        let mut n = 0;
        // Checkpoints are written to the partition of their input partition;
        // one that says otherwise belongs elsewhere.
        for oc in calls.into_iter().filter(|oc| oc.partition == partition) {
            let id = oc.cdr_id.clone();
            if self.asm.restore(oc) {
                n += 1;
            } else {
                tracing::warn!(partition, cdr_id = %id, "checkpoint without events ignored");
            }
        }
        tracing::info!(partition, calls = n, "open calls restored from checkpoints");
        self.metrics.restored_calls.inc_by(n);
        self.restored.insert(partition);
        Ok(())
    }

    fn checkpoint(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        for oc in self.asm.checkpoints_due() {
            let v = serde_json::to_vec(&oc)
                .context("encoding open-call checkpoint")
                .map_err(StageError::Fatal)?;
            if oc.closed_at.is_some() {
                self.metrics.cut_checkpoints.inc();
            } else {
                self.metrics.checkpoints.inc();
            }
            out.emit_to(
                topics::ASSEMBLER_OPEN_CALLS,
                oc.partition,
                oc.cdr_id.into_bytes(),
                Some(v),
            );
        }
        Ok(())
    }

    fn emit(&mut self, calls: Vec<AssembledCall>, out: &mut Outbox) -> Result<(), StageError> {
        for call in calls {
            self.metrics
                .calls_closed
                .with_label_values(&[&call.disposition])
                .inc();
            let payload = self
                .codec
                .encode(&call)
                .context("encoding assembled call")
                .map_err(StageError::Fatal)?;
            out.emit(
                topics::CALLS_ASSEMBLED,
                affinity_key(&call.dialed),
                payload,
                None,
            );
        }
        self.metrics.open_calls.set(self.asm.open_calls() as i64);
        self.metrics
            .retained_calls
            .set(self.asm.retained_calls() as i64);
        Ok(())
    }
}

impl cdr_kafka::Stage for AssemblerStage {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let mut parts: Vec<i32> = batch.iter().map(|m| m.partition()).collect();
        parts.sort_unstable();
        parts.dedup();
        for p in parts {
            if !self.restored.contains(&p) {
                self.restore(p).await?;
            }
        }
        let wall = now_ms();
        for m in batch {
            let pos = Pos {
                partition: m.partition(),
                offset: m.offset(),
            };
            let clock = Clock {
                log_ms: m.timestamp().to_millis().unwrap_or(wall),
                wall_ms: wall,
            };
            match SwitchEvent::from_json(m.payload().unwrap_or_default(), self.skew_ms) {
                Err(e) => {
                    self.asm.skip(pos, wall);
                    out.reject(m, &e);
                }
                // The contract keys events by call_id so that every event of
                // a call reaches one partition. A record keyed otherwise (or
                // not at all) may have siblings elsewhere: it is re-published
                // keyed by its call_id and assembled where that copy lands,
                // so a call is never split into partial CDRs.
                Ok(ev) if m.key() != Some(ev.call_id.as_bytes()) => {
                    self.asm.skip(pos, wall);
                    self.metrics.rekeyed.inc();
                    // Its original log time: the copy's place in its new
                    // partition's clock does not depend on how late this
                    // partition was read.
                    out.republish(topics::CALL_EVENTS, ev.call_id.into_bytes(), m);
                }
                Ok(ev) => match self.asm.ingest(ev, pos, clock) {
                    Ingest::Accepted => {}
                    Ingest::Duplicate => self.metrics.duplicates.inc(),
                    Ingest::Rejected(e) => out.reject(m, &e),
                },
            }
        }
        let closed = self.asm.take_closed();
        self.emit(closed, out)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(250))
    }

    fn tick(&mut self, wall_ms: i64, out: &mut Outbox) -> Result<(), StageError> {
        // Checkpoints of calls forgotten since the last tick: the commit has
        // passed every event of theirs (and every step before this one was
        // flushed), so no restart can need them again.
        for (partition, cdr_id) in self.asm.take_tombstones() {
            self.metrics.tombstones.inc();
            out.emit_to(
                topics::ASSEMBLER_OPEN_CALLS,
                partition,
                cdr_id.into_bytes(),
                None,
            );
        }
        let closed = self.asm.tick(wall_ms);
        self.emit(closed, out)?;
        self.ticks += 1;
        if self.ticks.is_multiple_of(CHECKPOINT_EVERY_TICKS) {
            self.checkpoint(out)?;
        }
        Ok(())
    }

    fn skipped(&mut self, m: &OwnedMessage) {
        self.asm.skip(
            Pos {
                partition: m.partition(),
                offset: m.offset(),
            },
            now_ms(),
        );
    }

    fn revoke(&mut self, partitions: &[Tp]) {
        for (_, p) in partitions.iter().filter(|(t, _)| t == topics::CALL_EVENTS) {
            self.asm.revoke(*p);
            self.restored.remove(p);
        }
    }

    fn commit_point(&self) -> BTreeMap<Tp, i64> {
        on_topic(topics::CALL_EVENTS, self.asm.committable())
    }

    fn committed(&mut self, offsets: &BTreeMap<Tp, i64>) {
        for (p, o) in of_topic(topics::CALL_EVENTS, offsets) {
            self.metrics.commits_confirmed.inc();
            self.asm.committed(p, o);
        }
    }

    fn drain(&mut self, wall_ms: i64, out: &mut Outbox) -> Result<(), StageError> {
        let closed = self.asm.tick(wall_ms);
        self.emit(closed, out)?;
        tracing::info!(
            open_calls = self.asm.open_calls(),
            "open calls will be rebuilt by the next owner"
        );
        Ok(())
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let settings = config.stage.resolve(STAGE_DEFAULTS)?;
    let stage_metrics = StageMetrics::new(SERVICE);
    let m = AssemblerMetrics::register(&stage_metrics.registry);
    // Checkpoint partition i holds the open calls of input partition i.
    let (inputs, checkpoints) = (
        cdr_kafka::table::TopicTable::partition_count(
            &settings.kafka,
            SERVICE,
            topics::CALL_EVENTS,
        )?,
        cdr_kafka::table::TopicTable::partition_count(
            &settings.kafka,
            SERVICE,
            topics::ASSEMBLER_OPEN_CALLS,
        )?,
    );
    anyhow::ensure!(
        inputs == checkpoints,
        "{} has {checkpoints} partitions but {} has {inputs}: they must match (partition i checkpoints input partition i)",
        topics::ASSEMBLER_OPEN_CALLS,
        topics::CALL_EVENTS
    );
    let stage = AssemblerStage {
        asm: Assembler::new(config.assembly()),
        codec: Codec::new(),
        skew_ms: config.skew_ms,
        metrics: m,
        kafka: settings.kafka.clone(),
        restored: Default::default(),
        ticks: 0,
    };
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &[topics::CALL_EVENTS],
        dlq_topic: topics::CALL_EVENTS_DLQ,
        policy: CommitPolicy::StageControlled,
        settings: &settings,
        metrics: stage_metrics,
    };
    Ok(cdr_kafka::run_stage(spec, stage, shutdown).await?)
}
