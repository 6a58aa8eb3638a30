//! ClickHouse over HTTPS (issue 15): the real ClickHouse behind a local
//! TLS-terminating proxy whose certificate a private CA signed (here the
//! certificate itself, self-signed). The client trusts it only with
//! `clickhouse.ca_cert`; with the default (Mozilla's roots) the handshake
//! is refused; `request_timeout_ms` bounds a query on the server.
//!
//! What this does not exercise: a real ClickHouse `https_port` (the local
//! clickhouse-local server speaks HTTP only) and client certificates.

use std::time::Duration;

use cdr_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_over_https_with_a_private_ca() {
    cdr_e2e::chttp::ensure_clickhouse();
    let dir = std::env::temp_dir().join(format!("ch-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let acceptor = ingest::tls::acceptor(&ingest::config::TlsConfig {
        cert_file: cert.clone(),
        key_file: key,
    })
    .unwrap();
    let upstream = clickhouse()
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ch) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut ch).await;
            });
        }
    });

    let trusted = cdr_clickhouse::ClickHouseConfig {
        url: format!("https://localhost:{port}"),
        ca_cert: Some(cert.clone()),
        ..clickhouse()
    };
    trusted.validate().unwrap();
    let one: u8 = trusted
        .client()
        .query("SELECT 1")
        .fetch_one()
        .await
        .expect("a query over HTTPS with the private CA");
    assert_eq!(one, 1);
    let n: u64 = trusted
        .client()
        .query("SELECT count() FROM system.tables WHERE database = 'cdr'")
        .fetch_one()
        .await
        .unwrap();
    assert!(n > 0);

    // The default roots do not know the private CA: refused.
    let untrusted = cdr_clickhouse::ClickHouseConfig {
        ca_cert: None,
        ..trusted.clone()
    };
    let e = untrusted
        .client()
        .query("SELECT 1")
        .fetch_one::<u8>()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("network"),
        "{e}"
    );

    // A CA file without a certificate is refused at start-up.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let bad = cdr_clickhouse::ClickHouseConfig {
        ca_cert: Some(empty),
        ..trusted.clone()
    };
    assert!(bad.validate().is_err());

    // The request timeout bounds a query on the server.
    let bounded = cdr_clickhouse::ClickHouseConfig {
        request_timeout_ms: 1_000,
        ..trusted.clone()
    };
    let started = std::time::Instant::now();
    let slow = bounded
        .client()
        .query("SELECT sum(sleepEachRow(0.5)) FROM numbers(20) SETTINGS max_block_size = 1")
        .fetch_one::<u64>()
        .await;
    assert!(slow.is_err(), "a 10 s query under a 1 s bound");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
