//! Test helpers: a tiny local HTTP/1.1 LNP server (loopback only) and temp files.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub enum Mode {
    /// Answer from the ported map (absent → not ported).
    Ok,
    /// 200 with a non-JSON body.
    Garbage,
    /// Sleep before answering OK.
    Slow(Duration),
    /// Answer this status for the first `n` requests, then OK.
    FailFirst(usize, u16),
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub max_inflight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn template(&self) -> String {
        format!("http://{}/lrn/{{tn}}", self.addr)
    }
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn ported_map() -> HashMap<String, String> {
    HashMap::from([
        ("2125550001".to_string(), "2125559999".to_string()),
        ("2125550002".to_string(), "7185550000".to_string()),
    ])
}

pub async fn start(mode: Mode) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let inflight = Arc::new(AtomicUsize::new(0));
    let max_inflight = Arc::new(AtomicUsize::new(0));
    let ported = Arc::new(ported_map());
    let (h, mi) = (hits.clone(), max_inflight.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (hits, inflight, max_inflight, ported, mode) = (
                h.clone(),
                inflight.clone(),
                mi.clone(),
                ported.clone(),
                mode.clone(),
            );
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                let now = inflight.fetch_add(1, Ordering::SeqCst) + 1;
                max_inflight.fetch_max(now, Ordering::SeqCst);
                let req = String::from_utf8_lossy(&buf);
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let tn = path.rsplit('/').next().unwrap_or("").to_string();
                let ok_body = || match ported.get(&tn) {
                    Some(l) => format!(r#"{{"tn":"{tn}","lrn":"{l}","ported":true}}"#),
                    None => format!(r#"{{"tn":"{tn}","lrn":"{tn}","ported":false}}"#),
                };
                let (status, body) = match mode {
                    Mode::Ok => (200, ok_body()),
                    Mode::Garbage => (200, "<html>LNP maintenance</html>".to_string()),
                    Mode::Slow(d) => {
                        tokio::time::sleep(d).await;
                        (200, ok_body())
                    }
                    Mode::FailFirst(k, s) if n <= k => (s, "{}".to_string()),
                    Mode::FailFirst(..) => (200, ok_body()),
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
                inflight.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    TestServer {
        addr,
        hits,
        max_inflight,
        task,
    }
}

/// A loopback address with nothing listening (connection refused).
pub async fn down_template() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/lrn/{{tn}}")
}

/// A unique temp file path for this test process.
pub fn temp_path(tag: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "lrn-test-{}-{}-{}.txt",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::SeqCst)
    ))
}
