use std::path::Path;

use super::*;
use fleet_release::target_state;

const APP: &str = "app1";

fn target_of(compose: &str) -> TargetState {
    let doc = serde_json::json!({
        "dev": { "apps": { APP: { "id": 7, "name": "a", "releases": {
            "r1": { "id": 1, "composition": compose } } } } }
    });
    target_state::parse(doc.to_string().as_bytes()).unwrap()
}

fn request(compose: &str) -> CreateRequest {
    let t = target_of(compose);
    let configs = plan::desired_containers(&t, &HostContext::default());
    create_request(&configs[0], Path::new("/run/locks"))
}

#[test]
fn tarball_names() {
    assert_eq!(
        image_tarball_name("registry.example/app:5521"),
        "registry.example_app_5521.tar"
    );
}

#[test]
fn lock_dir_moves_to_the_lock_root_and_volumes_are_named() {
    let r = request(
        "volumes: {data: {}}\nservices:\n  web:\n    image: x\n    volumes: ['data:/data:ro']\n",
    );
    let binds = &r.body.host_config.binds;
    assert!(
        binds.contains(&"/run/locks/app1:/tmp/balena".to_string()),
        "{binds:?}"
    );
    assert!(
        binds.contains(&"/run/locks/app1:/tmp/resin".to_string()),
        "{binds:?}"
    );
    assert!(
        binds.contains(&"app1_data:/data:ro".to_string()),
        "{binds:?}"
    );
    assert_eq!(r.body.host_config.network_mode, "app1_default");
    assert_eq!(r.body.host_config.restart_policy.name, "always");
    let core = &r.body.host_config.ulimits;
    assert_eq!((core[0].name.as_str(), core[0].hard), ("core", 0));
    let endpoints = &r.body.networking_config.as_ref().unwrap().endpoints_config;
    assert_eq!(endpoints["app1_default"].aliases, ["web"]);
    assert_eq!(r.body.labels["io.fleet.app-id"], "7");
}

#[test]
fn every_host_setting_reaches_the_body() {
    let r = request(concat!(
        "networks: {front: {}, back: {}}\n",
        "services:\n  web:\n    image: x\n    command: [a, b]\n    entrypoint: /e\n",
        "    ports: ['127.0.0.1:80:8080', '53/udp']\n    expose: [9000]\n",
        "    networks: {front: {aliases: [www]}, back: {}}\n",
        "    privileged: true\n    cap_add: [NET_ADMIN]\n    cap_drop: [MKNOD]\n",
        "    devices: ['/dev/null:/dev/n:r']\n    ulimits: {nofile: {soft: 10, hard: 20}}\n",
        "    tmpfs: ['/run:size=1m']\n    working_dir: /w\n    user: '1:2'\n",
        "    stop_signal: SIGINT\n    stop_grace_period: 2500ms\n",
        "    healthcheck: {test: ['CMD', 'true'], interval: 1s, retries: 2}\n",
        "    mem_limit: 64m\n    cpu_shares: 512\n    sysctls: {net.core.somaxconn: '1024'}\n",
        "    dns: [1.1.1.1]\n    extra_hosts: ['h:10.0.0.1']\n    hostname: box\n",
        "    read_only: true\n    security_opt: ['no-new-privileges']\n    group_add: [dialout]\n",
        "    init: true\n    restart: on-failure\n",
    ));
    let b = &r.body;
    let h = &b.host_config;
    assert_eq!(
        b.cmd.as_deref(),
        Some(&["a".to_string(), "b".to_string()][..])
    );
    assert_eq!(b.entrypoint.as_deref(), Some(&["/e".to_string()][..]));
    assert_eq!(h.port_bindings["8080/tcp"][0].host_port, "80");
    assert_eq!(h.port_bindings["8080/tcp"][0].host_ip, "127.0.0.1");
    assert_eq!(h.port_bindings["53/udp"][0].host_port, "");
    assert!(b.exposed_ports.contains_key("9000/tcp"));
    assert!(h.privileged && h.readonly_rootfs);
    assert_eq!(
        (h.cap_add[0].as_str(), h.cap_drop[0].as_str()),
        ("NET_ADMIN", "MKNOD")
    );
    assert_eq!(h.devices[0].path_in_container, "/dev/n");
    assert!(
        h.ulimits
            .iter()
            .any(|u| u.name == "nofile" && u.soft == 10 && u.hard == 20)
    );
    assert_eq!(h.tmpfs["/run"], "size=1m");
    assert_eq!(b.working_dir.as_deref(), Some("/w"));
    assert_eq!(b.user.as_deref(), Some("1:2"));
    assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(b.stop_timeout, Some(3));
    let hc = b.healthcheck.as_ref().unwrap();
    assert_eq!((hc.interval, hc.retries), (1_000_000_000, 2));
    assert_eq!(h.memory, Some(64 * 1024 * 1024));
    assert_eq!(h.cpu_shares, Some(512));
    assert_eq!(h.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(
        (h.dns[0].as_str(), h.extra_hosts[0].as_str()),
        ("1.1.1.1", "h:10.0.0.1")
    );
    assert_eq!(b.hostname.as_deref(), Some("box"));
    assert_eq!(h.security_opt[0], "no-new-privileges");
    assert_eq!(h.group_add[0], "dialout");
    assert_eq!(h.init, Some(true));
    assert_eq!(h.restart_policy.name, "on-failure");
    // One network at create, the other connected afterwards, both with the service alias.
    assert_eq!(h.network_mode, "app1_back");
    assert_eq!(r.extra_networks.len(), 1);
    assert_eq!(r.extra_networks[0].0, "app1_front");
    assert_eq!(r.extra_networks[0].1.aliases, ["web", "www"]);
}

#[test]
fn host_networking_has_no_endpoints() {
    let r = request("services:\n  web:\n    image: x\n    network_mode: host\n");
    assert_eq!(r.body.host_config.network_mode, "host");
    assert!(r.body.networking_config.is_none() && r.extra_networks.is_empty());
}

#[test]
fn engine_statuses() {
    assert_eq!(engine_status("created"), ContainerStatus::Created);
    assert_eq!(engine_status("restarting"), ContainerStatus::Running);
    assert_eq!(engine_status("exited"), ContainerStatus::Exited);
    assert_eq!(engine_status("dead"), ContainerStatus::Exited);
}

#[test]
fn compose_2_4_keys_reach_the_create_body() {
    let r = request(concat!(
        "version: '2.4'\n",
        "services:\n  web:\n    image: x\n",
        "    tty: true\n    cgroup_parent: fleet.slice\n    cpu_quota: 50000\n",
        "    cpuset: '0-1'\n    dns_opt: [ndots:2]\n    dns_search: [lan]\n",
        "    domainname: example.lan\n    ipc: shareable\n    mac_address: 02:42:ac:11:00:02\n",
        "    mem_reservation: 64m\n    oom_score_adj: -500\n    pid: host\n",
        "    pids_limit: 100\n    shm_size: 128m\n    userns_mode: host\n",
        "    restart: on-failure:3\n",
    ));
    let body = serde_json::to_value(&r.body).unwrap();
    let hc = &body["HostConfig"];
    assert_eq!(body["Tty"], true);
    assert_eq!(body["Domainname"], "example.lan");
    assert_eq!(body["MacAddress"], "02:42:ac:11:00:02");
    assert_eq!(hc["CgroupParent"], "fleet.slice");
    assert_eq!(hc["CpuQuota"], 50000);
    assert_eq!(hc["CpusetCpus"], "0-1");
    assert_eq!(hc["DnsOptions"], serde_json::json!(["ndots:2"]));
    assert_eq!(hc["DnsSearch"], serde_json::json!(["lan"]));
    assert_eq!(hc["IpcMode"], "shareable");
    assert_eq!(hc["MemoryReservation"], 64 * 1024 * 1024);
    assert_eq!(hc["OomScoreAdj"], -500);
    assert_eq!(hc["PidMode"], "host");
    assert_eq!(hc["PidsLimit"], 100);
    assert_eq!(hc["ShmSize"], 128 * 1024 * 1024);
    assert_eq!(hc["UsernsMode"], "host");
    assert_eq!(
        hc["RestartPolicy"],
        serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 3})
    );
}

