//! Rater service: consumes `calls.enriched`, adds the rating section and
//! produces `cdrs.rated` keyed by cdr_id.
//!
//! At start-up it loads the rate decks, accounts and reference tables named
//! in its configuration ([`tables`]); every call is then rated by the pure
//! [`rate_call`] (built on the `ratedeck` library). Calls that cannot be
//! rated are emitted `unrated` with a reason code, never dropped. Without any
//! `[[decks]]` configured the rater falls back to marking every call
//! `unrated` with reason `no_rate_deck_loaded`.

pub mod conformance;
pub mod profile;
pub mod rating;
pub mod tables;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::runtime::Tp;
use cdr_kafka::stage::{Outbox, Reject, StageError};
use cdr_kafka::{
    CancellationToken, CommitPolicy, Message, OwnedMessage, StageConfig, StageDefaults,
};
use cdr_model::avro::Codec;
use cdr_model::call::{EnrichedCall, RatedCdr};
use cdr_model::control::{AccountAlertEvent, PlanChange};
use cdr_model::topics;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use ratedeck::conformance::StateRecord;

/// A record of `rater.conformance`: the conformance windows and the dialer
/// profile of the accounts of one input partition share the topic.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AccountState {
    Conformance(StateRecord),
    Profile(detection::ProfileRecord),
}
use serde::Deserialize;

pub use ratedeck;
pub use rating::{rate_call, unrated_no_decks};
pub use tables::{load, DeckFileConfig, DeckFormat, LoadSummary, RatingConfig, RatingTables};

pub const SERVICE: &str = "rater";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka, metrics address, batching (shared by every service).
    #[serde(default)]
    pub stage: StageConfig,
    /// Rate decks, loaded in this order (see [`tables`] for the fields).
    #[serde(default)]
    pub decks: Vec<DeckFileConfig>,
    /// Deck directory with a `decks.toml` manifest (see [`tables::MANIFEST`]).
    #[serde(default)]
    pub decks_dir: Option<std::path::PathBuf>,
    /// The notice rule for rate increases (`[notice] days`, `short_notice`).
    #[serde(default)]
    pub notice: tables::NoticeConfig,
    /// Accounts file (`id;kind;default_plan;allow_uk_surcharge;default_max_rate[;plan_override]`).
    #[serde(default)]
    pub accounts: Option<std::path::PathBuf>,
    /// `npanxx;state` table for US48 jurisdiction.
    #[serde(default)]
    pub npanxx_states: Option<std::path::PathBuf>,
    /// `caller_country;uk_number_type;surcharge_per_min` table.
    #[serde(default)]
    pub uk_surcharges: Option<std::path::PathBuf>,
    /// Optional EEA country list (default EU-27 + IS, LI, NO).
    #[serde(default)]
    pub eea_countries: Option<std::path::PathBuf>,
    /// Wholesale conformance rule (ASR/ACD window, minimum sample).
    #[serde(default)]
    pub conformance: ratedeck::conformance::ConformanceConfig,
    /// Per-account dialer profile (windows and thresholds).
    #[serde(default)]
    pub profile: detection::ProfileConfig,
    /// Declared traffic profile per account: `account;conversational|dialer`.
    #[serde(default)]
    pub traffic_profiles: Option<std::path::PathBuf>,
}

/// The rater's `[stage]` defaults (metrics on :9103).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults::new(9103);

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.stage.resolve(STAGE_DEFAULTS)?;
        self.conformance.validate()?;
        self.profile.validate()?;
        self.rating().validate()
    }

    /// The rating part of the configuration.
    pub fn rating(&self) -> RatingConfig {
        RatingConfig {
            decks: self.decks.clone(),
            decks_dir: self.decks_dir.clone(),
            notice: self.notice,
            accounts: self.accounts.clone(),
            npanxx_states: self.npanxx_states.clone(),
            uk_surcharges: self.uk_surcharges.clone(),
            eea_countries: self.eea_countries.clone(),
        }
    }
}

/// Reads a rater configuration file (TOML, no environment overlay) and
/// loads its rating tables; relative paths resolve against `base`. Used by
/// `cdrctl rate` and the tests to rate exactly as the service does.
pub fn load_from_config_file(
    path: &Path,
    base: &Path,
) -> anyhow::Result<(RatingTables, LoadSummary)> {
    let config: Config = cdr_kafka::config::load_config_from(Some(path), &[])
        .with_context(|| format!("loading {}", path.display()))?;
    config.validate()?;
    anyhow::ensure!(
        config.rating().enabled(),
        "{}: no [[decks]] configured",
        path.display()
    );
    load(&config.rating(), base)
}

