//! The mount unit for `/var/log/journal`. A mount unit must name the canonical path (its
//! name is the escaped `Where=`, and systemd tracks the mount by the path the kernel reports),
//! so symlinks in the parents are resolved first: Yocto links `/var/log` to
//! `/var/volatile/log`.

use std::fs;

use fleet_fs::Root;

/// `path` with every symlink resolved inside `root` (absolute link targets are taken
/// relative to the root, as the device would see them).
pub fn canonical_in_root(root: &Root, path: &str) -> String {
    let mut pending: Vec<String> = path.split('/').rev().map(str::to_string).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = format!(
            "/{}",
            resolved
                .iter()
                .chain([&c])
                .cloned()
                .collect::<Vec<_>>()
                .join("/")
        );
        match fs::read_link(root.path(&candidate)) {
            Ok(target) if hops < 40 => {
                hops += 1;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
            }
            _ => resolved.push(c),
        }
    }
    format!("/{}", resolved.join("/"))
}

/// systemd's path escaping for unit names (`systemd-escape --path`).
pub fn unit_name(path: &str, suffix: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return format!("-.{suffix}");
    }
    let mut name = String::new();
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => name.push('-'),
            b'.' if i == 0 => name.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                name.push(b as char)
            }
            b => name.push_str(&format!("\\x{b:02x}")),
        }
    }
    format!("{name}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_systemd() {
        assert_eq!(
            unit_name("/var/log/journal", "mount"),
            "var-log-journal.mount"
        );
        assert_eq!(unit_name("/mnt/my-disk", "mount"), "mnt-my\\x2ddisk.mount");
        assert_eq!(unit_name("/", "mount"), "-.mount");
    }

    #[test]
    fn resolves_symlinked_parents_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert_eq!(
            canonical_in_root(&root, "/var/log/journal"),
            "/var/log/journal"
        );
        fs::create_dir_all(dir.path().join("var/volatile/log")).unwrap();
        std::os::unix::fs::symlink("volatile/log", dir.path().join("var/log")).unwrap();
        assert_eq!(
            canonical_in_root(&root, "/var/log/journal"),
            "/var/volatile/log/journal"
        );
        fs::remove_file(dir.path().join("var/log")).unwrap();
        std::os::unix::fs::symlink("/var/volatile/log", dir.path().join("var/log")).unwrap();
        assert_eq!(
            canonical_in_root(&root, "/var/log/journal"),
            "/var/volatile/log/journal"
        );
    }
}
