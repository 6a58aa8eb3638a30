//! Kafka connections with the settings at-least-once needs (manual commits,
//! idempotent producer, acks=all), the consumer context that tracks which
//! partitions this instance owns and which commits succeeded, and the
//! classification of Kafka errors into what the stage loop does about them.
//!
//! Only [`crate::stage`] consumes from a group; `cdrctl` and tests use the
//! producer helpers here to publish.
//!
//! This is also the one place topic names cross into Kafka: with a
//! `topic_prefix` configured, every name is prefixed on the way out
//! (subscribe, produce, commit) and stripped on the way in (assignments,
//! records), so services only ever see the plain names of
//! `cdr_model::topics`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{FutureRecord, Producer as _};

pub use crate::producer::{AckProducer, DeliveryFuture};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

use crate::config::KafkaConfig;
use crate::metrics::StageMetrics;

/// A topic and partition.
pub type Tp = (String, i32);

/// What to do about a failed offset commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitClass {
    /// The group moved on (rebalance, fenced or unknown member): this
    /// instance no longer owns the partitions; their new owner replays from
    /// the last good commit and deterministic ids absorb the repeats.
    Rebalance,
    /// Coordinator or network trouble: the next commit carries the same or
    /// newer offsets.
    Retriable,
    /// Authorisation, configuration or protocol errors: retrying cannot
    /// help; the service exits non-zero so its supervisor sees it.
    Fatal,
}

impl CommitClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rebalance => "rebalance",
            Self::Retriable => "retriable",
            Self::Fatal => "fatal",
        }
    }
}

/// Classifies a commit error code.
pub fn classify_commit(code: Option<RDKafkaErrorCode>) -> CommitClass {
    use RDKafkaErrorCode as C;
    match code {
        Some(
            C::RebalanceInProgress
            | C::IllegalGeneration
            | C::UnknownMemberId
            | C::FencedInstanceId
            | C::Fenced
            | C::MemberIdRequired,
        ) => CommitClass::Rebalance,
        Some(
            C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::CoordinatorLoadInProgress
            | C::WaitingForCoordinator
            | C::RequestTimedOut
            | C::NetworkException
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::TimedOutQueue
            | C::BrokerNotAvailable
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend,
        ) => CommitClass::Retriable,
        _ => CommitClass::Fatal,
    }
}

/// What to do about a record the producer could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceClass {
    /// The record itself is refused (too large, invalid): retrying the same
    /// bytes can never succeed, so it is replaced by a dead letter.
    RecordCaused,
    /// Anything else after librdkafka's own retries (it retries transient
    /// errors until `message.timeout.ms`): the service exits non-zero and
    /// its successor replays from the last commit.
    Fatal,
}

pub fn classify_produce(code: Option<RDKafkaErrorCode>) -> ProduceClass {
    use RDKafkaErrorCode as C;
    match code {
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidRecord
            | C::InvalidTimestamp
            | C::InvalidMessage,
        ) => ProduceClass::RecordCaused,
        _ => ProduceClass::Fatal,
    }
}

/// Partition ownership and commit outcomes, shared between the consumer
/// context (librdkafka's callbacks, called from inside `recv`) and the stage
/// loop.
#[derive(Default)]
pub struct Ownership {
    inner: Mutex<OwnershipInner>,
    /// Woken on every revocation, so the loop handles it even when no
    /// further message arrives.
    pub revoked_notify: Notify,
}

#[derive(Default)]
struct OwnershipInner {
    owned: BTreeSet<Tp>,
    revoked: Vec<Tp>,
    /// Offsets the broker confirmed as committed.
    confirmed: BTreeMap<Tp, i64>,
    fatal: Option<String>,
    retriable_in_a_row: u32,
}

/// After this many retriable commit failures in a row the service gives up
/// (exit non-zero) rather than run on without ever committing.
pub const MAX_RETRIABLE_COMMIT_FAILURES: u32 = 30;

