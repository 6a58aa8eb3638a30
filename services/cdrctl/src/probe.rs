//! `cdrctl probe URL`: one HTTP GET with a deadline, for container health
//! checks (the runtime image has no curl). Succeeds on a 2xx status only.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` is not an http://host:port/path URL")]
    BadUrl(String),
    #[error("{url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: no HTTP status line in the answer")]
    NoStatus { url: String },
    #[error("{url}: status {status}")]
    Status { url: String, status: u16 },
}

/// GETs `url` (plain HTTP: the metrics listener) within `timeout`; the
/// status when it is 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let bad = || ProbeError::BadUrl(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(bad());
    }
    let io = |source| ProbeError::Io {
        url: url.to_string(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(bad)?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    // The status line is all a probe needs; read at most a few KiB.
    let mut buf = Vec::with_capacity(512);
    // A server that answers and closes before reading all of the request
    // makes the kernel reset the connection: what arrived before the reset
    // is still the answer.
    if let Err(e) = s.take(4096).read_to_end(&mut buf) {
        if buf.is_empty() {
            return Err(io(e));
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::NoStatus {
            url: url.to_string(),
        })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status {
            url: url.to_string(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            // The whole request first, so closing does not reset it.
            let mut req = Vec::new();
            let mut chunk = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&chunk[..n]),
                }
            }
            c.write_all(answer.as_bytes()).unwrap();
        });
        format!("http://127.0.0.1:{port}/livez")
    }

    #[test]
    fn a_2xx_answer_passes_and_anything_else_fails() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(probe(&ok, Duration::from_secs(2)).unwrap(), 200);
        let down = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(
            probe(&down, Duration::from_secs(2)),
            Err(ProbeError::Status { status: 503, .. })
        ));
        let junk = serve_once("hello");
        assert!(matches!(
            probe(&junk, Duration::from_secs(2)),
            Err(ProbeError::NoStatus { .. })
        ));
    }

    #[test]
    fn nothing_listening_and_bad_urls_fail() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let url = format!("http://127.0.0.1:{port}/livez");
        assert!(matches!(
            probe(&url, Duration::from_secs(1)),
            Err(ProbeError::Io { .. })
        ));
        for u in ["https://x:1/", "http://nohost/", "127.0.0.1:9100/livez"] {
            assert!(matches!(
                probe(u, Duration::from_secs(1)),
                Err(ProbeError::BadUrl(_))
            ));
        }
    }
}
