//! Enricher service: consumes `calls.assembled`, fills the enrichment section
//! and produces `calls.enriched`, keyed by the normalised dialed number (so
//! the same number always goes to the same partition, and the same enricher
//! instance's LRN cache).
//!
//! Per call ([`core`] is the pure part, unit-tested):
//! * strip the dial-plan selector (`*30` pstn, `*31` standard, `*32` premium,
//!   `*4TTT` trunk) into `plan_selector` / `trunk_selector`, normalise `cli`
//!   and `dialed` to E.164 (`lrn::numbering`), caller-id validity, caller and
//!   callee country, callee number type;
//! * LRN for NANP geographic numbers through [`lrn::LrnCache`]: `lrn`,
//!   `ported`, `lrn_source` (`cache` | `dip` | `unavailable` |
//!   `not_applicable`) and `lrn_fee` (decimal string: the dip fee when a dip
//!   was performed, else `0`). A source that keeps failing until
//!   `lrn.unavailable_deadline_ms` gives `unavailable`, no LRN, fee 0 and the
//!   flag `lrn_unavailable`; the call is never blocked;
//! * jurisdiction for calls to US numbers: caller NPA-NXX vs the LRN's
//!   NPA-NXX (the dialed one when no LRN is known) — the one rule
//!   (`numbering::call_jurisdiction`); the rater prices by it;
//! * inbound calls (`direction = inbound`) are not terminations: never
//!   dipped, `lrn_source = not_applicable`, fee 0.
//!
//! # Unanswered calls are dipped
//! A carrier dips at call setup, before it knows whether the call will be
//! answered, so **every NANP attempt** (answered, busy, no answer, failed,
//! cancelled) is resolved here and carries its LRN decision: the attempt
//! that pays the dip carries `lrn_fee = 0.0003` whatever its disposition.
//! (Whether the rater bills that fee on a zero-duration attempt is the
//! rater's decision; the enricher records that the dip happened.)
//!
//! # Who pays the dip: the ledger, not the process's cache
//! "Not in our cache" is decided by [`lrn::DipLedger`] in event time: the
//! cache lifetime (`lrn.cache_ttl_secs`) cuts each number's timeline into
//! periods, the **earliest call** of a (number, period) — by setup time,
//! then `cdr_id` — pays the dip, every other call of the period is a cache
//! hit with fee 0 and the period's LRN. The in-memory [`lrn::LrnCache`]
//! only saves lookups; it never decides a fee. So the fee and the LRN of a
//! call are a function of the calls of its number, not of when this process
//! started, which instance owns the partition, how often a call was
//! re-delivered, or in which order the assembler's partitions delivered
//! the calls.
//!
//! Because calls of one number reach a partition from several assembler
//! partitions in a timing-dependent order, the first calls of a period are
//! **held** until the partition's event time (its newest setup) is
//! `lrn.dip_lateness_ms` (20 s) past the earliest of them; then the holder is
//! fixed and they are produced. A partition whose event time stops moving
//! releases its held calls after `lrn.idle_release_ms` (5 s) of wall time.
//!
//! Holding only makes the first answer usually right: a call can still come
//! later than the lateness (an assembler partition stalled by a kill -9 or a
//! rebalance, an idle release that came too early). If it was set up before
//! the fixed holder, it **takes the period over**: it pays, and the old
//! holder is re-emitted from the copy of its input the ledger kept, now a
//! cache hit with fee 0 and a higher row version
//! ([`cdr_model::call::row_version`]: twice the event count, plus one for
//! every decision but the dip), which replaces the charged copy in
//! ClickHouse. So every call's final fee is the earliest-call rule over all
//! the calls of its period, and a demoted call ends with the same version
//! as a call that was a cache hit from the start. Copies are kept for
//! `lrn.correction_window_secs` (1 h) of event time after the holder's
//! setup; `cdr_enricher_lrn_demoted_total` counts the corrections.
//! The commit point never passes a held call (a restart replays it), and
//! `cdr_enricher_lrn_held_calls` shows how many wait. Later calls of a
//! fixed period are decided at once; a call more than the lateness behind
//! its partition finds the holder fixed and is a cache hit.
//!
//! The ledger is per input partition (`calls.assembled` is keyed by dialed
//! number, so a number lives on one partition) and durable: after every
//! batch the changed numbers are written to the compacted topic
//! `lrn.decisions` (key: the 10-digit number; partition i holds the ledger
//! of input partition i; a meta record holds the partition's event-time
//! watermark) and acknowledged *before* the enriched calls are produced and
//! the offsets committed. When a partition is assigned (start-up, rebalance)
//! its ledger is read back before any of its calls is enriched; when it is
//! revoked the ledger and its held calls are dropped. Numbers not called
//! for two TTLs of event time are tombstoned, so the topic is bounded by
//! the numbers in use.
//!
//! # Output key
//! `calls.enriched` is keyed by `account_id`: the rater keeps per-account
//! state (the conformance window that downgrades wholesale accounts), which
//! is only exact when one instance sees all of an account's calls. The LRN
//! affinity lives one hop earlier: the assembler keys `calls.assembled` by
//! dialed number, so one number's lookups stay on one enricher's ledger.

