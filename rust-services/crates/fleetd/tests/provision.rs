//! `fleetd provision --root TMP`: toggles on and off, refused input, a key failing alone,
//! machine-id, and re-applying the last good configuration after a reboot.

mod provision_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use fleet_config::Config;
use provision_support::{TestRoot, content, data_dir, repo_top};
use serde_json::{Value, json};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKT7wTpVE2lYA7ICNHbGGcq+7jzR+HhSmzMlzVlcbpkM ops@fleet";

fn base() -> Value {
    json!({ "hostname": "base-host" })
}

fn with(key: &[&str], value: Value) -> Value {
    let mut doc = base();
    let mut obj = doc.as_object_mut().unwrap();
    for k in &key[..key.len() - 1] {
        obj = obj
            .entry(k.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap();
    }
    obj.insert(key[key.len() - 1].to_string(), value);
    doc
}

#[test]
fn every_toggle_switches_on_and_off() {
    let root = TestRoot::seeded();
    root.set_config_json(&base());
    root.provision().ok();
    let off = content(&root.snapshot());

    // (setting, value, a path that must appear or change, text it must contain)
    let toggles: Vec<(&[&str], Value, &str, &str)> = vec![
        (
            &["persistentLogging"],
            json!(true),
            "run/systemd/system/var-log-journal.mount",
            "What=/mnt/state/journal",
        ),
        (
            &["persistentLogging"],
            json!(true),
            "run/systemd/journald.conf.d/50-fleet-logging.conf",
            "Storage=persistent\nSystemMaxUse=32M\n",
        ),
        (
            &["developmentMode"],
            json!(true),
            "run/systemd/system/sockets.target.wants/fleet-devmode-engine.socket",
            "",
        ),
        (
            &["developmentMode"],
            json!(true),
            "run/systemd/system/getty.target.wants/serial-getty@ttyS0.service",
            "",
        ),
        (
            &["developmentMode"],
            json!(true),
            "run/systemd/system/sshd@.service.d/50-fleet-devmode.conf",
            "EnvironmentFile=-/run/fleet/devmode-sshd.env",
        ),
        (
            &["fleet", "vpn", "enabled"],
            json!(true),
            "run/fleet/vpn-enabled",
            "fleet.vpn.enabled",
        ),
        (
            &["os", "sshKeys"],
            json!([KEY]),
            "home/root/.ssh/authorized_keys",
            KEY,
        ),
        (
            &["os", "udevRules"],
            json!({"70-test": "SUBSYSTEM==\"net\", ACTION==\"add\""}),
            "run/udev/rules.d/70-test.rules",
            "SUBSYSTEM==\"net\"",
        ),
        (
            &["ntpServers"],
            json!("ntp.example.org"),
            "run/systemd/timesyncd.conf.d/50-fleet-ntp.conf",
            "NTP=ntp.example.org\n",
        ),
        (
            &["dnsServers"],
            json!("192.0.2.1"),
            "run/NetworkManager/conf.d/50-fleet-dns.conf",
            "servers=192.0.2.1\n",
        ),
        (
            &["os", "network", "connectivity"],
            json!({"uri": "http://192.0.2.9/", "interval": "0"}),
            "run/NetworkManager/conf.d/50-fleet-connectivity.conf",
            "enabled=false\n",
        ),
        (
            &["hostname"],
            json!("other-host"),
            "etc/hostname",
            "other-host\n",
        ),
    ];
    for (key, value, path, text) in toggles {
        let name = key.join(".");
        root.set_config_json(&with(key, value));
        let on = root.provision().ok();
        assert!(root.exists(path), "{name} on: {path} missing");
        if !text.is_empty() {
            assert!(
                root.read(path).contains(text),
                "{name} on: {path}:\n{}",
                root.read(path)
            );
        }
        assert!(
            on.lines("info")
                .iter()
                .chain(on.lines("warning").iter())
                .any(|l| l.contains(&format!("FLEET_KEY={name}"))),
            "{name} on: no change logged with FLEET_KEY:\n{}",
            on.stderr
        );

        root.set_config_json(&base());
        root.provision().ok();
        assert_eq!(
            content(&root.snapshot()),
            off,
            "{name} off: files differ from before it was switched on"
        );
    }
    // Turning persistent logging off keeps the journal files on the state partition.
    assert!(root.path("mnt/state/journal").is_dir());
}

#[test]
fn toggling_developmentmode_moves_the_serial_console() {
    let root = TestRoot::seeded();
    root.write("sys/class/tty/console/active", b"tty0 ttyS1\n", 0o644);
    root.set_config_json(&with(&["developmentMode"], json!(true)));
    root.provision().ok();
    let wants = "run/systemd/system/getty.target.wants";
    assert!(root.exists(&format!("{wants}/serial-getty@ttyS1.service")));
    root.write("sys/class/tty/console/active", b"ttyAMA0\n", 0o644);
    root.provision().ok();
    assert!(root.exists(&format!("{wants}/serial-getty@ttyAMA0.service")));
    assert!(!root.exists(&format!("{wants}/serial-getty@ttyS1.service")));
}

fn refused_corpus() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["invalid", "invalid-beyond-schema"] {
        for e in fs::read_dir(repo_top().join("tests/data/config").join(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    files.sort();
    assert!(files.len() > 10);
    files
}

#[test]
fn invalid_config_changes_nothing_in_the_tree() {
    let root = TestRoot::seeded();
    root.set_config(&fs::read(data_dir().join("all-on/config.json")).unwrap());
    root.provision().ok();
    for file in refused_corpus() {
        let bytes = fs::read(&file).unwrap();
        root.set_config(&bytes);
        let before = root.snapshot();
        let run = root.provision();
        assert_ne!(run.code, 0, "{}: accepted", file.display());
        assert_eq!(
            root.snapshot(),
            before,
            "{}: the tree changed",
            file.display()
        );
        // One error line per problem, then the summary.
        let problems = Config::from_slice(&bytes).unwrap_err();
        let errors = problems
            .iter()
            .filter(|p| p.severity == fleet_config::Severity::Error)
            .count();
        let lines = run.lines("error");
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("error: config.json: "))
                .count(),
            errors,
            "{}:\n{}",
            file.display(),
            run.stderr
        );
        assert!(
            lines
                .last()
                .unwrap()
                .contains("last good configuration stays applied"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn invalid_config_on_a_fresh_device_writes_nothing() {
    for file in refused_corpus() {
        let root = TestRoot::seeded();
        root.set_config(&fs::read(&file).unwrap());
        let before = root.snapshot();
        let run = root.provision();
        assert_ne!(run.code, 0);
        assert_eq!(root.snapshot(), before, "{}", file.display());
    }
}

#[test]
fn after_a_reboot_a_refused_config_reapplies_the_last_good_one() {
    let root = TestRoot::seeded();
    root.set_config(&fs::read(data_dir().join("all-on/config.json")).unwrap());
    root.provision().ok();
    let applied = content(&root.snapshot());
    // A reboot empties /run; meanwhile someone broke config.json.
    fs::remove_dir_all(root.path("run")).unwrap();
    root.set_config(br#"{"hostname": "bad_name", "persistentLogging": "yes"}"#);
    let run = root.provision();
    assert_ne!(run.code, 0);
    let mut now = content(&root.snapshot());
    now.remove("mnt/boot/config.json");
    let mut want = applied;
    want.remove("mnt/boot/config.json");
    assert_eq!(now, want);
}

#[test]
fn a_key_that_fails_fails_alone() {
    let root = TestRoot::seeded();
    // /run/udev is a file: the udev rules cannot be written; everything else must apply.
    root.write("run/udev", b"not a directory", 0o644);
    root.set_config(&fs::read(data_dir().join("all-on/config.json")).unwrap());
    let run = root.provision();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("error: os.udevRules: "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("1 setting failed to apply: os.udevRules"),
        "{}",
        run.stderr
    );
    assert_eq!(root.read("etc/hostname"), "edge-01\n");
    for path in [
        "home/root/.ssh/authorized_keys",
        "run/systemd/timesyncd.conf.d/50-fleet-ntp.conf",
        "run/NetworkManager/conf.d/50-fleet-dns.conf",
        "run/systemd/system/sockets.target.wants/fleet-devmode-engine.socket",
        "run/systemd/system/var-log-journal.mount",
    ] {
        assert!(root.exists(path), "{path} not applied");
    }
    // Not a clean apply: not recorded as the last good configuration.
    assert!(!root.exists("var/lib/fleet/config.last-good.json"));

    fs::remove_file(root.path("run/udev")).unwrap();
    root.provision().ok();
    assert!(root.exists("run/udev/rules.d/56.rules"));
    assert!(root.exists("var/lib/fleet/config.last-good.json"));
}

#[test]
fn empty_or_uninitialized_machine_id_is_made_persistent() {
    for seed in ["", "uninitialized\n", "00000000000000000000000000000000\n"] {
        let root = TestRoot::new();
        root.write("etc/machine-id", seed.as_bytes(), 0o444);
        root.set_config(b"{}");
        root.provision().ok();
        let id = root.read("etc/machine-id").trim().to_string();
        assert!(
            fleetd::provision::machine_id::is_valid(&id),
            "{seed:?} -> {id:?}"
        );
        assert_eq!(
            fs::metadata(root.path("etc/machine-id"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o444
        );
        assert_eq!(root.read("etc/hostname"), format!("fleet-{}\n", &id[..7]));
        let before = root.snapshot();
        root.provision().ok();
        assert_eq!(root.snapshot(), before, "machine-id must stay the same");
    }
}

#[test]
fn the_transient_machine_id_of_this_boot_is_the_one_kept() {
    let root = TestRoot::new();
    root.write("etc/machine-id", b"", 0o444);
    root.write(
        "run/machine-id",
        b"fedcba9876543210fedcba9876543210\n",
        0o444,
    );
    root.set_config(b"{}");
    root.provision().ok();
    assert_eq!(
        root.read("etc/machine-id"),
        "fedcba9876543210fedcba9876543210\n"
    );
    assert_eq!(root.read("etc/hostname"), "fleet-fedcba9\n");
}

#[test]
fn removed_udev_rules_disappear_and_foreign_rules_stay() {
    let root = TestRoot::seeded();
    root.write(
        "run/udev/rules.d/10-foreign.rules",
        b"# someone else's\n",
        0o644,
    );
    root.set_config_json(&with(
        &["os", "udevRules"],
        json!({"a": "KERNEL==\"x\"", "b": "KERNEL==\"y\""}),
    ));
    root.provision().ok();
    root.set_config_json(&with(&["os", "udevRules"], json!({"b": "KERNEL==\"y\""})));
    root.provision().ok();
    assert!(!root.exists("run/udev/rules.d/a.rules"));
    assert!(root.exists("run/udev/rules.d/b.rules"));
    assert!(root.exists("run/udev/rules.d/10-foreign.rules"));
}

#[test]
fn skipped_effects_are_logged_at_debug_level() {
    let root = TestRoot::seeded();
    root.set_config(&fs::read(data_dir().join("all-on/config.json")).unwrap());
    let run = root.provision().ok();
    for effect in [
        "sethostname edge-01",
        "udevadm control --reload",
        // At boot the journal switch is queued in a transient unit, off the boot path.
        "systemd-run --no-block --collect --unit=fleet-journal-persist",
        "systemctl --no-block start fleet-devmode-engine.socket",
        "systemctl --no-block try-reload-or-restart NetworkManager.service",
    ] {
        assert!(
            run.lines("debug")
                .iter()
                .any(|l| l.contains(&format!("skipped: {effect}"))),
            "{effect}:\n{}",
            run.stderr
        );
    }
    assert!(
        run.lines("debug")
            .iter()
            .any(|l| l.contains("fleet-journal-persist")
                && l.contains("systemctl restart systemd-journald.service && journalctl --flush")),
        "{}",
        run.stderr
    );
}

#[test]
fn unreadable_config_changes_nothing() {
    let root = TestRoot::seeded();
    root.set_config(&fs::read(data_dir().join("sample/config.json")).unwrap());
    root.provision().ok();
    // config.json that cannot be read (here: a directory) is refused like an invalid one.
    fs::remove_file(root.path("mnt/boot/config.json")).unwrap();
    fs::create_dir(root.path("mnt/boot/config.json")).unwrap();
    let before = root.snapshot();
    let run = root.provision();
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    assert!(
        run.stderr.contains("last good configuration stays applied"),
        "{}",
        run.stderr
    );
    assert_eq!(root.snapshot(), before);
}
