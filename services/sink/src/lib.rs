//! Sink service: the only ClickHouse writer of pipeline data. Consumes
//! `cdrs.scored`, `kpi.calls`, the control topics (`accounts.plan-changes`,
//! `routes.alerts`, `routes.status`, `billing.adjustments`,
//! `accounts.alerts`) and the dead-letter topics, converts records
//! to rows, and inserts them in batches (by rows and by time). Offsets are
//! committed only after every insert of the batch was acknowledged.
//!
//! ClickHouse errors are classified ([`classify`]), as Vector's ClickHouse
//! sink does:
//! * network, timeout, overload and server-state errors are retried with
//!   exponential backoff, for as long as it takes; every attempt is bounded
//!   by `insert_timeout_ms` and SIGTERM interrupts the wait (the batch then
//!   stays uncommitted and is redelivered);
//! * data errors (a value the column refuses, too many partitions in one
//!   insert, …) are the rows' fault: the insert is bisected until the
//!   refused rows are isolated; each is dead-lettered with ClickHouse's
//!   message and the rest are inserted.
//!
//! Every insert carries an `insert_deduplication_token` derived from its
//! rows: on replicated tables (production) an insert retried after a lost
//! acknowledgement is stored once. The local stack's tables are not
//! replicated and keep no deduplication window (one would silently drop a
//! re-insert of identical rows after a DELETE), so there, as for any
//! redelivery, the copies carry the same ids and collapse in the
//! ReplacingMergeTree tables and their `_final` views.

pub mod metrics;

use std::time::Duration;

use cdr_clickhouse::rows::{
    AccountAlertRow, AdjustmentRow, DeadLetterRow, KpiCallRow, PlanChangeRow, RatedCdrRow,
    RouteAlertRow, RouteStatusRow,
};
use cdr_clickhouse::ClickHouseConfig;
use cdr_kafka::metrics::StageMetrics;
use cdr_kafka::stage::{Outbox, Rejection, StageError};
use cdr_kafka::{CancellationToken, CommitPolicy, StageConfig, StageDefaults};
use cdr_model::avro::Codec;
use cdr_model::call::{KpiCall, RatedCdr};
use cdr_model::control::{
    AccountAlertEvent, Adjustment, PlanChange, RouteAlertEvent, RouteStatusEvent,
};
use cdr_model::dlq::DeadLetter;
use cdr_model::topics;
use rdkafka::message::{Message, OwnedMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::SinkMetrics;

pub const SERVICE: &str = "sink";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka, metrics address, batching (shared by every service); the
    /// sink batches 5000 records or 1 s by default.
    #[serde(default)]
    pub stage: StageConfig,
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    /// Longest wait between two attempts of a failing insert.
    #[serde(default = "default_backoff")]
    pub max_backoff_ms: u64,
    /// Bound on one insert attempt (connect, send and response).
    #[serde(default = "default_insert_timeout")]
    pub insert_timeout_ms: u64,
}

/// The sink's `[stage]` defaults: metrics on :9106, large batches (ClickHouse
/// prefers few big inserts).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults {
    metrics_port: 9106,
    batch_max_records: 5000,
    batch_linger_ms: 1000,
};

fn default_backoff() -> u64 {
    30_000
}
fn default_insert_timeout() -> u64 {
    30_000
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.stage.resolve(STAGE_DEFAULTS)?;
        self.clickhouse.validate()?;
        anyhow::ensure!(self.max_backoff_ms > 0, "max_backoff_ms must be positive");
        anyhow::ensure!(
            self.insert_timeout_ms > 0,
            "insert_timeout_ms must be positive"
        );
        Ok(())
    }
}

/// Rows of one batch, split by table; `src` holds, per table, the index in
/// the batch of the record each row came from.
#[derive(Default, Debug)]
pub struct Rows {
    pub src: Src,
    pub cdrs: Vec<RatedCdrRow>,
    pub kpis: Vec<KpiCallRow>,
    pub dead: Vec<DeadLetterRow>,
    pub plan_changes: Vec<PlanChangeRow>,
    pub route_alerts: Vec<RouteAlertRow>,
    pub route_status: Vec<RouteStatusRow>,
    pub adjustments: Vec<AdjustmentRow>,
    pub account_alerts: Vec<AccountAlertRow>,
}

/// Batch index of each row, per table (same order as the rows).
#[derive(Default, Debug)]
pub struct Src {
    pub cdrs: Vec<usize>,
    pub kpis: Vec<usize>,
    pub dead: Vec<usize>,
    pub plan_changes: Vec<usize>,
    pub route_alerts: Vec<usize>,
    pub route_status: Vec<usize>,
    pub adjustments: Vec<usize>,
    pub account_alerts: Vec<usize>,
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

