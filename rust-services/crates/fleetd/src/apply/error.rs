//! Errors shared by the modules that apply config.json.

use fleet_fs::FsError;

use super::effects::EffectError;

/// One setting that failed to apply; the other settings still apply.
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Effect(#[from] EffectError),
    /// Boxed: the network import's error is large and rare.
    #[error(transparent)]
    Net(Box<crate::net::NetError>),
}

/// config.json could not be used: nothing of it is applied.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
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
}

impl LoadError {
    /// The same refusal, noting that the last good configuration was applied instead.
    pub fn kept_last_good(self) -> LoadError {
        match self {
            LoadError::Invalid { path, count, .. } => LoadError::Invalid {
                path,
                count,
                kept: true,
            },
            LoadError::Unreadable { path, reason, .. } => LoadError::Unreadable {
                path,
                reason,
                kept: true,
            },
        }
    }
}