pub mod config;
pub mod core;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{Outbox, Reject, StageError};
use cdr_kafka::{CancellationToken, CommitPolicy};
use cdr_model::avro::Codec;
use cdr_model::call::{AssembledCall, EnrichedCall};
use cdr_model::topics;
use futures::StreamExt;
use lrn::{
    should_dip, AnySource, Demoted, DipLedger, EnrichmentRecord, HttpDip, HttpDipConfig,
    LedgerChange, LedgerRecord, LrnCache, LrnCacheConfig, LrnOutcome, LrnSourceKind, NpaNxxTable,
    PortedDb, Ruling,
};
use rdkafka::message::{Message, OwnedMessage};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

pub use config::{Config, HttpSourceConfig, LrnConfig, LrnSource, LrnTunables, STAGE_DEFAULTS};
use metrics::EnricherMetrics;

pub const SERVICE: &str = "enricher";

/// One enriched call and how its LRN decision was reached.
#[derive(Debug, Clone)]
pub struct Enriched {
    /// Kafka key: the account id (see "Output key" above).
    pub key: String,
    pub call: EnrichedCall,
    /// The LRN decision recorded on the call.
    pub record: EnrichmentRecord,
    /// `true` when the ledger already held this call's own decision (a
    /// re-delivered copy of the holder or of a failed lookup).
    pub replayed: bool,
}

/// The enrichment engine: LRN cache, NPA-NXX table and one dip ledger per
/// input partition.
pub struct Enricher {
    cache: LrnCache<AnySource>,
    table: Arc<NpaNxxTable>,
    ttl_ms: i64,
    lateness_ms: i64,
    correction_ms: i64,
    dip_fee: rust_decimal::Decimal,
    ledgers: HashMap<i32, DipLedger>,
    /// Encodes a holder's copy for the ledger (a demotion re-emits it).
    copies: Codec<AssembledCall>,
    /// Demoted calls rebuilt but not yet handed out (see `enrich_all`).
    demoted: Vec<Enriched>,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("cache", &self.cache)
            .field("npanxx_rows", &self.table.len())
            .field("partitions", &self.ledgers.len())
            .finish_non_exhaustive()
    }
}

/// A call waiting for its number-period's dip holder to be fixed; its
/// input offset must not be committed meanwhile.
#[derive(Debug, Clone)]
pub struct Held {
    pub partition: i32,
    pub offset: i64,
    pub call: AssembledCall,
}

/// A call the ledger could not decide before the lookups.
struct Pending {
    index: usize,
    partition: i32,
    tn10: String,
}

impl Enricher {
    pub fn new(
        source: AnySource,
        cache_cfg: LrnCacheConfig,
        table: NpaNxxTable,
        lateness: Duration,
    ) -> Self {
        Enricher {
            ttl_ms: cache_cfg.ttl.as_millis().min(i64::MAX as u128) as i64,
            lateness_ms: lateness.as_millis().min(i64::MAX as u128) as i64,
            correction_ms: 0,
            dip_fee: cache_cfg.dip_fee,
            cache: LrnCache::new(source, cache_cfg),
            table: Arc::new(table),
            ledgers: HashMap::new(),
            copies: Codec::new(),
            demoted: Vec::new(),
        }
    }

    /// Lets a late call set up before its period's holder demote it within
    /// `window` of event time (see "Holding" above); zero turns it off.
    pub fn with_correction_window(mut self, window: Duration) -> Self {
        self.correction_ms = window.as_millis().min(i64::MAX as u128) as i64;
        self
    }