impl Ownership {
    fn lock(&self) -> std::sync::MutexGuard<'_, OwnershipInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn owns(&self, tp: &Tp) -> bool {
        self.lock().owned.contains(tp)
    }

    pub fn owned(&self) -> BTreeSet<Tp> {
        self.lock().owned.clone()
    }

    /// Revocations not yet handled by the loop.
    pub fn take_revoked(&self) -> Vec<Tp> {
        std::mem::take(&mut self.lock().revoked)
    }

    /// Offsets confirmed since the last call.
    pub fn take_confirmed(&self) -> BTreeMap<Tp, i64> {
        std::mem::take(&mut self.lock().confirmed)
    }

    pub fn take_fatal(&self) -> Option<String> {
        self.lock().fatal.take()
    }

    fn assign(&self, tps: impl IntoIterator<Item = Tp>) {
        self.lock().owned.extend(tps);
    }

    fn revoke(&self, tps: Vec<Tp>) {
        let mut g = self.lock();
        for tp in &tps {
            g.owned.remove(tp);
            g.confirmed.remove(tp);
        }
        g.revoked.extend(tps);
        drop(g);
        self.revoked_notify.notify_one();
    }

    /// Records the outcome of one commit; returns its class when it failed.
    pub fn commit_result(
        &self,
        result: &KafkaResult<()>,
        offsets: &BTreeMap<Tp, i64>,
    ) -> Option<CommitClass> {
        let mut g = self.lock();
        match result {
            Ok(()) => {
                g.retriable_in_a_row = 0;
                for (tp, o) in offsets {
                    if g.owned.contains(tp) {
                        let e = g.confirmed.entry(tp.clone()).or_insert(*o);
                        *e = (*e).max(*o);
                    }
                }
                None
            }
            Err(e) => {
                let class = classify_commit(e.rdkafka_error_code());
                match class {
                    CommitClass::Rebalance => {}
                    CommitClass::Retriable => {
                        g.retriable_in_a_row += 1;
                        if g.retriable_in_a_row >= MAX_RETRIABLE_COMMIT_FAILURES {
                            g.fatal = Some(format!(
                                "{} offset commits in a row failed; last: {e}",
                                g.retriable_in_a_row
                            ));
                        }
                    }
                    CommitClass::Fatal => g.fatal = Some(format!("offset commit refused: {e}")),
                }
                Some(class)
            }
        }
    }
}

/// Consumer context: exports per-partition lag from librdkafka statistics,
/// keeps [`Ownership`] current on every rebalance, and classifies the
/// outcome of every asynchronous commit.
pub struct StageContext {
    metrics: StageMetrics,
    pub ownership: Arc<Ownership>,
    /// The configured topic prefix (see the module doc).
    pub prefix: String,
}

impl StageContext {
    /// The plain name of a topic as the cluster names it.
    pub fn plain<'a>(&self, topic: &'a str) -> &'a str {
        topic.strip_prefix(self.prefix.as_str()).unwrap_or(topic)
    }

    fn tps(&self, tpl: &TopicPartitionList) -> Vec<Tp> {
        tpl.elements()
            .iter()
            .map(|e| (self.plain(e.topic()).to_string(), e.partition()))
            .collect()
    }

    fn tpl_offsets(&self, tpl: &TopicPartitionList) -> BTreeMap<Tp, i64> {
        tpl.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((self.plain(e.topic()).to_string(), e.partition()), o)),
                _ => None,
            })
            .collect()
    }

    /// The commit list of plain-named offsets.
    pub fn commit_list(&self, offsets: &BTreeMap<Tp, i64>) -> KafkaResult<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in offsets {
            tpl.add_partition_offset(&format!("{}{t}", self.prefix), *p, Offset::Offset(*o))?;
        }
        Ok(tpl)
    }
}

/// Partitions of the topics in a consumer's statistics (librdkafka lists
/// every partition its metadata has for a subscribed topic, owned or not,
/// plus an internal `-1`).
fn partitions_in(stats: &Statistics) -> usize {
    stats
        .topics
        .values()
        .map(|t| t.partitions.keys().filter(|p| **p >= 0).count())
        .sum()
}

