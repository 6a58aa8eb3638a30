//! Per-stage processor throughput, in-process: no broker, no ClickHouse.
//!
//! Run: `cargo bench -p cdr-e2e --bench stages` (`make bench` runs it too).
//!
//! Input: `cdrctl::simulate::generate` with a fixed seed (5,000 calls, event
//! times from two hours before a fixed "now", no malformed messages), as
//! `call-events` records keyed by call id. Setup (untimed) runs the chain
//! once, each stage consuming the records the one before it produced, as
//! the topics connect them:
//!
//! `call-events` → assembler → `calls.assembled` → enricher →
//! `calls.enriched` → rater → `cdrs.rated` → detector → `cdrs.scored` →
//! kpi → `kpi.calls`; the sink reads `cdrs.scored`, `kpi.calls` and the
//! control records (route alerts and status, billing adjustments, plan
//! changes, account alerts) produced on the way.
//!
//! Every stage is configured as on the local stack: `deploy/local/config/
//! <service>.toml` when there is one (the rate decks, accounts and tables of
//! `deploy/local/data`, the enricher's LRN NPA-NXX and ported-number files),
//! else the service's defaults; no `CDR__` environment overrides.
//!
//! # What one iteration measures
//! One iteration is the whole prepared input of a stage, split into the
//! service's own batches (`stage.batch_max_records`), with per record and
//! per batch the work of the service's `cdr_kafka::Stage::process`: decode
//! (JSON for the assembler, Avro elsewhere) → the service's pure core (the
//! same functions `process` calls) → encode every output (Avro records,
//! JSON state records written to the compacted state topics, the sink's
//! rows and insert deduplication tokens). Throughput is in input records
//! per second (for the assembler: switch events, ~4.4 per call).
//! * State starts fresh every iteration (built in the untimed setup): the
//!   assembler's open calls, the enricher's dip ledger, the rater's
//!   conformance and dialer-profile windows (and its plan history, which a
//!   downgrade changes), the detector's route windows. The enricher's LRN
//!   cache is warm: the setup run filled it.
//! * The assembler's share of the stage loop's periodic work runs after
//!   every batch (the loop: by wall time): its `tick`, its open-call
//!   checkpoints (which release long calls' offsets) and the commit
//!   (`commit_point`, then `committed`, which lets it forget closed calls).
//!   Without them its commit point never moves and its per-record work
//!   grows with every call seen.
//! * The ends of a run that the stage loop's ticks do are included once,
//!   after the last batch: the assembler's tick that closes the calls still
//!   in their reorder grace, the enricher's idle release of held calls.
//! * Everything is on one input partition (0).
//!
//! # What it leaves out
//! Kafka fetch, produce, acknowledgement waits and offset commits; restoring
//! a newly assigned partition's state from its compacted topic (the state is
//! empty instead); the followers of `accounts.plan-changes` and
//! `routes.status`; the ClickHouse insert (RowBinary serialisation, HTTP,
//! retries); Prometheus metric updates and logging.
//!
//! Setup asserts that every stage produced what it must (every simulated
//! call assembled, enriched, rated, scored and turned into a KPI row; every
//! sink record a row; no dead letters), so the bench cannot silently
//! measure nothing.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use assembler::core::{Assembler, AssemblyConfig, Clock, Ingest, Pos};
use cdr_clickhouse::rows::DeadLetterRow;
use cdr_kafka::stage::{dead_letter_for, Output, Reject, Rejection};
use cdr_kafka::{Message, OwnedMessage};
use cdr_model::avro::{AvroError, Codec};
use cdr_model::call::{AssembledCall, EnrichedCall, KpiCall, RatedCdr};
use cdr_model::control::{
    AccountAlertEvent, Adjustment, PlanChange, RouteAlertEvent, RouteStatusEvent,
};
use cdr_model::event::SwitchEvent;
use cdr_model::topics;
use cdrctl::simulate::{generate, SimConfig};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use detector::core::Detector;
use enricher::{Enriched, Enricher, Held};
use rater::ratedeck::conformance::ConformanceMonitor;
use rater::RatingTables;
use rdkafka::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::runtime::Runtime;

/// The fixed "now" (wall clock) of every run.
const NOW_MS: i64 = 1_790_000_000_000;
/// First simulated call setup: two hours before "now".
const START_MS: i64 = NOW_MS - 2 * 3_600_000;
const SEED: u64 = 20_260_101;
const CALLS: usize = 5_000;
const PARTITION: i32 = 0;
/// The assembler's final tick runs this long (wall) after the last record:
/// past every reorder grace and idle flush, far short of a stale close.
const FLUSH_AFTER_MS: i64 = 60_000;

