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

/// The partitions a topic is created with: `kafka.partitions` for a data
/// topic (more than one partition by default), its own count for a
/// single-partition one (control and dead-letter topics: total order).
/// State topics are data topics with their input's default count, so they
/// follow it.
pub fn partitions_for(kafka: &KafkaConfig, default: i32) -> i32 {
    if default > 1 {
        kafka.partitions.unwrap_or(default)
    } else {
        default
    }
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
                partitions_for(kafka, *parts),
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

#[cfg(test)]
mod tests {
    use super::*;
    use cdr_model::topics;

    #[test]
    fn data_topics_scale_and_keep_their_state_topics_aligned() {
        let mut k = KafkaConfig {
            partitions: Some(24),
            ..Default::default()
        };
        let count = |name: &str| {
            let d = topics::ALL.iter().find(|(n, _)| *n == name).unwrap().1;
            partitions_for(&k, d)
        };
        // Each state topic is written partition for partition with its input.
        for (state, input) in [
            (topics::LRN_DECISIONS, topics::CALLS_ASSEMBLED),
            (topics::ASSEMBLER_OPEN_CALLS, topics::CALL_EVENTS),
            (topics::DETECTOR_ROUTES, topics::CDRS_RATED),
            (topics::RATER_CONFORMANCE, topics::CALLS_ENRICHED),
        ] {
            assert_eq!(count(state), count(input), "{state} vs {input}");
            assert_eq!(count(state), 24);
        }
        for single in [
            topics::ACCOUNTS_PLAN_CHANGES,
            topics::ROUTES_STATUS,
            topics::PIPELINE_DLQ,
            topics::CALL_EVENTS_DLQ,
        ] {
            assert_eq!(count(single), 1, "{single}");
        }
        k.partitions = None;
        assert_eq!(partitions_for(&k, 4), 4);
        k.partitions = Some(0);
        assert!(k.validate().is_err());
    }
}
