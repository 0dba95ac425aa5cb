use super::*;
use proptest::prelude::*;

fn problems(yaml: &str) -> Vec<Problem> {
    match parse(yaml) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.problems,
    }
}

/// A project file read with no variables set.
fn check_project_novars(text: &str) -> Checked {
    check_project(text, &|_| None)
}

fn has(problems: &[Problem], path: &str, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.path == path && p.message.contains(needle))
}

const FULL: &str = r#"
version: '2.1'
volumes:
  data:
  cache: {driver: local}
networks:
  backend:
    driver: bridge
services:
  web:
    image: registry.example/web:1
    command: nginx -g 'daemon off;'
    entrypoint: ["/entry.sh", "--x"]
    environment:
      A: "1"
      B: 2
      C:
    labels:
      - io.balena.features.dbus=1
      - my.label=x
    depends_on: [db]
    restart: unless-stopped
    networks:
      backend:
        aliases: [www]
        ipv4_address: 172.20.0.5
    ports: ["8080:80", "127.0.0.1:53:53/udp"]
    expose: ["9000"]
    volumes:
      - data:/var/www
      - cache:/cache:ro
      - type: volume
        source: data
        target: /srv
        read_only: true
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    devices: ["/dev/ttyUSB0:/dev/ttyUSB0:rw", "/dev/i2c-1"]
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    tmpfs: /run
    working_dir: /app
    user: "1000:1000"
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost"]
      interval: 30s
      timeout: 10s
      retries: 3
      start_period: 5s
    mem_limit: 512m
    cpu_shares: 512
    sysctls: {net.core.somaxconn: 1024}
    dns: 8.8.8.8
    extra_hosts: ["somehost:10.0.0.1"]
    hostname: webhost
    read_only: true
    security_opt: ["no-new-privileges"]
    group_add: [dialout, 20]
    init: true
  db:
    image: postgres:16
    privileged: true
    network_mode: host
    ulimits:
      core: -1
"#;

#[test]
fn every_supported_key_parses() {
    let c = parse(FULL).unwrap();
    let web = &c.services["web"];
    assert_eq!(web.image, "registry.example/web:1");
    assert_eq!(
        web.command.as_deref().unwrap(),
        ["nginx", "-g", "daemon off;"]
    );
    assert_eq!(web.entrypoint.as_deref().unwrap(), ["/entry.sh", "--x"]);
    assert_eq!(web.environment["B"], "2");
    assert_eq!(web.environment["C"], "");
    assert_eq!(web.labels["my.label"], "x");
    assert_eq!(web.depends_on, ["db"]);
    assert_eq!(web.restart, RestartPolicy::UnlessStopped);
    assert_eq!(web.network_mode, NetworkMode::Bridge);
    assert_eq!(web.networks.keys().collect::<Vec<_>>(), ["backend"]);
    assert_eq!(web.networks["backend"].aliases, ["www"]);
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.ports[1].protocol, Protocol::Udp);
    assert_eq!(web.expose[0].port, 9000);
    assert_eq!(web.volumes.len(), 3);
    assert!(web.volumes[1].read_only && web.volumes[2].read_only);
    assert_eq!(web.volumes[2].target, "/srv");
    assert!(!web.privileged);
    assert_eq!(web.cap_add, ["NET_ADMIN"]);
    assert_eq!(web.cap_drop, ["MKNOD"]);
    assert_eq!(web.devices[0].permissions, "rw");
    assert_eq!(web.devices[1].container, "/dev/i2c-1");
    assert_eq!(
        web.ulimits["nofile"],
        Ulimit {
            soft: 1024,
            hard: 2048
        }
    );
    assert_eq!(
        web.ulimits["nproc"],
        Ulimit {
            soft: 512,
            hard: 512
        }
    );
    assert_eq!(web.ulimits["core"], Ulimit { soft: 0, hard: 0 });
    assert_eq!(web.tmpfs, ["/run"]);
    assert_eq!(web.working_dir.as_deref(), Some("/app"));
    assert_eq!(web.user.as_deref(), Some("1000:1000"));
    assert_eq!(web.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(web.stop_grace_period_ms, Some(90_000));
    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test[0], "CMD");
    assert_eq!(
        (
            hc.interval_ms,
            hc.timeout_ms,
            hc.retries,
            hc.start_period_ms
        ),
        (Some(30_000), Some(10_000), Some(3), Some(5_000))
    );
    assert_eq!(web.mem_limit, Some(512 << 20));
    assert_eq!(web.cpu_shares, Some(512));
    assert_eq!(web.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(web.dns, ["8.8.8.8"]);
    assert_eq!(web.extra_hosts, ["somehost:10.0.0.1"]);
    assert_eq!(web.hostname.as_deref(), Some("webhost"));
    assert!(web.read_only);
    assert_eq!(web.security_opt, ["no-new-privileges"]);
    assert_eq!(web.group_add, ["dialout", "20"]);
    assert_eq!(web.init, Some(true));

    let db = &c.services["db"];
    assert!(db.privileged);
    assert_eq!(db.network_mode, NetworkMode::Host);
    assert!(db.networks.is_empty());
    assert_eq!(db.ulimits["core"], Ulimit { soft: -1, hard: -1 });
    assert_eq!(c.volumes.iter().collect::<Vec<_>>(), ["cache", "data"]);
    assert!(c.networks.contains("backend") && c.networks.contains(DEFAULT_NETWORK));
}

