//! Where a bundle is read from by offset: a file, or an `http://` URL read with Range
//! requests from any static server (no server of ours). Used by the chunked install, which
//! reads the head of the bundle, then only the chunk ranges the device lacks.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use super::multirange::{Group, multipart_boundary};
use fleet_fs::Root;
use fleet_http::client::{Client, Proxy, Request, Response, Timeouts};
use fleet_http::tls::{Tls, TrustSource};
use fleet_http::{byteranges, error_chain};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: {action}", path.display())]
    File {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    /// Not worth retrying: the server's certificate, or what it answered.
    #[error("{url}: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url}: gave up after {attempts} attempts")]
    GaveUp {
        url: String,
        attempts: u32,
        #[source]
        source: Box<SourceError>,
    },
}

/// Reads byte ranges of one bundle; counts what it fetched.
pub trait Source: Send {
    fn name(&self) -> String;
    /// The bundle's length in bytes.
    fn size(&self) -> u64;
    /// Bytes [offset, offset + len), all of them or an error.
    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, SourceError>;
    /// Bytes fetched so far (for a URL: received from the server).
    fn fetched(&self) -> u64;
    /// Says that bytes [offset, offset + len) will be streamed soon (after the ranges already
    /// announced): a URL sends their request now, so the link does not idle between two
    /// small ranges while each request makes its round trip.
    fn prefetch(&mut self, _offset: u64, _len: u64) {}
    /// How many ranges one request may ask (1: a request per range).
    fn ranges_per_request(&mut self) -> usize {
        1
    }
    /// [`Source::prefetch`] of each range, in one request where the source can
    /// (at most [`Source::ranges_per_request`] of them).
    fn prefetch_all(&mut self, ranges: &[(u64, u64)]) {
        for &(offset, len) in ranges {
            self.prefetch(offset, len);
        }
    }
    /// Bytes [offset, offset + len) as a reader, handed over as they arrive.
    fn stream(&mut self, offset: u64, len: u64) -> Result<Box<dyn Read + '_>, SourceError> {
        Ok(Box::new(io::Cursor::new(self.read_range(offset, len)?)))
    }
}

pub struct FileSource {
    path: PathBuf,
    file: File,
    len: u64,
    fetched: u64,
}

impl FileSource {
    pub fn open(path: PathBuf) -> Result<FileSource, SourceError> {
        let file = File::open(&path).map_err(|source| SourceError::File {
            path: path.clone(),
            action: "open",
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| SourceError::File {
                path: path.clone(),
                action: "stat",
                source,
            })?
            .len();
        Ok(FileSource {
            path,
            file,
            len,
            fetched: 0,
        })
    }
}

impl Source for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, SourceError> {
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| SourceError::File {
                path: self.path.clone(),
                action: "read",
                source,
            })?;
        self.fetched += len;
        Ok(buf)
    }
    fn fetched(&self) -> u64 {
        self.fetched
    }
}

/// Retries of one range (with backoff 1, 2, 4 … 30 s) before the install gives up; a rerun
/// of the install resumes from what was written.
const ATTEMPTS: u32 = 6;
const REDIRECTS: u32 = 5;

/// An `http://` URL read with `Range: bytes=A-B`; the server must answer 206 with a
/// `Content-Range` naming the same range and the total length.
pub struct HttpSource {
    url: String,
    client: Client,
    runtime: tokio::runtime::Runtime,
    len: u64,
    fetched: u64,
    /// First probe's answer, so the head read costs no second request.
    head: Option<(u64, Vec<u8>)>,
    /// Range requests sent ahead of their turn ([`Source::prefetch`]), oldest first.
    ahead: VecDeque<Ahead>,
    /// Set when the server did not answer several ranges in one request as asked.
    one_range_per_request: bool,
    /// A `HEAD` asking two ranges, sent when the source opens: its answer says, before the
    /// ranges are planned and without a body, whether the server answers several ranges per
    /// request.
    probe: Option<Answer>,
}

