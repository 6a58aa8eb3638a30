//! Topic administration through the Kafka admin API (works the same against
//! tansu, Apache Kafka, Redpanda or MSK).

use std::time::Duration;

use anyhow::Context;
use cdr_kafka::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// Creates every pipeline topic with its partition count; existing topics are left alone.
pub async fn create_all(kafka: &KafkaConfig) -> anyhow::Result<Vec<String>> {
    create(kafka, cdr_model::topics::ALL).await
}

/// Creates the given topics (name, partitions; prefixed with the configured
/// `topic_prefix`); existing topics are left alone.
pub async fn create(kafka: &KafkaConfig, wanted: &[(&str, i32)]) -> anyhow::Result<Vec<String>> {
    let c = kafka.client_config("cdrctl-topics")?;
    let admin: AdminClient<DefaultClientContext> = c.create().context("creating admin client")?;
    let names: Vec<String> = wanted.iter().map(|(n, _)| kafka.topic(n)).collect();
    let min_isr = kafka.min_insync_replicas.map(|m| m.to_string());
    let topics: Vec<NewTopic> = wanted
        .iter()
        .zip(&names)
        .map(|((name, parts), full)| {
            let mut t = NewTopic::new(
                full,
                *parts,
                TopicReplication::Fixed(kafka.replication_factor),
            );
            if cdr_model::topics::COMPACTED.contains(name) {
                t = t.set("cleanup.policy", "compact");
            }
            if let Some(m) = &min_isr {
                t = t.set("min.insync.replicas", m);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(topics.iter(), &opts)
        .await
        .context("CreateTopics request")?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(created)
}
