//! Test harness for the end-to-end tests: brings the local stack and the
//! services up through the same scripts `make run` uses, and gives tests
//! handles on Kafka, ClickHouse and the service processes.

pub mod chttp;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
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

fn up() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        script("start.sh", &[]);
        script("services.sh", &[]);
    });
}

/// The shared broker, ClickHouse and services are up (see [`stack`]).
/// Tests share them and run in parallel: none freezes or restarts them; a
/// test that kills, restarts or reconfigures services, or points one at a
/// hung ClickHouse, does it to a [`Pipeline`] of its own.
pub struct Stack(());

/// Makes sure the stack and the shared services run.
pub fn stack() -> Stack {
    up();
    Stack(())
}

pub const SERVICES: [&str; 7] = [
    "assembler",
    "enricher",
    "rater",
    "detector",
    "kpi",
    "sink",
    "ingest",
];

/// A private copy of pipeline services for one test: its own topics (a
/// unique `topic_prefix`), so its own consumer groups and state topics, its
/// own processes (instance number `N`: pid files `svc-<service>-N`, metrics
/// ports `CDR_METRICS_BASE + 7(N-1) + index`), on the shared broker and
/// ClickHouse. A test kills, restarts and reconfigures these freely; other
/// tests never see it. Its services stop when it is dropped.
pub struct Pipeline {
    pub prefix: String,
    pub instance: usize,
    services: Vec<&'static str>,
}

