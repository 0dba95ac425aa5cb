//! `fleetd provision --root TMP` over the corpus in `tests/data/provision/<case>/`: each case
//! has a `config.json` (none for `missing`), an optional `seed/` tree copied in first, and the
//! tree expected afterwards: `expected.manifest` (every path with its mode, symlinks with their
//! target) and `expected/` (every file's content). A second run must rewrite nothing.
//!
//! To regenerate after an intended change: `FLEET_BLESS=1 cargo test --test provision_corpus`,
//! then review the diff.

mod provision_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use provision_support::{Kind, TestRoot, data_dir, manifest};

fn copy_seed(from: &Path, root: &TestRoot, rel: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let rel = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_seed(&entry.path(), root, &rel);
        } else {
            // Hand-made files get a deliberately loose mode; provisioning must tighten it.
            root.write(
                rel.to_str().unwrap(),
                &fs::read(entry.path()).unwrap(),
                0o644,
            );
        }
    }
}

fn cases() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(data_dir())
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.file_type()
                .unwrap()
                .is_dir()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

fn check_case(name: &str) {
    let case = data_dir().join(name);
    let root = TestRoot::seeded();
    if case.join("seed").is_dir() {
        copy_seed(&case.join("seed"), &root, Path::new(""));
    }
    let config = case.join("config.json");
    if config.exists() {
        root.set_config(&fs::read(&config).unwrap());
    }

    let first = root.provision();
    assert_eq!(first.code, 0, "{name}: {}", first.stderr);
    if !config.exists() {
        assert!(
            first
                .lines("warning")
                .iter()
                .any(|l| l.contains("config.json not found")),
            "{name}: no warning about the missing file:\n{}",
            first.stderr
        );
    }
    let after = root.snapshot();

    if std::env::var_os("FLEET_BLESS").is_some() {
        let _ = fs::remove_dir_all(case.join("expected"));
        fs::write(case.join("expected.manifest"), manifest(&after)).unwrap();
        for (path, entry) in &after {
            if let Kind::File(bytes) = &entry.kind {
                let dest = case.join("expected").join(path);
                fs::create_dir_all(dest.parent().unwrap()).unwrap();
                fs::write(&dest, bytes).unwrap();
                fs::set_permissions(&dest, fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    } else {
        let want = fs::read_to_string(case.join("expected.manifest")).unwrap();
        assert_eq!(manifest(&after), want, "{name}: paths or modes differ");
        for (path, entry) in &after {
            if let Kind::File(bytes) = &entry.kind {
                let want = fs::read(case.join("expected").join(path)).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(&want),
                    "{name}: content of {path}"
                );
            }
        }
    }

    // Idempotence: the second run rewrites nothing (same inodes, same mtimes) and logs no change.
    let second = root.provision();
    assert_eq!(second.code, 0, "{name}: {}", second.stderr);
    assert_eq!(
        root.snapshot(),
        after,
        "{name}: second run changed the tree"
    );
    assert!(
        second.lines("info").is_empty(),
        "{name}: second run logged changes:\n{}",
        second.stderr
    );
}

#[test]
fn corpus_trees_match_file_by_file_and_rerun_changes_nothing() {
    let cases = cases();
    assert!(cases.len() >= 5, "corpus missing: {cases:?}");
    for name in cases {
        check_case(&name);
    }
}
