//! The `config.json` model.
//!
//! The document is kept as an ordered JSON object (serde_json `preserve_order`), so keys this
//! model does not know — the balena supervisor's and any future tool's — survive a
//! read-modify-write in place and in order. The typed [`Settings`] view is derived from the
//! document by the validator, which is the single place that knows the keys.

mod dupkeys;
pub mod header;
mod problem;
mod settings;
mod validate;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use problem::{Problem, Severity};
pub use settings::{Connectivity, FleetSettings, Settings, SupervisorKeys, WifiNetwork};
pub use validate::{MAX_CONFIG_BYTES, is_valid_hostname, is_valid_ip};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid ({} problem{}): {}", path.display(), problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Suffix of the whole replacement `fleet image configure` leaves next to a boot-partition
/// file it is replacing: FAT has no atomic rename-over, so the replacement is written and
/// flushed as `NAME.fleet-next` (via `NAME.fleet-tmp`) before `NAME` is rewritten, and removed
/// last. While it exists it is the file's content (`NAME` may be half-written then).
/// Not `.fleet-new`: `fleet` before this scheme used that name for an unflushed temporary.
pub const FAT_NEW_SUFFIX: &str = ".fleet-next";
/// Suffix of a replacement still being written: never read.
pub const FAT_TMP_SUFFIX: &str = ".fleet-tmp";
/// Suffix of a replacement on its way out (renamed before removal): never read.
pub const FAT_OLD_SUFFIX: &str = ".fleet-old";

/// The file that holds `path`'s content on a FAT partition: `path.fleet-next` while an
/// interrupted replacement left it there, else `path`. An empty `path.fleet-next` is not a
/// replacement: Linux's vfat gives a renamed file an empty directory entry (no cluster, size
/// 0) until the file's inode is written, and a cut in between leaves that entry next to the
/// intact `path` (tests/powerloss `vfat-registration`).
pub fn fat_current(path: &Path) -> PathBuf {
    let mut new = path.as_os_str().to_owned();
    new.push(FAT_NEW_SUFFIX);
    let new = PathBuf::from(new);
    if new.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
        new
    } else {
        path.to_path_buf()
    }
}

/// A validated `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    doc: Map<String, Value>,
    settings: Settings,
    warnings: Vec<Problem>,
    pretty: bool,
}

impl Config {
    /// Parses and validates. On refusal returns every error (and the warnings after them).
    pub fn from_slice(bytes: &[u8]) -> Result<Config, Vec<Problem>> {
        let doc = validate::parse_document(bytes)?;
        let pretty = bytes
            .iter()
            .take_while(|b| **b != b'}')
            .any(|b| *b == b'\n');
        let mut config = Config::from_document(doc)?;
        config.pretty = pretty;
        Ok(config)
    }

    fn from_document(doc: Map<String, Value>) -> Result<Config, Vec<Problem>> {
        let (settings, problems) = validate::check(&doc);
        let (errors, warnings): (Vec<_>, Vec<_>) = problems
            .into_iter()
            .partition(|p| p.severity == Severity::Error);
        if !errors.is_empty() {
            return Err(errors.into_iter().chain(warnings).collect());
        }
        Ok(Config {
            doc,
            settings,
            warnings,
            pretty: false,
        })
    }

