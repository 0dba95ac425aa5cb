//! A small client for the Docker Engine API over its unix socket: just the endpoints the
//! fleetOS host needs (ping, version, containers, images, image load and pull, volumes,
//! networks), on the workspace's HTTP client (`fleet_http::client`, hyper 1) with a timeout
//! for every call. See README.md for why this is not bollard.

mod logs;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_http::client::{self, Client, Lines, Method, Request, Timeouts};
pub use logs::{LogFollower, Stream};
use serde::de::DeserializeOwned;
pub use types::*;

/// The newest API version this client is written against; Debian bookworm's docker.io
/// speaks 1.41, and every call used here exists since 1.25.
pub const CLIENT_API_VERSION: &str = "1.41";

/// Largest JSON answer read (a container or image list on a busy host).
const MAX_JSON: usize = 16 * 1024 * 1024;
/// Largest error answer read (its message goes into [`Error::Api`]).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest line of a streamed progress answer (load, pull).
const MAX_PROGRESS_LINE: usize = 1024 * 1024;

const SECOND: Duration = Duration::from_secs(1);

/// Inspect, list, create, start, kill, tag, volumes, networks: the engine answers these at
/// once unless it is wedged.
const QUICK: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    response: Some(Duration::from_secs(60)),
    idle: Some(Duration::from_secs(60)),
    total: Some(Duration::from_secs(120)),
};

/// Removals (a container's or image's layers are deleted first; slow on vfs) and a stop
/// with the container's own `StopTimeout` (unknown here).
const SLOW: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    response: Some(Duration::from_secs(15 * 60)),
    idle: Some(Duration::from_secs(60)),
    total: Some(Duration::from_secs(16 * 60)),
};

/// A pull: the engine answers once the registry is reached and then streams progress; a
/// layer being extracted can be silent for minutes, there is no limit on the whole.
const PULL: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    response: Some(Duration::from_secs(5 * 60)),
    idle: Some(Duration::from_secs(10 * 60)),
    total: None,
};

/// A load: the tarball is sent while the engine imports it (the answer may only start at
/// the end of a large one).
const LOAD: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    response: Some(Duration::from_secs(60 * 60)),
    idle: Some(Duration::from_secs(10 * 60)),
    total: None,
};

/// A wait: answered when the container stops.
const WAIT: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    response: Some(Duration::from_secs(24 * 60 * 60)),
    idle: Some(Duration::from_secs(60)),
    total: None,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The exchange itself failed (no socket, a timeout, a broken answer); it names the
    /// socket and path.
    #[error(transparent)]
    Http(#[from] client::Error),
    #[error("engine {path}: cannot encode the request")]
    Encode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("engine {method} {path}: HTTP {status}: {message}")]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("engine {path}: cannot decode the response")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// An `error` message in a streamed progress answer (load, pull).
    #[error("engine {path}: {message}")]
    Progress { path: String, message: String },
    #[error("{path}: cannot read", path = path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A request body.
enum Body {
    Empty,
    Json(Vec<u8>),
    /// A tarball of known length, streamed as it is read.
    Tar(tokio::fs::File, u64),
}

impl Error {
    /// True when the engine answered "no such object".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { status: 404, .. })
    }
}

#[derive(Debug, Clone)]
pub struct Engine {
    client: Client,
    socket: PathBuf,
    version: String,
}

impl Engine {
    /// A client using [`CLIENT_API_VERSION`] until [`Engine::negotiate`] is called.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        let socket = socket.into();
        Engine {
            client: Client::unix(&socket),
            socket,
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
        let path = format!("/containers/create?name={}", encode(name));
        let body = serde_json::to_vec(spec).map_err(encode_error(&path))?;
        let r = self.call("POST", &path, Body::Json(body), true).await?;
        let created: Created = decode(&path, r).await?;
        Ok(created.id)
    }