    /// Rows per table, in the order of [`Src`]'s fields.
    pub fn lens(&self) -> [usize; 8] {
        [
            self.cdrs.len(),
            self.kpis.len(),
            self.dead.len(),
            self.plan_changes.len(),
            self.route_alerts.len(),
            self.route_status.len(),
            self.adjustments.len(),
            self.account_alerts.len(),
        ]
    }

    /// Records that the rows added since `before` came from batch record `i`.
    pub fn record_src(&mut self, before: [usize; 8], i: usize) {
        let after = self.lens();
        let srcs = [
            &mut self.src.cdrs,
            &mut self.src.kpis,
            &mut self.src.dead,
            &mut self.src.plan_changes,
            &mut self.src.route_alerts,
            &mut self.src.route_status,
            &mut self.src.adjustments,
            &mut self.src.account_alerts,
        ];
        for (k, src) in srcs.into_iter().enumerate() {
            for _ in before[k]..after[k] {
                src.push(i);
            }
        }
    }
}

/// Decoders of the Avro topics the sink reads.
#[derive(Default)]
pub struct Codecs {
    pub cdr: Codec<RatedCdr>,
    pub kpi: Codec<KpiCall>,
    pub plan: Codec<PlanChange>,
    pub alert: Codec<RouteAlertEvent>,
    pub status: Codec<RouteStatusEvent>,
    pub adjustment: Codec<Adjustment>,
    pub account_alert: Codec<AccountAlertEvent>,
}

/// Why the sink refused a record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkReject {
    #[error("undecodable Avro: {0}")]
    BadAvro(String),
    #[error("{message}")]
    BadDecimal {
        field: &'static str,
        message: String,
    },
    #[error("undecodable dead letter: {0}")]
    BadJson(String),
    /// ClickHouse refused the row itself (isolated by bisecting the insert).
    #[error("ClickHouse refused the row for {table} (code {code}): {message}")]
    ClickHouseRefused {
        table: &'static str,
        code: u32,
        message: String,
    },
}

impl Rejection for SinkReject {
    fn reason(&self) -> &'static str {
        match self {
            Self::BadAvro(_) => "bad_avro",
            Self::BadDecimal { .. } => "bad_decimal",
            Self::BadJson(_) => "bad_json",
            Self::ClickHouseRefused { .. } => "clickhouse_refused",
        }
    }
    fn field(&self) -> Option<&str> {
        match self {
            Self::BadDecimal { field, .. } => Some(field),
            Self::ClickHouseRefused { table, .. } => Some(table),
            _ => None,
        }
    }
}

type ConvertError = SinkReject;

fn avro<T>(c: &Codec<T>, payload: &[u8]) -> Result<T, ConvertError>
where
    T: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
{
    c.decode(payload)
        .map_err(|e| SinkReject::BadAvro(e.to_string()))
}

fn decimal<T>(r: Result<T, cdr_clickhouse::rows::BadDecimal>) -> Result<T, ConvertError> {
    r.map_err(|e| SinkReject::BadDecimal {
        field: e.field,
        message: e.to_string(),
    })
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
            let rec = avro(cdr_codec, payload)?;
            rows.cdrs.push(decimal(RatedCdrRow::from_record(&rec))?);
        }
        t if t == topics::KPI_CALLS => {
            let rec = avro(kpi_codec, payload)?;
            rows.kpis.push(decimal(KpiCallRow::from_record(&rec))?);
        }
        _ => {
            let dl: DeadLetter =
                serde_json::from_slice(payload).map_err(|e| SinkReject::BadJson(e.to_string()))?;
            rows.dead.push(DeadLetterRow::from(&dl));
        }
    }
    Ok(())
}

/// What an insert failure means for the rows in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertFailure {
    /// Network, timeout, overload or server state: the same insert may
    /// succeed later.
    Transient(String),
    /// The data: some row in the insert is refused. `splittable` errors
    /// (too many partitions in one block) go away when the insert is split
    /// and are transient for a single row.
    Data {
        code: u32,
        splittable: bool,
        message: String,
    },
}

/// ClickHouse error codes that mean "this data", not "this server now".
/// (From ClickHouse's ErrorCodes.cpp: CANNOT_PARSE_*, TYPE_MISMATCH,
/// ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, INCORRECT_DATA,
/// VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, DECIMAL_OVERFLOW, …)
const DATA_CODES: &[u32] = &[
    6, 25, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 321, 407, 691,
];
/// TOO_MANY_PARTS: "too many partitions for a single INSERT block" when
/// the block spans many months (split it), or merges lagging (overload).
const TOO_MANY_PARTS: u32 = 252;

