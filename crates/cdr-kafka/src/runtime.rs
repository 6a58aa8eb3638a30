//! Consumer and producer construction with the settings at-least-once needs
//! (manual commits, idempotent producer, acks=all), the consumer context that
//! reports lag and partition revocations, and helpers to produce with
//! acknowledgement and to commit explicit offsets.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::metrics::StageMetrics;

/// Consumer context: exports per-partition lag from librdkafka statistics and
/// queues revoked partitions so the owning loop can drop their state.
pub struct StageContext {
    metrics: StageMetrics,
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
}

impl StageContext {
    pub fn revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked lock"))
    }
}

impl ClientContext for StageContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in stats.topics {
            for (p, part) in t.partitions {
                if p >= 0 && part.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&topic, &p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut r = self.revoked.lock().expect("revoked lock");
            for e in tpl.elements() {
                r.push((e.topic().to_string(), e.partition()));
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }
}

pub type StageConsumer = StreamConsumer<StageContext>;

fn base(cfg: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", client_id);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// A consumer with auto-commit off: offsets move only when a service commits
/// what its downstream acknowledged.
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
    let group = cfg
        .group_id
        .clone()
        .unwrap_or_else(|| format!("cdr-{service}"));
    let mut c = base(cfg, service);
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
        .set("statistics.interval.ms", "5000")
        .set("enable.partition.eof", "false");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    let ctx = StageContext {
        metrics: metrics.clone(),
        revoked: Default::default(),
    };
    let consumer: StageConsumer = c
        .create_with_context(ctx)
        .context("creating Kafka consumer")?;
    consumer
        .subscribe(topics)
        .with_context(|| format!("subscribing to {topics:?}"))?;
    Ok(consumer)
}

/// An idempotent producer (no duplicates from producer retries) that waits
/// for all in-sync replicas.
pub fn producer(cfg: &KafkaConfig, service: &str) -> anyhow::Result<FutureProducer> {
    let mut c = base(cfg, service);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .set("queue.buffering.max.messages", "200000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.create().context("creating Kafka producer")
}

/// Enqueues one record, waiting while the local queue is full, and returns
/// the acknowledgement future.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> anyhow::Result<DeliveryFuture> {
    let mut rec = FutureRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send_result(rec) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(anyhow::anyhow!(e).context(format!("producing to {topic}"))),
        }
    }
}

/// Waits for every acknowledgement; any failure is fatal for the batch, so
/// the caller must not commit.
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

/// Commits `offsets` (next offset to read per topic/partition).
pub fn commit(
    consumer: &StageConsumer,
    offsets: &BTreeMap<(String, i32), i64>,
    mode: CommitMode,
) -> anyhow::Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))
            .context("building commit list")?;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => Ok(()),
        // After a rebalance the group may refuse the commit; the new owner replays
        // from the last good commit and deterministic ids absorb the repeats.
        Err(e) => {
            tracing::warn!(error = %e, "offset commit refused");
            Ok(())
        }
    }
}

/// Flushes the producer on shutdown.
pub fn flush(producer: &FutureProducer) {
    let _ = producer.flush(Duration::from_secs(30));
}

/// The I/O edges every stage opens at start-up, in order: the `/metrics`
/// endpoint, the group consumer on `topics`, and the producer.
pub async fn start_stage(
    kafka: &KafkaConfig,
    service: &str,
    metrics_listen: std::net::SocketAddr,
    metrics: &StageMetrics,
    topics: &[&str],
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<(StageConsumer, FutureProducer)> {
    crate::metrics::serve(metrics_listen, metrics.registry.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding metrics on {metrics_listen}"))?;
    let consumer = consumer(kafka, service, topics, metrics).await?;
    let producer = producer(kafka, service)?;
    Ok((consumer, producer))
}
