//! Update bundles: a tar holding `manifest.json` (first), `manifest.sig` (ed25519 over the
//! manifest's bytes), `rootfs.ext4.zst` and, for layouts with one boot partition per slot
//! (Raspberry Pi firmware tryboot), `boot.vfat.zst`. Read as a stream: the signature is
//! checked before any image byte is looked at, and the manifest's sizes and sha256s pin the
//! images. Format 2 adds `rootfs.dict`: a zstd dictionary trained on the image's chunks,
//! used for every chunk frame (independent frames compress about as well as one stream).

pub mod channel;
pub mod error;
pub mod index;
pub mod keys;
pub mod tar;
pub mod version;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

pub use self::error::BundleError;
use self::tar::TarReader;
pub use ed25519_dalek::VerifyingKey;

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const ROOTFS: &str = "rootfs.ext4.zst";
/// The chunk index of the rootfs ([`index`]), present when the manifest has `index`.
pub const INDEX: &str = "rootfs.index";
/// Largest index read (a 4 GiB image in minimum-size chunks needs 2.6 MiB).
const INDEX_MAX: u64 = 64 << 20;
/// The zstd dictionary of the rootfs frames, present when the manifest has `dictionary`.
pub const DICT: &str = "rootfs.dict";
/// Largest dictionary read.
const DICT_MAX: u64 = 16 << 20;
/// The slot's boot partition (FAT), present when the manifest has `boot`.
pub const BOOT: &str = "boot.vfat.zst";
/// The format written by default; readers also read formats 1 (no dictionary) and 2 (index
/// layout `FLEETIX1`, which fleetd before format 3 reads).
pub const FORMAT: u32 = 3;
/// Default size of the trained dictionary (see the crate README for the measurements).
pub const DICT_SIZE: usize = 256 << 10;
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
    pub rootfs: ImageInfo,
    /// The boot partition image, for layouts where each slot has its own (tryboot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<ImageInfo>,
    /// The rootfs chunk index: the rootfs entry is then one zstd frame per chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<ImageInfo>,
    /// The zstd dictionary every rootfs frame was compressed with (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dictionary: Option<ImageInfo>,
}

/// One image of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// Uncompressed size in bytes.
    pub size: u64,
    /// sha256 of the uncompressed image, lower-case hex.
    pub sha256: String,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, BundleError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(BundleError::ManifestJson)?;
        if !(1..=FORMAT).contains(&m.format) {
            return Err(BundleError::Manifest(format!(
                "format {} (this fleetd reads formats 1 to {FORMAT})",
                m.format
            )));
        }
        if m.dictionary.is_some() && (m.format < 2 || m.index.is_none()) {
            return Err(BundleError::Manifest(
                "dictionary needs format 2 and an index".into(),
            ));
        }
        let images = [
            ("rootfs", Some(&m.rootfs)),
            ("boot", m.boot.as_ref()),
            ("index", m.index.as_ref()),
            ("dictionary", m.dictionary.as_ref()),
        ];
        for (name, image) in images {
            if let Some(image) = image
                && (image.sha256.len() != 64
                    || !image.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(BundleError::Manifest(format!(
                    "{name}.sha256 is not 64 hex digits"
                )));
            }
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

    /// Length of the bundle's signed part: from its start to the end of the signature (what
    /// tells two copies of a bundle apart: the manifest pins everything else).
    pub fn signed_len(&self) -> u64 {
        self.tar.position()
    }

    /// Checks the signature against `keys`, then parses the manifest.
    pub fn verify(
        self,
        keys: &[(PathBuf, VerifyingKey)],
    ) -> Result<(Manifest, PathBuf, RootfsReader<R>), BundleError> {
        let key = keys::verify(keys, &self.manifest_bytes, &self.signature)?.to_path_buf();
        let manifest = Manifest::parse(&self.manifest_bytes)?;
        let mut tar = self.tar;
        let index = match &manifest.index {
            Some(info) => {
                let bytes = expect_entry(&mut tar, INDEX, INDEX_MAX)?;
                let got = hex(&Sha256::digest(&bytes));
                check_image(INDEX, info, bytes.len() as u64, &got)?;
                let index = index::Index::decode(&bytes)
                    .map_err(|r| BundleError::Layout(format!("{INDEX}: {r}")))?;
                let want = index::Layout::of_format(manifest.format);
                if index.layout != want {
                    return Err(BundleError::Layout(format!(
                        "{INDEX}: layout {}, format {} has {}",
                        index.layout.name(),
                        manifest.format,
                        want.name()
                    )));
                }
                if index.image_len() != manifest.rootfs.size {
                    return Err(BundleError::Mismatch(format!(
                        "{INDEX}: chunks add up to {} bytes, the rootfs has {}",
                        index.image_len(),
                        manifest.rootfs.size
                    )));
                }
                Some(index)
            }
            None => None,
        };
        let dictionary = match &manifest.dictionary {
            Some(info) => {
                let bytes = expect_entry(&mut tar, DICT, DICT_MAX)?;
                check_image(
                    DICT,
                    info,
                    bytes.len() as u64,
                    &hex(&Sha256::digest(&bytes)),
                )?;
                Some(bytes)
            }
            None => None,
        };
        Ok((
            manifest,
            key,
            RootfsReader {
                tar,
                index,
                dictionary,
            },
        ))
    }
}

