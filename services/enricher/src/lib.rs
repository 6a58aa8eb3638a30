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
//! periods, the first call of a (number, period) on the partition pays the
//! dip and fixes the period's LRN, every other call of the period is a cache
//! hit with fee 0 and the same LRN. The in-memory [`lrn::LrnCache`] only
//! saves lookups; it never decides a fee. So the fee and the LRN of a call
//! are a function of the calls of its number, not of when this process
//! started, which instance owns the partition, or how often a call was
//! re-delivered: a copy of the holder pays again under the same `cdr_id`
//! (one row downstream), a copy of any other call is a cache hit again.
//!
//! The ledger is per input partition (`calls.assembled` is keyed by dialed
//! number, so a number lives on one partition) and durable: after every
//! batch the changed numbers are written to the compacted topic
//! `lrn.decisions` (key: the 10-digit number; partition i holds the ledger
//! of input partition i; a meta record holds the partition's event-time
//! watermark) and acknowledged *before* the enriched calls are produced and
//! the offsets committed. When a partition is assigned (start-up, rebalance)
//! its ledger is read back before any of its calls is enriched; when it is
//! revoked the ledger is dropped. Numbers not called for two TTLs of event
//! time are tombstoned, so the topic is bounded by the numbers in use.
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

use std::collections::HashMap;
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
    should_dip, AnySource, DipLedger, EnrichmentRecord, HttpDip, HttpDipConfig, LedgerChange,
    LedgerRecord, LrnCache, LrnCacheConfig, LrnOutcome, LrnSourceKind, NpaNxxTable, PortedDb,
    Ruling,
};
use rdkafka::message::{Message, OwnedMessage};

pub use config::{Config, HttpSourceConfig, LrnConfig, STAGE_DEFAULTS};
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
    dip_fee: rust_decimal::Decimal,
    ledgers: HashMap<i32, DipLedger>,
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

/// A call the ledger could not decide before the lookups.
struct Pending {
    index: usize,
    partition: i32,
    tn10: String,
}

impl Enricher {
    pub fn new(source: AnySource, cache_cfg: LrnCacheConfig, table: NpaNxxTable) -> Self {
        Enricher {
            ttl_ms: cache_cfg.ttl.as_millis().min(i64::MAX as u128) as i64,
            dip_fee: cache_cfg.dip_fee,
            cache: LrnCache::new(source, cache_cfg),
            table: Arc::new(table),
            ledgers: HashMap::new(),
        }
    }

