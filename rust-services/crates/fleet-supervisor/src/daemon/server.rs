//! The API's HTTP server: fleet-http's serve loop (hyper: keep-alive, header-read timeout,
//! strict `Content-Length`), the peer filter per connection, and hyper's request turned
//! into the API's own [`Request`] (whole body, at most [`MAX_BODY`] bytes).

use std::rc::Rc;
use std::time::Duration;

use fleet_http::server::ChannelBody;
use fleet_http::server::{self, BodyError, Limits, Peers};
use fleet_http::{Bytes, Either, Full, Incoming};
use tokio::net::TcpListener;

use super::Reconciler;
use super::access;
use super::api;
use super::auth;
use super::device_api;
use super::local;
use super::message::{Request, Response, percent_decode};
use super::state::Shared;

const MAX_BODY: usize = fleet_release::target_state::MAX_TARGET_BYTES;
/// A client gets this long to send a request's header, and again its body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The API has a handful of clients on the device; more connections wait to be accepted.
const MAX_CONNECTIONS: usize = 16;

/// The limits the daemon serves with.
pub fn limits() -> Limits {
    Limits {
        max_connections: MAX_CONNECTIONS,
        header_read_timeout: READ_TIMEOUT,
        // One request per connection, as before hyper: clients that read the answer to EOF
        // (scripts, the CLI test) get it without `Connection: close`.
        keep_alive: false,
    }
}

/// Accepts connections forever, one task per connection.
pub async fn serve<R: Reconciler + 'static>(
    listener: TcpListener,
    shared: Rc<Shared<R>>,
    limits: Limits,
) {
    server::serve(listener, limits, move |peers: Peers| {
        let shared = shared.clone();
        async move {
            let allowed = access::allowed(&shared, peers.peer.ip(), peers.local.ip()).await;
            move |req: fleet_http::Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    if !allowed {
                        let refused = Response::text(
                            403,
                            "Forbidden: the supervisor API accepts the host and its containers only",
                        );
                        let mut r = to_hyper(refused);
                        r.headers_mut().insert(
                            fleet_http::header::CONNECTION,
                            fleet_http::header::HeaderValue::from_static("close"),
                        );
                        return r;
                    }
                    let response = match from_hyper(req).await {
                        Ok(request)
                            if local::is_log_stream(&request)
                                && auth::permitted(&shared, &request) =>
                        {
                            return streamed(local::logs(shared.clone()), "application/x-ndjson");
                        }
                        Ok(request)
                            if device_api::is_journal_follow(&request)
                                && auth::permitted(&shared, &request) =>
                        {
                            return match device_api::journal_follow(&request) {
                                Ok(body) => streamed(body, "text/plain; charset=utf-8"),
                                Err(response) => to_hyper(response),
                            };
                        }
                        Ok(request) => api::route(&shared, &request).await,
                        Err(response) => response,
                    };
                    to_hyper(response)
                }
            }
        }
    })
    .await
}

type Body = Either<Full<Bytes>, ChannelBody>;

fn to_hyper(r: Response) -> fleet_http::Response<Body> {
    server::response(r.status, r.content_type, r.body).map(Either::Left)
}

/// A 200 whose body is sent as it is produced.
fn streamed(body: ChannelBody, content_type: &'static str) -> fleet_http::Response<Body> {
    let mut r = fleet_http::Response::new(Either::Right(body));
    r.headers_mut().insert(
        fleet_http::header::CONTENT_TYPE,
        fleet_http::header::HeaderValue::from_static(content_type),
    );
    r
}

/// The API's request from hyper's, body read whole; an error is the response to send.
async fn from_hyper(req: fleet_http::Request<Incoming>) -> Result<Request, Response> {
    let (head, body) = req.into_parts();
    let body = server::read_body(body, MAX_BODY, READ_TIMEOUT)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { .. } => Response::text(413, "request body too large"),
            BodyError::Timeout(_) => Response::text(408, "request not received in time"),
            BodyError::Read(_) => Response::text(400, &e.to_string()),
        })?;
    let mut headers = Vec::new();
    for (name, value) in &head.headers {
        let value = value
            .to_str()
            .map_err(|_| Response::text(400, "bad header value"))?;
        headers.push((name.as_str().to_string(), value.trim().to_string()));
    }
    let query = head
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Ok(Request {
        method: head.method.as_str().to_string(),
        path: percent_decode(head.uri.path()),
        query,
        headers,
        body: body.to_vec(),
    })
}
