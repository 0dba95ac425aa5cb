//! Image sources: raw, zstd, xz or gzip, recognised by their magic bytes (not the file name).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}")]
    Open { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Gzip,
    Xz,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "raw",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
        }
    }
}

pub struct Source {
    pub reader: Box<dyn Read + Send>,
    pub compression: Compression,
    /// Decompressed size when the container says it (raw length, zstd frame header).
    pub size: Option<u64>,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];
const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0];

/// Opens `path` and returns a reader of the decompressed disk image.
pub fn open(path: &Path) -> Result<Source, SourceError> {
    let err = |source| SourceError::Open {
        path: path.into(),
        source,
    };
    let mut file = File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let mut magic = [0u8; 18];
    let n = read_up_to(&mut file, &mut magic).map_err(err)?;
    let magic = &magic[..n];
    file.seek(SeekFrom::Start(0)).map_err(err)?;
    let buffered = BufReader::with_capacity(1 << 20, file);
    if magic.starts_with(&ZSTD_MAGIC) {
        let size = zstd::zstd_safe::get_frame_content_size(magic)
            .ok()
            .flatten();
        let mut decoder = zstd::stream::read::Decoder::with_buffer(buffered).map_err(err)?;
        // Long-distance matching windows (zstd --long) up to 2 GiB.
        decoder.window_log_max(31).map_err(err)?;
        return Ok(Source {
            reader: Box::new(decoder),
            compression: Compression::Zstd,
            size,
        });
    }
    if magic.starts_with(&GZIP_MAGIC) {
        return Ok(Source {
            reader: Box::new(flate2::read::MultiGzDecoder::new(buffered)),
            compression: Compression::Gzip,
            size: None,
        });
    }
    if magic.starts_with(&XZ_MAGIC) {
        // Multi-stream like `xz -dc`: concatenated .xz files decode as one image.
        return Ok(Source {
            reader: Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered)),
            compression: Compression::Xz,
            size: None,
        });
    }
    Ok(Source {
        reader: Box::new(buffered),
        compression: Compression::None,
        size: Some(len),
    })
}

/// Fills `buf` as far as the stream allows; returns how much was read.
pub fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
