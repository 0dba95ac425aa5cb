//! `fleet config validate FILE` and `fleet config init`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use fleet_config::{Config, Severity};

use crate::outcome::Reported;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a config.json: one line per problem (PATH: reason); exit 1 when any is an error.
    Validate {
        file: PathBuf,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Write a starting config.json (to stdout, or to --output).
    Init {
        /// Where to write; refuses to overwrite an existing file unless --force.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
}

/// The starting config: production defaults with every fleetOS key shown once.
/// Kept in sync with `conf/config.sample.json` by a test.
pub const SAMPLE: &str = include_str!("../../../../conf/config.sample.json");

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Validate { file, strict } => validate(&file, strict),
        Command::Init { output, force } => init(output, force),
    }
}

fn validate(file: &PathBuf, strict: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
    let name = file.display();
    match Config::from_slice(&bytes) {
        Ok(config) => {
            for w in config.warnings() {
                println!("{name}: warning: {w}");
            }
            if strict && !config.warnings().is_empty() {
                return Err(Reported(format!("{name}: warnings in strict mode")).into());
            }
            println!("{name}: valid");
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                let level = match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                println!("{name}: {level}: {p}");
            }
            Err(Reported(format!("{name}: invalid")).into())
        }
    }
}

fn init(output: Option<PathBuf>, force: bool) -> anyhow::Result<()> {
    match output {
        None => {
            std::io::stdout().write_all(SAMPLE.as_bytes())?;
            Ok(())
        }
        Some(path) => {
            if path.exists() && !force {
                bail!("{}: exists; pass --force to overwrite", path.display());
            }
            fleet_fs::atomic_write(&path, SAMPLE.as_bytes(), 0o644)?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sample_is_valid_without_warnings() {
        let c = fleet_config::Config::from_slice(super::SAMPLE.as_bytes()).unwrap();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }
}