/// The `Code: N.` ClickHouse puts at the start of every exception text; the
/// HTTP interface's only carrier of the error code through this client.
pub fn exception_code(text: &str) -> Option<u32> {
    let at = text.find("Code: ")? + "Code: ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub fn classify(e: &clickhouse::error::Error) -> InsertFailure {
    use clickhouse::error::Error as E;
    match e {
        E::BadResponse(text) => match exception_code(text) {
            Some(code) if DATA_CODES.contains(&code) => InsertFailure::Data {
                code,
                splittable: false,
                message: text.clone(),
            },
            Some(TOO_MANY_PARTS) => InsertFailure::Data {
                code: TOO_MANY_PARTS,
                splittable: true,
                message: text.clone(),
            },
            _ => InsertFailure::Transient(text.clone()),
        },
        // Rows the client cannot serialise are the rows' fault too.
        E::Custom(m) => InsertFailure::Data {
            code: 0,
            splittable: false,
            message: m.clone(),
        },
        other => InsertFailure::Transient(other.to_string()),
    }
}

/// Deduplication token of one insert: the table and its rows' content.
pub fn dedup_token<T: Serialize>(table: &str, rows: &[T]) -> String {
    let mut h = Sha256::new();
    h.update(table.as_bytes());
    for r in rows {
        h.update([0u8]);
        h.update(serde_json::to_vec(r).unwrap_or_default());
    }
    hex::encode(&h.finalize()[..16])
}

async fn insert_once<T>(
    client: &clickhouse::Client,
    table: &str,
    rows: &[T],
) -> Result<(), clickhouse::error::Error>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
{
    let mut insert = client
        .insert::<T>(table)
        .await?
        .with_setting("insert_deduplication_token", dedup_token(table, rows));
    for r in rows {
        insert.write(r).await?;
    }
    insert.end().await
}

/// The ClickHouse side of the sink: bounded attempts, backoff, bisection.
pub struct Writer {
    pub client: clickhouse::Client,
    pub metrics: SinkMetrics,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
    pub shutdown: CancellationToken,
}

impl Writer {
    /// Inserts `rows`; returns the indexes (into `rows`) of rows ClickHouse
    /// refused for their own content, with the refusal. Transient failures
    /// are retried until they pass; shutdown interrupts the retrying.
    pub async fn insert<T>(
        &self,
        table: &'static str,
        rows: &[T],
    ) -> Result<Vec<(usize, SinkReject)>, StageError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
    {
        let mut refused = Vec::new();
        let mut todo = vec![(0usize, rows.len())];
        while let Some((lo, hi)) = todo.pop() {
            if lo >= hi {
                continue;
            }
            let mut backoff = Duration::from_millis(100);
            loop {
                let attempt = tokio::time::timeout(
                    self.attempt_timeout,
                    insert_once(&self.client, table, &rows[lo..hi]),
                );
                let r = tokio::select! {
                    _ = self.shutdown.cancelled() => return Err(StageError::Interrupted),
                    r = attempt => r,
                };
                let failure = match r {
                    Ok(Ok(())) => {
                        self.metrics
                            .rows_inserted
                            .with_label_values(&[table])
                            .inc_by((hi - lo) as u64);
                        break;
                    }
                    Ok(Err(e)) => classify(&e),
                    Err(_) => InsertFailure::Transient(format!(
                        "no answer within {:?}",
                        self.attempt_timeout
                    )),
                };
                match failure {
                    InsertFailure::Data { .. } if hi - lo > 1 => {
                        self.metrics.insert_splits.inc();
                        let mid = lo + (hi - lo) / 2;
                        todo.push((mid, hi));
                        todo.push((lo, mid));
                        break;
                    }
                    InsertFailure::Data {
                        code,
                        splittable: false,
                        message,
                    } => {
                        self.metrics.rows_refused.with_label_values(&[table]).inc();
                        refused.push((
                            lo,
                            SinkReject::ClickHouseRefused {
                                table,
                                code,
                                message: cdr_model::dlq::bounded(&message, 512),
                            },
                        ));
                        break;
                    }
                    InsertFailure::Data { message, .. } | InsertFailure::Transient(message) => {
                        self.metrics
                            .insert_retries
                            .with_label_values(&[table])
                            .inc();
                        tracing::warn!(table, rows = hi - lo, error = %cdr_model::dlq::bounded(&message, 300), backoff_ms = backoff.as_millis() as u64, "insert failed; retrying");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return Err(StageError::Interrupted),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(self.max_backoff);
                    }
                }
            }
        }
        refused.sort_by_key(|(i, _)| *i);
        Ok(refused)
    }
}

/// The sink in the stage loop.
struct SinkStage {
    codecs: Codecs,
    writer: Writer,
}

