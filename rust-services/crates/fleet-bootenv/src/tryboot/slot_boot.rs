//! A slot's own boot partition on the tryboot layout (`fleet-bootA` = partition 2,
//! `fleet-bootB` = partition 3). An update writes the bundle's boot image (built from slot
//! A's partition) to the inactive slot's partition, then makes it that slot's: the FAT label
//! and `cmdline.txt`'s `root=PARTUUID=` and `fleet.slot=` are rewritten in place. Both keep
//! their length (`fleet-bootA`/`B`; MBR PARTUUIDs are `DISKID-NN`), so no FAT table,
//! directory entry or cluster chain changes, and everything is read back.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use fleet_fs::IoContext;

use super::super::fat::{self, Geometry};
use super::super::{EnvError, Slot};
use super::boot_partition;

/// The FAT label of a slot's boot partition.
pub fn label(slot: Slot) -> String {
    format!("fleet-boot{slot}")
}

/// The PARTUUID of `slot`'s boot partition on the disk whose root partition of that slot
/// has `root_partuuid` (MBR: `DISKID-NN`, NN the partition number in hex).
pub fn partuuid(root_partuuid: &str, slot: Slot) -> Option<String> {
    let (disk, part) = root_partuuid.rsplit_once('-')?;
    let mbr = disk.len() == 8
        && part.len() == 2
        && disk
            .bytes()
            .chain(part.bytes())
            .all(|b| b.is_ascii_hexdigit());
    mbr.then(|| format!("{disk}-{:02x}", boot_partition(slot)))
}

/// `cmdline` with its root and slot arguments naming `slot` and `root_partuuid`.
pub fn retarget_cmdline(cmdline: &str, slot: Slot, root_partuuid: &str) -> Result<String, String> {
    let body = cmdline.trim_end();
    let tail = &cmdline[body.len()..];
    let mut root = false;
    let mut slot_arg = false;
    let words: Vec<String> = body
        .split(' ')
        .map(|w| {
            if w.starts_with("root=PARTUUID=") {
                root = true;
                format!("root=PARTUUID={root_partuuid}")
            } else if w.starts_with("fleet.slot=") {
                slot_arg = true;
                format!("fleet.slot={slot}")
            } else {
                w.to_string()
            }
        })
        .collect();
    if !root {
        return Err("cmdline.txt names no root=PARTUUID=".into());
    }
    if !slot_arg {
        return Err("cmdline.txt has no fleet.slot=".into());
    }
    Ok(words.join(" ") + tail)
}

fn format_err(dev: &Path, reason: impl Into<String>) -> EnvError {
    EnvError::Format {
        path: dev.to_path_buf(),
        reason: reason.into(),
    }
}

/// Makes the boot partition image written at `dev` the boot partition of `slot`, whose root
/// partition has `root_partuuid`.
pub fn retarget(dev: &Path, slot: Slot, root_partuuid: &str) -> Result<(), EnvError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .at(dev, "open for writing")?;
    let mut read = |off: u64, buf: &mut [u8]| file.read_exact_at(buf, off);
    let g = Geometry::read(&mut read).map_err(|r| format_err(dev, r))?;

    let cmdline = fat::find_file(&g, &mut read, b"CMDLINE TXT").map_err(|r| format_err(dev, r))?;
    let mut text = vec![0u8; cmdline.len as usize];
    file.read_exact_at(&mut text, cmdline.offset)
        .at(dev, "read cmdline.txt")?;
    let old = String::from_utf8(text).map_err(|_| format_err(dev, "cmdline.txt is not UTF-8"))?;
    let new = retarget_cmdline(&old, slot, root_partuuid).map_err(|r| format_err(dev, r))?;
    if new.len() != old.len() {
        return Err(format_err(
            dev,
            format!(
                "cmdline.txt would change length ({} to {} bytes) naming root PARTUUID {root_partuuid}",
                old.len(),
                new.len()
            ),
        ));
    }
    if new != old {
        fat::write_verified(&file, dev, cmdline.offset, new.as_bytes(), "cmdline.txt")?;
    }

    let mut want = [b' '; 11];
    let name = label(slot);
    want[..name.len()].copy_from_slice(name.as_bytes());
    let entry = fat::find_label_entry(&g, &mut read).map_err(|r| format_err(dev, r))?;
    for at in g.label_at.into_iter().chain(entry) {
        write_label(&file, dev, at, &want)?;
    }
    Ok(())
}

/// Writes the 11-byte label at `at`, keeping the case the image was made with (mkfs.fat
/// stores labels as given; some tools upper-case them).
fn write_label(file: &File, dev: &Path, at: u64, want: &[u8; 11]) -> Result<(), EnvError> {
    let mut old = [0u8; 11];
    file.read_exact_at(&mut old, at).at(dev, "read the label")?;
    let upper =
        old.iter().all(|b| !b.is_ascii_lowercase()) && old.iter().any(u8::is_ascii_alphabetic);
    let mut new = *want;
    if upper {
        new.make_ascii_uppercase();
    }
    if new == old {
        return Ok(());
    }
    fat::write_verified(file, dev, at, &new, "the volume label")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partuuid_of_the_boot_partition_on_mbr() {
        assert_eq!(
            partuuid("1234abcd-07", Slot::B).as_deref(),
            Some("1234abcd-03")
        );
        assert_eq!(
            partuuid("1234abcd-06", Slot::A).as_deref(),
            Some("1234abcd-02")
        );
        // GPT PARTUUIDs say nothing about partition numbers.
        assert_eq!(
            partuuid("6f1d3c2a-8b7e-4c1d-9e2f-000000000003", Slot::B),
            None
        );
    }

    #[test]
    fn cmdline_names_the_new_slot_and_keeps_the_rest() {
        let a = "console=serial0,115200 root=PARTUUID=1234abcd-06 rootfstype=ext4 ro rootwait fleet.slot=A\n";
        let b = retarget_cmdline(a, Slot::B, "1234abcd-07").unwrap();
        assert_eq!(
            b,
            "console=serial0,115200 root=PARTUUID=1234abcd-07 rootfstype=ext4 ro rootwait fleet.slot=B\n"
        );
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn cmdline_without_root_or_slot_is_refused() {
        assert!(retarget_cmdline("root=/dev/mmcblk0p6 fleet.slot=A", Slot::B, "x-07").is_err());
        assert!(retarget_cmdline("root=PARTUUID=1234abcd-06 ro", Slot::B, "1234abcd-07").is_err());
    }
}
