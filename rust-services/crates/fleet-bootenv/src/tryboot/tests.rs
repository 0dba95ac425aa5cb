//! The tryboot backend against a model of the firmware (the rules documented for
//! `autoboot.txt` and the tryboot flag), with a power cut after every write.

use super::*;

const SECTOR: u64 = 512;
const FAT_SECTORS: u64 = 8;
const ROOT_ENTRIES: u64 = 64;

/// Data offset of cluster 2 in [`fat16`]'s image.
fn data_offset() -> u64 {
    (1 + 2 * FAT_SECTORS + ROOT_ENTRIES * 32 / SECTOR) * SECTOR
}

/// A small FAT16-style image (BPB, two FATs, fixed root directory) holding `content` as
/// AUTOBOOT.TXT at cluster 2, after a deleted entry and a long-name entry.
fn fat16(content: &[u8]) -> Vec<u8> {
    let mut img = vec![0u8; 1 << 20];
    img[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
    img[11..13].copy_from_slice(&512u16.to_le_bytes());
    img[13] = 1;
    img[14..16].copy_from_slice(&1u16.to_le_bytes());
    img[16] = 2;
    img[17..19].copy_from_slice(&(ROOT_ENTRIES as u16).to_le_bytes());
    img[19..21].copy_from_slice(&2048u16.to_le_bytes());
    img[22..24].copy_from_slice(&(FAT_SECTORS as u16).to_le_bytes());
    img[54..62].copy_from_slice(b"FAT16   ");
    img[510] = 0x55;
    img[511] = 0xAA;
    let root = ((1 + 2 * FAT_SECTORS) * SECTOR) as usize;
    let mut deleted = [0u8; 32];
    deleted[0] = 0xE5;
    deleted[1..11].copy_from_slice(b"UTOBOOTTXT");
    img[root..root + 32].copy_from_slice(&deleted);
    let mut lfn = [0u8; 32];
    lfn[0] = 0x41;
    lfn[11] = 0x0F;
    img[root + 32..root + 64].copy_from_slice(&lfn);
    let e = root + 64;
    img[e..e + 11].copy_from_slice(b"AUTOBOOTTXT");
    img[e + 11] = 0x20;
    img[e + 26..e + 28].copy_from_slice(&2u16.to_le_bytes());
    img[e + 28..e + 32].copy_from_slice(&(content.len() as u32).to_le_bytes());
    let d = data_offset() as usize;
    img[d..d + content.len()].copy_from_slice(content);
    img
}

#[test]
fn both_files_have_the_same_length_and_say_what_the_docs_show() {
    let (a, b) = (render(Slot::A), render(Slot::B));
    assert_eq!(a.len(), b.len());
    assert_eq!(
        a,
        "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
    );
    let pa = Autoboot::parse(&a);
    assert_eq!(
        pa,
        Autoboot {
            tryboot_a_b: true,
            normal: Some(2),
            tryboot: Some(3)
        }
    );
    assert_eq!(firmware_boots(Some(&pa), false), Some(2));
    assert_eq!(firmware_boots(Some(&pa), true), Some(3));
    let pb = Autoboot::parse(&b);
    assert_eq!(firmware_boots(Some(&pb), false), Some(3));
    assert_eq!(firmware_boots(Some(&pb), true), Some(2));
    // Without tryboot_a_b the firmware would read tryboot.txt, not the partition switch.
    let no_ab = Autoboot::parse("[all]\nboot_partition=2\n[tryboot]\nboot_partition=3\n");
    assert_eq!(firmware_boots(Some(&no_ab), true), Some(2));
    // [none] and unknown filters apply to nothing; later lines win.
    let odd =
        Autoboot::parse("[none]\nboot_partition=5\n[all]\nboot_partition=2\nboot_partition=3\n");
    assert_eq!(odd.normal, Some(3));
    assert_eq!(firmware_boots(None, false), None);
}

#[test]
fn locate_finds_the_one_sector_of_autoboot_txt() {
    let text = render(Slot::A);
    let img = fat16(text.as_bytes());
    let loc = locate(&mut |off, buf| {
        let off = off as usize;
        buf.copy_from_slice(&img[off..off + buf.len()]);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        loc,
        Location {
            offset: data_offset(),
            len: text.len() as u32,
            sector: 512
        }
    );
    let big = fat16(&[b'#'; 600]);
    let err = locate(&mut |off, buf| {
        let off = off as usize;
        buf.copy_from_slice(&big[off..off + buf.len()]);
        Ok(())
    })
    .unwrap_err();
    assert!(err.contains("600 bytes"), "{err}");
    let mut none = fat16(text.as_bytes());
    none[510] = 0;
    assert!(
        locate(&mut |off, buf| {
            let off = off as usize;
            buf.copy_from_slice(&none[off..off + buf.len()]);
            Ok(())
        })
        .unwrap_err()
        .contains("55 AA")
    );
}

/// A device: the fake root with the autoboot partition as a file, the firmware's DT cells,
/// /run and a boot id that changes on every boot.
struct Device {
    dir: tempfile::TempDir,
    root: Root,
    boots: u32,
    booted: u32,
}

impl Device {
    fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let dev = root.path(AUTOBOOT_DEV);
        std::fs::create_dir_all(dev.parent().unwrap()).unwrap();
        std::fs::write(&dev, fat16(render(Slot::A).as_bytes())).unwrap();
        std::fs::create_dir_all(root.path("/var/lib/fleet")).unwrap();
        let mut d = Device {
            dir,
            root,
            boots: 0,
            booted: 0,
        };
        d.power_on(false);
        d
    }

    fn env(&self) -> TrybootEnv {
        TrybootEnv::new(&self.root)
    }

    fn sector(&self) -> Vec<u8> {
        let f = std::fs::File::open(self.root.path(AUTOBOOT_DEV)).unwrap();
        let mut s = vec![0u8; 512];
        f.read_exact_at(&mut s, data_offset()).unwrap();
        s
    }

    fn set_sector(&self, s: &[u8]) {
        let f = OpenOptions::new()
            .write(true)
            .open(self.root.path(AUTOBOOT_DEV))
            .unwrap();
        f.write_all_at(s, data_offset()).unwrap();
    }

    /// The firmware: reads autoboot.txt (the file's length from the entry), picks the
    /// partition, clears the flag, tells the kernel through the device tree. /run is empty.
    fn power_on(&mut self, tryboot: bool) -> u32 {
        let len = render(Slot::A).len();
        let text = String::from_utf8_lossy(&self.sector()[..len]).into_owned();
        let part = firmware_boots(Some(&Autoboot::parse(&text)), tryboot)
            .expect("the firmware finds a partition");
        self.boots += 1;
        self.booted = part;
        let cell = |p: &str, v: u32| {
            let path = self.root.path(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, v.to_be_bytes()).unwrap();
        };
        cell(DT_TRYBOOT, u32::from(tryboot));
        cell(DT_PARTITION, part);
        std::fs::create_dir_all(self.root.path("/proc/sys/kernel/random")).unwrap();
        std::fs::write(self.root.path(BOOT_ID), format!("boot-{}\n", self.boots)).unwrap();
        let _ = std::fs::remove_dir_all(self.root.path("/run"));
        part
    }

    /// A clean reboot: systemd-shutdown passes /run/systemd/reboot-param to reboot(2).
    fn reboot(&mut self) -> u32 {
        let param = std::fs::read_to_string(self.root.path(REBOOT_PARAM)).unwrap_or_default();
        self.power_on(param.trim() == TRYBOOT_ARG)
    }

    fn state(&self) -> BootState {
        BootState::from_vars(&self.env().load().unwrap())
    }

    fn store(&self, s: BootState) {
        let mut v = Vars::default();
        s.apply(&mut v);
        self.env().store(&v).unwrap();
    }

    fn arm(&self, slot: Slot) {
        let s = self.state();
        self.store(BootState {
            trial: Some(slot),
            tries: 3,
            ..s
        });
    }

    /// What `mark-good` does on the running slot.
    fn mark_good(&self) {
        let slot = slot_of_partition(self.booted).unwrap();
        self.store(BootState {
            active: slot,
            trial: None,
            tries: 0,
        });
    }
}

fn st(active: Slot, trial: Option<Slot>, tries: u32) -> BootState {
    BootState {
        active,
        trial,
        tries,
    }
}

#[test]
fn trial_then_mark_good_makes_the_new_slot_the_default() {
    let mut d = Device::new();
    assert_eq!(d.booted, 2);
    assert_eq!(d.state(), st(Slot::A, None, 0));
    d.arm(Slot::B);
    assert_eq!(d.state(), st(Slot::A, Some(Slot::B), 3));
    assert_eq!(
        std::fs::read_to_string(d.root.path(REBOOT_PARAM)).unwrap(),
        "0 tryboot\n"
    );
    assert_eq!(d.reboot(), 3, "the clean reboot is the trial boot");
    // fleetd health sees a trial boot of the booted slot.
    assert_eq!(d.state(), st(Slot::A, Some(Slot::B), 0));
    d.mark_good();
    assert_eq!(
        d.sector()[..render(Slot::B).len()],
        *render(Slot::B).as_bytes()
    );
    assert!(!d.root.path(RECORD).exists());
    assert_eq!(d.state(), st(Slot::B, None, 0));
    // Every later reset, clean or not, boots B.
    assert_eq!(d.reboot(), 3);
    assert_eq!(d.power_on(false), 3);
    assert_eq!(d.state(), st(Slot::B, None, 0));
    // And the next update goes the other way.
    d.arm(Slot::A);
    assert_eq!(d.reboot(), 2);
    d.mark_good();
    assert_eq!(d.power_on(false), 2);
    assert_eq!(d.state(), st(Slot::A, None, 0));
}

#[test]
fn unhealthy_trial_or_power_cut_during_it_returns_to_the_good_slot() {
    let mut d = Device::new();
    d.arm(Slot::B);
    assert_eq!(d.reboot(), 3);
    // fleetd health finds it unhealthy and reboots normally (the trial boot has no
    // reboot-param): the firmware boots A.
    assert_eq!(d.reboot(), 2);
    assert_eq!(d.state(), st(Slot::A, None, 0));
    // A power cut in the middle of a trial boot ends the same way.
    d.arm(Slot::B);
    assert_eq!(d.reboot(), 3);
    assert_eq!(d.power_on(false), 2);
    assert_eq!(d.state(), st(Slot::A, None, 0));
    // rollback (fleetd) clears the record and the reboot argument.
    d.arm(Slot::B);
    d.store(st(Slot::A, None, 0));
    assert!(!d.root.path(RECORD).exists());
    assert!(!d.root.path(REBOOT_PARAM).exists());
    assert_eq!(d.reboot(), 2);
}

#[test]
fn power_cut_after_each_write_of_arming() {
    // Cut after the record, before the reboot argument: the next boot is a normal boot of
    // A, and the trial reads as over.
    let mut d = Device::new();
    let env = d.env();
    env.write_record(Slot::B, 3).unwrap();
    std::fs::remove_file(d.root.path(REBOOT_PARAM)).unwrap();
    assert_eq!(d.state(), st(Slot::A, Some(Slot::B), 3));
    assert_eq!(d.power_on(false), 2);
    assert_eq!(d.state(), st(Slot::A, None, 0));
    // Cut after both: /run is gone at power-on, the firmware boots A, no trial.
    d.arm(Slot::B);
    assert_eq!(d.power_on(false), 2);
    assert_eq!(d.state(), st(Slot::A, None, 0));
    // A torn record write leaves the old file or the new one (atomic replace): an old
    // record from an earlier boot never arms anything.
    assert_eq!(d.reboot(), 2);
}

#[test]
fn power_cut_at_every_byte_of_the_commit() {
    let old = render(Slot::A);
    let new = render(Slot::B);
    for cut in 0..=old.len() {
        let mut d = Device::new();
        d.arm(Slot::B);
        assert_eq!(d.reboot(), 3);
        let mut sector = d.sector();
        // The sector lands byte by byte up to `cut` (any prefix; the only differing bytes are
        // the two digits, so this covers every mix of them).
        sector[..cut].copy_from_slice(&new.as_bytes()[..cut]);
        d.set_sector(&sector);
        let booted = d.power_on(false);
        // The firmware boots a complete slot, and fleetd reads the same default it boots.
        assert!(booted == 2 || booted == 3, "cut {cut}: booted {booted}");
        let s = d.state();
        assert_eq!(boot_partition(s.active), booted, "cut {cut}");
        assert_eq!(s.trial, None, "cut {cut}");
        // Whichever slot runs, the state can be written again (repairs the torn digits).
        let running = slot_of_partition(booted).unwrap();
        d.store(st(running, None, 0));
        assert_eq!(
            d.sector()[..old.len()],
            *render(running).as_bytes(),
            "cut {cut}"
        );
        assert_eq!(d.reboot(), booted);
        assert_eq!(d.power_on(true), boot_partition(running.other()));
    }
}

#[test]
fn power_cut_between_commit_and_record_clear() {
    let mut d = Device::new();
    d.arm(Slot::B);
    assert_eq!(d.reboot(), 3);
    d.env().commit(Slot::A, Slot::B).unwrap();
    // Record still says trial B; B is now the default.
    assert_eq!(d.power_on(false), 3);
    assert_eq!(d.state(), st(Slot::B, None, 0));
    d.mark_good();
    assert!(!d.root.path(RECORD).exists());
}

#[test]
fn a_foreign_autoboot_txt_is_not_rewritten() {
    let d = Device::new();
    let mut sector = d.sector();
    let other = b"[all]\nboot_partition=7\n";
    sector[..other.len()].copy_from_slice(other);
    d.set_sector(&sector);
    let before = d.sector();
    let err = d.env().commit(Slot::A, Slot::B).unwrap_err().to_string();
    assert!(err.contains("not the"), "{err}");
    assert!(err.contains("fleet-auto"), "{err}");
    assert_eq!(d.sector(), before);
    let err = d.env().load().unwrap_err().to_string();
    assert!(err.contains("names no slot"), "{err}");
    let _ = &d.dir;
}
