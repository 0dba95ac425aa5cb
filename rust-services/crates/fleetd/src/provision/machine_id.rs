//! `/etc/machine-id`: made persistent on first boot.
//!
//! The image ships an empty machine-id on a read-only root, so systemd invents a transient
//! one every boot. The state partition's copy is bound over `/etc/machine-id`; when it is
//! empty or `uninitialized`, provisioning writes the id this boot already uses
//! (`/run/machine-id`, where systemd keeps a transient id) or a fresh random one.

use std::fs;
use std::io::Read;

use fleet_fs::Change;
use fleet_fs::Root;

use crate::apply::error::ItemError;
use crate::apply::files::write_file_maybe_bound;

pub const MACHINE_ID: &str = "/etc/machine-id";
const TRANSIENT_MACHINE_ID: &str = "/run/machine-id";

/// 32 lowercase hex digits, not all zero (systemd's rule).
pub fn is_valid(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0')
}

fn read_id(path: &std::path::Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let id = text.trim().to_string();
    is_valid(&id).then_some(id)
}

fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // Version 4 UUID bits, as systemd-id128 writes them.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Ensures a valid persistent machine-id and returns it.
pub fn apply(root: &Root) -> Result<String, ItemError> {
    let path = root.path(MACHINE_ID);
    if let Some(id) = read_id(&path) {
        return Ok(id);
    }
    let id = match read_id(&root.path(TRANSIENT_MACHINE_ID)) {
        Some(id) => id,
        None => random_id()
            .map_err(|e| fleet_fs::FsError::new("/dev/urandom", "read random machine-id", e))?,
    };
    if write_file_maybe_bound(&path, format!("{id}\n").as_bytes(), 0o444)? == Change::Written {
        log::info!(FLEET_KEY = "machine-id", FLEET_PATH = MACHINE_ID; "machine-id {id} made persistent");
    }
    Ok(id)
}
