//! HttpDip against a local loopback HTTP server: ok, garbage, 5xx retry, slow, down, concurrency.
mod common;

use std::time::{Duration, Instant};

use common::{down_template, start, Mode};
use lrn::{HttpDip, HttpDipConfig, LrnAnswer, LrnError, LrnSource};

fn cfg(template: String) -> HttpDipConfig {
    let mut c = HttpDipConfig::new(template);
    c.timeout = Duration::from_millis(300);
    c.backoff_initial = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(20);
    c
}

#[tokio::test]
async fn answers_ported_and_not_ported() {
    let srv = start(Mode::Ok).await;
    let dip = HttpDip::new(cfg(srv.template())).unwrap();
    assert_eq!(
        dip.lookup("2125550002").await.unwrap(),
        LrnAnswer {
            lrn: "7185550000".into(),
            ported: true
        }
    );
    assert_eq!(
        dip.lookup("3105550003").await.unwrap(),
        LrnAnswer {
            lrn: "3105550003".into(),
            ported: false
        }
    );
    assert_eq!(srv.hits(), 2);
    // Invalid input never reaches the server.
    assert!(matches!(
        dip.lookup("12345").await,
        Err(LrnError::InvalidNumber(_))
    ));
    assert_eq!(srv.hits(), 2);
}

#[tokio::test]
async fn garbage_is_an_error_and_not_retried() {
    let srv = start(Mode::Garbage).await;
    let dip = HttpDip::new(cfg(srv.template())).unwrap();
    let e = dip.lookup("2125550001").await.unwrap_err();
    assert!(matches!(e, LrnError::Garbage(_)), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(srv.hits(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let srv = start(Mode::FailFirst(2, 503)).await;
    let dip = HttpDip::new(cfg(srv.template())).unwrap();
    assert_eq!(dip.lookup("2125550001").await.unwrap().lrn, "2125559999");
    assert_eq!(srv.hits(), 3);

    let srv = start(Mode::FailFirst(10, 500)).await;
    let dip = HttpDip::new(cfg(srv.template())).unwrap();
    assert_eq!(
        dip.lookup("2125550001").await.unwrap_err(),
        LrnError::Status(500)
    );
    assert_eq!(srv.hits(), 3, "max_attempts = 3");

    // 404 is not retried.
    let srv = start(Mode::FailFirst(10, 404)).await;
    let dip = HttpDip::new(cfg(srv.template())).unwrap();
    assert_eq!(
        dip.lookup("2125550001").await.unwrap_err(),
        LrnError::Status(404)
    );
    assert_eq!(srv.hits(), 1);
}

#[tokio::test]
async fn slow_server_times_out() {
    let srv = start(Mode::Slow(Duration::from_secs(5))).await;
    let mut c = cfg(srv.template());
    c.timeout = Duration::from_millis(100);
    c.max_attempts = 2;
    let dip = HttpDip::new(c).unwrap();
    let t = Instant::now();
    let e = dip.lookup("2125550001").await.unwrap_err();
    assert!(matches!(e, LrnError::Timeout(_)), "{e:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(srv.hits(), 2);
}

#[tokio::test]
async fn down_server_is_a_transport_error() {
    let dip = HttpDip::new(cfg(down_template().await)).unwrap();
    let t = Instant::now();
    let e = dip.lookup("2125550001").await.unwrap_err();
    assert!(matches!(e, LrnError::Transport(_)), "{e:?}");
    assert!(e.is_retryable());
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn concurrency_is_limited() {
    let srv = start(Mode::Slow(Duration::from_millis(60))).await;
    let mut c = cfg(srv.template());
    c.max_concurrency = 2;
    c.timeout = Duration::from_secs(2);
    let dip = HttpDip::new(c).unwrap();
    let tns: Vec<String> = (0..8).map(|i| format!("31055500{i:02}")).collect();
    let results = futures::future::join_all(tns.iter().map(|t| dip.lookup(t))).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(srv.hits(), 8);
    let max = srv.max_inflight.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&max), "max in flight {max}");
}

#[test]
fn bad_config_is_rejected() {
    assert!(matches!(
        HttpDip::new(HttpDipConfig::new("http://x/lrn")),
        Err(LrnError::Config(_))
    ));
    let mut c = HttpDipConfig::new("http://x/{tn}");
    c.max_concurrency = 0;
    assert!(matches!(HttpDip::new(c), Err(LrnError::Config(_))));
}
