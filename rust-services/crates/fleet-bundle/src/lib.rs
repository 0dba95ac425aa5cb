//! Update bundles: a tar holding `manifest.json` (first), `manifest.sig` (ed25519 over the
//! manifest's bytes) and `rootfs.ext4.zst`. Read as a stream: the signature is checked before
//! any rootfs byte is looked at, and the manifest's size and sha256 pin the rootfs.

pub mod error;
pub mod keys;
pub mod tar;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

pub use self::error::BundleError;
use self::tar::TarReader;

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const ROOTFS: &str = "rootfs.ext4.zst";
pub const FORMAT: u32 = 1;
/// Public keys on the device.
pub const KEYS_DIR: &str = "/etc/fleet/keys";
/// zstd window limit (2^23 = 8 MiB), so decompression memory stays bounded.
pub const WINDOW_LOG_MAX: u32 = 23;
const MANIFEST_MAX: u64 = 64 * 1024;

/// What a bundle promises (signed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// OS version (`VERSION_ID` of the image).
    pub version: String,
    /// Device types (`conf/device-types/<slug>.json`) the rootfs runs on.
    pub compatible: Vec<String>,
    pub rootfs: RootfsInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsInfo {
    /// Uncompressed size in bytes.
    pub size: u64,
    /// sha256 of the uncompressed image, lower-case hex.
    pub sha256: String,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, BundleError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(BundleError::ManifestJson)?;
        if m.format != FORMAT {
            return Err(BundleError::Manifest(format!(
                "format {} (this fleetd reads format {FORMAT})",
                m.format
            )));
        }
        if m.rootfs.sha256.len() != 64 || !m.rootfs.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BundleError::Manifest(
                "rootfs.sha256 is not 64 hex digits".into(),
            ));
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A bundle whose manifest and signature have been read (not yet checked).
pub struct BundleReader<R> {
    tar: TarReader<R>,
    pub manifest_bytes: Vec<u8>,
    pub signature: Vec<u8>,
}

impl<R: Read> BundleReader<R> {
    /// Reads the first two entries, which must be `manifest.json` and `manifest.sig`.
    pub fn open(reader: R) -> Result<Self, BundleError> {
        let mut tar = TarReader::new(reader);
        let manifest_bytes = expect_entry(&mut tar, MANIFEST, MANIFEST_MAX)?;
        let signature = expect_entry(&mut tar, SIGNATURE, 1024)?;
        Ok(BundleReader {
            tar,
            manifest_bytes,
            signature,
        })
    }

    /// Checks the signature against `keys`, then parses the manifest.
    pub fn verify(
        self,
        keys: &[(PathBuf, VerifyingKey)],
    ) -> Result<(Manifest, PathBuf, RootfsReader<R>), BundleError> {
        let key = keys::verify(keys, &self.manifest_bytes, &self.signature)?.to_path_buf();
        let manifest = Manifest::parse(&self.manifest_bytes)?;
        Ok((manifest, key, RootfsReader { tar: self.tar }))
    }
}

pub type RootfsDecoder<R> = zstd::stream::read::Decoder<'static, BufReader<TarReader<R>>>;

/// The not-yet-opened rootfs entry of a verified bundle.
pub struct RootfsReader<R> {
    tar: TarReader<R>,
}

impl<R: Read> RootfsReader<R> {
    /// The decompressed rootfs as a stream (a truncated bundle surfaces as an error), and the
    /// offset where the compressed entry ends (a file shorter than that is truncated).
    pub fn open(mut self) -> Result<(u64, RootfsDecoder<R>), BundleError> {
        match self.tar.next_file() {
            Ok(Some((name, _))) if name == ROOTFS => {}
            Ok(Some((name, _))) => {
                return Err(BundleError::Layout(format!(
                    "expected {ROOTFS}, found {name}"
                )));
            }
            Ok(None) => return Err(BundleError::Layout(format!("{ROOTFS} missing"))),
            Err(e) => return Err(BundleError::io(ROOTFS, e)),
        }
        let end = self.tar.entry_end();
        let mut decoder = zstd::stream::read::Decoder::new(self.tar)
            .map_err(|e| BundleError::io("zstd decoder", e))?;
        decoder
            .window_log_max(WINDOW_LOG_MAX)
            .map_err(|e| BundleError::io("zstd decoder", e))?;
        Ok((end, decoder))
    }
}

fn expect_entry<R: Read>(
    tar: &mut TarReader<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, BundleError> {
    match tar.next_file() {
        Ok(Some((found, _))) if found == name => {}
        Ok(Some((found, _))) => {
            return Err(BundleError::Layout(format!(
                "expected {name}, found {found}"
            )));
        }
        Ok(None) => return Err(BundleError::Layout(format!("{name} missing"))),
        Err(e) => return Err(BundleError::io(name, e)),
    }
    tar.read_entry(limit).map_err(|e| BundleError::io(name, e))
}

/// Options of [`create`].
pub struct CreateOptions<'a> {
    pub version: String,
    pub compatible: Vec<String>,
    pub key: Option<&'a SigningKey>,
    pub level: i32,
}

fn io_at(path: &Path, what: &str) -> impl FnOnce(io::Error) -> BundleError {
    let what = format!("{}: {what}", path.display());
    move |e| BundleError::Io { what, source: e }
}

