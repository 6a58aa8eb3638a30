//! The HTTP endpoint switches POST to. It only authenticates, bounds,
//! names the format and switch, and hands the body to the broker: the
//! adapter stage does the rest, so an HTTP POST and a switch publishing to
//! the raw topic itself take the same path.
//!
//! Answers: 200 once the broker acknowledged the record (body: topic,
//! partition, offset); 400 unknown format/switch, empty body or a form
//! without `cdr`; 401 bad or missing credentials; 413 body over
//! `http.max_body_bytes`; 503 the broker did not acknowledge within
//! `http.ack_timeout_ms` (the switch keeps the record and retries).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use cdr_kafka::runtime::Producer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sha2::{Digest, Sha256};
use switch_adapters::Format;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Credential};
use crate::metrics::IngestMetrics;
use crate::{FORMAT_HEADER, SWITCH_HEADER};

struct App {
    cfg: Arc<Config>,
    credential: Credential,
    producer: Producer,
    metrics: IngestMetrics,
    ack_timeout: Duration,
}

/// Binds the listener (an error names the address) and serves until
/// `shutdown`; the returned handle ends when the server has stopped.
pub async fn start(
    cfg: Arc<Config>,
    producer: Producer,
    metrics: IngestMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listen = cfg.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {listen}: {e}"))?;
    let app = Arc::new(App {
        credential: cfg.http.auth.resolve()?,
        producer,
        ack_timeout: Duration::from_millis(cfg.http.ack_timeout_ms),
        metrics,
        cfg: cfg.clone(),
    });
    let router = router(app, cfg.http.max_body_bytes);
    if let Some(t) = &cfg.http.tls {
        let acceptor = crate::tls::acceptor(t)?;
        tracing::info!(%listen, "ingest HTTPS endpoint listening");
        return Ok(tokio::spawn(crate::tls::serve(
            listener, acceptor, router, shutdown,
        )));
    }
    tracing::info!(%listen, "ingest HTTP endpoint listening");
    Ok(tokio::spawn(async move {
        let stop = shutdown.clone();
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "ingest HTTP server failed");
            shutdown.cancel();
        }
    }))
}

fn router(app: Arc<App>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/cdr/freeswitch", post(freeswitch))
        .route("/v1/events/{format}", post(events))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

async fn freeswitch(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    accept(&app, Format::FreeswitchJson, &q, &headers, body).await
}

async fn events(
    State(app): State<Arc<App>>,
    Path(format): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match format.parse::<Format>() {
        Ok(f) => accept(&app, f, &q, &headers, body).await,
        Err(e) => {
            app.metrics
                .requests
                .with_label_values(&["unknown", "400"])
                .inc();
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
    }
}

/// Constant-time comparison, so a wrong token takes as long as a right one.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorised(cred: &Credential, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match cred {
        Credential::None => true,
        Credential::Bearer(t) => given
            .strip_prefix("Bearer ")
            .is_some_and(|g| same(g.trim().as_bytes(), t.as_bytes())),
        Credential::Basic { user, password } => given
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .is_some_and(|d| same(&d, format!("{user}:{password}").as_bytes())),
    }
}

/// `application/x-www-form-urlencoded` value of `name`.
fn form_value(body: &[u8], name: &str) -> Option<Vec<u8>> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let mut it = pair.splitn(2, |b| *b == b'=');
        let k = percent_decode(it.next()?);
        (k == name.as_bytes()).then(|| percent_decode(it.next().unwrap_or_default()))
    })
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                match std::str::from_utf8(&s[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

async fn accept(
    app: &App,
    format: Format,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let (status, resp) = handle(app, format, q, headers, body).await;
    app.metrics
        .requests
        .with_label_values(&[format.as_str(), status.as_str()])
        .inc();
    let mut r = (status, resp).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"cdr-ingest\""),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    r
}

async fn handle(
    app: &App,
    format: Format,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if !authorised(&app.credential, headers) {
        return (StatusCode::UNAUTHORIZED, "unauthorised\n".into());
    }
    let named = q
        .get("switch")
        .map(String::as_str)
        .or_else(|| headers.get("x-switch-id").and_then(|v| v.to_str().ok()));
    let switch = match app.cfg.switch(named) {
        Ok(s) => s.switch_id.clone(),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let payload: Vec<u8> = if form {
        match form_value(&body, "cdr") {
            Some(v) => v,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    "form body without a `cdr` field\n".into(),
                )
            }
        }
    } else {
        body.to_vec()
    };
    if payload.iter().all(u8::is_ascii_whitespace) {
        return (StatusCode::BAD_REQUEST, "empty body\n".into());
    }
    // A content key: the same POST retried lands on the same partition.
    let mut h = Sha256::new();
    h.update(switch.as_bytes());
    h.update([0]);
    h.update(&payload);
    let key = hex::encode(&h.finalize()[..16]);
    let topic = format.raw_topic();
    let name = app.producer.topic(topic);
    let record = FutureRecord::to(&name).key(&key).payload(&payload).headers(
        OwnedHeaders::new()
            .insert(Header {
                key: FORMAT_HEADER,
                value: Some(format.as_str()),
            })
            .insert(Header {
                key: SWITCH_HEADER,
                value: Some(switch.as_str()),
            }),
    );
    let sent =
        tokio::time::timeout(app.ack_timeout, app.producer.send(record, app.ack_timeout)).await;
    match sent {
        Ok(Ok(d)) => (
            StatusCode::OK,
            format!(
                "{{\"topic\":\"{topic}\",\"partition\":{},\"offset\":{}}}\n",
                d.partition, d.offset
            ),
        ),
        Ok(Err((e, _))) => {
            tracing::warn!(topic, error = %e, "raw record not acknowledged");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "broker did not acknowledge; retry\n".into(),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "broker acknowledgement timed out; retry\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_cdr_field_is_percent_decoded() {
        let body = b"uuid=abc&cdr=%7B%22a%22%3A%22x+y%25%22%7D&z=1";
        assert_eq!(form_value(body, "cdr").unwrap(), br#"{"a":"x y%"}"#);
        assert_eq!(form_value(b"cdr=", "cdr").unwrap(), b"");
        assert!(form_value(b"other=1", "cdr").is_none());
        // A stray % is kept, never a panic.
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }

    #[test]
    fn credentials_are_checked_exactly() {
        let mut h = HeaderMap::new();
        let bearer = Credential::Bearer("s3cret".into());
        assert!(!authorised(&bearer, &h));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorised(&bearer, &h));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorised(&bearer, &h));
        let basic = Credential::Basic {
            user: "fs".into(),
            password: "pw".into(),
        };
        let enc = base64::engine::general_purpose::STANDARD.encode("fs:pw");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {enc}").parse().unwrap(),
        );
        assert!(authorised(&basic, &h));
        assert!(!authorised(&bearer, &h));
        assert!(authorised(&Credential::None, &HeaderMap::new()));
    }
}
