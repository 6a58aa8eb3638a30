//! Configuration loading: a TOML file (optional) overlaid with environment
//! variables, deserialised into the service's typed struct, which uses
//! `deny_unknown_fields` so a typo fails start-up instead of being ignored.
//!
//! Override syntax: `CDR__<SECTION>__<FIELD>=value` (double underscore after
//! `CDR` and between levels, case-insensitive), e.g.
//! `CDR__STAGE__KAFKA__BROKERS=10.0.0.5:9092` or
//! `CDR__STAGE__BATCH_MAX_RECORDS=5000`. The plain
//! variables `CDR_KAFKA_BROKERS`, `CDR_TOPIC_PREFIX` and `CDR_CLICKHOUSE_URL` only supply the
//! defaults for the stack addresses (the local stack scripts export them).
//! The field's type decides how a value is read ([`crate::lenient`]): `5000`
//! fills a number, and the same text fills a string field unchanged (a
//! password `123456`, a numeric group id). The loaded config is never logged
//! whole, so secrets stay out of logs.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// librdkafka properties that carry the delivery guarantees (no auto
/// commit, idempotent all-replica produce, start from the earliest record,
/// one group per service): `properties` may not set them; start-up refuses.
pub const PROTECTED_PROPERTIES: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.commit.enable",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "auto.offset.reset",
    "group.id",
    "bootstrap.servers",
    "metadata.broker.list",
    "transactional.id",
    "enable.partition.eof",
];

/// Whether a property's value is a secret (never printed).
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("oauthbearer.config")
        || k == "ssl.key.pem"
        || k == "ssl_key"
}

/// Connection settings shared by every service. `Debug` prints secret
/// properties (passwords, keys, OAuth secrets) as `***`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Consumer group id; defaults to `cdr-<service>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Extra librdkafka properties (e.g. `security.protocol`, SASL settings in production).
    /// Numbers and booleans are taken as their text, so
    /// `CDR__STAGE__KAFKA__PROPERTIES__fetch.wait.max.ms=5000` works.
    #[serde(default, deserialize_with = "property_map")]
    pub properties: std::collections::BTreeMap<String, String>,
    /// Consumer session timeout.
    #[serde(default = "default_session")]
    pub session_timeout_ms: u64,
    /// Wait this long before joining the consumer group. A predecessor
    /// killed without leaving the group (kill -9, OOM, node loss) must have
    /// expired first: tansu 0.6 never completes a rebalance that a new member
    /// starts while a dead member's session is still open. Set to 0 on
    /// Apache Kafka / Redpanda / MSK.
    #[serde(default = "default_join_delay")]
    pub join_delay_ms: u64,
    /// Prepended to every topic this process reads or writes and to its
    /// default consumer group (e.g. `staging.`): several pipelines share one
    /// cluster without seeing each other's records. Inside the services
    /// topics keep their plain names; only the Kafka edge adds and strips
    /// the prefix. Empty (the default) in production.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// TLS and SASL to the brokers (typed; see [`KafkaSecurity`]).
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Replication factor `cdrctl topics` creates topics with (1 for the
    /// local single broker; 3 in production).
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// `min.insync.replicas` for created topics (production: 2 with
    /// replication 3, so `acks=all` survives one broker down); default:
    /// the broker's.
    #[serde(default)]
    pub min_insync_replicas: Option<i32>,
    /// Partitions `cdrctl topics` gives every data topic (those of more
    /// than one partition; default: the counts in `cdr_model::topics::ALL`,
    /// 4). It bounds each service's parallelism: replicas beyond it idle.
    /// Control and dead-letter topics keep their single partition (total
    /// order), and each state topic gets its input's count, as the
    /// services write a partition's state to the same partition number.
    /// Fixed once topics exist: more partitions later re-key calls.
    #[serde(default)]
    pub partitions: Option<i32>,
}

fn default_replication() -> i32 {
    1
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "OAUTHBEARER")]
    OauthBearer,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// SASL credentials. The password comes from `password` (set it through
/// the environment, e.g. `CDR__STAGE__KAFKA__SECURITY__SASL__PASSWORD`) or
/// `password_file` (a mounted secret); never from argv, never logged.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// OAUTHBEARER: `sasl.oauthbearer.config` (e.g. `principal=…`); the
    /// OIDC token method needs librdkafka built with curl, which is not.
    #[serde(default)]
    pub oauthbearer_config: Option<String>,
}