/// A decompressing reader over one image entry of the tar.
pub type ImageDecoder<R> = zstd::stream::read::Decoder<'static, BufReader<TarReader<R>>>;

/// The not-yet-opened rootfs entry of a verified bundle.
pub struct RootfsReader<R> {
    tar: TarReader<R>,
    /// The signed chunk index, when the bundle has one.
    pub index: Option<index::Index>,
    /// The signed dictionary of the rootfs frames, when the bundle has one.
    pub dictionary: Option<Vec<u8>>,
}

impl<R: Read> RootfsReader<R> {
    /// Moves to the rootfs entry without reading it: the offset of its data in the bundle
    /// and its length (for reading chunks by offset).
    pub fn locate(mut self) -> Result<(u64, u64), BundleError> {
        enter(&mut self.tar, ROOTFS)?;
        let end = self.tar.entry_end();
        let len = self.tar.remaining();
        if let Some(index) = &self.index
            && index.compressed_len() != len
        {
            return Err(BundleError::Mismatch(format!(
                "{INDEX}: frames add up to {} bytes, {ROOTFS} has {len}",
                index.compressed_len()
            )));
        }
        Ok((end - len, len))
    }

    /// The decompressed rootfs as a stream (a truncated bundle surfaces as an error), and the
    /// offset where the compressed entry ends (a file shorter than that is truncated).
    pub fn open(self) -> Result<(u64, ImageDecoder<R>), BundleError> {
        open_image(self.tar, ROOTFS, self.dictionary.as_deref())
    }
}

/// The entry after the rootfs: the boot image when the manifest announces one.
pub struct BootReader<R> {
    tar: TarReader<R>,
}

impl<R: Read> BootReader<R> {
    /// A stream positioned at the boot entry's header.
    pub fn new(reader: R) -> Self {
        BootReader {
            tar: TarReader::new(reader),
        }
    }

    /// Continues after a rootfs stream that was read to its end.
    pub fn after_rootfs(rootfs: ImageDecoder<R>) -> Self {
        BootReader {
            tar: rootfs.finish().into_inner(),
        }
    }

    /// The decompressed boot image and the offset where its entry ends.
    pub fn open(self) -> Result<(u64, ImageDecoder<R>), BundleError> {
        open_image(self.tar, BOOT, None)
    }
}

fn open_image<R: Read>(
    mut tar: TarReader<R>,
    name: &str,
    dictionary: Option<&[u8]>,
) -> Result<(u64, ImageDecoder<R>), BundleError> {
    enter(&mut tar, name)?;
    let end = tar.entry_end();
    Ok((end, decoder(tar, dictionary)?))
}

/// A zstd decoder with the bundle's window limit over a compressed image (with the
/// dictionary its frames were compressed with, if any).
pub fn decoder<R: Read>(
    reader: R,
    dictionary: Option<&[u8]>,
) -> Result<zstd::stream::read::Decoder<'static, BufReader<R>>, BundleError> {
    let reader = BufReader::with_capacity(zstd::zstd_safe::DCtx::in_size(), reader);
    let mut decoder =
        zstd::stream::read::Decoder::with_dictionary(reader, dictionary.unwrap_or_default())
            .map_err(|e| BundleError::io("zstd decoder", e))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| BundleError::io("zstd decoder", e))?;
    Ok(decoder)
}

