//! Configuration loading: a TOML file (optional) overlaid with environment
//! variables, deserialised into the service's typed struct, which uses
//! `deny_unknown_fields` so a typo fails start-up instead of being ignored.
//!
//! Override syntax: `CDR__<SECTION>__<FIELD>=value` (double underscore after
//! `CDR` and between levels, case-insensitive), e.g.
//! `CDR__KAFKA__BROKERS=10.0.0.5:9092` or `CDR__BATCH_ROWS=5000`. The plain
//! variables `CDR_KAFKA_BROKERS` and `CDR_CLICKHOUSE_URL` only supply the
//! defaults for the stack addresses (the local stack scripts export them). Values
//! that parse as JSON numbers/booleans are typed accordingly; anything else is
//! a string. The loaded config is never logged whole, so secrets stay out of logs.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Connection settings shared by every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Consumer group id; defaults to `cdr-<service>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Extra librdkafka properties (e.g. `security.protocol`, SASL settings in production).
    #[serde(default)]
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
        }
    }
}

impl KafkaConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.brokers.trim().is_empty() {
            bail!("kafka.brokers must not be empty");
        }
        for b in self.brokers.split(',') {
            if !b.contains(':') {
                bail!("kafka.brokers entry `{b}` must be host:port");
            }
        }
        if self.session_timeout_ms < 1000 {
            bail!("kafka.session_timeout_ms must be at least 1000");
        }
        Ok(())
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
        let value = serde_json::from_str::<serde_json::Value>(v)
            .ok()
            .filter(|j| j.is_number() || j.is_boolean())
            .unwrap_or_else(|| serde_json::Value::String(v.clone()));
        set_path(&mut root, &path, value);
    }
    serde_json::from_value(root).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
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
}
