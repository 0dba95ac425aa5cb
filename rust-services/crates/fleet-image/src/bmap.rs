//! Block maps from `bmaptool create`: only the mapped ranges of an image hold data.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BmapError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a bmap file: {reason}")]
    Bad { path: PathBuf, reason: String },
}

/// Mapped byte ranges (start, length), sorted, from a bmap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    pub image_size: u64,
    pub ranges: Vec<(u64, u64)>,
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
    parse(&text).map_err(|reason| BmapError::Bad {
        path: path.into(),
        reason,
    })
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
    let image_size = number("ImageSize")?;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("<Range") {
        rest = &rest[i..];
        let open_end = rest.find('>').ok_or("unterminated <Range")? + 1;
        let close = rest.find("</Range>").ok_or("unterminated <Range>")?;
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
        if end > start {
            match ranges.last_mut() {
                Some((s, l)) if *s + *l == start => *l += end - start,
                _ => ranges.push((start, end - start)),
            }
        }
        rest = &rest[close + 8..];
    }
    ranges.sort_unstable();
    Ok(Bmap { image_size, ranges })
}
