//! `fleet bundle keygen|create|sign|verify`: OS update bundles (format in the fleet-bundle
//! crate; the device installs them with `fleetd update install`).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use fleet_bundle::{CreateOptions, keys};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make an ed25519 key pair: PREFIX.pem (private, 0600) and PREFIX.pub (for /etc/fleet/keys).
    Keygen {
        /// Output prefix.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Build a bundle from a raw ext4 root filesystem image.
    Create {
        /// The ext4 image (uncompressed).
        #[arg(long)]
        rootfs: PathBuf,
        /// The slot's FAT boot partition image, for the Raspberry Pi tryboot layout (one boot
        /// partition per slot); the device then writes it with the root.
        #[arg(long, value_name = "IMAGE")]
        boot: Option<PathBuf>,
        /// OS version (VERSION_ID of the image).
        #[arg(long = "os-version")]
        version: String,
        /// Device type the image runs on (repeatable).
        #[arg(long, required = true)]
        compatible: Vec<String>,
        /// Private key (PEM); without it the bundle is unsigned (sign it later).
        #[arg(long)]
        key: Option<PathBuf>,
        /// zstd level (19: a bundle is built once and read by every device).
        #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
        /// Largest zstd dictionary trained on the image's chunks, in bytes (0: none).
        #[arg(long, default_value_t = fleet_bundle::DICT_SIZE)]
        dict_size: usize,
        /// Bundle format: 3, or 2 for devices whose fleetd reads formats up to 2 (they refuse
        /// format 3; its chunk index fetches less for the same change).
        #[arg(long, default_value_t = fleet_bundle::FORMAT, value_parser = clap::value_parser!(u32).range(2..=i64::from(fleet_bundle::FORMAT)))]
        format: u32,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write a release channel (channel.json + channel.json.sig) for devices whose
    /// config.json has fleet.update.url pointing at it; publish both beside the bundles.
    Channel {
        /// Version the channel offers (the bundle's).
        #[arg(long = "os-version")]
        version: String,
        /// The bundle's URL, absolute or relative to the channel file.
        #[arg(long)]
        bundle: String,
        /// Device type the bundle runs on (repeatable).
        #[arg(long, required = true)]
        compatible: Vec<String>,
        /// Private key (PEM) that signs the channel: one of the devices' release keys.
        #[arg(long)]
        key: PathBuf,
        /// Rollout wave start: unix seconds, or "now".
        #[arg(long, value_name = "SECONDS|now")]
        wave_start: Option<String>,
        /// Hours over which the fleet is spread from the wave start.
        #[arg(long, default_value_t = 0)]
        wave_hours: u32,
        /// Where to write channel.json (the signature goes beside it, + ".sig").
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Sign (or re-sign) a bundle's manifest.
    Sign {
        bundle: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signed bundle (default: in place).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check a bundle's signature, then its rootfs against the manifest (FILE or -).
    Verify {
        bundle: PathBuf,
        /// Trusted public key (repeatable).
        #[arg(long)]
        key: Vec<PathBuf>,
        /// Directory of trusted *.pub keys.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Keygen { output } => {
            let key = keys::generate()?;
            let private = output.with_extension("pem");
            let public = output.with_extension("pub");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&private)
                .with_context(|| format!("{}: create", private.display()))?;
            std::io::Write::write_all(&mut f, keys::private_pem(&key).as_bytes())
                .with_context(|| format!("{}: write", private.display()))?;
            std::fs::write(&public, keys::public_pem(&key.verifying_key()))
                .with_context(|| format!("{}: write", public.display()))?;
            println!("{}\n{}", private.display(), public.display());
            Ok(())
        }
        Command::Create {
            rootfs,
            boot,
            version,
            compatible,
            key,
            level,
            dict_size,
            format,
            output,
        } => {
            let key = key.map(|k| keys::read_private(&k)).transpose()?;
            let manifest = fleet_bundle::create(
                &rootfs,
                &output,
                &CreateOptions {
                    version,
                    compatible,
                    key: key.as_ref(),
                    level,
                    dict_size,
                    boot: boot.as_deref(),
                    format,
                },
            )?;
            let boot = manifest
                .boot
                .as_ref()
                .map(|b| format!(", boot {} bytes, sha256 {}", b.size, b.sha256))
                .unwrap_or_default();
            println!(
                "{}: version {}, rootfs {} bytes, sha256 {}{boot}{}",
                output.display(),
                manifest.version,
                manifest.rootfs.size,
                manifest.rootfs.sha256,
                if key.is_some() { "" } else { " (unsigned)" }
            );
            Ok(())
        }
        Command::Channel {
            version,
            bundle,
            compatible,
            key,
            wave_start,
            wave_hours,
            output,
        } => {
            let key = keys::read_private(&key)?;
            let start = match wave_start.as_deref() {
                None => None,
                Some("now") => Some(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                ),
                Some(s) => Some(
                    s.parse::<u64>()
                        .with_context(|| format!("--wave-start {s:?}: unix seconds or now"))?,
                ),
            };
            let channel = fleet_bundle::channel::Channel {
                format: fleet_bundle::channel::FORMAT,
                version,
                bundle,
                compatible,
                wave: start.map(|start| fleet_bundle::channel::Wave {
                    start,
                    hours: wave_hours,
                }),
            };
            let bytes = channel.to_bytes();
            let sig_path = PathBuf::from(format!("{}.sig", output.display()));
            std::fs::write(&output, &bytes)
                .with_context(|| format!("{}: write", output.display()))?;
            std::fs::write(&sig_path, keys::sign(&key, &bytes))
                .with_context(|| format!("{}: write", sig_path.display()))?;
            println!("{}\n{}", output.display(), sig_path.display());
            Ok(())
        }
        Command::Sign {
            bundle: path,
            key,
            output,
        } => {
            let key = keys::read_private(&key)?;
            let out = output.unwrap_or_else(|| path.clone());
            let manifest = fleet_bundle::sign(&path, &key, &out)?;
            println!("{}: signed version {}", out.display(), manifest.version);
            Ok(())
        }
        Command::Verify {
            bundle: path,
            key,
            keys: dir,
        } => {
            let mut trusted = Vec::new();
            for k in key {
                trusted.push((k.clone(), keys::read_public(&k)?));
            }
            if let Some(d) = dir {
                trusted.extend(keys::read_public_dir(&d)?);
            }
            anyhow::ensure!(!trusted.is_empty(), "give --key FILE or --keys DIR");
            let mut input: Box<dyn Read> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&path).with_context(|| path.display().to_string())?,
                ))
            };
            let (manifest, signer) = fleet_bundle::verify(&mut input, &trusted)?;
            println!(
                "{}: OK, version {}, for {}, signed by {}{}",
                path.display(),
                manifest.version,
                manifest.compatible.join(", "),
                signer.display(),
                if manifest.boot.is_some() {
                    ", with a boot partition image"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}
