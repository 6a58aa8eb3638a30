//! Metrics every stage exposes, named `cdr_<service>_<what>`, the
//! `/metrics` HTTP endpoint Prometheus scrapes, and the health endpoints
//! on the same listener: `/livez` (the stage loop turned within
//! [`LIVE_WINDOW_MS`]), `/readyz` (input partitions assigned and the
//! consumer lag at most [`READY_LAG`]) and `/healthz` (both, as JSON).
//! Service-specific metrics live in each service's own `metrics.rs` and
//! register in the same registry.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The runtime's own metrics for one service.
#[derive(Clone)]
pub struct StageMetrics {
    pub registry: Registry,
    pub consumed: IntCounter,
    pub produced: IntCounter,
    pub dead_lettered: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub batch_latency: Histogram,
    pub commits: IntCounter,
    /// Commits that failed, by class (`rebalance`, `retriable`, `fatal`).
    pub commit_failures: IntCounterVec,
    /// Partitions revoked from this instance.
    pub revocations: IntCounter,
    /// Input partitions this instance owns now (0 while it waits to join
    /// its group, or when a rebalance left it nothing).
    pub partitions_owned: IntGauge,
    pub input_partitions: IntGauge,
    /// Produce attempts that waited on a full local queue (backpressure).
    pub produce_waits: IntCounter,
    /// Outputs the broker refused because of the record itself (replaced by
    /// a dead letter of the input that produced them).
    pub outputs_refused: IntCounter,
    /// When the stage loop last turned (liveness).
    pub health: Arc<Health>,
}

/// A stage loop that has not turned for this long is not live (it turns at
/// least every [`HEARTBEAT_MS`], idle or not).
pub const LIVE_WINDOW_MS: i64 = 30_000;
/// The stage loop's idle heartbeat.
pub const HEARTBEAT_MS: u64 = 5_000;
/// A consumer this many records behind (summed over its partitions, from
/// librdkafka's statistics) is not ready: it is still catching up.
pub const READY_LAG: i64 = 10_000;

/// Liveness of the stage loop.
#[derive(Debug, Default)]
pub struct Health {
    last_turn_ms: AtomicI64,
}

impl Health {
    /// The loop turned now.
    pub fn turned(&self) {
        self.last_turn_ms.store(crate::now_ms(), Ordering::Relaxed);
    }
    /// The loop turned at `ms` (tests).
    pub fn turned_at(&self, ms: i64) {
        self.last_turn_ms.store(ms, Ordering::Relaxed);
    }
    pub fn live(&self, now_ms: i64) -> bool {
        let last = self.last_turn_ms.load(Ordering::Relaxed);
        last > 0 && now_ms - last <= LIVE_WINDOW_MS
    }
}

impl StageMetrics {
    pub fn new(service: &str) -> Self {
        let registry = Registry::new();
        let n = |what: &str| format!("cdr_{service}_{what}");
        let consumed = IntCounter::new(
            n("consumed_total"),
            "Records consumed from the input topics",
        )
        .unwrap();
        let produced = IntCounter::new(
            n("produced_total"),
            "Records produced and acknowledged downstream",
        )
        .unwrap();
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                n("dead_lettered_total"),
                "Records sent to a dead-letter topic, by reason",
            ),
            &["reason"],
        )
        .unwrap();
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                n("consumer_lag"),
                "Consumer lag in records, by topic and partition",
            ),
            &["topic", "partition"],
        )
        .unwrap();
        let batch_latency = Histogram::with_opts(
            HistogramOpts::new(
                n("batch_latency_seconds"),
                "Time from a batch's first record to its acknowledgement",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .unwrap();
        let commits = IntCounter::new(n("offset_commits_total"), "Offset commits issued").unwrap();
        let commit_failures = IntCounterVec::new(
            Opts::new(
                n("offset_commit_failures_total"),
                "Offset commits that failed, by class (rebalance, retriable, fatal)",
            ),
            &["class"],
        )
        .unwrap();
        let revocations = IntCounter::new(
            n("partitions_revoked_total"),
            "Partitions revoked from this instance by a rebalance",
        )
        .unwrap();
        let partitions_owned = IntGauge::new(
            n("partitions_owned"),
            "Input partitions this instance owns now",
        )
        .unwrap();
        registry
            .register(Box::new(partitions_owned.clone()))
            .unwrap();
        let input_partitions = IntGauge::new(
            n("input_partitions"),
            "Partitions of the input topics in the client's metadata: the group's live members together must own them all (see the CdrPartitionsUnowned alert)",
        )
        .unwrap();
        registry
            .register(Box::new(input_partitions.clone()))
            .unwrap();
        let produce_waits = IntCounter::new(
            n("produce_queue_full_total"),
            "Produce attempts that waited because the local producer queue was full",
        )
        .unwrap();
        let outputs_refused = IntCounter::new(
            n("outputs_refused_total"),
            "Outputs the broker refused for the record itself (e.g. too large), dead-lettered instead",
        )
        .unwrap();
        for c in [
            &consumed,
            &produced,
            &commits,
            &revocations,
            &produce_waits,
            &outputs_refused,
        ] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        registry
            .register(Box::new(commit_failures.clone()))
            .unwrap();
        registry.register(Box::new(dead_lettered.clone())).unwrap();
        registry.register(Box::new(consumer_lag.clone())).unwrap();
        registry.register(Box::new(batch_latency.clone())).unwrap();
        StageMetrics {
            registry,
            consumed,
            produced,
            dead_lettered,
            consumer_lag,
            batch_latency,
            commits,
            commit_failures,
            revocations,
            partitions_owned,
            input_partitions,
            produce_waits,
            outputs_refused,
            health: Arc::new(Health::default()),
        }
    }

    /// Summed consumer lag over every partition this instance reports
    /// (`cdr_<service>_consumer_lag`, the only family with that suffix).
    pub fn lag_total(&self) -> i64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name().ends_with("_consumer_lag"))
            .flat_map(|f| {
                f.get_metric()
                    .iter()
                    .map(|m| m.get_gauge().get_value() as i64)
                    .collect::<Vec<_>>()
            })
            .map(|v| v.max(0))
            .sum()
    }

    /// Assigned input partitions and caught up.
    pub fn ready(&self) -> bool {
        self.partitions_owned.get() > 0 && self.lag_total() <= READY_LAG
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("utf8 metrics")
    }
}

