//! The bundle's head (manifest, signature, chunk index, dictionary: everything before the
//! rootfs frames) kept on the device between attempts of one install, so that a rerun after a
//! killed process or a power cut does not download it again (with format 2's 256 KiB
//! dictionary it is larger than a chunk, and the resume bound is one chunk).
//!
//! Written atomically once the fetched head has been verified; reused only when the server's
//! signed part (manifest and signature) is byte for byte the kept one, and after the kept copy
//! passes the same checks as a fetched one (signature by a trusted key, index and dictionary
//! against the manifest's sha256s). A copy that fails them is refused, removed and the head
//! fetched again. Removed once the slot is written and verified.

use std::io::{self, Cursor, Read};
use std::path::PathBuf;

use fleet_bundle::index::Index;
use fleet_bundle::{BundleReader, Manifest, VerifyingKey};
use fleet_fs::Root;

use super::UpdateError;
use super::source::{HEAD_STEP, SeqReader, Source};

/// The kept head, beside the slot records.
pub const HEAD_CACHE: &str = "/var/lib/fleet/update-head";

/// A verified bundle head and where the rootfs frames start.
pub struct Head {
    pub manifest: Manifest,
    /// The trusted key that signed the manifest.
    pub key: PathBuf,
    pub index: Option<Index>,
    pub dictionary: Option<Vec<u8>>,
    /// Offset and length of the compressed rootfs entry in the bundle.
    pub data: u64,
    pub len: u64,
}

/// What the first request should fetch: the kept head's signed part (to compare it with the
/// server's), or the usual first step when none is kept.
pub fn probe_len(root: &Root) -> u64 {
    std::fs::read(root.path(HEAD_CACHE))
        .ok()
        .and_then(|bytes| BundleReader::open(Cursor::new(bytes)).ok())
        .map_or(HEAD_STEP, |r| r.signed_len())
}

/// The verified head of the bundle `src` serves: the kept copy when it is this bundle's and
/// passes the checks, else fetched (then kept).
pub fn read(
    root: &Root,
    src: &mut dyn Source,
    trusted: &[(PathBuf, VerifyingKey)],
) -> Result<Head, UpdateError> {
    let path = root.path(HEAD_CACHE);
    match std::fs::read(&path) {
        Ok(kept) => match reuse(&kept, src, trusted)? {
            Reuse::Yes(head) => {
                log::info!(
                    "{}: reusing the bundle head kept by an earlier attempt ({} bytes not fetched again)",
                    path.display(),
                    kept.len()
                );
                return Ok(*head);
            }
            Reuse::Other => log::info!(
                "{}: kept for another bundle, fetching this one's head",
                path.display()
            ),
            Reuse::Refused(reason) => log::warn!(
                "{}: refused ({reason}), fetching the bundle head again",
                path.display()
            ),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!(
            "{}: cannot read ({e}), fetching the bundle head",
            path.display()
        ),
    }
    let mut copy = Vec::new();
    let head = parse(
        Tee {
            inner: SeqReader::new(src, 0, HEAD_STEP),
            copy: &mut copy,
        },
        trusted,
    )?;
    if copy.len() as u64 == head.data {
        // Kept for a rerun only; an install goes on without it.
        if let Err(e) = fleet_fs::ensure_dir(&root.state_dir())
            .and_then(|()| fleet_fs::atomic_write(&path, &copy, 0o600))
        {
            log::warn!("cannot keep the bundle head for a rerun: {e}");
        }
    }
    Ok(head)
}

/// Drops the kept head (the slot it served is written and verified).
pub fn forget(root: &Root) {
    if let Err(e) = fleet_fs::remove_if_exists(&root.path(HEAD_CACHE)) {
        log::warn!("{e}");
    }
}

enum Reuse {
    Yes(Box<Head>),
    /// The server's bundle has another manifest.
    Other,
    /// Not a valid head of this bundle (damaged, tampered, or no longer trusted).
    Refused(String),
}

fn reuse(
    kept: &[u8],
    src: &mut dyn Source,
    trusted: &[(PathBuf, VerifyingKey)],
) -> Result<Reuse, UpdateError> {
    let signed = match BundleReader::open(Cursor::new(kept)) {
        Ok(r) => r.signed_len(),
        Err(e) => return Ok(Reuse::Refused(e.to_string())),
    };
    if signed > src.size() {
        return Ok(Reuse::Other);
    }
    // Network errors are the install's: not a reason to distrust the kept copy.
    let served = src.read_range(0, signed)?;
    if served != kept[..signed as usize] {
        return Ok(Reuse::Other);
    }
    Ok(match parse(Cursor::new(kept), trusted) {
        Ok(head) if head.data == kept.len() as u64 => Reuse::Yes(Box::new(head)),
        Ok(head) => Reuse::Refused(format!(
            "{} bytes, the rootfs frames start at byte {}",
            kept.len(),
            head.data
        )),
        Err(e) => Reuse::Refused(e.to_string()),
    })
}

/// Signature, manifest, index and dictionary checked; stops at the rootfs entry's data.
fn parse<R: Read>(reader: R, trusted: &[(PathBuf, VerifyingKey)]) -> Result<Head, UpdateError> {
    let (manifest, key, mut rootfs) = BundleReader::open(reader)?.verify(trusted)?;
    let index = rootfs.index.take();
    let dictionary = rootfs.dictionary.take();
    let (data, len) = rootfs.locate()?;
    Ok(Head {
        manifest,
        key,
        index,
        dictionary,
        data,
        len,
    })
}

/// Copies what is read through it.
struct Tee<'a, R> {
    inner: R,
    copy: &'a mut Vec<u8>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}