impl ClientContext for StageContext {
    fn stats(&self, stats: Statistics) {
        // A partition no live member owns is read by nobody, and its lag
        // shows nowhere (only owners report lag): the alert compares the
        // group's owned partitions with this.
        self.metrics
            .input_partitions
            .set(partitions_in(&stats) as i64);
        for (topic, t) in stats.topics {
            for (p, part) in t.partitions {
                if p >= 0 && part.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[self.plain(&topic), &p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let tps = self.tps(tpl);
                self.metrics.revocations.inc_by(tps.len() as u64);
                tracing::info!(partitions = ?tps, "partitions revoked");
                self.ownership.revoke(tps);
                self.metrics
                    .partitions_owned
                    .set(self.ownership.owned().len() as i64);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let tps = self.tps(tpl);
            tracing::info!(partitions = ?tps, "partitions assigned");
            self.ownership.assign(tps);
            self.metrics
                .partitions_owned
                .set(self.ownership.owned().len() as i64);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let offsets = self.tpl_offsets(offsets);
        if let Some(class) = self.ownership.commit_result(&result, &offsets) {
            self.metrics
                .commit_failures
                .with_label_values(&[class.as_str()])
                .inc();
            if let Err(e) = &result {
                tracing::warn!(error = %e, class = class.as_str(), "offset commit failed");
            }
        }
    }
}

pub type StageConsumer = StreamConsumer<StageContext>;

/// Issues an asynchronous offset commit whose outcome comes back to
/// [`StageContext::commit_callback`].
///
/// `Consumer::commit(.., CommitMode::Async)` cannot be used for that:
/// rust-rdkafka submits it with `rd_kafka_commit` and neither a reply queue
/// nor a native callback, so librdkafka drops the result and the callback
/// never runs (rust-rdkafka issue #856, open as of 0.39). Stages that wait
/// for a confirmed commit before releasing state (the assembler forgets a
/// closed call only then) would hold that state forever. Here the reply
/// queue is the consumer queue the stream already polls, where the result
/// arrives as an `OffsetCommit` event and rust-rdkafka hands it to the
/// context.
pub fn commit_async(consumer: &StageConsumer, offsets: &TopicPartitionList) -> KafkaResult<()> {
    use rdkafka::bindings as rd;
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the live handle `consumer` owns for this whole call;
    // the queue reference taken here is released below after
    // `rd_kafka_commit_queue` took its own reference for the reply (the
    // reply queue is kept by librdkafka until the reply is enqueued);
    // `offsets` is only read (librdkafka copies it).
    let err = unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(rk);
        if queue.is_null() {
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownGroup));
        }
        let err = rd::rd_kafka_commit_queue(rk, offsets.ptr(), queue, None, std::ptr::null_mut());
        rd::rd_kafka_queue_destroy(queue);
        err
    };
    if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(err.into()))
    }
}

/// Consumer fetch batching (see [`consumer`]); `kafka.properties` overrides.
pub const FETCH_WAIT_MAX_MS: &str = "100";
pub const FETCH_MIN_BYTES: &str = "65536";
/// Producer batching (see [`producer`]); `kafka.properties` overrides.
pub const LINGER_MS: &str = "5";

