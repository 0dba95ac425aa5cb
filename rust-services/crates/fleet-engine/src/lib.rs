//! A small client for the Docker Engine API over its unix socket: just the endpoints the
//! fleetOS host needs (ping, version, containers, images, image load). See README.md for
//! why this is not bollard or hyper.

pub mod http;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use http::Body;
use serde::de::DeserializeOwned;
pub use types::*;

/// The newest API version this client is written against; Debian bookworm's docker.io
/// speaks 1.41, and every call used here exists since 1.25.
pub const CLIENT_API_VERSION: &str = "1.41";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("engine socket {socket}: {source}")]
    Io {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("engine protocol error: {0}")]
    Protocol(String),
    #[error("engine {method} {path}: HTTP {status}: {message}")]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("engine {path}: cannot decode response: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
    #[error("image load: {0}")]
    Load(String),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// True when the engine answered "no such object".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { status: 404, .. })
    }
}

#[derive(Debug, Clone)]
pub struct Engine {
    socket: PathBuf,
    version: String,
}

impl Engine {
    /// A client using [`CLIENT_API_VERSION`] until [`Engine::negotiate`] is called.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Engine {
            socket: socket.into(),
            version: CLIENT_API_VERSION.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn api_version(&self) -> &str {
        &self.version
    }

    /// Uses the lower of the engine's and this client's API versions.
    pub async fn negotiate(&mut self) -> Result<Version, Error> {
        let v: Version = self.get_json("/version", false).await?;
        if version_less(&v.api_version, CLIENT_API_VERSION) {
            self.version = v.api_version.clone();
        } else {
            self.version = CLIENT_API_VERSION.into();
        }
        Ok(v)
    }

    pub async fn ping(&self) -> Result<(), Error> {
        self.call("GET", "/_ping", Body::Empty, false)
            .await
            .map(|_| ())
    }

    pub async fn list_containers(&self, all: bool) -> Result<Vec<ContainerSummary>, Error> {
        self.get_json(&format!("/containers/json?all={}", all as u8), true)
            .await
    }

    /// `Ok(None)` when the container does not exist.
    pub async fn inspect_container(&self, name: &str) -> Result<Option<ContainerInspect>, Error> {
        optional(
            self.get_json(&format!("/containers/{}/json", encode(name)), true)
                .await,
        )
    }

    pub async fn create_container(
        &self,
        name: &str,
        spec: &CreateContainer,
    ) -> Result<String, Error> {
        let body = serde_json::to_vec(spec).map_err(|e| Error::Protocol(e.to_string()))?;
        let path = format!("/containers/create?name={}", encode(name));
        let r = self.call("POST", &path, Body::Json(body), true).await?;
        let created: Created = decode(&path, &r)?;
        Ok(created.id)
    }

