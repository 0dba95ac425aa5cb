//! The workspace's HTTP/1.1 client, on hyper 1 client connections: one connection per
//! request, over a unix socket (the Docker engine), TCP, or TLS (rustls, feature `tls`),
//! directly or through a proxy ([`Proxy`]: `CONNECT` tunnels for `https://`). A client made
//! with [`Client::keep_alive`] keeps the connections of its bodiless requests open once their
//! answer is read, and sends the next ones to the same origin on them.
//!
//! hyper does all the parsing and framing: a bad or duplicate `Content-Length`, a broken
//! chunked encoding or a body cut short is an error, never a short body. Over TLS a
//! connection that ends without `close_notify` before the body is complete is an error too
//! (rustls reports `UnexpectedEof`, which surfaces as [`Error::Body`]).
//!
//! Each request carries its [`Timeouts`]. The response body is read as it arrives
//! ([`Response::chunk`], [`Response::lines`]) or collected with a size limit
//! ([`Response::bytes`]).

mod body;
mod proxy;
mod url;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

pub use body::Body;
pub use hyper::header::HeaderMap;
pub use hyper::{Method, StatusCode};
pub use proxy::{NoProxy, Proxy, ProxyError};
pub use url::{Url, UrlError};

use body::Outgoing;

/// How long each part of a call may take. `None`: no limit for that part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting: TCP or unix connect, the proxy tunnel and the TLS handshake.
    pub connect: Duration,
    /// Sending the request (its body included) and receiving the response header.
    pub response: Option<Duration>,
    /// The longest wait for the next piece of the response body.
    pub idle: Option<Duration>,
    /// The whole call, from connecting to the end of the body.
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    /// 10 s to connect, 30 s to the response header, 30 s between body pieces.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            response: Some(Duration::from_secs(30)),
            idle: Some(Duration::from_secs(30)),
            total: None,
        }
    }
}

