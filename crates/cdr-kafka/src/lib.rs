//! The Kafka runtime every service shares: typed configuration with
//! environment overrides, consumer/producer construction with the settings
//! at-least-once needs, the offset tracker that decides what may be committed,
//! the dead-letter producer, the `/metrics` endpoint, tracing set-up and the
//! shutdown token. Services keep their domain logic elsewhere.

pub mod config;
pub mod metrics;
pub mod runtime;
pub mod stage;
pub mod table;
pub mod telemetry;

pub use config::{load_config, KafkaConfig};
pub use rdkafka::message::OwnedMessage;
pub use rdkafka::Message;
pub use tokio_util::sync::CancellationToken;

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
