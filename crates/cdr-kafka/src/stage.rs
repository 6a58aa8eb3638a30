//! The one consume → process → produce → await acks → commit loop every
//! service runs ([`run_stage`]). Services plug a [`Stage`] into it; none has
//! a loop of its own.
//!
//! Two commit policies:
//! * [`CommitPolicy::AfterEachBatch`]: a batch's input offsets are committed
//!   once every output it caused is acknowledged (enricher, rater, detector,
//!   sink);
//! * [`CommitPolicy::StageControlled`]: the stage folds records into state
//!   that outlives a batch (calls, buckets) and says how far the input may be
//!   committed ([`Stage::commit_point`]); the loop commits that, every
//!   `commit_interval`, after every output so far is acknowledged.
//!
//! What the loop guarantees, whatever the stage:
//! * a record larger than `max_input_bytes` is dead-lettered (`oversized`)
//!   with a bounded prefix, its length and SHA-256, and never reaches the
//!   stage;
//! * an output the broker refuses for the record itself (too large, invalid)
//!   is replaced by a dead letter naming the input it came from; any other
//!   produce failure after librdkafka's own retries ends the service with an
//!   error (its successor replays from the last commit);
//! * a revocation is a barrier: records of revoked partitions not yet
//!   processed are dropped, the stage drops their state, and their offsets
//!   are never committed by this instance again — at shutdown either;
//! * commit failures are classified ([`crate::runtime::CommitClass`]); a
//!   fatal one, or too many retriable ones in a row, ends the service;
//! * shutdown (the token) stops consuming, drains what the stage has due,
//!   waits for acknowledgements and commits synchronously.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::producer::DeliveryFuture;
use cdr_model::dlq::DeadLetter;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::TopicPartitionList;
use tokio_util::sync::CancellationToken;

use crate::config::StageSettings;
use crate::metrics::StageMetrics;
use crate::runtime::{self, CommitClass, ProduceClass, SendError, StageConsumer, Tp};

/// A typed reason a record was refused: the stable label written to the
/// dead letter's `reason` column and the field it is about.
pub trait Rejection: std::fmt::Display {
    fn reason(&self) -> &'static str;
    fn field(&self) -> Option<&str> {
        None
    }
}

/// Refusals the loop itself makes, and the decoding failures every Avro
/// stage shares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("record of {len} bytes exceeds max_input_bytes {max}")]
    Oversized { len: usize, max: usize },
    #[error("output to {topic} refused by the broker: {message}")]
    OutputRefused { topic: String, message: String },
    #[error("undecodable Avro: {0}")]
    BadAvro(String),
    #[error("cannot encode output: {0}")]
    EncodeFailed(String),
}

impl Rejection for Reject {
    fn reason(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::OutputRefused { .. } => "output_refused",
            Self::BadAvro(_) => "bad_avro",
            Self::EncodeFailed(_) => "encode_failed",
        }
    }
}

impl Rejection for cdr_model::event::EventError {
    fn reason(&self) -> &'static str {
        cdr_model::event::EventError::reason(self)
    }
    fn field(&self) -> Option<&str> {
        cdr_model::event::EventError::field(self)
    }
}

/// Why the loop stopped with an error (the service then exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Produce(#[from] SendError),
    #[error("delivery to {topic} failed: {source}")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("{0}")]
    Commit(String),
    #[error("creating Kafka clients: {0:#}")]
    Setup(anyhow::Error),
    /// A stage's own unrecoverable error.
    #[error("{0:#}")]
    Fatal(anyhow::Error),
    /// Shutdown arrived while the stage was still writing a batch (e.g. the
    /// sink retrying a ClickHouse insert): the batch stays uncommitted and is
    /// redelivered to the next owner. Not an error for the exit code.
    #[error("shutdown while a batch was being written; left uncommitted")]
    Interrupted,
}

