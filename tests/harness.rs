//! Test harness for the end-to-end tests: brings the local stack and the
//! services up through the same scripts `make run` uses, and gives tests
//! handles on Kafka, ClickHouse and the service processes.

pub mod chttp;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cdr_clickhouse::ClickHouseConfig;
use cdr_kafka::KafkaConfig;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn script(name: &str, args: &[&str]) {
    let status = Command::new(repo().join("deploy/local").join(name))
        .args(args)
        .status()
        .expect("run script");
    assert!(status.success(), "{name} {args:?} failed");
}

/// Serialises the end-to-end tests (they share the stack and its services)
/// and makes sure everything is running.
pub fn stack() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    static UP: OnceLock<()> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    UP.get_or_init(|| {
        script("start.sh", &[]);
        script("services.sh", &[]);
    });
    guard
}

pub fn kafka() -> KafkaConfig {
    KafkaConfig::default()
}

pub fn clickhouse() -> ClickHouseConfig {
    ClickHouseConfig::default()
}

pub fn state_dir() -> PathBuf {
    std::env::var("CDR_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".state"))
}

/// SIGKILLs a service started by services.sh (no drain, no final commit).
pub fn kill9(service: &str) {
    let pidf = state_dir().join("pids").join(format!("svc-{service}.pid"));
    let pid = std::fs::read_to_string(&pidf)
        .expect("pid file")
        .trim()
        .to_string();
    let st = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(st.success(), "kill -9 {service} ({pid})");
    // Wait until the process is gone (a zombie counts as gone) so that
    // services.sh starts a new one.
    let end = Instant::now() + Duration::from_secs(10);
    while alive(&pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(&pid), "{service} ({pid}) survived kill -9");
}

fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(st) => !st
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// Pid of a process the local scripts started (`svc-<service>`, `clickhouse`, `tansu`).
pub fn pid_of(name: &str) -> String {
    let pidf = state_dir().join("pids").join(format!("{name}.pid"));
    std::fs::read_to_string(&pidf)
        .unwrap_or_else(|e| panic!("pid file {}: {e}", pidf.display()))
        .trim()
        .to_string()
}

/// Sends `signal` (e.g. "TERM", "STOP", "CONT") to a process the scripts started.
pub fn signal(name: &str, signal: &str) {
    let pid = pid_of(name);
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{signal} {name} ({pid})");
}

/// Waits until the process `name` exited; returns how long that took, or
/// None when it is still alive after `timeout`.
pub fn wait_exit(name: &str, timeout: Duration) -> Option<Duration> {
    let pid = pid_of(name);
    let started = Instant::now();
    while started.elapsed() < timeout {
        if !alive(&pid) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// True while the process `name` runs.
pub fn running(name: &str) -> bool {
    alive(&pid_of(name))
}

/// Scrapes one counter or gauge (summed over its label sets) from a
/// service's `/metrics`.
pub fn metric(service: &str, name: &str) -> f64 {
    let ports = [
        "assembler",
        "enricher",
        "rater",
        "detector",
        "kpi",
        "sink",
        "ingest",
    ];
    let idx = ports.iter().position(|s| *s == service).expect("service");
    let base: u16 = std::env::var("CDR_METRICS_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9101);
    let out = Command::new("curl")
        .args([
            "-sf",
            &format!("http://127.0.0.1:{}/metrics", base + idx as u16),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn restart(service: &str) {
    script("services.sh", &[service]);
}

pub fn unique_run(tag: &str) -> String {
    format!("{tag}{}", cdr_kafka::now_ms())
}

/// Polls the report for a run until `calls` calls landed, then waits for the
/// dead letters too, and returns the settled report.
pub async fn wait_for(
    run: &str,
    calls: u64,
    dead: u64,
    timeout: Duration,
) -> cdrctl::report::Report {
    let client = clickhouse().client();
    let started = Instant::now();
    loop {
        if let Ok(r) = cdrctl::report::fetch(&client, run).await {
            if r.calls >= calls && r.dead_letters >= dead {
                // Let any redelivered copies land too before the caller asserts.
                tokio::time::sleep(Duration::from_secs(3)).await;
                return cdrctl::report::fetch(&client, run).await.expect("report");
            }
            if started.elapsed() > timeout {
                panic!("timed out after {timeout:?}: {} of {calls} calls, {} of {dead} dead letters\n{r}", r.calls, r.dead_letters);
            }
        } else if started.elapsed() > timeout {
            panic!("timed out: report query keeps failing");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