impl Timeouts {
    /// Connect within `connect`, everything else within `total`.
    pub fn total(connect: Duration, total: Duration) -> Timeouts {
        Timeouts {
            connect,
            response: None,
            idle: None,
            total: Some(total),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: not a usable URL")]
    Url {
        url: String,
        #[source]
        source: UrlError,
    },
    #[error("{url}: cannot build the request")]
    Request {
        url: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("{url}: https:// needs a TLS client, this one has none")]
    NoTls { url: String },
    #[cfg(feature = "tls")]
    #[error("{url}: {host} is not a valid TLS server name")]
    TlsName {
        url: String,
        host: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("{url}: cannot connect to {to}")]
    Connect {
        url: String,
        to: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: no connection to {to} within {timeout:?}")]
    ConnectTimeout {
        url: String,
        to: String,
        timeout: Duration,
    },
    #[error("{url}: the tunnel through proxy {proxy} failed")]
    Tunnel {
        url: String,
        proxy: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url}: proxy {proxy} refused the tunnel with HTTP {status}")]
    TunnelRefused {
        url: String,
        proxy: String,
        status: u16,
    },
    #[error("{url}: TLS handshake with {host} failed")]
    Tls {
        url: String,
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: the request failed")]
    Exchange {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url}: no response within {timeout:?}")]
    ResponseTimeout { url: String, timeout: Duration },
    #[error("{url}: the response body broke off")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url}: the response body stalled for {timeout:?}")]
    IdleTimeout { url: String, timeout: Duration },
    #[error("{url}: the response did not complete within {timeout:?}")]
    TotalTimeout { url: String, timeout: Duration },
    #[error("{url}: response body larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: a response line longer than {limit} bytes")]
    LineTooLong { url: String, limit: usize },
}

impl Error {
    /// The URL (or `unix:<socket>:<path>`) of the failed call.
    pub fn url(&self) -> &str {
        match self {
            Error::Url { url, .. }
            | Error::Request { url, .. }
            | Error::NoTls { url }
            | Error::Connect { url, .. }
            | Error::ConnectTimeout { url, .. }
            | Error::Tunnel { url, .. }
            | Error::TunnelRefused { url, .. }
            | Error::Tls { url, .. }
            | Error::Exchange { url, .. }
            | Error::ResponseTimeout { url, .. }
            | Error::Body { url, .. }
            | Error::IdleTimeout { url, .. }
            | Error::TotalTimeout { url, .. }
            | Error::TooLarge { url, .. }
            | Error::LineTooLong { url, .. } => url,
            #[cfg(feature = "tls")]
            Error::TlsName { url, .. } => url,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::ConnectTimeout { .. }
                | Error::ResponseTimeout { .. }
                | Error::IdleTimeout { .. }
                | Error::TotalTimeout { .. }
        )
    }
}

/// A request: method, target (a URL, or a path and query for a unix-socket client),
/// headers, body and timeouts.
pub struct Request {
    method: Method,
    target: String,
    headers: Vec<(String, String)>,
    body: Body,
    timeouts: Timeouts,
}

impl Request {
    pub fn new(method: Method, target: impl Into<String>) -> Request {
        Request {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Body::Empty,
            timeouts: Timeouts::default(),
        }
    }

    pub fn get(target: impl Into<String>) -> Request {
        Request::new(Method::GET, target)
    }

    pub fn head(target: impl Into<String>) -> Request {
        Request::new(Method::HEAD, target)
    }

    /// Adds a header (an invalid name or value fails the call with [`Error::Request`]).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }

    /// A JSON body with its `Content-Type`.
    pub fn json(self, body: Vec<u8>) -> Request {
        self.header("content-type", "application/json")
            .body(body.into())
    }

    pub fn timeouts(mut self, timeouts: Timeouts) -> Request {
        self.timeouts = timeouts;
        self
    }
}

/// A connection of any transport, for hyper.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
type BoxStream = Box<dyn Stream>;

#[derive(Debug, Clone)]
enum Transport {
    Unix(PathBuf),
    Net {
        #[cfg(feature = "tls")]
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        proxy: Box<Proxy>,
    },
}

/// A client: where connections go. Cheap to clone; holds no connection, unless made with
/// [`Client::keep_alive`] (its clones then share the idle ones).
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    idle: Option<IdlePool>,
}

/// Most idle connections a [`Client::keep_alive`] keeps.
const IDLE_MAX: usize = 16;

/// Connections whose last answer was read whole, ready for the next request to their origin.
#[derive(Clone, Default)]
struct IdlePool(std::sync::Arc<std::sync::Mutex<Vec<Idle>>>);

impl std::fmt::Debug for IdlePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdlePool")
    }
}

struct Idle {
    /// Scheme, authority and proxy of the connection.
    origin: String,
    sender: http1::SendRequest<Outgoing>,
    conn: ConnTask,
}

impl IdlePool {
    fn take(&self, origin: &str) -> Option<Idle> {
        let mut idle = self.0.lock().ok()?;
        let at = idle.iter().rposition(|c| c.origin == origin)?;
        Some(idle.swap_remove(at))
    }

    fn put(&self, connection: Idle) {
        if let Ok(mut idle) = self.0.lock()
            && idle.len() < IDLE_MAX
        {
            idle.push(connection);
        }
    }
}

impl Client {
    /// Requests over the unix socket `socket`; targets are paths (`/v1.41/_ping`).
    pub fn unix(socket: impl Into<PathBuf>) -> Client {
        Client {
            transport: Transport::Unix(socket.into()),
            idle: None,
        }
    }

    /// `http://` URLs over TCP (an `https://` URL fails with [`Error::NoTls`]).
    pub fn tcp(proxy: Proxy) -> Client {
        Client {
            transport: Transport::Net {
                #[cfg(feature = "tls")]
                tls: None,
                proxy: Box::new(proxy),
            },
            idle: None,
        }
    }

    /// `http://` and `https://` URLs; TLS with `config` (its roots, its protocol versions).
    #[cfg(feature = "tls")]
    pub fn tls(config: std::sync::Arc<rustls::ClientConfig>, proxy: Proxy) -> Client {
        Client {
            transport: Transport::Net {
                tls: Some(config),
                proxy: Box::new(proxy),
            },
            idle: None,
        }
    }

    /// This client, keeping connections open between its bodiless requests (`GET`, `HEAD`)
    /// to one origin: the next such request goes on an idle one (a new one when the server
    /// has closed it meanwhile), which saves a TCP connect and a TLS handshake each.
    pub fn keep_alive(mut self) -> Client {
        self.idle = Some(IdlePool::default());
        self
    }