/// A request sent ahead of its turn.
type Answer = tokio::task::JoinHandle<Result<Response, fleet_http::client::Error>>;

/// Requests sent ahead: their answers are taken when their ranges are opened.
enum Ahead {
    Range {
        offset: u64,
        len: u64,
        answer: Answer,
    },
    Group(Group),
}

impl Ahead {
    /// Drops a request whose ranges were read another way.
    fn abort(self) {
        match self {
            Ahead::Range { answer, .. } => answer.abort(),
            // Its task is aborted when it is dropped.
            Ahead::Group(_) => {}
        }
    }
}

/// Ranges asked in one request, at most (a `Range` header of ~700 bytes: nginx reads a
/// request header of up to 8 KiB).
const RANGES_PER_REQUEST: usize = 32;

/// What the first request fetches: the manifest, the signature and the index's start. The
/// install reads the bundle's head in steps of this size, so that answer is reused.
pub const HEAD_STEP: u64 = 64 * 1024;
/// What is kept of the bundle's start as it is read (the head is read in [`HEAD_STEP`]s,
/// the last of which runs into the rootfs entry: that part is not fetched again).
const HEAD_KEEP_MAX: usize = 16 << 20;

impl HttpSource {
    /// Follows redirects and learns the bundle's length from the first range. `https://`
    /// trusts the system bundle below `root` and config.json's `balenaRootCA`, as the
    /// supervisor does.
    pub fn open(url: &str, root: &Root) -> Result<HttpSource, SourceError> {
        HttpSource::open_probe(url, root, HEAD_STEP)
    }

