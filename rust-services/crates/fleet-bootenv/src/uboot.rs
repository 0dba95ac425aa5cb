//! U-Boot environment file (`uboot.env` on the FAT boot partition), single copy:
//! a little-endian CRC-32 of the data area, then `name=value` strings each ended by NUL, an
//! empty string, and padding up to the fixed size. U-Boot and libubootenv (`fw_setenv`) both
//! write the variables sorted by name and cannot hold empty values (setting one deletes it).
//!
//! The file must already exist: it holds U-Boot's whole environment (`bootcmd` included) once
//! U-Boot has saved it, and a file written from scratch would replace that environment.

use std::path::{Path, PathBuf};

use super::crc::crc32;
use super::{BootEnv, EnvError, Line, Vars};
use fleet_fs::{FsError, atomic_write};

/// A `uboot.env` file.
#[derive(Debug, Clone)]
pub struct UbootEnv {
    path: PathBuf,
}

impl UbootEnv {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        UbootEnv { path: path.into() }
    }
}

impl BootEnv for UbootEnv {
    fn path(&self) -> &Path {
        &self.path
    }

    fn kind(&self) -> &'static str {
        "uboot"
    }

    fn load(&self) -> Result<Vars, EnvError> {
        let bytes = std::fs::read(&self.path).map_err(|e| FsError::new(&self.path, "read", e))?;
        parse(&bytes).map_err(|reason| EnvError::Format {
            path: self.path.clone(),
            reason,
        })
    }

    fn store(&self, vars: &Vars) -> Result<(), EnvError> {
        // The size is the existing file's: U-Boot reads exactly CONFIG_ENV_SIZE bytes.
        let size = std::fs::metadata(&self.path)
            .map_err(|e| FsError::new(&self.path, "stat (U-Boot must have saved it once)", e))?
            .len() as usize;
        let bytes = serialize(vars, size).ok_or_else(|| EnvError::Full {
            path: self.path.clone(),
            size,
        })?;
        atomic_write(&self.path, &bytes, 0o644)?;
        Ok(())
    }
}

/// Parses an environment image; the error says what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Vars, String> {
    if bytes.len() < 8 {
        return Err(format!(
            "U-Boot environment too short ({} bytes)",
            bytes.len()
        ));
    }
    let stored = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let data = &bytes[4..];
    let actual = crc32(data);
    if stored != actual {
        return Err(format!(
            "U-Boot environment CRC mismatch (stored {stored:#010x}, computed {actual:#010x})"
        ));
    }
    let mut lines = Vec::new();
    for entry in data.split(|&b| b == 0) {
        if entry.is_empty() {
            break;
        }
        let text = std::str::from_utf8(entry)
            .map_err(|_| "U-Boot environment holds a variable that is not UTF-8".to_string())?;
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("U-Boot environment: entry without '=': {text:?}"))?;
        lines.push(Line::Var(name.to_string(), value.to_string()));
    }
    Ok(Vars {
        lines,
        size: Some(bytes.len()),
    })
}

/// The image of `size` bytes holding `vars` (sorted, empty values dropped, zero padding as
/// U-Boot's `saveenv` writes it); `None` when they do not fit.
pub fn serialize(vars: &Vars, size: usize) -> Option<Vec<u8>> {
    let mut pairs: Vec<(&str, &str)> = vars.iter().filter(|(_, v)| !v.is_empty()).collect();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = vec![0u8; 4];
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out.push(0);
    if out.len() > size {
        return None;
    }
    out.resize(size, 0);
    let crc = crc32(&out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sorted_and_without_empty_values() {
        let mut v = Vars::default();
        v.set("z", "1");
        v.set("bootcmd", "run x");
        v.set("fleet_try", "");
        let bytes = serialize(&v, 0x4000).unwrap();
        assert_eq!(bytes.len(), 0x4000);
        let back = parse(&bytes).unwrap();
        let names: Vec<_> = back.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["bootcmd", "z"]);
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(parse(&bad).unwrap_err().contains("CRC"));
    }
}