/// TLS (system CA store by default, or a CA file; optional client
/// certificate) and SASL, as typed settings.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    #[serde(default)]
    pub protocol: SecurityProtocol,
    /// CA bundle (PEM) for the brokers' certificates; default: the system
    /// store.
    #[serde(default)]
    pub ca_location: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[serde(default)]
    pub certificate_location: Option<std::path::PathBuf>,
    #[serde(default)]
    pub key_location: Option<std::path::PathBuf>,
    #[serde(default)]
    pub key_password: Option<String>,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("ca_location", &self.ca_location)
            .field("certificate_location", &self.certificate_location)
            .field("key_location", &self.key_location)
            .field("key_password", &self.key_password.as_ref().map(|_| "***"))
            .field(
                "sasl",
                &self.sasl.as_ref().map(|s| {
                    (
                        s.mechanism,
                        s.username.clone(),
                        s.password.as_ref().map(|_| "***"),
                        s.password_file.clone(),
                    )
                }),
            )
            .finish()
    }
}

impl KafkaSecurity {
    /// The librdkafka properties of these settings; reads a password file.
    /// Errors name the setting.
    pub fn properties(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let p = self.protocol;
        let mut out = vec![("security.protocol", p.as_str().to_string())];
        let tls_set = self.ca_location.is_some()
            || self.certificate_location.is_some()
            || self.key_location.is_some();
        if !p.tls() && tls_set {
            bail!(
                "kafka.security: CA or client certificate set but protocol {} has no TLS",
                p.as_str()
            );
        }
        if p.tls() {
            match &self.ca_location {
                Some(ca) => {
                    anyhow::ensure!(
                        ca.is_file(),
                        "kafka.security.ca_location {}: no such file",
                        ca.display()
                    );
                    out.push(("ssl.ca.location", ca.display().to_string()));
                }
                // librdkafka finds the system store itself.
                None => out.push(("ssl.ca.location", "probe".into())),
            }
            match (&self.certificate_location, &self.key_location) {
                (Some(c), Some(k)) => {
                    for (what, f) in [("certificate_location", c), ("key_location", k)] {
                        anyhow::ensure!(
                            f.is_file(),
                            "kafka.security.{what} {}: no such file",
                            f.display()
                        );
                    }
                    out.push(("ssl.certificate.location", c.display().to_string()));
                    out.push(("ssl.key.location", k.display().to_string()));
                    if let Some(pw) = &self.key_password {
                        out.push(("ssl.key.password", pw.clone()));
                    }
                }
                (None, None) => {}
                _ => bail!("kafka.security: certificate_location and key_location go together"),
            }
        }
        match (p.sasl(), &self.sasl) {
            (true, None) => bail!(
                "kafka.security: protocol {} needs [kafka.security.sasl]",
                p.as_str()
            ),
            (false, Some(_)) => bail!(
                "kafka.security.sasl is set but protocol {} has no SASL",
                p.as_str()
            ),
            (false, None) => {}
            (true, Some(s)) => {
                out.push(("sasl.mechanism", s.mechanism.as_str().to_string()));
                match s.mechanism {
                    SaslMechanism::OauthBearer => {
                        if let Some(c) = &s.oauthbearer_config {
                            out.push(("sasl.oauthbearer.config", c.clone()));
                        }
                    }
                    _ => {
                        let user = s
                            .username
                            .as_deref()
                            .filter(|u| !u.is_empty())
                            .with_context(|| {
                                format!(
                                    "kafka.security.sasl.username is required for {}",
                                    s.mechanism.as_str()
                                )
                            })?;
                        let password = match (&s.password, &s.password_file) {
                            (Some(pw), None) => pw.clone(),
                            (None, Some(f)) => std::fs::read_to_string(f)
                                .with_context(|| format!("kafka.security.sasl.password_file {}", f.display()))?
                                .trim_end_matches(['\n', '\r'])
                                .to_string(),
                            (Some(_), Some(_)) => bail!("kafka.security.sasl: set password or password_file, not both"),
                            (None, None) => bail!("kafka.security.sasl.password (or password_file) is required for {}", s.mechanism.as_str()),
                        };
                        anyhow::ensure!(
                            !password.is_empty(),
                            "kafka.security.sasl: the password is empty"
                        );
                        out.push(("sasl.username", user.to_string()));
                        out.push(("sasl.password", password));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn default_topic_prefix() -> String {
    std::env::var("CDR_TOPIC_PREFIX").unwrap_or_default()
}

/// librdkafka properties are all text; the environment overlay types
/// numbers and booleans, so they are turned back into text here.
fn property_map<'de, D>(d: D) -> Result<std::collections::BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw: std::collections::BTreeMap<String, serde_json::Value> = Deserialize::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "kafka.properties.{k} must be a string, number or boolean, got {other}"
            ))),
        })
        .collect()
}

