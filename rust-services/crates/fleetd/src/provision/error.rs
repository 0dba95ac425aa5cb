//! Errors of `fleetd provision`.

pub use crate::apply::{ItemError, LoadError};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{} setting{} failed to apply: {}", failed.len(),
        if failed.len() == 1 { "" } else { "s" }, failed.join(", "))]
    Partial { failed: Vec<&'static str> },
}
