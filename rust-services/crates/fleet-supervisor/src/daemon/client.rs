//! A minimal HTTP/1.1 client over TCP for the target poll and the healthcheck: one request
//! per connection (`Connection: close`), response parsing shared with `fleet-engine`.
//! Plain `http://` only: see the crate README ("HTTPS") for why `https://` is refused.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use fleet_engine::http::Response;

/// Largest response accepted (a target state is at most 4 MiB).
const MAX_RESPONSE: usize = crate::target::MAX_TARGET_BYTES + 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("{url}: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "{url}: https is not supported by this build (plain http only; see the fleet-supervisor README)"
    )]
    Https { url: String },
    #[error("{url}: {reason}")]
    Io { url: String, reason: String },
}

/// An `http://host[:port][/base]` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port` to connect to (IPv6 literals in brackets).
    pub authority: String,
    /// The `Host` header value.
    pub host_header: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Url, ClientError> {
    let bad = |reason: &str| ClientError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(ClientError::Https {
            url: url.to_string(),
        });
    }
    let rest = url
        .get(7..)
        .filter(|_| lower.starts_with("http://"))
        .ok_or_else(|| bad("not an http:// URL"))?;
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host_port.is_empty() || host_port.contains('@') {
        return Err(bad("missing host (or user info, which is not supported)"));
    }
    // A port follows the last `:` unless that `:` is inside an IPv6 literal.
    let (host, port) = match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') => (&host_port[..i], Some(&host_port[i + 1..])),
        _ => (host_port, None),
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if let Some(port) = port {
        port.parse::<u16>().map_err(|_| bad("bad port"))?;
    }
    let has_port = port.is_some();
    Ok(Url {
        authority: if has_port {
            host_port.to_string()
        } else {
            format!("{host_port}:80")
        },
        host_header: host_port.to_string(),
        path: path.to_string(),
    })
}

/// `GET url` with extra headers; the whole response, whatever its status.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, ClientError> {
    request("GET", url, headers, b"").await
}

pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, ClientError> {
    let u = parse_url(url)?;
    let io = |e: std::io::Error| ClientError::Io {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let mut stream = TcpStream::connect(&u.authority).await.map_err(io)?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        u.path,
        u.host_header,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        if raw.len() + n > MAX_RESPONSE {
            return Err(ClientError::Io {
                url: url.to_string(),
                reason: format!("response larger than {MAX_RESPONSE} bytes"),
            });
        }
        raw.extend_from_slice(&buf[..n]);
    }
    fleet_engine::http::parse_response(&raw).map_err(|e| ClientError::Io {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_urls_apart() {
        let u = parse_url("http://api.example:8080/base").unwrap();
        assert_eq!(u.authority, "api.example:8080");
        assert_eq!(u.path, "/base");
        let u = parse_url("http://10.0.0.1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("10.0.0.1:80", "/")
        );
        let u = parse_url("http://[::1]:48484/v1/healthy").unwrap();
        assert_eq!(u.authority, "[::1]:48484");
        assert_eq!(parse_url("http://[::1]/").unwrap().authority, "[::1]:80");
    }

    #[test]
    fn refuses_https_and_junk_with_the_reason() {
        let e = parse_url("https://api.balena-cloud.com").unwrap_err();
        assert!(e.to_string().contains("https is not supported"), "{e}");
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http:///").is_err());
        assert!(parse_url("http://host:99999/").is_err());
        assert!(parse_url("http://user@host/").is_err());
    }
}
