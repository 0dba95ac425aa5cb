//! The cloud client (target poll, state report) and the healthcheck's request, on the
//! workspace's HTTP client (`fleet_http::client`, hyper 1): TLS for `https://` with the
//! trust roots of [`super::tls`], proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` for
//! the cloud ([`Route::ProxyFromEnv`]), a limit on the whole call and on the answer's size.

use std::time::Duration;

use fleet_http::client::{self, Client, Method, Proxy, ProxyError, Request, Timeouts};

use super::tls::{self, Tls};

/// Largest response accepted (a target state is at most 4 MiB).
const MAX_RESPONSE: usize = fleet_release::target_state::MAX_TARGET_BYTES + 64 * 1024;
/// Connecting (TCP, proxy tunnel, TLS handshake) may take this long of the call's time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A whole answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The `ETag` header, for a later `If-None-Match`.
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A failed handshake; `what` says why in words (an untrusted certificate, a name
    /// mismatch, an expired one).
    #[error("{url}: {what}")]
    Tls {
        url: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: the proxy settings are unusable")]
    Proxy {
        url: String,
        #[source]
        source: ProxyError,
    },
    /// Anything else: it names the URL and chains its cause.
    #[error(transparent)]
    Http(client::Error),
}

impl From<client::Error> for ClientError {
    fn from(e: client::Error) -> ClientError {
        match e {
            client::Error::Tls { url, host, source } => ClientError::Tls {
                url,
                what: tls::describe_failure(&source, &host),
                source,
            },
            other => ClientError::Http(other),
        }
    }
}

/// How a request reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight there (the healthcheck, the local API).
    Direct,
    /// Through the proxy the environment names for the URL's scheme, unless `NO_PROXY`
    /// lists the host (the cloud).
    ProxyFromEnv,
}

/// `GET url` with extra headers. `tls` is needed for `https://` URLs only; the whole call
/// (connect, answer, body) gets `timeout`.
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
    tls: Option<&Tls>,
    route: Route,
    timeout: Duration,
) -> Result<Response, ClientError> {
    request(Method::GET, url, headers, b"", tls, route, timeout).await
}

pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    tls: Option<&Tls>,
    route: Route,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let proxy = match route {
        Route::Direct => Proxy::none(),
        Route::ProxyFromEnv => Proxy::from_env().map_err(|source| ClientError::Proxy {
            url: url.to_string(),
            source,
        })?,
    };
    let client = match tls {
        Some(tls) => Client::tls(tls.config.clone(), proxy),
        None => Client::tcp(proxy),
    };
    let mut req = Request::new(method, url)
        .header("accept", "application/json")
        .timeouts(Timeouts::total(CONNECT_TIMEOUT.min(timeout), timeout));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if !body.is_empty() {
        req = req.body(body.to_vec().into());
    }
    let answer = client.send(req).await?;
    let status = answer.status().as_u16();
    let etag = answer
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = answer.bytes(MAX_RESPONSE).await?;
    Ok(Response {
        status,
        etag,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_names_the_url_and_chains_the_cause() {
        // A port just bound and released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/v1/healthy");
        let Err(e) = get(&url, &[], None, Route::Direct, Duration::from_secs(5)).await else {
            panic!("{url} answered");
        };
        assert!(
            matches!(e, ClientError::Http(client::Error::Connect { .. })),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("{url}: cannot connect to 127.0.0.1:{port}")
        );
        let line = fleet_log::error::one_line(&e);
        assert!(line.len() > e.to_string().len(), "{line}");
    }

    #[tokio::test]
    async fn https_without_trust_roots_is_refused() {
        let Err(e) = get(
            "https://127.0.0.1:1/",
            &[],
            None,
            Route::Direct,
            Duration::from_secs(5),
        )
        .await
        else {
            panic!("answered");
        };
        assert!(
            matches!(e, ClientError::Http(client::Error::NoTls { .. })),
            "{e:?}"
        );
    }
}
