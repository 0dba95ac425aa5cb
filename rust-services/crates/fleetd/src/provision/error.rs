//! Errors of `fleetd provision`.

use fleet_fs::FsError;

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
    #[error("{path}: cannot read: {reason}{}",
        if *kept { "; the last good configuration stays applied" } else { "" })]
    Unreadable {
        path: String,
        reason: String,
        kept: bool,
    },
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

impl ProvisionError {
    /// The same refusal, noting that the last good configuration was applied instead.
    pub fn kept_last_good(self) -> ProvisionError {
        match self {
            ProvisionError::Invalid { path, count, .. } => ProvisionError::Invalid {
                path,
                count,
                kept: true,
            },
            ProvisionError::Unreadable { path, reason, .. } => ProvisionError::Unreadable {
                path,
                reason,
                kept: true,
            },
            other => other,
        }
    }
}