    /// Load the files and build the source named by a validated config.
    pub fn from_config(cfg: &LrnConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        let npanxx = &cfg.npanxx_path;
        let (table, bad) = NpaNxxTable::load(npanxx)
            .with_context(|| format!("loading lrn.npanxx_path {}", npanxx.display()))?;
        for e in bad.iter().take(20) {
            tracing::warn!(file = %npanxx.display(), line = e.line, field = e.field, message = %e.message, "bad NPA-NXX row skipped");
        }
        anyhow::ensure!(
            !table.is_empty(),
            "lrn.npanxx_path {} has no valid rows ({} bad)",
            npanxx.display(),
            bad.len()
        );
        let source = match &cfg.source {
            LrnSource::PortedDb(path) => {
                let (db, report) = PortedDb::open(path)
                    .with_context(|| format!("loading lrn.ported_db {}", path.display()))?;
                for e in report.errors.iter().take(20) {
                    tracing::warn!(file = %path.display(), line = e.line, field = e.field, message = %e.message, "bad ported row skipped");
                }
                tracing::info!(file = %path.display(), rows = report.rows, bad_rows = report.bad_rows, duplicates = report.duplicates, "ported-number DB loaded");
                AnySource::Ported(Arc::new(db))
            }
            LrnSource::Http(h) => {
                let mut hc = HttpDipConfig::new(h.url_template.trim());
                hc.timeout = Duration::from_millis(h.timeout_ms);
                hc.max_concurrency = h.max_concurrency;
                hc.max_attempts = h.max_attempts;
                AnySource::Http(HttpDip::new(hc).map_err(|e| anyhow::anyhow!("lrn.http: {e}"))?)
            }
        };
        tracing::info!(npanxx_rows = table.len(), "NPA-NXX table loaded");
        let cache_cfg = LrnCacheConfig {
            max_capacity: cfg.cache_max_entries,
            ttl: cfg.ttl(),
            dip_fee: cfg.dip_fee,
            deadline: Duration::from_millis(cfg.unavailable_deadline_ms),
            ..LrnCacheConfig::default()
        };
        Ok(Enricher::new(
            source,
            cache_cfg,
            table,
            Duration::from_millis(cfg.dip_lateness_ms),
        )
        .with_correction_window(Duration::from_secs(cfg.correction_window_secs)))
    }

    /// The LRN cache (stats, flush, source reload).
    pub fn cache(&self) -> &LrnCache<AnySource> {
        &self.cache
    }

    /// `true` once `partition`'s ledger is loaded.
    pub fn has_partition(&self, partition: i32) -> bool {
        self.ledgers.contains_key(&partition)
    }

    /// Loads `partition`'s ledger from its persisted records.
    pub fn restore_partition(&mut self, partition: i32, records: Vec<LedgerRecord>) {
        let mut l = DipLedger::new(self.ttl_ms, self.lateness_ms, self.dip_fee)
            .with_correction_window(self.correction_ms);
        for r in records {
            l.restore(r);
        }
        self.ledgers.insert(partition, l);
    }

    /// Forgets a revoked partition's ledger.
    pub fn drop_partition(&mut self, partition: i32) {
        self.ledgers.remove(&partition);
    }

    /// The ledger records changed since the last call, per partition.
    pub fn take_changes(&mut self) -> Vec<(i32, LedgerChange)> {
        let mut out = Vec::new();
        for (p, l) in &mut self.ledgers {
            out.extend(l.take_changes().into_iter().map(|c| (*p, c)));
        }
        out
    }

    /// `partition`'s event-time watermark (newest setup seen).
    pub fn watermark(&self, partition: i32) -> Option<i64> {
        self.ledgers.get(&partition).map(DipLedger::watermark)
    }

    fn ledger(&mut self, partition: i32) -> &mut DipLedger {
        let (ttl, late, fee, win) = (
            self.ttl_ms,
            self.lateness_ms,
            self.dip_fee,
            self.correction_ms,
        );
        self.ledgers
            .entry(partition)
            .or_insert_with(|| DipLedger::new(ttl, late, fee).with_correction_window(win))
    }