#[test]
fn network_options_reach_the_create_body() {
    let options = fleet_release::compose::NetworkOptions {
        internal: true,
        labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
        driver_opts: BTreeMap::from([("com.docker.network.bridge.name".into(), "br0".into())]),
        ipam: vec![fleet_release::compose::IpamPool {
            subnet: Some("10.9.0.0/16".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let owned = fleet_release::plan::Owned::new(APP, "back");
    let body = serde_json::to_value(network_spec(&owned, &options)).unwrap();
    assert_eq!(body["Internal"], true);
    assert_eq!(body["Labels"]["k"], "v");
    assert_eq!(body["Labels"]["io.fleet.app-uuid"], APP);
    assert_eq!(body["Options"]["com.docker.network.bridge.name"], "br0");
    assert_eq!(body["IPAM"]["Config"][0]["Subnet"], "10.9.0.0/16");
}

#[test]
fn gpu_feature_requests_one_gpu_and_extra_firmware_mounts_its_volume() {
    let r = request(
        "services:\n  web:\n    image: x\n    labels: {io.balena.features.gpu: '1', io.balena.features.extra-firmware: '1'}\n",
    );
    let body = serde_json::to_value(&r.body).unwrap();
    assert_eq!(
        body["HostConfig"]["DeviceRequests"],
        serde_json::json!([{"Driver": "", "Count": 1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}])
    );
    let binds = &r.body.host_config.binds;
    assert!(
        binds.contains(&"app1_extra-firmware:/extra-firmware".to_string()),
        "{binds:?}"
    );
    let plain = serde_json::to_value(&request("services:\n  web: {image: x}\n").body).unwrap();
    assert!(plain["HostConfig"].get("DeviceRequests").is_none());
}

#[test]
fn service_namespaces_join_the_other_services_container_and_none_has_no_network() {
    let t = target_of(
        "services:\n  web: {image: w}\n  side: {image: s, network_mode: 'service:web', ipc: 'service:web'}\n  alone: {image: a, network_mode: none}\n",
    );
    let configs = plan::desired_containers(&t, &HostContext::default());
    let body = |service: &str| {
        let c = configs.iter().find(|c| c.service == service).unwrap();
        serde_json::to_value(&create_request(c, Path::new("/run/locks")).body).unwrap()
    };
    assert_eq!(
        body("side")["HostConfig"]["NetworkMode"],
        "container:web_0_1_r1"
    );
    assert_eq!(
        body("side")["HostConfig"]["IpcMode"],
        "container:web_0_1_r1"
    );
    assert!(
        body("side")
            .get("NetworkingConfig")
            .is_none_or(|n| n.is_null())
    );
    assert_eq!(body("alone")["HostConfig"]["NetworkMode"], "none");
}