/// Files the bench loads (relative to the repository root).
const REQUIRED: &[&str] = &[
    "deploy/local/config/assembler.toml",
    "deploy/local/config/enricher.toml",
    "deploy/local/config/rater.toml",
    "deploy/local/config/detector.toml",
    "deploy/local/data/decks.toml",
    "deploy/local/data/accounts.txt",
    "deploy/local/data/npanxx_states.txt",
    "deploy/local/data/uk_surcharges.txt",
    "deploy/local/data/traffic_profiles.txt",
    "deploy/local/data/lrn/npanxx.txt",
    "deploy/local/data/lrn/ported.txt",
];

const HINT: &str = "the stage bench loads the local stack's configuration and data \
    (deploy/local/config, deploy/local/data): run `make stack` first (or restore them from git)";

/// Runs from the repository root, the services' working directory (the
/// configurations' paths are relative to it).
fn enter_repository_root() {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    std::env::set_current_dir(&root)
        .unwrap_or_else(|e| panic!("cannot enter {}: {e}", root.display()));
    for f in REQUIRED {
        assert!(
            Path::new(f).is_file(),
            "{} is missing: {HINT}",
            root.join(f).display()
        );
    }
}

/// A service's configuration as the local stack starts it: its
/// `deploy/local/config/<service>.toml` when present, else the defaults.
fn config<T: DeserializeOwned>(service: &str) -> T {
    let file = PathBuf::from(format!("deploy/local/config/{service}.toml"));
    let path = file.is_file().then_some(file.as_path());
    cdr_kafka::config::load_config_from(path, &[])
        .unwrap_or_else(|e| panic!("{service} configuration: {e:#} ({HINT})"))
}

fn batch_size(stage: &cdr_kafka::StageConfig, d: cdr_kafka::StageDefaults) -> usize {
    stage
        .resolve(d)
        .expect("[stage] settings")
        .batch_max_records
}

/// What a stage hands its `Outbox`: the records it produces, dead letters
/// included (on its dead-letter topic).
struct Produced {
    service: &'static str,
    dlq_topic: &'static str,
    records: Vec<Output>,
    rejected: usize,
    /// Inputs the stage still holds after the run (open calls, held calls).
    pending: usize,
}

impl Produced {
    fn new(service: &'static str, dlq_topic: &'static str) -> Self {
        Produced {
            service,
            dlq_topic,
            records: Vec::new(),
            rejected: 0,
            pending: 0,
        }
    }

    fn emit(&mut self, topic: &str, key: impl Into<Vec<u8>>, payload: Vec<u8>) {
        self.records.push(Output {
            topic: topic.to_string(),
            partition: None,
            key: key.into(),
            payload: Some(payload),
            origin: None,
            timestamp_ms: None,
        });
    }

    fn emit_to(&mut self, topic: &str, partition: i32, key: Vec<u8>, payload: Option<Vec<u8>>) {
        self.records.push(Output {
            topic: topic.to_string(),
            partition: Some(partition),
            key,
            payload,
            origin: None,
            timestamp_ms: None,
        });
    }

    fn reject(&mut self, m: &OwnedMessage, why: &dyn Rejection) {
        let dl = dead_letter_for(self.service, m, why);
        self.rejected += 1;
        let topic = self.dlq_topic;
        self.emit(topic, dl.id().into_bytes(), dl.to_json());
    }

    fn on<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a Output> + 'a {
        self.records.iter().filter(move |o| o.topic == topic)
    }

    fn count(&self, topic: &str) -> usize {
        self.on(topic).count()
    }

    /// The records produced to `topic`, as the next stage consumes them.
    fn messages(&self, topic: &str) -> Vec<OwnedMessage> {
        self.on(topic)
            .enumerate()
            .map(|(i, o)| {
                message(
                    topic,
                    i as i64,
                    &o.key,
                    o.payload.clone().unwrap_or_default(),
                )
            })
            .collect()
    }
}

fn message(topic: &str, offset: i64, key: &[u8], payload: Vec<u8>) -> OwnedMessage {
    OwnedMessage::new(
        Some(payload),
        Some(key.to_vec()),
        topic.to_string(),
        Timestamp::CreateTime(NOW_MS),
        PARTITION,
        offset,
        None,
    )
}

fn json<T: Serialize>(r: &T) -> Vec<u8> {
    serde_json::to_vec(r).expect("encoding a state record")
}

/// The batches `Stage::process` gets.
fn batches(input: &[OwnedMessage], size: usize) -> std::slice::Chunks<'_, OwnedMessage> {
    input.chunks(size)
}

