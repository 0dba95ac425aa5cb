//! Proxy settings from the environment, as curl reads them.
//!
//! - `https://` URLs go through `https_proxy`, else `HTTPS_PROXY`, as an HTTP `CONNECT`
//!   tunnel (TLS runs end to end inside it; the proxy sees only the host and port).
//! - `http://` URLs go through `http_proxy`, else `HTTP_PROXY`, as an absolute-form request
//!   (`GET http://host/path HTTP/1.1` sent to the proxy).
//! - A proxy is `http://host[:port]` or just `host[:port]`; the port defaults to 1080 (curl's
//!   default). `https://` proxies and proxy credentials (`user:pass@`) are not supported.
//! - `no_proxy`, else `NO_PROXY`: a comma-separated list; `*` alone bypasses the proxy for
//!   every host; an entry (a leading `.` or `*.` is ignored, a `:port` is ignored) matches that
//!   host and every host below it (`example.com` matches `api.example.com`, not
//!   `badexample.com`); an IP address matches only itself (no CIDR ranges). Case-insensitive.
//! - An empty variable counts as unset.

use super::url::{Url, UrlError};

/// Where requests go: directly or through a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    http: Option<Url>,
    https: Option<Url>,
    no_proxy: NoProxy,
}

/// Hosts reached without a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{var}={value:?} is not a usable proxy")]
    Url {
        var: &'static str,
        value: String,
        #[source]
        source: UrlError,
    },
    #[error("{var}={value:?}: only http:// proxies are supported")]
    Scheme { var: &'static str, value: String },
}

impl Proxy {
    /// No proxy at all.
    pub fn none() -> Proxy {
        Proxy::default()
    }

    /// From `https_proxy`/`HTTPS_PROXY`, `http_proxy`/`HTTP_PROXY`, `no_proxy`/`NO_PROXY`.
    pub fn from_env() -> Result<Proxy, ProxyError> {
        let var = |lower: &'static str, upper: &'static str| {
            [lower, upper].into_iter().find_map(|name| {
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let http = var("http_proxy", "HTTP_PROXY");
        let https = var("https_proxy", "HTTPS_PROXY");
        let no_proxy = var("no_proxy", "NO_PROXY").map(|(_, v)| v);
        Ok(Proxy {
            http: http.map(|(n, v)| proxy_url(n, &v)).transpose()?,
            https: https.map(|(n, v)| proxy_url(n, &v)).transpose()?,
            no_proxy: NoProxy::parse(no_proxy.as_deref().unwrap_or("")),
        })
    }

    /// Explicit settings, with the same syntax as the variables.
    pub fn new(
        http: Option<&str>,
        https: Option<&str>,
        no_proxy: Option<&str>,
    ) -> Result<Proxy, ProxyError> {
        Ok(Proxy {
            http: http.map(|v| proxy_url("http_proxy", v)).transpose()?,
            https: https.map(|v| proxy_url("https_proxy", v)).transpose()?,
            no_proxy: NoProxy::parse(no_proxy.unwrap_or("")),
        })
    }

    /// The proxy a request to `url` goes through, if any.
    pub fn for_url(&self, url: &Url) -> Option<&Url> {
        let proxy = if url.https { &self.https } else { &self.http };
        proxy.as_ref().filter(|_| !self.no_proxy.matches(&url.host))
    }

    pub fn is_none(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }
}

fn proxy_url(var: &'static str, value: &str) -> Result<Url, ProxyError> {
    let value = value.trim();
    let lower = value.to_ascii_lowercase();
    if lower.contains("://") && !lower.starts_with("http://") {
        return Err(ProxyError::Scheme {
            var,
            value: value.to_string(),
        });
    }
    let full = if lower.starts_with("http://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let mut url = Url::parse(&full).map_err(|source| ProxyError::Url {
        var,
        value: value.to_string(),
        source,
    })?;
    if !url.explicit_port {
        url.authority = format!("{}:1080", url.host_header);
    }
    Ok(url)
}

impl NoProxy {
    pub fn parse(list: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                out.all = true;
                continue;
            }
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            // `[::1]:8080`, `[::1]`, `host:8080`; a bare IPv6 address keeps its colons.
            let host = if let Some(rest) = entry.strip_prefix('[') {
                rest.split(']').next().unwrap_or(rest)
            } else if entry.matches(':').count() == 1 {
                entry.split(':').next().unwrap_or(entry)
            } else {
                entry
            };
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            if !host.is_empty() {
                out.entries.push(host);
            }
        }
        out
    }

    /// `host` (a name or an address, no brackets) is reached directly.
    pub fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        self.entries.iter().any(|e| {
            host == *e
                || (!is_ip
                    && host.len() > e.len()
                    && host.ends_with(e.as_str())
                    && host.as_bytes()[host.len() - e.len() - 1] == b'.')
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    #[test]
    fn no_proxy_matches_hosts_and_their_subdomains() {
        let n = NoProxy::parse(" example.com, .corp.local,*.lan, 10.0.0.1, [::1]:8080, host:99 ");
        assert!(n.matches("example.com"));
        assert!(n.matches("API.Example.com"));
        assert!(!n.matches("badexample.com"));
        assert!(n.matches("a.corp.local"));
        assert!(n.matches("corp.local"));
        assert!(n.matches("x.lan"));
        assert!(n.matches("10.0.0.1"));
        assert!(!n.matches("110.0.0.1"));
        assert!(n.matches("::1"));
        assert!(n.matches("host"));
        assert!(!n.matches("other"));
        assert!(NoProxy::parse("a, *").matches("anything"));
        assert!(!NoProxy::parse("").matches("anything"));
    }

    #[test]
    fn proxies_by_scheme_unless_bypassed() {
        let p = Proxy::new(
            Some("plain.proxy:3128"),
            Some("http://tls.proxy"),
            Some("internal"),
        )
        .unwrap();
        let https = p.for_url(&url("https://api.example/x")).unwrap();
        assert_eq!(https.authority, "tls.proxy:1080");
        let http = p.for_url(&url("http://api.example/x")).unwrap();
        assert_eq!(http.authority, "plain.proxy:3128");
        assert_eq!(p.for_url(&url("https://a.internal/")), None);
        assert_eq!(Proxy::none().for_url(&url("https://a/")), None);
    }

    #[test]
    fn refuses_unusable_proxies() {
        assert!(matches!(
            Proxy::new(None, Some("https://p:1"), None),
            Err(ProxyError::Scheme { .. })
        ));
        assert!(matches!(
            Proxy::new(None, Some("user:pw@p:1"), None),
            Err(ProxyError::Url { .. })
        ));
    }
}
