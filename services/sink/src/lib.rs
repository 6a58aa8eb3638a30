//! Sink service: the only ClickHouse writer of pipeline data. Consumes
//! `cdrs.scored`, `kpi.minute`, the control topics (`accounts.plan-changes`,
//! `routes.alerts`, `routes.status`, `billing.adjustments`,
//! `accounts.alerts`) and the dead-letter topics, converts records
//! to rows, and inserts them in batches (by rows and by time). A batch is
//! retried with exponential backoff for as long as ClickHouse is down and
//! offsets are committed only after every insert of the batch was
//! acknowledged; nothing is dropped. Redelivered records carry the same ids
//! and collapse in the ReplacingMergeTree tables and their `_final` views.

pub mod metrics;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use cdr_clickhouse::rows::{
    AccountAlertRow, AdjustmentRow, DeadLetterRow, KpiMinuteRow, PlanChangeRow, RatedCdrRow,
    RouteAlertRow, RouteStatusRow,
};
use cdr_clickhouse::ClickHouseConfig;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{batch_offsets, dead_letter, next_batch, BatchSpec};
use cdr_kafka::{runtime, CancellationToken, KafkaConfig};
use cdr_model::avro::Codec;
use cdr_model::call::{KpiMinute, RatedCdr};
use cdr_model::control::{
    AccountAlertEvent, Adjustment, PlanChange, RouteAlertEvent, RouteStatusEvent,
};
use cdr_model::dlq::DeadLetter;
use cdr_model::topics;
use rdkafka::consumer::CommitMode;
use rdkafka::message::{Message, OwnedMessage};
use serde::Deserialize;

use crate::metrics::SinkMetrics;

pub const SERVICE: &str = "sink";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    #[serde(default = "default_metrics")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "default_rows")]
    pub batch_rows: usize,
    #[serde(default = "default_ms")]
    pub batch_ms: u64,
    #[serde(default = "default_backoff")]
    pub max_backoff_ms: u64,
}

fn default_metrics() -> SocketAddr {
    "127.0.0.1:9106".parse().unwrap()
}
fn default_rows() -> usize {
    5000
}
fn default_ms() -> u64 {
    1000
}
fn default_backoff() -> u64 {
    30_000
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        self.clickhouse.validate()?;
        anyhow::ensure!(self.batch_rows > 0, "batch_rows must be positive");
        anyhow::ensure!(self.batch_ms > 0, "batch_ms must be positive");
        Ok(())
    }
}