// ---------------------------------------------------------------- assembler

struct AssemblerBench {
    cfg: AssemblyConfig,
    skew_ms: i64,
    batch: usize,
    codec: Codec<AssembledCall>,
}

impl AssemblerBench {
    fn load() -> Self {
        let c: assembler::Config = config(assembler::SERVICE);
        c.validate().expect("assembler configuration");
        AssemblerBench {
            cfg: c.assembly(),
            skew_ms: c.skew_ms,
            batch: batch_size(&c.stage, assembler::STAGE_DEFAULTS),
            codec: Codec::new(),
        }
    }

    fn fresh(&self) -> Assembler {
        Assembler::new(self.cfg.clone())
    }

    /// `AssemblerStage::process` and the loop's periodic work per batch,
    /// then the tick that closes the calls still in their reorder grace once
    /// the partition is idle.
    fn run(&self, asm: &mut Assembler, input: &[OwnedMessage]) -> Produced {
        let mut out = Produced::new(assembler::SERVICE, topics::CALL_EVENTS_DLQ);
        for batch in batches(input, self.batch) {
            for m in batch {
                let pos = Pos {
                    partition: m.partition(),
                    offset: m.offset(),
                };
                let clock = Clock {
                    log_ms: m.timestamp().to_millis().unwrap_or(NOW_MS),
                    wall_ms: NOW_MS,
                };
                match SwitchEvent::from_json(m.payload().unwrap_or_default(), self.skew_ms) {
                    Err(e) => {
                        asm.skip(pos, NOW_MS);
                        out.reject(m, &e);
                    }
                    Ok(ev) if m.key() != Some(ev.call_id.as_bytes()) => {
                        asm.skip(pos, NOW_MS);
                        out.emit(
                            topics::CALL_EVENTS,
                            ev.call_id.into_bytes(),
                            m.payload().unwrap_or_default().to_vec(),
                        );
                    }
                    Ok(ev) => match asm.ingest(ev, pos, clock) {
                        Ingest::Accepted | Ingest::Duplicate => {}
                        Ingest::Rejected(e) => out.reject(m, &e),
                    },
                }
            }
            let closed = asm.take_closed();
            self.emit(closed, &mut out);
            self.periodic(asm, NOW_MS, &mut out);
        }
        // Idle after the last record: the tick closes the calls still in
        // their reorder grace.
        self.periodic(asm, NOW_MS + FLUSH_AFTER_MS, &mut out);
        out.pending = asm.open_calls();
        out
    }

    /// What the stage loop does between batches (`tick`, its open-call
    /// checkpoints, the commit: every 250 ms, 5 s and 1 s of wall time),
    /// here once per batch. The checkpoints release long calls' offsets;
    /// the commit lets the core forget closed calls.
    fn periodic(&self, asm: &mut Assembler, wall_ms: i64, out: &mut Produced) {
        let closed = asm.tick(wall_ms);
        self.emit(closed, out);
        for oc in asm.checkpoints_due() {
            let v = json(&oc);
            out.emit_to(
                topics::ASSEMBLER_OPEN_CALLS,
                oc.partition,
                oc.cdr_id.into_bytes(),
                Some(v),
            );
        }
        for (p, o) in asm.committable() {
            asm.committed(p, o);
        }
    }

    fn emit(&self, calls: Vec<AssembledCall>, out: &mut Produced) {
        for call in calls {
            let payload = self.codec.encode(&call).expect("encoding assembled call");
            out.emit(
                topics::CALLS_ASSEMBLED,
                assembler::affinity_key(&call.dialed),
                payload,
            );
        }
    }
}

// ----------------------------------------------------------------- enricher

struct EnricherBench {
    /// Built once: its LRN cache stays warm across iterations; the dip
    /// ledger is replaced by an empty one before each.
    enricher: RefCell<Enricher>,
    /// Ledger resets, so an iteration can check it got its own.
    resets: Cell<u64>,
    input: Codec<AssembledCall>,
    output: Codec<EnrichedCall>,
    concurrency: usize,
    batch: usize,
    rt: Runtime,
}

impl EnricherBench {
    fn load() -> Self {
        let c: enricher::Config = config(enricher::SERVICE);
        c.validate().expect("enricher configuration");
        lrn::numbering::warm_up();
        let e = Enricher::from_config(&c.lrn)
            .unwrap_or_else(|e| panic!("enricher from its configuration: {e:#} ({HINT})"));
        EnricherBench {
            enricher: RefCell::new(e),
            resets: Cell::new(0),
            input: Codec::new(),
            output: Codec::new(),
            concurrency: c.lookup_concurrency,
            batch: batch_size(&c.stage, enricher::STAGE_DEFAULTS),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
        }
    }