    /// Gives the ledger a copy of a call that pays its period's dip, so a
    /// late earlier call can demote it.
    fn keep_copy(&mut self, partition: i32, call: &AssembledCall, record: &EnrichmentRecord) {
        if self.correction_ms == 0 || record.source != Some(LrnSourceKind::Dip) {
            return;
        }
        let (Some(tn10), Some(l)) = (record.tn10.as_deref(), self.ledgers.get_mut(&partition))
        else {
            return;
        };
        let codec = &self.copies;
        l.keep_copy(
            tn10,
            &call.cdr_id,
            call.setup_ts_ms,
            i64::from(call.event_count),
            || match codec.encode(call) {
                Ok(b) => Some(B64.encode(b)),
                Err(err) => {
                    tracing::error!(cdr_id = %call.cdr_id, error = %err, "encoding an LRN holder's copy");
                    None
                }
            },
        );
    }

    /// The holders demoted since the last call, rebuilt from their kept
    /// copies as cache hits, to be emitted again.
    pub fn take_demoted(&mut self) -> Vec<Enriched> {
        let mut demoted: Vec<Demoted> = Vec::new();
        let mut parts: Vec<i32> = self.ledgers.keys().copied().collect();
        parts.sort_unstable();
        for p in parts {
            demoted.extend(
                self.ledgers
                    .get_mut(&p)
                    .map(DipLedger::take_demoted)
                    .unwrap_or_default(),
            );
        }
        let fresh: Vec<Enriched> = demoted
            .into_iter()
            .filter_map(|d| {
                let call = B64
                    .decode(&d.copy.payload)
                    .map_err(|e| e.to_string())
                    .and_then(|b| self.copies.decode(&b).map_err(|e| e.to_string()));
                match call {
                    Ok(call) => Some(self.finish(call, d.record, false)),
                    Err(err) => {
                        tracing::error!(cdr_id = %d.cdr_id, error = %err, "a demoted LRN holder's copy does not decode; its dip fee stays");
                        None
                    }
                }
            })
            .collect();
        let mut out = std::mem::take(&mut self.demoted);
        out.extend(fresh);
        out
    }

    fn finish(&self, call: AssembledCall, record: EnrichmentRecord, replayed: bool) -> Enriched {
        let numbers = core::analyze(&call);
        let replayed = replayed
            && matches!(
                record.source,
                Some(LrnSourceKind::Dip | LrnSourceKind::Unavailable)
            );
        let (_, call) = core::build(call, &numbers, &record, &self.table);
        Enriched {
            key: call.call.account_id.clone(),
            call,
            record,
            replayed,
        }
    }

    /// Enrich one call of partition 0 and decide it at once (tests, tools:
    /// calls are decided in the order given).
    pub async fn enrich(&mut self, call: AssembledCall) -> Enriched {
        self.enrich_all(vec![(0, call)], 1)
            .await
            .pop()
            .expect("one call in, one out")
    }

    /// Enrich a batch and decide every call now, waiting calls included
    /// (tests, tools), in input order.
    pub async fn enrich_all(
        &mut self,
        calls: Vec<(i32, AssembledCall)>,
        concurrency: usize,
    ) -> Vec<Enriched> {
        let n = calls.len();
        let with_pos = calls
            .into_iter()
            .enumerate()
            .map(|(i, (p, c))| (p, i as i64, c))
            .collect();
        let (ready, mut held) = self.enrich_batch(with_pos, concurrency).await;
        let mut out: Vec<(i64, Enriched)> = ready.into_iter().map(|(_, i, e)| (i, e)).collect();
        let parts: Vec<i32> = self.ledgers.keys().copied().collect();
        for p in parts {
            out.extend(self.release_partition(p, true, &mut held));
        }
        // A demoted call of this batch: its newer copy replaces its first
        // answer. One of an earlier batch waits for `take_demoted`.
        for d in self.take_demoted() {
            match out
                .iter_mut()
                .find(|(_, e)| e.call.call.cdr_id == d.call.call.cdr_id)
            {
                Some(slot) => slot.1 = d,
                None => self.demoted.push(d),
            }
        }
        out.sort_by_key(|(i, _)| *i);
        debug_assert_eq!(out.len(), n);
        out.into_iter().map(|(_, e)| e).collect()
    }

