//! The ingest endpoint over HTTPS (issue 13, optional TLS): a client that
//! trusts the configured certificate gets answers; plain HTTP to the TLS
//! port gets none; a bad key file stops start-up with an error naming it.
//! No broker is needed: `/healthz` and a refused request never produce.

use std::sync::Arc;
use std::time::Duration;

use ingest::config::{Config, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn self_signed(dir: &std::path::Path) -> (TlsConfig, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    let cert = dir.join("ingest.crt");
    let key = dir.join("ingest.key");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (
        TlsConfig {
            cert_file: cert,
            key_file: key,
        },
        cert_pem.into_bytes(),
    )
}

fn config(port: u16, tls: TlsConfig) -> Config {
    let mut c: Config = toml::from_str(
        r#"
        default_switch = "fs-1"
        [[switches]]
        switch_id = "fs-1"
        "#,
    )
    .unwrap();
    c.http.listen = format!("127.0.0.1:{port}").parse().unwrap();
    c.http.tls = Some(tls);
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn https_get(port: u16, ca_pem: &[u8], request: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_https_with_the_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("ingest-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tls, ca) = self_signed(&dir);
    let port = free_port();
    let cfg = Arc::new(config(port, tls));
    cfg.validate().expect("valid TLS config");
    let registry = prometheus::Registry::new();
    let metrics = ingest::metrics::IngestMetrics::new(&registry);
    // Never contacted: no request below reaches the broker.
    let producer =
        cdr_kafka::runtime::producer(&cdr_kafka::KafkaConfig::default(), "tls-test").unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = ingest::http::start(cfg, producer, metrics, shutdown.clone())
        .await
        .unwrap();

    let ok = https_get(
        port,
        &ca,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with("ok\n"), "{ok}");
    // Routing and validation are the same as over plain HTTP.
    let bad = https_get(
        port,
        &ca,
        "POST /v1/events/nonsense HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("200 OK"),
        "plain HTTP must not be served"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops on shutdown")
        .unwrap();
}

#[test]
fn a_bad_key_file_stops_start_up_and_names_the_file() {
    let dir = std::env::temp_dir().join(format!("ingest-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut tls, _) = self_signed(&dir);
    let wrong = dir.join("not-a-key.pem");
    std::fs::write(&wrong, "-----BEGIN NOTHING-----\n-----END NOTHING-----\n").unwrap();
    tls.key_file = wrong.clone();
    let e = config(free_port(), tls).validate().unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("http.tls.key_file"), "{msg}");
    assert!(msg.contains("not-a-key.pem"), "{msg}");
}