    /// A fresh dip ledger for the partition (a newly assigned partition with
    /// nothing in `lrn.decisions`); the old one is dropped here, untimed.
    fn reset(&self) -> u64 {
        self.enricher
            .borrow_mut()
            .restore_partition(PARTITION, Vec::new());
        let n = self.resets.get() + 1;
        self.resets.set(n);
        n
    }

    /// `EnricherStage::process` per batch, then the idle release of the
    /// calls still held (the stage's tick).
    fn run(&self, reset: u64, input: &[OwnedMessage]) -> Produced {
        assert_eq!(
            reset,
            self.resets.get(),
            "an enricher iteration must start from its own fresh ledger"
        );
        let e = &mut *self.enricher.borrow_mut();
        let mut out = Produced::new(enricher::SERVICE, topics::PIPELINE_DLQ);
        let mut held: Vec<Held> = Vec::new();
        for batch in batches(input, self.batch) {
            let mut parts: Vec<i32> = batch.iter().map(|m| m.partition()).collect();
            parts.sort_unstable();
            parts.dedup();
            let mut calls = Vec::with_capacity(batch.len());
            for m in batch {
                match self.input.decode(m.payload().unwrap_or_default()) {
                    Ok(c) => calls.push((m.partition(), m.offset(), c)),
                    Err(err) => out.reject(m, &Reject::BadAvro(err.to_string())),
                }
            }
            let (ready, h) = self.rt.block_on(e.enrich_batch(calls, self.concurrency));
            held.extend(h);
            let released = Self::release(e, &parts, false, &mut held);
            Self::write_ledger(e, &mut out);
            for (_, _, x) in ready {
                self.emit(x, &mut out);
            }
            for x in released {
                self.emit(x, &mut out);
            }
            for x in e.take_demoted() {
                self.emit(x, &mut out);
            }
        }
        let mut idle: Vec<i32> = held.iter().map(|h| h.partition).collect();
        idle.sort_unstable();
        idle.dedup();
        let released = Self::release(e, &idle, true, &mut held);
        Self::write_ledger(e, &mut out);
        for x in released {
            self.emit(x, &mut out);
        }
        for x in e.take_demoted() {
            self.emit(x, &mut out);
        }
        out.pending = held.len();
        out
    }

    fn release(e: &mut Enricher, parts: &[i32], all: bool, held: &mut Vec<Held>) -> Vec<Enriched> {
        let mut out = Vec::new();
        for p in parts {
            out.extend(
                e.release_partition(*p, all, held)
                    .into_iter()
                    .map(|(_, x)| x),
            );
        }
        out
    }

    fn write_ledger(e: &mut Enricher, out: &mut Produced) {
        for (p, c) in e.take_changes() {
            let payload = c.record.as_ref().map(json);
            out.emit_to(topics::LRN_DECISIONS, p, c.key.into_bytes(), payload);
        }
    }

    fn emit(&self, x: Enriched, out: &mut Produced) {
        match self.output.encode(&x.call) {
            Ok(bytes) => out.emit(topics::CALLS_ENRICHED, x.key.into_bytes(), bytes),
            Err(_) => out.rejected += 1,
        }
    }
}

// -------------------------------------------------------------------- rater

struct RaterBench {
    cfg: rater::Config,
    tables: RatingTables,
    declared: rater::profile::Declared,
    input: Codec<EnrichedCall>,
    output: Codec<RatedCdr>,
    change_codec: Codec<PlanChange>,
    alert_codec: Codec<AccountAlertEvent>,
    batch: usize,
}

/// The rater's mutable state: the plan history inside the tables (a
/// downgrade records a change) and the per-account monitors.
struct RaterState {
    tables: RatingTables,
    monitor: ConformanceMonitor,
    profiles: detection::ProfileMonitor,
}

impl RaterBench {
    fn load() -> Self {
        let c: rater::Config = config(rater::SERVICE);
        c.validate().expect("rater configuration");
        let rating = c.rating();
        assert!(
            rating.enabled(),
            "deploy/local/config/rater.toml names no rate decks"
        );
        let base = std::env::current_dir().expect("working directory");
        let (tables, _summary) =
            rater::load(&rating, &base).unwrap_or_else(|e| panic!("rater tables: {e:#} ({HINT})"));
        let declared = rater::profile::load_declared(c.traffic_profiles.as_deref())
            .unwrap_or_else(|e| panic!("declared traffic profiles: {e:#} ({HINT})"));
        RaterBench {
            batch: batch_size(&c.stage, rater::STAGE_DEFAULTS),
            cfg: c,
            tables,
            declared,
            input: Codec::new(),
            output: Codec::new(),
            change_codec: Codec::new(),
            alert_codec: Codec::new(),
        }
    }

