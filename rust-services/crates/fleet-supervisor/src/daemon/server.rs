//! A minimal HTTP/1.1 server: one request per connection (`Connection: close`), bodies by
//! `Content-Length`, bounded sizes and time. The API has a dozen small JSON endpoints and a
//! handful of clients on the device; see the crate README for why not hyper/axum.

use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Reconciler;
use super::state::Shared;
use super::{access, api};

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = crate::target::MAX_TARGET_BYTES;
/// A client gets this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: text.as_bytes().to_vec(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        423 => "Locked",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Accepts connections forever, one task per connection.
pub async fn serve<R: Reconciler + 'static>(listener: TcpListener, shared: Rc<Shared<R>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::task::spawn_local(async move { handle(stream, &shared).await });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                log::warn!("API accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn handle<R: Reconciler>(mut stream: TcpStream, shared: &Shared<R>) {
    let peers = stream
        .peer_addr()
        .and_then(|p| Ok((p, stream.local_addr()?)));
    let allowed = match peers {
        Ok((peer, local)) => access::allowed(shared, peer.ip(), local.ip()).await,
        Err(e) => {
            log::debug!("API: connection without addresses: {e}");
            false
        }
    };
    if !allowed {
        let refused = Response::text(
            403,
            "Forbidden: the supervisor API accepts the host and its containers only",
        );
        let _ = stream.write_all(&refused.to_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let response = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => Response::text(408, "request not received in time"),
        Ok(Err(response)) => response,
        Ok(Ok(request)) => api::route(shared, &request).await,
    };
    // The client may be gone; nothing to do about it.
    let _ = stream.write_all(&response.to_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads one request; an error is the response to send.
pub async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<Request, Response> {
    let mut raw = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if raw.len() > MAX_HEAD {
            return Err(Response::text(413, "request header too large"));
        }
        read_more(stream, &mut buf, &mut raw, "request").await?;
    };
    let mut request = parse_head(&raw[..head_end])?;
    let length = match request.header("content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| Response::text(400, "bad Content-Length"))?,
        None => 0,
    };
    if request.header("transfer-encoding").is_some() {
        return Err(Response::text(
            400,
            "chunked request bodies are not supported",
        ));
    }
    if length > MAX_BODY {
        return Err(Response::text(413, "request body too large"));
    }
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        read_more(stream, &mut buf, &mut body, "body").await?;
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

/// Appends the next read to `into`; a closed connection ends the request with a 400.
async fn read_more<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    into: &mut Vec<u8>,
    what: &str,
) -> Result<(), Response> {
    let n = stream
        .read(buf)
        .await
        .map_err(|e| Response::text(400, &e.to_string()))?;
    if n == 0 {
        return Err(Response::text(
            400,
            &format!("connection closed before the {what} ended"),
        ));
    }
    into.extend_from_slice(&buf[..n]);
    Ok(())
}

fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = |m: &str| Response::text(400, m);
    let head = std::str::from_utf8(head).map_err(|_| bad("request header is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("only HTTP/1.x is spoken here"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path: percent_decode(path),
        query,
        headers,
        body: Vec::new(),
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(raw: &[u8]) -> Result<Request, Response> {
        let mut r = raw;
        read_request(&mut r).await
    }

    #[tokio::test]
    async fn parses_a_request_with_query_and_body() {
        let r = read(
            b"POST /v2/applications/12/restart-service?apikey=a%2Fb HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nAuthorization: Bearer k\r\n\r\n{\"a\"}extra",
        )
        .await
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v2/applications/12/restart-service");
        assert_eq!(r.query("apikey"), Some("a/b"));
        assert_eq!(r.header("authorization"), Some("Bearer k"));
        assert_eq!(r.body, b"{\"a\"}");
    }

    #[tokio::test]
    async fn refuses_bad_requests() {
        assert_eq!(read(b"GET /\r\n\r\n").await.unwrap_err().status, 400);
        assert_eq!(read(b"GET / HTTP/1.1\r\n").await.unwrap_err().status, 400);
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(read(big.as_bytes()).await.unwrap_err().status, 413);
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc")
                .await
                .unwrap_err()
                .status,
            400
        );
    }
}