#[test]
fn defaults_that_matter() {
    let c = parse("services:\n  a:\n    image: busybox\n").unwrap();
    let a = &c.services["a"];
    assert_eq!(a.restart, RestartPolicy::Always);
    assert_eq!(a.ulimits["core"], Ulimit { soft: 0, hard: 0 });
    assert!(!a.privileged);
    assert_eq!(a.network_mode, NetworkMode::Bridge);
    assert_eq!(a.networks.keys().collect::<Vec<_>>(), [DEFAULT_NETWORK]);
    assert_eq!(a.command, None);
}

#[test]
fn bind_mount_refused_naming_service_and_path() {
    for (entry, host) in [
        ("./data:/data", "./data"),
        ("/var/lib/x:/x", "/var/lib/x"),
        ("~/x:/x:ro", "~/x"),
        ("{type: bind, source: /etc, target: /etc}", "/etc"),
        ("{type: volume, source: /etc, target: /etc}", "/etc"),
    ] {
        let yaml = format!("services:\n  web:\n    image: x\n    volumes:\n      - {entry}\n");
        let p = problems(&yaml);
        assert_eq!(p.len(), 1, "{entry}: {p:?}");
        assert_eq!(p[0].path, "services.web.volumes[0]");
        assert!(p[0].message.contains("service `web`"), "{}", p[0].message);
        assert!(
            p[0].message.contains(&format!("`{host}`")),
            "{}",
            p[0].message
        );
        assert!(p[0].message.contains("bind mount"), "{}", p[0].message);
    }
}

#[test]
fn anonymous_and_undeclared_volumes_refused() {
    let p = problems("services:\n  web:\n    image: x\n    volumes: [/data, other:/o]\n");
    assert!(has(&p, "services.web.volumes[0]", "anonymous volume"));
    assert!(has(
        &p,
        "services.web.volumes[1]",
        "`other` is not declared"
    ));
}

#[test]
fn legacy_resin_data_needs_no_declaration() {
    let c = parse("services:\n  main:\n    image: x\n    volumes: ['resin-data:/data']\n").unwrap();
    assert!(c.volumes.contains(LEGACY_DATA_VOLUME));
}