/// The dead letter of input record `m`, refused by `service` for `why`.
pub fn dead_letter_for(service: &str, m: &OwnedMessage, why: &dyn Rejection) -> DeadLetter {
    DeadLetter::new(
        service,
        why.reason(),
        why.field(),
        why.to_string(),
        m.topic(),
        m.partition(),
        m.offset(),
        m.key(),
        m.payload().unwrap_or_default(),
        crate::now_ms(),
    )
    .with_source_ts(m.timestamp().to_millis())
}

/// Where an output came from, so a refused output can be dead-lettered
/// against its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
}

impl Origin {
    pub fn of(m: &OwnedMessage) -> Self {
        Origin {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub topic: String,
    /// An explicit partition (else the key's).
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    /// `None`: a tombstone (deletes the key from a compacted topic).
    pub payload: Option<Vec<u8>>,
    pub origin: Option<Origin>,
    /// The record's log time (else the producer's clock).
    pub timestamp_ms: Option<i64>,
}

/// Outputs of a stage on their way to the broker. `emit` and `reject`
/// buffer; `flush` hands everything to the producer and waits for every
/// acknowledgement.
pub struct Outbox {
    service: &'static str,
    dlq_topic: &'static str,
    producer: runtime::Producer,
    metrics: StageMetrics,
    buf: Vec<Output>,
    /// Acknowledged records since the outbox was made.
    delivered: u64,
}

impl Outbox {
    pub fn new(
        service: &'static str,
        dlq_topic: &'static str,
        producer: runtime::Producer,
        metrics: StageMetrics,
    ) -> Self {
        Outbox {
            service,
            dlq_topic,
            producer,
            metrics,
            buf: Vec::new(),
            delivered: 0,
        }
    }

    pub fn emit(
        &mut self,
        topic: &str,
        key: impl Into<Vec<u8>>,
        payload: Vec<u8>,
        origin: Option<&OwnedMessage>,
    ) {
        self.buf.push(Output {
            topic: topic.to_string(),
            partition: None,
            key: key.into(),
            payload: Some(payload),
            origin: origin.map(Origin::of),
            timestamp_ms: None,
        });
    }

    /// Re-publishes input record `m` (its payload) under another key,
    /// keeping its log time: the copy stands where the original stood in
    /// the log's time, however late it is re-published.
    pub fn republish(&mut self, topic: &str, key: impl Into<Vec<u8>>, m: &OwnedMessage) {
        self.buf.push(Output {
            topic: topic.to_string(),
            partition: None,
            key: key.into(),
            payload: Some(m.payload().unwrap_or_default().to_vec()),
            origin: Some(Origin::of(m)),
            timestamp_ms: m.timestamp().to_millis(),
        });
    }

    /// A record for an explicit partition, or a tombstone (`payload: None`).
    pub fn emit_to(
        &mut self,
        topic: &str,
        partition: i32,
        key: impl Into<Vec<u8>>,
        payload: Option<Vec<u8>>,
    ) {
        self.buf.push(Output {
            topic: topic.to_string(),
            partition: Some(partition),
            key: key.into(),
            payload,
            origin: None,
            timestamp_ms: None,
        });
    }

    /// Dead-letters `m` for `why`.
    pub fn reject(&mut self, m: &OwnedMessage, why: &dyn Rejection) {
        let dl = dead_letter_for(self.service, m, why);
        self.dead_letter(dl, Some(m));
    }

    /// The cluster's name of a plain topic name: dead letters carry it, so
    /// they point at the record an operator can actually re-read, and
    /// pipelines sharing a cluster under different prefixes never share a
    /// dead-letter id.
    pub fn cluster_topic(&self, plain: &str) -> String {
        self.producer.topic(plain).into_owned()
    }

    /// Queues a ready-made dead letter (its `topic` a plain name).
    pub fn dead_letter(&mut self, mut dl: DeadLetter, origin: Option<&OwnedMessage>) {
        dl.topic = self.cluster_topic(&dl.topic);
        tracing::warn!(
            service = self.service,
            reason = %dl.reason,
            field = dl.field.as_deref(),
            topic = %dl.topic,
            partition = dl.partition,
            offset = dl.offset,
            message = %dl.message,
            "dead-lettering record"
        );
        self.metrics
            .dead_lettered
            .with_label_values(&[dl.reason.as_str()])
            .inc();
        let topic = self.dlq_topic;
        self.emit(topic, dl.id().into_bytes(), dl.to_json(), origin);
    }

    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    async fn refused(&mut self, o: &Output, e: &KafkaError) -> Result<DeliveryFuture, StageError> {
        self.metrics.outputs_refused.inc();
        let why = Reject::OutputRefused {
            topic: o.topic.clone(),
            message: e.to_string(),
        };
        let (topic, partition, offset, key) = match &o.origin {
            Some(g) => (g.topic.as_str(), g.partition, g.offset, g.key.as_deref()),
            None => (o.topic.as_str(), -1, -1, Some(o.key.as_slice())),
        };
        let topic = &self.cluster_topic(topic);
        let dl = DeadLetter::new(
            self.service,
            why.reason(),
            None,
            why.to_string(),
            topic,
            partition,
            offset,
            key,
            o.payload.as_deref().unwrap_or_default(),
            crate::now_ms(),
        );
        tracing::error!(service = self.service, topic = %o.topic, bytes = o.payload.as_ref().map_or(0, Vec::len), error = %e, "output refused by the broker; dead-lettered instead");
        self.metrics
            .dead_lettered
            .with_label_values(&[why.reason()])
            .inc();
        Ok(runtime::enqueue(
            &self.producer,
            self.dlq_topic,
            dl.id().as_bytes(),
            &dl.to_json(),
            Some(&self.metrics.produce_waits),
        )
        .await?)
    }

    /// Produces everything buffered and waits for every acknowledgement.
    /// Outputs refused for their own content become dead letters; any other
    /// failure is returned (the caller must not commit).
    pub async fn flush(&mut self) -> Result<(), StageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let outs = std::mem::take(&mut self.buf);
        let mut acks: Vec<(DeliveryFuture, usize)> = Vec::with_capacity(outs.len());
        let mut fallbacks: Vec<DeliveryFuture> = Vec::new();
        for (i, o) in outs.iter().enumerate() {
            match runtime::enqueue_record(
                &self.producer,
                &o.topic,
                o.partition,
                &o.key,
                o.payload.as_deref(),
                o.timestamp_ms,
                Some(&self.metrics.produce_waits),
            )
            .await
            {
                Ok(f) => acks.push((f, i)),
                Err(e) if e.class == ProduceClass::RecordCaused => {
                    fallbacks.push(self.refused(o, &e.source).await?)
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (futs, idx): (Vec<_>, Vec<_>) = acks.into_iter().unzip();
        for (r, i) in futures::future::join_all(futs).await.into_iter().zip(idx) {
            let o = &outs[i];
            match r {
                Ok(Ok(_)) => self.delivered += 1,
                Ok(Err((e, _)))
                    if runtime::classify_produce(e.rdkafka_error_code())
                        == ProduceClass::RecordCaused =>
                {
                    fallbacks.push(self.refused(o, &e).await?)
                }
                Ok(Err((e, _))) => {
                    return Err(StageError::Delivery {
                        topic: o.topic.clone(),
                        source: e,
                    })
                }
                Err(_) => {
                    return Err(StageError::Delivery {
                        topic: o.topic.clone(),
                        source: KafkaError::Canceled,
                    })
                }
            }
        }
        for r in futures::future::join_all(fallbacks).await {
            match r {
                Ok(Ok(_)) => self.delivered += 1,
                Ok(Err((e, _))) => {
                    return Err(StageError::Delivery {
                        topic: self.dlq_topic.to_string(),
                        source: e,
                    })
                }
                Err(_) => {
                    return Err(StageError::Delivery {
                        topic: self.dlq_topic.to_string(),
                        source: KafkaError::Canceled,
                    })
                }
            }
        }
        self.metrics.produced.inc_by(outs.len() as u64);
        Ok(())
    }
}

/// How the loop decides what to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPolicy {
    AfterEachBatch,
    StageControlled,
}

/// A service's logic, plugged into [`run_stage`].
pub trait Stage: Send {
    /// Handles one batch, in partition order. Outputs and rejections go to
    /// `out`; the loop flushes it afterwards (a stage may flush earlier when
    /// one output must be acknowledged before the next is produced).
    fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> impl Future<Output = Result<(), StageError>> + Send;

    /// Time-driven work, every [`Stage::tick_interval`].
    fn tick(&mut self, _wall_ms: i64, _out: &mut Outbox) -> Result<(), StageError> {
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// The loop dead-lettered this record itself (e.g. oversized); a stage
    /// that tracks offsets must count it as consumed.
    fn skipped(&mut self, _m: &OwnedMessage) {}

    /// These partitions were revoked: drop their state.
    fn revoke(&mut self, _partitions: &[Tp]) {}

    /// `StageControlled` only: the next offset to commit per partition.
    fn commit_point(&self) -> BTreeMap<Tp, i64> {
        BTreeMap::new()
    }

    /// The broker confirmed these commits.
    fn committed(&mut self, _offsets: &BTreeMap<Tp, i64>) {}

    /// Shutdown: emit whatever is due before the final commit.
    fn drain(&mut self, _wall_ms: i64, _out: &mut Outbox) -> Result<(), StageError> {
        Ok(())
    }
}

/// Everything [`run_stage`] needs besides the stage.
pub struct StageSpec<'a> {
    pub service: &'static str,
    pub topics: &'a [&'a str],
    pub dlq_topic: &'static str,
    pub policy: CommitPolicy,
    pub settings: &'a StageSettings,
    pub metrics: StageMetrics,
}

/// Records consumed but not yet processed. Kept outside the select so that
/// a tick or a revocation never loses a half-collected batch.
struct Pending {
    msgs: Vec<OwnedMessage>,
    first_at: Option<tokio::time::Instant>,
}

/// Waits for records until `max` are pending or `linger` passed since the
/// first one. Cancel-safe: every record is in `p` as soon as it is received.
async fn fill(
    consumer: &StageConsumer,
    p: &mut Pending,
    max: usize,
    linger: Duration,
) -> Result<(), KafkaError> {
    loop {
        if p.msgs.len() >= max {
            return Ok(());
        }
        let next = match p.first_at {
            None => consumer.recv().await.map(Some),
            Some(t) => match tokio::time::timeout_at(t + linger, consumer.recv()).await {
                Ok(r) => r.map(Some),
                Err(_) => Ok(None),
            },
        };
        match next? {
            Some(m) => {
                p.first_at.get_or_insert_with(tokio::time::Instant::now);
                p.msgs.push(plain(consumer, m.detach()));
            }
            None => return Ok(()),
        }
    }
}

/// The record under its plain topic name (see [`runtime`] on prefixes), so
/// stages, dead letters and commit points never see the prefix.
fn plain(consumer: &StageConsumer, m: OwnedMessage) -> OwnedMessage {
    let ctx = consumer.context();
    if ctx.prefix.is_empty() {
        return m;
    }
    let topic = ctx.plain(m.topic()).to_string();
    OwnedMessage::new(
        m.payload().map(<[u8]>::to_vec),
        m.key().map(<[u8]>::to_vec),
        topic,
        m.timestamp(),
        m.partition(),
        m.offset(),
        m.headers().cloned(),
    )
}

/// Per-partition offsets of one topic, keyed as the loop keys them (for
/// stages that consume a single topic and track partitions only).
pub fn on_topic(topic: &str, offsets: BTreeMap<i32, i64>) -> BTreeMap<Tp, i64> {
    offsets
        .into_iter()
        .map(|(p, o)| ((topic.to_string(), p), o))
        .collect()
}

/// The entries of `topic` in a loop-keyed map, by partition.
pub fn of_topic<'a, V: Copy + 'a>(
    topic: &'a str,
    entries: impl IntoIterator<Item = (&'a Tp, &'a V)> + 'a,
) -> impl Iterator<Item = (i32, V)> + 'a {
    entries
        .into_iter()
        .filter(move |((t, _), _)| t == topic)
        .map(|((_, p), v)| (*p, *v))
}

/// Next offsets to commit for fully processed records.
pub fn batch_offsets(batch: &[OwnedMessage]) -> BTreeMap<Tp, i64> {
    let mut out: BTreeMap<Tp, i64> = BTreeMap::new();
    for m in batch {
        let e = out
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    out
}

fn tpl(
    consumer: &StageConsumer,
    offsets: &BTreeMap<Tp, i64>,
) -> Result<TopicPartitionList, StageError> {
    consumer
        .context()
        .commit_list(offsets)
        .map_err(|e| StageError::Commit(format!("building commit list: {e}")))
}

struct Committer<'a> {
    consumer: &'a StageConsumer,
    metrics: &'a StageMetrics,
    /// Last offsets handed to the broker, per owned partition.
    last: BTreeMap<Tp, i64>,
}

impl Committer<'_> {
    /// Commits the offsets that changed, for partitions this instance owns.
    fn commit(&mut self, offsets: BTreeMap<Tp, i64>) -> Result<(), StageError> {
        let own = &self.consumer.context().ownership;
        let changed: BTreeMap<Tp, i64> = offsets
            .into_iter()
            .filter(|(tp, o)| own.owns(tp) && self.last.get(tp) != Some(o))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        match runtime::commit_async(self.consumer, &tpl(self.consumer, &changed)?) {
            Ok(()) => {
                self.metrics.commits.inc();
                self.last.extend(changed);
                Ok(())
            }
            Err(e) => {
                let class = own.commit_result(&Err(e.clone()), &changed);
                self.count(class);
                match class {
                    Some(CommitClass::Fatal) => {
                        Err(StageError::Commit(format!("offset commit refused: {e}")))
                    }
                    _ => {
                        tracing::warn!(error = %e, "offset commit not issued; the next one carries these offsets");
                        Ok(())
                    }
                }
            }
        }
    }

