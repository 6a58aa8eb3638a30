//! The ClickHouse edge shared by the sink, `cdrctl` and the end-to-end tests:
//! connection settings, the ordered migrations from `schemas/clickhouse/`,
//! and the row types (with their conversion from pipeline records).

pub mod cluster;
pub mod migrate;
pub mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

/// The certificates of a PEM file.
fn load_ca(p: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(p)
        .map_err(|e| anyhow::anyhow!("clickhouse.ca_cert {}: {e}", p.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("clickhouse.ca_cert {}: {e}", p.display()))
}

/// Connection settings. The password is never printed (see `Debug`).
/// A field left out takes [`ClickHouseConfig::default`]'s value, so a
/// section given in part (a URL override, say) keeps the password from
/// `CDR_CLICKHOUSE_PASSWORD`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// `http://…` or `https://…` (TLS by rustls).
    pub url: String,
    pub user: String,
    pub password: String,
    /// A file holding the password (a mounted secret; trailing newline
    /// ignored), used when `password` is empty. Default:
    /// `CDR_CLICKHOUSE_PASSWORD_FILE`. Checked at start-up.
    pub password_file: Option<PathBuf>,
    pub database: String,
    /// PEM file of the CA(s) that sign the server's certificate (a private
    /// CA); default: Mozilla's root store (ClickHouse Cloud and public CAs).
    pub ca_cert: Option<PathBuf>,
    /// Bound on establishing a connection (TCP and TLS).
    pub connect_timeout_ms: u64,
    /// Bound on one query on the server (`max_execution_time`); 0 = none.
    pub request_timeout_ms: u64,
    /// A ClickHouse cluster (`remote_servers` name): `cdrctl migrate` then
    /// creates every table `ON CLUSTER` as a replicated `<table>_local`
    /// plus a `Distributed` table under the plain name (see [`cluster`]).
    /// Unset (the default): one node, the SQL as written.
    pub cluster: Option<String>,
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
            .field("password_file", &self.password_file)
            .field("database", &self.database)
            .field("ca_cert", &self.ca_cert)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("cluster", &self.cluster)
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
            password_file: std::env::var_os("CDR_CLICKHOUSE_PASSWORD_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            database: default_db(),
            ca_cert: None,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 0,
            cluster: None,
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
        anyhow::ensure!(
            self.connect_timeout_ms > 0,
            "clickhouse.connect_timeout_ms must be positive"
        );
        if self.password.is_empty() {
            if let Some(p) = &self.password_file {
                read_password(p)?;
            }
        }
        if let Some(c) = &self.cluster {
            cluster::check_cluster_name(c)
                .map_err(|e| anyhow::anyhow!("clickhouse.cluster: {e}"))?;
        }
        if let Some(p) = &self.ca_cert {
            let n = load_ca(p)?.len();
            anyhow::ensure!(n > 0, "clickhouse.ca_cert {}: no certificate", p.display());
        }
        Ok(())
    }

    /// Client bound to the configured database.
    pub fn client(&self) -> clickhouse::Client {
        self.server_client().with_database(&self.database)
    }

    /// Client without a default database (for DDL that creates it).
    /// `https://` URLs go through rustls with [`ClickHouseConfig::ca_cert`]
    /// (validated at start-up; a file unreadable later leaves no trusted
    /// root, so connections fail rather than trust anything).
    pub fn server_client(&self) -> clickhouse::Client {
        let mut http = HttpConnector::new();
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.set_connect_timeout(Some(Duration::from_millis(self.connect_timeout_ms)));
        http.enforce_http(false);
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_cert {
            Some(p) => match load_ca(p) {
                Ok(certs) => {
                    roots.add_parsable_certificates(certs);
                }
                Err(e) => {
                    tracing::error!(error = %e, "clickhouse.ca_cert unusable: no TLS root trusted")
                }
            },
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let hyper = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector);
        let mut c = clickhouse::Client::with_http_client(hyper)
            .with_url(&self.url)
            .with_user(&self.user);
        if self.request_timeout_ms > 0 {
            c = c.with_setting(
                "max_execution_time",
                self.request_timeout_ms.div_ceil(1000).to_string(),
            );
        }
        if !self.password.is_empty() {
            c = c.with_password(&self.password);
        } else if let Some(p) = &self.password_file {
            // Validated at start-up; a file gone since then leaves the
            // client without a password, so the server refuses it.
            if let Ok(pw) = read_password(p) {
                c = c.with_password(pw);
            }
        }
        c
    }
}

/// The password in a secret file, without its trailing newline.
fn read_password(p: &Path) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(p)
        .map_err(|e| anyhow::anyhow!("clickhouse.password_file {}: {e}", p.display()))?;
    let pw = s.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(
        !pw.is_empty(),
        "clickhouse.password_file {}: empty",
        p.display()
    );
    Ok(pw)
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

    #[test]
    fn the_password_file_is_checked_and_read_without_its_newline() {
        let dir = std::env::temp_dir().join(format!("chpw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(read_password(&f).unwrap(), "s3cret");
        let c = ClickHouseConfig {
            url: "http://h:8123".into(),
            password: String::new(),
            password_file: Some(f.clone()),
            ..Default::default()
        };
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::write(&f, "\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("empty"));
        let gone = ClickHouseConfig {
            password_file: Some(dir.join("missing")),
            ..c
        };
        assert!(gone.validate().unwrap_err().to_string().contains("missing"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