/// Moves to the next entry, which must be `name`.
fn enter<R: Read>(tar: &mut TarReader<R>, name: &str) -> Result<(), BundleError> {
    match tar.next_file() {
        Ok(Some((found, _))) if found == name => Ok(()),
        Ok(Some((found, _))) => Err(BundleError::Layout(format!(
            "expected {name}, found {found}"
        ))),
        Ok(None) => Err(BundleError::Layout(format!("{name} missing"))),
        Err(e) => Err(BundleError::io(name, e)),
    }
}

fn expect_entry<R: Read>(
    tar: &mut TarReader<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, BundleError> {
    enter(tar, name)?;
    tar.read_entry(limit).map_err(|e| BundleError::io(name, e))
}

/// Options of [`create`].
pub struct CreateOptions<'a> {
    pub version: String,
    pub compatible: Vec<String>,
    pub key: Option<&'a SigningKey>,
    pub level: i32,
    /// Largest dictionary trained for the rootfs frames; 0: none.
    pub dict_size: usize,
    /// The slot's boot partition image (FAT), for the tryboot layout.
    pub boot: Option<&'a Path>,
    /// Bundle format: [`FORMAT`], or 2 for devices whose fleetd reads formats up to 2 (its
    /// index layout, `FLEETIX1`, fetches more for the same change).
    pub format: u32,
}

fn io_at(path: &Path, what: &str) -> impl FnOnce(io::Error) -> BundleError {
    let what = format!("{}: {what}", path.display());
    move |e| BundleError::Io { what, source: e }
}

/// Temp files beside the bundle, removed when dropped.
struct Temps(Vec<PathBuf>);

impl Temps {
    fn add(&mut self, out: &Path, ext: &str) -> PathBuf {
        let p = out.with_extension(ext);
        self.0.push(p.clone());
        p
    }
}

