//! `fleetd update` against a fake root: regular files as slot partitions, a fake sysfs and
//! /proc/cmdline, a GRUB env block on the fake ESP. Checks installs, every refusal (slot and
//! boot state untouched, byte for byte), read-compare skipping, mark-good/rollback, a boot
//! loop driven by the bootloader rules, and SIGKILL at random moments of an install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use fleet_bootenv::{BootState, Slot, grub};
use fleet_bundle::{CreateOptions, keys};
use fleet_fs::Root;
use fleetd::update::{self, UpdateError, install};
use sha2::{Digest, Sha256};

const SLOT_SIZE: u64 = 16 << 20;

struct Fake {
    _dir: tempfile::TempDir,
    top: PathBuf,
    root: Root,
    key: SigningKey,
}

impl Fake {
    fn new(booted: Slot) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().to_path_buf();
        let r = top.join("root");
        for d in [
            "proc",
            "dev",
            "etc/fleet/keys",
            "mnt/boot/EFI/fleet",
            "sys/class/block/vda2",
            "sys/class/block/vda3",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for (n, s) in [(2, Slot::A), (3, Slot::B)] {
            std::fs::write(
                r.join(format!("sys/class/block/vda{n}/uevent")),
                format!(
                    "MAJOR=253\nMINOR={n}\nDEVNAME=vda{n}\nDEVTYPE=partition\nPARTN={n}\nPARTNAME={}\nPARTUUID=0FD1B6E0-0000-4000-8000-00000000000{n}\n",
                    s.label()
                ),
            )
            .unwrap();
            let f = std::fs::File::create(r.join(format!("dev/vda{n}"))).unwrap();
            f.set_len(SLOT_SIZE).unwrap();
        }
        let n = if booted == Slot::A { 2 } else { 3 };
        std::fs::write(
            r.join("proc/cmdline"),
            format!("BOOT_IMAGE=/boot/bzImage root=PARTUUID=0fd1b6e0-0000-4000-8000-00000000000{n} ro rootwait\n"),
        )
        .unwrap();
        std::fs::write(r.join("etc/fleet/device-type"), "qemux86-64\n").unwrap();
        std::fs::write(r.join("etc/os-release"), "ID=fleetos\nVERSION_ID=1.0\n").unwrap();
        let env = r.join("mnt/boot/EFI/fleet/grubenv");
        grub::create(&env).unwrap();
        let key = SigningKey::from_bytes(&[42; 32]);
        std::fs::write(
            r.join("etc/fleet/keys/release.pub"),
            keys::public_pem(&key.verifying_key()),
        )
        .unwrap();
        Fake {
            _dir: dir,
            top,
            root: Root::new(r),
            key,
        }
    }

    fn dev(&self, slot: Slot) -> PathBuf {
        self.root.path(match slot {
            Slot::A => "/dev/vda2",
            Slot::B => "/dev/vda3",
        })
    }