    /// Reads `path` (or the replacement a power cut left next to it, [`fat_current`]).
    /// `Ok(None)` when the file does not exist (callers apply defaults).
    pub fn load(path: &Path) -> Result<Option<Config>, ConfigError> {
        let path = &fat_current(path);
        let bytes = match read_limited(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ConfigError::Io {
                    path: path.into(),
                    source: e,
                });
            }
        };
        Config::from_slice(&bytes)
            .map(Some)
            .map_err(|problems| ConfigError::Invalid {
                path: path.into(),
                problems,
            })
    }

    /// An empty configuration: every setting at its default.
    pub fn empty() -> Config {
        Config {
            doc: Map::new(),
            settings: Settings::default(),
            warnings: Vec::new(),
            pretty: true,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// The whole document, unknown keys included, in file order.
    pub fn document(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// Sets the value at `path` (object keys, created as needed) and re-validates; on
    /// refusal the configuration is left as it was.
    pub fn set(&mut self, path: &[&str], value: Value) -> Result<(), Vec<Problem>> {
        let mut doc = self.doc.clone();
        let Some((last, parents)) = path.split_last() else {
            return Ok(());
        };
        let mut obj = &mut doc;
        for key in parents {
            let slot = obj
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(next) = slot else {
                unreachable!("slot was just made an object")
            };
            obj = next;
        }
        obj.insert(last.to_string(), value);
        self.replace_document(doc)
    }

    /// Removes the value at `path` if present, and re-validates.
    pub fn remove(&mut self, path: &[&str]) -> Result<(), Vec<Problem>> {
        let mut doc = self.doc.clone();
        let Some((last, parents)) = path.split_last() else {
            return Ok(());
        };
        let mut obj = &mut doc;
        for key in parents {
            match obj.get_mut(*key) {
                Some(Value::Object(next)) => obj = next,
                _ => return Ok(()),
            }
        }
        obj.shift_remove(*last);
        self.replace_document(doc)
    }

    fn replace_document(&mut self, doc: Map<String, Value>) -> Result<(), Vec<Problem>> {
        let pretty = self.pretty;
        *self = Config::from_document(doc)?;
        self.pretty = pretty;
        Ok(())
    }

    /// Writes the document to `path` on the boot partition, power-safe ([`replace_on_fat`]).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        replace_on_fat(path, &self.to_bytes())
    }

    /// Serialises the document: compact when the input was one line (as balenaOS writes it),
    /// pretty otherwise; always newline-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let doc = Value::Object(self.doc.clone());
        let mut out = if self.pretty {
            serde_json::to_vec_pretty(&doc)
        } else {
            serde_json::to_vec(&doc)
        }
        .unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Replaces the file at `path` on a mounted FAT partition (the boot partition) so that a
/// power cut at any point leaves its old or its new content as [`Config::load`] reads it:
/// the scheme `fleet image configure` uses on an image (`fleet_image::bootfs`), here through
/// the kernel's vfat, with an fsync of the file and of its directory as the barrier. A
/// replacement an earlier cut left behind is finished first.
pub fn replace_on_fat(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let (tmp, new, old) = (
        with(FAT_TMP_SUFFIX),
        with(FAT_NEW_SUFFIX),
        with(FAT_OLD_SUFFIX),
    );
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ConfigError::Io { path: p, source }
    };
    let barrier = || std::fs::File::open(dir).and_then(|d| d.sync_all());
    let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
    let write = |p: &Path, bytes: &[u8]| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(p)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    let remove = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    // With `new` durable and whole: `path` := `bytes`, then `new` retired under a name
    // nobody reads before it is removed.
    let rewrite = |bytes: &[u8]| -> std::io::Result<()> {
        remove(path)?;
        barrier()?;
        write(path, bytes)?;
        barrier()?;
        remove(&old)?;
        std::fs::rename(&new, &old)?;
        barrier()?;
        remove(&old)?;
        barrier()
    };
    match std::fs::read(&new) {
        // The empty entry of a rename whose inode never reached the card (see above):
        // `path` is intact, the replacement was never whole.
        Ok(left) if left.is_empty() => remove(&new).map_err(io(&new))?,
        Ok(left) => rewrite(&left).map_err(io(path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&new)(e)),
    }
    remove(&tmp).map_err(io(&tmp))?;
    remove(&old).map_err(io(&old))?;
    write(&tmp, bytes).map_err(io(&tmp))?;
    barrier().map_err(io(dir))?;
    std::fs::rename(&tmp, &new).map_err(io(&new))?;
    // Linux's vfat writes the renamed file's new directory entry empty (no start cluster,
    // size 0) and fills it in only when the file's inode is written back: the directory's
    // fsync does not do that, the file's does. Without this, every cut until `new` is retired
    // leaves an empty `new` (tests/powerloss `vfat-registration`).
    sync(&new).map_err(io(&new))?;
    barrier().map_err(io(dir))?;
    rewrite(bytes).map_err(io(path))
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    // One byte past the limit is enough for the validator to report the size.
    f.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