/// Serves `GET /metrics` (and `/healthz`) until `shutdown` fires. A tiny
/// hand-rolled HTTP/1.0 responder keeps the dependency tree small; the
/// endpoint only ever answers scrapes.
pub async fn serve(
    addr: SocketAddr,
    metrics: StageMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let registry = metrics.registry.clone();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            };
            let registry = registry.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let n = match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sock.read(&mut req),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let head = String::from_utf8_lossy(&req[..n]);
                let (status, body) = if head.starts_with("GET /metrics") {
                    let mut buf = Vec::new();
                    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
                    ("200 OK", buf)
                } else if head.starts_with("GET /livez")
                    || head.starts_with("GET /readyz")
                    || head.starts_with("GET /healthz")
                {
                    let live = metrics.health.live(crate::now_ms());
                    let ready = metrics.ready();
                    let ok = if head.starts_with("GET /livez") {
                        live
                    } else if head.starts_with("GET /readyz") {
                        ready
                    } else {
                        live && ready
                    };
                    let body = format!(
                        "{{\"live\":{live},\"ready\":{ready},\"partitions\":{},\"lag\":{}}}\n",
                        metrics.partitions_owned.get(),
                        metrics.lag_total()
                    );
                    (
                        if ok {
                            "200 OK"
                        } else {
                            "503 Service Unavailable"
                        },
                        body.into_bytes(),
                    )
                } else {
                    ("404 Not Found", b"not found\n".to_vec())
                };
                let hdr = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(hdr.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_named_metrics() {
        let m = StageMetrics::new("testsvc");
        m.dead_lettered.with_label_values(&["bad_json"]).inc();
        let token = CancellationToken::new();
        let addr = serve("127.0.0.1:0".parse().unwrap(), m.clone(), token.clone())
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"));
        assert!(
            out.contains("cdr_testsvc_dead_lettered_total{reason=\"bad_json\"} 1"),
            "{out}"
        );
        token.cancel();
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Issue 15: live while the loop turns, ready once assigned and caught up.
    #[tokio::test]
    async fn health_follows_the_loop_the_assignment_and_the_lag() {
        let m = StageMetrics::new("healthsvc");
        let token = CancellationToken::new();
        let addr = serve("127.0.0.1:0".parse().unwrap(), m.clone(), token.clone())
            .await
            .unwrap();
        // Never turned, nothing assigned.
        assert!(get(addr, "/livez").await.starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        m.health.turned();
        assert!(get(addr, "/livez").await.starts_with("HTTP/1.1 200"));
        let h = get(addr, "/healthz").await;
        assert!(
            h.starts_with("HTTP/1.1 503") && h.contains("\"ready\":false"),
            "{h}"
        );
        m.partitions_owned.set(4);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let h = get(addr, "/healthz").await;
        assert!(
            h.starts_with("HTTP/1.1 200") && h.contains("\"partitions\":4"),
            "{h}"
        );
        // Far behind: not ready.
        m.consumer_lag
            .with_label_values(&["t", "0"])
            .set(READY_LAG + 1);
        assert_eq!(m.lag_total(), READY_LAG + 1);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        m.consumer_lag.with_label_values(&["t", "0"]).set(10);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        // A loop that stopped turning is not live.
        m.health.turned_at(crate::now_ms() - LIVE_WINDOW_MS - 1);
        assert!(get(addr, "/livez").await.starts_with("HTTP/1.1 503"));
        token.cancel();
    }
}
