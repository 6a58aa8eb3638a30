//! Detector service: consumes `cdrs.rated` (keyed by breakout, so one
//! partition holds every route of a destination and so every route's
//! peers), scores every call for FAS with the pure [`core::Detector`]
//! (built on the `detection` crate) and produces:
//! * `cdrs.scored`: the CDR with its FAS score and the signals that fired;
//! * `routes.alerts` + `routes.status` (`pulled`) when a route's closed
//!   window crosses a FAS pattern threshold;
//! * `billing.adjustments`: a negative `fas_credit` per suspect call of a
//!   pulled route (the rated CDR is never rewritten).
//!
//! The route windows and pulls are state of the input partitions: restored
//! from `detector.routes` when a partition is first seen, written back
//! after every batch (after the outputs they led to were acknowledged, and
//! before the offsets are committed) and dropped when the partition is
//! revoked. Operator restores (`cdrctl route restore`) arrive on
//! `routes.status`, which the detector follows to lift its pull. All ids
//! and times in the outputs come from the calls, so a replay rewrites the
//! same rows.

pub mod core;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::runtime::Tp;
use cdr_kafka::stage::{Outbox, Reject, StageError};
use cdr_kafka::{
    CancellationToken, CommitPolicy, Message, OwnedMessage, StageConfig, StageDefaults,
};
use cdr_model::avro::Codec;
use cdr_model::call::RatedCdr;
use cdr_model::control::{Adjustment, RouteAlertEvent, RouteStatusEvent};
use cdr_model::topics;
use detection::{FasConfig, RouteConfig, RouteMonitor, RouteRecord};
use serde::Deserialize;

use crate::core::Detector;
use crate::metrics::DetectorMetrics;

pub const SERVICE: &str = "detector";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka, metrics address, batching (shared by every service).
    #[serde(default)]
    pub stage: StageConfig,
    /// Per-call FAS signal thresholds and weights.
    #[serde(default)]
    pub fas: FasConfig,
    /// Per-route pattern windows and thresholds.
    #[serde(default)]
    pub route: RouteConfig,
}

/// The detector's `[stage]` defaults (metrics on :9104).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults::new(9104);

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.stage.resolve(STAGE_DEFAULTS)?;
        self.fas.validate()?;
        self.route.validate()?;
        Ok(())
    }
}

struct DetectorProcessor {
    fas: FasConfig,
    route: RouteConfig,
    /// One detector per input partition (its breakouts' routes).
    parts: BTreeMap<i32, Detector>,
    restores: tokio::sync::mpsc::Receiver<RouteStatusEvent>,
    /// Newest `routes.status` record per route, for pulls lifted while the
    /// partition's state was elsewhere.
    statuses: HashMap<(String, String), RouteStatusEvent>,
    input: Codec<RatedCdr>,
    output: Codec<RatedCdr>,
    alert: Codec<RouteAlertEvent>,
    status: Codec<RouteStatusEvent>,
    adjustment: Codec<Adjustment>,
    metrics: DetectorMetrics,
    kafka: cdr_kafka::KafkaConfig,
}

/// Encodes one output of input `m`; a record that cannot be encoded is a
/// bug in this service, logged and counted, never produced half-made.
fn out<T>(c: &Codec<T>, topic: &str, key: &str, rec: &T, m: &OwnedMessage, outs: &mut Outbox)
where
    T: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
{
    match c.encode(rec) {
        Ok(payload) => outs.emit(topic, key.as_bytes(), payload, Some(m)),
        Err(e) => tracing::error!(topic, error = %e, "encoding detector output"),
    }
}

impl cdr_kafka::Stage for DetectorProcessor {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let mut parts: Vec<i32> = batch.iter().map(|m| m.partition()).collect();
        parts.sort_unstable();
        parts.dedup();
        for p in parts {
            if !self.parts.contains_key(&p) {
                self.restore(p).await?;
            }
        }
        while let Ok(e) = self.restores.try_recv() {
            self.lift(&e);
            self.statuses
                .insert((e.trunk_id.clone(), e.breakout.clone()), e);
        }
        for m in batch {
            self.score_one(m, out);
        }
        // The state must never say "judged" or "credited" before those
        // outputs are acknowledged: outputs first, then the state, then
        // (by the loop) the offsets.
        out.flush().await?;
        self.checkpoint(out)
    }

    fn revoke(&mut self, partitions: &[Tp]) {
        for (_, p) in partitions.iter().filter(|(t, _)| t == topics::CDRS_RATED) {
            self.parts.remove(p);
        }
    }
}

