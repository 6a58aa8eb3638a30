//! The Kafka runtime every service shares: typed configuration with
//! environment overrides, the one stage loop (consume → process → produce →
//! await acks → commit) with its dead-letter handling, Kafka clients and
//! error classification, topics read as tables, the `/metrics` endpoint,
//! tracing and `service_main`. Services keep their domain logic elsewhere.

pub mod config;
pub mod lenient;
pub mod metrics;
pub mod producer;
pub mod runtime;
pub mod service;
pub mod stage;
pub mod table;
pub mod telemetry;

pub use config::{load_config, KafkaConfig, StageConfig, StageDefaults, StageSettings};
pub use rdkafka::message::OwnedMessage;
pub use rdkafka::Message;
pub use service::service_main;
pub use stage::{
    run_stage, run_stage_with_producer, CommitPolicy, Outbox, Rejection, Stage, StageError,
    StageSpec,
};
pub use tokio_util::sync::CancellationToken;

/// Every binary of the pipeline links this crate, so this is their
/// allocator: a stage allocates and frees dozens of small strings per record
/// (decoded fields, keys, outputs), and glibc's malloc spent a fifth of a
/// stage's CPU on them (profiled under `make bench`); mimalloc's
/// thread-local free lists take a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