    /// Enrich a batch of (partition, offset, call): the ledger decides what
    /// it can, the remaining numbers are looked up once each (up to
    /// `concurrency` in flight), then the ledger records the lookups in
    /// input order. Returns the decided calls (with their offsets, input
    /// order) and the calls that wait for their period's holder.
    pub async fn enrich_batch(
        &mut self,
        calls: Vec<(i32, i64, AssembledCall)>,
        concurrency: usize,
    ) -> (Vec<(i32, i64, Enriched)>, Vec<Held>) {
        // (partition, offset, call, Some((decision, replayed)) | None = held)
        type Slot = (i32, i64, AssembledCall, Option<(EnrichmentRecord, bool)>);
        let mut slots: Vec<Slot> = Vec::with_capacity(calls.len());
        let mut pending = Vec::new();
        for (i, (p, off, call)) in calls.into_iter().enumerate() {
            let numbers = core::analyze(&call);
            let tn10 = core::dialed_e164(&numbers)
                .filter(|_| core::needs_dip(&call, &numbers))
                .and_then(should_dip)
                .map(str::to_string);
            let l = self.ledger(p);
            l.observe(call.setup_ts_ms);
            let decided = match tn10 {
                None => Some((EnrichmentRecord::not_eligible(), false)),
                Some(tn10) => match l.rule(&tn10, &call.cdr_id, call.setup_ts_ms) {
                    Ruling::Known(r) => Some((r, true)),
                    Ruling::TookOver(r) => Some((r, false)),
                    Ruling::Pending => {
                        l.hold(&tn10, &call.cdr_id, call.setup_ts_ms);
                        None
                    }
                    Ruling::Lookup => {
                        pending.push(Pending {
                            index: i,
                            partition: p,
                            tn10,
                        });
                        None
                    }
                },
            };
            slots.push((p, off, call, decided));
        }
        let mut numbers: Vec<String> = pending.iter().map(|x| x.tn10.clone()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let cache = &self.cache;
        let outcomes: HashMap<String, LrnOutcome> = futures::stream::iter(numbers)
            .map(|tn| async move {
                let o = cache.resolve(&tn).await;
                (tn, o)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for x in pending {
            let (cdr_id, setup) = (
                slots[x.index].2.cdr_id.clone(),
                slots[x.index].2.setup_ts_ms,
            );
            let rec = self
                .ledger(x.partition)
                .record(&x.tn10, &cdr_id, setup, &outcomes[&x.tn10]);
            slots[x.index].3 = rec.map(|r| (r, false));
        }
        let mut ready = Vec::new();
        let mut held = Vec::new();
        for (p, off, call, d) in slots {
            match d {
                Some((rec, replayed)) => {
                    self.keep_copy(p, &call, &rec);
                    ready.push((p, off, self.finish(call, rec, replayed)))
                }
                None => held.push(Held {
                    partition: p,
                    offset: off,
                    call,
                }),
            }
        }
        (ready, held)
    }

    /// Decides the held calls of `partition` whose period's holder is now
    /// fixed (every one when `all`: an idle partition), removing them from
    /// `held`; returns them with their offsets.
    pub fn release_partition(
        &mut self,
        partition: i32,
        all: bool,
        held: &mut Vec<Held>,
    ) -> Vec<(i64, Enriched)> {
        let Some(l) = self.ledgers.get_mut(&partition) else {
            return Vec::new();
        };
        let decided: HashMap<String, EnrichmentRecord> =
            if all { l.release_all() } else { l.release() }
                .into_iter()
                .collect();
        if decided.is_empty() {
            return Vec::new();
        }
        let (go, stay): (Vec<Held>, Vec<Held>) = std::mem::take(held)
            .into_iter()
            .partition(|h| h.partition == partition && decided.contains_key(&h.call.cdr_id));
        *held = stay;
        go.into_iter()
            .map(|h| {
                let rec = decided[&h.call.cdr_id].clone();
                self.keep_copy(partition, &h.call, &rec);
                (h.offset, self.finish(h.call, rec, false))
            })
            .collect()
    }
}

fn observe(m: &EnricherMetrics, e: &Enriched) {
    if let Some(t) = &e.call.enrichment.callee_number_type {
        m.calls_by_type.with_label_values(&[t]).inc();
    }
    if e.replayed {
        m.lrn_replayed.inc();
        return;
    }
    match e.record.source {
        None => m.lrn_not_applicable.inc(),
        Some(LrnSourceKind::Cache) => m.lrn_cache_hits.inc(),
        Some(LrnSourceKind::Dip) => {
            m.lrn_dips.inc();
            m.lrn_fees.inc_by(e.record.fee.try_into().unwrap_or(0.0));
        }
        Some(LrnSourceKind::Unavailable) => m.lrn_unavailable.inc(),
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let settings = config.stage.resolve(STAGE_DEFAULTS)?;
    let lrn_cfg = &config.lrn;
    lrn::numbering::warm_up();
    let enricher = Enricher::from_config(lrn_cfg)?;
    let metrics = StageMetrics::new(SERVICE);
    let em = EnricherMetrics::new(&metrics.registry);
    let stage = EnricherStage {
        enricher,
        metrics: em,
        input: Codec::new(),
        output: Codec::new(),
        concurrency: config.lookup_concurrency,
        kafka: settings.kafka.clone(),
        held: Vec::new(),
        next: BTreeMap::new(),
        progress: HashMap::new(),
        idle_release_ms: lrn_cfg.idle_release_ms as i64,
    };
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &[topics::CALLS_ASSEMBLED],
        dlq_topic: topics::PIPELINE_DLQ,
        policy: CommitPolicy::StageControlled,
        settings: &settings,
        metrics,
    };
    Ok(cdr_kafka::run_stage(spec, stage, shutdown).await?)
}

/// The enricher in the stage loop: load the ledgers of newly assigned
/// partitions → decode → enrich the batch (lookups overlap); calls whose
/// number-period has no fixed dip holder yet are held → write the changed
/// ledger records and wait for their acks → the decided enriched calls.
/// The commit point never passes a held call, so a restart replays it.
struct EnricherStage {
    enricher: Enricher,
    metrics: EnricherMetrics,
    input: Codec<AssembledCall>,
    output: Codec<EnrichedCall>,
    concurrency: usize,
    kafka: cdr_kafka::KafkaConfig,
    /// Calls waiting for their period's holder, in arrival order.
    held: Vec<Held>,
    /// Next offset to consume, per partition.
    next: BTreeMap<i32, i64>,
    /// Per partition: the watermark last seen and when (wall ms) it moved.
    progress: HashMap<i32, (i64, i64)>,
    idle_release_ms: i64,
}

impl EnricherStage {
    async fn restore(&mut self, partition: i32) -> Result<(), StageError> {
        let records = cdr_kafka::table::TopicTable::restore_partition::<LedgerRecord>(
            &self.kafka,
            SERVICE,
            topics::LRN_DECISIONS,
            partition,
            Duration::from_secs(120),
        )
        .await
        .map_err(StageError::Fatal)?;
        tracing::info!(
            partition,
            records = records.len(),
            "LRN dip ledger restored"
        );
        self.metrics.ledger_restored.inc_by(records.len() as u64);
        self.enricher.restore_partition(partition, records);
        Ok(())
    }

    /// Ledger records first: once an enriched copy exists downstream, the
    /// decision behind its fee must survive any restart.
    fn write_ledger(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        for (p, c) in self.enricher.take_changes() {
            let payload = match &c.record {
                Some(r) => Some(serde_json::to_vec(r).map_err(|err| {
                    StageError::Fatal(anyhow::anyhow!("encoding LRN ledger record: {err}"))
                })?),
                None => None,
            };
            self.metrics.ledger_records.inc();
            out.emit_to(topics::LRN_DECISIONS, p, c.key.into_bytes(), payload);
        }
        Ok(())
    }

    fn emit(&self, e: Enriched, origin: Option<&OwnedMessage>, out: &mut Outbox) {
        observe(&self.metrics, &e);
        match self.output.encode(&e.call) {
            Ok(bytes) => out.emit(topics::CALLS_ENRICHED, e.key.into_bytes(), bytes, origin),
            Err(err) => match origin {
                Some(m) => out.reject(m, &Reject::EncodeFailed(err.to_string())),
                None => {
                    tracing::error!(cdr_id = %e.call.call.cdr_id, error = %err, "encoding a released enriched call")
                }
            },
        }
    }

    /// Re-emits demoted holders (after the ledger records that demoted
    /// them were written: a restart finds them demoted).
    fn emit_demoted(&mut self, out: &mut Outbox) {
        for e in self.enricher.take_demoted() {
            self.metrics.lrn_demoted.inc();
            self.emit(e, None, out);
        }
    }

    fn released(&mut self, partitions: &[i32], all: bool) -> Vec<Enriched> {
        let mut out = Vec::new();
        for p in partitions {
            out.extend(
                self.enricher
                    .release_partition(*p, all, &mut self.held)
                    .into_iter()
                    .map(|(_, e)| e),
            );
        }
        self.metrics.held.set(self.held.len() as i64);
        out
    }
}

impl cdr_kafka::Stage for EnricherStage {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let mut parts: Vec<i32> = batch.iter().map(|m| m.partition()).collect();
        parts.sort_unstable();
        parts.dedup();
        for p in &parts {
            if !self.enricher.has_partition(*p) {
                self.restore(*p).await?;
            }
        }
        let mut calls = Vec::with_capacity(batch.len());
        let mut origin: HashMap<(i32, i64), &OwnedMessage> = HashMap::with_capacity(batch.len());
        for m in batch {
            self.next.insert(m.partition(), m.offset() + 1);
            match self.input.decode(m.payload().unwrap_or_default()) {
                Ok(c) => {
                    calls.push((m.partition(), m.offset(), c));
                    origin.insert((m.partition(), m.offset()), m);
                }
                Err(e) => out.reject(m, &Reject::BadAvro(e.to_string())),
            }
        }
        let (ready, held) = self.enricher.enrich_batch(calls, self.concurrency).await;
        self.held.extend(held);
        let released = self.released(&parts, false);
        self.write_ledger(out)?;
        out.flush().await?;
        for (p, off, e) in ready {
            self.emit(e, origin.get(&(p, off)).copied(), out);
        }
        for e in released {
            self.emit(e, None, out);
        }
        self.emit_demoted(out);
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(500))
    }

    /// A partition with held calls whose event time has not moved for
    /// `idle_release_ms` releases them: no earlier call can still come.
    fn tick(&mut self, wall_ms: i64, out: &mut Outbox) -> Result<(), StageError> {
        let mut parts: Vec<i32> = self.held.iter().map(|h| h.partition).collect();
        parts.sort_unstable();
        parts.dedup();
        let mut idle = Vec::new();
        for p in parts {
            let wm = self.enricher.watermark(p).unwrap_or(i64::MIN);
            let e = self.progress.entry(p).or_insert((wm, wall_ms));
            if e.0 != wm {
                *e = (wm, wall_ms);
            } else if wall_ms - e.1 >= self.idle_release_ms {
                idle.push(p);
            }
        }
        if idle.is_empty() {
            return Ok(());
        }
        let released = self.released(&idle, true);
        self.write_ledger(out)?;
        for e in released {
            self.emit(e, None, out);
        }
        self.emit_demoted(out);
        Ok(())
    }

    fn skipped(&mut self, m: &OwnedMessage) {
        self.next.insert(m.partition(), m.offset() + 1);
    }

    fn commit_point(&self) -> BTreeMap<cdr_kafka::runtime::Tp, i64> {
        let mut at: BTreeMap<i32, i64> = self.next.clone();
        for h in &self.held {
            let e = at.entry(h.partition).or_insert(h.offset);
            *e = (*e).min(h.offset);
        }
        cdr_kafka::stage::on_topic(topics::CALLS_ASSEMBLED, at)
    }

    fn revoke(&mut self, partitions: &[cdr_kafka::runtime::Tp]) {
        for (_, p) in partitions
            .iter()
            .filter(|(t, _)| t == topics::CALLS_ASSEMBLED)
        {
            self.enricher.drop_partition(*p);
            self.held.retain(|h| h.partition != *p);
            self.next.remove(p);
            self.progress.remove(p);
        }
        self.metrics.held.set(self.held.len() as i64);
    }

    fn drain(&mut self, _wall_ms: i64, _out: &mut Outbox) -> Result<(), StageError> {
        let s = self.enricher.cache().stats();
        tracing::info!(
            service = SERVICE,
            dips = s.dips,
            unavailable = s.unavailable,
            coalesced = s.coalesced,
            held = self.held.len(),
            "LRN cache at shutdown (held calls stay uncommitted and are replayed)"
        );
        Ok(())
    }
}