    fn fresh(&self) -> RaterState {
        RaterState {
            tables: self.tables.clone(),
            monitor: ConformanceMonitor::new(self.cfg.conformance.clone())
                .expect("conformance config"),
            profiles: detection::ProfileMonitor::new(self.cfg.profile).expect("profile config"),
        }
    }

    /// `RaterProcessor::process`: every call rated, then the monitors'
    /// changed state written, per batch.
    fn run(&self, st: &mut RaterState, input: &[OwnedMessage]) -> Produced {
        let mut out = Produced::new(rater::SERVICE, topics::PIPELINE_DLQ);
        for batch in batches(input, self.batch) {
            for m in batch {
                self.rate_one(st, m, &mut out);
            }
            for c in st.profiles.take_changes() {
                out.emit_to(
                    topics::RATER_CONFORMANCE,
                    c.partition,
                    c.key.into_bytes(),
                    c.record.as_ref().map(json),
                );
            }
            for c in st.monitor.take_changes() {
                out.emit_to(
                    topics::RATER_CONFORMANCE,
                    c.partition,
                    c.key.into_bytes(),
                    c.record.as_ref().map(json),
                );
            }
        }
        out
    }

    /// `RaterProcessor::rate_one`: observe (conformance, dialer profile),
    /// then rate.
    fn rate_one(&self, st: &mut RaterState, m: &OwnedMessage, out: &mut Produced) {
        let call: EnrichedCall = match self.input.decode(m.payload().unwrap_or_default()) {
            Ok(c) => c,
            Err(e) => return out.reject(m, &Reject::BadAvro(e.to_string())),
        };
        if let Some(d) =
            rater::conformance::observe(&mut st.monitor, &st.tables, m.partition(), &call.call)
        {
            let change = rater::conformance::downgrade_event(&d);
            Self::apply(st, &change);
            if let Ok(bytes) = self.change_codec.encode(&change) {
                out.emit(
                    topics::ACCOUNTS_PLAN_CHANGES,
                    change.change_id.clone(),
                    bytes,
                );
            }
        }
        for a in
            rater::profile::observe(&mut st.profiles, &self.declared, m.partition(), &call.call)
        {
            if let Ok(bytes) = self.alert_codec.encode(&a) {
                out.emit(topics::ACCOUNTS_ALERTS, a.account_id.clone(), bytes);
            }
        }
        let cdr = rater::rate_call(call, &st.tables.context());
        match self.output.encode(&cdr) {
            Ok(bytes) => out.emit(topics::CDRS_RATED, rater::route_key(&cdr), bytes),
            Err(e) => out.reject(m, &Reject::EncodeFailed(e.to_string())),
        }
    }

    /// `RaterProcessor::apply`: records a plan change.
    fn apply(st: &mut RaterState, c: &PlanChange) {
        let Some(kind) = rater::conformance::category(&c.new_plan) else {
            return;
        };
        let at = chrono::DateTime::from_timestamp_millis(c.decided_at_ms).unwrap_or_default();
        if st
            .tables
            .plans
            .record(&c.account_id, at, kind, &c.change_id)
        {
            st.monitor.reset(&c.account_id);
        }
    }
}

// ----------------------------------------------------------------- detector

struct DetectorBench {
    cfg: detector::Config,
    batch: usize,
    input: Codec<RatedCdr>,
    output: Codec<RatedCdr>,
    alert: Codec<RouteAlertEvent>,
    status: Codec<RouteStatusEvent>,
    adjustment: Codec<Adjustment>,
}

impl DetectorBench {
    fn load() -> Self {
        let c: detector::Config = config(detector::SERVICE);
        c.validate().expect("detector configuration");
        DetectorBench {
            batch: batch_size(&c.stage, detector::STAGE_DEFAULTS),
            cfg: c,
            input: Codec::new(),
            output: Codec::new(),
            alert: Codec::new(),
            status: Codec::new(),
            adjustment: Codec::new(),
        }
    }

    fn fresh(&self) -> Detector {
        let routes = detection::RouteMonitor::new(self.cfg.route).expect("route config");
        Detector::new(self.cfg.fas, routes)
    }

