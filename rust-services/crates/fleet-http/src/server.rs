//! A serve loop for a current-thread runtime (`spawn_local`: handlers may hold `Rc`s).
//!
//! Connection limit: at most [`Limits::max_connections`] are served at once; the loop stops
//! accepting while that many are open, so excess connections **wait** in the kernel's
//! listen backlog (and are served when a slot frees) instead of being refused.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// A client must send a request's whole header this fast (also bounds an idle
    /// keep-alive connection waiting for its next request).
    pub header_read_timeout: Duration,
    /// Keep connections open between requests.
    pub keep_alive: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            header_read_timeout: Duration::from_secs(30),
            keep_alive: true,
        }
    }
}

/// The addresses of an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peers {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Accepts connections forever, one local task per connection. `connection` runs once per
/// accepted connection (an access check, say) and returns the request handler for it.
pub async fn serve<C, CF, H, HF, B>(listener: TcpListener, limits: Limits, connection: C)
where
    C: Fn(Peers) -> CF,
    CF: Future<Output = H> + 'static,
    H: Fn(Request<Incoming>) -> HF + 'static,
    HF: Future<Output = Response<B>> + 'static,
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                log::warn!("HTTP accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let peers = stream.local_addr().map(|local| Peers { peer, local });
        let peers = match peers {
            Ok(p) => p,
            Err(e) => {
                log::debug!("HTTP: connection without a local address: {e}");
                continue;
            }
        };
        let handler = connection(peers);
        tokio::task::spawn_local(async move {
            let handler = handler.await;
            let service = service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(limits.keep_alive)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                log::debug!("HTTP connection from {}: {e}", peers.peer);
            }
            drop(permit);
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    #[error("request body: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Reads a whole request body of at most `limit` bytes within `timeout`. A declared
/// `Content-Length` over the limit fails before anything is read.
pub async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(BodyError::Timeout(timeout)),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(BodyError::Read(e)),
    }
}

/// A response body sent as it is produced (a log stream): each [`Bytes`] sent on the
/// channel goes out as one chunk; the body ends when every sender is dropped. When the
/// client goes away the receiver is dropped, so the producer's next send fails and it stops.
#[derive(Debug)]
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and its sender; `depth` chunks may wait unsent before `send` waits.
    pub fn new(depth: usize) -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
        (tx, ChannelBody { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A response with a body and its content type.
pub fn response(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}