impl DetectorProcessor {
    /// Rebuilds the route windows of `partition` from `detector.routes`
    /// before any of its calls is scored.
    async fn restore(&mut self, partition: i32) -> Result<(), StageError> {
        let records = cdr_kafka::table::TopicTable::restore_partition::<RouteRecord>(
            &self.kafka,
            SERVICE,
            topics::DETECTOR_ROUTES,
            partition,
            Duration::from_secs(120),
        )
        .await
        .map_err(StageError::Fatal)?;
        let monitor = RouteMonitor::new(self.route)
            .map_err(|e| StageError::Fatal(anyhow::anyhow!("route config: {e}")))?;
        let mut d = Detector::new(self.fas, monitor);
        let n = records.len();
        for r in records {
            d.restore_record(r);
        }
        // Restores made while this state was not loaded anywhere.
        for ((trunk, breakout), e) in &self.statuses {
            if e.status == "active" && d.restore(trunk, breakout) {
                tracing::info!(partition, trunk = %trunk, breakout = %breakout, "route restore applied on load");
            }
        }
        tracing::info!(partition, records = n, "route state restored");
        self.parts.insert(partition, d);
        Ok(())
    }

    /// Lifts a pull on whichever partition holds the route.
    fn lift(&mut self, e: &RouteStatusEvent) {
        if e.status != "active" {
            return;
        }
        for d in self.parts.values_mut() {
            if d.restore(&e.trunk_id, &e.breakout) {
                self.metrics.restores.inc();
                tracing::info!(trunk = %e.trunk_id, breakout = %e.breakout, actor = %e.actor, "route restored");
            }
        }
    }

    /// Writes every partition's changed state.
    fn checkpoint(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        for (p, d) in self.parts.iter_mut() {
            for c in d.take_changes() {
                let payload = match &c.record {
                    Some(r) => Some(
                        serde_json::to_vec(r)
                            .context("encoding route state")
                            .map_err(StageError::Fatal)?,
                    ),
                    None => None,
                };
                self.metrics.state_records.inc();
                out.emit_to(topics::DETECTOR_ROUTES, *p, c.key.into_bytes(), payload);
            }
        }
        Ok(())
    }

    fn score_one(&mut self, m: &OwnedMessage, outs: &mut Outbox) {
        let cdr = match self.input.decode(m.payload().unwrap_or_default()) {
            Ok(c) => c,
            Err(e) => return outs.reject(m, &Reject::BadAvro(e.to_string())),
        };
        let Some(d) = self.parts.get_mut(&m.partition()) else {
            return; // restored above for every partition of the batch
        };
        let threshold = d.fas.call_threshold;
        let o = d.process(cdr);
        if let Some(s) = &o.scored {
            if let Some(det) = &s.detection {
                for sig in &det.fas_signals {
                    self.metrics.signals.with_label_values(&[sig]).inc();
                }
                if det.fas_score >= threshold {
                    self.metrics.suspect_calls.inc();
                }
            }
            let key = s.call.cdr_id.clone();
            out(&self.output, topics::CDRS_SCORED, &key, s, m, outs);
        }
        for a in &o.alerts {
            self.metrics.route_alerts.inc();
            tracing::warn!(trunk = %a.trunk_id, breakout = %a.breakout, patterns = ?a.patterns, credited = a.credited_calls, "route pulled for FAS");
            out(&self.alert, topics::ROUTES_ALERTS, &a.alert_id, a, m, outs);
        }
        for s in &o.status {
            let key = format!("{}|{}", s.trunk_id, s.breakout);
            out(&self.status, topics::ROUTES_STATUS, &key, s, m, outs);
        }
        for a in &o.adjustments {
            self.metrics.credits.inc();
            out(
                &self.adjustment,
                topics::BILLING_ADJUSTMENTS,
                &a.account_id,
                a,
                m,
                outs,
            );
        }
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let settings = config.stage.resolve(STAGE_DEFAULTS)?;
    let metrics = StageMetrics::new(SERVICE);
    let dm = DetectorMetrics::register(&metrics.registry)?;
    // Route status so far (restores lifted while a partition's state was
    // not loaded), then every new one.
    let table =
        cdr_kafka::table::TopicTable::open(&settings.kafka, SERVICE, topics::ROUTES_STATUS)?;
    let mut statuses = HashMap::new();
    for e in table
        .read_all::<RouteStatusEvent>(Duration::from_secs(120))
        .await?
    {
        statuses.insert((e.trunk_id.clone(), e.breakout.clone()), e);
    }
    let rx = table.follow::<RouteStatusEvent>(shutdown.clone(), 256);
    let processor = DetectorProcessor {
        fas: config.fas,
        route: config.route,
        parts: BTreeMap::new(),
        restores: rx,
        statuses,
        input: Codec::new(),
        output: Codec::new(),
        alert: Codec::new(),
        status: Codec::new(),
        adjustment: Codec::new(),
        metrics: dm,
        kafka: settings.kafka.clone(),
    };
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &[topics::CDRS_RATED],
        dlq_topic: topics::PIPELINE_DLQ,
        policy: CommitPolicy::AfterEachBatch,
        settings: &settings,
        metrics,
    };
    Ok(cdr_kafka::run_stage(spec, processor, shutdown).await?)
}