    fn count(&self, class: Option<CommitClass>) {
        if let Some(c) = class {
            self.metrics
                .commit_failures
                .with_label_values(&[c.as_str()])
                .inc();
        }
    }

    fn revoke(&mut self, tps: &[Tp]) {
        for tp in tps {
            self.last.remove(tp);
        }
    }

    /// The shutdown commit: synchronous, owned partitions only, retried
    /// briefly when the coordinator is away.
    fn commit_final(&mut self, offsets: BTreeMap<Tp, i64>) -> Result<(), StageError> {
        let own = &self.consumer.context().ownership;
        let mut all = self.last.clone();
        all.extend(offsets);
        let all: BTreeMap<Tp, i64> = all.into_iter().filter(|(tp, _)| own.owns(tp)).collect();
        if all.is_empty() {
            return Ok(());
        }
        for attempt in 0..3 {
            let r = self
                .consumer
                .commit(&tpl(self.consumer, &all)?, CommitMode::Sync);
            let class = own.commit_result(&r, &all);
            self.count(class);
            match (class, &r) {
                (None, _) => {
                    self.metrics.commits.inc();
                    return Ok(());
                }
                (Some(CommitClass::Rebalance), Err(e)) => {
                    tracing::warn!(error = %e, "final commit refused by a rebalance; the new owner replays");
                    return Ok(());
                }
                (Some(CommitClass::Retriable), Err(e)) if attempt < 2 => {
                    tracing::warn!(error = %e, "final commit failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                (_, Err(e)) => return Err(StageError::Commit(format!("final commit: {e}"))),
                (Some(_), Ok(())) => unreachable!("a successful commit has no failure class"),
            }
        }
        Ok(())
    }
}

/// Serves `/metrics` on `settings.metrics_listen`, runs `stage` until
/// `shutdown`, then drains and commits. Returns an error only for failures
/// that must end the service.
pub async fn run_stage<S: Stage>(
    spec: StageSpec<'_>,
    stage: S,
    shutdown: CancellationToken,
) -> Result<(), StageError> {
    let producer =
        runtime::producer(&spec.settings.kafka, spec.service).map_err(StageError::Setup)?;
    run_stage_with_producer(spec, stage, producer, shutdown).await
}

/// [`run_stage`] with a producer the service also uses elsewhere (the
/// ingest service's HTTP endpoint shares it: one Kafka client less, and
/// an idle librdkafka client is not free).
pub async fn run_stage_with_producer<S: Stage>(
    spec: StageSpec<'_>,
    mut stage: S,
    producer: runtime::Producer,
    shutdown: CancellationToken,
) -> Result<(), StageError> {
    let StageSpec {
        service,
        topics,
        dlq_topic,
        policy,
        settings,
        metrics,
    } = spec;
    crate::metrics::serve(settings.metrics_listen, metrics.clone(), shutdown.clone())
        .await
        .map_err(|e| {
            StageError::Setup(e.context(format!("binding metrics on {}", settings.metrics_listen)))
        })?;
    let consumer = runtime::consumer(&settings.kafka, service, topics, &metrics)
        .await
        .map_err(StageError::Setup)?;
    let ownership = consumer.context().ownership.clone();
    let mut out = Outbox::new(service, dlq_topic, producer.clone(), metrics.clone());
    let mut committer = Committer {
        consumer: &consumer,
        metrics: &metrics,
        last: BTreeMap::new(),
    };
    let has_tick = stage.tick_interval().is_some();
    let mut tick =
        tokio::time::interval(stage.tick_interval().unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let controlled = policy == CommitPolicy::StageControlled;
    let mut commit_tick = tokio::time::interval(settings.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Pending {
        msgs: Vec::new(),
        first_at: None,
    };
    let max_input = settings.max_input_bytes;
    // The loop turns at least this often, idle or not (liveness).
    let mut heartbeat = tokio::time::interval(Duration::from_millis(crate::metrics::HEARTBEAT_MS));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let result: Result<(), StageError> = async {
        loop {
            metrics.health.turned();
            if let Some(f) = ownership.take_fatal() {
                return Err(StageError::Commit(f));
            }
            let confirmed = ownership.take_confirmed();
            if !confirmed.is_empty() {
                stage.committed(&confirmed);
            }
            enum Step {
                Stop,
                Revoked,
                Tick,
                Commit,
                Batch(Result<(), KafkaError>),
                Heartbeat,
            }
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Step::Stop,
                _ = ownership.revoked_notify.notified() => Step::Revoked,
                _ = tick.tick(), if has_tick => Step::Tick,
                _ = commit_tick.tick(), if controlled => Step::Commit,
                r = fill(&consumer, &mut pending, settings.batch_max_records, settings.batch_linger) => Step::Batch(r),
                _ = heartbeat.tick() => Step::Heartbeat,
            };
            match step {
                Step::Stop => return Ok(()),
                Step::Heartbeat => {}
                Step::Revoked => {
                    let revoked = ownership.take_revoked();
                    if !revoked.is_empty() {
                        pending.msgs.retain(|m| {
                            !revoked
                                .iter()
                                .any(|(t, p)| m.topic() == t && m.partition() == *p)
                        });
                        if pending.msgs.is_empty() {
                            pending.first_at = None;
                        }
                        stage.revoke(&revoked);
                        committer.revoke(&revoked);
                    }
                }
                Step::Tick => {
                    stage.tick(crate::now_ms(), &mut out)?;
                    out.flush().await?;
                }
                Step::Commit => {
                    out.flush().await?;
                    committer.commit(stage.commit_point())?;
                }
                Step::Batch(Err(e)) => {
                    // Broker or network trouble: librdkafka reconnects by itself.
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Step::Batch(Ok(())) => {
                    // A revocation seen while this batch was collected is
                    // handled first: its records must not be processed.
                    let revoked = ownership.take_revoked();
                    let mut batch = std::mem::take(&mut pending.msgs);
                    pending.first_at = None;
                    if !revoked.is_empty() {
                        batch.retain(|m| {
                            !revoked
                                .iter()
                                .any(|(t, p)| m.topic() == t && m.partition() == *p)
                        });
                        stage.revoke(&revoked);
                        committer.revoke(&revoked);
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    let started = Instant::now();
                    metrics.consumed.inc_by(batch.len() as u64);
                    let offsets = batch_offsets(&batch);
                    let (fit, oversized): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .partition(|m| m.payload().map_or(0, <[u8]>::len) <= max_input);
                    for m in &oversized {
                        let len = m.payload().map_or(0, <[u8]>::len);
                        out.reject(m, &Reject::Oversized { len, max: max_input });
                        stage.skipped(m);
                    }
                    if !fit.is_empty() {
                        stage.process(&fit, &mut out).await?;
                    }
                    out.flush().await?;
                    if !controlled {
                        committer.commit(offsets)?;
                    }
                    metrics
                        .batch_latency
                        .observe(started.elapsed().as_secs_f64());
                }
            }
        }
    }
    .await;

    match result {
        Ok(()) => {}
        Err(StageError::Interrupted) => {
            tracing::warn!(
                service,
                "interrupted mid-batch; exiting without committing it"
            );
            let _ = runtime::flush(&producer);
            return Ok(());
        }
        Err(e) => {
            tracing::error!(service, error = %e, "stage failed; exiting without committing");
            return Err(e);
        }
    }
    // Drain: records collected but not processed stay uncommitted (the next
    // owner reads them); what the stage has due is emitted and acknowledged.
    stage.drain(crate::now_ms(), &mut out)?;
    out.flush().await?;
    if let Err(e) = runtime::flush(&producer) {
        return Err(StageError::Delivery {
            topic: "(flush)".into(),
            source: e,
        });
    }
    let final_offsets = if controlled {
        stage.commit_point()
    } else {
        BTreeMap::new()
    };
    committer.commit_final(final_offsets)?;
    tracing::info!(service, "drained and committed; exiting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A re-published record keeps its input's log time; other outputs
    /// take the producer's clock.
    #[test]
    fn republish_keeps_the_log_time() {
        let cfg = crate::KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            ..Default::default()
        };
        let producer = runtime::producer(&cfg, "test").unwrap();
        let mut out = Outbox::new(
            "assembler",
            "pipeline.dlq",
            producer,
            StageMetrics::new("stage_test"),
        );
        let m = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"lb-1".to_vec()),
            "call-events".into(),
            rdkafka::Timestamp::CreateTime(1_700_000_000_123),
            2,
            7,
            None,
        );
        out.republish("call-events", b"call-1".to_vec(), &m);
        out.emit("calls.assembled", b"k".to_vec(), b"x".to_vec(), Some(&m));
        assert_eq!(out.buf[0].timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(out.buf[0].key, b"call-1");
        assert_eq!(out.buf[0].payload.as_deref(), Some(&b"{}"[..]));
        assert_eq!(out.buf[1].timestamp_ms, None);
    }

    /// A dead letter keeps its record's own time, so `cdrctl dlq replay`
    /// can give it back; a record without one keeps none.
    #[test]
    fn a_dead_letter_records_its_source_timestamp() {
        let m = |ts| {
            OwnedMessage::new(
                Some(b"{".to_vec()),
                Some(b"k".to_vec()),
                "call-events".into(),
                ts,
                3,
                42,
                None,
            )
        };
        let why = Reject::BadAvro("x".into());
        let dl = dead_letter_for(
            "enricher",
            &m(rdkafka::Timestamp::CreateTime(1_700_000_000_123)),
            &why,
        );
        assert_eq!(dl.source_ts_ms, Some(1_700_000_000_123));
        assert_eq!(
            (dl.topic.as_str(), dl.partition, dl.offset),
            ("call-events", 3, 42)
        );
        assert_eq!(dl.payload(), b"{");
        let none = dead_letter_for("enricher", &m(rdkafka::Timestamp::NotAvailable), &why);
        assert_eq!(none.source_ts_ms, None);
        // Older dead letters (no field) still parse.
        let mut v: serde_json::Value = serde_json::from_slice(&none.to_json()).unwrap();
        v.as_object_mut().unwrap().remove("source_ts_ms");
        let back: DeadLetter = serde_json::from_value(v).unwrap();
        assert_eq!(back.source_ts_ms, None);
    }
}