    pub async fn start_container(&self, name: &str) -> Result<(), Error> {
        self.call(
            "POST",
            &format!("/containers/{}/start", encode(name)),
            Body::Empty,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Stops with SIGTERM, then SIGKILL after `timeout_s`. Already stopped is fine.
    pub async fn stop_container(&self, name: &str, timeout_s: u32) -> Result<(), Error> {
        let path = format!("/containers/{}/stop?t={timeout_s}", encode(name));
        match self.call("POST", &path, Body::Empty, true).await {
            Err(Error::Api { status: 304, .. }) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    pub async fn kill_container(&self, name: &str) -> Result<(), Error> {
        self.call(
            "POST",
            &format!("/containers/{}/kill", encode(name)),
            Body::Empty,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Removes the container (and anonymous volumes only when `volumes`). Missing is fine.
    pub async fn remove_container(&self, name: &str, force: bool) -> Result<(), Error> {
        let path = format!("/containers/{}?force={}&v=0", encode(name), force as u8);
        match self.call("DELETE", &path, Body::Empty, true).await {
            Err(e) if e.is_not_found() => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Blocks until the container stops; returns its exit code.
    pub async fn wait_container(&self, name: &str) -> Result<i64, Error> {
        let path = format!("/containers/{}/wait", encode(name));
        let r = self.call("POST", &path, Body::Empty, true).await?;
        let w: WaitResponse = decode(&path, &r)?;
        Ok(w.status_code)
    }

    /// `Ok(None)` when the image does not exist.
    pub async fn inspect_image(&self, name: &str) -> Result<Option<ImageInspect>, Error> {
        optional(
            self.get_json(&format!("/images/{}/json", encode(name)), true)
                .await,
        )
    }

    /// `docker load`: streams a tarball to the engine; returns the lines it reported.
    pub async fn load_image(&self, tarball: &Path) -> Result<Vec<String>, Error> {
        let file_err = |source| Error::File {
            path: tarball.into(),
            source,
        };
        let mut file = tokio::fs::File::open(tarball).await.map_err(file_err)?;
        let len = file.metadata().await.map_err(file_err)?.len();
        let r = self
            .call(
                "POST",
                "/images/load?quiet=1",
                Body::Tar(&mut file, len),
                true,
            )
            .await?;
        progress_lines("/images/load", &r.body)
    }

    /// Containers carrying `label` (`key` or `key=value`), stopped ones included.
    pub async fn list_containers_labelled(
        &self,
        label: &str,
    ) -> Result<Vec<ContainerSummary>, Error> {
        self.get_json(
            &format!("/containers/json?all=1&filters={}", label_filter(label)),
            true,
        )
        .await
    }

    /// Stops with the container's own stop signal and `StopTimeout` (set at create).
    /// Already stopped is fine.
    pub async fn stop_container_default(&self, name: &str) -> Result<(), Error> {
        let path = format!("/containers/{}/stop", encode(name));
        match self.call("POST", &path, Body::Empty, true).await {
            Err(Error::Api { status: 304, .. }) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Starts a created or stopped container; already running is fine.
    pub async fn start_container_idempotent(&self, name: &str) -> Result<(), Error> {
        match self.start_container(name).await {
            Err(Error::Api { status: 304, .. }) => Ok(()),
            r => r,
        }
    }

    pub async fn list_images(&self) -> Result<Vec<ImageSummary>, Error> {
        self.get_json("/images/json", true).await
    }

    /// Removes an image reference (the image itself once nothing else refers to it).
    /// Missing is fine; in use is an error (HTTP 409).
    pub async fn remove_image(&self, name: &str) -> Result<(), Error> {
        let path = format!("/images/{}", encode(name));
        match self.call("DELETE", &path, Body::Empty, true).await {
            Err(e) if e.is_not_found() => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Tags `source` (name or ID) as `repo:tag`.
    pub async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<(), Error> {
        let path = format!(
            "/images/{}/tag?repo={}&tag={}",
            encode(source),
            encode(repo),
            encode(tag)
        );
        self.call("POST", &path, Body::Empty, true)
            .await
            .map(|_| ())
    }

    /// `docker pull` without registry credentials: `reference` is `repo[:tag]` or
    /// `repo@digest`. The engine streams progress; an `error` in it fails the pull.
    pub async fn pull_image(&self, reference: &str) -> Result<(), Error> {
        let (repo, tag) = split_reference(reference);
        let path = format!(
            "/images/create?fromImage={}&tag={}",
            encode(repo),
            encode(tag)
        );
        let r = self.call("POST", &path, Body::Empty, true).await?;
        progress_lines(&path, &r.body).map(|_| ())
    }

    /// Volumes carrying `label` (`key` or `key=value`).
    pub async fn list_volumes_labelled(&self, label: &str) -> Result<Vec<VolumeSummary>, Error> {
        let list: VolumeList = self
            .get_json(&format!("/volumes?filters={}", label_filter(label)), true)
            .await?;
        Ok(list.volumes)
    }

    /// Creates a volume; an existing volume of that name is returned as is by the engine.
    pub async fn create_volume(&self, spec: &CreateVolume) -> Result<(), Error> {
        let body = serde_json::to_vec(spec).map_err(|e| Error::Protocol(e.to_string()))?;
        self.call("POST", "/volumes/create", Body::Json(body), true)
            .await
            .map(|_| ())
    }

    /// Missing is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<(), Error> {
        let path = format!("/volumes/{}", encode(name));
        match self.call("DELETE", &path, Body::Empty, true).await {
            Err(e) if e.is_not_found() => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Networks carrying `label` (`key` or `key=value`).
    pub async fn list_networks_labelled(&self, label: &str) -> Result<Vec<NetworkSummary>, Error> {
        self.get_json(&format!("/networks?filters={}", label_filter(label)), true)
            .await
    }

    /// Every network the engine has (with driver and IPAM subnets).
    pub async fn list_networks(&self) -> Result<Vec<NetworkSummary>, Error> {
        self.get_json("/networks", true).await
    }

    /// Creates a network; one of the same name existing already is fine.
    pub async fn create_network(&self, spec: &CreateNetwork) -> Result<(), Error> {
        let body = serde_json::to_vec(spec).map_err(|e| Error::Protocol(e.to_string()))?;
        match self
            .call("POST", "/networks/create", Body::Json(body), true)
            .await
        {
            Err(Error::Api { status: 409, .. }) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Missing is fine.
    pub async fn remove_network(&self, name: &str) -> Result<(), Error> {
        let path = format!("/networks/{}", encode(name));
        match self.call("DELETE", &path, Body::Empty, true).await {
            Err(e) if e.is_not_found() => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Attaches a (created or running) container to a further network.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        endpoint: &EndpointConfig,
    ) -> Result<(), Error> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Connect<'a> {
            container: &'a str,
            endpoint_config: &'a EndpointConfig,
        }
        let body = serde_json::to_vec(&Connect {
            container,
            endpoint_config: endpoint,
        })
        .map_err(|e| Error::Protocol(e.to_string()))?;
        let path = format!("/networks/{}/connect", encode(network));
        self.call("POST", &path, Body::Json(body), true)
            .await
            .map(|_| ())
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, versioned: bool) -> Result<T, Error> {
        let r = self.call("GET", path, Body::Empty, versioned).await?;
        decode(path, &r)
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Body<'_>,
        versioned: bool,
    ) -> Result<http::Response, Error> {
        let target = if versioned {
            format!("/v{}{path}", self.version)
        } else {
            path.to_string()
        };
        let r = http::request(&self.socket, method, &target, body).await?;
        if (200..300).contains(&r.status) {
            return Ok(r);
        }
        let message = serde_json::from_slice::<ErrorMessage>(&r.body)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&r.body).trim().to_string());
        Err(Error::Api {
            method,
            path: path.to_string(),
            status: r.status,
            message,
        })
    }
}

fn decode<T: DeserializeOwned>(path: &str, r: &http::Response) -> Result<T, Error> {
    serde_json::from_slice(&r.body).map_err(|source| Error::Decode {
        path: path.into(),
        source,
    })
}

/// A streamed progress answer (a sequence of JSON messages): its text lines, or the first
/// `error` it reports.
fn progress_lines(path: &str, body: &[u8]) -> Result<Vec<String>, Error> {
    let mut lines = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<LoadMessage>();
    for msg in stream {
        let msg = msg.map_err(|e| Error::Decode {
            path: path.into(),
            source: e,
        })?;
        if let Some(err) = msg.error {
            return Err(Error::Load(err));
        }
        if let Some(s) = msg.stream.or(msg.status) {
            lines.push(s.trim().to_string());
        }
    }
    Ok(lines)
}

/// `{"label":["key=value"]}`, percent-encoded for a query string.
fn label_filter(label: &str) -> String {
    let filter = serde_json::json!({ "label": [label] });
    encode(&filter.to_string())
}

/// `repo:tag` → (`repo`, `tag`); `repo@sha256:…` keeps the digest as the tag part, as the
/// pull endpoint wants; a `:` inside a registry host (`host:5000/repo`) is not a tag.
fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((repo, digest)) = reference.split_once('@') {
        return (repo, digest);
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

fn optional<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Percent-encodes a path segment or query value (names, `repo:tag`).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Compares dotted API versions numerically ("1.9" < "1.41").
fn version_less(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        s.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    parse(a) < parse(b)
}

/// Labels as the API sends them (`null` when there are none).
pub type Labels = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_less("1.9", "1.41"));
        assert!(!version_less("1.43", "1.41"));
    }

    #[test]
    fn splits_references() {
        assert_eq!(split_reference("a/b:1"), ("a/b", "1"));
        assert_eq!(split_reference("host:5000/b"), ("host:5000/b", "latest"));
        assert_eq!(split_reference("b@sha256:ff"), ("b", "sha256:ff"));
        assert_eq!(split_reference("host:5000/b:2"), ("host:5000/b", "2"));
    }

    #[test]
    fn encodes_names() {
        assert_eq!(encode("fleet/supervisor:v1"), "fleet%2Fsupervisor%3Av1");
    }
}