#[test]
fn unsupported_keys_refused_naming_key_and_service_all_at_once() {
    let yaml = r#"
version: "2.1"
name: project
x-extension: 1
services:
  web:
    image: x
    build: .
    container_name: w
    volumes_from: [db, "container:abc"]
  db:
    image: y
    links: [web]
    deploy: {}
volumes:
  v: {external: true}
"#;
    let checked = check(yaml);
    let p = &checked.problems;
    assert!(has(
        p,
        "services.web.volumes_from",
        "`container:` is not supported"
    ));
    assert!(has(
        p,
        "services.db.links",
        "service `db`: unsupported key `links` (balena refuses it too)"
    ));
    assert!(has(
        p,
        "services.db.deploy",
        "service `db`: unsupported key `deploy`"
    ));
    assert!(has(
        p,
        "volumes.v.external",
        "external volumes are not supported"
    ));
    assert_eq!(p.len(), 4, "{p:?}");
    // Accepted by balena, not acted on here: warnings; `x-` extensions are silent.
    let w = &checked.ignored;
    assert!(has(w, "services.web.build", "for the builder"), "{w:?}");
    assert!(has(w, "services.web.container_name", "dropped"), "{w:?}");
    assert!(has(w, "name", "dropped"), "{w:?}");
    assert_eq!(w.len(), 3, "{w:?}");
    let msg = parse(yaml).unwrap_err().to_string();
    assert!(
        msg.starts_with("compose file invalid (4 problems)"),
        "{msg}"
    );
}

#[test]
fn type_and_value_errors_have_paths() {
    let yaml = r#"
version: "3"
services:
  a:
    image: x
    privileged: "yes"
    restart: sometimes
    network_mode: "container:b"
    ports: ["99999"]
    devices: ["dev/x"]
    ulimits: {nofile: {soft: 10, hard: 5}}
    stop_grace_period: forever
    mem_limit: lots
    depends_on: [ghost, a]
    labels: {io.balena.update.strategy: sometimes, io.fleet.features.nope: "1"}
  b: {}
  "bad name": {image: x}
"#;
    let p = problems(yaml);
    for (path, needle) in [
        ("services.a.privileged", "expected true or false"),
        ("services.a.network_mode", "container:b"),
        ("services.a.ports[0]", "99999"),
        ("services.a.devices[0]", "absolute"),
        ("services.a.ulimits.nofile", "soft limit"),
        ("services.a.stop_grace_period", "forever"),
        ("services.a.mem_limit", "lots"),
        ("services.a.depends_on[0]", "unknown service `ghost`"),
        ("services.a.depends_on[1]", "depends on itself"),
        ("services.b.image", "missing `image`"),
        ("services.bad name", "not valid"),
    ] {
        assert!(has(&p, path, needle), "{path} / {needle}: {p:?}");
    }
}

#[test]
fn host_network_with_networks_refused() {
    let p = problems(
        "services:\n  a:\n    image: x\n    network_mode: host\n    networks: [default]\n",
    );
    assert!(has(&p, "services.a.networks", "network_mode host"));
}

#[test]
fn undeclared_network_refused() {
    let p = problems("services:\n  a:\n    image: x\n    networks: [front]\n");
    assert!(has(&p, "services.a.networks[0]", "`front` is not declared"));
}

#[test]
fn depends_on_cycle_refused() {
    let yaml = "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n  c: {image: x, depends_on: [a]}\n";
    let p = problems(yaml);
    assert!(has(&p, "services", "cycle through a, b, c"), "{p:?}");
}

#[test]
fn start_order_follows_depends_on() {
    let yaml = "services:\n  web: {image: x, depends_on: [api]}\n  api: {image: x, depends_on: {db: {condition: service_healthy}}}\n  db: {image: x}\n";
    let c = parse(yaml).unwrap();
    assert_eq!(start_order(&c.services).unwrap(), ["db", "api", "web"]);
}

#[test]
fn syntax_errors_and_duplicates_reported() {
    assert!(problems("services: [").iter().any(|p| p.path == "(file)"));
    let dup = problems("services:\n  a: {image: x}\n  a: {image: y}\n");
    assert!(dup[0].message.contains("duplicate"), "{dup:?}");
    assert!(has(&problems("[]"), "(top level)", "expected a mapping"));
    assert!(has(&problems("version: '2'\n"), "services", "missing"));
}

#[test]
fn merge_keys_apply() {
    let yaml = "x-base: &base\n  image: busybox\n  restart: 'no'\nservices:\n  a:\n    <<: *base\n";
    // The x-base extension is for the file's author; the merged service is parsed.
    let c = parse(yaml).unwrap();
    assert_eq!(c.services["a"].image, "busybox");
    assert_eq!(c.services["a"].restart, RestartPolicy::No);
}