    /// The unix socket of a [`Client::unix`].
    pub fn socket(&self) -> Option<&Path> {
        match &self.transport {
            Transport::Unix(p) => Some(p),
            Transport::Net { .. } => None,
        }
    }

    /// Sends `request`; the answer once its header is in, whatever its status.
    pub async fn send(&self, request: Request) -> Result<Response, Error> {
        let Request {
            method,
            target,
            headers,
            body,
            timeouts,
        } = request;
        let deadline = timeouts.total.map(|t| (Instant::now() + t, t));
        let (url, uri, host, connect) = match &self.transport {
            Transport::Unix(socket) => {
                let url = format!("unix:{}:{target}", socket.display());
                let to = socket.display().to_string();
                let connect = Box::pin(async move {
                    UnixStream::connect(socket)
                        .await
                        .map(|s| Box::new(s) as BoxStream)
                        .map_err(|source| (to, source))
                });
                (url, target, "docker".to_string(), Connect::Unix(connect))
            }
            Transport::Net { proxy, .. } => {
                let u = Url::parse(&target).map_err(|source| Error::Url {
                    url: target.clone(),
                    source,
                })?;
                let via = proxy.for_url(&u).cloned();
                // Through a proxy, plain http is sent in absolute form to the proxy.
                let uri = match &via {
                    Some(_) if !u.https => target.clone(),
                    _ => u.path.clone(),
                };
                let host = u.host_header.clone();
                (target.clone(), uri, host, Connect::Net(u, via))
            }
        };
        // Kept open only for requests without a body: one sent on a connection the server
        // has just closed is sent again on a new one, which a body read from a stream forbids.
        let keep = match (&self.idle, &connect, &body) {
            (Some(pool), Connect::Net(u, via), Body::Empty) => Some((
                pool.clone(),
                format!(
                    "{}://{} via {}",
                    if u.https { "https" } else { "http" },
                    u.authority,
                    via.as_ref().map_or("-", |p| p.authority.as_str())
                ),
            )),
            _ => None,
        };
        let exchange = |source| Error::Exchange {
            url: url.clone(),
            source,
        };
        let build = |body: Body| {
            let mut builder = hyper::Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .header(HOST, host.clone());
            for (name, value) in &headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            builder
                .body(Outgoing::new(body))
                .map_err(|source| Error::Request {
                    url: url.clone(),
                    source,
                })
        };
        let answer_within = |sent| {
            timed(
                sent,
                timeouts.response,
                deadline,
                |timeout, ()| Error::ResponseTimeout {
                    url: url.clone(),
                    timeout,
                },
                |timeout| Error::TotalTimeout {
                    url: url.clone(),
                    timeout,
                },
            )
        };
        // An idle connection of the origin first; one the server closed is dropped.
        if let Some((pool, origin)) = &keep {
            while let Some(mut idle) = pool.take(origin) {
                if idle.sender.ready().await.is_err() {
                    continue;
                }
                let sent = idle.sender.send_request(build(Body::Empty)?);
                match answer_within(sent).await? {
                    Ok(answer) => {
                        return Ok(Response::new(
                            answer,
                            url.clone(),
                            &timeouts,
                            deadline,
                            idle.conn,
                            Some((pool.clone(), origin.clone(), idle.sender)),
                        ));
                    }
                    // Closed by the server as the request went out (its keep-alive ended).
                    Err(e) => log::debug!("{url}: kept connection: {e}; on a new one"),
                }
            }
        }
        let io = timed(
            self.connect(&url, connect),
            Some(timeouts.connect),
            deadline,
            |timeout, to| Error::ConnectTimeout {
                url: url.clone(),
                to,
                timeout,
            },
            |timeout| Error::TotalTimeout {
                url: url.clone(),
                timeout,
            },
        )
        .await??;

        let request = build(body)?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(exchange)?;
        let log_url = url.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("{log_url}: connection: {e}");
            }
        });
        let conn = ConnTask(task.abort_handle());
        let answer = answer_within(sender.send_request(request))
            .await?
            .map_err(exchange)?;
        // Without keep-alive, one request per connection: it closes once the body is read.
        let reuse = keep.map(|(pool, origin)| (pool, origin, sender));
        Ok(Response::new(answer, url, &timeouts, deadline, conn, reuse))
    }

    async fn connect(&self, url: &str, connect: Connect<'_>) -> Result<BoxStream, Error> {
        let failed = |to: String, source| Error::Connect {
            url: url.to_string(),
            to,
            source,
        };
        let (u, via) = match connect {
            Connect::Unix(c) => return c.await.map_err(|(to, e)| failed(to, e)),
            Connect::Net(u, via) => (u, via),
        };
        if u.https && !self.has_tls() {
            return Err(Error::NoTls {
                url: url.to_string(),
            });
        }
        let to = via.as_ref().map_or(&u.authority, |p| &p.authority);
        let tcp = TcpStream::connect(to)
            .await
            .map_err(|e| failed(to.clone(), e))?;
        if !u.https {
            return Ok(Box::new(tcp));
        }
        let io: BoxStream = match &via {
            Some(proxy) => Box::new(tunnel(url, proxy, tcp, &u.authority).await?),
            None => Box::new(tcp),
        };
        self.handshake(url, &u.host, io).await
    }

    fn has_tls(&self) -> bool {
        match &self.transport {
            #[cfg(feature = "tls")]
            Transport::Net { tls, .. } => tls.is_some(),
            _ => false,
        }
    }

    #[cfg(feature = "tls")]
    async fn handshake(&self, url: &str, host: &str, io: BoxStream) -> Result<BoxStream, Error> {
        let Transport::Net {
            tls: Some(config), ..
        } = &self.transport
        else {
            return Err(Error::NoTls {
                url: url.to_string(),
            });
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|source| {
            Error::TlsName {
                url: url.to_string(),
                host: host.to_string(),
                source,
            }
        })?;
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, io)
            .await
            .map_err(|source| Error::Tls {
                url: url.to_string(),
                host: host.to_string(),
                source,
            })?;
        Ok(Box::new(stream))
    }

    #[cfg(not(feature = "tls"))]
    async fn handshake(&self, url: &str, _host: &str, _io: BoxStream) -> Result<BoxStream, Error> {
        Err(Error::NoTls {
            url: url.to_string(),
        })
    }
}