    /// Writes `image` into `slot`'s device, then gives the device its full size again.
    fn put_image(&self, slot: Slot, image: &Path) {
        std::fs::copy(image, self.dev(slot)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(self.dev(slot))
            .unwrap()
            .set_len(SLOT_SIZE)
            .unwrap();
    }

    fn env_path(&self) -> PathBuf {
        self.root.path(fleet_bootenv::GRUB_ENV)
    }

    fn state(&self) -> BootState {
        BootState::from_vars(
            &fleet_bootenv::select::open(&self.root)
                .unwrap()
                .load()
                .unwrap(),
        )
    }

    fn boot(&self, slot: Slot) {
        let n = if slot == Slot::A { 2 } else { 3 };
        std::fs::write(
            self.root.path("/proc/cmdline"),
            format!("root=PARTUUID=0fd1b6e0-0000-4000-8000-00000000000{n} ro fleet.slot={slot}\n"),
        )
        .unwrap();
    }

    /// A rootfs image of `size` bytes: pseudo-random text-like content from `seed`.
    fn image(&self, name: &str, size: usize, seed: u64) -> PathBuf {
        let mut x = seed | 1;
        let words = [
            &b"fleet "[..],
            b"update ",
            b"slot ",
            b"\x00\x00\x00\x00",
            b"rootfs\n",
        ];
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(words[(x % 5) as usize]);
            data.push((x >> 32) as u8);
        }
        data.truncate(size);
        let p = self.top.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn bundle(
        &self,
        image: &Path,
        name: &str,
        compatible: &str,
        key: Option<&SigningKey>,
    ) -> PathBuf {
        let out = self.top.join(name);
        fleet_bundle::create(
            image,
            &out,
            &CreateOptions {
                version: "2.0".into(),
                compatible: vec![compatible.into()],
                key,
                level: 3,
                dict_size: fleet_bundle::DICT_SIZE,
                boot: None,
                format: fleet_bundle::FORMAT,
            },
        )
        .unwrap();
        out
    }

    fn install(&self, bundle: &Path, slot: Option<Slot>) -> Result<install::Report, UpdateError> {
        let file = std::fs::File::open(bundle).unwrap();
        let input_len = Some(file.metadata().unwrap().len());
        let input = install::Input::Stream(Box::new(file));
        install::install(
            &self.root,
            input,
            &install::Options {
                slot,
                target: None,
                keys: None,
                tries: 3,
                input_len,
                allow_downgrade: false,
            },
        )
    }

    fn fingerprint(&self) -> (String, Vec<u8>, Vec<u8>) {
        (
            hash_file(&self.dev(Slot::B)),
            std::fs::read(self.env_path()).unwrap(),
            std::fs::read(self.root.path("/var/lib/fleet/slots.json")).unwrap_or_default(),
        )
    }
}

fn hash_file(p: &Path) -> String {
    fleet_bundle::hex(&Sha256::digest(std::fs::read(p).unwrap()))
}

fn hash_prefix(p: &Path, n: usize) -> String {
    fleet_bundle::hex(&Sha256::digest(&std::fs::read(p).unwrap()[..n]))
}

#[test]
fn install_writes_the_other_slot_and_arms_a_trial() {
    let f = Fake::new(Slot::A);
    let img = f.image("v2.img", 6 << 20, 1);
    let b = f.bundle(&img, "v2.fleet", "qemux86-64", Some(&f.key));
    let r = f.install(&b, None).unwrap();
    assert_eq!(r.slot, Slot::B);
    assert_eq!(hash_prefix(&f.dev(Slot::B), 6 << 20), hash_file(&img));
    assert_eq!(
        f.state(),
        BootState {
            active: Slot::A,
            trial: Some(Slot::B),
            tries: 3
        }
    );
    let status = update::status(&f.root).unwrap();
    assert_eq!(status["booted"], "A");
    assert_eq!(status["trial"], "B");
    assert_eq!(status["tries_left"], 3);
    assert_eq!(status["slots"]["A"]["version"], "1.0");
    assert_eq!(status["slots"]["B"]["version"], "2.0");
    // Same bundle again: nothing to write.
    let again = f.install(&b, None).unwrap();
    assert_eq!(again.bytes_written, 0);
}

#[test]
fn second_install_writes_only_changed_blocks() {
    let f = Fake::new(Slot::A);
    let size = 8 << 20;
    let img = f.image("v2.img", size, 7);
    let b = f.bundle(&img, "v2.fleet", "qemux86-64", Some(&f.key));
    f.install(&b, None).unwrap();
    let mut data = std::fs::read(&img).unwrap();
    // Change 5% of the 4 KiB blocks.
    let blocks = size / 4096;
    for i in (0..blocks).step_by(20) {
        data[i * 4096 + 100] ^= 0xff;
    }
    let img3 = f.top.join("v3.img");
    std::fs::write(&img3, &data).unwrap();
    let b3 = f.bundle(&img3, "v3.fleet", "qemux86-64", Some(&f.key));
    let r = f.install(&b3, None).unwrap();
    assert_eq!(r.bytes_written, (blocks as u64).div_ceil(20) * 4096);
    assert_eq!(hash_prefix(&f.dev(Slot::B), size), hash_file(&img3));
}

#[test]
fn refusals_leave_slot_and_boot_state_untouched() {
    let f = Fake::new(Slot::A);
    let img = f.image("v2.img", 4 << 20, 3);
    let good = f.bundle(&img, "good.fleet", "qemux86-64", Some(&f.key));
    let bytes = std::fs::read(&good).unwrap();
    let other_key = SigningKey::from_bytes(&[9; 32]);
    let cases: Vec<(&str, PathBuf, Option<Slot>, &str)> = vec![
        (
            "unsigned",
            f.bundle(&img, "unsigned.fleet", "qemux86-64", None),
            None,
            "not signed",
        ),
        (
            "foreign key",
            f.bundle(&img, "foreign.fleet", "qemux86-64", Some(&other_key)),
            None,
            "signature",
        ),
        (
            "wrong device",
            f.bundle(&img, "rpi.fleet", "raspberrypi4-64", Some(&f.key)),
            None,
            "raspberrypi4-64",
        ),
        (
            "too big",
            {
                let big = f.image("big.img", SLOT_SIZE as usize + 4096, 5);
                f.bundle(&big, "big.fleet", "qemux86-64", Some(&f.key))
            },
            None,
            "does not fit",
        ),
        ("running slot", good.clone(), Some(Slot::A), "running slot"),
        (
            "truncated",
            {
                let p = f.top.join("trunc.fleet");
                std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
                p
            },
            None,
            "truncated",
        ),
        (
            "corrupt",
            {
                let p = f.top.join("corrupt.fleet");
                let mut b = bytes.clone();
                let i = 1536 + (b.len() - 1536) / 2;
                b[i] ^= 0x55;
                std::fs::write(&p, &b).unwrap();
                p
            },
            None,
            "",
        ),
        (
            "tampered manifest",
            {
                let p = f.top.join("tampered.fleet");
                let mut b = bytes.clone();
                let text = String::from_utf8_lossy(&b[512..1024]).into_owned();
                let at = text.find("2.0").unwrap();
                b[512 + at] = b'9';
                std::fs::write(&p, &b).unwrap();
                p
            },
            None,
            "signature",
        ),
    ];
    // Slot B holds something already, so "untouched" is meaningful.
    let old = f.image("old.img", 4 << 20, 11);
    let fill_slot_b = || f.put_image(Slot::B, &old);
    fill_slot_b();
    for (name, bundle, slot, needle) in cases {
        let before = f.fingerprint();
        let err = f.install(&bundle, slot).expect_err(name).to_string();
        eprintln!("{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
        if name == "corrupt" {
            // Only detectable while writing: the slot changed, the boot state did not.
            assert_eq!(before.1, f.fingerprint().1, "{name}: env changed");
            assert_eq!(before.2, f.fingerprint().2, "{name}: record changed");
            // Restore slot B for the next case.
            fill_slot_b();
        } else {
            assert!(before == f.fingerprint(), "{name}: something changed");
        }
    }
    assert_eq!(f.state().trial, None);
}

#[test]
fn trial_on_an_unconfirmed_slot_protects_the_good_one() {
    let f = Fake::new(Slot::A);
    let img = f.image("v2.img", 2 << 20, 3);
    let b = f.bundle(&img, "v2.fleet", "qemux86-64", Some(&f.key));
    f.install(&b, None).unwrap();
    f.boot(Slot::B); // trial boot of B, not confirmed yet
    let err = f.install(&b, None).unwrap_err().to_string();
    assert!(err.contains("only known-good slot"), "{err}");
}

/// The bootloader's rules, applied to the env file: what grub-fleet.cfg.in does at each boot.
fn bootloader_boot(f: &Fake) -> Slot {
    let env = fleet_bootenv::select::open(&f.root).unwrap();
    let mut vars = env.load().unwrap();
    let state = BootState::from_vars(&vars);
    let (slot, next) = state.next_boot();
    if state.trial.is_some() {
        // GRUB saves only fleet_try and fleet_tries.
        vars.set("fleet_try", next.trial.map(Slot::as_str).unwrap_or(""));
        vars.set("fleet_tries", &next.tries.to_string());
        env.store(&vars).unwrap();
    }
    f.boot(slot);
    slot
}

#[test]
fn boot_loop_rolls_back_after_n_trials_and_mark_good_switches() {
    let f = Fake::new(Slot::A);
    let img = f.image("v2.img", 2 << 20, 3);
    let b = f.bundle(&img, "v2.fleet", "qemux86-64", Some(&f.key));
    f.install(&b, None).unwrap();
    // A broken update: nobody marks it good.
    let booted: Vec<Slot> = (0..5).map(|_| bootloader_boot(&f)).collect();
    assert_eq!(booted, [Slot::B, Slot::B, Slot::B, Slot::A, Slot::A]);
    assert_eq!(
        f.state(),
        BootState {
            active: Slot::A,
            trial: None,
            tries: 0
        }
    );
    let status = update::status(&f.root).unwrap();
    assert_eq!(status["last_trial"]["outcome"], "failed", "{status}");
    assert_eq!(status["last_trial"]["slot"], "B");
    // A good one: the first trial boot is confirmed.
    f.install(&b, None).unwrap();
    assert_eq!(bootloader_boot(&f), Slot::B);
    assert_eq!(
        update::status(&f.root).unwrap()["last_trial"]["outcome"],
        "pending"
    );
    update::mark_good(&f.root).unwrap();
    assert_eq!(
        update::status(&f.root).unwrap()["last_trial"]["outcome"],
        "good"
    );
    assert_eq!(
        f.state(),
        BootState {
            active: Slot::B,
            trial: None,
            tries: 0
        }
    );
    assert_eq!(
        (0..3).map(|_| bootloader_boot(&f)).collect::<Vec<_>>(),
        [Slot::B; 3]
    );
    // Now A is the inactive slot; rollback drops an armed trial.
    f.install(&b, None).unwrap();
    assert_eq!(f.state().trial, Some(Slot::A));
    update::rollback(&f.root).unwrap();
    assert_eq!(bootloader_boot(&f), Slot::B);
}

#[test]
fn sigkill_at_random_moments_never_selects_a_half_written_slot() {
    let f = Fake::new(Slot::A);
    let img = f.image("v2.img", 4 << 20, 21);
    let want = hash_file(&img);
    let b = f.bundle(&img, "v2.fleet", "qemux86-64", Some(&f.key));
    let initial_env = std::fs::read(f.env_path()).unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_fleetd"))
            .arg("--root")
            .arg(f.root.dir())
            .args(["update", "install"])
            .arg(&b)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let t = Instant::now();
    assert!(run().wait().unwrap().success());
    let full = t.elapsed();
    let mut x = std::process::id() as u64 | 1;
    let (mut before_arm, mut after_arm) = (0, 0);
    for round in 0..50 {
        std::fs::write(f.env_path(), &initial_env).unwrap();
        // Scribble over B so a kill can leave it half-written.
        std::fs::write(f.dev(Slot::B), vec![0x5a; SLOT_SIZE as usize]).unwrap();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_micros(x % (full.as_micros() as u64 * 11 / 10 + 1));
        let mut child = run();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        let state = f.state();
        if state.trial.is_none() {
            before_arm += 1;
            assert_eq!(state.active, Slot::A, "round {round}");
            assert_eq!(
                std::fs::read(f.env_path()).unwrap(),
                initial_env,
                "round {round}"
            );
        } else {
            after_arm += 1;
            assert_eq!(
                state,
                BootState {
                    active: Slot::A,
                    trial: Some(Slot::B),
                    tries: 3
                }
            );
            assert_eq!(
                hash_prefix(&f.dev(Slot::B), 4 << 20),
                want,
                "round {round}: armed but B differs"
            );
        }
        // Whatever happened, a fresh install succeeds.
        if round % 10 == 9 {
            assert!(
                run().wait().unwrap().success(),
                "round {round}: fresh install failed"
            );
            assert_eq!(hash_prefix(&f.dev(Slot::B), 4 << 20), want);
        }
    }
    eprintln!("kills before arming: {before_arm}, after: {after_arm} (install took {full:?})");
    assert!(before_arm > 0);
}

#[tokio::test(flavor = "current_thread")]
async fn health_marks_a_healthy_trial_good_and_leaves_other_boots_alone() {
    use fleetd::health::{HealthError, Outcome, UnitState, check};
    let units = vec![
        "multi-user.target".to_string(),
        "fleet-supervisor.service".to_string(),
    ];
    let f = Fake::new(Slot::A);
    // Normal boot: nothing happens, whatever the units say.
    let out = check(&f.root, &units, Duration::from_secs(1), |_| async {
        UnitState::Waiting
    })
    .await;
    assert_eq!(out.unwrap(), Outcome::NotTrial);
    let img = f.image("v2.img", 1 << 20, 3);
    let b = f.bundle(&img, "v2.fleet", "qemux86-64", Some(&f.key));
    f.install(&b, None).unwrap();
    // Armed but not booted yet: still not a trial boot.
    let out = check(&f.root, &units, Duration::from_secs(1), |_| async {
        UnitState::Active
    })
    .await;
    assert_eq!(out.unwrap(), Outcome::NotTrial);
    assert_eq!(f.state().trial, Some(Slot::B));
    bootloader_boot(&f);
    // The supervisor never gets ready: unhealthy after the timeout, nothing marked.
    let out = check(
        &f.root,
        &units,
        Duration::from_millis(600),
        |u| async move {
            if u == "multi-user.target" {
                UnitState::Active
            } else {
                UnitState::Waiting
            }
        },
    )
    .await;
    match out {
        Err(HealthError::Unhealthy { reason, .. }) => {
            assert!(reason.contains("fleet-supervisor.service"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.state().active, Slot::A);
    // A masked unit fails the trial at once, not after the timeout.
    let t0 = std::time::Instant::now();
    let out = check(&f.root, &units, Duration::from_secs(60), |u| async move {
        UnitState::Never(format!("{u} is masked"))
    })
    .await;
    assert!(matches!(out, Err(HealthError::Unhealthy { .. })), "{out:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let status = fleetd::update::status(&f.root).unwrap();
    assert_eq!(status["last_trial"]["outcome"], "pending");
    assert!(
        status["last_trial"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("masked")),
        "{status}"
    );
    // Healthy after a while: marked good.
    let calls = std::cell::Cell::new(0);
    let out = check(&f.root, &units, Duration::from_secs(5), |_| {
        calls.set(calls.get() + 1);
        let ready = calls.get() > 3;
        async move {
            if ready {
                UnitState::Active
            } else {
                UnitState::Waiting
            }
        }
    })
    .await;
    assert_eq!(out.unwrap(), Outcome::MarkedGood);
    assert_eq!(
        f.state(),
        BootState {
            active: Slot::B,
            trial: None,
            tries: 0
        }
    );
}

#[test]
fn health_units_come_from_update_conf_and_a_mistake_there_is_an_error() {
    use fleetd::health::default_units;
    let d = tempfile::tempdir().unwrap();
    let root = Root::new(d.path());
    let conf = d.path().join("etc/fleet/update.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    // No file: the contract's pair.
    assert_eq!(
        default_units(&root).unwrap(),
        ["multi-user.target", "fleet-supervisor.service"]
    );
    std::fs::write(
        &conf,
        "# trial units\nhealth-units=multi-user.target app.service\n",
    )
    .unwrap();
    assert_eq!(
        default_units(&root).unwrap(),
        ["multi-user.target", "app.service"]
    );
    // A typo must not judge the trial on the default units.
    std::fs::write(&conf, "health-unit=app.service\n").unwrap();
    let err = default_units(&root).unwrap_err().to_string();
    assert!(
        err.contains("update.conf:1: unknown key \"health-unit\""),
        "{err}"
    );
}

/// The chunked install from a bundle read by offset (the path `http://` takes; a file here):
/// only chunks neither slot holds are read, a rerun after an interruption reads only what is
/// missing, and a tampered chunk stops the install before the trial is armed.
#[test]
fn chunked_install_reads_only_missing_chunks_and_resumes() {
    let f = Fake::new(Slot::A);
    let v1 = f.image("v1.img", 8 << 20, 11);
    f.put_image(Slot::A, &v1);
    // v2: 12 KiB inserted at 2 MiB (later content moves by three blocks), 64 KiB changed at 5 MiB.
    let mut data = std::fs::read(&v1).unwrap();
    let inserted: Vec<u8> = (0..12288u32).map(|i| (i * 7 % 251) as u8).collect();
    data.splice(2 << 20..2 << 20, inserted);
    data.truncate(8 << 20);
    for b in &mut data[5 << 20..(5 << 20) + 65536] {
        *b ^= 0x5a;
    }
    let v2 = f.top.join("v2.img");
    std::fs::write(&v2, &data).unwrap();
    let bundle = f.bundle(&v2, "v2.fleet", "qemux86-64", Some(&f.key));
    let bundle_len = std::fs::metadata(&bundle).unwrap().len();
    let install_source = |f: &Fake| install_by_offset(f, &bundle);
    let r = install_source(&f).unwrap();
    let fetched = r.bytes_downloaded.unwrap();
    assert!(
        fetched * 5 < bundle_len,
        "fetched {fetched} of {bundle_len}"
    );
    assert_eq!(hash_prefix(&f.dev(Slot::B), 8 << 20), hash_file(&v2));
    assert_eq!(f.state().trial, Some(Slot::B));

    // Interrupted earlier: 300 KiB of slot B lost. The rerun fetches about that much.
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(f.dev(Slot::B))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&dev, &vec![0u8; 300 << 10], 6 << 20).unwrap();
    let again = install_source(&f).unwrap().bytes_downloaded.unwrap();
    assert!(
        again < fetched,
        "rerun fetched {again}, first run {fetched}"
    );
    assert_eq!(hash_prefix(&f.dev(Slot::B), 8 << 20), hash_file(&v2));

    // A chunk that must be fetched (the changed region, in neither slot now) is tampered
    // with in the bundle: refused, trial not armed.
    std::os::unix::fs::FileExt::write_all_at(&dev, &vec![0u8; 64 << 10], 5 << 20).unwrap();
    let mut bytes = std::fs::read(&bundle).unwrap();
    // The head (manifest, signature, a 4 KiB index) is in the first KiBs; flip bytes in the
    // compressed entry after it.
    let len = bytes.len();
    for i in (len / 4..len - 1024).step_by(997) {
        bytes[i] ^= 0xff;
    }
    std::fs::write(&bundle, &bytes).unwrap();
    let err = install_source(&f).unwrap_err();
    assert!(
        matches!(err, UpdateError::Chunk { .. } | UpdateError::Bundle(_)),
        "{err}"
    );
    assert_eq!(f.state().trial, None, "{err}");
}

/// The bundle head kept between attempts: a rerun reads only the signed part of the bundle to
/// compare, not the index and dictionary again; a kept copy changed on the device is refused
/// and the head is read again (and kept again, as the bundle has it).
#[test]
fn kept_head_is_reused_and_a_changed_copy_refused() {
    let f = Fake::new(Slot::A);
    let v2 = f.image("v2.img", 8 << 20, 12);
    let bundle = f.bundle(&v2, "v2.fleet", "qemux86-64", Some(&f.key));
    let trusted = keys::read_public_dir(&f.root.path(fleet_bundle::KEYS_DIR)).unwrap();
    let kept = f.root.path(update::head::HEAD_CACHE);
    let open = || update::source::FileSource::open(bundle.clone()).unwrap();
    use update::source::Source;

    let mut src = open();
    let first = update::head::read(&f.root, &mut src, &trusted).unwrap();
    let head_len = src.fetched();
    let kept_bytes = std::fs::read(&kept).unwrap();
    assert_eq!(kept_bytes.len() as u64, first.data);
    assert!(
        first.dictionary.is_some(),
        "format 2 bundle without a dictionary"
    );

    let mut src = open();
    let again = update::head::read(&f.root, &mut src, &trusted).unwrap();
    assert_eq!(
        (again.data, again.len, again.manifest),
        (first.data, first.len, first.manifest.clone())
    );
    let signed = update::head::probe_len(&f.root);
    assert_eq!(
        src.fetched(),
        signed,
        "rerun read more than the signed part"
    );
    assert!(
        signed < 4096 && head_len > 4 * signed,
        "{signed} of {head_len}"
    );

    // One byte of the kept dictionary flipped: refused, read again, kept as the bundle has it.
    let dict = first.dictionary.as_ref().unwrap();
    let mut changed = kept_bytes.clone();
    let at = kept_bytes
        .windows(dict.len())
        .position(|w| w == dict.as_slice())
        .unwrap()
        + dict.len() / 2;
    changed[at] ^= 1;
    std::fs::write(&kept, &changed).unwrap();
    let mut src = open();
    let third = update::head::read(&f.root, &mut src, &trusted).unwrap();
    assert_eq!(third.dictionary.as_ref(), Some(dict));
    assert!(src.fetched() >= head_len, "the head was not read again");
    assert_eq!(std::fs::read(&kept).unwrap(), kept_bytes);

    update::head::forget(&f.root);
    assert!(!kept.exists());
}

/// A chunked install of `bundle` into `f`'s other slot (a file read by offset, as a URL is).
fn install_by_offset(f: &Fake, bundle: &Path) -> Result<install::Report, UpdateError> {
    let src = update::source::FileSource::open(bundle.to_path_buf()).unwrap();
    install::install(
        &f.root,
        install::Input::Source(Box::new(src)),
        &install::Options {
            slot: None,
            target: None,
            keys: None,
            tries: 3,
            input_len: None,
            allow_downgrade: false,
        },
    )
}

/// The running slot's kept chunk index: with it, no scan and the same bytes read as with
/// one; the install keeps the new slot's index; a slot changed after its index was kept
/// still ends verified (the copies that no longer match are fetched); an index bound to
/// another version is not used.
#[test]
fn kept_slot_index_replaces_the_scan_and_is_never_trusted_blindly() {
    use update::chunked::Lookup;
    let fakes: Vec<Fake> = (0..3).map(|_| Fake::new(Slot::A)).collect();
    let v1 = fakes[0].image("v1.img", 8 << 20, 31);
    let mut v2 = std::fs::read(&v1).unwrap();
    for b in &mut v2[(3 << 20)..(3 << 20) + 65536] {
        *b ^= 0x5a;
    }
    let v2_path = fakes[0].top.join("v2.img");
    std::fs::write(&v2_path, &v2).unwrap();
    let bundle = fakes[0].bundle(&v2_path, "v2.fleet", "qemux86-64", Some(&fakes[0].key));
    for f in &fakes {
        f.put_image(Slot::A, &v1);
    }
    let scanned = install_by_offset(&fakes[0], &bundle).unwrap();
    assert_eq!(scanned.running_slot_lookup, Some(Lookup::Scan));
    assert!(
        fakes[0].root.path("/var/lib/fleet/slot-index-B").is_file(),
        "the install kept no index of slot B"
    );

    let indexed = update::slot_index::compute(&fakes[1].root).unwrap();
    assert!(indexed.computed && indexed.slot == Slot::A);
    assert!(
        !update::slot_index::compute(&fakes[1].root)
            .unwrap()
            .computed
    );
    let r = install_by_offset(&fakes[1], &bundle).unwrap();
    assert_eq!(r.running_slot_lookup, Some(Lookup::StoredIndex));
    assert_eq!(r.bytes_downloaded, scanned.bytes_downloaded);
    assert_eq!(
        hash_prefix(&fakes[1].dev(Slot::B), 8 << 20),
        hash_file(&v2_path)
    );
    assert_eq!(fakes[1].state().trial, Some(Slot::B));

    // Slot A changed after its index was kept: 64 KiB at 1 MiB (not the first chunk).
    let f = &fakes[2];
    update::slot_index::compute(&f.root).unwrap();
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(f.dev(Slot::A))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&dev, &vec![0xa5u8; 65536], 1 << 20).unwrap();
    let r = install_by_offset(f, &bundle).unwrap();
    assert_eq!(r.running_slot_lookup, Some(Lookup::StoredIndex));
    assert!(
        r.bytes_downloaded > scanned.bytes_downloaded,
        "{:?} with a changed slot, {:?} without",
        r.bytes_downloaded,
        scanned.bytes_downloaded
    );
    assert_eq!(hash_prefix(&f.dev(Slot::B), 8 << 20), hash_file(&v2_path));

    // An index bound to another version of the running system: not used, the slot scanned.
    std::fs::write(
        fakes[1].root.path("/etc/os-release"),
        "ID=fleetos\nVERSION_ID=1.9\n",
    )
    .unwrap();
    let r = install_by_offset(&fakes[1], &bundle).unwrap();
    assert_eq!(r.running_slot_lookup, Some(Lookup::Scan));
    assert_eq!(
        hash_prefix(&fakes[1].dev(Slot::B), 8 << 20),
        hash_file(&v2_path)
    );
}