    /// [`HttpSource::open`] whose first request fetches `probe` bytes (a device that kept the
    /// bundle's head needs only its signed part, to compare).
    pub fn open_probe(url: &str, root: &Root, probe: u64) -> Result<HttpSource, SourceError> {
        let http = |reason: String| SourceError::Http {
            url: url.to_string(),
            reason,
        };
        let proxy = Proxy::from_env().map_err(|e| http(e.to_string()))?;
        let client = if url.starts_with("https://") {
            let extra_ca = std::fs::read(root.config_json())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("balenaRootCA")?.as_str().map(str::to_string))
                .map(|ca| ("balenaRootCA".to_string(), ca));
            let trust = TrustSource::new(root.path("/").as_path(), extra_ca);
            let tls = Tls::load(&trust).map_err(|e| http(error_chain(&e)))?;
            Client::tls(tls.config, proxy).keep_alive()
        } else if url.starts_with("http://") {
            Client::tcp(proxy).keep_alive()
        } else {
            return Err(http("not an http:// or https:// URL".into()));
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| http(format!("tokio runtime: {e}")))?;
        let mut src = HttpSource {
            url: url.to_string(),
            client,
            runtime,
            len: 0,
            fetched: 0,
            head: None,
            ahead: VecDeque::new(),
            one_range_per_request: false,
            probe: None,
        };
        let (total, bytes) = src.fetch(0, probe.max(1), None)?;
        src.len = total;
        src.head = Some((0, bytes));
        if total > 2 {
            // Answered while the head is read.
            let probe = Self::asking(
                Request::head(src.url.clone()),
                byteranges::range_header(&[(0, 1), (2, 1)]),
            );
            let client = src.client.clone();
            src.probe = Some(src.runtime.spawn(async move { client.send(probe).await }));
        }
        Ok(src)
    }

    /// What the kept head holds of bytes [offset, offset + len): their start, or nothing.
    fn kept(&self, offset: u64, len: u64) -> &[u8] {
        match &self.head {
            Some((start, bytes)) if offset >= *start && offset < start + bytes.len() as u64 => {
                let at = (offset - start) as usize;
                let n = len.min(bytes.len() as u64 - at as u64) as usize;
                &bytes[at..at + n]
            }
            _ => &[],
        }
    }

    /// The request of bytes [offset, end] of `url`.
    fn range_request(url: &str, offset: u64, end: u64) -> Request {
        Self::asking(Request::get(url), format!("bytes={offset}-{end}"))
    }

    /// `request` with this `Range` header and the source's timeouts.
    fn asking(request: Request, range: String) -> Request {
        request.header("Range", range).timeouts(Timeouts {
            connect: Duration::from_secs(10),
            response: Some(Duration::from_secs(30)),
            idle: Some(Duration::from_secs(30)),
            total: None,
        })
    }

    /// The request sent ahead for exactly this range, if any; those announced before it and
    /// not taken are dropped (their ranges were read another way).
    fn take_ahead(&mut self, offset: u64, len: u64) -> Option<Answer> {
        let at = self.ahead.iter().position(
            |a| matches!(a, Ahead::Range { offset: o, len: l, .. } if (*o, *l) == (offset, len)),
        )?;
        for stale in self.ahead.drain(..at) {
            stale.abort();
        }
        match self.ahead.pop_front() {
            Some(Ahead::Range { answer, .. }) => Some(answer),
            _ => None,
        }
    }

    /// The bytes of a range asked with others in one request ([`Source::prefetch_all`]), once
    /// its part is in; `None` when no such request asked it or its answer ended without it
    /// (the range is then asked alone).
    fn take_from_group(&mut self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let at = self
            .ahead
            .iter()
            .position(|a| matches!(a, Ahead::Group(g) if g.asks(offset, len)))?;
        for stale in self.ahead.drain(..at) {
            stale.abort();
        }
        let Some(Ahead::Group(group)) = self.ahead.front_mut() else {
            return None;
        };
        let bytes = group.take(&self.runtime, offset, len);
        let (received, unsupported) = (group.take_received(), group.take_unsupported());
        if group.asks_last(offset, len) {
            self.ahead.pop_front();
        }
        self.fetched += received;
        if let Some(why) = unsupported {
            self.one_range_per_request(&why);
        }
        bytes
    }

    /// Whether a range may be asked ahead: not empty, inside the bundle, and not starting in
    /// the kept head (that range, the rootfs entry's first, is asked for its rest only when
    /// its turn comes: [`Source::stream`]).
    fn worth_asking_ahead(&self, offset: u64, len: u64) -> bool {
        len > 0 && offset + len <= self.len && self.kept(offset, len).is_empty()
    }

    fn one_range_per_request(&mut self, why: &str) {
        log::info!(
            "{}: several ranges in one request answered {why}: one range per request from now on",
            self.url
        );
        self.one_range_per_request = true;
    }

    /// One range request with redirects, up to the response header: the server's total
    /// length, the last byte it will send, and the response whose body is that range.
    fn open_range(&mut self, offset: u64, len: u64) -> Result<(u64, u64, Response), SourceError> {
        let mut url = self.url.clone();
        let mut ahead = self.take_ahead(offset, len);
        for _ in 0..=REDIRECTS {
            let end = offset + len - 1;
            let http = |reason: String| SourceError::Http {
                url: url.clone(),
                reason,
            };
            let refused = |reason: String| SourceError::Refused {
                url: url.clone(),
                reason,
            };
            let answer = match ahead.take() {
                Some(a) => self
                    .runtime
                    .block_on(a)
                    .map_err(|e| http(format!("the request sent ahead: {e}")))?,
                None => {
                    let request = Self::range_request(&url, offset, end);
                    self.runtime.block_on(self.client.send(request))
                }
            };
            let response = answer.map_err(|e| match e {
                fleet_http::client::Error::Tls { host, source, .. } => {
                    refused(fleet_http::tls::describe_failure(&source, &host))
                }
                other => http(error_chain(&other)),
            })?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            match status {
                206 => {
                    let range = header("content-range").unwrap_or_default();
                    let (total, last) = parse_content_range(&range, offset, end).ok_or_else(|| {
                        refused(format!(
                            "asked for bytes {offset}-{end}, the server answered Content-Range {range:?}"
                        ))
                    })?;
                    return Ok((total, last, response));
                }
                200 => {
                    return Err(refused(
                        "the server answered 200 to a Range request: it does not serve byte ranges (an update needs a server that does, e.g. nginx, S3, any CDN)"
                            .into(),
                    ));
                }
                301 | 302 | 303 | 307 | 308 => {
                    let location = header("location")
                        .ok_or_else(|| http(format!("{status} without a Location")))?;
                    url = resolve(&url, &location);
                    self.url = url.clone();
                }
                // Server errors may pass (a restart, an overloaded CDN node); others will not.
                500..=599 => return Err(http(format!("HTTP {status} for bytes {offset}-{end}"))),
                _ => return Err(refused(format!("HTTP {status} for bytes {offset}-{end}"))),
            }
        }
        Err(SourceError::Http {
            url: self.url.clone(),
            reason: format!("more than {REDIRECTS} redirects"),
        })
    }

    /// The next piece of a range's body; counts it as fetched.
    fn next_piece(&mut self, response: &mut Response) -> Result<Option<Vec<u8>>, SourceError> {
        let piece = self
            .runtime
            .block_on(response.chunk())
            .map_err(|e| SourceError::Http {
                url: self.url.clone(),
                reason: error_chain(&e),
            })?;
        if let Some(p) = &piece {
            self.fetched += p.len() as u64;
        }
        Ok(piece.map(|p| p.to_vec()))
    }

    /// One whole range: (total length, bytes).
    fn get(&mut self, offset: u64, len: u64) -> Result<(u64, Vec<u8>), SourceError> {
        let (total, last, mut response) = self.open_range(offset, len)?;
        let want = last - offset + 1;
        let mut body = Vec::with_capacity(want as usize);
        while let Some(piece) = self.next_piece(&mut response)? {
            body.extend_from_slice(&piece);
            if body.len() as u64 > want {
                break;
            }
        }
        if body.len() as u64 != want {
            return Err(SourceError::Http {
                url: self.url.clone(),
                reason: format!(
                    "range {offset}-{last}: {} bytes received, {want} expected",
                    body.len()
                ),
            });
        }
        Ok((total, body))
    }

    /// `get` with retries and backoff; a 200 answer or a wrong range is not retried.
    fn fetch(
        &mut self,
        offset: u64,
        len: u64,
        total: Option<u64>,
    ) -> Result<(u64, Vec<u8>), SourceError> {
        let len = match total {
            Some(t) => len.min(t.saturating_sub(offset)),
            None => len,
        };
        let mut delay = Duration::from_secs(1);
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            match self.get(offset, len) {
                Ok(r) => return Ok(r),
                Err(e) if !retryable(&e) => return Err(e),
                Err(e) => {
                    log::warn!("{e} (attempt {attempt} of {ATTEMPTS})");
                    last = Some(e);
                }
            }
            if attempt < ATTEMPTS {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
        Err(SourceError::GaveUp {
            url: self.url.clone(),
            attempts: ATTEMPTS,
            source: Box::new(last.unwrap_or(SourceError::Http {
                url: self.url.clone(),
                reason: "no attempt made".into(),
            })),
        })
    }
}

