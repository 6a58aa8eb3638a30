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
//! cancelled) is resolved here and carries its LRN decision. Following the
//! `lrn` crate, the fee is charged **per dip performed**: the attempt that
//! missed the cache carries `lrn_fee = 0.0003`, whatever its disposition; a
//! later attempt to the same number within the TTL is a cache hit with fee 0.
//! (Whether the rater bills that fee on a zero-duration attempt is the rater's
//! decision; the enricher records that the dip happened.)
//!
//! # Replay and the fee
//! The input is an *assembled* call, which carries no earlier LRN decision, so
//! a re-delivered call (crash before commit, rebalance, assembler re-emission
//! after its restart) is enriched again. To keep the decision stable the
//! enricher remembers the [`lrn::EnrichmentRecord`] of every dipped call by
//! `cdr_id` for the cache TTL (`lrn.replay_memo_entries`, bounded) and passes
//! it back to `LrnCache::enrich` as the prior record: a re-delivery within the
//! TTL *in the same process* gets exactly the same `lrn`, `lrn_source` and
//! `lrn_fee` (counted in `cdr_enricher_lrn_replayed_total`, no new fee).
//! Copies of one `cdr_id` inside a batch are resolved one after the other, so
//! they also agree.
//!
//! The memo is also durable: every fresh decision is produced to the
//! compacted topic `lrn.decisions` (key `cdr_id`, value the JSON
//! [`lrn::EnrichmentRecord`] with its decision time) and acknowledged
//! *before* the enriched call is produced and the input offset committed.
//! At start-up the enricher reads that topic back into the memo (decisions
//! younger than the cache TTL), so a call re-delivered after a crash, a
//! restart or a rebalance to another instance carries exactly the fee its
//! first copy carried, whatever the new instance's cache holds.
//!
//! # Output key
//! `calls.enriched` is keyed by `account_id`: the rater keeps per-account
//! state (the conformance window that downgrades wholesale accounts), which
//! is only exact when one instance sees all of an account's calls. The LRN
//! affinity lives one hop earlier: the assembler keys `calls.assembled` by
//! dialed number, so one number's lookups stay on one enricher's cache.

pub mod config;
pub mod core;
pub mod metrics;

use std::collections::HashSet;
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
    AnySource, EnrichmentRecord, HttpDip, HttpDipConfig, LrnCache, LrnCacheConfig, LrnSourceKind,
    NpaNxxTable, PortedDb,
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
    /// `true` when the decision came from the per-`cdr_id` memo (re-delivery).
    pub replayed: bool,
}

