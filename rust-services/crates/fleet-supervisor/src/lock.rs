//! Update locks on the host: creating the per-app lock directories, taking and checking the
//! flocks, the hand-over signal files. Their names and paths (and the bind mounts into the
//! containers) are `fleet_release::update_lock`'s.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use fleet_release::update_lock::{HANDOVER_FILES, LOCK_FILES, app_lock_dir};

/// Whether the new container of a hand-over has signalled that it took over.
pub fn handover_signalled(dir: &Path) -> bool {
    HANDOVER_FILES.iter().any(|f| dir.join(f).exists())
}

/// Clears the hand-over signal once the old container is gone, so the next hand-over of
/// the app waits for its own signal.
pub fn clear_handover(dir: &Path) -> Result<(), LockError> {
    for f in HANDOVER_FILES {
        let path = dir.join(f);
        // A /tmp signal file: no fsync wanted, it does not outlive a reboot anyway.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(LockError {
                    path,
                    action: "remove hand-over file",
                    source: e,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {action}", path.display())]
pub struct LockError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: io::Error,
}

/// Creates the app's lock directory (before its containers are created).
pub fn ensure_app_lock_dir(lock_root: &Path, app_uuid: &str) -> Result<PathBuf, LockError> {
    let dir = app_lock_dir(lock_root, app_uuid);
    std::fs::create_dir_all(&dir).map_err(|source| LockError {
        path: dir.clone(),
        action: "create lock directory",
        source,
    })?;
    Ok(dir)
}

/// Locks the supervisor took; dropping it releases them.
#[derive(Debug)]
pub struct AppLock {
    _locks: Vec<Flock<File>>,
}

/// Tries to take every lock file of `dir` without waiting. `Ok(None)`: some process of the
/// app holds one (nothing is kept). Missing files are created so the app cannot take the
/// lock while the supervisor updates.
pub fn try_take(dir: &Path) -> Result<Option<AppLock>, LockError> {
    let mut locks = Vec::new();
    for name in LOCK_FILES {
        let path = dir.join(name);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| LockError {
                path: path.clone(),
                action: "open lock file",
                source,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => locks.push(lock),
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, errno)) => {
                return Err(LockError {
                    path,
                    action: "flock",
                    source: io::Error::from(errno),
                });
            }
        }
    }
    Ok(Some(AppLock { _locks: locks }))
}

/// Whether a process holds one of the app's lock files (missing files: not held).
pub fn is_held(dir: &Path) -> Result<bool, LockError> {
    for name in LOCK_FILES {
        let path = dir.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(LockError {
                    path,
                    action: "open lock file",
                    source,
                });
            }
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(_released_on_drop) => {}
            Err((_, Errno::EWOULDBLOCK)) => return Ok(true),
            Err((_, errno)) => {
                return Err(LockError {
                    path,
                    action: "flock",
                    source: io::Error::from(errno),
                });
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(path: &Path) -> Flock<File> {
        let f = File::create(path).unwrap();
        Flock::lock(f, FlockArg::LockExclusiveNonblock).unwrap()
    }

    #[test]
    fn missing_files_are_not_held() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ensure_app_lock_dir(tmp.path(), "app").unwrap();
        assert!(!is_held(&dir).unwrap());
    }

    #[test]
    fn an_unlocked_file_is_not_held() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ensure_app_lock_dir(tmp.path(), "app").unwrap();
        File::create(dir.join("updates.lock")).unwrap();
        assert!(!is_held(&dir).unwrap());
    }

    #[test]
    fn held_current_and_legacy_names() {
        for name in LOCK_FILES {
            let tmp = tempfile::tempdir().unwrap();
            let dir = ensure_app_lock_dir(tmp.path(), "app").unwrap();
            let guard = hold(&dir.join(name));
            assert!(is_held(&dir).unwrap(), "{name}");
            assert!(try_take(&dir).unwrap().is_none(), "{name}");
            drop(guard);
            assert!(!is_held(&dir).unwrap(), "{name}");
        }
    }

    #[test]
    fn handover_signal_both_names() {
        for name in HANDOVER_FILES {
            let tmp = tempfile::tempdir().unwrap();
            let dir = ensure_app_lock_dir(tmp.path(), "app").unwrap();
            assert!(!handover_signalled(&dir));
            File::create(dir.join(name)).unwrap();
            assert!(handover_signalled(&dir), "{name}");
            clear_handover(&dir).unwrap();
            assert!(!handover_signalled(&dir));
        }
    }

    #[test]
    fn supervisor_lock_keeps_the_app_out_until_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ensure_app_lock_dir(tmp.path(), "app").unwrap();
        let taken = try_take(&dir).unwrap().expect("free");
        // The app now finds the lock held.
        let f = File::open(dir.join("updates.lock")).unwrap();
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err());
        drop(taken);
        assert!(!is_held(&dir).unwrap());
    }
}