    /// `DetectorProcessor::process`: every CDR scored, then the route
    /// state written, per batch.
    fn run(&self, d: &mut Detector, input: &[OwnedMessage]) -> Produced {
        let mut out = Produced::new(detector::SERVICE, topics::PIPELINE_DLQ);
        for batch in batches(input, self.batch) {
            for m in batch {
                self.score_one(d, m, &mut out);
            }
            for c in d.take_changes() {
                let payload = c.record.as_ref().map(json);
                out.emit_to(
                    topics::DETECTOR_ROUTES,
                    PARTITION,
                    c.key.into_bytes(),
                    payload,
                );
            }
        }
        out
    }

    fn score_one(&self, d: &mut Detector, m: &OwnedMessage, out: &mut Produced) {
        let cdr = match self.input.decode(m.payload().unwrap_or_default()) {
            Ok(c) => c,
            Err(e) => return out.reject(m, &Reject::BadAvro(e.to_string())),
        };
        let o = d.process(cdr);
        if let Some(s) = &o.scored {
            put(
                self.output.encode(s),
                topics::CDRS_SCORED,
                &s.call.cdr_id,
                out,
            );
        }
        for a in &o.alerts {
            put(
                self.alert.encode(a),
                topics::ROUTES_ALERTS,
                &a.alert_id,
                out,
            );
        }
        for s in &o.status {
            let key = format!("{}|{}", s.trunk_id, s.breakout);
            put(self.status.encode(s), topics::ROUTES_STATUS, &key, out);
        }
        for a in &o.adjustments {
            put(
                self.adjustment.encode(a),
                topics::BILLING_ADJUSTMENTS,
                &a.account_id,
                out,
            );
        }
    }
}

/// The detector's `out`: an output that cannot be encoded is logged there
/// and not produced.
fn put(encoded: Result<Vec<u8>, AvroError>, topic: &str, key: &str, out: &mut Produced) {
    match encoded {
        Ok(payload) => out.emit(topic, key.as_bytes(), payload),
        Err(_) => out.rejected += 1,
    }
}

// ---------------------------------------------------------------------- kpi

struct KpiBench {
    cfg: kpi::core::KpiConfig,
    batch: usize,
    input: Codec<RatedCdr>,
    output: Codec<KpiCall>,
}

impl KpiBench {
    fn load() -> Self {
        let c: kpi::Config = config(kpi::SERVICE);
        c.validate().expect("kpi configuration");
        KpiBench {
            cfg: kpi::core::KpiConfig {
                short_call_ms: c.short_call_ms,
            },
            batch: batch_size(&c.stage, kpi::STAGE_DEFAULTS),
            input: Codec::new(),
            output: Codec::new(),
        }
    }

    /// `KpiStage::process`.
    fn run(&self, input: &[OwnedMessage]) -> Produced {
        let mut out = Produced::new(kpi::SERVICE, topics::PIPELINE_DLQ);
        for batch in batches(input, self.batch) {
            for m in batch {
                let cdr = match self.input.decode(m.payload().unwrap_or_default()) {
                    Ok(c) => c,
                    Err(e) => {
                        out.reject(m, &Reject::BadAvro(e.to_string()));
                        continue;
                    }
                };
                let row = match kpi::core::kpi_call(&cdr, &self.cfg) {
                    Ok(r) => r,
                    Err(e) => {
                        out.reject(m, &e);
                        continue;
                    }
                };
                match self.output.encode(&row) {
                    Ok(payload) => out.emit(topics::KPI_CALLS, row.cdr_id.as_bytes(), payload),
                    Err(e) => out.reject(m, &Reject::EncodeFailed(e.to_string())),
                }
            }
        }
        out
    }
}

// --------------------------------------------------------------------- sink

struct SinkBench {
    codecs: sink::Codecs,
    batch: usize,
}

/// What the sink would insert: the rows of each batch and the
/// deduplication token of each non-empty insert.
struct SinkRun {
    batches: Vec<sink::Rows>,
    tokens: Vec<String>,
    produced: Produced,
}

impl SinkRun {
    fn rows(&self) -> usize {
        self.batches.iter().map(sink::Rows::len).sum()
    }
}

impl SinkBench {
    fn load() -> Self {
        let c: sink::Config = config(sink::SERVICE);
        c.validate().expect("sink configuration");
        SinkBench {
            codecs: sink::Codecs::default(),
            batch: batch_size(&c.stage, sink::STAGE_DEFAULTS),
        }
    }

