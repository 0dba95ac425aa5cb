//! The small `KEY=value` settings files of the image (`/etc/fleet/update.conf`,
//! `/etc/fleet/supervisor.conf`), read strictly: a line that is not `KEY=value`, a key the
//! reader does not know or a key set twice is an error naming the file and line, never
//! skipped — a typo must not silently fall back to a default.
//!
//! Syntax: one `KEY=value` per line; blank lines and lines starting with `#` are ignored;
//! blanks around the key and the value are trimmed; a value in double quotes loses them;
//! an empty value leaves the key unset.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyValueError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: not KEY=value: {text:?}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{}:{line}: unknown key {key:?} (known: {})", path.display(), known.join(", "))]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        known: Vec<&'static str>,
    },
    #[error("{}:{line}: {key} is set twice (first on line {first})", path.display())]
    Duplicate {
        path: PathBuf,
        line: usize,
        key: String,
        first: usize,
    },
    #[error("{}:{line}: {key}={value:?}: {expected}", path.display())]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        value: String,
        expected: String,
    },
}

/// A settings file as read: its path and its non-empty settings with their line numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValues {
    path: PathBuf,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    value: String,
    line: usize,
}

impl KeyValues {
    /// Reads `path`; a missing file is `Ok(None)` (every key unset).
    pub fn read(path: &Path, known: &[&'static str]) -> Result<Option<KeyValues>, KeyValueError> {
        match std::fs::read_to_string(path) {
            Ok(text) => KeyValues::parse(path, &text, known).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyValueError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// Parses `text` as the contents of `path`, accepting only the `known` keys.
    pub fn parse(
        path: &Path,
        text: &str,
        known: &[&'static str],
    ) -> Result<KeyValues, KeyValueError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let split = trimmed.split_once('=').map(|(k, v)| (k.trim(), v));
            let Some((key, value)) = split.filter(|(k, _)| !k.is_empty()) else {
                return Err(KeyValueError::Syntax {
                    path: path.into(),
                    line,
                    text: trimmed.into(),
                });
            };
            if !known.contains(&key) {
                return Err(KeyValueError::UnknownKey {
                    path: path.into(),
                    line,
                    key: key.into(),
                    known: known.to_vec(),
                });
            }
            if let Some((_, first)) = seen.iter().find(|(k, _)| k == key) {
                return Err(KeyValueError::Duplicate {
                    path: path.into(),
                    line,
                    key: key.into(),
                    first: *first,
                });
            }
            seen.push((key.into(), line));
            let value = unquote(value.trim());
            if !value.is_empty() {
                entries.push(Entry {
                    key: key.into(),
                    value: value.into(),
                    line,
                });
            }
        }
        Ok(KeyValues {
            path: path.into(),
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value of `key`, when set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    /// The value of `key` checked by `accept`; its refusal becomes an error naming the file,
    /// the line and what `accept` expected.
    pub fn get_with<T>(
        &self,
        key: &str,
        accept: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, KeyValueError> {
        let Some(entry) = self.entry(key) else {
            return Ok(None);
        };
        accept(&entry.value)
            .map(Some)
            .map_err(|expected| KeyValueError::BadValue {
                path: self.path.clone(),
                line: entry.line,
                key: key.into(),
                value: entry.value.clone(),
                expected,
            })
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["bootloader", "health-units"];

    fn parse(text: &str) -> Result<KeyValues, KeyValueError> {
        KeyValues::parse(Path::new("/etc/fleet/update.conf"), text, KNOWN)
    }

    #[test]
    fn comments_blanks_quotes_and_empty_values() {
        let kv = parse("# c\n\n bootloader = \"uboot\" \nhealth-units=\n").unwrap();
        assert_eq!(kv.get("bootloader"), Some("uboot"));
        assert_eq!(kv.get("health-units"), None);
    }

    #[test]
    fn every_mistake_names_file_and_line() {
        let cases = [
            (
                "bootloader grub\n",
                "/etc/fleet/update.conf:1: not KEY=value: \"bootloader grub\"",
            ),
            (
                "\nbootlaoder=grub\n",
                "/etc/fleet/update.conf:2: unknown key \"bootlaoder\" (known: bootloader, health-units)",
            ),
            (
                "bootloader=grub\nbootloader=uboot\n",
                "/etc/fleet/update.conf:2: bootloader is set twice (first on line 1)",
            ),
            (
                "=grub\n",
                "/etc/fleet/update.conf:1: not KEY=value: \"=grub\"",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), message, "{text:?}");
        }
    }

    #[test]
    fn checked_value() {
        let kv = parse("bootloader=lilo\n").unwrap();
        let err = kv
            .get_with("bootloader", |v| match v {
                "grub" | "uboot" => Ok(v.to_string()),
                _ => Err("grub or uboot".into()),
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/fleet/update.conf:1: bootloader=\"lilo\": grub or uboot"
        );
    }

    #[test]
    fn missing_file_is_unset_and_unreadable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            KeyValues::read(&dir.path().join("none.conf"), KNOWN).unwrap(),
            None
        );
        // A directory where the file should be cannot be read as text.
        let err = KeyValues::read(dir.path(), KNOWN).unwrap_err();
        assert!(matches!(err, KeyValueError::Read { .. }), "{err}");
    }
}
