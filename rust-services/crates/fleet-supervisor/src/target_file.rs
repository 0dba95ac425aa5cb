//! Target-state files: reading one (`apply`, `plan`, `check-target`) and the local-mode
//! target below the root prefix. The document itself is `fleet_release::target_state`'s.

use std::path::{Path, PathBuf};

use fleet_fs::{FsError, Root};
use fleet_release::target_state::{self, TargetError, TargetState};

/// Local-mode target file, below the root prefix.
pub const LOCAL_TARGET_FILE: &str = "/mnt/data/fleet-supervisor/target.json";

#[derive(Debug, thiserror::Error)]
pub enum TargetFileError {
    /// The file could not be read; the I/O error is the source.
    #[error("{}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no valid target state; the problems are the source.
    #[error("{}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: TargetError,
    },
    /// Saving the local-mode file failed (the error names the file).
    #[error(transparent)]
    Write(#[from] FsError),
}

/// Reads and validates a target-state file.
pub fn load(path: &Path) -> Result<TargetState, TargetFileError> {
    let bytes = std::fs::read(path).map_err(|source| TargetFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    target_state::parse(&bytes).map_err(|source| TargetFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}

/// The local-mode target below the root prefix; `Ok(None)` when there is none.
pub fn load_local(root: &Root) -> Result<Option<TargetState>, TargetFileError> {
    let path = root.path(LOCAL_TARGET_FILE);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => load(&path).map(Some),
    }
}

/// Validates `bytes` and only then replaces the local-mode target atomically, so a bad
/// document leaves the last good target in place.
pub fn save_local(root: &Root, bytes: &[u8]) -> Result<TargetState, TargetFileError> {
    let path = root.path(LOCAL_TARGET_FILE);
    let state = target_state::parse(bytes).map_err(|source| TargetFileError::Invalid {
        path: path.clone(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        fleet_fs::ensure_dir(dir)?;
    }
    fleet_fs::atomic_write(&path, bytes, 0o600)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../fleet-release/doc/target.example.json");

    #[test]
    fn load_names_the_file_and_chains_the_cause() {
        let err = load(Path::new("/nonexistent/target.json")).unwrap_err();
        assert_eq!(err.to_string(), "/nonexistent/target.json");
        let line = fleet_log::error::one_line(&err);
        assert!(
            line.starts_with("/nonexistent/target.json: No such file"),
            "{line}"
        );

        let tmp = tempfile::tempdir().unwrap();
        let bad = tmp.path().join("bad.json");
        std::fs::write(&bad, "{}").unwrap();
        let err = load(&bad).unwrap_err();
        let line = fleet_log::error::one_line(&err);
        assert!(
            line.starts_with(&format!(
                "{}: target state invalid (1 problem)",
                bad.display()
            )),
            "{line}"
        );
    }

    #[test]
    fn local_mode_file_round_trip_keeps_last_good() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        assert!(load_local(&root).unwrap().is_none());
        let saved = save_local(&root, EXAMPLE.as_bytes()).unwrap();
        assert!(
            tmp.path()
                .join("mnt/data/fleet-supervisor/target.json")
                .is_file()
        );
        assert_eq!(load_local(&root).unwrap().unwrap(), saved);
        let bad = br#"{"dev1": {"apps": {"app1": {"id": 1, "name": "a", "releases": {"r1": {"id": "one"}}}}}}"#;
        assert!(matches!(
            save_local(&root, bad),
            Err(TargetFileError::Invalid { .. })
        ));
        assert_eq!(load_local(&root).unwrap().unwrap(), saved);
    }
}
