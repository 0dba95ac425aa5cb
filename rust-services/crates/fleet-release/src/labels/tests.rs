use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn host() -> HostContext {
    HostContext {
        engine_socket: "/run/docker.sock".into(),
        supervisor_port: 48484,
        supervisor_bridge_host: "10.114.104.1".into(),
        supervisor_api_key: "secret".into(),
        service_api_keys: Default::default(),
        api_endpoint: Some("https://api.example".into()),
        device_api_key: Some("devkey".into()),
        device_type: "raspberrypi4-64".into(),
    }
}

fn only(feature: Feature, mode: NetworkMode) -> FeatureSettings {
    settings(&BTreeSet::from([feature]), mode, &host())
}

fn mount(s: &FeatureSettings, target: &str) -> Option<BindMount> {
    s.mounts.iter().find(|m| m.target == target).cloned()
}

#[test]
fn all_prefixes_accepted() {
    for prefix in PREFIXES {
        let (l, p) = read(&labels(&[(&format!("{prefix}features.dbus"), "1")]));
        assert!(p.is_empty());
        assert_eq!(l.features, BTreeSet::from([Feature::Dbus]), "{prefix}");
    }
    let (l, _) = read(&labels(&[("com.example.features.dbus", "1")]));
    assert!(l.features.is_empty(), "other prefixes are user labels");
}

#[test]
fn false_values_disable() {
    let (l, p) = read(&labels(&[
        ("io.balena.features.sysfs", "0"),
        ("io.balena.features.procfs", "false"),
        ("io.balena.features.firmware", "true"),
    ]));
    assert!(p.is_empty());
    assert_eq!(l.features, BTreeSet::from([Feature::Firmware]));
    let (_, p) = read(&labels(&[("io.balena.features.sysfs", "maybe")]));
    assert_eq!(p[0].0, "io.balena.features.sysfs");
}

#[test]
fn defaults() {
    let (l, p) = read(&BTreeMap::new());
    assert!(p.is_empty());
    assert_eq!(l.strategy, UpdateStrategy::DownloadThenKill);
    assert_eq!(l.handover_timeout_ms, 60_000);
}

#[test]
fn strategies_and_timeout() {
    for (name, s) in [
        ("download-then-kill", UpdateStrategy::DownloadThenKill),
        ("kill-then-download", UpdateStrategy::KillThenDownload),
        ("delete-then-download", UpdateStrategy::DeleteThenDownload),
        ("hand-over", UpdateStrategy::HandOver),
    ] {
        let (l, p) = read(&labels(&[("io.resin.update.strategy", name)]));
        assert!(p.is_empty());
        assert_eq!(l.strategy, s);
    }
    let (l, _) = read(&labels(&[("io.fleet.update.handover-timeout", "1500")]));
    assert_eq!(l.handover_timeout_ms, 1500);
    let (_, p) = read(&labels(&[("io.balena.update.handover-timeout", "1m")]));
    assert_eq!(p.len(), 1);
    // As balena: an empty timeout is the default; an unknown strategy is
    // download-then-kill, with a warning.
    let odd = labels(&[
        ("io.balena.update.strategy", "yolo"),
        ("io.balena.update.handover-timeout", ""),
    ]);
    let (l, p) = read(&odd);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(l.strategy, UpdateStrategy::DownloadThenKill);
    assert_eq!(l.handover_timeout_ms, DEFAULT_HANDOVER_TIMEOUT_MS);
    let w = warnings(&odd);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].1.contains("`yolo`") && w[0].1.contains("download-then-kill is used"));
}

