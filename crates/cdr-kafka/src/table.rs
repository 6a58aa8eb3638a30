//! Topics read as tables: a consumer outside any group that reads every
//! partition of a (compacted) topic from the beginning. Services use it to
//! rebuild durable state: a whole small topic at start-up (the rater's
//! account plan changes, the detector's route statuses), followed while they
//! run, or one partition of a stage's state topic when the stage is assigned
//! the matching input partition ([`TopicTable::restore_partition`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use cdr_model::avro::Codec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;

/// A reader positioned at the beginning of every partition of one topic.
pub struct TopicTable {
    consumer: StreamConsumer,
    /// The cluster's name of the topic (prefixed, see [`KafkaConfig::topic`]).
    topic: String,
    /// Set when only one partition is assigned.
    only: Option<i32>,
}

fn table_consumer(cfg: &KafkaConfig, client_id: &str) -> anyhow::Result<StreamConsumer> {
    let mut c = cfg.client_config(client_id)?;
    // Required by librdkafka for a consumer; never joined (assign only).
    c.set(
        "group.id",
        format!("{client_id}-table-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "false")
    .set("auto.offset.reset", "earliest");
    c.create().context("creating table consumer")
}

impl TopicTable {
    /// Opens `topic` from the beginning. No group offsets are used or
    /// committed: the whole topic is the state.
    pub fn open(cfg: &KafkaConfig, client_id: &str, topic: &str) -> anyhow::Result<TopicTable> {
        let topic = &cfg.topic(topic);
        let consumer = table_consumer(cfg, client_id)?;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {topic}"))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        anyhow::ensure!(
            !parts.is_empty(),
            "topic {topic} has no partitions (not created?)"
        );
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
        consumer
            .assign(&tpl)
            .context("assigning table partitions")?;
        Ok(TopicTable {
            consumer,
            topic: topic.to_string(),
            only: None,
        })
    }

    /// Opens one partition of `topic` from the beginning.
    pub fn open_partition(
        cfg: &KafkaConfig,
        client_id: &str,
        topic: &str,
        partition: i32,
    ) -> anyhow::Result<TopicTable> {
        let topic = &cfg.topic(topic);
        let consumer = table_consumer(cfg, client_id)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
        consumer.assign(&tpl).context("assigning table partition")?;
        Ok(TopicTable {
            consumer,
            topic: topic.to_string(),
            only: Some(partition),
        })
    }

    /// The live records of one partition of a compacted state topic,
    /// decoded as JSON `T`: what a stateful stage reloads when it is
    /// assigned an input partition (state partition i belongs to input
    /// partition i). A record that does not decode is logged with its key
    /// and skipped, never fatal: one bad state record must not stop the
    /// partition.
    pub async fn restore_partition<T: serde::de::DeserializeOwned>(
        cfg: &KafkaConfig,
        client_id: &str,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> anyhow::Result<Vec<T>> {
        let table = TopicTable::open_partition(cfg, client_id, topic, partition)?;
        let mut out = Vec::new();
        for (k, v) in table.read_latest(timeout).await? {
            match serde_json::from_slice::<T>(&v) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(topic, partition, key = %String::from_utf8_lossy(&k), error = %e, "unreadable state record skipped")
                }
            }
        }
        Ok(out)
    }

    /// Partitions of `topic` (metadata).
    pub fn partition_count(
        cfg: &KafkaConfig,
        client_id: &str,
        topic: &str,
    ) -> anyhow::Result<usize> {
        let topic = &cfg.topic(topic);
        let consumer = table_consumer(cfg, client_id)?;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {topic}"))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .map(|t| t.partitions().len())
            .sum())
    }

    /// Reads to the end and keeps the last value of every key (a tombstone,
    /// i.e. no payload, deletes the key): the table a compacted topic holds.
    pub async fn read_latest(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut out = std::collections::BTreeMap::new();
        for m in self.read_to_end(timeout).await? {
            let Some(k) = m.key() else { continue };
            match m.payload() {
                Some(v) => out.insert(k.to_vec(), v.to_vec()),
                None => out.remove(k),
            };
        }
        Ok(out)
    }

    /// Reads until every partition reaches the high watermark it had when
    /// this call started; returns the records in per-partition order.
    pub async fn read_to_end(&self, timeout: Duration) -> anyhow::Result<Vec<OwnedMessage>> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(10))?;
        let mut pending: HashMap<i32, i64> = HashMap::new();
        for t in md.topics() {
            for p in t
                .partitions()
                .iter()
                .filter(|p| self.only.is_none_or(|o| o == p.id()))
            {
                let (lo, hi) = self
                    .consumer
                    .fetch_watermarks(&self.topic, p.id(), Duration::from_secs(10))
                    .with_context(|| format!("watermarks of {}/{}", self.topic, p.id()))?;
                if hi > lo {
                    pending.insert(p.id(), hi);
                }
            }
        }
        let started = Instant::now();
        let mut out = Vec::new();
        while !pending.is_empty() {
            let left = timeout.saturating_sub(started.elapsed());
            anyhow::ensure!(
                !left.is_zero(),
                "reading {} to its end timed out after {timeout:?} ({} partitions unfinished)",
                self.topic,
                pending.len()
            );
            let m = match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(r) => r.with_context(|| format!("reading {}", self.topic))?,
                Err(_) => continue,
            };
            let (p, o) = (m.partition(), m.offset());
            out.push(m.detach());
            if pending.get(&p).is_some_and(|hi| o + 1 >= *hi) {
                pending.remove(&p);
            }
        }
        Ok(out)
    }

    /// The next record written after the initial read (for following a topic).
    pub async fn next(&self) -> anyhow::Result<OwnedMessage> {
        let m = self
            .consumer
            .recv()
            .await
            .with_context(|| format!("following {}", self.topic))?;
        Ok(m.detach())
    }

    /// Reads the topic to its end and decodes it (Avro single-object); an
    /// unreadable record is logged and skipped, never fatal.
    pub async fn read_all<T>(&self, timeout: Duration) -> anyhow::Result<Vec<T>>
    where
        T: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
    {
        let codec: Codec<T> = Codec::new();
        let mut out = Vec::new();
        for m in self.read_to_end(timeout).await? {
            match codec.decode(m.payload().unwrap_or_default()) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(topic = %self.topic, offset = m.offset(), error = %e, "unreadable record skipped")
                }
            }
        }
        Ok(out)
    }

    /// Keeps following the topic in a background task, decoding every new
    /// record into a bounded channel (backpressure: the task waits when the
    /// consumer falls behind) until `shutdown` or the receiver is dropped.
    pub fn follow<T>(self, shutdown: CancellationToken, capacity: usize) -> mpsc::Receiver<T>
    where
        T: apache_avro::AvroSchema
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Send
            + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity);
        tokio::spawn(async move {
            let codec: Codec<T> = Codec::new();
            loop {
                let m = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    m = self.next() => m,
                };
                match m {
                    Ok(m) => match codec.decode(m.payload().unwrap_or_default()) {
                        Ok(r) => {
                            if tx.send(r).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(topic = %self.topic, offset = m.offset(), error = %e, "unreadable record skipped")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, error = %format!("{e:#}"), "following topic");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        rx
    }
}