    /// `SinkStage::process` up to the inserts: every record converted to its
    /// row, then the deduplication token each insert carries.
    fn run(&self, input: &[OwnedMessage]) -> SinkRun {
        let mut out = Produced::new(sink::SERVICE, topics::PIPELINE_DLQ);
        let mut done = Vec::new();
        let mut tokens = Vec::new();
        for batch in batches(input, self.batch) {
            let mut rows = sink::Rows::default();
            for (i, msg) in batch.iter().enumerate() {
                let before = rows.lens();
                match sink::convert(
                    msg.topic(),
                    msg.payload().unwrap_or_default(),
                    &self.codecs,
                    &mut rows,
                ) {
                    Ok(()) => rows.record_src(before, i),
                    Err(why) => {
                        if msg.topic() == topics::PIPELINE_DLQ
                            || msg.topic() == topics::CALL_EVENTS_DLQ
                        {
                            let dl = dead_letter_for(sink::SERVICE, msg, &why);
                            rows.dead.push(DeadLetterRow::from(&dl));
                            rows.src.dead.push(i);
                        } else {
                            out.reject(msg, &why);
                        }
                    }
                }
            }
            token("rated_cdrs", &rows.cdrs, &mut tokens);
            token("kpi_calls", &rows.kpis, &mut tokens);
            token("dead_letters", &rows.dead, &mut tokens);
            token("account_plan_changes", &rows.plan_changes, &mut tokens);
            token("route_alerts", &rows.route_alerts, &mut tokens);
            token("route_status", &rows.route_status, &mut tokens);
            token("adjustments", &rows.adjustments, &mut tokens);
            token("account_alerts", &rows.account_alerts, &mut tokens);
            done.push(rows);
        }
        SinkRun {
            batches: done,
            tokens,
            produced: out,
        }
    }
}

/// `Writer::insert` skips an empty table; every other insert carries a token.
fn token<T: Serialize>(table: &str, rows: &[T], tokens: &mut Vec<String>) {
    if !rows.is_empty() {
        tokens.push(sink::dedup_token(table, rows));
    }
}

// -------------------------------------------------------------------- bench

fn distinct_cdr_ids(codec: &Codec<RatedCdr>, msgs: &[OwnedMessage]) -> usize {
    msgs.iter()
        .map(|m| {
            codec
                .decode(m.payload().unwrap_or_default())
                .expect("decodable")
                .call
                .cdr_id
        })
        .collect::<HashSet<_>>()
        .len()
}

