//! The ClickHouse edge shared by the sink, `cdrctl` and the end-to-end tests:
//! connection settings, the ordered migrations from `schemas/clickhouse/`,
//! and the row types (with their conversion from pipeline records).

pub mod migrate;
pub mod rows;

use serde::{Deserialize, Serialize};

/// Connection settings. The password is never printed (see `Debug`).
/// A field left out takes [`ClickHouseConfig::default`]'s value, so a
/// section given in part (a URL override, say) keeps the password from
/// `CDR_CLICKHOUSE_PASSWORD`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    pub url: String,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("database", &self.database)
            .finish()
    }
}

fn default_url() -> String {
    std::env::var("CDR_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_string())
}
fn default_user() -> String {
    std::env::var("CDR_CLICKHOUSE_USER").unwrap_or_else(|_| "default".to_string())
}
fn default_db() -> String {
    "cdr".to_string()
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: default_url(),
            user: default_user(),
            password: std::env::var("CDR_CLICKHOUSE_PASSWORD").unwrap_or_default(),
            database: default_db(),
        }
    }
}

impl ClickHouseConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.url.starts_with("http://") || self.url.starts_with("https://"),
            "clickhouse.url must be an http(s) URL, got `{}`",
            self.url
        );
        anyhow::ensure!(
            !self.database.is_empty(),
            "clickhouse.database must not be empty"
        );
        Ok(())
    }

    /// Client bound to the configured database.
    pub fn client(&self) -> clickhouse::Client {
        self.server_client().with_database(&self.database)
    }

    /// Client without a default database (for DDL that creates it).
    pub fn server_client(&self) -> clickhouse::Client {
        let mut c = clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user);
        if !self.password.is_empty() {
            c = c.with_password(&self.password);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: a partly overridden section never drops the password.
    #[test]
    fn a_partial_section_keeps_the_password_default() {
        std::env::set_var("CDR_CLICKHOUSE_PASSWORD", "from-env");
        let c: ClickHouseConfig =
            serde_json::from_value(serde_json::json!({"url": "http://h:8123"})).unwrap();
        std::env::remove_var("CDR_CLICKHOUSE_PASSWORD");
        assert_eq!(c.url, "http://h:8123");
        assert_eq!(c.password, "from-env");
        assert_eq!(c.database, "cdr");
        assert!(!format!("{c:?}").contains("from-env"));
    }
}
