//! A minimal HTTP/1.1 client over TCP (or TLS, for `https://`) for the target poll, the
//! state report and the healthcheck: one request per connection (`Connection: close`),
//! response parsing shared with `fleet-engine`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::{self, Tls};

pub use fleet_engine::http::Response;

/// Largest response accepted (a target state is at most 4 MiB).
const MAX_RESPONSE: usize = fleet_release::target::MAX_TARGET_BYTES + 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {reason}")]
    Url { url: String, reason: String },
    #[error("{url}: no TLS trust roots ({reason})")]
    NoTls { url: String, reason: String },
    #[error("{url}: cannot connect to {authority}")]
    Connect {
        url: String,
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {host} is not a valid TLS server name")]
    TlsName {
        url: String,
        host: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// `what` says what went wrong in words (an untrusted certificate, a name mismatch).
    #[error("{url}: {what}")]
    Tls {
        url: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: the exchange with {authority} failed")]
    Exchange {
        url: String,
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: bad response")]
    Response {
        url: String,
        #[source]
        source: fleet_engine::Error,
    },
}

/// An `http[s]://host[:port][/base]` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// The host name or address the certificate must be valid for (no brackets).
    pub host: String,
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
    let https = lower.starts_with("https://");
    let rest = if https {
        &url[8..]
    } else {
        url.get(7..)
            .filter(|_| lower.starts_with("http://"))
            .ok_or_else(|| bad("not an http:// or https:// URL"))?
    };
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
        https,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        authority: if has_port {
            host_port.to_string()
        } else {
            format!("{host_port}:{}", if https { 443 } else { 80 })
        },
        host_header: host_port.to_string(),
        path: path.to_string(),
    })
}

/// `GET url` with extra headers; the whole response, whatever its status. `tls` is needed
/// for `https://` URLs only.
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
    tls: Option<&Tls>,
) -> Result<Response, ClientError> {
    request("GET", url, headers, b"", tls).await
}

pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    tls: Option<&Tls>,
) -> Result<Response, ClientError> {
    let u = parse_url(url)?;
    let stream = TcpStream::connect(&u.authority)
        .await
        .map_err(|source| ClientError::Connect {
            url: url.to_string(),
            authority: u.authority.clone(),
            source,
        })?;
    let tls_failure = |source: std::io::Error| ClientError::Tls {
        url: url.to_string(),
        what: tls::describe_failure(&source, &u.host),
        source,
    };
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
    let raw = if u.https {
        let tls = tls.ok_or_else(|| ClientError::NoTls {
            url: url.to_string(),
            reason: "none configured".into(),
        })?;
        let name = rustls::pki_types::ServerName::try_from(u.host.clone()).map_err(|source| {
            ClientError::TlsName {
                url: url.to_string(),
                host: u.host.clone(),
                source,
            }
        })?;
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let stream = connector.connect(name, stream).await.map_err(tls_failure)?;
        exchange(stream, head.as_bytes(), body)
            .await
            .map_err(tls_failure)?
    } else {
        exchange(stream, head.as_bytes(), body)
            .await
            .map_err(|source| ClientError::Exchange {
                url: url.to_string(),
                authority: u.authority.clone(),
                source,
            })?
    };
    fleet_engine::http::parse_response(&raw).map_err(|source| ClientError::Response {
        url: url.to_string(),
        source,
    })
}

/// Sends the request and reads the response until the server closes the connection.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    stream.write_all(head).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // Many servers close a TLS connection without close_notify once the response is
            // out; the response parser still refuses a truncated body.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        if raw.len() + n > MAX_RESPONSE {
            return Err(std::io::Error::other(format!(
                "response larger than {MAX_RESPONSE} bytes"
            )));
        }
        raw.extend_from_slice(&buf[..n]);
    }
    Ok(raw)
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
    fn takes_https_urls_apart() {
        let u = parse_url("https://api.balena-cloud.com").unwrap();
        assert!(u.https);
        assert_eq!(u.authority, "api.balena-cloud.com:443");
        assert_eq!(u.host, "api.balena-cloud.com");
        let u = parse_url("HTTPS://[::1]:8443/x").unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str()), ("::1", "/x"));
    }

    #[test]
    fn refuses_junk_with_the_reason() {
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http:///").is_err());
        assert!(parse_url("http://host:99999/").is_err());
        assert!(parse_url("http://user@host/").is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_url_and_chains_the_cause() {
        // A port just bound and released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/v1/healthy");
        let Err(e) = get(&url, &[], None).await else {
            panic!("{url} answered");
        };
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("{url}: cannot connect to 127.0.0.1:{port}")
        );
        let line = fleet_log::error::one_line(&e);
        assert!(line.len() > e.to_string().len(), "{line}");
    }
}