fn default_session() -> u64 {
    6000
}

fn default_join_delay() -> u64 {
    default_session() + 1500
}

fn default_brokers() -> String {
    std::env::var("CDR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            group_id: None,
            properties: Default::default(),
            session_timeout_ms: default_session(),
            join_delay_ms: default_join_delay(),
            topic_prefix: default_topic_prefix(),
            security: KafkaSecurity::default(),
            replication_factor: default_replication(),
            min_insync_replicas: None,
            partitions: None,
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: std::collections::BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("properties", &props)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("join_delay_ms", &self.join_delay_ms)
            .field("topic_prefix", &self.topic_prefix)
            .field("security", &self.security)
            .field("replication_factor", &self.replication_factor)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl KafkaConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        for k in self.properties.keys() {
            let key = k.trim().to_ascii_lowercase();
            if PROTECTED_PROPERTIES.contains(&key.as_str()) {
                bail!(
                    "kafka.properties.{k}: set by the pipeline for its delivery guarantees and never overridable (use kafka.brokers / kafka.group_id for the address and group)"
                );
            }
        }
        if self.brokers.trim().is_empty() {
            bail!("kafka.brokers must not be empty");
        }
        for b in self.brokers.split(',') {
            if !b.contains(':') {
                bail!("kafka.brokers entry `{b}` must be host:port");
            }
        }
        self.security.properties()?;
        if self.replication_factor < 1 {
            bail!("kafka.replication_factor must be at least 1");
        }
        if let Some(m) = self.min_insync_replicas {
            if m < 1 || m > self.replication_factor {
                bail!("kafka.min_insync_replicas must be between 1 and replication_factor");
            }
        }
        if let Some(p) = self.partitions {
            if !(1..=10_000).contains(&p) {
                bail!("kafka.partitions must be between 1 and 10000, got {p}");
            }
        }
        if self.session_timeout_ms < 1000 {
            bail!("kafka.session_timeout_ms must be at least 1000");
        }
        // Kafka's legal topic characters, and short enough that every
        // prefixed name stays under Kafka's 249-character limit.
        if self.topic_prefix.len() > 64
            || !self
                .topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            bail!(
                "kafka.topic_prefix `{}` must be at most 64 characters of [A-Za-z0-9._-]",
                self.topic_prefix
            );
        }
        Ok(())
    }

    /// The client configuration every Kafka client of the pipeline starts
    /// from: brokers, client id, `properties`, then the typed security
    /// settings.
    pub fn client_config(&self, client_id: &str) -> anyhow::Result<rdkafka::ClientConfig> {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        for (k, v) in self.security.properties()? {
            c.set(k, v);
        }
        Ok(c)
    }

    /// The name of topic `name` on the cluster.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// The consumer group of `service` unless one is configured.
    pub fn group(&self, service: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("{}cdr-{service}", self.topic_prefix))
    }
}

/// The section every service shares (`[stage]`): how it talks to Kafka,
/// where it serves `/metrics`, how it batches and what input it refuses.
/// Fields left out take the service's own defaults ([`StageDefaults`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// `/metrics` and `/healthz` listen address.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Records per batch at most.
    #[serde(default)]
    pub batch_max_records: Option<usize>,
    /// How long a batch waits for more records after its first one.
    #[serde(default)]
    pub batch_linger_ms: Option<u64>,
    /// Input records larger than this are dead-lettered (`oversized`)
    /// without being parsed.
    #[serde(default)]
    pub max_input_bytes: Option<usize>,
    /// How often a stage that controls its own commit point commits.
    #[serde(default)]
    pub commit_interval_ms: Option<u64>,
}

/// A service's defaults for [`StageConfig`].
#[derive(Debug, Clone, Copy)]
pub struct StageDefaults {
    pub metrics_port: u16,
    pub batch_max_records: usize,
    pub batch_linger_ms: u64,
}

impl StageDefaults {
    pub const fn new(metrics_port: u16) -> Self {
        StageDefaults {
            metrics_port,
            batch_max_records: 2000,
            batch_linger_ms: 50,
        }
    }
}