type UnixConnect<'a> = std::pin::Pin<
    Box<dyn Future<Output = Result<BoxStream, (String, std::io::Error)>> + Send + 'a>,
>;

enum Connect<'a> {
    Unix(UnixConnect<'a>),
    Net(Url, Option<Url>),
}

/// `CONNECT authority` through `proxy` on `tcp`; the tunnel once the proxy says 2xx.
async fn tunnel(
    url: &str,
    proxy: &Url,
    tcp: TcpStream,
    authority: &str,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, Error> {
    let failed = |source| Error::Tunnel {
        url: url.to_string(),
        proxy: proxy.authority.clone(),
        source,
    };
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(failed)?;
    // Ends when the upgrade takes the connection over (or the tunnel request fails).
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let request = hyper::Request::builder()
        .method(Method::CONNECT)
        .uri(authority)
        .header(HOST, authority)
        .body(Empty::new())
        .map_err(|source| Error::Request {
            url: url.to_string(),
            source,
        })?;
    let answer = sender.send_request(request).await.map_err(failed)?;
    if !answer.status().is_success() {
        return Err(Error::TunnelRefused {
            url: url.to_string(),
            proxy: proxy.authority.clone(),
            status: answer.status().as_u16(),
        });
    }
    let upgraded = hyper::upgrade::on(answer).await.map_err(failed)?;
    Ok(TokioIo::new(upgraded))
}

/// Runs `f` within `phase` (from now) and before `deadline`, whichever comes first.
async fn timed<F: Future, T>(
    f: F,
    phase: Option<Duration>,
    deadline: Option<(Instant, Duration)>,
    phase_error: impl FnOnce(Duration, T) -> Error,
    total_error: impl FnOnce(Duration) -> Error,
) -> Result<F::Output, Error>
where
    T: PhaseTarget,
{
    let phase_at = phase.map(|d| (Instant::now() + d, d));
    let limit = match (phase_at, deadline) {
        (None, None) => return Ok(f.await),
        (Some(p), None) => (p.0, false),
        (None, Some(d)) => (d.0, true),
        (Some(p), Some(d)) => {
            if d.0 <= p.0 {
                (d.0, true)
            } else {
                (p.0, false)
            }
        }
    };
    match tokio::time::timeout_at(limit.0, f).await {
        Ok(v) => Ok(v),
        Err(_) if limit.1 => Err(total_error(deadline.map_or(Duration::ZERO, |d| d.1))),
        Err(_) => Err(phase_error(
            phase_at.map_or(Duration::ZERO, |p| p.1),
            T::unknown(),
        )),
    }
}

/// What a timed-out phase was waiting for (the connect target, or nothing).
trait PhaseTarget {
    fn unknown() -> Self;
}
impl PhaseTarget for () {
    fn unknown() -> Self {}
}
impl PhaseTarget for String {
    fn unknown() -> Self {
        String::new()
    }
}

/// Aborts the connection task when the response is dropped.
struct ConnTask(tokio::task::AbortHandle);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response whose header is in; the body is read with [`Response::chunk`],
/// [`Response::lines`] or [`Response::bytes`], within the request's idle and total timeouts.
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
    url: String,
    idle: Option<Duration>,
    deadline: Option<(Instant, Duration)>,
    conn: Option<ConnTask>,
    /// Where the connection goes back once the body is read whole (keep-alive).
    reuse: Option<(IdlePool, String, http1::SendRequest<Outgoing>)>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("url", &self.url)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Response {
    fn new(
        answer: hyper::Response<Incoming>,
        url: String,
        timeouts: &Timeouts,
        deadline: Option<(Instant, Duration)>,
        conn: ConnTask,
        reuse: Option<(IdlePool, String, http1::SendRequest<Outgoing>)>,
    ) -> Response {
        let (parts, body) = answer.into_parts();
        Response {
            status: parts.status,
            headers: parts.headers,
            body,
            url,
            idle: timeouts.idle,
            deadline,
            conn: Some(conn),
            reuse,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Content-Type` header (empty when there is none or it is not text).
    pub fn content_type(&self) -> &str {
        self.headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The next piece of the body as it arrived; `None` at its (complete) end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let url = &self.url;
            let frame = timed(
                self.body.frame(),
                self.idle,
                self.deadline,
                |timeout, ()| Error::IdleTimeout {
                    url: url.clone(),
                    timeout,
                },
                |timeout| Error::TotalTimeout {
                    url: url.clone(),
                    timeout,
                },
            )
            .await?;
            match frame {
                None => {
                    // Read whole: the connection may carry the next request.
                    if let (Some((pool, origin, sender)), Some(conn)) =
                        (self.reuse.take(), self.conn.take())
                    {
                        pool.put(Idle {
                            origin,
                            sender,
                            conn,
                        });
                    }
                    return Ok(None);
                }
                Some(Err(source)) => {
                    return Err(Error::Body {
                        url: self.url.clone(),
                        source,
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body, at most `limit` bytes: a declared `Content-Length` over the limit
    /// fails before anything is read.
    pub async fn bytes(mut self, limit: usize) -> Result<Bytes, Error> {
        let too_large = |url: &str| Error::TooLarge {
            url: url.to_string(),
            limit,
        };
        if self.body.size_hint().lower() > limit as u64 {
            return Err(too_large(&self.url));
        }
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if out.len() + chunk.len() > limit {
                return Err(too_large(&self.url));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// The body line by line (`\n`, a `\r` before it dropped), each at most `limit` bytes.
    pub fn lines(self, limit: usize) -> Lines {
        Lines {
            response: self,
            buf: Vec::new(),
            limit,
            done: false,
        }
    }
}

/// A body read line by line: [`Lines::next_line`].
#[derive(Debug)]
pub struct Lines {
    response: Response,
    buf: Vec<u8>,
    limit: usize,
    done: bool,
}

impl Lines {
    /// The next line without its end; the last one may lack a `\n`. `None` at the end.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.buf.len() > self.limit {
                return Err(Error::LineTooLong {
                    url: self.response.url.clone(),
                    limit: self.limit,
                });
            }
            if self.done {
                return Ok((!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf)));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => self.done = true,
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.response.url
    }
}