/// The enrichment engine: LRN cache, NPA-NXX table and replay memo.
pub struct Enricher {
    cache: LrnCache<AnySource>,
    table: Arc<NpaNxxTable>,
    memo: Option<moka::sync::Cache<String, EnrichmentRecord>>,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("cache", &self.cache)
            .field("npanxx_rows", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl Enricher {
    pub fn new(
        source: AnySource,
        cache_cfg: LrnCacheConfig,
        table: NpaNxxTable,
        memo_entries: u64,
    ) -> Self {
        let memo = (memo_entries > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(memo_entries)
                .time_to_live(cache_cfg.ttl)
                .build()
        });
        Enricher {
            cache: LrnCache::new(source, cache_cfg),
            table: Arc::new(table),
            memo,
        }
    }

    /// Puts a persisted decision back into the replay memo (start-up).
    pub fn remember(&self, cdr_id: &str, rec: EnrichmentRecord) {
        if let Some(m) = &self.memo {
            m.insert(cdr_id.to_string(), rec);
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
        Ok(Enricher::new(
            source,
            cache_cfg,
            table,
            cfg.replay_memo_entries,
        ))
    }

    /// The LRN cache (stats, flush, source reload).
    pub fn cache(&self) -> &LrnCache<AnySource> {
        &self.cache
    }

    /// Enrich one call: pure analysis, then the LRN decision (memo → cache → dip).
    pub async fn enrich(&self, call: AssembledCall) -> Enriched {
        let numbers = core::analyze(&call);
        let (record, replayed) =
            match core::dialed_e164(&numbers).filter(|_| core::needs_dip(&call, &numbers)) {
                None => (EnrichmentRecord::not_eligible(), false),
                Some(dialed) => {
                    let prior = self.memo.as_ref().and_then(|m| m.get(&call.cdr_id));
                    let replayed = prior.is_some();
                    let rec = self.cache.enrich(dialed, prior).await;
                    if let (Some(m), false) = (&self.memo, replayed) {
                        m.insert(call.cdr_id.clone(), rec.clone());
                    }
                    (rec, replayed)
                }
            };
        let (_, call) = core::build(call, &numbers, &record, &self.table);
        let key = call.call.account_id.clone();
        Enriched {
            key,
            call,
            record,
            replayed,
        }
    }

    /// Enrich a batch, up to `concurrency` calls in flight, results in input
    /// order. Repeated `cdr_id`s are resolved after their first copy so all
    /// copies carry the same decision.
    pub async fn enrich_batch(
        &self,
        calls: Vec<AssembledCall>,
        concurrency: usize,
    ) -> Vec<Enriched> {
        let mut seen = HashSet::with_capacity(calls.len());
        let (mut first, mut later) = (Vec::new(), Vec::new());
        for (i, c) in calls.into_iter().enumerate() {
            if seen.insert(c.cdr_id.clone()) {
                first.push((i, c));
            } else {
                later.push((i, c));
            }
        }
        let n = first.len() + later.len();
        let mut out: Vec<Option<Enriched>> = vec![None; n];
        for wave in [first, later] {
            let done: Vec<(usize, Enriched)> = futures::stream::iter(wave)
                .map(|(i, c)| async move { (i, self.enrich(c).await) })
                .buffered(concurrency.max(1))
                .collect()
                .await;
            for (i, e) in done {
                out[i] = Some(e);
            }
        }
        out.into_iter()
            .map(|e| e.expect("every call enriched"))
            .collect()
    }
}

/// A persisted LRN decision (value of `lrn.decisions`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub record: EnrichmentRecord,
    pub decided_at_ms: i64,
}

/// Reads `lrn.decisions` into the replay memo; returns how many were kept.
/// Decisions older than the cache TTL are skipped: a copy re-delivered that
/// late would have found an expired cache entry anyway.
async fn restore_decisions(
    kafka: &cdr_kafka::KafkaConfig,
    lrn_cfg: &LrnConfig,
    enricher: &Enricher,
) -> anyhow::Result<usize> {
    let table = cdr_kafka::table::TopicTable::open(kafka, SERVICE, topics::LRN_DECISIONS)?;
    let msgs = table.read_to_end(Duration::from_secs(120)).await?;
    let oldest = cdr_kafka::now_ms() - (lrn_cfg.cache_ttl_secs as i64) * 1000;
    let mut kept = 0;
    for m in msgs {
        let (Some(k), Some(v)) = (m.key(), m.payload()) else {
            continue;
        };
        match serde_json::from_slice::<Decision>(v) {
            Ok(d) if d.decided_at_ms >= oldest => {
                enricher.remember(&String::from_utf8_lossy(k), d.record);
                kept += 1;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(offset = m.offset(), error = %e, "unreadable LRN decision skipped")
            }
        }
    }
    Ok(kept)
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
    let restored = restore_decisions(&settings.kafka, lrn_cfg, &enricher).await?;
    tracing::info!(
        restored,
        "LRN decisions restored from {}",
        topics::LRN_DECISIONS
    );
    let stage = EnricherStage {
        enricher,
        metrics: em,
        input: Codec::new(),
        output: Codec::new(),
        concurrency: config.lookup_concurrency,
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

/// The enricher in the stage loop: decode → enrich the batch (LRN lookups
/// overlap) → persist fresh LRN decisions and wait for their acks → the
/// enriched calls. A call is never produced before its fee is durable.
struct EnricherStage {
    enricher: Enricher,
    metrics: EnricherMetrics,
    input: Codec<AssembledCall>,
    output: Codec<EnrichedCall>,
    concurrency: usize,
}

impl cdr_kafka::Stage for EnricherStage {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let mut calls = Vec::with_capacity(batch.len());
        let mut idx = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            match self.input.decode(m.payload().unwrap_or_default()) {
                Ok(c) => {
                    calls.push(c);
                    idx.push(i);
                }
                Err(e) => out.reject(m, &Reject::BadAvro(e.to_string())),
            }
        }
        let enriched = self.enricher.enrich_batch(calls, self.concurrency).await;
        // Decisions first: once the enriched copy exists downstream, its fee
        // must be recoverable on any replay.
        let now = cdr_kafka::now_ms();
        for (e, i) in enriched.iter().zip(&idx) {
            if e.replayed || e.record.source.is_none() {
                continue;
            }
            let d = Decision {
                record: e.record.clone(),
                decided_at_ms: now,
            };
            let v = serde_json::to_vec(&d).map_err(|err| {
                StageError::Fatal(anyhow::anyhow!("encoding LRN decision: {err}"))
            })?;
            out.emit(
                topics::LRN_DECISIONS,
                e.call.call.cdr_id.as_bytes(),
                v,
                Some(&batch[*i]),
            );
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
