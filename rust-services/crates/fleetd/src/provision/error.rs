//! Errors of `fleetd provision`.

use fleet_core::fs::FsError;

use super::effects::EffectError;

/// One setting that failed to apply; the other settings still apply.
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Effect(#[from] EffectError),
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{path}: cannot read: {reason}; nothing changed")]
    Unreadable { path: String, reason: String },
    #[error("{path}: refused ({count} problem{}), nothing of it applied{}",
        if *count == 1 { "" } else { "s" },
        if *kept { "; the last good configuration stays applied" } else { "" })]
    Invalid {
        path: String,
        count: usize,
        kept: bool,
    },
    #[error("{} setting{} failed to apply: {}", failed.len(),
        if failed.len() == 1 { "" } else { "s" }, failed.join(", "))]
    Partial { failed: Vec<&'static str> },
}