/// A consumer with auto-commit off: offsets move only when the stage loop
/// commits what its downstream acknowledged.
pub async fn consumer(
    cfg: &KafkaConfig,
    service: &str,
    topics: &[&str],
    metrics: &StageMetrics,
) -> anyhow::Result<StageConsumer> {
    if cfg.join_delay_ms > 0 {
        tracing::info!(
            delay_ms = cfg.join_delay_ms,
            "waiting for any dead predecessor's group session to expire"
        );
        tokio::time::sleep(Duration::from_millis(cfg.join_delay_ms)).await;
    }
    let group = cfg.group(service);
    let mut c = cfg.client_config(service)?;
    c.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (cfg.session_timeout_ms / 3).max(500).to_string(),
        )
        .set("max.poll.interval.ms", "600000")
        .set("statistics.interval.ms", "15000")
        // Fewer, larger fetches: the broker answers once 64 KiB are ready
        // or 100 ms passed, so a busy consumer gets a few hundred records
        // per fetch instead of a handful (librdkafka's broker thread wakes
        // per fetch response), an idle one waits at the broker instead of
        // polling it, and no record waits more than 100 ms per hop.
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
        .set("fetch.min.bytes", FETCH_MIN_BYTES)
        .set("enable.partition.eof", "false");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    let ctx = StageContext {
        metrics: metrics.clone(),
        ownership: Arc::new(Ownership::default()),
        prefix: cfg.topic_prefix.clone(),
    };
    let consumer: StageConsumer = c
        .create_with_context(ctx)
        .context("creating Kafka consumer")?;
    let names: Vec<String> = topics.iter().map(|t| cfg.topic(t)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .with_context(|| format!("subscribing to {names:?}"))?;
    Ok(consumer)
}

/// A producer that names topics with the configured prefix. Dereferences to
/// the rdkafka producer for everything but naming topics: records go
/// through [`enqueue_record`] (or [`Producer::topic`]) so the prefix is
/// never forgotten.
#[derive(Clone)]
pub struct Producer {
    inner: AckProducer,
    prefix: Arc<str>,
}

impl Producer {
    /// The name of topic `name` on the cluster (borrowed when there is no
    /// prefix: this runs once per produced record).
    pub fn topic<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        if self.prefix.is_empty() {
            std::borrow::Cow::Borrowed(name)
        } else {
            std::borrow::Cow::Owned(format!("{}{name}", self.prefix))
        }
    }
}

impl std::ops::Deref for Producer {
    type Target = AckProducer;
    fn deref(&self) -> &AckProducer {
        &self.inner
    }
}

/// An idempotent producer (no duplicates from producer retries) that waits
/// for all in-sync replicas.
pub fn producer(cfg: &KafkaConfig, service: &str) -> anyhow::Result<Producer> {
    let mut c = cfg.client_config(service)?;
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // A stage hands a whole batch's outputs over at once and then
        // waits for their acks: a short linger already puts them in one
        // request per partition, a longer one would only add latency.
        .set("linger.ms", LINGER_MS)
        .set("message.timeout.ms", "300000")
        .set("queue.buffering.max.messages", "200000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    Ok(Producer {
        inner: AckProducer::create(&c).context("creating Kafka producer")?,
        prefix: cfg.topic_prefix.as_str().into(),
    })
}

/// Why a record could not be handed to the producer.
#[derive(Debug, thiserror::Error)]
#[error("producing to {topic}: {source}")]
pub struct SendError {
    pub topic: String,
    pub class: ProduceClass,
    #[source]
    pub source: KafkaError,
}

/// Enqueues one record, waiting while the local queue is full
/// (backpressure), and returns the acknowledgement future.
pub async fn enqueue(
    producer: &Producer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    waits: Option<&prometheus::IntCounter>,
) -> Result<DeliveryFuture, SendError> {
    enqueue_record(producer, topic, None, key, Some(payload), None, waits).await
}

/// [`enqueue`] with an optional explicit partition, an optional payload
/// (`None` is a tombstone) and an optional log time (else now).
pub async fn enqueue_record(
    producer: &Producer,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    payload: Option<&[u8]>,
    timestamp_ms: Option<i64>,
    waits: Option<&prometheus::IntCounter>,
) -> Result<DeliveryFuture, SendError> {
    let name = producer.topic(topic);
    let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&name).key(key);
    if let Some(p) = payload {
        rec = rec.payload(p);
    }
    if let Some(p) = partition {
        rec = rec.partition(p);
    }
    if let Some(t) = timestamp_ms {
        rec = rec.timestamp(t);
    }
    enqueue_built(producer, rec, topic, waits).await
}

