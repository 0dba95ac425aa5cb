//! `http[s]://host[:port][/path]` URLs taken apart: just what a request needs.

/// A parsed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// The host name or address the certificate must be valid for (no brackets).
    pub host: String,
    /// `host:port` to connect to (IPv6 literals in brackets).
    pub authority: String,
    /// The `Host` header value (the port only when the URL names one).
    pub host_header: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The URL named its port.
    pub explicit_port: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not an http:// or https:// URL")]
    Scheme,
    #[error("missing host")]
    NoHost,
    #[error("user info (user@host) is not supported")]
    UserInfo,
    #[error("bad port")]
    Port,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, UrlError> {
        let lower = url.to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("https://") {
            (true, &url[8..])
        } else if lower.starts_with("http://") {
            (false, &url[7..])
        } else {
            return Err(UrlError::Scheme);
        };
        let (host_port, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if host_port.contains('@') {
            return Err(UrlError::UserInfo);
        }
        // A port follows the last `:` unless that `:` is inside an IPv6 literal.
        let (host, port) = match host_port.rfind(':') {
            Some(i) if !host_port[i..].contains(']') => {
                (&host_port[..i], Some(&host_port[i + 1..]))
            }
            _ => (host_port, None),
        };
        if host.is_empty() || host == "[]" {
            return Err(UrlError::NoHost);
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| UrlError::Port)?),
            None => None,
        };
        Ok(Url {
            https,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            authority: format!("{host}:{}", port.unwrap_or(if https { 443 } else { 80 })),
            host_header: host_port.to_string(),
            path,
            explicit_port: port.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_urls_apart() {
        let u = Url::parse("http://api.example:8080/base").unwrap();
        assert_eq!(u.authority, "api.example:8080");
        assert_eq!(u.path, "/base");
        let u = Url::parse("http://10.0.0.1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("10.0.0.1:80", "/")
        );
        let u = Url::parse("http://[::1]:48484/v1/healthy").unwrap();
        assert_eq!(u.authority, "[::1]:48484");
        assert_eq!(Url::parse("http://[::1]/").unwrap().authority, "[::1]:80");
        assert_eq!(Url::parse("http://h?a=1").unwrap().path, "/?a=1");
    }

    #[test]
    fn takes_https_urls_apart() {
        let u = Url::parse("https://api.balena-cloud.com").unwrap();
        assert!(u.https);
        assert_eq!(u.authority, "api.balena-cloud.com:443");
        assert_eq!(u.host, "api.balena-cloud.com");
        assert_eq!(u.host_header, "api.balena-cloud.com");
        let u = Url::parse("HTTPS://[::1]:8443/x").unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str()), ("::1", "/x"));
    }

    #[test]
    fn refuses_junk_with_the_reason() {
        assert_eq!(Url::parse("ftp://x"), Err(UrlError::Scheme));
        assert_eq!(Url::parse("http://:80/"), Err(UrlError::NoHost));
        assert_eq!(Url::parse("http:///"), Err(UrlError::NoHost));
        assert_eq!(Url::parse("http://host:99999/"), Err(UrlError::Port));
        assert_eq!(Url::parse("http://user@host/"), Err(UrlError::UserInfo));
    }
}