impl Pipeline {
    /// Starts `services` (their topics first) under a fresh prefix.
    pub fn start(tag: &str, services: &[&'static str]) -> Pipeline {
        // Instances from 20 up: their metrics ports (9234 on) and ingest
        // ports (9199 on) stay clear of the shared stack's.
        static NEXT: AtomicUsize = AtomicUsize::new(20);
        let instance = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = Pipeline {
            prefix: format!("{tag}{}-{instance}.", cdr_kafka::now_ms()),
            instance,
            services: services.to_vec(),
        };
        // A leftover of an aborted earlier run must not stand in for ours.
        for s in services {
            p.stop(s);
        }
        let st = cdrctl_command()
            .arg("topics")
            .env("CDR_TOPIC_PREFIX", &p.prefix)
            .status()
            .expect("cdrctl topics");
        assert!(st.success(), "creating topics under {}", p.prefix);
        p.services_sh(services, "");
        for s in services {
            p.wait_ready(s);
        }
        p
    }

    /// Waits until `service` owns input partitions (it joined its group).
    pub fn wait_ready(&self, service: &str) {
        let gauge = format!("cdr_{service}_partitions_owned");
        let end = Instant::now() + Duration::from_secs(120);
        while self.metric(service, &gauge) < 1.0 {
            assert!(
                Instant::now() < end,
                "{} never joined its group (prefix {})",
                self.name(service),
                self.prefix
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn services_sh(&self, services: &[&str], env: &str) {
        let mut c = Command::new(repo().join("deploy/local/services.sh"));
        c.args(services)
            .env("CDR_TOPIC_PREFIX", &self.prefix)
            .env("CDR_INSTANCE", self.instance.to_string());
        for s in services {
            c.env(format!("CDR_ENV_{s}"), env);
        }
        assert!(c.status().expect("services.sh").success());
    }

    /// The process name of `service` in this pipeline (for [`signal`],
    /// [`running`], [`wait_exit`]).
    pub fn name(&self, service: &str) -> String {
        format!("svc-{service}-{}", self.instance)
    }

    /// Kafka settings that read and write this pipeline's topics.
    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            topic_prefix: self.prefix.clone(),
            ..KafkaConfig::default()
        }
    }

    /// The consumer group of `service` in this pipeline.
    pub fn group(&self, service: &str) -> String {
        self.kafka().group(service)
    }

    pub fn kill9(&self, service: &str) {
        kill9(&format!("{service}-{}", self.instance));
    }

    /// Starts `service` again (after a kill or exit).
    pub fn restart(&self, service: &str) {
        self.services_sh(&[service], "");
    }

    /// Kills `service` and starts it with extra config overrides
    /// (`K=V K2=V2`; empty: its normal configuration).
    pub fn restart_with(&self, service: &str, env: &str) {
        self.kill9(service);
        self.services_sh(&[service], env);
    }

    pub fn metric(&self, service: &str, name: &str) -> f64 {
        metric_at(service, self.instance, name)
    }

    fn stop(&self, service: &str) {
        let f = state_dir()
            .join("pids")
            .join(format!("{}.pid", self.name(service)));
        if let Ok(pid) = std::fs::read_to_string(&f) {
            let pid = pid.trim().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let end = Instant::now() + Duration::from_secs(30);
            while alive(&pid) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(100));
            }
            if alive(&pid) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            let _ = std::fs::remove_file(&f);
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for s in self.services.clone() {
            self.stop(s);
        }
    }
}

pub fn kafka() -> KafkaConfig {
    KafkaConfig::default()
}

/// The stack's ClickHouse as its admin (`cdr_admin`), unless the
/// environment names another login.
pub fn clickhouse() -> ClickHouseConfig {
    let mut c = ClickHouseConfig::default();
    if std::env::var_os("CDR_CLICKHOUSE_USER").is_none() {
        c.user = "cdr_admin".into();
    }
    if c.password.is_empty() && c.password_file.is_none() {
        c.password_file = Some(secrets_dir().join("cdr_admin.password"));
    }
    c
}

/// `target/release/cdrctl`, logging in to ClickHouse as [`clickhouse`]
/// does (the stack's admin unless the environment names another login).
pub fn cdrctl_command() -> Command {
    let mut c = Command::new(repo().join("target/release/cdrctl"));
    let ch = clickhouse();
    c.env("CDR_CLICKHOUSE_USER", &ch.user);
    if let Some(f) = &ch.password_file {
        c.env("CDR_CLICKHOUSE_PASSWORD_FILE", f);
    }
    c
}

/// Where deploy/local/start.sh keeps the generated ClickHouse passwords.
pub fn secrets_dir() -> PathBuf {
    std::env::var("CDR_SECRETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| state_dir().join("secrets"))
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

/// Fails fast, naming the way out, when a shared service's group does not
/// own all its input partitions: tansu was seen to keep stale members after
/// a stall (README, failure behaviour), and a benchmark would then time out
/// or measure half a pipeline. Waits for the first statistics (every 15 s).
pub fn assert_groups_whole() {
    for s in SERVICES.iter().filter(|s| **s != "ingest") {
        let (inputs, owned) = (
            format!("cdr_{s}_input_partitions"),
            format!("cdr_{s}_partitions_owned"),
        );
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let (n, o) = (metric(s, &inputs), metric(s, &owned));
            if n > 0.0 && o >= n {
                break;
            }
            assert!(
                Instant::now() < end,
                "{s} owns {o} of its {n} input partitions: its consumer group is \
                 wedged; restart the stack (deploy/local/stop.sh; rm -rf .state; make services)"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Bytes of the local broker's store (database and write-ahead log). tansu
/// slows as it grows (README, "Performance"), so benches print it.
pub fn broker_store_bytes() -> u64 {
    let dir = state_dir().join("data/tansu");
    ["tansu.db", "tansu.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Scrapes one counter or gauge (summed over its label sets) from a
/// service's `/metrics`.
pub fn metric(service: &str, name: &str) -> f64 {
    metric_at(service, 1, name)
}

/// The metrics port of a shared service's instance, as services.sh
/// assigns them.
fn metrics_port(service: &str, instance: usize) -> usize {
    let idx = SERVICES
        .iter()
        .position(|s| *s == service)
        .expect("service");
    let base: usize = std::env::var("CDR_METRICS_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9101);
    base + 7 * (instance - 1) + idx
}

/// `GET /healthz` of a shared service: (HTTP status, body).
pub fn healthz(service: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{}/healthz", metrics_port(service, 1)),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// [`metric`] of instance `instance` (ports as services.sh assigns them).
fn metric_at(service: &str, instance: usize, name: &str) -> f64 {
    let port = metrics_port(service, instance);
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
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

/// A copy of the local rater configuration in `dir` with the account added
/// and, optionally, every standard A–Z rate raised by `raise` per minute.
pub fn rater_config_with_account(
    dir: &Path,
    account: &str,
    raise: Option<rust_decimal::Decimal>,
) -> PathBuf {
    let data = repo().join("deploy/local/data");
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut accounts = std::fs::read_to_string(data.join("accounts.txt")).unwrap();
    accounts.push_str(&format!("{account};wholesale;standard;no;\n"));
    std::fs::write(dir.join("accounts.txt"), accounts).unwrap();
    if let Some(raise) = raise {
        let deck = std::fs::read_to_string(data.join("standard_az.txt")).unwrap();
        let fixed: Vec<String> = deck
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(';').collect();
                match f
                    .get(2)
                    .and_then(|r| rust_decimal::Decimal::from_str(r).ok())
                {
                    Some(rate) if !l.starts_with('#') => {
                        let mut f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
                        f[2] = (rate + raise).to_string();
                        f.join(";")
                    }
                    _ => l.to_string(),
                }
            })
            .collect();
        std::fs::write(dir.join("standard_az.txt"), fixed.join("\n") + "\n").unwrap();
    }
    let cfg = dir.join("rater.toml");
    std::fs::write(
        &cfg,
        format!(
            "accounts = {:?}\nuk_surcharges = {:?}\ndecks_dir = {:?}\n",
            dir.join("accounts.txt"),
            dir.join("uk_surcharges.txt"),
            dir,
        ),
    )
    .unwrap();
    cfg
}
