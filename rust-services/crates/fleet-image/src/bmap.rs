//! Block maps from `bmaptool create`: only the mapped ranges of an image hold data, and
//! (bmap 2.0) each range has a SHA-256 that the image is checked against while it streams.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::source::Source;

#[derive(Debug, thiserror::Error)]
pub enum BmapError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a bmap file: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("{path}: the bmap file's own checksum does not match its contents (damaged?)")]
    SelfCheck { path: PathBuf },
}

/// Mapped byte ranges (start, length), sorted, from a bmap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    pub image_size: u64,
    pub ranges: Vec<(u64, u64)>,
    /// SHA-256 of each `<Range>` as (start, end, digest) in bytes; empty for older bmaps
    /// (1.x, SHA-1), which are then used for their ranges only.
    pub checks: Vec<(u64, u64, [u8; 32])>,
}

/// The bmap bmaptool would use for `image`: `IMG.bmap`, or the name without its compression
/// suffix plus `.bmap` (`x.img.zst` → `x.img.bmap`).
pub fn find_for(image: &Path) -> Option<PathBuf> {
    let name = image.file_name()?.to_string_lossy().into_owned();
    let mut candidates = vec![format!("{name}.bmap")];
    for ext in [".zst", ".gz", ".xz"] {
        if let Some(stem) = name.strip_suffix(ext) {
            candidates.push(format!("{stem}.bmap"));
        }
    }
    candidates
        .into_iter()
        .map(|c| image.with_file_name(c))
        .find(|p| p.is_file())
}

fn tag<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].trim())
}

pub fn load(path: &Path) -> Result<Bmap, BmapError> {
    let text = std::fs::read_to_string(path).map_err(|source| BmapError::Io {
        path: path.into(),
        source,
    })?;
    let bmap = parse(&text).map_err(|reason| BmapError::Bad {
        path: path.into(),
        reason,
    })?;
    if !self_check(&text) {
        return Err(BmapError::SelfCheck { path: path.into() });
    }
    Ok(bmap)
}

/// `<BmapFileChecksum>`: the SHA-256 of the file with that digest replaced by zeros. Files
/// without one (bmap 1.x) pass.
fn self_check(text: &str) -> bool {
    let Some(sum) = tag(text, "BmapFileChecksum") else {
        return true;
    };
    if sum.len() != 64 {
        return true;
    }
    let zeroed = text.replacen(sum, &"0".repeat(64), 1);
    hex(&Sha256::digest(zeroed.as_bytes())) == sum.to_ascii_lowercase()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Bmap {
    /// Wraps `source` so reading fails as soon as a mapped range differs from its checksum
    /// (before later ranges are read; the failing range may already be partly written).
    pub fn checking(&self, source: Source, image: &Path) -> Source {
        if self.checks.is_empty() {
            return source;
        }
        Source {
            reader: Box::new(CheckingReader {
                inner: source.reader,
                image: image.into(),
                checks: self.checks.clone(),
                index: 0,
                at: 0,
                hash: Sha256::new(),
            }),
            ..source
        }
    }
}

struct CheckingReader {
    inner: Box<dyn Read + Send>,
    image: PathBuf,
    checks: Vec<(u64, u64, [u8; 32])>,
    index: usize,
    at: u64,
    hash: Sha256,
}

impl Read for CheckingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if let Some((s, e, _)) = self.checks.get(self.index) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "image ends at {} bytes, inside the bmap range {s}..{e}: truncated",
                        self.at
                    ),
                ));
            }
            return Ok(0);
        }
        let end = self.at + n as u64;
        while let Some(&(s, e, want)) = self.checks.get(self.index) {
            if s >= end {
                break;
            }
            let a = (s.max(self.at) - self.at) as usize;
            let b = (e.min(end) - self.at) as usize;
            self.hash.update(&buf[a..b]);
            if e > end {
                break;
            }
            let got = std::mem::take(&mut self.hash).finalize();
            if got.as_slice() != want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: bytes {s}..{e} do not match the bmap's SHA-256 (corrupt image or wrong bmap)",
                        self.image.display()
                    ),
                ));
            }
            self.index += 1;
        }
        self.at = end;
        Ok(n)
    }
}

pub fn parse(text: &str) -> Result<Bmap, String> {
    if !text.contains("<bmap") {
        return Err("no <bmap> element".into());
    }
    let number = |name: &str| -> Result<u64, String> {
        tag(text, name)
            .ok_or_else(|| format!("no <{name}>"))?
            .parse()
            .map_err(|_| format!("<{name}> is not a number"))
    };
    let block = number("BlockSize")?;
    let sha256 = tag(text, "ChecksumType").is_some_and(|t| t.eq_ignore_ascii_case("sha256"));
    let mut checks = Vec::new();
    let image_size = number("ImageSize")?;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("<Range") {
        rest = &rest[i..];
        let open_end = rest.find('>').ok_or("unterminated <Range")? + 1;
        let close = rest.find("</Range>").ok_or("unterminated <Range>")?;
        let attrs = &rest[..open_end];
        let body = rest[open_end..close].trim();
        let (a, b) = body.split_once('-').unwrap_or((body, body));
        let a: u64 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad range {body:?}"))?;
        let b: u64 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad range {body:?}"))?;
        if b < a {
            return Err(format!("bad range {body:?}"));
        }
        let start = a * block;
        let end = ((b + 1) * block).min(image_size);
        if sha256
            && end > start
            && let Some(sum) = attrs
                .split_once("chksum=\"")
                .and_then(|(_, r)| r.split_once('"'))
                .and_then(|(sum, _)| unhex(sum))
        {
            checks.push((start, end, sum));
        }
        if end > start {
            match ranges.last_mut() {
                Some((s, l)) if *s + *l == start => *l += end - start,
                _ => ranges.push((start, end - start)),
            }
        }
        rest = &rest[close + 8..];
    }
    ranges.sort_unstable();
    checks.sort_unstable();
    Ok(Bmap {
        image_size,
        ranges,
        checks,
    })
}