/// Builds a bundle from a raw ext4 image. The rootfs is compressed to a temp file beside
/// `out` first: the manifest (which comes first in the tar) needs its hash.
pub fn create(rootfs: &Path, out: &Path, opts: &CreateOptions) -> Result<Manifest, BundleError> {
    let tmp = out.with_extension("rootfs.zst.tmp");
    let result = create_with_temp(rootfs, out, &tmp, opts);
    let _ = std::fs::remove_file(&tmp);
    result
}

fn create_with_temp(
    rootfs: &Path,
    out: &Path,
    tmp: &Path,
    opts: &CreateOptions,
) -> Result<Manifest, BundleError> {
    let mut input = File::open(rootfs).map_err(io_at(rootfs, "open"))?;
    let z = File::create(tmp).map_err(io_at(tmp, "create"))?;
    let mut enc = zstd::stream::write::Encoder::new(BufWriter::new(z), opts.level)
        .map_err(io_at(tmp, "zstd"))?;
    enc.window_log(WINDOW_LOG_MAX).map_err(io_at(tmp, "zstd"))?;
    enc.include_contentsize(false).map_err(io_at(tmp, "zstd"))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).map_err(io_at(rootfs, "read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        enc.write_all(&buf[..n]).map_err(io_at(tmp, "write"))?;
        size += n as u64;
    }
    enc.finish()
        .and_then(|mut w| w.flush())
        .map_err(io_at(tmp, "write"))?;
    let manifest = Manifest {
        format: FORMAT,
        version: opts.version.clone(),
        compatible: opts.compatible.clone(),
        rootfs: RootfsInfo {
            size,
            sha256: hex(&hasher.finalize()),
        },
    };
    let manifest_bytes = manifest.to_bytes();
    let signature = opts
        .key
        .map(|k| keys::sign(k, &manifest_bytes))
        .unwrap_or_default();
    let mut z = File::open(tmp).map_err(io_at(tmp, "open"))?;
    write_bundle(out, &manifest_bytes, &signature, &mut z)?;
    Ok(manifest)
}

/// Writes the tar to `out` (via a temp file and rename); `rootfs` is the compressed stream.
fn write_bundle(
    out: &Path,
    manifest: &[u8],
    signature: &[u8],
    rootfs: &mut File,
) -> Result<(), BundleError> {
    let rootfs_len = rootfs.metadata().map_err(io_at(out, "stat rootfs"))?.len();
    let tmp = out.with_extension("tmp");
    let result = (|| -> io::Result<()> {
        let mut w = BufWriter::new(File::create(&tmp)?);
        for (name, bytes) in [(MANIFEST, manifest), (SIGNATURE, signature)] {
            tar::write_header(&mut w, name, bytes.len() as u64)?;
            w.write_all(bytes)?;
            tar::write_padding(&mut w, bytes.len() as u64)?;
        }
        tar::write_header(&mut w, ROOTFS, rootfs_len)?;
        let copied = io::copy(rootfs, &mut w)?;
        if copied != rootfs_len {
            return Err(io::Error::other("rootfs changed while copying"));
        }
        tar::write_padding(&mut w, rootfs_len)?;
        tar::write_end(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_at(out, "write bundle"))
}

/// Re-signs a bundle with `key` (writing `out`, which may be the input).
pub fn sign(bundle: &Path, key: &SigningKey, out: &Path) -> Result<Manifest, BundleError> {
    let f = File::open(bundle).map_err(io_at(bundle, "open"))?;
    let mut reader = BundleReader::open(BufReader::new(f))?;
    let manifest = Manifest::parse(&reader.manifest_bytes)?;
    match reader.tar.next_file() {
        Ok(Some((name, _))) if name == ROOTFS => {}
        Ok(_) => return Err(BundleError::Layout(format!("{ROOTFS} missing"))),
        Err(e) => return Err(BundleError::io(ROOTFS, e)),
    }
    // Copy the compressed rootfs aside, then write the new tar over `out`.
    let tmp = out.with_extension("rootfs.zst.tmp");
    let result = (|| {
        let mut z = File::create(&tmp).map_err(io_at(&tmp, "create"))?;
        io::copy(&mut reader.tar, &mut z).map_err(|e| BundleError::io(ROOTFS, e))?;
        let mut z = File::open(&tmp).map_err(io_at(&tmp, "open"))?;
        let sig = keys::sign(key, &reader.manifest_bytes);
        write_bundle(out, &reader.manifest_bytes, &sig, &mut z)
    })();
    let _ = std::fs::remove_file(&tmp);
    result.map(|()| manifest)
}

/// Checks a bundle completely: signature, then the rootfs's size and sha256.
pub fn verify(
    bundle: &mut dyn Read,
    keys: &[(PathBuf, VerifyingKey)],
) -> Result<(Manifest, PathBuf), BundleError> {
    let (manifest, key, rootfs) = BundleReader::open(bundle)?.verify(keys)?;
    let (_, mut decoder) = rootfs.open()?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = decoder
            .read(&mut buf)
            .map_err(|e| BundleError::io(ROOTFS, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    check_rootfs(&manifest, size, &hex(&hasher.finalize()))?;
    Ok((manifest, key))
}

/// Compares what was read with what the manifest promises.
pub fn check_rootfs(manifest: &Manifest, size: u64, sha256: &str) -> Result<(), BundleError> {
    if size != manifest.rootfs.size {
        return Err(BundleError::Mismatch(format!(
            "{size} bytes, manifest says {}",
            manifest.rootfs.size
        )));
    }
    if sha256 != manifest.rootfs.sha256 {
        return Err(BundleError::Mismatch(format!(
            "sha256 {sha256}, manifest says {}",
            manifest.rootfs.sha256
        )));
    }
    Ok(())
}
