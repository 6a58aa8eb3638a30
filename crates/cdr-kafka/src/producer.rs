//! The acknowledging producer every service uses: librdkafka's
//! `BaseProducer` with a delivery future per record and one polling thread
//! of our own.
//!
//! Why not rdkafka's `FutureProducer`: its `ThreadedProducer` polls in
//! windows of 100 ms, and `BaseProducer::poll` turns the last sub-millisecond
//! of every window into a zero timeout, so the thread spins for up to a
//! millisecond ten times a second: about 1% of a core per idle process
//! (measured: 0.95–1.07% for each of the seven services, almost all of it in
//! the "producer polling thread"). Deliveries wake a poll at once whatever
//! its window, so this thread polls in 2 s windows: the same spin, twenty
//! times rarer. The futures resolve to exactly what rdkafka's
//! `DeliveryFuture` resolves to.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage, ToBytes};
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, FutureRecord, ProducerContext};
use rdkafka::ClientContext;

pub use futures::channel::oneshot::Canceled;

/// How long one poll of the delivery queue waits when nothing arrives.
const POLL_WINDOW: Duration = Duration::from_secs(2);

/// Hands each delivery report to the future of its record.
pub struct AckContext;

impl ClientContext for AckContext {
    // librdkafka's log lines and errors go where rdkafka's default sends them.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        DefaultClientContext.log(level, fac, log_message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        DefaultClientContext.error(error, reason)
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let owned = match result {
            Ok(m) => Ok(Delivery {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp(),
            }),
            Err((e, m)) => Err((e.clone(), m.detach())),
        };
        // The receiver may be gone (a caller that stopped waiting).
        let _ = tx.send(owned);
    }
}

/// Resolves when the broker acknowledged (or refused) the record: the same
/// output as rdkafka's `DeliveryFuture`.
#[must_use = "a record is only written once its delivery resolved"]
pub struct DeliveryFuture(oneshot::Receiver<OwnedDeliveryResult>);

impl Future for DeliveryFuture {
    type Output = Result<OwnedDeliveryResult, Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

struct Inner {
    producer: BaseProducer<AckContext>,
    stop: Arc<AtomicBool>,
    poller: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.poller.lock().ok().and_then(|mut g| g.take()) {
            // The poller itself may hold the last handle (it upgrades its
            // weak one while it polls): it just ends, nobody joins it.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// A cheap-to-clone handle on one librdkafka producer.
#[derive(Clone)]
pub struct AckProducer {
    inner: Arc<Inner>,
}

impl AckProducer {
    /// Creates the producer and starts its polling thread.
    pub fn create(config: &ClientConfig) -> KafkaResult<AckProducer> {
        let producer: BaseProducer<AckContext> = config.create_with_context(AckContext)?;
        let stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::new(Inner {
            producer,
            stop: stop.clone(),
            poller: std::sync::Mutex::new(None),
        });
        // The thread holds only a weak handle, so dropping the last
        // `AckProducer` ends it (within one poll window).
        let weak = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("kafka-acks".into())
            .spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Some(inner) = weak.upgrade() else { break };
                inner.producer.poll(POLL_WINDOW);
            })
            .map_err(|e| KafkaError::ClientCreation(format!("starting the ack thread: {e}")))?;
        if let Ok(mut g) = inner.poller.lock() {
            *g = Some(handle);
        }
        Ok(AckProducer { inner })
    }

    /// The rdkafka producer (flush, in-flight count, metadata).
    pub fn base(&self) -> &BaseProducer<AckContext> {
        &self.inner.producer
    }

    /// Enqueues a record; its future resolves on the broker's answer. A full
    /// local queue (or any other enqueue error) hands the record back.
    #[allow(clippy::result_large_err)]
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let base = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(tx),
        };
        match self.inner.producer.send(base) {
            Ok(()) => Ok(DeliveryFuture(rx)),
            Err((e, b)) => Err((
                e,
                FutureRecord {
                    topic: b.topic,
                    partition: b.partition,
                    payload: b.payload,
                    key: b.key,
                    timestamp: b.timestamp,
                    headers: b.headers,
                },
            )),
        }
    }

    /// Enqueues (retrying a full queue for up to `queue_timeout`) and waits
    /// for the broker's answer, like rdkafka's `FutureProducer::send`.
    #[allow(clippy::result_large_err)]
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let start = Instant::now();
        let mut record = record;
        loop {
            match self.send_result(record) {
                Ok(f) => {
                    return f.await.unwrap_or_else(|_| {
                        Err((
                            KafkaError::Canceled,
                            OwnedMessage::new(
                                None,
                                None,
                                String::new(),
                                rdkafka::Timestamp::NotAvailable,
                                -1,
                                -1,
                                None,
                            ),
                        ))
                    })
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if start.elapsed() < queue_timeout =>
                {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, r)) => {
                    let msg = OwnedMessage::new(
                        r.payload.map(|p| p.to_bytes().to_vec()),
                        r.key.map(|k| k.to_bytes().to_vec()),
                        r.topic.to_string(),
                        rdkafka::Timestamp::NotAvailable,
                        r.partition.unwrap_or(-1),
                        -1,
                        None,
                    );
                    return Err((e, msg));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a broker nothing is acknowledged, but the handle is cheap to
    /// clone and dropping the last clone ends the polling thread promptly.
    #[test]
    fn dropping_the_last_handle_stops_the_poller() {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1");
        let p = AckProducer::create(&c).expect("created");
        let q = p.clone();
        drop(p);
        let started = Instant::now();
        drop(q);
        assert!(
            started.elapsed() < POLL_WINDOW + Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// An unroutable record fails its future instead of hanging forever.
    #[tokio::test]
    async fn a_record_that_cannot_be_delivered_resolves_with_the_error() {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("message.timeout.ms", "300");
        let p = AckProducer::create(&c).expect("created");
        let f = p
            .send_result(
                FutureRecord::to("t")
                    .key(b"k".as_slice())
                    .payload(b"v".as_slice()),
            )
            .map_err(|(e, _)| e)
            .expect("enqueued");
        let r = tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("resolved")
            .expect("not canceled");
        let (e, m) = r.expect_err("no broker: no delivery");
        assert_eq!(
            e,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
        );
        assert_eq!(m.payload(), Some(b"v".as_slice()));
    }
}
