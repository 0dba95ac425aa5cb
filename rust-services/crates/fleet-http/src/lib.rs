//! The workspace's HTTP/1.1 stack, on hyper 1: a server loop with a connection limit and a
//! header-read timeout ([`server`]), and the one HTTP client ([`client`]: unix socket, TCP,
//! TLS, proxies, per-call timeouts, streamed bodies). hyper does the parsing: it answers
//! `100-continue`, refuses duplicate or invalid `Content-Length` (`+5`, `5, 6`) and request
//! smuggling (`Transfer-Encoding` with `Content-Length`) with 400 before a handler runs, and
//! on the client side refuses bad framing and bodies cut short.

pub mod byteranges;
pub mod client;
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;

pub use bytes::Bytes;
pub use http_body_util::{Either, Full};
pub use hyper::body::Incoming;
pub use hyper::{Request, Response, StatusCode, header};

/// An error and its causes on one line, `: `-separated (the client's errors name the URL and
/// what failed, and keep the cause as their source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
