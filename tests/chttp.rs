//! ClickHouse over plain HTTP for the tests that must act as a specific
//! ClickHouse user (finance, Grafana): the `clickhouse` crate's client is
//! fine for the pipeline's own rows, but these tests need per-request users,
//! query parameters and raw output formats, and must see refusals verbatim.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A ClickHouse login.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl User {
    /// The local stack's admin (`cdr_admin`: DDL and DML on cdr.*; the
    /// built-in `default` has no network access).
    pub fn admin() -> User {
        User::role("admin")
    }

    /// `cdr_<role>` with its password: `CDR_CH_<ROLE>_PASSWORD`, else the
    /// secret `deploy/local/start.sh` generated.
    pub fn role(role: &str) -> User {
        let var = format!("CDR_CH_{}_PASSWORD", role.to_uppercase());
        let password = match std::env::var(&var) {
            Ok(p) if !p.is_empty() => p,
            _ => {
                let dir = crate::secrets_dir();
                let f = dir.join(format!("cdr_{role}.password"));
                std::fs::read_to_string(&f)
                    .unwrap_or_else(|e| {
                        panic!(
                            "{}: {e}; set {var} or run deploy/local/start.sh",
                            f.display()
                        )
                    })
                    .trim()
                    .to_string()
            }
        };
        User {
            name: format!("cdr_{role}"),
            password,
        }
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let txt = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(txt.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let end = (eol + 2 + size).min(body.len());
        out.extend_from_slice(&body[eol + 2..end]);
        body = &body[(end + 2).min(body.len())..];
    }
    out
}

fn addr() -> String {
    let url =
        std::env::var("CDR_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_string());
    let rest = url
        .strip_prefix("http://")
        .expect("CDR_CLICKHOUSE_URL must be an http:// URL");
    rest.split('/').next().unwrap().to_string()
}

/// POSTs `body` with URL parameters and headers; Ok(response body) on 200
/// without an exception header, Err(status and ClickHouse's message) else.
pub fn request(
    user: &User,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &str,
) -> Result<String, String> {
    let addr = addr();
    let qs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect();
    let mut req = format!(
        "POST /?{} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\nX-ClickHouse-User: {}\r\n",
        qs.join("&"),
        body.len(),
        user.name
    );
    if !user.password.is_empty() {
        req.push_str(&format!("X-ClickHouse-Key: {}\r\n", user.password));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(180))).ok();
    s.write_all(req.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()))
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("receive: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut payload = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    let text = String::from_utf8_lossy(&payload).to_string();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let exception = head
        .lines()
        .any(|l| l.starts_with("x-clickhouse-exception-code:"));
    if status != "200" || exception {
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    Ok(text)
}

/// One statement as `user`.
pub fn exec(user: &User, sql: &str) -> Result<String, String> {
    request(user, &[], &[], sql)
}

/// JSONEachRow insert into `cdr.<table>` as admin; panics on refusal.
pub fn insert(table: &str, rows: &[Value]) {
    let body: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    let q = format!("INSERT INTO cdr.{table} FORMAT JSONEachRow");
    request(&User::admin(), &[("query", &q)], &[], &body.join("\n"))
        .unwrap_or_else(|e| panic!("insert into {table}: {e}"));
}

/// ClickHouse up (the local stack started if it is not) with every
/// migration applied, through the same `cdrctl migrate` code the stack uses.
pub fn ensure_clickhouse() {
    if exec(&User::admin(), "SELECT 1").is_err() {
        let st = std::process::Command::new("bash")
            .arg(crate::repo().join("deploy/local/start.sh"))
            .status()
            .expect("run deploy/local/start.sh");
        assert!(st.success(), "deploy/local/start.sh failed");
        let end = Instant::now() + Duration::from_secs(90);
        while exec(&User::admin(), "SELECT 1").is_err() {
            assert!(Instant::now() < end, "ClickHouse did not come up");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let ch = crate::clickhouse();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(cdr_clickhouse::migrate::migrate(&ch))
            .expect("migrations apply")
    })
    .join()
    .expect("migration thread");
}
