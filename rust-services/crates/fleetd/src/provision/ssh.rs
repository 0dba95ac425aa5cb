//! `os.sshKeys` → root's `authorized_keys`.
//!
//! The keys from config.json sit in one fenced block; lines outside it (keys a user added by
//! hand) are kept as they are. The block is rewritten from config.json every boot; with no
//! keys configured it disappears.

use std::fs;

use fleet_config::Settings;
use fleet_fs::Root;
use fleet_fs::{Change, write_if_changed};

use crate::apply::error::ItemError;
use crate::apply::files::{dir_with_mode, remove_if_exists};

pub const SSH_DIR: &str = "/home/root/.ssh";
pub const AUTHORIZED_KEYS: &str = "/home/root/.ssh/authorized_keys";
pub const BEGIN: &str =
    "# fleetOS managed keys begin (from config.json os.sshKeys; edits inside are replaced)";
const BEGIN_PREFIX: &str = "# fleetOS managed keys begin";
pub const END: &str = "# fleetOS managed keys end";

/// `existing` with its managed block(s) replaced by one block holding `keys`.
pub fn merge(existing: &str, keys: &[String]) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut inside = false;
    for line in existing.lines() {
        if line.starts_with(BEGIN_PREFIX) {
            inside = true;
        } else if inside && line.trim_end() == END {
            inside = false;
        } else if !inside {
            kept.push(line);
        }
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let mut out = String::new();
    for line in kept {
        out.push_str(line);
        out.push('\n');
    }
    if !keys.is_empty() {
        out.push_str(BEGIN);
        out.push('\n');
        for key in keys {
            out.push_str(key);
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

pub fn apply(root: &Root, settings: &Settings) -> Result<(), ItemError> {
    let path = root.path(AUTHORIZED_KEYS);
    let existing = fs::read_to_string(&path).unwrap_or_default();
    let content = merge(&existing, &settings.ssh_keys);
    if content.is_empty() {
        if remove_if_exists(&path)? == Change::Written {
            log::info!(FLEET_KEY = "os.sshKeys", FLEET_PATH = AUTHORIZED_KEYS; "authorized_keys removed (no keys left)");
        }
        return Ok(());
    }
    let dir_changed = dir_with_mode(&root.path(SSH_DIR), 0o700)? == Change::Written;
    if write_if_changed(&path, content.as_bytes(), 0o600)? == Change::Written || dir_changed {
        log::info!(FLEET_KEY = "os.sshKeys", FLEET_PATH = AUTHORIZED_KEYS;
            "authorized_keys: {} key(s) from config.json", settings.ssh_keys.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_hand_added_keys_and_replaces_ours() {
        let old = format!("ssh-ed25519 AAAA hand\n{BEGIN}\nssh-ed25519 BBBB old\n{END}\n");
        let new = merge(&old, &["ssh-ed25519 CCCC new".into()]);
        assert_eq!(
            new,
            format!("ssh-ed25519 AAAA hand\n{BEGIN}\nssh-ed25519 CCCC new\n{END}\n")
        );
        assert_eq!(merge(&new, &[]), "ssh-ed25519 AAAA hand\n");
        assert_eq!(merge(&merge(&new, &[]), &[]), "ssh-ed25519 AAAA hand\n");
    }

    #[test]
    fn unterminated_block_is_ours_to_the_end() {
        let old = format!("user-key\n{BEGIN}\nstale\n");
        assert_eq!(merge(&old, &[]), "user-key\n");
    }
}