fn stages(c: &mut Criterion) {
    enter_repository_root();
    let (msgs, expected) = generate(&SimConfig {
        seed: SEED,
        calls: CALLS,
        start_ms: START_MS,
        malformed_pct: 0.0,
        run_id: "stagebench".into(),
        ..SimConfig::default()
    });
    assert_eq!(
        expected.dead_letters, 0,
        "the simulator made malformed messages"
    );
    let events: Vec<OwnedMessage> = msgs
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            OwnedMessage::new(
                Some(m.payload),
                Some(m.key.into_bytes()),
                topics::CALL_EVENTS.to_string(),
                Timestamp::CreateTime(m.ts_ms),
                PARTITION,
                i as i64,
                None,
            )
        })
        .collect();

    // The chain, once, untimed (this run also fills the LRN cache).
    let asm = AssemblerBench::load();
    let a = asm.run(&mut asm.fresh(), &events);
    assert_eq!(a.rejected, 0, "assembler dead-lettered events");
    assert_eq!(a.count(topics::CALL_EVENTS), 0, "assembler re-keyed events");
    assert_eq!(a.pending, 0, "assembler left calls open");
    assert_eq!(
        a.count(topics::CALLS_ASSEMBLED),
        expected.calls,
        "assembled calls != simulated calls"
    );
    let assembled = a.messages(topics::CALLS_ASSEMBLED);

    let enr = EnricherBench::load();
    let e = enr.run(enr.reset(), &assembled);
    assert_eq!(e.rejected, 0, "enricher dead-lettered calls");
    assert_eq!(e.pending, 0, "enricher still holds calls");
    let enriched = e.messages(topics::CALLS_ENRICHED);
    let distinct = enriched
        .iter()
        .map(|m| {
            enr.output
                .decode(m.payload().unwrap_or_default())
                .expect("decodable")
                .call
                .cdr_id
        })
        .collect::<HashSet<_>>()
        .len();
    assert_eq!(
        distinct,
        assembled.len(),
        "enriched calls != assembled calls"
    );
    assert!(enriched.len() >= assembled.len());

    let rat = RaterBench::load();
    let r = rat.run(&mut rat.fresh(), &enriched);
    assert_eq!(r.rejected, 0, "rater dead-lettered calls");
    let rated = r.messages(topics::CDRS_RATED);
    assert_eq!(rated.len(), enriched.len(), "rated CDRs != enriched calls");
    let rated_ok = rated
        .iter()
        .filter(|m| {
            rat.output
                .decode(m.payload().unwrap_or_default())
                .is_ok_and(|c| c.rating.status == "rated")
        })
        .count();
    assert!(rated_ok > 0, "the rater rated no call (decks not loaded?)");

    let det = DetectorBench::load();
    let d = det.run(&mut det.fresh(), &rated);
    assert_eq!(d.rejected, 0, "detector failed on CDRs");
    let scored = d.messages(topics::CDRS_SCORED);
    assert_eq!(scored.len(), rated.len(), "scored CDRs != rated CDRs");
    assert_eq!(
        distinct_cdr_ids(&det.output, &scored),
        expected.calls,
        "scored CDRs do not cover every call"
    );

    let kpi = KpiBench::load();
    let k = kpi.run(&scored);
    assert_eq!(k.rejected, 0, "kpi dead-lettered CDRs");
    let kpi_calls = k.messages(topics::KPI_CALLS);
    assert_eq!(kpi_calls.len(), scored.len(), "KPI rows != scored CDRs");

    // The sink's input: scored CDRs and KPI rows as they arrive together,
    // then the control records of the run.
    let mut sink_in: Vec<OwnedMessage> = scored
        .iter()
        .zip(&kpi_calls)
        .flat_map(|(s, k)| [s.clone(), k.clone()])
        .collect();
    for (produced, topic) in [
        (&d, topics::ROUTES_ALERTS),
        (&d, topics::ROUTES_STATUS),
        (&d, topics::BILLING_ADJUSTMENTS),
        (&r, topics::ACCOUNTS_PLAN_CHANGES),
        (&r, topics::ACCOUNTS_ALERTS),
    ] {
        sink_in.extend(produced.messages(topic));
    }
    let snk = SinkBench::load();
    let s = snk.run(&sink_in);
    assert_eq!(s.produced.rejected, 0, "sink dead-lettered records");
    assert_eq!(s.rows(), sink_in.len(), "sink rows != sink input records");
    assert!(!s.tokens.is_empty());

    eprintln!(
        "stage bench input: {} events, {} calls; {} assembled ({} open-call checkpoints), {} enriched, {} rated ({} rated ok), \
         {} scored, {} KPI rows, {} sink records (control: {} route alerts, {} route status, \
         {} adjustments, {} plan changes, {} account alerts)",
        events.len(),
        expected.calls,
        assembled.len(),
        a.count(topics::ASSEMBLER_OPEN_CALLS),
        enriched.len(),
        rated.len(),
        rated_ok,
        scored.len(),
        kpi_calls.len(),
        sink_in.len(),
        d.count(topics::ROUTES_ALERTS),
        d.count(topics::ROUTES_STATUS),
        d.count(topics::BILLING_ADJUSTMENTS),
        r.count(topics::ACCOUNTS_PLAN_CHANGES),
        r.count(topics::ACCOUNTS_ALERTS),
    );

    let mut g = c.benchmark_group("stage");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);

    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("assembler", |b| {
        b.iter_batched(
            || asm.fresh(),
            |mut st| {
                let out = asm.run(&mut st, &events);
                (st, out)
            },
            BatchSize::LargeInput,
        )
    });

    g.throughput(Throughput::Elements(assembled.len() as u64));
    g.bench_function("enricher", |b| {
        b.iter_batched(
            || enr.reset(),
            |reset| enr.run(reset, &assembled),
            BatchSize::LargeInput,
        )
    });

    g.throughput(Throughput::Elements(enriched.len() as u64));
    g.bench_function("rater", |b| {
        b.iter_batched(
            || rat.fresh(),
            |mut st| {
                let out = rat.run(&mut st, &enriched);
                (st, out)
            },
            BatchSize::LargeInput,
        )
    });

    g.throughput(Throughput::Elements(rated.len() as u64));
    g.bench_function("detector", |b| {
        b.iter_batched(
            || det.fresh(),
            |mut st| {
                let out = det.run(&mut st, &rated);
                (st, out)
            },
            BatchSize::LargeInput,
        )
    });

    g.throughput(Throughput::Elements(scored.len() as u64));
    g.bench_function("kpi", |b| {
        b.iter_batched(|| (), |()| kpi.run(&scored), BatchSize::LargeInput)
    });

    g.throughput(Throughput::Elements(sink_in.len() as u64));
    g.bench_function("sink", |b| {
        b.iter_batched(|| (), |()| snk.run(&sink_in), BatchSize::LargeInput)
    });

    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