/// Enqueues a record built by the caller (its name already the cluster's),
/// waiting while the local queue is full; `topic` names it in errors.
pub async fn enqueue_built(
    producer: &Producer,
    mut rec: FutureRecord<'_, [u8], [u8]>,
    topic: &str,
    waits: Option<&prometheus::IntCounter>,
) -> Result<DeliveryFuture, SendError> {
    loop {
        match producer.send_result(rec) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                if let Some(w) = waits {
                    w.inc();
                }
                rec = r;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                return Err(SendError {
                    topic: topic.to_string(),
                    class: classify_produce(e.rdkafka_error_code()),
                    source: e,
                })
            }
        }
    }
}

/// [`enqueue`] for tools (`cdrctl`, tests) that treat every failure alike.
pub async fn send(
    producer: &Producer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> anyhow::Result<DeliveryFuture> {
    Ok(enqueue(producer, topic, key, payload, None).await?)
}

/// Waits for every acknowledgement; any failure fails the whole call, so
/// the caller must not treat the records as written.
pub async fn await_acks(acks: Vec<DeliveryFuture>) -> anyhow::Result<usize> {
    let n = acks.len();
    for r in futures::future::join_all(acks).await {
        match r {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(anyhow::anyhow!(e).context("delivery failed")),
            Err(_) => anyhow::bail!("producer dropped a delivery"),
        }
    }
    Ok(n)
}

/// Flushes the producer on shutdown.
pub fn flush(producer: &Producer) -> KafkaResult<()> {
    producer.base().flush(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_errors_are_classified() {
        use RDKafkaErrorCode as C;
        assert_eq!(
            classify_commit(Some(C::RebalanceInProgress)),
            CommitClass::Rebalance
        );
        assert_eq!(
            classify_commit(Some(C::UnknownMemberId)),
            CommitClass::Rebalance
        );
        assert_eq!(
            classify_commit(Some(C::CoordinatorNotAvailable)),
            CommitClass::Retriable
        );
        assert_eq!(
            classify_commit(Some(C::GroupAuthorizationFailed)),
            CommitClass::Fatal
        );
        assert_eq!(classify_commit(None), CommitClass::Fatal);
    }

    #[test]
    fn produce_errors_are_classified() {
        use RDKafkaErrorCode as C;
        assert_eq!(
            classify_produce(Some(C::MessageSizeTooLarge)),
            ProduceClass::RecordCaused
        );
        assert_eq!(
            classify_produce(Some(C::TopicAuthorizationFailed)),
            ProduceClass::Fatal
        );
    }

    fn tp(p: i32) -> Tp {
        ("t".to_string(), p)
    }

    #[test]
    fn ownership_confirms_only_owned_partitions_and_escalates() {
        let o = Ownership::default();
        o.assign([tp(0), tp(1)]);
        let offs: BTreeMap<Tp, i64> = [(tp(0), 5), (tp(2), 9)].into_iter().collect();
        assert_eq!(o.commit_result(&Ok(()), &offs), None);
        assert_eq!(o.take_confirmed(), [(tp(0), 5)].into_iter().collect());
        o.revoke(vec![tp(0)]);
        assert!(!o.owns(&tp(0)) && o.owns(&tp(1)));
        assert_eq!(o.take_revoked(), vec![tp(0)]);
        let refused = Err(KafkaError::ConsumerCommit(
            RDKafkaErrorCode::RebalanceInProgress,
        ));
        assert_eq!(
            o.commit_result(&refused, &offs),
            Some(CommitClass::Rebalance)
        );
        assert!(o.take_fatal().is_none(), "a rebalance is not fatal");
        let flaky = Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NotCoordinator));
        for _ in 0..MAX_RETRIABLE_COMMIT_FAILURES - 1 {
            o.commit_result(&flaky, &offs);
        }
        assert!(o.take_fatal().is_none());
        o.commit_result(&flaky, &offs);
        assert!(
            o.take_fatal().is_some(),
            "endless commit failures end the service"
        );
        let denied = Err(KafkaError::ConsumerCommit(
            RDKafkaErrorCode::GroupAuthorizationFailed,
        ));
        assert_eq!(o.commit_result(&denied, &offs), Some(CommitClass::Fatal));
        assert!(o.take_fatal().is_some());
    }
}
