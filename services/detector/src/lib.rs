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
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{run_stateless, BatchSpec, Outcome, Output, Processor};
use cdr_kafka::{runtime, CancellationToken, KafkaConfig};
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
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default = "default_metrics")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "default_batch")]
    pub batch_max_records: usize,
    #[serde(default = "default_linger")]
    pub batch_linger_ms: u64,
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

fn default_metrics() -> SocketAddr {
    "127.0.0.1:9104".parse().unwrap()
}
fn default_batch() -> usize {
    2000
}
fn default_linger() -> u64 {
    50
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        anyhow::ensure!(
            self.batch_max_records > 0,
            "batch_max_records must be positive"
        );
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

fn out<T>(c: &Codec<T>, topic: &str, key: &str, rec: &T, outs: &mut Vec<Output>)
where
    T: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
{
    match c.encode(rec) {
        Ok(payload) => outs.push(Output {
            topic: topic.to_string(),
            key: key.as_bytes().to_vec(),
            payload,
        }),
        Err(e) => tracing::error!(topic, error = %e, "encoding detector output"),
    }
}

impl Processor for DetectorProcessor {
    fn process(&mut self, _topic: &str, _key: Option<&[u8]>, payload: &[u8]) -> Outcome {
        while let Ok(e) = self.restores.try_recv() {
            if e.status == "active" && self.detector.restore(&e.trunk_id, &e.breakout) {
                self.metrics.restores.inc();
                tracing::info!(trunk = %e.trunk_id, breakout = %e.breakout, actor = %e.actor, "route restored");
            }
        }
        let cdr = match self.input.decode(payload) {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Reject {
                    reason: "bad_avro",
                    field: None,
                    message: e.to_string(),
                }
            }
        };
        let o = self.detector.process(cdr, cdr_kafka::now_ms());
        let mut outs = Vec::new();
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
            out(&self.output, topics::CDRS_SCORED, &key, s, &mut outs);
        }
        for a in &o.alerts {
            self.metrics.route_alerts.inc();
            tracing::warn!(trunk = %a.trunk_id, breakout = %a.breakout, patterns = ?a.patterns, credited = a.credited_calls, "route pulled for FAS");
            out(
                &self.alert,
                topics::ROUTES_ALERTS,
                &a.alert_id,
                a,
                &mut outs,
            );
        }
        for s in &o.status {
            let key = format!("{}|{}", s.trunk_id, s.breakout);
            out(&self.status, topics::ROUTES_STATUS, &key, s, &mut outs);
        }
        for a in &o.adjustments {
            self.metrics.credits.inc();
            out(
                &self.adjustment,
                topics::BILLING_ADJUSTMENTS,
                &a.account_id,
                a,
                &mut outs,
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
                &mut outs,
            );
        }
        Outcome::Emit(outs)
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
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
    let table = cdr_kafka::table::TopicTable::open(&config.kafka, SERVICE, topics::ROUTES_STATUS)?;
    table.read_to_end(Duration::from_secs(120)).await?;
    let rx = table.follow::<RouteStatusEvent>(shutdown.clone(), 256);
    let (consumer, producer) = runtime::start_stage(
        &config.kafka,
        SERVICE,
        config.metrics_listen,
        &metrics,
        &[topics::CDRS_RATED],
        &shutdown,
    )
    .await?;
    let spec = BatchSpec {
        max_records: config.batch_max_records,
        linger: Duration::from_millis(config.batch_linger_ms),
    };
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
    run_stateless(
        SERVICE,
        consumer,
        producer,
        topics::PIPELINE_DLQ,
        spec,
        metrics,
        processor,
        shutdown,
    )
    .await
}
