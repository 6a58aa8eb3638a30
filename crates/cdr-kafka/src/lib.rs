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

/// Turns transparent huge pages off for this process. With THP, memory the
/// allocator returns to the kernel and takes again comes back as a freshly
/// zeroed 2 MiB page: the kernel's `clear_page_erms` was a sixth of the
/// assembler's CPU under `make bench`. The services' heaps are small, so
/// 4 KiB pages cost nothing measurable in TLB reach. Returns whether the
/// kernel took the setting (a refusal only costs that CPU).
pub fn disable_transparent_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and
        // touches no memory of this process.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(all(test, target_os = "linux"))]
mod thp_tests {
    /// The kernel reports the flag back once set.
    #[test]
    fn huge_pages_are_off_after_the_call() {
        assert!(super::disable_transparent_huge_pages());
        // SAFETY: PR_GET_THP_DISABLE takes integer arguments only.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
    }
}
