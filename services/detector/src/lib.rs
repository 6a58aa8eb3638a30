//! Detector service: consumes `cdrs.rated` (keyed by route, so one instance
//! sees every call of a termination trunk × breakout), scores every call for
//! FAS with the pure [`core::Detector`] (built on the `detection` crate) and
//! produces:
//! * `cdrs.scored`: the CDR with its FAS score and the signals that fired;
//! * `routes.alerts` + `routes.status` (`pulled`) when a route crosses a FAS
//!   pattern threshold;
//! * `billing.adjustments`: a negative `fas_credit` per call of the window
//!   whose own signals fired (the rated CDR is never rewritten);
//! * `accounts.alerts`: undeclared dialer traffic (never changes a rate).
//!
//! Operator restores (`cdrctl route restore`) arrive on `routes.status`,
//! which the detector follows to lift its pull. Offsets are committed only
//! after every output is acknowledged; all ids are deterministic, so a
//! replay rewrites the same rows.

pub mod core;
pub mod metrics;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{Outbox, Reject, StageError};
use cdr_kafka::{
    CancellationToken, CommitPolicy, Message, OwnedMessage, StageConfig, StageDefaults,
};
use cdr_model::avro::Codec;
use cdr_model::call::RatedCdr;
use cdr_model::control::{AccountAlertEvent, Adjustment, RouteAlertEvent, RouteStatusEvent};
use cdr_model::topics;
use detection::{FasConfig, ProfileConfig, ProfileMonitor, RouteConfig, RouteMonitor};
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
    /// Traffic-profile (dialer) windows and thresholds.
    #[serde(default)]
    pub profile: ProfileConfig,
    /// Declared traffic profile per account: `account;conversational|dialer`.
    #[serde(default)]
    pub traffic_profiles: Option<PathBuf>,
}

/// The detector's `[stage]` defaults (metrics on :9104).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults::new(9104);

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.stage.resolve(STAGE_DEFAULTS)?;
        self.fas.validate()?;
        self.route.validate()?;
        self.profile.validate()?;
        Ok(())
    }
}

fn load_profiles(
    path: &Option<PathBuf>,
) -> anyhow::Result<HashMap<String, detection::TrafficProfile>> {
    let Some(p) = path else {
        return Ok(HashMap::new());
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let (map, errors) = core::parse_profiles(&text);
    for e in errors {
        tracing::warn!(file = %p.display(), "traffic profile row rejected: {e}");
    }
    Ok(map)
}

struct DetectorProcessor {
    detector: Detector,
    restores: tokio::sync::mpsc::Receiver<RouteStatusEvent>,
    input: Codec<RatedCdr>,
    output: Codec<RatedCdr>,
    alert: Codec<RouteAlertEvent>,
    status: Codec<RouteStatusEvent>,
    adjustment: Codec<Adjustment>,
    account_alert: Codec<AccountAlertEvent>,
    metrics: DetectorMetrics,
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
        while let Ok(e) = self.restores.try_recv() {
            if e.status == "active" && self.detector.restore(&e.trunk_id, &e.breakout) {
                self.metrics.restores.inc();
                tracing::info!(trunk = %e.trunk_id, breakout = %e.breakout, actor = %e.actor, "route restored");
            }
        }
        for m in batch {
            self.score_one(m, out);
        }
        Ok(())
    }
}

impl DetectorProcessor {
    fn score_one(&mut self, m: &OwnedMessage, outs: &mut Outbox) {
        let cdr = match self.input.decode(m.payload().unwrap_or_default()) {
            Ok(c) => c,
            Err(e) => return outs.reject(m, &Reject::BadAvro(e.to_string())),
        };
        let o = self.detector.process(cdr, cdr_kafka::now_ms());
        if let Some(s) = &o.scored {
            if let Some(d) = &s.detection {
                for sig in &d.fas_signals {
                    self.metrics.signals.with_label_values(&[sig]).inc();
                }
                if d.fas_score >= self.detector.fas.call_threshold {
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
        for a in &o.account_alerts {
            self.metrics.account_alerts.inc();
            tracing::warn!(account = %a.account_id, declared = %a.declared, observed = %a.observed, "undeclared dialer traffic");
            out(
                &self.account_alert,
                topics::ACCOUNTS_ALERTS,
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
    let declared = load_profiles(&config.traffic_profiles)?;
    tracing::info!(
        accounts = declared.len(),
        "declared traffic profiles loaded"
    );
    let detector = Detector::new(
        config.fas,
        RouteMonitor::new(config.route)?,
        ProfileMonitor::new(config.profile)?,
        declared,
    );
    // Follow operator restores. History before start-up needs no replay:
    // a fresh detector has no pulls to lift.
    let table =
        cdr_kafka::table::TopicTable::open(&settings.kafka, SERVICE, topics::ROUTES_STATUS)?;
    table.read_to_end(Duration::from_secs(120)).await?;
    let rx = table.follow::<RouteStatusEvent>(shutdown.clone(), 256);
    let processor = DetectorProcessor {
        detector,
        restores: rx,
        input: Codec::new(),
        output: Codec::new(),
        alert: Codec::new(),
        status: Codec::new(),
        adjustment: Codec::new(),
        account_alert: Codec::new(),
        metrics: dm,
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