#[test]
fn json_form_equals_yaml_form() {
    let json = serde_json::json!({
        "version": "2.1",
        "services": {"a": {"image": "x", "environment": {"K": 1}, "ulimits": {"core": 5}}},
    });
    let from_json = from_json(&json).unwrap();
    let from_yaml = parse("version: '2.1'\nservices:\n  a:\n    image: x\n    environment: {K: 1}\n    ulimits: {core: 5}\n").unwrap();
    assert_eq!(from_json, from_yaml);
    assert_eq!(from_json.services["a"].ulimits["core"].soft, 5);
}

#[test]
fn single_image_release() {
    let c = single_image("app:1");
    let main = &c.services[SINGLE_IMAGE_SERVICE];
    assert!(main.privileged);
    assert_eq!(main.network_mode, NetworkMode::Host);
    assert_eq!(main.volumes[0].volume, "resin-data");
    assert_eq!(main.volumes[0].target, "/data");
    for f in [
        "kernel-modules",
        "firmware",
        "dbus",
        "supervisor-api",
        "resin-api",
    ] {
        assert_eq!(main.labels[&format!("io.resin.features.{f}")], "1");
    }
    assert!(main.tty);
    assert_eq!(main.restart, RestartPolicy::Always);
    assert_eq!(main.ulimits["core"].hard, 0);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in ".{0,200}") {
        let _ = parse(&s);
    }

    #[test]
    fn every_unknown_service_key_is_named(key in "[a-z_]{1,12}") {
        prop_assume!(!KNOWN.contains(&key.as_str()));
        let yaml = format!("services:\n  svc:\n    image: x\n    {key}: 1\n");
        let checked = check(&yaml);
        let path = format!("services.svc.{key}");
        // Refused when balena refuses it, else dropped with a warning: named either way.
        let (list, wanted) = if super::parse::BALENA_REFUSED_SERVICE_KEYS.contains(&key.as_str()) {
            (&checked.problems, format!("unsupported key `{key}`"))
        } else {
            (&checked.ignored, format!("key `{key}`"))
        };
        let found = list.iter().any(|p| p.path == path
            && p.message.contains(&wanted)
            && p.message.contains("service `svc`"));
        prop_assert!(found, "{:?}", checked);
    }
}

const KNOWN: &[&str] = &[
    "build",
    "image",
    "command",
    "entrypoint",
    "environment",
    "labels",
    "depends_on",
    "restart",
    "network_mode",
    "networks",
    "ports",
    "expose",
    "volumes",
    "privileged",
    "cap_add",
    "cap_drop",
    "devices",
    "ulimits",
    "tmpfs",
    "working_dir",
    "user",
    "stop_signal",
    "stop_grace_period",
    "healthcheck",
    "mem_limit",
    "cpu_shares",
    "sysctls",
    "dns",
    "extra_hosts",
    "hostname",
    "read_only",
    "security_opt",
    "group_add",
    "init",
    "tty",
    "cgroup_parent",
    "cpu_quota",
    "cpuset",
    "dns_opt",
    "dns_search",
    "domainname",
    "ipc",
    "mac_address",
    "mem_reservation",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "shm_size",
    "userns_mode",
];

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let key = prop::sample::select(
        KNOWN
            .iter()
            .copied()
            .chain([
                "version",
                "services",
                "volumes",
                "networks",
                "soft",
                "hard",
                "type",
                "source",
                "target",
                "aliases",
                "test",
                "condition",
                "bogus",
            ])
            .collect::<Vec<_>>(),
    );
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        "[a-z0-9:/._ -]{0,12}".prop_map(J::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| J::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    /// Random documents shaped like compose files: never a panic, and a refusal always says
    /// why.
    #[test]
    fn structured_garbage_is_refused_with_reasons(service in arb_json(), top in arb_json()) {
        let mut doc = serde_json::json!({"services": {"svc": service}});
        if let serde_json::Value::Object(extra) = top {
            for (k, v) in extra {
                if k != "services" {
                    doc[k] = v;
                }
            }
        }
        match from_json(&doc) {
            Ok(c) => prop_assert!(c.services["svc"].ulimits.contains_key("core")),
            Err(e) => prop_assert!(!e.problems.is_empty()
                && e.problems.iter().all(|p| !p.path.is_empty() && !p.message.is_empty())),
        }
    }
}

