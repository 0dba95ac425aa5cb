//! The desired supervisor container built from a root tree.

use fleet_fs::Root;
use fleetd::supervisor::spec::{self, LABEL_CONFIG_HASH};

fn tree(conf: &str, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/fleet")).unwrap();
    std::fs::create_dir_all(dir.path().join("mnt/boot")).unwrap();
    std::fs::write(dir.path().join("etc/fleet/supervisor.conf"), conf).unwrap();
    std::fs::write(dir.path().join("mnt/boot/config.json"), config).unwrap();
    std::fs::write(
        dir.path().join("etc/os-release"),
        "NAME=fleetOS\nVERSION_ID=\"2.1.0\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn image_from_conf_and_override() {
    let d = tree(
        "# c\nSUPERVISOR_IMAGE=fleet/supervisor:v1\n",
        r#"{"uuid":"abc","listenPort":1234}"#,
    );
    let root = Root::new(d.path());
    let want = spec::desired(&root, "/run/docker.sock".as_ref()).unwrap();
    assert_eq!(want.image, "fleet/supervisor:v1");
    assert_eq!(want.listen_port, 1234);
    let c = &want.create.0;
    assert!(c.env.contains(&"FLEET_UUID=abc".to_string()));
    assert!(c.env.contains(&"FLEET_OS_VERSION=2.1.0".to_string()));
    assert_eq!(c.host_config.network_mode, "host");
    assert_eq!(c.host_config.restart_policy.name, "always");
    let config_src = format!("{}/mnt/boot", d.path().display());
    assert!(
        c.host_config
            .mounts
            .iter()
            .any(|m| m.source == config_src && m.target == "/boot"),
        "{:?}",
        c.host_config.mounts
    );
    assert!(
        c.host_config
            .binds
            .iter()
            .any(|b| b == "/run/docker.sock:/var/run/docker.sock")
    );
    let lock_bind = format!(
        "{}/tmp/fleet-supervisor:/tmp/fleet-supervisor",
        d.path().display()
    );
    assert!(
        c.host_config.binds.contains(&lock_bind),
        "{:?}",
        c.host_config.binds
    );
    assert_eq!(c.labels.get(LABEL_CONFIG_HASH), Some(&want.config_hash));

    std::fs::write(
        d.path().join("mnt/boot/config.json"),
        r#"{"uuid":"abc","listenPort":1234,"fleet":{"supervisor":{"image":"fleet/supervisor:v2"}}}"#,
    )
    .unwrap();
    let changed = spec::desired(&root, "/run/docker.sock".as_ref()).unwrap();
    assert_eq!(changed.image, "fleet/supervisor:v2");
    assert_ne!(changed.config_hash, want.config_hash);
    // Same inputs, same hash: the host leaves the container alone.
    assert_eq!(
        changed,
        spec::desired(&root, "/run/docker.sock".as_ref()).unwrap()
    );
}

#[test]
fn no_image_is_a_clear_error() {
    let d = tree("", "{}");
    let err = spec::desired(&Root::new(d.path()), "/s".as_ref()).unwrap_err();
    assert!(err.to_string().contains("SUPERVISOR_IMAGE"), "{err}");
}

#[test]
fn bad_conf_line_names_the_file() {
    let d = tree("garbage\n", "{}");
    let err = spec::desired(&Root::new(d.path()), "/s".as_ref()).unwrap_err();
    assert!(err.to_string().contains("supervisor.conf"), "{err}");
}

#[test]
fn missing_config_json_is_not_bound() {
    let d = tree("SUPERVISOR_IMAGE=fleet/supervisor:v1\n", "{}");
    let root = Root::new(d.path());
    let with = spec::desired(&root, "/s".as_ref()).unwrap();
    std::fs::remove_file(d.path().join("mnt/boot/config.json")).unwrap();
    let without = spec::desired(&root, "/s".as_ref()).unwrap();
    // Never a `Binds` entry (the engine would create a directory named config.json).
    assert!(
        !without
            .create
            .0
            .host_config
            .binds
            .iter()
            .chain(with.create.0.host_config.binds.iter())
            .any(|b| b.contains("config.json"))
    );
    assert!(
        !without
            .create
            .0
            .host_config
            .mounts
            .iter()
            .any(|m| m.target == "/boot/config.json")
    );
    assert_ne!(with.config_hash, without.config_hash);
}

/// `balena preload`'s /mnt/data/apps.json moves into the supervisor's data dir once, and
/// never over a target the supervisor already keeps.
#[test]
fn balena_preload_file_is_handed_to_the_supervisor_once() {
    let d = tempfile::tempdir().unwrap();
    let root = Root::new(d.path());
    let data = d.path().join("mnt/data/fleet-supervisor");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(d.path().join("mnt/data/apps.json"), r#"{"apps":{}}"#).unwrap();
    assert!(spec::hand_over_preload(&root).unwrap());
    assert!(!d.path().join("mnt/data/apps.json").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("apps.json")).unwrap(),
        r#"{"apps":{}}"#
    );
    assert!(
        !spec::hand_over_preload(&root).unwrap(),
        "nothing left to move"
    );

    std::fs::remove_file(data.join("apps.json")).unwrap();
    std::fs::write(data.join("target.json"), "{}").unwrap();
    std::fs::write(d.path().join("mnt/data/apps.json"), "{}").unwrap();
    assert!(
        !spec::hand_over_preload(&root).unwrap(),
        "a kept target wins"
    );
    assert!(d.path().join("mnt/data/apps.json").exists());
}