    /// Load the files and build the source named by a validated config.
    pub fn from_config(cfg: &LrnConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        let npanxx = cfg.npanxx_path.as_ref().expect("validated");
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
        let source = match (&cfg.ported_db, &cfg.http) {
            (Some(path), _) => {
                let (db, report) = PortedDb::open(path)
                    .with_context(|| format!("loading lrn.ported_db {}", path.display()))?;
                for e in report.errors.iter().take(20) {
                    tracing::warn!(file = %path.display(), line = e.line, field = e.field, message = %e.message, "bad ported row skipped");
                }
                tracing::info!(file = %path.display(), rows = report.rows, bad_rows = report.bad_rows, duplicates = report.duplicates, "ported-number DB loaded");
                AnySource::Ported(Arc::new(db))
            }
            (None, Some(h)) => {
                let mut hc = HttpDipConfig::new(h.url_template.trim());
                hc.timeout = Duration::from_millis(h.timeout_ms);
                hc.max_concurrency = h.max_concurrency;
                hc.max_attempts = h.max_attempts;
                AnySource::Http(HttpDip::new(hc).map_err(|e| anyhow::anyhow!("lrn.http: {e}"))?)
            }
            (None, None) => unreachable!("validated"),
        };
        tracing::info!(npanxx_rows = table.len(), "NPA-NXX table loaded");
        let cache_cfg = LrnCacheConfig {
            max_capacity: cfg.cache_max_entries,
            ttl: cfg.ttl(),
            dip_fee: cfg.dip_fee,
            deadline: Duration::from_millis(cfg.unavailable_deadline_ms),
            ..LrnCacheConfig::default()
        };
        Ok(Enricher::new(source, cache_cfg, table))
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
        let mut l = DipLedger::new(self.ttl_ms, self.dip_fee);
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

    fn ledger(&mut self, partition: i32) -> &mut DipLedger {
        let (ttl, fee) = (self.ttl_ms, self.dip_fee);
        self.ledgers
            .entry(partition)
            .or_insert_with(|| DipLedger::new(ttl, fee))
    }

    /// Enrich one call of partition 0 (tests, tools).
    pub async fn enrich(&mut self, call: AssembledCall) -> Enriched {
        self.enrich_batch(vec![(0, call)], 1)
            .await
            .pop()
            .expect("one call in, one out")
    }

    /// Enrich a batch of (input partition, call), results in input order:
    /// the ledger decides what it can, the remaining numbers are looked up
    /// once each (up to `concurrency` in flight), then the ledger records
    /// the lookups in input order.
    pub async fn enrich_batch(
        &mut self,
        calls: Vec<(i32, AssembledCall)>,
        concurrency: usize,
    ) -> Vec<Enriched> {
        let mut decided: Vec<Option<(EnrichmentRecord, bool)>> = Vec::with_capacity(calls.len());
        let mut analysed = Vec::with_capacity(calls.len());
        let mut pending = Vec::new();
        for (i, (p, call)) in calls.into_iter().enumerate() {
            let numbers = core::analyze(&call);
            let tn10 = core::dialed_e164(&numbers)
                .filter(|_| core::needs_dip(&call, &numbers))
                .and_then(should_dip)
                .map(str::to_string);
            match tn10 {
                None => decided.push(Some((EnrichmentRecord::not_eligible(), false))),
                Some(tn10) => match self.ledger(p).rule(&tn10, &call.cdr_id, call.setup_ts_ms) {
                    Ruling::Known(r) => decided.push(Some((r, true))),
                    Ruling::Lookup => {
                        decided.push(None);
                        pending.push(Pending {
                            index: i,
                            partition: p,
                            tn10,
                        });
                    }
                },
            }
            analysed.push((call, numbers));
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
            let call = &analysed[x.index].0;
            let (cdr_id, setup) = (call.cdr_id.clone(), call.setup_ts_ms);
            let rec = self
                .ledger(x.partition)
                .record(&x.tn10, &cdr_id, setup, &outcomes[&x.tn10]);
            decided[x.index] = Some((rec, false));
        }
        analysed
            .into_iter()
            .zip(decided)
            .map(|((call, numbers), d)| {
                let (record, replayed) = d.expect("every call decided");
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
    let lrn_cfg = config.lrn.as_ref().context("missing [lrn] section")?;
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
    };
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &[topics::CALLS_ASSEMBLED],
        dlq_topic: topics::PIPELINE_DLQ,
        policy: CommitPolicy::AfterEachBatch,
        settings: &settings,
        metrics,
    };
    Ok(cdr_kafka::run_stage(spec, stage, shutdown).await?)
}

/// The enricher in the stage loop: load the ledgers of newly assigned
/// partitions → decode → enrich the batch (lookups overlap) → write the
/// changed ledger records and wait for their acks → the enriched calls. A
/// call is never produced before the decision behind its fee is durable.
struct EnricherStage {
    enricher: Enricher,
    metrics: EnricherMetrics,
    input: Codec<AssembledCall>,
    output: Codec<EnrichedCall>,
    concurrency: usize,
    kafka: cdr_kafka::KafkaConfig,
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
        for p in parts {
            if !self.enricher.has_partition(p) {
                self.restore(p).await?;
            }
        }
        let mut calls = Vec::with_capacity(batch.len());
        let mut idx = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            match self.input.decode(m.payload().unwrap_or_default()) {
                Ok(c) => {
                    calls.push((m.partition(), c));
                    idx.push(i);
                }
                Err(e) => out.reject(m, &Reject::BadAvro(e.to_string())),
            }
        }
        let enriched = self.enricher.enrich_batch(calls, self.concurrency).await;
        // The ledger first: once the enriched copy exists downstream, the
        // decision behind its fee must survive any restart.
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
        out.flush().await?;
        for (e, i) in enriched.into_iter().zip(idx) {
            observe(&self.metrics, &e);
            match self.output.encode(&e.call) {
                Ok(bytes) => out.emit(
                    topics::CALLS_ENRICHED,
                    e.key.into_bytes(),
                    bytes,
                    Some(&batch[i]),
                ),
                Err(err) => out.reject(&batch[i], &Reject::EncodeFailed(err.to_string())),
            }
        }
        Ok(())
    }

    fn revoke(&mut self, partitions: &[cdr_kafka::runtime::Tp]) {
        for (_, p) in partitions
            .iter()
            .filter(|(t, _)| t == topics::CALLS_ASSEMBLED)
        {
            self.enricher.drop_partition(*p);
        }
    }

    fn drain(&mut self, _wall_ms: i64, _out: &mut Outbox) -> Result<(), StageError> {
        let s = self.enricher.cache().stats();
        tracing::info!(
            service = SERVICE,
            dips = s.dips,
            unavailable = s.unavailable,
            coalesced = s.coalesced,
            "LRN cache at shutdown"
        );
        Ok(())
    }
}
