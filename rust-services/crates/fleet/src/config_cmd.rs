//! `fleet config validate FILE`, `fleet config init` and `fleet config generate` (a config
//! that joins a fleet on a balena-compatible server, as `balena config generate` makes).

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
    /// Write a config.json that registers the device with a fleet server (openBalena) at
    /// first boot with a provisioning key, like `balena config generate`.
    Generate {
        /// The server's API URL (`apiEndpoint`), e.g. https://api.example.com
        #[arg(long)]
        api: String,
        /// The fleet's numeric id (`applicationId`).
        #[arg(long)]
        fleet: String,
        /// A provisioning key of the fleet (`apiKey`), removed from the device once it is
        /// registered.
        #[arg(long)]
        provisioning_key: String,
        /// The device type slug (`deviceType`), e.g. raspberrypi4-64, generic-amd64.
        #[arg(long)]
        device_type: String,
        /// A development device (`developmentMode`).
        #[arg(long)]
        dev: bool,
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
}

/// Options of `fleet config generate`.
pub struct Generate<'a> {
    pub api: &'a str,
    pub fleet: &'a str,
    pub provisioning_key: &'a str,
    pub device_type: &'a str,
    pub dev: bool,
}

/// The starting config: production defaults with every fleetOS key shown once.
/// Kept in sync with `conf/config.sample.json` by a test.
pub const SAMPLE: &str = include_str!("../../../../conf/config.sample.json");

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Validate { file, strict } => validate(&file, strict),
        Command::Init { output, force } => write_out(output, force, SAMPLE.as_bytes()),
        Command::Generate {
            api,
            fleet,
            provisioning_key,
            device_type,
            dev,
            output,
            force,
        } => {
            let config = generate(&Generate {
                api: &api,
                fleet: &fleet,
                provisioning_key: &provisioning_key,
                device_type: &device_type,
                dev,
            })?;
            write_out(output, force, &config.to_bytes())
        }
    }
}

/// The starting config plus what registration needs; checked like any config.json.
pub fn generate(g: &Generate<'_>) -> anyhow::Result<Config> {
    let Ok(application_id) = g.fleet.trim().parse::<u64>() else {
        bail!(
            "--fleet {:?}: the fleet's numeric id is needed (the server's fleet page or \
             `GET /v7/application?$filter=slug eq '<org>/<name>'` shows it)",
            g.fleet
        );
    };
    // Only what joining needs (no sample Wi-Fi, no supervisor image override): the server
    // and the image's defaults do the rest, as with `balena config generate`.
    let mut config = Config::from_slice(b"{\n}")
        .map_err(|p| anyhow::anyhow!("an empty config is invalid: {p:?}"))?;
    let set = |config: &mut Config, key: &str, value: serde_json::Value| {
        config.set(&[key], value).map_err(|problems| {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{}", text.join("; "))
        })
    };
    set(
        &mut config,
        "apiEndpoint",
        g.api.trim_end_matches('/').into(),
    )?;
    set(&mut config, "applicationId", application_id.into())?;
    set(&mut config, "deviceType", g.device_type.into())?;
    set(&mut config, "apiKey", g.provisioning_key.into())?;
    set(&mut config, "listenPort", 48484.into())?;
    set(&mut config, "developmentMode", g.dev.into())?;
    Ok(config)
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

fn write_out(output: Option<PathBuf>, force: bool, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        None => {
            std::io::stdout().write_all(bytes)?;
            Ok(())
        }
        Some(path) => {
            if path.exists() && !force {
                bail!("{}: exists; pass --force to overwrite", path.display());
            }
            fleet_fs::atomic_write(&path, bytes, 0o644)?;
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

    #[test]
    fn generated_config_registers_with_the_fleet() {
        let g = super::Generate {
            api: "https://api.example.com/",
            fleet: "7",
            provisioning_key: "prov",
            device_type: "generic-amd64",
            dev: false,
        };
        let c = super::generate(&g).unwrap();
        let s = &c.settings().supervisor;
        assert_eq!(s.api_endpoint.as_deref(), Some("https://api.example.com"));
        assert_eq!(s.application_id.as_deref(), Some("7"));
        assert_eq!(s.provisioning_key.as_deref(), Some("prov"));
        assert_eq!(s.device_type.as_deref(), Some("generic-amd64"));
        assert_eq!(s.uuid, None, "the device makes its own");
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let bad = super::generate(&super::Generate {
            fleet: "myorg/myfleet",
            ..g
        })
        .unwrap_err();
        assert!(bad.to_string().contains("--fleet"), "{bad}");
    }
}
