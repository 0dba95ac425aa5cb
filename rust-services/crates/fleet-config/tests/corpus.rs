//! The validator agrees with the corpus under tests/data/config/ (the schema suite checks the
//! same files against conf/config.schema.json).

use std::path::{Path, PathBuf};

use fleet_config::{Config, Severity};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../tests/data/config")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e}", base.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", base.display());
    files
}

#[test]
fn valid_files_are_accepted() {
    for f in corpus("valid") {
        let bytes = std::fs::read(&f).unwrap();
        if let Err(p) = Config::from_slice(&bytes) {
            panic!("{} refused: {p:?}", f.display());
        }
    }
}

#[test]
fn invalid_files_are_refused_with_a_path() {
    for f in corpus("invalid")
        .into_iter()
        .chain(corpus("invalid-beyond-schema"))
    {
        let bytes = std::fs::read(&f).unwrap();
        match Config::from_slice(&bytes) {
            Ok(_) => panic!("{} accepted", f.display()),
            Err(problems) => {
                let e = problems
                    .iter()
                    .find(|p| p.severity == Severity::Error)
                    .unwrap_or_else(|| panic!("{}: no error among {problems:?}", f.display()));
                assert!(
                    !e.path.is_empty() && !e.message.is_empty(),
                    "{}",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn sample_config_is_valid_without_warnings() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../conf/config.sample.json");
    let c = Config::load(&p).unwrap().unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}
