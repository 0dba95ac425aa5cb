//! `fleetd logging apply|status --root TMP`: the persistent-logging toggle alone.

mod provision_support;

use provision_support::{TestRoot, content};
use serde_json::{Value, json};

const DROPIN: &str = "run/systemd/journald.conf.d/50-fleet-logging.conf";
const MOUNT: &str = "run/systemd/system/var-log-journal.mount";

fn status(root: &TestRoot) -> Value {
    let run = root.fleetd(&["logging", "status", "--json"]).ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn apply_switches_on_and_off_and_status_follows() {
    let root = TestRoot::seeded();
    root.set_config_json(
        &json!({"persistentLogging": true, "fleet": {"logging": {"maxUse": "16M"}}}),
    );
    root.fleetd(&["logging", "apply"]).ok();
    assert!(
        root.read(DROPIN)
            .contains("Storage=persistent\nSystemMaxUse=16M\n")
    );
    assert!(
        root.read(MOUNT)
            .contains("What=/mnt/state/journal\nWhere=/var/log/journal\n")
    );
    // Only logging is touched: no hostname, no last good copy.
    assert!(!root.exists("etc/hostname"));
    assert!(!root.exists("var/lib/fleet/config.last-good.json"));

    // Journal files on the state partition count toward the size.
    root.write(
        "mnt/state/journal/0123/system.journal",
        &vec![7u8; 64 * 1024],
        0o640,
    );
    let s = status(&root);
    assert_eq!(s["mode"], "persistent");
    assert_eq!(s["configured"], "persistent");
    assert_eq!(s["location"], "/var/log/journal");
    assert_eq!(s["backing"], "/mnt/state/journal");
    assert_eq!(s["maxUse"], "16M");
    assert!(s["bytes"].as_u64().unwrap() >= 64 * 1024, "{s}");

    let text = root.fleetd(&["logging", "status"]).ok().stdout;
    assert!(text.starts_with("mode:       persistent\n"), "{text}");
    assert!(
        text.contains("/var/log/journal (state partition, /mnt/state/journal)"),
        "{text}"
    );

    root.set_config_json(&json!({"persistentLogging": false}));
    let off = root.fleetd(&["logging", "apply"]).ok();
    assert!(
        root.read(DROPIN)
            .contains("Storage=volatile\nRuntimeMaxUse=8M\n")
    );
    assert!(!root.exists(MOUNT));
    for effect in [
        "journalctl --relinquish-var",
        "systemctl restart systemd-journald.service",
        "systemctl stop var-log-journal.mount",
    ] {
        assert!(
            off.stderr.contains(&format!("skipped: {effect}")),
            "{effect}: {}",
            off.stderr
        );
    }
    // The persistent journal stays on the state partition for later reading.
    assert!(root.exists("mnt/state/journal/0123/system.journal"));
    let s = status(&root);
    assert_eq!(s["mode"], "volatile");
    assert_eq!(s["location"], "/run/log/journal");
    assert_eq!(s["maxUse"], "8M");
    assert_eq!(s["bytes"], 0);
}

#[test]
fn apply_twice_changes_nothing_and_logs_nothing() {
    let root = TestRoot::seeded();
    root.set_config_json(&json!({"persistentLogging": true}));
    root.fleetd(&["logging", "apply"]).ok();
    let before = root.snapshot();
    let again = root.fleetd(&["logging", "apply"]).ok();
    assert_eq!(root.snapshot(), before);
    assert!(again.lines("info").is_empty(), "{}", again.stderr);
    assert!(
        !again.stderr.contains("skipped: systemctl restart"),
        "{}",
        again.stderr
    );
}

#[test]
fn volatile_at_boot_does_not_restart_journald() {
    // At boot journald already runs with the image's volatile default.
    let root = TestRoot::seeded();
    root.set_config_json(&json!({}));
    let run = root.fleetd(&["logging", "apply"]).ok();
    assert!(!run.stderr.contains("systemd-journald"), "{}", run.stderr);
    assert!(root.read(DROPIN).contains("Storage=volatile"));
}

#[test]
fn apply_refuses_an_invalid_config_and_changes_nothing() {
    let root = TestRoot::seeded();
    root.set_config_json(&json!({"persistentLogging": true}));
    root.fleetd(&["logging", "apply"]).ok();
    root.set_config(br#"{"persistentLogging": "yes"}"#);
    let before = content(&root.snapshot());
    let run = root.fleetd(&["logging", "apply"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("error: config.json: persistentLogging: "),
        "{}",
        run.stderr
    );
    assert_eq!(content(&root.snapshot()), before);
    let s = status(&root);
    assert_eq!(s["mode"], "persistent");
    assert_eq!(s["configured"], Value::Null);
}

#[test]
fn status_without_anything_applied_is_the_volatile_default() {
    let root = TestRoot::new();
    let s = status(&root);
    assert_eq!(s["mode"], "volatile");
    assert_eq!(s["configured"], "volatile");
    assert_eq!(s["maxUse"], "8M");
}

#[test]
fn the_bind_names_the_canonical_path_when_var_log_is_a_symlink() {
    // Yocto's volatile /var/log: a link to /var/volatile/log.
    let root = TestRoot::seeded();
    std::fs::create_dir_all(root.path("var/volatile/log")).unwrap();
    std::os::unix::fs::symlink("volatile/log", root.path("var/log")).unwrap();
    root.set_config_json(&json!({"persistentLogging": true}));
    let run = root.fleetd(&["logging", "apply"]).ok();
    let unit = "run/systemd/system/var-volatile-log-journal.mount";
    assert!(
        root.read(unit)
            .contains("Where=/var/volatile/log/journal\n")
    );
    assert!(!root.exists(MOUNT));
    assert!(
        run.stderr
            .contains("skipped: systemctl start var-volatile-log-journal.mount"),
        "{}",
        run.stderr
    );
    root.set_config_json(&json!({"persistentLogging": false}));
    root.fleetd(&["logging", "apply"]).ok();
    assert!(!root.exists(unit));
}