/// Rows of one batch, split by table.
#[derive(Default, Debug)]
pub struct Rows {
    pub cdrs: Vec<RatedCdrRow>,
    pub kpis: Vec<KpiMinuteRow>,
    pub dead: Vec<DeadLetterRow>,
    pub plan_changes: Vec<PlanChangeRow>,
    pub route_alerts: Vec<RouteAlertRow>,
    pub route_status: Vec<RouteStatusRow>,
    pub adjustments: Vec<AdjustmentRow>,
    pub account_alerts: Vec<AccountAlertRow>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.cdrs.len()
            + self.kpis.len()
            + self.dead.len()
            + self.plan_changes.len()
            + self.route_alerts.len()
            + self.route_status.len()
            + self.adjustments.len()
            + self.account_alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decoders of the Avro topics the sink reads.
#[derive(Default)]
pub struct Codecs {
    pub cdr: Codec<RatedCdr>,
    pub kpi: Codec<KpiMinute>,
    pub plan: Codec<PlanChange>,
    pub alert: Codec<RouteAlertEvent>,
    pub status: Codec<RouteStatusEvent>,
    pub adjustment: Codec<Adjustment>,
    pub account_alert: Codec<AccountAlertEvent>,
}

type ConvertError = (&'static str, Option<&'static str>, String);

fn avro<T>(c: &Codec<T>, payload: &[u8]) -> Result<T, ConvertError>
where
    T: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
{
    c.decode(payload)
        .map_err(|e| ("bad_avro", None, e.to_string()))
}

fn decimal<T>(r: Result<T, cdr_clickhouse::rows::BadDecimal>) -> Result<T, ConvertError> {
    r.map_err(|e| ("bad_decimal", Some(e.field), e.to_string()))
}

/// Pure conversion of one consumed record into rows; errors become dead letters.
pub fn convert(
    topic: &str,
    payload: &[u8],
    codecs: &Codecs,
    rows: &mut Rows,
) -> Result<(), ConvertError> {
    let cdr_codec = &codecs.cdr;
    let kpi_codec = &codecs.kpi;
    match topic {
        t if t == topics::ACCOUNTS_PLAN_CHANGES => {
            rows.plan_changes
                .push(PlanChangeRow::from(&avro(&codecs.plan, payload)?));
        }
        t if t == topics::ROUTES_ALERTS => {
            let a = avro(&codecs.alert, payload)?;
            rows.route_alerts
                .push(decimal(RouteAlertRow::from_record(&a))?);
        }
        t if t == topics::ROUTES_STATUS => {
            rows.route_status
                .push(RouteStatusRow::from(&avro(&codecs.status, payload)?));
        }
        t if t == topics::BILLING_ADJUSTMENTS => {
            let a = avro(&codecs.adjustment, payload)?;
            rows.adjustments
                .push(decimal(AdjustmentRow::from_record(&a))?);
        }
        t if t == topics::ACCOUNTS_ALERTS => {
            rows.account_alerts.push(AccountAlertRow::from(&avro(
                &codecs.account_alert,
                payload,
            )?));
        }
        t if t == topics::CDRS_SCORED => {
            let rec = cdr_codec
                .decode(payload)
                .map_err(|e| ("bad_avro", None, e.to_string()))?;
            let row = RatedCdrRow::from_record(&rec)
                .map_err(|e| ("bad_decimal", Some(e.field), e.to_string()))?;
            rows.cdrs.push(row);
        }
        t if t == topics::KPI_MINUTE => {
            let rec = kpi_codec
                .decode(payload)
                .map_err(|e| ("bad_avro", None, e.to_string()))?;
            let row = KpiMinuteRow::from_record(&rec)
                .map_err(|e| ("bad_decimal", Some(e.field), e.to_string()))?;
            rows.kpis.push(row);
        }
        _ => {
            let dl: DeadLetter =
                serde_json::from_slice(payload).map_err(|e| ("bad_json", None, e.to_string()))?;
            rows.dead.push(DeadLetterRow::from(&dl));
        }
    }
    Ok(())
}

async fn insert_once<T>(client: &clickhouse::Client, table: &str, rows: &[T]) -> anyhow::Result<()>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite,
{
    let mut insert = client
        .insert::<T>(table)
        .await
        .with_context(|| format!("starting insert into {table}"))?;
    for r in rows {
        insert
            .write(r)
            .await
            .with_context(|| format!("writing row to {table}"))?;
    }
    insert
        .end()
        .await
        .with_context(|| format!("finishing insert into {table}"))?;
    Ok(())
}

/// Inserts with retries until acknowledged; gives up only on shutdown (the
/// batch is then left uncommitted and redelivered on restart).
async fn insert_retrying<T>(
    client: &clickhouse::Client,
    table: &str,
    rows: &[T],
    m: &SinkMetrics,
    max_backoff: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<()>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        match insert_once(client, table, rows).await {
            Ok(()) => {
                m.rows_inserted
                    .with_label_values(&[table])
                    .inc_by(rows.len() as u64);
                return Ok(());
            }
            Err(e) => {
                m.insert_retries.inc();
                tracing::warn!(table, rows = rows.len(), error = %format!("{e:#}"), backoff_ms = backoff.as_millis() as u64, "insert failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => anyhow::bail!("shutdown while retrying insert into {table}; batch left uncommitted"),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let stage = StageMetrics::new(SERVICE);
    let m = SinkMetrics::register(&stage.registry);
    let (consumer, producer) = runtime::start_stage(
        &config.kafka,
        SERVICE,
        config.metrics_listen,
        &stage,
        &[
            topics::CDRS_SCORED,
            topics::KPI_MINUTE,
            topics::CALL_EVENTS_DLQ,
            topics::PIPELINE_DLQ,
            topics::ACCOUNTS_PLAN_CHANGES,
            topics::ROUTES_ALERTS,
            topics::ROUTES_STATUS,
            topics::BILLING_ADJUSTMENTS,
            topics::ACCOUNTS_ALERTS,
        ],
        &shutdown,
    )
    .await?;
    let client = config.clickhouse.client();
    let codecs = Codecs::default();
    let spec = BatchSpec {
        max_records: config.batch_rows,
        linger: Duration::from_millis(config.batch_ms),
    };
    let max_backoff = Duration::from_millis(config.max_backoff_ms);
    while let Some(batch) = next_batch(&consumer, &spec, &shutdown).await {
        let started = std::time::Instant::now();
        let mut rows = Rows::default();
        let mut dlq_acks = Vec::new();
        for msg in &batch {
            stage.consumed.inc();
            if let Err((reason, field, message)) = convert(
                msg.topic(),
                msg.payload().unwrap_or_default(),
                &codecs,
                &mut rows,
            ) {
                tracing::warn!(reason, topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), %message, "dead-lettering record");
                stage.dead_lettered.with_label_values(&[reason]).inc();
                let dl = dead_letter(SERVICE, msg, reason, field, message);
                if msg.topic() == topics::PIPELINE_DLQ || msg.topic() == topics::CALL_EVENTS_DLQ {
                    // A broken dead letter is recorded directly, never re-queued (no loops).
                    rows.dead.push(DeadLetterRow::from(&dl));
                } else {
                    dlq_acks.push(
                        runtime::send(
                            &producer,
                            topics::PIPELINE_DLQ,
                            dl.id().as_bytes(),
                            &dl.to_json(),
                        )
                        .await?,
                    );
                }
            }
        }
        runtime::await_acks(dlq_acks).await?;
        let res = async {
            let (c, mm, b, sd) = (&client, &m, max_backoff, &shutdown);
            insert_retrying(c, "rated_cdrs", &rows.cdrs, mm, b, sd).await?;
            insert_retrying(c, "kpi_minute", &rows.kpis, mm, b, sd).await?;
            insert_retrying(c, "dead_letters", &rows.dead, mm, b, sd).await?;
            insert_retrying(c, "account_plan_changes", &rows.plan_changes, mm, b, sd).await?;
            insert_retrying(c, "route_alerts", &rows.route_alerts, mm, b, sd).await?;
            insert_retrying(c, "route_status", &rows.route_status, mm, b, sd).await?;
            insert_retrying(c, "adjustments", &rows.adjustments, mm, b, sd).await?;
            insert_retrying(c, "account_alerts", &rows.account_alerts, mm, b, sd).await
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %format!("{e:#}"), "exiting without committing the pending batch");
            return Ok(());
        }
        stage.produced.inc_by(rows.len() as u64);
        runtime::commit(&consumer, &batch_offsets(&batch), CommitMode::Sync)?;
        stage.commits.inc();
        stage.batch_latency.observe(started.elapsed().as_secs_f64());
        let _: &[OwnedMessage] = &batch;
    }
    tracing::info!("drained; exiting");
    Ok(())
}
