//! Shared by the provision and logging tests: run the real `fleetd` binary against a temp
//! root and look at the tree it leaves, file by file.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The machine-id every corpus root starts with, so expected trees are fixed.
pub const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";

pub fn repo_top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

pub fn data_dir() -> PathBuf {
    repo_top().join("tests/data/provision")
}

pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    pub fn new() -> TestRoot {
        TestRoot {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A root with a fixed machine-id, as the state partition has after the first boot.
    pub fn seeded() -> TestRoot {
        let root = TestRoot::new();
        root.write(
            "etc/machine-id",
            format!("{MACHINE_ID}\n").as_bytes(),
            0o444,
        );
        root
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, bytes: &[u8], mode: u32) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn set_config(&self, bytes: &[u8]) {
        self.write("mnt/boot/config.json", bytes, 0o644);
    }

    pub fn set_config_json(&self, value: &serde_json::Value) {
        self.set_config(serde_json::to_string_pretty(value).unwrap().as_bytes());
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).symlink_metadata().is_ok()
    }

    pub fn fleetd(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetd"))
            .arg("--root")
            .arg(self.dir.path())
            .args(args)
            .env_remove("FLEET_ROOT")
            .env_remove("JOURNAL_STREAM")
            .env("FLEET_LOG", "debug")
            .output()
            .unwrap();
        Run::from(out)
    }

    pub fn provision(&self) -> Run {
        self.fleetd(&["provision"])
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot(self.dir.path())
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "fleetd failed:\n{}", self.stderr);
        self
    }

    /// Lines logged at `level` (info, warning, error, debug).
    pub fn lines(&self, level: &str) -> Vec<&str> {
        let tag = format!(": {level}: ");
        self.stderr.lines().filter(|l| l.contains(&tag)).collect()
    }
}

/// One entry of a tree: what a test compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Link(PathBuf),
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub mtime_ns: i128,
    pub ino: u64,
}

/// Every path below a root (relative, `/`-separated) with kind, content, mode, mtime, inode.
pub type Snapshot = BTreeMap<String, Entry>;

pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = path.symlink_metadata().unwrap();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let kind = if meta.file_type().is_symlink() {
            Kind::Link(fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            Kind::Dir
        } else {
            Kind::File(fs::read(&path).unwrap())
        };
        let is_dir = kind == Kind::Dir;
        out.insert(
            rel,
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
                ino: meta.ino(),
            },
        );
        if is_dir {
            walk(root, &path, out);
        }
    }
}

/// Files and symlinks only, by content and mode (no times): what "the same state" means.
pub fn content(s: &Snapshot) -> BTreeMap<String, (Kind, u32)> {
    s.iter()
        .filter(|(_, e)| e.kind != Kind::Dir)
        .map(|(p, e)| (p.clone(), (e.kind.clone(), e.mode)))
        .collect()
}

/// The manifest of a tree: one line per entry, `MODE path`, `MODE path/` for directories,
/// `link path -> target` for symlinks.
pub fn manifest(s: &Snapshot) -> String {
    let mut out = String::new();
    for (path, e) in s {
        match &e.kind {
            Kind::File(_) => out.push_str(&format!("{:04o} {path}\n", e.mode)),
            Kind::Dir => out.push_str(&format!("{:04o} {path}/\n", e.mode)),
            Kind::Link(t) => out.push_str(&format!("link {path} -> {}\n", t.display())),
        }
    }
    out
}