/// The rater's own metrics, registered next to the stage metrics.
struct RaterMetrics {
    rows_rejected: IntCounterVec,
    deck_rows: IntGaugeVec,
    calls: IntCounterVec,
    downgrades: prometheus::IntCounter,
    account_alerts: prometheus::IntCounter,
    short_notice: IntGaugeVec,
}

impl RaterMetrics {
    fn new(registry: &prometheus::Registry) -> anyhow::Result<Self> {
        let rows_rejected = IntCounterVec::new(
            Opts::new(
                "cdr_rater_deck_rows_rejected_total",
                "Deck and accounts rows rejected at load, by file",
            ),
            &["file"],
        )?;
        let deck_rows = IntGaugeVec::new(
            Opts::new(
                "cdr_rater_deck_rows_loaded",
                "Rows loaded per deck, by deck id and version",
            ),
            &["deck_id", "version"],
        )?;
        let calls = IntCounterVec::new(
            Opts::new(
                "cdr_rater_calls_total",
                "Calls rated, by status and reason (empty when rated)",
            ),
            &["status", "reason"],
        )?;
        registry.register(Box::new(rows_rejected.clone()))?;
        registry.register(Box::new(deck_rows.clone()))?;
        let downgrades = prometheus::IntCounter::new(
            "cdr_rater_account_downgrades_total",
            "Wholesale accounts switched to retail by the conformance monitor",
        )?;
        let account_alerts = prometheus::IntCounter::new(
            "cdr_rater_account_alerts_total",
            "Undeclared dialer traffic alerts (per account and window)",
        )?;
        let short_notice = IntGaugeVec::new(
            Opts::new(
                "cdr_rater_deck_short_notice_increases",
                "Rate increases loaded with less than the notice period, by action (flagged, refused)",
            ),
            &["action"],
        )?;
        registry.register(Box::new(short_notice.clone()))?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(downgrades.clone()))?;
        registry.register(Box::new(account_alerts.clone()))?;
        Ok(RaterMetrics {
            rows_rejected,
            deck_rows,
            calls,
            downgrades,
            account_alerts,
            short_notice,
        })
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let settings = config.stage.resolve(STAGE_DEFAULTS)?;
    let metrics = StageMetrics::new(SERVICE);
    let rm = RaterMetrics::new(&metrics.registry)?;
    // Load everything before consuming: a missing file must stop start-up,
    // not rate a single call wrongly.
    let rating_cfg = config.rating();
    let tables = if rating_cfg.enabled() {
        let base = std::env::current_dir().context("working directory")?;
        let (tables, summary) = tokio::task::spawn_blocking(move || load(&rating_cfg, &base))
            .await
            .context("loading rating tables")??;
        // Make the rejection counters visible (at 0) for every loaded file.
        for d in &summary.decks {
            rm.rows_rejected.with_label_values(&[d.path.as_str()]);
            rm.deck_rows
                .with_label_values(&[d.deck_id.as_str(), &d.version.to_string()])
                .set(d.rows as i64);
            tracing::info!(
                deck_id = %d.deck_id,
                file = %d.path,
                version = d.version,
                rows = d.rows,
                rejected = d.rejected,
                "rate deck loaded"
            );
        }
        let refused = summary
            .rejected
            .iter()
            .filter(|r| r.field == "notice")
            .count();
        rm.short_notice
            .with_label_values(&["refused"])
            .set(refused as i64);
        rm.short_notice
            .with_label_values(&["flagged"])
            .set((summary.short_notice - refused) as i64);
        for r in &summary.rejected {
            tracing::warn!(file = %r.file, line = r.line, field = %r.field, message = %r.message, "row rejected");
            rm.rows_rejected.with_label_values(&[r.file.as_str()]).inc();
        }
        tracing::info!(
            decks = summary.decks.len(),
            accounts = summary.accounts,
            rejected = summary.rejected.len(),
            "rating tables loaded"
        );
        Some(tables)
    } else {
        tracing::warn!(
            "no [[decks]] configured: every call is emitted unrated (no_rate_deck_loaded)"
        );
        None
    };
    // Account categories decided so far (by any rater instance or an
    // operator) before the first call is rated, then followed while running.
    let table = cdr_kafka::table::TopicTable::open(
        &settings.kafka,
        SERVICE,
        topics::ACCOUNTS_PLAN_CHANGES,
    )?;
    let initial: Vec<PlanChange> = table.read_all(Duration::from_secs(120)).await?;
    tracing::info!(changes = initial.len(), "account plan changes restored");
    let rx = table.follow::<PlanChange>(shutdown.clone(), 1024);
    let monitor = ratedeck::conformance::ConformanceMonitor::new(config.conformance.clone())?;
    let profiles = detection::ProfileMonitor::new(config.profile)?;
    let declared = profile::load_declared(config.traffic_profiles.as_deref())?;
    tracing::info!(
        accounts = declared.len(),
        "declared traffic profiles loaded"
    );
    let mut processor = RaterProcessor::new(
        tables,
        monitor,
        (profiles, declared),
        rx,
        rm,
        settings.kafka.clone(),
    );
    for c in initial {
        processor.apply(&c);
    }
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &[topics::CALLS_ENRICHED],
        dlq_topic: topics::PIPELINE_DLQ,
        policy: CommitPolicy::AfterEachBatch,
        settings: &settings,
        metrics,
    };
    Ok(cdr_kafka::run_stage(spec, processor, shutdown).await?)
}

