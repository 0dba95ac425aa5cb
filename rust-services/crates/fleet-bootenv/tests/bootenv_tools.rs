//! Both boot-environment formats against the real Debian tools: `grub-editenv` (grub-common),
//! `fw_printenv`/`fw_setenv` (libubootenv-tool) and `mkenvimage` (u-boot-tools); and the
//! Raspberry Pi tryboot commit on FAT made by `mkfs.vfat`/`mcopy` (dosfstools, mtools).
//! Ignored in the plain Rust run (they need those packages); `tests/update/run` installs the
//! packages and runs them with `--run-ignored only`.

use std::path::Path;
use std::process::Command;

use fleet_bootenv::{BootEnv, Vars, grub, uboot};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn string(&mut self, alphabet: &[u8], max: usize) -> String {
        let len = 1 + self.pick(max);
        (0..len)
            .map(|_| alphabet[self.pick(alphabet.len())] as char)
            .collect()
    }
}

fn seed() -> u64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {s}");
    s
}

const NAME: &[u8] = b"abcdefghijklmnopqrstuvwxyz_0123456789";
const VALUE: &[u8] = b"abcXYZ019 =#\\:/.,-_\"'";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn editenv(file: &Path, args: &[&str]) -> String {
    run(Command::new("grub-editenv").arg(file).args(args))
}

#[test]
#[ignore = "needs grub-common; run by tests/update"]
fn grub_create_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    let ours = dir.path().join("ours");
    editenv(&theirs, &["create"]);
    grub::create(&ours).unwrap();
    assert!(std::fs::read(&theirs).unwrap() == std::fs::read(&ours).unwrap());
}

#[test]
#[ignore = "needs grub-common; run by tests/update"]
fn grub_random_edits_are_byte_identical_both_ways() {
    let mut rng = Rng(seed());
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let theirs = dir.path().join(format!("theirs{round}"));
        let ours = grub::GrubEnv::new(dir.path().join(format!("ours{round}")));
        editenv(&theirs, &["create"]);
        let mut names: Vec<String> = Vec::new();
        for step in 0..12 {
            let mut vars = ours.load().unwrap();
            if !names.is_empty() && rng.pick(4) == 0 {
                let name = names.remove(rng.pick(names.len()));
                editenv(&theirs, &["unset", &name]);
                vars.unset(&name);
            } else {
                let name = if !names.is_empty() && rng.pick(3) == 0 {
                    names[rng.pick(names.len())].clone()
                } else {
                    rng.string(NAME, 12)
                };
                let mut value = if rng.pick(6) == 0 {
                    String::new()
                } else {
                    rng.string(VALUE, 30)
                };
                if rng.pick(8) == 0 {
                    value.push('\n');
                    value.push('x');
                }
                editenv(&theirs, &["set", &format!("{name}={value}")]);
                vars.set(&name, &value);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            ours.store(&vars).unwrap();
            let a = std::fs::read(&theirs).unwrap();
            let b = std::fs::read(ours.path()).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "round {round} step {step}"
            );
            // Our reader agrees with the tool's listing of its own file.
            let listed = editenv(&theirs, &["list"]);
            let parsed = grub::parse(&a).unwrap();
            let mine: String = parsed.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            assert_eq!(listed, mine, "round {round} step {step}");
        }
    }
}

fn fw_config(dir: &Path, env: &Path) -> std::path::PathBuf {
    let conf = dir.join("fw_env.config");
    std::fs::write(&conf, format!("{} 0x0 0x4000\n", env.display())).unwrap();
    conf
}

fn random_vars(rng: &mut Rng) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for _ in 0..1 + rng.pick(15) {
        let name = rng.string(NAME, 12);
        // mkenvimage's text input reads a backslash before the newline as a continuation.
        let value = rng.string(VALUE, 40).trim_end_matches('\\').to_string() + "v";
        if !out.iter().any(|(k, _)| *k == name) {
            out.push((name, value));
        }
    }
    out
}

#[test]
#[ignore = "needs u-boot-tools and libubootenv-tool; run by tests/update"]
fn uboot_ours_matches_mkenvimage_and_reads_with_fw_printenv() {
    let mut rng = Rng(seed());
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let vars = random_vars(&mut rng);
        let mut v = Vars::default();
        for (k, val) in &vars {
            v.set(k, val);
        }
        let bytes = uboot::serialize(&v, 0x4000).unwrap();
        let ours = dir.path().join("ours.env");
        std::fs::write(&ours, &bytes).unwrap();
        // mkenvimage with zero padding, fed the variables sorted as U-Boot stores them.
        let mut sorted = vars.clone();
        sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let text: String = sorted.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let src = dir.path().join("vars.txt");
        std::fs::write(&src, text.clone()).unwrap();
        let theirs = dir.path().join("theirs.env");
        run(Command::new("mkenvimage")
            .args(["-p", "0", "-s", "16384", "-o"])
            .arg(&theirs)
            .arg(&src));
        assert!(
            std::fs::read(&theirs).unwrap() == bytes,
            "round {round}: {text:?}"
        );
        let conf = fw_config(dir.path(), &ours);
        let printed = run(Command::new("fw_printenv").arg("-c").arg(&conf));
        assert_eq!(printed, text, "round {round}");
    }
}