fn retryable(e: &SourceError) -> bool {
    match e {
        SourceError::Http { reason, .. } => {
            !(reason.contains("answered 200")
                || reason.contains("Content-Range")
                || reason.contains("HTTP 4"))
        }
        _ => false,
    }
}

/// `bytes START-END/TOTAL` naming the range asked for (or its part before the end of the
/// file); returns TOTAL and the last byte.
fn parse_content_range(value: &str, start: u64, end: u64) -> Option<(u64, u64)> {
    let (a, b, total) = byteranges::content_range(value)?;
    // A server may shorten a range that runs past the end.
    (a == start && (b == end || (b + 1 == total && b < end))).then_some((total, b))
}

/// A redirect target: absolute, or a path on the same origin.
pub fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    if location.starts_with('/') {
        format!("{}{location}", &base[..origin_end])
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= origin_end)
            .unwrap_or(origin_end);
        format!("{}/{location}", &base[..dir_end])
    }
}

impl Source for HttpSource {
    fn name(&self) -> String {
        self.url.clone()
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, SourceError> {
        // What the first request already brought is not fetched again.
        let mut out = Vec::with_capacity(len as usize);
        out.extend_from_slice(self.kept(offset, len));
        let (offset, len) = (offset + out.len() as u64, len - out.len() as u64);
        if len == 0 {
            return Ok(out);
        }
        if offset + len > self.len {
            return Err(SourceError::Http {
                url: self.url.clone(),
                reason: format!(
                    "bytes {offset}..{} asked, the bundle has {} (truncated on the server?)",
                    offset + len,
                    self.len
                ),
            });
        }
        let total = self.len;
        let (_, bytes) = self.fetch(offset, len, Some(total))?;
        if let Some((0, head)) = &mut self.head
            && head.len() as u64 == offset
            && head.len() + bytes.len() <= HEAD_KEEP_MAX
        {
            head.extend_from_slice(&bytes);
        }
        out.extend_from_slice(&bytes);
        Ok(out)
    }
    fn fetched(&self) -> u64 {
        self.fetched
    }
    fn prefetch(&mut self, offset: u64, len: u64) {
        if !self.worth_asking_ahead(offset, len) {
            return;
        }
        let request = Self::range_request(&self.url, offset, offset + len - 1);
        let client = self.client.clone();
        // Runs while the ranges before it are read (the runtime is driven by their reads).
        let answer = self
            .runtime
            .spawn(async move { client.send(request).await });
        self.ahead.push_back(Ahead::Range {
            offset,
            len,
            answer,
        });
    }
    fn ranges_per_request(&mut self) -> usize {
        if let Some(probe) = self.probe.take() {
            let refused = match self.runtime.block_on(probe) {
                Ok(Ok(mut answer)) => match multipart_boundary(&answer) {
                    Ok(_) => {
                        // Read to its (empty) end: the connection serves the next request.
                        let _ = self.runtime.block_on(answer.chunk());
                        None
                    }
                    Err(answered) => Some(format!("{answered} (to HEAD)")),
                },
                Ok(Err(e)) => Some(error_chain(&e)),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = refused {
                self.one_range_per_request(&why);
            }
        }
        if self.one_range_per_request {
            1
        } else {
            RANGES_PER_REQUEST
        }
    }
    fn prefetch_all(&mut self, ranges: &[(u64, u64)]) {
        let ranges: Vec<(u64, u64)> = ranges
            .iter()
            .copied()
            .filter(|&(offset, len)| self.worth_asking_ahead(offset, len))
            .collect();
        if ranges.len() < 2 || self.one_range_per_request {
            for (offset, len) in ranges {
                self.prefetch(offset, len);
            }
            return;
        }
        for ranges in ranges.chunks(RANGES_PER_REQUEST) {
            let request = Self::asking(Request::get(&self.url), byteranges::range_header(ranges));
            let group = Group::send(&self.runtime, self.client.clone(), request, ranges.to_vec());
            self.ahead.push_back(Ahead::Group(group));
        }
    }
    fn stream(&mut self, offset: u64, len: u64) -> Result<Box<dyn Read + '_>, SourceError> {
        // A range starting in the kept head (the first one of the rootfs entry) takes what it
        // holds and streams the rest, so a break there resumes from its byte as any other.
        let kept = self.kept(offset, len).to_vec();
        if kept.is_empty()
            && let Some(bytes) = self.take_from_group(offset, len)
        {
            return Ok(Box::new(io::Cursor::new(bytes)));
        }
        let rest = HttpRange {
            src: self,
            pos: offset + kept.len() as u64,
            end: offset + len,
            response: None,
            pending: Vec::new(),
            at: 0,
        };
        Ok(Box::new(io::Cursor::new(kept).chain(rest)))
    }
}

/// A range of an HTTP source read as it arrives; a dropped connection is resumed from the
/// byte where it broke (with the same retries as [`HttpSource::fetch`]).
pub struct HttpRange<'a> {
    src: &'a mut HttpSource,
    pos: u64,
    end: u64,
    response: Option<Response>,
    pending: Vec<u8>,
    at: usize,
}