#[test]
fn check_lists_what_is_accepted_but_ignored() {
    let yaml = r#"
services:
  web:
    image: web
    depends_on:
      db: {condition: service_healthy}
    labels:
      io.balena.update.stratgy: hand-over
      io.balena.features.dbus: "1"
  db:
    image: db
"#;
    let checked = check(yaml);
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.compose, Some(parse(yaml).unwrap()));
    let paths: Vec<_> = checked.ignored.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "services.web.depends_on.db.condition",
            "services.web.labels.io.balena.update.stratgy"
        ]
    );
    assert!(checked.ignored[0].message.contains("not waited for"));

    let bad = check("services:\n  web:\n    image: x\n    links: [db]\n");
    assert!(bad.compose.is_none());
    assert!(has(&bad.problems, "services.web.links", "unsupported key"));
    // `build` is the builder's: the image runs, with a warning.
    let built = check("services:\n  web:\n    image: x\n    build: .\n");
    assert!(built.compose.is_some());
    assert!(has(&built.ignored, "services.web.build", "for the builder"));
}

#[test]
fn any_version_read_and_restart_retries() {
    for v in ["2", "2.2", "2.3", "2.4"] {
        parse(&format!("version: '{v}'\nservices:\n  a:\n    image: x\n")).unwrap();
    }
    // balena's builder and device ignore `version`: another one is read, with a warning.
    let c = check("version: '3'\nservices:\n  a:\n    image: x\n");
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert!(
        c.ignored
            .iter()
            .any(|w| w.path == "version" && w.message.contains("`3`"))
    );
    let c = parse("services:\n  a:\n    image: x\n    restart: on-failure:5\n").unwrap();
    assert_eq!(c.services["a"].restart, RestartPolicy::OnFailure);
    assert_eq!(c.services["a"].restart_max_retries, Some(5));
    let p = problems(
        "services:\n  a:\n    image: x\n    restart: on-failure:many\n    oom_score_adj: 2000\n",
    );
    assert!(has(&p, "services.a.restart", "retry count"), "{p:?}");
    assert!(
        has(&p, "services.a.oom_score_adj", "outside -1000..1000"),
        "{p:?}"
    );
}

#[test]
fn builder_nulls_mean_unset() {
    let c = parse("services:\n  a:\n    image: x\n    command: null\n    entrypoint: ~\n").unwrap();
    assert_eq!(c.services["a"].command, None);
    assert_eq!(c.services["a"].entrypoint, None);
}

#[test]
fn namespaces_of_other_containers_and_negative_pids_limit_refused() {
    let p = problems(
        "services:\n  a:\n    image: x\n    pid: container:b\n    ipc: service:c\n    pids_limit: -1\n  b:\n    image: y\n",
    );
    assert!(
        has(&p, "services.a.pid", "`container:b` is not supported"),
        "{p:?}"
    );
    assert!(
        has(
            &p,
            "services.a.ipc",
            "`service:c` does not name another service"
        ),
        "{p:?}"
    );
    assert!(has(&p, "services.a.pids_limit", "negative"), "{p:?}");
    let p = problems(
        "networks:\n  n:\n    ipam:\n      config: [{subnet: 10.1.0.0/16, aux_addresses: {h: 10.1.0.5}}]\nservices:\n  a:\n    image: x\n",
    );
    assert!(
        has(
            &p,
            "networks.n.ipam.config[0].aux_addresses",
            "not supported"
        ),
        "{p:?}"
    );
}

#[test]
fn extra_firmware_feature_mounts_the_app_volume() {
    let c = parse(
        "services:\n  a:\n    image: a\n    labels: {io.balena.features.extra-firmware: '1'}\n  b: {image: b}\n",
    )
    .unwrap();
    let a = &c.services["a"];
    assert_eq!(
        (a.volumes[0].volume.as_str(), a.volumes[0].target.as_str()),
        ("extra-firmware", "/extra-firmware")
    );
    assert!(c.volumes.contains("extra-firmware"));
    assert!(c.services["b"].volumes.is_empty());
}

