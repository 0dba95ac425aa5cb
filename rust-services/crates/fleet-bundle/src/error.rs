//! Why a bundle was refused or could not be read or written.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("bundle is truncated: {0}")]
    TooShort(String),
    #[error("bundle is truncated: {what}")]
    Truncated {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("not a fleetOS bundle: {0}")]
    Layout(String),
    #[error("bundle is not signed (empty manifest.sig)")]
    Unsigned,
    #[error("bundle signature does not match any trusted key")]
    BadSignature,
    #[error("{}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("bad manifest.json: {0}")]
    Manifest(String),
    #[error("bad manifest.json")]
    ManifestJson(#[source] serde_json::Error),
    #[error("bundle image does not match the manifest: {0}")]
    Mismatch(String),
}

impl BundleError {
    /// Wraps an I/O error, telling a truncated stream apart.
    pub fn io(what: impl Into<String>, source: io::Error) -> BundleError {
        let what = what.into();
        if source.kind() == io::ErrorKind::UnexpectedEof
            || source.to_string().contains("incomplete frame")
        {
            BundleError::Truncated { what, source }
        } else {
            BundleError::Io { what, source }
        }
    }
}