#[test]
fn legacy_names_contracts_and_inert_features() {
    let l = labels(&[
        ("io.resin.features.resin-api", "1"),
        ("io.resin.features.resin-socket", "1"),
        ("io.balena.features.gpu", "1"),
        ("io.balena.features.extra-firmware", "1"),
        ("io.balena.features.optional", "true"),
        ("io.balena.features.host-os.board-rev", "1"),
        (
            "io.balena.features.requires.sw.supervisor",
            ">=14.0.0 <17 || 17.1.x",
        ),
        ("io.balena.features.requires.arch.sw", "aarch64"),
        ("io.balena.features.requires.hw.device-type", "jetson-nano"),
        ("io.balena.features.requires.sw.made-up", "anything"),
        ("io.balena.features.teleport", "1"),
    ]);
    let (s, p) = read(&l);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        s.features,
        BTreeSet::from([
            Feature::BalenaApi,
            Feature::BalenaSocket,
            Feature::Gpu,
            Feature::ExtraFirmware
        ])
    );
    // Only the feature balena does not have is a warning.
    assert_eq!(unread(&l), ["io.balena.features.teleport"]);
    let (_, p) = read(&labels(&[
        ("io.balena.features.requires.sw.l4t", "not-valid"),
        ("io.balena.features.requires.arch.sw", "sparc"),
    ]));
    assert_eq!(p.len(), 2, "{p:?}");
    for good in [
        "1.2.3",
        ">=14",
        "~1.2",
        "^2.0.0",
        "1.x",
        "*",
        "1.0 - 2.0",
        "<=5",
    ] {
        assert!(is_version_range(good), "{good}");
    }
    for bad in ["", "not-valid", ">=a.b", "1.2.3.4"] {
        assert!(!is_version_range(bad), "{bad}");
    }
}

#[test]
fn balena_socket() {
    let s = only(Feature::BalenaSocket, NetworkMode::Bridge);
    let m = mount(&s, CONTAINER_ENGINE_SOCKET).unwrap();
    assert_eq!(m.source, "/run/docker.sock");
    assert!(mount(&s, "/var/run/balena.sock").is_some());
    assert_eq!(s.env["DOCKER_HOST"], "unix:///var/run/balena-engine.sock");
}

#[test]
fn dbus() {
    let s = only(Feature::Dbus, NetworkMode::Bridge);
    assert_eq!(
        mount(&s, "/host/run/dbus").unwrap(),
        BindMount::new("/run/dbus", "/host/run/dbus", false)
    );
    assert_eq!(
        s.env["DBUS_SYSTEM_BUS_ADDRESS"],
        "unix:path=/host/run/dbus/system_bus_socket"
    );
}

#[test]
fn sysfs_procfs_modules_firmware() {
    let cases = [
        (Feature::Sysfs, "/sys", false),
        (Feature::Procfs, "/proc", false),
        (Feature::KernelModules, "/lib/modules", true),
        (Feature::Firmware, "/lib/firmware", true),
    ];
    for (f, path, ro) in cases {
        let s = only(f, NetworkMode::Bridge);
        assert_eq!(s.mounts, vec![BindMount::new(path, path, ro)], "{f:?}");
        assert!(s.env.is_empty());
    }
}

#[test]
fn journal_logs_read_only() {
    let s = only(Feature::JournalLogs, NetworkMode::Bridge);
    for p in ["/var/log/journal", "/run/log/journal", "/etc/machine-id"] {
        assert_eq!(mount(&s, p).unwrap(), BindMount::new(p, p, true));
    }
    assert_eq!(s.mounts.len(), 3);
}

#[test]
fn supervisor_api_env_by_network_mode() {
    let bridge = only(Feature::SupervisorApi, NetworkMode::Bridge);
    let host_mode = only(Feature::SupervisorApi, NetworkMode::Host);
    for brand in ["FLEET", "BALENA", "RESIN"] {
        assert_eq!(
            bridge.env[&format!("{brand}_SUPERVISOR_HOST")],
            "10.114.104.1"
        );
        assert_eq!(
            host_mode.env[&format!("{brand}_SUPERVISOR_HOST")],
            "127.0.0.1"
        );
        assert_eq!(bridge.env[&format!("{brand}_SUPERVISOR_PORT")], "48484");
        assert_eq!(
            host_mode.env[&format!("{brand}_SUPERVISOR_ADDRESS")],
            "http://127.0.0.1:48484"
        );
        assert_eq!(bridge.env[&format!("{brand}_SUPERVISOR_API_KEY")], "secret");
    }
    assert!(bridge.mounts.is_empty());
    // The cloud credential only with features.balena-api.
    for s in [&bridge, &host_mode] {
        assert!(
            s.env.values().all(|v| v != "devkey"),
            "supervisor-api alone leaks the device API key: {:?}",
            s.env
        );
        assert!(!s.env.contains_key("BALENA_API_KEY"));
    }
}