    /// `POST /containers/<name>/rename?name=<to>`.
    pub async fn rename_container(&self, name: &str, to: &str) -> Result<(), Error> {
        self.call(
            "POST",
            &format!("/containers/{}/rename?name={}", encode(name), encode(to)),
            Body::Empty,
            true,
        )
        .await
        .map(|_| ())
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
        let grace = SECOND * timeout_s.saturating_add(60);
        let timeouts = Timeouts {
            response: Some(grace),
            total: Some(grace + SECOND * 60),
            ..QUICK
        };
        match self
            .call_with("POST", &path, Body::Empty, true, timeouts)
            .await
        {
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
        match self
            .call_with("DELETE", &path, Body::Empty, true, SLOW)
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Blocks until the container stops; returns its exit code.
    pub async fn wait_container(&self, name: &str) -> Result<i64, Error> {
        let path = format!("/containers/{}/wait", encode(name));
        let r = self
            .call_with("POST", &path, Body::Empty, true, WAIT)
            .await?;
        let w: WaitResponse = decode(&path, r).await?;
        Ok(w.status_code)
    }

    /// `Ok(None)` when the image does not exist.
    pub async fn inspect_image(&self, name: &str) -> Result<Option<ImageInspect>, Error> {
        optional(
            self.get_json(&format!("/images/{}/json", encode(name)), true)
                .await,
        )
    }

    /// `docker load`: streams a tarball to the engine; returns the lines it reported, read
    /// as they come.
    pub async fn load_image(&self, tarball: &Path) -> Result<Vec<String>, Error> {
        let file_err = |source| Error::File {
            path: tarball.into(),
            source,
        };
        let file = tokio::fs::File::open(tarball).await.map_err(file_err)?;
        let len = file.metadata().await.map_err(file_err)?.len();
        let path = "/images/load?quiet=1";
        let r = self
            .call_with("POST", path, Body::Tar(file, len), true, LOAD)
            .await?;
        let mut lines = Vec::new();
        progress(path, r.lines(MAX_PROGRESS_LINE), |msg| {
            if let Some(s) = msg.stream.as_ref().or(msg.status.as_ref()) {
                lines.push(s.trim().to_string());
            }
        })
        .await?;
        Ok(lines)
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
        match self.call_with("POST", &path, Body::Empty, true, SLOW).await {
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
        match self
            .call_with("DELETE", &path, Body::Empty, true, SLOW)
            .await
        {
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
    /// `repo@digest`. The engine streams progress (read line by line, nothing kept); an
    /// `error` in it fails the pull.
    pub async fn pull_image(&self, reference: &str) -> Result<(), Error> {
        self.pull_image_as(reference, None).await
    }

    /// `docker pull` with credentials for the image's registry (`X-Registry-Auth`): the
    /// engine presents them to the registry, or to the token service the registry names
    /// (openBalena's `/auth/v1/token`), as `docker login` credentials would be.
    pub async fn pull_image_as(
        &self,
        reference: &str,
        login: Option<&RegistryLogin>,
    ) -> Result<(), Error> {
        self.pull_image_reporting(reference, login, |_| {}).await
    }

    /// [`Engine::pull_image_as`], calling `on_percent` with the pull's progress (whole
    /// percent over its layers' bytes, [`PullProgress`]) each time it changes.
    pub async fn pull_image_reporting(
        &self,
        reference: &str,
        login: Option<&RegistryLogin>,
        mut on_percent: impl FnMut(u8),
    ) -> Result<(), Error> {
        let (repo, tag) = split_reference(reference);
        let path = format!(
            "/images/create?fromImage={}&tag={}",
            encode(repo),
            encode(tag)
        );
        let mut request =
            Request::new(Method::POST, format!("/v{}{path}", self.version)).timeouts(PULL);
        if let Some(login) = login {
            request = request.header("x-registry-auth", login.header_value(reference));
        }
        let r = self.send_checked("POST", request, &path).await?;
        // Thousands of progress lines for a large image: read as they come, only the
        // per-layer byte counts kept.
        let mut pull = PullProgress::default();
        let mut last = None;
        progress(&path, r.lines(MAX_PROGRESS_LINE), |msg| {
            pull.update(msg);
            let now = pull.percent();
            if last != Some(now) {
                last = Some(now);
                on_percent(now);
            }
        })
        .await
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
        let body = serde_json::to_vec(spec).map_err(encode_error("/volumes/create"))?;
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
        let body = serde_json::to_vec(spec).map_err(encode_error("/networks/create"))?;
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
        .map_err(encode_error("/networks/connect"))?;
        let path = format!("/networks/{}/connect", encode(network));
        self.call("POST", &path, Body::Json(body), true)
            .await
            .map(|_| ())
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, versioned: bool) -> Result<T, Error> {
        let r = self.call("GET", path, Body::Empty, versioned).await?;
        decode(path, r).await
    }

    /// A call with the [`QUICK`] timeouts.
    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Body,
        versioned: bool,
    ) -> Result<client::Response, Error> {
        self.call_with(method, path, body, versioned, QUICK).await
    }

    /// The answer when it is a 2xx, else [`Error::Api`] with the engine's message.
    async fn call_with(
        &self,
        method: &'static str,
        path: &str,
        body: Body,
        versioned: bool,
        timeouts: Timeouts,
    ) -> Result<client::Response, Error> {
        let target = if versioned {
            format!("/v{}{path}", self.version)
        } else {
            path.to_string()
        };
        let verb = match method {
            "POST" => Method::POST,
            "DELETE" => Method::DELETE,
            _ => Method::GET,
        };
        let request = Request::new(verb, target).timeouts(timeouts);
        let request = match body {
            Body::Empty => request,
            Body::Json(b) => request.json(b),
            Body::Tar(file, len) => request
                .header("content-type", "application/x-tar")
                .body(client::Body::reader(file, len)),
        };
        self.send_checked(method, request, path).await
    }

    /// Sends; the answer when it is a 2xx, else [`Error::Api`] naming `path`.
    async fn send_checked(
        &self,
        method: &'static str,
        request: Request,
        path: &str,
    ) -> Result<client::Response, Error> {
        let r = self.client.send(request).await?;
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(r);
        }
        let body = r.bytes(MAX_ERROR_BODY).await?;
        let message = serde_json::from_slice::<ErrorMessage>(&body)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
        Err(Error::Api {
            method,
            path: path.to_string(),
            status,
            message,
        })
    }
}

/// Registry credentials for a pull (`docker login`'s user and password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
}

impl RegistryLogin {
    /// `X-Registry-Auth`: base64url of the engine's AuthConfig JSON, for the registry the
    /// reference names.
    pub fn header_value(&self, reference: &str) -> String {
        use base64::Engine as _;
        let auth = serde_json::json!({
            "username": self.username,
            "password": self.password,
            "serveraddress": registry_host(reference),
        });
        base64::engine::general_purpose::URL_SAFE
            .encode(serde_json::to_vec(&auth).unwrap_or_default())
    }
}

/// The registry a reference names: its first path component when that looks like a host
/// (a dot, a port or `localhost`, as the engine decides), else Docker Hub.
pub fn registry_host(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

async fn decode<T: DeserializeOwned>(path: &str, r: client::Response) -> Result<T, Error> {
    let body = r.bytes(MAX_JSON).await?;
    serde_json::from_slice(&body).map_err(|source| Error::Decode {
        path: path.into(),
        source,
    })
}

fn encode_error(path: &str) -> impl FnOnce(serde_json::Error) -> Error + '_ {
    move |source| Error::Encode {
        path: path.into(),
        source,
    }
}

/// Reads a streamed progress answer (JSON messages, one a line) as it arrives: each text
/// line goes to `line`; the first `error` message fails it.
async fn progress(
    path: &str,
    mut lines: Lines,
    mut each: impl FnMut(&LoadMessage),
) -> Result<(), Error> {
    while let Some(raw) = lines.next_line().await? {
        for msg in serde_json::Deserializer::from_slice(&raw).into_iter::<LoadMessage>() {
            let msg = msg.map_err(|source| Error::Decode {
                path: path.into(),
                source,
            })?;
            if let Some(message) = msg.error {
                return Err(Error::Progress {
                    path: path.into(),
                    message,
                });
            }
            each(&msg);
        }
    }
    Ok(())
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

    /// A stand-in engine on a unix socket: answers each connection with the next of
    /// `answers` after reading the request (header and `Content-Length` body); returns the
    /// requests it saw.
    async fn fake_engine(
        dir: &Path,
        answers: Vec<&'static [u8]>,
    ) -> (Engine, tokio::task::JoinHandle<Vec<(String, usize)>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    s.read_exact(&mut byte).await.unwrap();
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                s.read_exact(&mut body).await.unwrap();
                s.write_all(answer).await.unwrap();
                seen.push((head.lines().next().unwrap().to_string(), len));
            }
            seen
        });
        (Engine::new(socket), task)
    }

    #[tokio::test]
    async fn load_streams_the_tarball_and_reads_progress_lines() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("img.tar");
        std::fs::write(&tarball, vec![7u8; 300_000]).unwrap();
        let (engine, seen) = fake_engine(
            dir.path(),
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{\"stream\":\"Loaded image: a\\n\"}\r\n\r\n0\r\n\r\n"],
        )
        .await;
        let lines = engine.load_image(&tarball).await.unwrap();
        assert_eq!(lines, ["Loaded image: a"]);
        let seen = seen.await.unwrap();
        assert_eq!(
            seen,
            [(
                "POST /v1.41/images/load?quiet=1 HTTP/1.1".to_string(),
                300_000
            )]
        );
    }

    #[tokio::test]
    async fn pull_fails_on_an_error_in_the_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = fake_engine(
            dir.path(),
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 52\r\n\r\n{\"status\":\"Pulling\"}\r\n{\"error\":\"manifest unknown\"}\r\n\r\n",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 27\r\n\r\n{\"message\":\"No such image\"}",
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{\"Id\":",
            ],
        )
        .await;
        let e = engine.pull_image("a/b:1").await.unwrap_err();
        assert!(
            matches!(&e, Error::Progress { message, .. } if message == "manifest unknown"),
            "{e:?}"
        );
        let e = engine.remove_container("x", true).await;
        assert!(e.is_ok(), "404 on remove is fine: {e:?}");
        // A body cut short is an error, not a truncated list.
        let e = engine.list_images().await.unwrap_err();
        assert!(
            matches!(e, Error::Http(fleet_http::client::Error::Body { .. })),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn pull_reports_its_progress_over_the_layers() {
        // The engine's pull stream: one layer already present, two downloaded (100 and
        // 300 bytes), as `docker pull` shows them.
        let body = [
            r#"{"status":"Pulling from a/b","id":"1"}"#,
            r#"{"status":"Already exists","progressDetail":{},"id":"l0"}"#,
            r#"{"status":"Pulling fs layer","progressDetail":{},"id":"l1"}"#,
            r#"{"status":"Pulling fs layer","progressDetail":{},"id":"l2"}"#,
            r#"{"status":"Downloading","progressDetail":{"current":50,"total":100},"id":"l1"}"#,
            r#"{"status":"Downloading","progressDetail":{"current":100,"total":300},"id":"l2"}"#,
            r#"{"status":"Download complete","progressDetail":{},"id":"l1"}"#,
            r#"{"status":"Downloading","progressDetail":{"current":300,"total":300},"id":"l2"}"#,
            r#"{"status":"Pull complete","progressDetail":{},"id":"l1"}"#,
            r#"{"status":"Pull complete","progressDetail":{},"id":"l2"}"#,
            r#"{"status":"Digest: sha256:00"}"#,
        ]
        .join("\r\n");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = fake_engine(dir.path(), vec![reply.leak().as_bytes()]).await;
        let mut seen = Vec::new();
        engine
            .pull_image_reporting("a/b:1", None, |p| seen.push(p))
            .await
            .unwrap();
        // l1 half while l2's size is unknown (50 of 100, l2 weighing as l1: 50 of 200),
        // l2 a third (150 of 400), l1 done (200 of 400), l2 done; l0 needs no bytes.
        assert_eq!(seen, vec![0, 25, 37, 50, 100], "{seen:?}");
    }

    #[tokio::test]
    async fn a_missing_socket_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(dir.path().join("none.sock"));
        let e = engine.ping().await.unwrap_err();
        assert!(e.to_string().contains("none.sock"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn encodes_names() {
        assert_eq!(encode("fleet/supervisor:v1"), "fleet%2Fsupervisor%3Av1");
    }
}
