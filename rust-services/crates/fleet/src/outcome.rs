//! How a command ended, beyond success: the error types main maps to exit codes.

use std::path::PathBuf;

/// An error whose lines were already printed; only the exit status is left to give.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// An input file that could not be read: exit 2, like a usage error.
#[derive(Debug, thiserror::Error)]
#[error("{}", path.display())]
pub struct Unreadable {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A command that is not built yet: exit 2, like fleetd's stubs.
#[derive(Debug, thiserror::Error)]
#[error("fleet {0}: not implemented")]
pub struct NotImplemented(pub &'static str);
