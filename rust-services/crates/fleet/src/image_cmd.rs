//! `fleet image inspect|configure|flash`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use fleet_image::bootfs::Edits;
use fleet_image::inspect::human;
use fleet_image::{configure, flash, inspect, source};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the partition table, the boot partition and its config.json (secrets masked).
    Inspect {
        image: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Edit config.json and system-connections/ on an image file or block device, in place.
    Configure {
        image: PathBuf,
        #[command(flatten)]
        edits: EditArgs,
    },
    /// Write an image (raw, .zst, .xz or .gz) to one or more devices or files at once, verify
    /// each by reading back.
    Flash {
        image: PathBuf,
        /// Block devices or image files; several are written in parallel.
        #[arg(required = true, value_name = "DEVICE")]
        devices: Vec<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
        /// Write zero blocks too (by default they are holes in fresh files and zeroed by the
        /// device where it can, without transferring them).
        #[arg(long)]
        no_sparse: bool,
        /// Skip the read-back verification.
        #[arg(long)]
        no_verify: bool,
        /// Block map to use (default: IMG.bmap or the name without .zst/.gz/.xz + .bmap).
        #[arg(long, value_name = "FILE")]
        bmap: Option<PathBuf>,
        /// Ignore a bmap file next to the image.
        #[arg(long, conflicts_with = "bmap")]
        no_bmap: bool,
        #[command(flatten)]
        edits: EditArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// Replace config.json with FILE (validated first).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Add a Wi-Fi network to fleet.network.wifi (open network without :PSK).
    #[arg(long, value_name = "SSID[:PSK]")]
    wifi: Option<String>,
    /// Add the public key(s) in FILE to os.sshKeys.
    #[arg(long, value_name = "FILE")]
    ssh_key: Vec<PathBuf>,
    /// Copy a NetworkManager keyfile to system-connections/.
    #[arg(long, value_name = "KEYFILE")]
    connection: Vec<PathBuf>,
    /// Set developmentMode: true.
    #[arg(long)]
    dev: bool,
}

impl EditArgs {
    fn to_edits(&self) -> anyhow::Result<Edits> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("{}", p.display()));
        let mut edits = Edits {
            hostname: self.hostname.clone(),
            dev: self.dev,
            ..Edits::default()
        };
        if let Some(p) = &self.config {
            edits.config = Some(read(p)?);
        }
        if let Some(w) = &self.wifi {
            let (ssid, psk) = match w.split_once(':') {
                Some((s, p)) => (s.to_string(), Some(p.to_string())),
                None => (w.clone(), None),
            };
            edits.wifi = Some((ssid, psk));
        }
        for p in &self.ssh_key {
            let text = String::from_utf8(read(p)?)
                .with_context(|| format!("{}: not text", p.display()))?;
            edits.ssh_keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        for p in &self.connection {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            edits.connections.push((name, read(p)?));
        }
        // Validate before anything is opened for writing.
        // Validate the edits themselves before anything is opened for writing.
        edits.plan(None)?;
        Ok(edits)
    }
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Inspect { image, json } => {
            let report = inspect::inspect(&image)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Command::Configure { image, edits } => {
            let edits = edits.to_edits()?;
            if edits.is_empty() {
                bail!(
                    "nothing to change: pass --config, --hostname, --wifi, --ssh-key, --connection or --dev"
                );
            }
            configure::configure(&image, &edits)?;
            eprintln!("configured {}", image.display());
            Ok(())
        }
        Command::Flash {
            image,
            devices,
            yes,
            no_sparse,
            no_verify,
            bmap,
            no_bmap,
            edits,
        } => {
            let bmap = if no_bmap {
                None
            } else {
                bmap.or_else(|| fleet_image::bmap::find_for(&image))
            };
            flash_cmd(
                &image,
                &devices,
                yes,
                no_sparse,
                no_verify,
                bmap.as_deref(),
                &edits,
            )
        }
    }
}

fn flash_cmd(
    image: &Path,
    devices: &[PathBuf],
    yes: bool,
    no_sparse: bool,
    no_verify: bool,
    bmap: Option<&Path>,
    edits: &EditArgs,
) -> anyhow::Result<()> {
    let edits = edits.to_edits()?;
    let map = match bmap {
        Some(p) => {
            let m = fleet_image::bmap::load(p)?;
            eprintln!(
                "using block map {} ({} of {} mapped)",
                p.display(),
                human(m.ranges.iter().map(|r| r.1).sum()),
                human(m.image_size)
            );
            Some(m)
        }
        None => None,
    };
    let mut to_confirm = Vec::new();
    for device in devices {
        let target = flash::check_target(device)?;
        if target.is_block || target.exists_with_data {
            to_confirm.push(match target.size {
                Some(s) => format!("{} ({})", device.display(), human(s)),
                None => device.display().to_string(),
            });
        }
    }
    if !to_confirm.is_empty() && !yes {
        confirm(&to_confirm)?;
    }
    let mut src = source::open(image)?;
    let compression = src.compression;
    if let Some(m) = &map {
        // Checks the data against the bmap's checksums as it is decompressed.
        src = m.checking(src, image);
    }
    let quiet = !std::io::stderr().is_terminal();
    let bar = (!quiet).then(|| {
        let bar = indicatif::ProgressBar::new(src.size.unwrap_or(0));
        bar.set_style(bar_style("writing"));
        bar
    });
    let opts = flash::Options {
        sparse: !no_sparse,
        verify: !no_verify,
        edits,
        map: map.map(|m| m.ranges),
    };
    let started = Instant::now();
    let mut phase = flash::Phase::Writing;
    let result = flash::flash(image, src, devices, &opts, &mut |now, done, total| {
        if let Some(b) = &bar {
            if now != phase {
                phase = now;
                b.set_style(bar_style("verifying"));
                b.reset();
            }
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let results = result?;
    let secs = started.elapsed().as_secs_f64();
    let mut failed = 0;
    for (device, r) in devices.iter().zip(results) {
        match r {
            Ok(stats) => eprintln!(
                "flashed {} ({}, {}) to {}: {} written, {} zeroed, in {secs:.1} s{}",
                image.display(),
                compression.as_str(),
                human(stats.image_size),
                device.display(),
                human(stats.written),
                human(stats.zeroed),
                if stats.verified { ", verified" } else { "" }
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: {:#}", anyhow::Error::from(e));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} targets failed", devices.len());
    }
    Ok(())
}

fn bar_style(what: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(&format!(
        "{what:9} {{bytes}}/{{total_bytes}} {{wide_bar}} {{bytes_per_sec}} ETA {{eta}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// Asks on the terminal; without one (a script, a pipe) refuses, since nobody can answer.
fn confirm(targets: &[String]) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "{}: refusing to overwrite without confirmation; pass --yes",
            targets.join(", ")
        );
    }
    eprint!(
        "Everything on {} will be overwritten. Continue? [y/N] ",
        targets.join(", ")
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("aborted");
    }
    Ok(())
}