#[test]
#[ignore = "needs libubootenv-tool; run by tests/update"]
fn uboot_fw_setenv_output_reads_with_ours_and_back() {
    let mut rng = Rng(seed());
    let dir = tempfile::tempdir().unwrap();
    let env_path = dir.path().join("uboot.env");
    let mut base = Vars::default();
    base.set("bootcmd", "run fleet_boot");
    base.set("fleet_active", "A");
    std::fs::write(&env_path, uboot::serialize(&base, 0x4000).unwrap()).unwrap();
    let conf = fw_config(dir.path(), &env_path);
    let env = uboot::UbootEnv::new(&env_path);
    for round in 0..20 {
        // Theirs writes, ours reads.
        let vars = random_vars(&mut rng);
        let script: String = vars.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        let script_path = dir.path().join("script");
        std::fs::write(&script_path, script).unwrap();
        run(Command::new("fw_setenv")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&script_path));
        let printed = run(Command::new("fw_printenv").arg("-c").arg(&conf));
        let loaded = env.load().unwrap();
        let mine: String = loaded.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        assert_eq!(printed, mine, "round {round}");
        // Ours writes (an edit), theirs reads.
        let mut edited = loaded.clone();
        edited.set("fleet_try", if round % 2 == 0 { "B" } else { "A" });
        edited.set("fleet_tries", &round.to_string());
        env.store(&edited).unwrap();
        let value = run(Command::new("fw_printenv")
            .arg("-c")
            .arg(&conf)
            .arg("-n")
            .arg("fleet_tries"));
        assert_eq!(value.trim(), round.to_string());
        let printed = run(Command::new("fw_printenv").arg("-c").arg(&conf));
        let mine: String = env
            .load()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        assert_eq!(printed, mine, "round {round}");
    }
}

/// Raspberry Pi tryboot: `autoboot.txt` made by `mkfs.vfat` + `mcopy` (FAT12 as wic makes the
/// small fleet-auto partition, and FAT32), committed by fleetd in place: `mtype` reads the new
/// file, `fsck.fat -n` stays clean, and the image differs from before in one sector only.
fn tryboot_commit_on_real_fat(mkfs: &[&str], size_mib: u64) {
    use fleet_bootenv::Slot;
    use fleet_bootenv::tryboot::{AUTOBOOT_DEV, TrybootEnv, render};
    let dir = tempfile::tempdir().unwrap();
    let root = fleet_fs::Root::new(dir.path());
    let dev = root.path(AUTOBOOT_DEV);
    std::fs::create_dir_all(dev.parent().unwrap()).unwrap();
    std::fs::File::create(&dev)
        .unwrap()
        .set_len(size_mib << 20)
        .unwrap();
    run(Command::new("mkfs.vfat").args(mkfs).arg(&dev));
    // Another file first, so autoboot.txt's cluster is not the first one.
    let other = dir.path().join("config.txt");
    std::fs::write(&other, "x".repeat(3000)).unwrap();
    let file = dir.path().join("autoboot.txt");
    std::fs::write(&file, render(Slot::A)).unwrap();
    let img = dev.to_str().unwrap();
    run(Command::new("mcopy")
        .args(["-i", img])
        .arg(&other)
        .arg(&file)
        .arg("::/"));
    let before = std::fs::read(&dev).unwrap();
    let env = TrybootEnv::new(&root);
    assert_eq!(env.autoboot().unwrap().active(), Some(Slot::A));
    env.commit(Slot::A, Slot::B).unwrap();
    assert_eq!(
        run(Command::new("mtype").args(["-i", img, "::/autoboot.txt"])),
        render(Slot::B)
    );
    run(Command::new("fsck.fat").arg("-n").arg(&dev));
    let after = std::fs::read(&dev).unwrap();
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert_eq!(changed.len(), 2, "the two digits, nothing else");
    assert_eq!(changed[0] / 512, changed[1] / 512, "one sector");
    assert_eq!(env.autoboot().unwrap().active(), Some(Slot::B));
}

#[test]
#[ignore = "needs dosfstools and mtools; run by tests/update"]
fn tryboot_commit_in_place_on_mkfs_vfat_fat12() {
    tryboot_commit_on_real_fat(&["-n", "fleet-auto"], 4);
}

#[test]
#[ignore = "needs dosfstools and mtools; run by tests/update"]
fn tryboot_commit_in_place_on_mkfs_vfat_fat32() {
    tryboot_commit_on_real_fat(&["-F", "32", "-s", "1", "-n", "fleet-auto"], 40);
}