#[test]
fn long_and_ranged_ports_none_and_service_namespaces_and_feature_binds() {
    let c = parse(
        r#"
services:
  web:
    image: w
    ports:
      - "8000-9000:80"
      - "[::1]:6001:6001"
      - {target: 9090, published: 9090, host_ip: 127.0.0.1, protocol: udp, mode: host, name: p, app_protocol: http}
      - {target: 443}
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - /run/dbus:/host/run/dbus
      - {type: bind, source: /lib/firmware, target: /lib/firmware}
      - /etc/machine-id:/etc/machine-id:ro
  side:
    image: s
    network_mode: service:web
    ipc: service:web
    pid: service:web
  alone:
    image: a
    network_mode: none
"#,
    )
    .unwrap();
    let web = &c.services["web"];
    assert_eq!(web.ports.len(), 4, "{:?}", web.ports);
    assert_eq!(
        (
            web.ports[0].host_port,
            web.ports[0].host_port_end,
            web.ports[0].container_port
        ),
        (Some(8000), Some(9000), 80)
    );
    assert_eq!(web.ports[2].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(web.ports[2].protocol, Protocol::Udp);
    assert_eq!(web.ports[3].host_port, None);
    assert!(web.volumes.is_empty(), "binds become features, not mounts");
    for f in ["balena-socket", "dbus", "firmware", "journal-logs"] {
        assert_eq!(web.labels[&format!("io.balena.features.{f}")], "1", "{f}");
    }
    let side = &c.services["side"];
    assert_eq!(side.network_mode, NetworkMode::Service);
    assert_eq!(side.network_mode_service.as_deref(), Some("web"));
    assert!(side.networks.is_empty());
    assert_eq!(
        side.depends_on,
        ["web"],
        "started after the namespace it joins"
    );
    assert_eq!(c.services["alone"].network_mode, NetworkMode::None);
    assert_eq!(
        start_order(&c.services).unwrap().last().map(String::as_str),
        Some("side")
    );
    let p = problems("services:\n  a:\n    image: x\n    network_mode: service:ghost\n");
    assert!(
        has(
            &p,
            "services.a.network_mode",
            "does not name another service"
        ),
        "{p:?}"
    );
}

#[test]
fn profiles_security_opt_and_tmpfs_volumes_as_balena_reads_them() {
    let c = check(
        "services:\n  main: {image: a, volumes: [{type: tmpfs, target: /scratch}], security_opt: ['no-new-privileges:true', 'apparmor=unconfined', 'seccomp:unconfined'], depends_on: {job: {condition: service_completed_successfully}}}\n  job: {image: j}\n  debug: {image: b, profiles: [debug, trace-2.0]}\n",
    );
    let compose = c.compose.expect("accepted");
    assert!(
        !compose.services.contains_key("debug"),
        "profiled services do not run"
    );
    assert_eq!(compose.services["main"].tmpfs, ["/scratch"]);
    assert!(
        has(&c.ignored, "services.debug.profiles", "not run"),
        "{:?}",
        c.ignored
    );
    assert!(has(
        &c.ignored,
        "services.main.depends_on.job.condition",
        "not waited for"
    ));
    // Every service profiled: nothing would run, refused (as balena).
    let p = problems("services:\n  main: {image: a, profiles: [test]}\n");
    assert!(has(&p, "services", "no services to run"), "{p:?}");
    let p = problems(
        "services:\n  main: {image: a, profiles: ['invalid profile!']}\n  b: {image: b}\n",
    );
    assert!(has(&p, "services.main.profiles[0]", "not valid"), "{p:?}");
    let p = problems(
        "services:\n  main: {image: a, security_opt: ['label:disable', 'seccomp:profile.json']}\n",
    );
    assert!(
        has(&p, "services.main.security_opt[0]", "balena refuses it too"),
        "{p:?}"
    );
    assert!(
        has(&p, "services.main.security_opt[1]", "not supported"),
        "{p:?}"
    );
}

/// balena's supervisor trims and lower-cases the policy and runs an unknown one as
/// `always` (two of balena's example projects use `restart: never`).
#[test]
fn restart_unknown_policy_is_always_with_a_warning() {
    let c = check("services:\n  a: {image: x, restart: never}\n  b: {image: x, restart: ' No '}\n");
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let compose = c.compose.unwrap();
    assert_eq!(compose.services["a"].restart, RestartPolicy::Always);
    assert_eq!(compose.services["b"].restart, RestartPolicy::No);
    assert!(
        c.ignored
            .iter()
            .any(|w| w.path == "services.a.restart" && w.message.contains("`always` applies")),
        "{:?}",
        c.ignored
    );
}

/// A user's project file (`fleet compose check`) is read as balena's builder reads it; a
/// release is not: there a service needs its image and an empty section is no section.
#[test]
fn project_files_take_build_without_image_and_refuse_empty_sections() {
    let file = "version: '2.1'\nservices:\n  main: {build: .}\n";
    let project = check_project_novars(file);
    assert!(project.problems.is_empty(), "{:?}", project.problems);
    assert!(
        project
            .ignored
            .iter()
            .any(|w| w.path == "services.main.build" && w.message.contains("without `image`")),
        "{:?}",
        project.ignored
    );
    assert!(has(
        &check(file).problems,
        "services.main.image",
        "missing `image`"
    ));

    // balena's builder removes a volume's `name`: unused, as in a release.
    let named = "services:\n  main: {image: x}\nvolumes:\n  v: {name: custom}\n";
    let project = check_project_novars(named);
    assert!(project.problems.is_empty(), "{:?}", project.problems);
    assert!(project.ignored.iter().any(|w| w.path == "volumes.v.name"));
    assert!(check(named).problems.is_empty());

    let empty = "services:\n  main: {image: x}\nvolumes:\n";
    assert!(has(
        &check_project_novars(empty).problems,
        "volumes",
        "is empty"
    ));
    assert!(check(empty).problems.is_empty());
}

/// balena's builder refuses these in a project file; a release from a server keeps the
/// device's reading (a warning for `service_healthy`, `ipc: service:` run).
#[test]
fn project_files_refused_where_balenas_builder_refuses() {
    let cases = [
        (
            "  main: {image: x, build: {context: ., secrets: [s]}}\n",
            "services.main.build.secrets",
        ),
        (
            "  main: {image: x, build: {context: git@h:r.git}}\n",
            "services.main.build.context",
        ),
        (
            "  main: {image: x, build: r.git}\n",
            "services.main.build.context",
        ),
        (
            "  main: {image: x, ipc: 'service:db'}\n  db: {image: x}\n",
            "services.main.ipc",
        ),
        (
            "  main: {image: x, depends_on: {db: {condition: service_completed_successfully}}}\n  db: {image: x}\n",
            "services.main.depends_on.db.condition",
        ),
        (
            "  main: {image: x, depends_on: {db: {condition: service_started, required: false}}}\n  db: {image: x}\n",
            "services.main.depends_on.db.required",
        ),
    ];
    for (services, path) in cases {
        let file = format!("services:\n{services}");
        let project = check_project_novars(&file);
        assert!(
            project.problems.iter().any(|p| p.path == path),
            "{file}: {:?}",
            project.problems
        );
        if !path.contains(".build.") {
            assert!(
                check(&file).problems.is_empty(),
                "{file}: {:?}",
                check(&file).problems
            );
        }
    }
    // What the builder turns into its short form is taken.
    let started = "services:\n  main: {image: x, depends_on: {db: {condition: service_started, required: true, restart: true}}}\n  db: {image: x}\n";
    assert!(check_project_novars(started).problems.is_empty());
    // tmpfs options have no short form: refused in both readings, not dropped.
    let tmpfs = "services:\n  main:\n    image: x\n    volumes: [{type: tmpfs, target: /t, tmpfs: {size: 100m}}]\n";
    assert!(has(
        &check(tmpfs).problems,
        "services.main.volumes[0]",
        "tmpfs options"
    ));
    // Any compose version: read, with a warning.
    let v3 = "version: '3.8'\nservices:\n  main: {image: x}\n";
    let project = check_project_novars(v3);
    assert!(project.problems.is_empty() && project.ignored.iter().any(|w| w.path == "version"));
}