impl Drop for Temps {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Builds a bundle from a raw ext4 image (and a FAT boot image). The images are compressed
/// to temp files beside `out` first: the manifest (which comes first in the tar) needs their
/// hashes.
pub fn create(rootfs: &Path, out: &Path, opts: &CreateOptions) -> Result<Manifest, BundleError> {
    if !(2..=FORMAT).contains(&opts.format) {
        return Err(BundleError::Manifest(format!(
            "cannot write format {} (2 to {FORMAT})",
            opts.format
        )));
    }
    let layout = index::Layout::of_format(opts.format);
    let mut temps = Temps(Vec::new());
    let rootfs_z = temps.add(out, "rootfs.zst.tmp");
    let dictionary = train(rootfs, layout, opts.dict_size)?;
    let (rootfs_info, index) =
        compress_chunked(rootfs, &rootfs_z, opts.level, &dictionary, layout)?;
    let index_bytes = index.encode();
    let index_file = temps.add(out, "index.tmp");
    std::fs::write(&index_file, &index_bytes).map_err(io_at(&index_file, "write"))?;
    let dict_file = temps.add(out, "dict.tmp");
    std::fs::write(&dict_file, &dictionary).map_err(io_at(&dict_file, "write"))?;
    let boot = match opts.boot {
        Some(image) => {
            let boot_z = temps.add(out, "boot.zst.tmp");
            Some((compress(image, &boot_z, opts.level)?, boot_z))
        }
        None => None,
    };
    let manifest = Manifest {
        format: opts.format,
        version: opts.version.clone(),
        compatible: opts.compatible.clone(),
        rootfs: rootfs_info,
        boot: boot.as_ref().map(|(info, _)| info.clone()),
        index: Some(ImageInfo {
            size: index_bytes.len() as u64,
            sha256: hex(&Sha256::digest(&index_bytes)),
        }),
        dictionary: (!dictionary.is_empty()).then(|| ImageInfo {
            size: dictionary.len() as u64,
            sha256: hex(&Sha256::digest(&dictionary)),
        }),
    };
    let manifest_bytes = manifest.to_bytes();
    let signature = opts
        .key
        .map(|k| keys::sign(k, &manifest_bytes))
        .unwrap_or_default();
    let mut images = vec![(INDEX, index_file)];
    if !dictionary.is_empty() {
        images.push((DICT, dict_file));
    }
    images.push((ROOTFS, rootfs_z));
    images.extend(boot.map(|(_, z)| (BOOT, z)));
    write_bundle(out, &manifest_bytes, &signature, &images)?;
    Ok(manifest)
}

/// Compresses `input` into `z` (bounded window, no content size), returning its size and hash.
fn compress(input: &Path, z: &Path, level: i32) -> Result<ImageInfo, BundleError> {
    let mut reader = File::open(input).map_err(io_at(input, "open"))?;
    let file = File::create(z).map_err(io_at(z, "create"))?;
    let mut enc =
        zstd::stream::write::Encoder::new(BufWriter::new(file), level).map_err(io_at(z, "zstd"))?;
    enc.window_log(WINDOW_LOG_MAX).map_err(io_at(z, "zstd"))?;
    enc.include_contentsize(false).map_err(io_at(z, "zstd"))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(io_at(input, "read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        enc.write_all(&buf[..n]).map_err(io_at(z, "write"))?;
        size += n as u64;
    }
    enc.finish()
        .and_then(|mut w| w.flush())
        .map_err(io_at(z, "write"))?;
    Ok(ImageInfo {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

/// Chunks sampled for training at most (evenly spread over the image): training time and
/// memory grow with it.
const TRAIN_SAMPLE_MAX: u64 = 64 << 20;

/// Sample sets the trainer is given at most (see [`first_full`]).
const TRAIN_TRIES: u64 = 4;

/// A zstd dictionary of at most `size` bytes trained on the image's chunks (all-zero chunks
/// left out); empty when `size` is 0 or the image is too small or uniform to train on.
fn train(input: &Path, layout: index::Layout, size: usize) -> Result<Vec<u8>, BundleError> {
    if size == 0 {
        return Ok(Vec::new());
    }
    let len = std::fs::metadata(input)
        .map_err(io_at(input, "stat"))?
        .len();
    let stride = len.div_ceil(TRAIN_SAMPLE_MAX).max(1);
    first_full(size, |t| {
        // Every (stride + t)-th chunk: each try a different sample set.
        let (samples, sizes) = sample(input, layout, stride + t)?;
        // zstd refuses too few samples (or too little data for the size asked).
        if sizes.len() < 8 || samples.len() < 4 * size {
            return Ok(None);
        }
        Ok(Some(
            zstd::dict::from_continuous(&samples, &sizes, size).unwrap_or_default(),
        ))
    })
}

/// The first dictionary of at least half of `size` bytes that `attempt(0)`, `attempt(1)`, ...
/// train (at most [`TRAIN_TRIES`]; `None`: too few samples, no further try), else the
/// largest. zstd's trainer (fastCover) now and then returns little more than its entropy
/// tables: 3–4 KiB of the 256 KiB asked on bench-ota's trixie image, a bundle 10% larger, and
/// a full dictionary from the same image sampled one chunk further along.
fn first_full<E>(
    size: usize,
    mut attempt: impl FnMut(u64) -> Result<Option<Vec<u8>>, E>,
) -> Result<Vec<u8>, E> {
    let mut best = Vec::new();
    for t in 0..TRAIN_TRIES {
        let Some(dict) = attempt(t)? else { break };
        if dict.len() >= size / 2 {
            return Ok(dict);
        }
        if dict.len() > best.len() {
            best = dict;
        }
    }
    Ok(best)
}

/// Every `stride`-th chunk of the image that is not all zeros, concatenated, and their sizes.
fn sample(
    input: &Path,
    layout: index::Layout,
    stride: u64,
) -> Result<(Vec<u8>, Vec<usize>), BundleError> {
    let file = File::open(input).map_err(io_at(input, "open"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut samples, mut sizes, mut n) = (Vec::new(), Vec::new(), 0u64);
    index::split(
        &mut reader,
        layout,
        |e| io_at(input, "read")(e),
        |chunk| {
            n += 1;
            if n % stride == 0 && !index::is_zeros(chunk) {
                samples.extend_from_slice(chunk);
                sizes.push(chunk.len());
            }
            Ok(())
        },
    )?;
    Ok((samples, sizes))
}

/// Compresses `input` into `z` as one zstd frame per content-defined chunk ([`index`]),
/// each with `dictionary` (none when empty), returning the image's size and hash and the
/// chunk index.
fn compress_chunked(
    input: &Path,
    z: &Path,
    level: i32,
    dictionary: &[u8],
    layout: index::Layout,
) -> Result<(ImageInfo, index::Index), BundleError> {
    let mut reader =
        BufReader::with_capacity(1 << 20, File::open(input).map_err(io_at(input, "open"))?);
    let mut out = BufWriter::new(File::create(z).map_err(io_at(z, "create"))?);
    let mut compressor =
        zstd::bulk::Compressor::with_dictionary(level, dictionary).map_err(io_at(z, "zstd"))?;
    compressor
        .include_contentsize(false)
        .map_err(io_at(z, "zstd"))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut chunks = Vec::new();
    index::split(
        &mut reader,
        layout,
        |e| io_at(input, "read")(e),
        |chunk| {
            hasher.update(chunk);
            size += chunk.len() as u64;
            let frame = compressor.compress(chunk).map_err(io_at(z, "zstd"))?;
            out.write_all(&frame).map_err(io_at(z, "write"))?;
            chunks.push(index::Chunk {
                len: chunk.len() as u32,
                zlen: frame.len() as u32,
                sha256: layout.digest(chunk),
            });
            Ok(())
        },
    )?;
    out.flush().map_err(io_at(z, "write"))?;
    let info = ImageInfo {
        size,
        sha256: hex(&hasher.finalize()),
    };
    Ok((info, index::Index { layout, chunks }))
}

/// Fills `buf` as far as the stream allows; returns how much was read.
pub fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes the tar to `out` (via a temp file and rename); `images` are (entry name, file
/// holding the compressed stream), in bundle order.
fn write_bundle(
    out: &Path,
    manifest: &[u8],
    signature: &[u8],
    images: &[(&str, PathBuf)],
) -> Result<(), BundleError> {
    let tmp = out.with_extension("tmp");
    let result = (|| -> io::Result<()> {
        let mut w = BufWriter::new(File::create(&tmp)?);
        for (name, bytes) in [(MANIFEST, manifest), (SIGNATURE, signature)] {
            tar::write_header(&mut w, name, bytes.len() as u64)?;
            w.write_all(bytes)?;
            tar::write_padding(&mut w, bytes.len() as u64)?;
        }
        for (name, path) in images {
            let mut z = File::open(path)?;
            let len = z.metadata()?.len();
            tar::write_header(&mut w, name, len)?;
            if io::copy(&mut z, &mut w)? != len {
                return Err(io::Error::other(format!("{name} changed while copying")));
            }
            tar::write_padding(&mut w, len)?;
        }
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
    // Copy the compressed images aside, then write the new tar over `out`.
    let mut temps = Temps(Vec::new());
    let mut images = Vec::new();
    let names = [
        manifest.index.as_ref().map(|_| INDEX),
        manifest.dictionary.as_ref().map(|_| DICT),
        Some(ROOTFS),
        manifest.boot.as_ref().map(|_| BOOT),
    ];
    for name in names.into_iter().flatten() {
        enter(&mut reader.tar, name)?;
        let z = temps.add(out, &format!("{name}.tmp"));
        let mut file = File::create(&z).map_err(io_at(&z, "create"))?;
        io::copy(&mut reader.tar, &mut file).map_err(|e| BundleError::io(name, e))?;
        images.push((name, z));
    }
    let sig = keys::sign(key, &reader.manifest_bytes);
    write_bundle(out, &reader.manifest_bytes, &sig, &images)?;
    Ok(manifest)
}

/// Checks a bundle completely: signature, then each image's size and sha256.
pub fn verify(
    bundle: &mut dyn Read,
    keys: &[(PathBuf, VerifyingKey)],
) -> Result<(Manifest, PathBuf), BundleError> {
    let (manifest, key, rootfs) = BundleReader::open(bundle)?.verify(keys)?;
    let (_, mut decoder) = rootfs.open()?;
    let (size, sha256) = hash_stream(&mut decoder, ROOTFS)?;
    check_rootfs(&manifest, size, &sha256)?;
    if let Some(boot) = &manifest.boot {
        let (_, mut decoder) = BootReader::after_rootfs(decoder).open()?;
        let (size, sha256) = hash_stream(&mut decoder, BOOT)?;
        check_image(BOOT, boot, size, &sha256)?;
    }
    Ok((manifest, key))
}

fn hash_stream(r: &mut impl Read, name: &str) -> Result<(u64, String), BundleError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| BundleError::io(name, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Compares the rootfs as read with what the manifest promises.
pub fn check_rootfs(manifest: &Manifest, size: u64, sha256: &str) -> Result<(), BundleError> {
    check_image(ROOTFS, &manifest.rootfs, size, sha256)
}

/// Compares an image as read with what the manifest promises for it.
pub fn check_image(
    name: &str,
    promised: &ImageInfo,
    size: u64,
    sha256: &str,
) -> Result<(), BundleError> {
    if size != promised.size {
        return Err(BundleError::Mismatch(format!(
            "{name}: {size} bytes, manifest says {}",
            promised.size
        )));
    }
    if sha256 != promised.sha256 {
        return Err(BundleError::Mismatch(format!(
            "{name}: sha256 {sha256}, manifest says {}",
            promised.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, byte: u8, len: usize) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, vec![byte; len]).unwrap();
        p
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        // Text-like bytes with repeats: what a dictionary can learn.
        let words = [
            &b"usr/lib/x86_64-linux-gnu/"[..],
            b"libc.so.6",
            b"GLIBC_2.34",
            b"\0\0\0\0",
        ];
        let mut x = seed;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(words[(x % 4) as usize]);
            out.push(x as u8);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn a_degenerate_dictionary_is_trained_again_on_other_samples() {
        let tries = |lens: Vec<Option<usize>>| {
            let mut asked = 0;
            let dict = first_full::<()>(1000, |t| {
                asked += 1;
                Ok(lens[t as usize].map(|n| vec![7u8; n]))
            })
            .unwrap();
            (dict.len(), asked)
        };
        // Entropy tables only, then a full one: the full one, no third try.
        assert_eq!(tries(vec![Some(40), Some(1000), Some(900)]), (1000, 2));
        assert_eq!(tries(vec![Some(600)]), (600, 1));
        // None full: the largest; the tries end at the first with too few samples.
        assert_eq!(tries(vec![Some(40), Some(300), None, Some(1000)]), (300, 3));
        assert_eq!(
            tries(vec![Some(1), Some(2), Some(3), Some(4), Some(1000)]),
            (4, TRAIN_TRIES as usize)
        );
    }

    #[test]
    fn dictionary_is_signed_used_by_every_frame_and_checked() {
        // Format 2 (index layout FLEETIX1, for older devices) is still written and read.
        for format in [2, FORMAT] {
            dictionary_round_trip(format);
        }
    }

    fn dictionary_round_trip(format: u32) {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::generate().unwrap();
        let trusted = vec![(PathBuf::from("k.pub"), key.verifying_key())];
        let image = noise(3, 4 << 20);
        let rootfs = dir.path().join("root.ext4");
        std::fs::write(&rootfs, &image).unwrap();
        let out = dir.path().join("b.fleet");
        let opts = CreateOptions {
            version: "2.0".into(),
            compatible: vec!["qemux86-64".into()],
            key: Some(&key),
            level: 3,
            dict_size: 16 << 10,
            boot: None,
            format,
        };
        let m = create(&rootfs, &out, &opts).unwrap();
        assert_eq!(m.format, format);
        let dict_info = m.dictionary.clone().expect("a dictionary was trained");
        verify(&mut File::open(&out).unwrap(), &trusted).unwrap();

        // Frames need the dictionary: each decodes with it, and not without it.
        let (_, _, rootfs_reader) = BundleReader::open(File::open(&out).unwrap())
            .unwrap()
            .verify(&trusted)
            .unwrap();
        let dict = rootfs_reader.dictionary.clone().unwrap();
        assert_eq!(dict.len() as u64, dict_info.size);
        let index = rootfs_reader.index.clone().unwrap();
        assert_eq!(index.layout, index::Layout::of_format(format));
        let (data, _) = rootfs_reader.locate().unwrap();
        let bundle = std::fs::read(&out).unwrap();
        let first = index.placed().next().unwrap();
        let frame = &bundle[data as usize..(data + u64::from(first.chunk.zlen)) as usize];
        let mut with = index::FrameDecoder::new(Some(&dict)).unwrap();
        assert_eq!(
            with.decompress(frame, first.chunk.len).unwrap(),
            image[..first.chunk.len as usize]
        );
        let mut without = index::FrameDecoder::new(None).unwrap();
        assert!(without.decompress(frame, first.chunk.len).is_err());

        // A changed dictionary byte: refused against the signed manifest, naming the entry.
        let at = bundle
            .windows(dict.len())
            .position(|w| w == &dict[..])
            .unwrap();
        let mut tampered = bundle.clone();
        tampered[at + dict.len() / 2] ^= 1;
        let err = verify(&mut &tampered[..], &trusted).unwrap_err();
        assert!(err.to_string().contains("rootfs.dict: sha256"), "{err}");
    }

    #[test]
    fn unknown_formats_are_refused_by_name() {
        let m = br#"{"format": 4, "version": "2", "compatible": [], "rootfs": {"size": 1, "sha256": "00"}}"#;
        let err = Manifest::parse(m).unwrap_err();
        assert!(
            err.to_string()
                .contains("format 4 (this fleetd reads formats 1 to 3)"),
            "{err}"
        );
        let sha = "0".repeat(64);
        let v1 = format!(
            r#"{{"format": 1, "version": "2", "compatible": [], "rootfs": {{"size": 1, "sha256": "{sha}"}}, "index": {{"size": 1, "sha256": "{sha}"}}, "dictionary": {{"size": 1, "sha256": "{sha}"}}}}"#
        );
        let err = Manifest::parse(v1.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("dictionary needs format 2"),
            "{err}"
        );
        assert!(Manifest::parse(v1.replace("\"format\": 1", "\"format\": 2").as_bytes()).is_ok());
    }

    #[test]
    fn boot_image_is_signed_verified_and_kept_by_sign() {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::generate().unwrap();
        let trusted = vec![(PathBuf::from("k.pub"), key.verifying_key())];
        let rootfs = file(dir.path(), "root.ext4", 1, 300_000);
        let boot = file(dir.path(), "boot.vfat", 2, 70_000);
        let out = dir.path().join("b.fleet");
        let opts = CreateOptions {
            version: "2.0".into(),
            compatible: vec!["raspberrypi4-64".into()],
            key: None,
            level: 3,
            dict_size: DICT_SIZE,
            boot: Some(&boot),
            format: FORMAT,
        };
        let m = create(&rootfs, &out, &opts).unwrap();
        assert_eq!(m.boot.as_ref().map(|b| b.size), Some(70_000));
        sign(&out, &key, &out).unwrap();
        let (m2, _) = verify(&mut File::open(&out).unwrap(), &trusted).unwrap();
        assert_eq!(m2, m);

        // The boot entry streamed after the rootfs, as the device reads it.
        let (_, _, rootfs_reader) = BundleReader::open(File::open(&out).unwrap())
            .unwrap()
            .verify(&trusted)
            .unwrap();
        let (_, mut root) = rootfs_reader.open().unwrap();
        io::copy(&mut root, &mut io::sink()).unwrap();
        let (_, mut b) = BootReader::after_rootfs(root).open().unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, vec![2u8; 70_000]);

        // A manifest promising another boot image: verify names the boot entry.
        let mut tampered = m.clone();
        if let Some(b) = tampered.boot.as_mut() {
            b.size += 1;
        }
        tampered.index = None;
        let rootfs_z = dir.path().join("r.zst");
        let boot_z = dir.path().join("b.zst");
        compress(&rootfs, &rootfs_z, 3).unwrap();
        compress(&boot, &boot_z, 3).unwrap();
        let bytes = tampered.to_bytes();
        let images = [(ROOTFS, rootfs_z), (BOOT, boot_z)];
        write_bundle(&out, &bytes, &keys::sign(&key, &bytes), &images).unwrap();
        let err = verify(&mut File::open(&out).unwrap(), &trusted).unwrap_err();
        assert!(
            err.to_string().contains("boot.vfat.zst: 70000 bytes"),
            "{err}"
        );
    }
}
