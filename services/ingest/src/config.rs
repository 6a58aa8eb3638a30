//! The ingest service's configuration: the shared `[stage]` section, the
//! HTTP endpoint (`[http]`, its auth read from the environment), and one
//! adapter configuration per switch (`[[switches]]`, see the
//! switch-adapters README for every field).
//!
//! ```toml
//! default_switch = "fs-nyc-1"
//! [http]
//! listen = "127.0.0.1:9180"
//! max_body_bytes = 1048576
//! auth = { kind = "bearer", token_env = "CDR_INGEST_TOKEN" }
//! # optional: serve HTTPS (PEM files; the key file stays out of the config)
//! # tls = { cert_file = "/etc/cdr/ingest.crt", key_file = "/etc/cdr/ingest.key" }
//! [[switches]]
//! switch_id = "fs-nyc-1"
//! accounts = { default_account = "acc-1001" }
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;

use cdr_kafka::{StageConfig, StageDefaults};
use serde::Deserialize;
use switch_adapters::AdapterConfig;

/// The ingest service's `[stage]` defaults (metrics on :9107).
pub const STAGE_DEFAULTS: StageDefaults = StageDefaults::new(9107);

/// The raw topics the adapter stage reads by default: one per vendor.
pub const RAW_TOPICS: [&str; 4] = [
    cdr_model::topics::RAW_FREESWITCH,
    cdr_model::topics::RAW_OPENSIPS,
    cdr_model::topics::RAW_ASTERISK,
    cdr_model::topics::RAW_KAMAILIO,
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka, metrics address, batching (shared by every service).
    #[serde(default)]
    pub stage: StageConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// One adapter configuration per switch, named by its `switch_id`.
    pub switches: Vec<AdapterConfig>,
    /// The switch a payload belongs to when it names none (no `switch`
    /// query parameter, `X-Switch-Id` header or `switch-id` Kafka header).
    /// Unset: such payloads are refused.
    #[serde(default)]
    pub default_switch: Option<String>,
    /// Raw topics the adapter stage consumes. A switch that cannot set a
    /// `switch-id` Kafka header (OpenSIPS event_kafka, Kamailio kafka)
    /// publishes to a topic of its own, `raw.<vendor>.<anything>`, listed
    /// here and named in `topic_switches`.
    #[serde(default = "default_raw_topics")]
    pub raw_topics: Vec<String>,
    /// Raw topic → the switch whose records it carries (used when a record
    /// has no `switch-id` header).
    #[serde(default)]
    pub topic_switches: std::collections::BTreeMap<String, String>,
}

fn default_raw_topics() -> Vec<String> {
    RAW_TOPICS.iter().map(|t| t.to_string()).collect()
}

/// `[http]`: where switches POST, how big a body may be, who may.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address; `enabled = false` runs the adapter stage alone.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Larger bodies get 413 (a FreeSWITCH JSON CDR with every variable is
    /// ~50 kB; a batch of CSV rows is bounded the same way).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long a request waits for the broker's acknowledgement before
    /// answering 503 (the switch keeps the record and retries).
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_ms: u64,
    #[serde(default)]
    pub auth: Auth,
    /// Serve HTTPS with this certificate; absent: plain HTTP (terminate
    /// TLS in front, or on a trusted network only).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// PEM certificate chain and private key for the HTTPS endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            enabled: true,
            max_body_bytes: default_max_body(),
            ack_timeout_ms: default_ack_timeout(),
            auth: Auth::default(),
            tls: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9180))
}
fn yes() -> bool {
    true
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_ack_timeout() -> u64 {
    10_000
}

/// Who may POST. Secrets come from the environment variable named here,
/// never from the file, argv or logs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// No authentication (loopback / trusted network only).
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer { token_env: String },
    /// `Authorization: Basic …` (FreeSWITCH's `cred` parameter).
    Basic { user: String, password_env: String },
}

/// The resolved credential a request must present.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        f.write_str(match self {
            Credential::None => "None",
            Credential::Bearer(_) => "Bearer(***)",
            Credential::Basic { .. } => "Basic(***)",
        })
    }
}

fn secret(var: &str, what: &str) -> anyhow::Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => anyhow::bail!("http.auth: {what} environment variable `{var}` is not set"),
    }
}

impl Auth {
    pub fn resolve(&self) -> anyhow::Result<Credential> {
        Ok(match self {
            Auth::None => Credential::None,
            Auth::Bearer { token_env } => Credential::Bearer(secret(token_env, "token")?),
            Auth::Basic { user, password_env } => {
                anyhow::ensure!(!user.is_empty(), "http.auth.user is empty");
                Credential::Basic {
                    user: user.clone(),
                    password: secret(password_env, "password")?,
                }
            }
        })
    }
}

impl Config {
    /// Start-up checks: every problem names its field.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.stage.resolve(STAGE_DEFAULTS)?;
        anyhow::ensure!(
            !self.switches.is_empty(),
            "switches: at least one [[switches]] entry is needed"
        );
        let mut ids = BTreeSet::new();
        for (i, s) in self.switches.iter().enumerate() {
            anyhow::ensure!(
                !s.switch_id.trim().is_empty(),
                "switches[{i}].switch_id is empty"
            );
            anyhow::ensure!(
                ids.insert(s.switch_id.as_str()),
                "switches[{i}].switch_id `{}` is listed twice",
                s.switch_id
            );
        }
        if let Some(d) = &self.default_switch {
            anyhow::ensure!(
                ids.contains(d.as_str()),
                "default_switch `{d}` is not one of switches[].switch_id"
            );
        }
        anyhow::ensure!(
            !self.raw_topics.is_empty(),
            "raw_topics: at least one topic"
        );
        for t in &self.raw_topics {
            anyhow::ensure!(
                RAW_TOPICS
                    .iter()
                    .any(|v| t == v || t.starts_with(&format!("{v}."))),
                "raw_topics: `{t}` is not raw.<freeswitch|opensips|asterisk|kamailio>[.<name>]"
            );
        }
        for (t, sw) in &self.topic_switches {
            anyhow::ensure!(
                self.raw_topics.contains(t),
                "topic_switches: `{t}` is not one of raw_topics"
            );
            anyhow::ensure!(
                ids.contains(sw.as_str()),
                "topic_switches.`{t}`: switch `{sw}` is not one of switches[].switch_id"
            );
        }
        anyhow::ensure!(
            self.http.max_body_bytes >= 1024,
            "http.max_body_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.http.ack_timeout_ms > 0,
            "http.ack_timeout_ms must be positive"
        );
        if self.http.enabled {
            self.http.auth.resolve()?;
            if let Some(t) = &self.http.tls {
                // Read and parsed now: a bad certificate stops start-up.
                crate::tls::acceptor(t)?;
            }
        }
        Ok(())
    }

    /// The adapter configuration of `switch` (or of the default switch).
    pub fn switch(&self, switch: Option<&str>) -> Result<&AdapterConfig, SwitchError> {
        let id = switch
            .or(self.default_switch.as_deref())
            .ok_or(SwitchError::Unnamed)?;
        self.switches
            .iter()
            .find(|s| s.switch_id == id)
            .ok_or_else(|| SwitchError::Unknown(id.chars().take(64).collect()))
    }
}

/// A payload whose switch is not configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error("no switch named (switch query parameter, X-Switch-Id or switch-id header) and no default_switch")]
    Unnamed,
    #[error("switch `{0}` is not configured")]
    Unknown(String),
}
