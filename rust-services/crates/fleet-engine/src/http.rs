//! A minimal HTTP/1.1 client over a unix socket: one connection per request
//! (`Connection: close`), request bodies streamed from a reader, responses with
//! `Content-Length`, chunked encoding or read-to-EOF.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::Error;

/// Upper bound for a response body kept in memory (image load progress, inspect JSON).
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

pub enum Body<'a> {
    Empty,
    Json(Vec<u8>),
    /// A stream of known length, sent as `application/x-tar`.
    Tar(&'a mut (dyn AsyncRead + Unpin + Send), u64),
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

pub async fn request(
    socket: &Path,
    method: &str,
    target: &str,
    body: Body<'_>,
) -> Result<Response, Error> {
    let io = |source| Error::Io {
        socket: socket.into(),
        source,
    };
    let mut stream = UnixStream::connect(socket).await.map_err(io)?;
    let (content_type, length) = match &body {
        Body::Empty => (None, 0),
        Body::Json(b) => (Some("application/json"), b.len() as u64),
        Body::Tar(_, n) => (Some("application/x-tar"), *n),
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {length}\r\n"
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    match body {
        Body::Empty => {}
        Body::Json(b) => stream.write_all(&b).await.map_err(io)?,
        Body::Tar(reader, n) => {
            let copied = tokio::io::copy(&mut reader.take(n), &mut stream)
                .await
                .map_err(io)?;
            if copied != n {
                return Err(Error::Protocol(format!(
                    "request body ended after {copied} of {n} bytes"
                )));
            }
        }
    }
    stream.flush().await.map_err(io)?;

    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        if raw.len() + n > MAX_RESPONSE {
            return Err(Error::Protocol(format!(
                "response larger than {MAX_RESPONSE} bytes"
            )));
        }
        raw.extend_from_slice(&buf[..n]);
    }
    parse_response(&raw)
}

/// Parses a complete HTTP/1.1 response (the connection was closed by the server).
pub fn parse_response(raw: &[u8]) -> Result<Response, Error> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Protocol("response without a complete header".into()))?;
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| Error::Protocol("response header is not UTF-8".into()))?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| Error::Protocol(format!("body shorter than Content-Length {n}")))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| Error::Protocol("truncated chunk size".into()))?;
        let size_text = std::str::from_utf8(&data[..eol]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Error::Protocol(format!("bad chunk size {size_text:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data
            .get(..size)
            .ok_or_else(|| Error::Protocol("truncated chunk".into()))?;
        out.extend_from_slice(chunk);
        data = data
            .get(size + 2..)
            .ok_or_else(|| Error::Protocol("truncated chunk".into()))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn parses_content_length() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        let r = parse_response(raw).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"{}"[..]));
    }

    #[test]
    fn rejects_truncated() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_err()
        );
    }
}