impl cdr_kafka::Stage for SinkStage {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let mut rows = Rows::default();
        for (i, msg) in batch.iter().enumerate() {
            let before = rows.lens();
            match convert(
                msg.topic(),
                msg.payload().unwrap_or_default(),
                &self.codecs,
                &mut rows,
            ) {
                Ok(()) => rows.record_src(before, i),
                Err(why) => {
                    if msg.topic() == topics::PIPELINE_DLQ || msg.topic() == topics::CALL_EVENTS_DLQ
                    {
                        // A broken dead letter is recorded directly, never re-queued (no loops).
                        let mut dl = cdr_kafka::stage::dead_letter_for(SERVICE, msg, &why);
                        dl.topic = out.cluster_topic(&dl.topic);
                        rows.dead.push(DeadLetterRow::from(&dl));
                        rows.src.dead.push(i);
                    } else {
                        out.reject(msg, &why);
                    }
                }
            }
        }
        let w = &self.writer;
        let mut refused: Vec<(usize, SinkReject)> = Vec::new();
        let mut keep = |r: Vec<(usize, SinkReject)>, src: &[usize]| {
            refused.extend(r.into_iter().map(|(k, why)| (src[k], why)));
        };
        keep(w.insert("rated_cdrs", &rows.cdrs).await?, &rows.src.cdrs);
        keep(w.insert("kpi_calls", &rows.kpis).await?, &rows.src.kpis);
        let dead_refused = w.insert("dead_letters", &rows.dead).await?;
        for (k, why) in &dead_refused {
            // Its original is still in the dead-letter topic; nothing to re-queue.
            tracing::error!(id = %rows.dead[*k].id, error = %why, "ClickHouse refused a dead letter");
        }
        keep(
            w.insert("account_plan_changes", &rows.plan_changes).await?,
            &rows.src.plan_changes,
        );
        keep(
            w.insert("route_alerts", &rows.route_alerts).await?,
            &rows.src.route_alerts,
        );
        keep(
            w.insert("route_status", &rows.route_status).await?,
            &rows.src.route_status,
        );
        keep(
            w.insert("adjustments", &rows.adjustments).await?,
            &rows.src.adjustments,
        );
        keep(
            w.insert("account_alerts", &rows.account_alerts).await?,
            &rows.src.account_alerts,
        );
        for (i, why) in refused {
            out.reject(&batch[i], &why);
        }
        Ok(())
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let settings = config.stage.resolve(STAGE_DEFAULTS)?;
    let stage_metrics = StageMetrics::new(SERVICE);
    let m = SinkMetrics::register(&stage_metrics.registry);
    let stage = SinkStage {
        codecs: Codecs::default(),
        writer: Writer {
            client: config.clickhouse.client(),
            metrics: m,
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            attempt_timeout: Duration::from_millis(config.insert_timeout_ms),
            shutdown: shutdown.clone(),
        },
    };
    let spec = cdr_kafka::StageSpec {
        service: SERVICE,
        topics: &[
            topics::CDRS_SCORED,
            topics::KPI_CALLS,
            topics::CALL_EVENTS_DLQ,
            topics::PIPELINE_DLQ,
            topics::ACCOUNTS_PLAN_CHANGES,
            topics::ROUTES_ALERTS,
            topics::ROUTES_STATUS,
            topics::BILLING_ADJUSTMENTS,
            topics::ACCOUNTS_ALERTS,
        ],
        dlq_topic: topics::PIPELINE_DLQ,
        policy: CommitPolicy::AfterEachBatch,
        settings: &settings,
        metrics: stage_metrics,
    };
    Ok(cdr_kafka::run_stage(spec, stage, shutdown).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_codes_are_read_from_clickhouse_text() {
        assert_eq!(
            exception_code("Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100)."),
            Some(252)
        );
        assert_eq!(
            exception_code("Code: 53. DB::Exception: Type mismatch"),
            Some(53)
        );
        assert_eq!(exception_code("connection reset"), None);
    }

    #[test]
    fn classification_separates_data_from_transient() {
        use clickhouse::error::Error as E;
        assert!(matches!(
            classify(&E::BadResponse(
                "Code: 53. DB::Exception: Type mismatch".into()
            )),
            InsertFailure::Data {
                code: 53,
                splittable: false,
                ..
            }
        ));
        assert!(matches!(
            classify(&E::BadResponse(
                "Code: 252. DB::Exception: Too many partitions".into()
            )),
            InsertFailure::Data {
                code: 252,
                splittable: true,
                ..
            }
        ));
        assert!(matches!(
            classify(&E::BadResponse(
                "Code: 241. DB::Exception: Memory limit exceeded".into()
            )),
            InsertFailure::Transient(_)
        ));
        assert!(matches!(
            classify(&E::TimedOut),
            InsertFailure::Transient(_)
        ));
    }

    #[test]
    fn dedup_token_depends_on_table_and_rows() {
        let a = dedup_token("t", &[1u32, 2]);
        assert_eq!(a, dedup_token("t", &[1u32, 2]));
        assert_ne!(a, dedup_token("t", &[2u32, 1]));
        assert_ne!(a, dedup_token("u", &[1u32, 2]));
    }
}
