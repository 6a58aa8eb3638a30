//! `cdrctl`: operator commands over the real stack. Each command is a
//! function here (the binary only parses arguments), so the end-to-end tests
//! call the same code the operator runs.

pub mod control;
pub mod deck;
pub mod dlq;
pub mod import;
pub mod invoice;
pub mod probe;
pub mod rate;
pub mod reconcile;
pub mod report;
pub mod rerate;
pub mod scenarios;
pub mod simulate;
pub mod topics;

use std::time::Duration;

use anyhow::Context;
use cdr_kafka::KafkaConfig;

use crate::simulate::Msg;

/// Publishes simulator messages to `call-events`, pacing to `rate` msgs/s
/// (0 = as fast as possible), and waits for every acknowledgement.
pub async fn publish(kafka: &KafkaConfig, msgs: &[Msg], rate: u64) -> anyhow::Result<Duration> {
    let producer = cdr_kafka::runtime::producer(kafka, "cdrctl-sim")?;
    let started = std::time::Instant::now();
    let mut acks = Vec::with_capacity(4096);
    for (i, m) in msgs.iter().enumerate() {
        acks.push(
            cdr_kafka::runtime::send(
                &producer,
                cdr_model::topics::CALL_EVENTS,
                m.key.as_bytes(),
                &m.payload,
            )
            .await?,
        );
        if acks.len() >= 4096 {
            cdr_kafka::runtime::await_acks(std::mem::take(&mut acks)).await?;
        }
        if rate > 0 {
            let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    cdr_kafka::runtime::await_acks(acks)
        .await
        .context("publishing simulator traffic")?;
    Ok(started.elapsed())
}

/// Produces `n` messages of `size` bytes to a scratch topic and consumes them
/// back; returns (produce msg/s, consume msg/s).
pub async fn bench_broker(
    kafka: &KafkaConfig,
    n: usize,
    size: usize,
) -> anyhow::Result<(f64, f64)> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let topic = format!("bench-{}", cdr_kafka::now_ms());
    // Brokers without auto-creation (tansu) need the topic first.
    crate::topics::create(kafka, &[(topic.as_str(), 1)]).await?;
    let producer = cdr_kafka::runtime::producer(kafka, "cdrctl-bench")?;
    let payload = vec![b'x'; size];
    let started = std::time::Instant::now();
    let mut acks = Vec::with_capacity(8192);
    for i in 0..n {
        acks.push(
            cdr_kafka::runtime::send(&producer, &topic, i.to_string().as_bytes(), &payload).await?,
        );
        if acks.len() >= 8192 {
            cdr_kafka::runtime::await_acks(std::mem::take(&mut acks)).await?;
        }
    }
    cdr_kafka::runtime::await_acks(acks).await?;
    let p = n as f64 / started.elapsed().as_secs_f64();
    let consumer: StreamConsumer = kafka
        .client_config("cdrctl-bench")?
        .set("group.id", format!("{topic}-g"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&kafka.topic(&topic)])?;
    let started = std::time::Instant::now();
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(Ok(_)) => got += 1,
            Ok(Err(e)) => anyhow::bail!("consume: {e}"),
            Err(_) => anyhow::bail!("consume timed out after {got} of {n}"),
        }
    }
    Ok((p, n as f64 / started.elapsed().as_secs_f64()))
}