impl HttpRange<'_> {
    fn refill(&mut self) -> Result<(), SourceError> {
        let mut delay = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            let result = (|| -> Result<Option<Vec<u8>>, SourceError> {
                if self.response.is_none() {
                    let (_, _, response) = self.src.open_range(self.pos, self.end - self.pos)?;
                    self.response = Some(response);
                }
                match self.response.as_mut() {
                    Some(r) => self.src.next_piece(r),
                    None => Ok(None),
                }
            })();
            let e = match result {
                Ok(Some(piece)) if !piece.is_empty() => {
                    self.pos += piece.len() as u64;
                    self.pending = piece;
                    self.at = 0;
                    return Ok(());
                }
                Ok(Some(_)) => continue,
                Ok(None) => SourceError::Http {
                    url: self.src.url.clone(),
                    reason: format!("the range ended at byte {} of {}", self.pos, self.end),
                },
                Err(e) => e,
            };
            self.response = None;
            if !retryable(&e) || attempt >= ATTEMPTS {
                return Err(e);
            }
            log::warn!(
                "{e} (attempt {attempt} of {ATTEMPTS}, resuming at byte {})",
                self.pos
            );
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(30));
            attempt += 1;
        }
    }
}

impl Read for HttpRange<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.pending.len() {
            if self.pos >= self.end {
                return Ok(0);
            }
            self.refill()
                .map_err(|e| io::Error::other(error_chain(&e)))?;
        }
        let n = out.len().min(self.pending.len() - self.at);
        out[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A sequential reader over a [`Source`] from `offset` (reads `step` bytes at a time), for
/// parsing the tar head and streaming the boot image.
pub struct SeqReader<'a> {
    src: &'a mut dyn Source,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    step: u64,
}