#[test]
fn balena_api_env() {
    let s = only(Feature::BalenaApi, NetworkMode::Bridge);
    assert_eq!(s.env["BALENA_API_KEY"], "devkey");
    assert_eq!(s.env["RESIN_API_KEY"], "devkey");
    assert_eq!(s.env["BALENA_API_URL"], "https://api.example");
    let unprovisioned = settings(
        &BTreeSet::from([Feature::BalenaApi]),
        NetworkMode::Bridge,
        &HostContext::default(),
    );
    assert!(unprovisioned.env.is_empty());
}

#[test]
fn every_feature_adds_something() {
    for f in Feature::ALL {
        let (l, p) = read(&labels(&[(
            &format!("io.fleet.features.{}", f.name()),
            "1",
        )]));
        assert!(p.is_empty());
        assert!(l.features.contains(&f));
        // GPU and extra-firmware act on the create body and the volumes instead.
        if !matches!(f, Feature::Gpu | Feature::ExtraFirmware) {
            let s = only(f, NetworkMode::Bridge);
            assert!(!(s.mounts.is_empty() && s.env.is_empty()), "{f:?}");
        }
    }
}

#[test]
fn host_context_from_config_keys() {
    let keys = fleet_config::SupervisorKeys {
        listen_port: Some(1234),
        api_endpoint: Some("https://api.example".into()),
        device_type: Some("raspberrypi5".into()),
        ..Default::default()
    };
    let h = HostContext::from_supervisor_keys(&keys);
    assert_eq!(h.supervisor_port, 1234);
    assert_eq!(h.device_type, "raspberrypi5");
    assert_eq!(h.engine_socket, "/var/run/docker.sock");
}

#[test]
fn identity_labels_are_reserved() {
    for key in RESERVED {
        let (_, p) = read(&labels(&[(key, "x")]));
        assert_eq!(p.len(), 1, "{key}");
        assert!(p[0].1.contains("reserved"));
    }
    assert!(RESERVED.contains(&crate::plan::LABEL_DIGEST));
    assert!(RESERVED.contains(&crate::plan::LABEL_APP));
}

#[test]
fn unread_lists_prefixed_labels_nothing_reads() {
    let l = labels(&[
        ("io.balena.features.dbus", "1"),
        ("io.balena.update.strategy", "hand-over"),
        ("io.resin.update.handover-timeout", "5"),
        ("io.fleet.supervised", "1"),
        ("io.balena.update.stratgy", "hand-over"),
        ("io.resin.foo", "x"),
        ("my.label", "x"),
    ]);
    assert_eq!(unread(&l), ["io.balena.update.stratgy", "io.resin.foo"]);
}

#[test]
fn strategy_names_round_trip() {
    for s in [
        UpdateStrategy::DownloadThenKill,
        UpdateStrategy::KillThenDownload,
        UpdateStrategy::DeleteThenDownload,
        UpdateStrategy::HandOver,
    ] {
        assert_eq!(UpdateStrategy::from_name(s.name()), Some(s));
    }
}

#[test]
fn balena_legacy_feature_names() {
    // balena-cli's default composition for a Dockerfile-only project.
    let (l, p) = read(&labels(&[
        ("io.resin.features.resin-api", "1"),
        ("io.resin.features.resin-socket", "1"),
    ]));
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        l.features,
        BTreeSet::from([Feature::BalenaApi, Feature::BalenaSocket])
    );
}
