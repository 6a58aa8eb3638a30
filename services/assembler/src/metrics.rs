//! Assembler-specific metrics (the shared stage metrics come from cdr-kafka).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct AssemblerMetrics {
    pub open_calls: IntGauge,
    pub retained_calls: IntGauge,
    pub calls_closed: IntCounterVec,
    pub duplicates: IntCounter,
    pub checkpoints: IntCounter,
    pub cut_checkpoints: IntCounter,
    pub commits_confirmed: IntCounter,
    pub tombstones: IntCounter,
    pub restored_calls: IntCounter,
    pub rekeyed: IntCounter,
}

impl AssemblerMetrics {
    pub fn register(registry: &Registry) -> Self {
        let open_calls =
            IntGauge::new("cdr_assembler_open_calls", "Calls waiting for their hangup").unwrap();
        let retained_calls = IntGauge::new(
            "cdr_assembler_retained_calls",
            "Calls held in memory, open or closed within the retention",
        )
        .unwrap();
        let calls_closed = IntCounterVec::new(
            Opts::new(
                "cdr_assembler_calls_closed_total",
                "Calls emitted, by disposition",
            ),
            &["disposition"],
        )
        .unwrap();
        let duplicates = IntCounter::new(
            "cdr_assembler_duplicate_events_total",
            "Events dropped as duplicates of an event_id",
        )
        .unwrap();
        registry.register(Box::new(open_calls.clone())).unwrap();
        registry.register(Box::new(retained_calls.clone())).unwrap();
        registry.register(Box::new(calls_closed.clone())).unwrap();
        let checkpoints = IntCounter::new(
            "cdr_assembler_open_call_checkpoints_total",
            "Checkpoints of long open calls written to assembler.open-calls",
        )
        .unwrap();
        let restored_calls = IntCounter::new(
            "cdr_assembler_restored_calls_total",
            "Open calls restored from checkpoints when a partition was assigned",
        )
        .unwrap();
        registry.register(Box::new(duplicates.clone())).unwrap();
        registry.register(Box::new(checkpoints.clone())).unwrap();
        let cut_checkpoints = IntCounter::new(
            "cdr_assembler_cut_checkpoints_total",
            "Closed calls checkpointed at a commit cut so the commit point can pass them",
        )
        .unwrap();
        registry
            .register(Box::new(cut_checkpoints.clone()))
            .unwrap();
        let rekeyed = IntCounter::new(
            "cdr_assembler_rekeyed_events_total",
            "Events not keyed by their call_id, re-published keyed by it",
        )
        .unwrap();
        let tombstones = IntCounter::new(
            "cdr_assembler_checkpoint_tombstones_total",
            "Checkpoints deleted (tombstoned) once their call was committed and forgotten",
        )
        .unwrap();
        registry.register(Box::new(tombstones.clone())).unwrap();
        registry.register(Box::new(restored_calls.clone())).unwrap();
        registry.register(Box::new(rekeyed.clone())).unwrap();
        let commits_confirmed = IntCounter::new(
            "cdr_assembler_commits_confirmed_total",
            "Partition offsets the broker confirmed and the core was told of (closed calls are forgotten only after)",
        )
        .unwrap();
        registry
            .register(Box::new(commits_confirmed.clone()))
            .unwrap();
        AssemblerMetrics {
            open_calls,
            retained_calls,
            calls_closed,
            duplicates,
            checkpoints,
            cut_checkpoints,
            commits_confirmed,
            tombstones,
            restored_calls,
            rekeyed,
        }
    }
}