impl<'a> SeqReader<'a> {
    pub fn new(src: &'a mut dyn Source, offset: u64, step: u64) -> SeqReader<'a> {
        SeqReader {
            src,
            pos: offset,
            buf: Vec::new(),
            at: 0,
            step,
        }
    }
}

impl Read for SeqReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            let left = self.src.size().saturating_sub(self.pos);
            if left == 0 {
                return Ok(0);
            }
            let n = self.step.min(left);
            self.buf = self
                .src
                .read_range(self.pos, n)
                .map_err(|e| io::Error::other(error_chain(&e)))?;
            self.pos += n;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_must_name_the_range_asked() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000", 0, 99),
            Some((1000, 99))
        );
        assert_eq!(
            parse_content_range("bytes 900-999/1000", 900, 1099),
            Some((1000, 999))
        );
        assert_eq!(parse_content_range("bytes 0-99/1000", 100, 199), None);
        assert_eq!(parse_content_range("bytes */1000", 0, 99), None);
    }

    #[test]
    fn redirects_resolve_against_the_url() {
        assert_eq!(
            resolve("http://a/x/b.fleet", "/y/c.fleet"),
            "http://a/y/c.fleet"
        );
        assert_eq!(
            resolve("http://a/x/b.fleet", "c.fleet"),
            "http://a/x/c.fleet"
        );
        assert_eq!(
            resolve("http://a/x/b.fleet", "http://cdn/z"),
            "http://cdn/z"
        );
    }
}