/// Writes one account-state record to `rater.conformance` (a tombstone for
/// `None`), on the partition of the input it belongs to.
fn emit_state<R: serde::Serialize>(
    out: &mut Outbox,
    partition: i32,
    key: String,
    record: Option<&R>,
) -> Result<(), StageError> {
    let payload = record
        .map(serde_json::to_vec)
        .transpose()
        .context("encoding account state")
        .map_err(StageError::Fatal)?;
    out.emit_to(
        topics::RATER_CONFORMANCE,
        partition,
        key.into_bytes(),
        payload,
    );
    Ok(())
}

/// Kafka key of a rated CDR: its breakout (destination), the detector's
/// comparison group, so one detector partition sees every route of a
/// breakout and so every route's peers.
pub fn route_key(cdr: &RatedCdr) -> String {
    cdr.rating.destination.clone().unwrap_or_default()
}

/// The rater's stage: feed the conformance monitor, emit downgrades, rate.
/// The monitor's windows are state of the input partitions: restored from
/// `rater.conformance` when a partition is first seen, written back after
/// every batch (after the decisions they led to were acknowledged), and
/// dropped when the partition is revoked.
struct RaterProcessor {
    tables: Option<RatingTables>,
    monitor: ratedeck::conformance::ConformanceMonitor,
    profiles: detection::ProfileMonitor,
    declared: profile::Declared,
    alert_codec: Codec<AccountAlertEvent>,
    changes: tokio::sync::mpsc::Receiver<PlanChange>,
    input: Codec<EnrichedCall>,
    output: Codec<RatedCdr>,
    change_codec: Codec<PlanChange>,
    metrics: RaterMetrics,
    kafka: cdr_kafka::KafkaConfig,
    /// Input partitions whose conformance state was restored since assigned.
    restored: std::collections::BTreeSet<i32>,
}

impl RaterProcessor {
    fn new(
        tables: Option<RatingTables>,
        monitor: ratedeck::conformance::ConformanceMonitor,
        profiles: (detection::ProfileMonitor, profile::Declared),
        changes: tokio::sync::mpsc::Receiver<PlanChange>,
        metrics: RaterMetrics,
        kafka: cdr_kafka::KafkaConfig,
    ) -> Self {
        RaterProcessor {
            tables,
            monitor,
            profiles: profiles.0,
            declared: profiles.1,
            alert_codec: Codec::new(),
            changes,
            input: Codec::new(),
            output: Codec::new(),
            change_codec: Codec::new(),
            metrics,
            kafka,
            restored: Default::default(),
        }
    }

    /// Restores the conformance windows of the accounts on `partition`
    /// before any of its calls is observed.
    async fn restore(&mut self, partition: i32) -> Result<(), StageError> {
        let records = cdr_kafka::table::TopicTable::restore_partition::<AccountState>(
            &self.kafka,
            SERVICE,
            topics::RATER_CONFORMANCE,
            partition,
            Duration::from_secs(120),
        )
        .await
        .map_err(StageError::Fatal)?;
        let n = records.len();
        for r in records {
            match r {
                AccountState::Conformance(r) => self.monitor.restore(partition, r),
                AccountState::Profile(r) => self.profiles.restore(partition, r),
            }
        }
        tracing::info!(partition, records = n, "conformance state restored");
        self.restored.insert(partition);
        Ok(())
    }

    /// Writes the monitors' changed state (tombstones for what left it).
    fn checkpoint(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        for c in self.profiles.take_changes() {
            emit_state(out, c.partition, c.key, c.record.as_ref())?;
        }
        for c in self.monitor.take_changes() {
            emit_state(out, c.partition, c.key, c.record.as_ref())?;
        }
        Ok(())
    }