/// Default `max_input_bytes`: ten times any switch record seen in the field
/// (a FreeSWITCH JSON CDR with every variable is ~50 kB), and half of a
/// producer's default 1 MB message limit.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 512 * 1024;

/// [`StageConfig`] with every default applied and validated.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub kafka: KafkaConfig,
    pub metrics_listen: SocketAddr,
    pub batch_max_records: usize,
    pub batch_linger: std::time::Duration,
    pub max_input_bytes: usize,
    pub commit_interval: std::time::Duration,
}

impl StageConfig {
    pub fn resolve(&self, d: StageDefaults) -> anyhow::Result<StageSettings> {
        self.kafka.validate()?;
        let s = StageSettings {
            kafka: self.kafka.clone(),
            metrics_listen: self
                .metrics_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], d.metrics_port))),
            batch_max_records: self.batch_max_records.unwrap_or(d.batch_max_records),
            batch_linger: std::time::Duration::from_millis(
                self.batch_linger_ms.unwrap_or(d.batch_linger_ms),
            ),
            max_input_bytes: self.max_input_bytes.unwrap_or(DEFAULT_MAX_INPUT_BYTES),
            commit_interval: std::time::Duration::from_millis(
                self.commit_interval_ms.unwrap_or(1000),
            ),
        };
        if s.batch_max_records == 0 {
            bail!("stage.batch_max_records must be positive");
        }
        if s.max_input_bytes < 1024 {
            bail!("stage.max_input_bytes must be at least 1024");
        }
        if s.commit_interval.is_zero() {
            bail!("stage.commit_interval_ms must be positive");
        }
        Ok(s)
    }
}

/// Loads `T` from an optional TOML file plus `CDR_`-prefixed environment overrides.
pub fn load_config<T: DeserializeOwned>(path: Option<&Path>) -> anyhow::Result<T> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_config_from(path, &vars)
}

pub fn load_config_from<T: DeserializeOwned>(
    path: Option<&Path>,
    env: &[(String, String)],
) -> anyhow::Result<T> {
    let mut root = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            let v: toml::Value =
                toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?;
            serde_json::to_value(v).context("config to json")?
        }
        None => serde_json::Value::Object(Default::default()),
    };
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("CDR__") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        // Typed only when the text is the value's own spelling, so the
        // way back to text (a string field) gives the same characters:
        // `123456` is a number that reads back as "123456"; `1.50`, `1e5`
        // or `0123` stay text.
        let value = serde_json::from_str::<serde_json::Value>(v)
            .ok()
            .filter(|j| (j.is_number() || j.is_boolean()) && j.to_string().as_str() == v.as_str())
            .unwrap_or_else(|| serde_json::Value::String(v.clone()));
        set_path(&mut root, &path, value);
    }
    T::deserialize(crate::lenient::Lenient(root))
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

