//! The loop of a stateless stage (enricher, rater, detector): read a batch,
//! transform each record with a pure processor, produce the results and the
//! dead letters, wait for every acknowledgement, then commit. A crash between
//! produce and commit replays the batch; the deterministic ids in every record
//! make the replay harmless downstream.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cdr_model::dlq::DeadLetter;
use rdkafka::consumer::CommitMode;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::metrics::StageMetrics;
use crate::runtime::{self, StageConsumer};

/// One record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// What a processor decided for one input record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Emit(Vec<Output>),
    Reject {
        reason: &'static str,
        field: Option<&'static str>,
        message: String,
    },
}

/// Pure per-record logic of a stage.
pub trait Processor: Send {
    fn process(&mut self, topic: &str, key: Option<&[u8]>, payload: &[u8]) -> Outcome;
}

#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub max_records: usize,
    pub linger: Duration,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            max_records: 2000,
            linger: Duration::from_millis(50),
        }
    }
}

/// Reads up to `max_records`, waiting at most `linger` after the first one.
/// Returns None once shutdown fired and nothing was read.
pub async fn next_batch(
    consumer: &StageConsumer,
    spec: &BatchSpec,
    shutdown: &CancellationToken,
) -> Option<Vec<OwnedMessage>> {
    let mut batch = Vec::new();
    let first = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            m = consumer.recv() => match m {
                Ok(m) => break m.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    batch.push(first);
    let deadline = tokio::time::Instant::now() + spec.linger;
    while batch.len() < spec.max_records {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(m.detach()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Next offsets to commit for a fully processed batch.
pub fn batch_offsets(batch: &[OwnedMessage]) -> BTreeMap<(String, i32), i64> {
    let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = out
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    out
}

/// Builds the dead letter for a rejected input record.
pub fn dead_letter(
    service: &str,
    m: &OwnedMessage,
    reason: &str,
    field: Option<&str>,
    message: String,
) -> DeadLetter {
    DeadLetter::new(
        service,
        reason,
        field,
        message,
        m.topic(),
        m.partition(),
        m.offset(),
        m.key(),
        m.payload().unwrap_or_default(),
        crate::now_ms(),
    )
}

/// Runs a stateless stage until shutdown; returns after the last batch is
/// acknowledged and committed.
#[allow(clippy::too_many_arguments)]
pub async fn run_stateless<P: Processor>(
    service: &str,
    consumer: StageConsumer,
    producer: FutureProducer,
    dlq_topic: &str,
    spec: BatchSpec,
    metrics: StageMetrics,
    mut processor: P,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while let Some(batch) = next_batch(&consumer, &spec, &shutdown).await {
        let started = Instant::now();
        let mut acks = Vec::with_capacity(batch.len());
        for m in &batch {
            metrics.consumed.inc();
            match processor.process(m.topic(), m.key(), m.payload().unwrap_or_default()) {
                Outcome::Emit(outs) => {
                    for o in outs {
                        acks.push(runtime::send(&producer, &o.topic, &o.key, &o.payload).await?);
                    }
                }
                Outcome::Reject {
                    reason,
                    field,
                    message,
                } => {
                    tracing::warn!(service, reason, field, topic = m.topic(), partition = m.partition(), offset = m.offset(), %message, "dead-lettering record");
                    metrics.dead_lettered.with_label_values(&[reason]).inc();
                    let dl = dead_letter(service, m, reason, field, message);
                    acks.push(
                        runtime::send(&producer, dlq_topic, dl.id().as_bytes(), &dl.to_json())
                            .await?,
                    );
                }
            }
        }
        let n = runtime::await_acks(acks).await?;
        metrics.produced.inc_by(n as u64);
        let offsets = batch_offsets(&batch);
        runtime::commit(&consumer, &offsets, CommitMode::Async)?;
        committed.extend(offsets);
        metrics.commits.inc();
        metrics
            .batch_latency
            .observe(started.elapsed().as_secs_f64());
    }
    runtime::flush(&producer);
    // The async commits may still be in flight: make the final position durable.
    runtime::commit(&consumer, &committed, CommitMode::Sync)?;
    tracing::info!(service, "drained; exiting");
    Ok(())
}

/// A stage whose records are Avro in and Avro out: decodes, applies a pure
/// function, encodes. Undecodable input is rejected (dead-lettered) with the
/// decoder's message.
pub struct AvroMap<I, O, F> {
    input: cdr_model::avro::Codec<I>,
    output: cdr_model::avro::Codec<O>,
    out_topic: &'static str,
    f: F,
}

/// Why a pure stage function refused a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub reason: &'static str,
    pub field: Option<&'static str>,
    pub message: String,
}

impl<I, O, F> AvroMap<I, O, F>
where
    I: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
    O: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
    F: FnMut(I) -> Result<(String, O), Reject> + Send,
{
    pub fn new(out_topic: &'static str, f: F) -> Self {
        AvroMap {
            input: cdr_model::avro::Codec::new(),
            output: cdr_model::avro::Codec::new(),
            out_topic,
            f,
        }
    }
}

impl<I, O, F> Processor for AvroMap<I, O, F>
where
    I: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
    O: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
    F: FnMut(I) -> Result<(String, O), Reject> + Send,
{
    fn process(&mut self, _topic: &str, _key: Option<&[u8]>, payload: &[u8]) -> Outcome {
        let rec = match self.input.decode(payload) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Reject {
                    reason: "bad_avro",
                    field: None,
                    message: e.to_string(),
                }
            }
        };
        match (self.f)(rec) {
            Ok((key, out)) => match self.output.encode(&out) {
                Ok(bytes) => Outcome::Emit(vec![Output {
                    topic: self.out_topic.to_string(),
                    key: key.into_bytes(),
                    payload: bytes,
                }]),
                Err(e) => Outcome::Reject {
                    reason: "encode_failed",
                    field: None,
                    message: e.to_string(),
                },
            },
            Err(r) => Outcome::Reject {
                reason: r.reason,
                field: r.field,
                message: r.message,
            },
        }
    }
}