    /// Records a plan change (idempotent by change id).
    fn apply(&mut self, c: &PlanChange) {
        let Some(t) = self.tables.as_mut() else {
            return;
        };
        let Some(kind) = conformance::category(&c.new_plan) else {
            tracing::warn!(change_id = %c.change_id, new_plan = %c.new_plan, "plan change with an unknown plan ignored");
            return;
        };
        let at = chrono::DateTime::from_timestamp_millis(c.decided_at_ms).unwrap_or_default();
        if t.plans.record(&c.account_id, at, kind, &c.change_id) {
            self.monitor.reset(&c.account_id);
            tracing::info!(account = %c.account_id, new_plan = %c.new_plan, source = %c.source, "account plan change applied");
        }
    }
}

impl RaterProcessor {
    /// Observes, then rates, one call; `true` when it completed a downgrade.
    fn rate_one(&mut self, m: &OwnedMessage, out: &mut Outbox) -> bool {
        let call: EnrichedCall = match self.input.decode(m.payload().unwrap_or_default()) {
            Ok(c) => c,
            Err(e) => {
                out.reject(m, &Reject::BadAvro(e.to_string()));
                return false;
            }
        };
        // Observe first: a decision this call completes is in force for it
        // (the decision takes effect after every call already seen).
        let mut decided = false;
        if let Some(t) = &self.tables {
            if let Some(d) = conformance::observe(&mut self.monitor, t, m.partition(), &call.call) {
                let change = conformance::downgrade_event(&d);
                self.apply(&change);
                self.metrics.downgrades.inc();
                tracing::warn!(account = %d.account_id, asr = d.asr, acd_s = d.acd_s, seizures = d.seizures, "wholesale account downgraded to retail");
                match self.change_codec.encode(&change) {
                    Ok(bytes) => {
                        out.emit(
                            topics::ACCOUNTS_PLAN_CHANGES,
                            change.change_id.clone(),
                            bytes,
                            Some(m),
                        );
                        decided = true;
                    }
                    Err(e) => tracing::error!(error = %e, "encoding plan change"),
                }
            }
        }
        for a in profile::observe(
            &mut self.profiles,
            &self.declared,
            m.partition(),
            &call.call,
        ) {
            self.metrics.account_alerts.inc();
            tracing::warn!(account = %a.account_id, declared = %a.declared, window_start_ms = a.window_start_ms, "undeclared dialer traffic");
            match self.alert_codec.encode(&a) {
                Ok(bytes) => {
                    out.emit(
                        topics::ACCOUNTS_ALERTS,
                        a.account_id.clone(),
                        bytes,
                        Some(m),
                    );
                    decided = true;
                }
                Err(e) => tracing::error!(error = %e, "encoding account alert"),
            }
        }
        let cdr = match &self.tables {
            Some(t) => rate_call(call, &t.context()),
            None => unrated_no_decks(call),
        };
        self.metrics
            .calls
            .with_label_values(&[
                cdr.rating.status.as_str(),
                cdr.rating.unrated_reason.as_deref().unwrap_or(""),
            ])
            .inc();
        match self.output.encode(&cdr) {
            Ok(bytes) => out.emit(topics::CDRS_RATED, route_key(&cdr), bytes, Some(m)),
            Err(e) => out.reject(m, &Reject::EncodeFailed(e.to_string())),
        }
        decided
    }
}

impl cdr_kafka::Stage for RaterProcessor {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let mut parts: Vec<i32> = batch.iter().map(|m| m.partition()).collect();
        parts.sort_unstable();
        parts.dedup();
        for p in parts {
            if self.tables.is_some() && !self.restored.contains(&p) {
                self.restore(p).await?;
            }
        }
        while let Ok(c) = self.changes.try_recv() {
            self.apply(&c);
        }
        let mut decided = false;
        for m in batch {
            decided |= self.rate_one(m, out);
        }
        // A state that says "evaluated" must never outlive an unacknowledged
        // decision: the decisions go first.
        if decided {
            out.flush().await?;
        }
        self.checkpoint(out)
    }

    fn revoke(&mut self, partitions: &[Tp]) {
        for (_, p) in partitions
            .iter()
            .filter(|(t, _)| t == topics::CALLS_ENRICHED)
        {
            self.monitor.revoke(*p);
            self.profiles.revoke(*p);
            self.restored.remove(p);
        }
    }
}