fn set_path(root: &mut serde_json::Value, path: &[String], value: serde_json::Value) {
    let mut cur = root;
    for (i, seg) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = serde_json::Value::Object(Default::default());
        }
        let obj = cur.as_object_mut().expect("object");
        if i + 1 == path.len() {
            obj.insert(seg.clone(), value);
            return;
        }
        cur = obj
            .entry(seg.clone())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Svc {
        #[serde(default)]
        kafka: KafkaConfig,
        batch_rows: u32,
    }

    #[test]
    fn stage_section_takes_service_defaults_and_validates() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct S {
            #[serde(default)]
            stage: StageConfig,
        }
        let d = StageDefaults::new(9199);
        let c: S = load_config_from(None, &[]).unwrap();
        let r = c.stage.resolve(d).unwrap();
        assert_eq!(r.metrics_listen.port(), 9199);
        assert_eq!(r.batch_max_records, 2000);
        let env = vec![
            ("CDR__STAGE__BATCH_MAX_RECORDS".to_string(), "7".to_string()),
            ("CDR__STAGE__KAFKA__BROKERS".to_string(), "k:1".to_string()),
        ];
        let c: S = load_config_from(None, &env).unwrap();
        let r = c.stage.resolve(d).unwrap();
        assert_eq!((r.batch_max_records, r.kafka.brokers.as_str()), (7, "k:1"));
        let env = vec![("CDR__STAGE__BATCH_MAX_RECORDS".to_string(), "0".to_string())];
        let c: S = load_config_from(None, &env).unwrap();
        assert!(c.stage.resolve(d).is_err());
        let env = vec![("CDR__STAGE__BATCH_ROWS".to_string(), "1".to_string())];
        assert!(load_config_from::<S>(None, &env).is_err(), "unknown field");
        // librdkafka properties from the environment, numeric or not.
        let env = vec![
            (
                "CDR__STAGE__KAFKA__PROPERTIES__fetch.wait.max.ms".to_string(),
                "5000".to_string(),
            ),
            (
                "CDR__STAGE__KAFKA__PROPERTIES__security.protocol".to_string(),
                "SASL_SSL".to_string(),
            ),
        ];
        let c: S = load_config_from(None, &env).unwrap();
        assert_eq!(c.stage.kafka.properties["fetch.wait.max.ms"], "5000");
        assert_eq!(c.stage.kafka.properties["security.protocol"], "SASL_SSL");
    }

    /// Issue 15: properties never weaken delivery; secrets never print.
    #[test]
    fn delivery_settings_cannot_be_overridden_and_secrets_are_hidden() {
        for key in [
            "enable.auto.commit",
            "acks",
            " Enable.Idempotence",
            "auto.offset.reset",
        ] {
            let mut k = KafkaConfig::default();
            k.properties.insert(key.into(), "x".into());
            let e = k.validate().unwrap_err().to_string();
            assert!(e.contains("never overridable"), "{key}: {e}");
        }
        let mut k = KafkaConfig::default();
        for (p, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "rater"),
            ("sasl.password", "hunter2"),
            ("sasl.oauthbearer.config", "clientSecret=s3cr3t"),
            ("fetch.wait.max.ms", "100"),
        ] {
            k.properties.insert(p.into(), v.into());
        }
        k.validate().unwrap();
        let shown = format!("{k:?}");
        assert!(
            shown.contains("SCRAM-SHA-512") && shown.contains("rater"),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn topic_prefix_names_topics_and_the_default_group_and_is_validated() {
        let mut k = KafkaConfig {
            topic_prefix: "t7.".into(),
            ..KafkaConfig::default()
        };
        k.validate().unwrap();
        assert_eq!(k.topic("cdrs.rated"), "t7.cdrs.rated");
        assert_eq!(k.group("rater"), "t7.cdr-rater");
        k.group_id = Some("mine".into());
        assert_eq!(k.group("rater"), "mine", "an explicit group wins");
        for bad in ["a b", "x/y", &"p".repeat(65)] {
            k.topic_prefix = bad.to_string();
            let e = k.validate().unwrap_err().to_string();
            assert!(e.contains("topic_prefix"), "{bad}: {e}");
        }
    }

    #[test]
    fn env_overrides_file_and_unknown_fields_fail() {
        let dir = std::env::temp_dir().join(format!("cdrcfg{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, "batch_rows = 10\n[kafka]\nbrokers = \"a:1\"\n").unwrap();
        let env = vec![
            ("CDR__KAFKA__BROKERS".to_string(), "b:2".to_string()),
            ("CDR_KAFKA_BROKERS".into(), "ignored:1".into()),
        ];
        let c: Svc = load_config_from(Some(&p), &env).unwrap();
        assert_eq!(c.kafka.brokers, "b:2");
        assert_eq!(c.batch_rows, 10);
        let env = vec![("CDR__BATCH_ROWS".to_string(), "25".to_string())];
        assert_eq!(
            load_config_from::<Svc>(Some(&p), &env).unwrap().batch_rows,
            25
        );
        let env = vec![("CDR__BATCH_ROWS".to_string(), "lots".to_string())];
        assert!(load_config_from::<Svc>(Some(&p), &env).is_err());
        let env = vec![("CDR__TYPO".to_string(), "1".to_string())];
        let err = load_config_from::<Svc>(Some(&p), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("typo"), "{err}");
    }

    /// Issue 15: text stays text where the configuration wants text.
    #[test]
    fn numeric_looking_secrets_and_group_ids_stay_strings() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct S {
            #[serde(default)]
            kafka: KafkaConfig,
            secret: String,
            batch_rows: u32,
        }
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        for pw in [
            "123456",
            "1.50",
            "1e5",
            "0123",
            "true",
            "12345678901234567890123",
        ] {
            let c: S = load_config_from(
                None,
                &env(&[
                    ("CDR__SECRET", pw),
                    ("CDR__KAFKA__GROUP_ID", "42"),
                    ("CDR__BATCH_ROWS", "25"),
                ]),
            )
            .unwrap();
            assert_eq!(c.secret, pw);
            assert_eq!(c.kafka.group_id.as_deref(), Some("42"));
            assert_eq!(c.batch_rows, 25);
        }
    }
}
