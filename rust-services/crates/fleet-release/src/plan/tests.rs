use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::json;

use super::simulate::apply_all;
use super::*;
use crate::labels::HostContext;
use crate::target_state::{self, TargetState};

const APP: &str = "app1";

fn target_of(apps: &[(&str, Option<(&str, &str)>)]) -> TargetState {
    let mut doc = serde_json::Map::new();
    for (i, (app, release)) in apps.iter().enumerate() {
        let releases = match release {
            Some((uuid, yaml)) => json!({ *uuid: {"id": 1, "composition": yaml} }),
            None => json!({}),
        };
        doc.insert(
            app.to_string(),
            json!({"id": i + 1, "name": app, "releases": releases}),
        );
    }
    let text = json!({"dev": {"apps": doc}}).to_string();
    match target_state::parse(text.as_bytes()) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn one(release: &str, yaml: &str) -> TargetState {
    target_of(&[(APP, Some((release, yaml)))])
}

fn host() -> HostContext {
    HostContext::default()
}

fn plan_for(current: &CurrentState, target: &TargetState) -> Plan {
    plan(current, target, &host(), PlanOptions::default())
}

/// Plans and applies until converged (at most a few rounds), returning the state.
fn converge(mut state: CurrentState, target: &TargetState, options: PlanOptions) -> CurrentState {
    let p = plan(&state, target, &host(), options);
    apply_all(&mut state, &p.steps, target).unwrap();
    state
}

/// A compact view of steps: `fetch img`, `stop svc`, `create svc`, …
fn describe(steps: &[Step], state: &CurrentState) -> Vec<String> {
    let service_of = |name: &str| {
        state
            .containers
            .iter()
            .find(|c| c.name == name)
            .map(|c| format!("{}@{}", c.service, c.release))
            .unwrap_or_else(|| name.split('_').next().unwrap_or(name).to_string() + "@new")
    };
    steps
        .iter()
        .map(|s| match s {
            Step::FetchImage { image } => format!("fetch {image}"),
            Step::RemoveImage { image } => format!("rmi {image}"),
            Step::CreateNetwork { network, .. } => format!("create-network {}", network.name),
            Step::RemoveNetwork { network } => format!("remove-network {}", network.name),
            Step::CreateVolume { volume, .. } => format!("create-volume {}", volume.name),
            Step::Stop { container } => format!("stop {}", service_of(container)),
            Step::Remove { container } => format!("remove {}", service_of(container)),
            Step::Create { config } => format!("create {}@{}", config.service, config.release),
            Step::Start { container } => format!("start {}", service_of(container)),
            Step::Rename { container, to } => format!(
                "rename {} to {}",
                service_of(container),
                to.split('_').next().unwrap_or(to)
            ),
            Step::HandoverKill {
                container,
                timeout_ms,
            } => format!("handover-kill {} after {timeout_ms}", service_of(container)),
        })
        .collect()
}

const THREE: &str = "
services:
  web: {image: web:1, depends_on: [api]}
  api: {image: api:1, depends_on: [db]}
  db:  {image: db:1, volumes: ['data:/var/lib/db']}
volumes:
  data:
";

#[test]
fn fresh_install_three_services_in_depends_on_order() {
    let t = one("r1", THREE);
    let empty = CurrentState::default();
    let p = plan_for(&empty, &t);
    assert_eq!(
        describe(&p.steps, &empty),
        [
            "create-network default",
            "create-volume data",
            "fetch db:1",
            "fetch api:1",
            "fetch web:1",
            "create db@r1",
            "start db@new",
            "create api@r1",
            "start api@new",
            "create web@r1",
            "start web@new",
        ]
    );
    let state = converge(empty, &t, PlanOptions::default());
    assert_eq!(state.containers.len(), 3);
    assert!(
        state
            .containers
            .iter()
            .all(|c| c.status == ContainerStatus::Running && c.release == "r1")
    );
}

#[test]
fn at_target_no_steps() {
    let t = one("r1", THREE);
    let state = converge(CurrentState::default(), &t, PlanOptions::default());
    let p = plan_for(&state, &t);
    assert!(p.is_converged(), "{p:?}");
}

fn strategy_case(strategy: &str, extra_labels: &str) -> Vec<String> {
    let yaml = |tag: &str| {
        format!(
            "services:\n  s:\n    image: s:{tag}\n    labels:\n      io.balena.update.strategy: {strategy}\n{extra_labels}"
        )
    };
    let t1 = one("r1", &yaml("1"));
    let state = converge(CurrentState::default(), &t1, PlanOptions::default());
    let t2 = one("r2", &yaml("2"));
    let p = plan_for(&state, &t2);
    let mut after = state.clone();
    apply_all(&mut after, &p.steps, &t2).unwrap();
    assert!(plan_for(&after, &t2).is_converged());
    assert_eq!(after.containers.len(), 1);
    assert_eq!(after.containers[0].image, "s:2");
    describe(&p.steps, &state)
}

#[test]
fn download_then_kill_order() {
    assert_eq!(
        strategy_case("download-then-kill", ""),
        [
            "fetch s:2",
            "stop s@r1",
            "remove s@r1",
            "create s@r2",
            "start s@new"
        ]
    );
}

#[test]
fn default_strategy_is_download_then_kill() {
    let yaml = |tag: &str| format!("services:\n  s:\n    image: s:{tag}\n");
    let state = converge(
        CurrentState::default(),
        &one("r1", &yaml("1")),
        PlanOptions::default(),
    );
    let p = plan_for(&state, &one("r2", &yaml("2")));
    assert_eq!(
        describe(&p.steps, &state),
        [
            "fetch s:2",
            "stop s@r1",
            "remove s@r1",
            "create s@r2",
            "start s@new"
        ]
    );
}

#[test]
fn kill_then_download_order() {
    assert_eq!(
        strategy_case("kill-then-download", ""),
        [
            "stop s@r1",
            "remove s@r1",
            "fetch s:2",
            "create s@r2",
            "start s@new"
        ]
    );
}

#[test]
fn delete_then_download_order() {
    assert_eq!(
        strategy_case("delete-then-download", ""),
        [
            "stop s@r1",
            "remove s@r1",
            "rmi s:1",
            "fetch s:2",
            "create s@r2",
            "start s@new"
        ]
    );
}

#[test]
fn hand_over_order_with_timeout() {
    assert_eq!(
        strategy_case("hand-over", ""),
        [
            "fetch s:2",
            "create s@r2",
            "start s@new",
            "handover-kill s@r1 after 60000",
            "remove s@r1"
        ]
    );
    assert_eq!(
        strategy_case(
            "hand-over",
            "      io.balena.update.handover-timeout: '1500'\n"
        )[3],
        "handover-kill s@r1 after 1500"
    );
}

#[test]
fn delete_then_download_keeps_an_image_still_in_use() {
    let yaml = |tag: &str| {
        format!(
            "services:\n  s:\n    image: s:{tag}\n    labels: {{io.balena.update.strategy: delete-then-download}}\n  other:\n    image: s:1\n"
        )
    };
    let (state, _, p) = installed_then(&yaml("1"), "r2", &yaml("2"));
    assert!(
        !describe(&p.steps, &state)
            .iter()
            .any(|s| s.starts_with("rmi"))
    );
}

/// Release `r1` of `yaml1` installed, then the plan to (`rel2`, `yaml2`).
fn installed_then(yaml1: &str, rel2: &str, yaml2: &str) -> (CurrentState, TargetState, Plan) {
    let state = converge(
        CurrentState::default(),
        &one("r1", yaml1),
        PlanOptions::default(),
    );
    let target = one(rel2, yaml2);
    let p = plan_for(&state, &target);
    (state, target, p)
}

fn locked(mut s: CurrentState) -> CurrentState {
    s.locked_apps.insert(APP.to_string());
    s
}

#[test]
fn lock_held_no_kill_then_released_applied() {
    let yaml = |tag: &str| format!("services:\n  s:\n    image: s:{tag}\n  t:\n    image: t:1\n");
    let state = converge(
        CurrentState::default(),
        &one("r1", &yaml("1")),
        PlanOptions::default(),
    );
    let t2 = one("r2", &yaml("2"));

    let held_state = locked(state);
    let p = plan_for(&held_state, &t2);
    // Only the download happens while the lock is held.
    assert_eq!(describe(&p.steps, &held_state), ["fetch s:2"]);
    assert_eq!(p.held.len(), 1);
    assert_eq!(p.held[0].service, "s");
    let mut after = held_state.clone();
    apply_all(&mut after, &p.steps, &t2).unwrap();
    assert!(
        after
            .containers
            .iter()
            .any(|c| c.image == "s:1" && c.status == ContainerStatus::Running)
    );
    // Planning again while held: nothing new to do, still held.
    let again = plan_for(&after, &t2);
    assert!(again.steps.is_empty() && again.held.len() == 1);

    after.locked_apps.clear();
    let p = plan_for(&after, &t2);
    assert_eq!(
        describe(&p.steps, &after),
        [
            "stop s@r1",
            "remove s@r1",
            "create s@r2",
            "start s@new",
            "rename t@r1 to t"
        ]
    );
    apply_all(&mut after, &p.steps, &t2).unwrap();
    assert!(plan_for(&after, &t2).is_converged());
}

#[test]
fn force_overrides_the_lock() {
    let yaml = |tag: &str| format!("services:\n  s:\n    image: s:{tag}\n");
    let state = locked(converge(
        CurrentState::default(),
        &one("r1", &yaml("1")),
        PlanOptions::default(),
    ));
    let t2 = one("r2", &yaml("2"));
    let p = plan(&state, &t2, &host(), PlanOptions { force: true });
    assert!(p.held.is_empty());
    assert_eq!(
        describe(&p.steps, &state),
        [
            "fetch s:2",
            "stop s@r1",
            "remove s@r1",
            "create s@r2",
            "start s@new"
        ]
    );
}

#[test]
fn lock_holds_removal_of_a_dropped_service_and_app() {
    let state = locked(converge(
        CurrentState::default(),
        &one("r1", "services:\n  a: {image: a:1}\n  b: {image: b:1}\n"),
        PlanOptions::default(),
    ));
    let p = plan_for(&state, &one("r2", "services:\n  a: {image: a:1}\n"));
    assert!(p.steps.is_empty(), "{p:?}");
    assert_eq!(p.held[0].service, "b");
    let gone = target_of(&[]);
    let p = plan_for(&state, &gone);
    assert!(p.steps.is_empty(), "{p:?}");
    assert_eq!(p.held.len(), 2);
}

#[test]
fn lock_does_not_stop_a_fresh_service() {
    let state = locked(converge(
        CurrentState::default(),
        &one("r1", "services:\n  a: {image: a:1}\n"),
        PlanOptions::default(),
    ));
    let p = plan_for(
        &state,
        &one("r2", "services:\n  a: {image: a:1}\n  b: {image: b:1}\n"),
    );
    assert_eq!(
        describe(&p.steps, &state),
        [
            "fetch b:1",
            "create b@r2",
            "start b@new",
            "rename a@r1 to a"
        ]
    );
    assert!(p.held.is_empty());
}

#[test]
fn named_volume_kept_across_release_change() {
    let yaml = |tag: &str| {
        format!(
            "services:\n  db:\n    image: db:{tag}\n    volumes: ['data:/data']\nvolumes:\n  data:\n"
        )
    };
    let state = converge(
        CurrentState::default(),
        &one("r1", &yaml("1")),
        PlanOptions::default(),
    );
    let volume = Owned::new(APP, "data");
    assert!(state.volumes.contains(&volume));
    let t2 = one("r2", &yaml("2"));
    let p = plan_for(&state, &t2);
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s, Step::CreateVolume { .. }))
    );
    let created = p
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Create { config } => Some(config.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(created.volumes[0].volume, volume);
    assert_eq!(created.volumes[0].volume.engine_name(), "app1_data");
    // Dropping the volume from the compose, or the whole app, keeps the data.
    let later = converge(
        state,
        &one("r3", "services:\n  db: {image: db:3}\n"),
        PlanOptions::default(),
    );
    let gone = converge(later, &target_of(&[]), PlanOptions::default());
    assert!(gone.volumes.contains(&volume));
    assert!(gone.containers.is_empty() && gone.networks.is_empty());
}

#[test]
fn unchanged_service_not_restarted_on_release_change() {
    let state = converge(
        CurrentState::default(),
        &one("r1", "services:\n  a: {image: a:1}\n  b: {image: b:1}\n"),
        PlanOptions::default(),
    );
    let p = plan_for(
        &state,
        &one("r2", "services:\n  a: {image: a:1}\n  b: {image: b:2}\n"),
    );
    let steps = describe(&p.steps, &state);
    // Only renamed to the new release's balena name, as balena's metadata update does.
    assert!(
        steps
            .iter()
            .all(|s| !s.contains(" a@") || s == "rename a@r1 to a"),
        "{steps:?}"
    );
}

#[test]
fn environment_change_recreates() {
    let state = converge(
        CurrentState::default(),
        &one(
            "r1",
            "services:\n  a: {image: a:1, environment: {K: '1'}}\n",
        ),
        PlanOptions::default(),
    );
    let p = plan_for(
        &state,
        &one(
            "r1",
            "services:\n  a: {image: a:1, environment: {K: '2'}}\n",
        ),
    );
    assert_eq!(
        describe(&p.steps, &state),
        // Same release, same balena name: the new container is `a@r1` by name too.
        ["stop a@r1", "remove a@r1", "create a@r1", "start a@r1"]
    );
}

#[test]
fn exited_and_created_containers() {
    let t = one("r1", "services:\n  a: {image: a:1}\n");
    let mut state = converge(CurrentState::default(), &t, PlanOptions::default());
    state.containers[0].status = ContainerStatus::Exited;
    assert!(
        plan_for(&state, &t).is_converged(),
        "the restart policy owns restarts"
    );
    state.containers[0].status = ContainerStatus::Created;
    assert_eq!(
        describe(&plan_for(&state, &t).steps, &state),
        ["start a@r1"]
    );
}

#[test]
fn a_service_gets_its_own_supervisor_api_key() {
    let yaml = "services:
  a:
    image: a:1
    labels:
      io.balena.features.supervisor-api: '1'
  b:
    image: b:1
    labels:
      io.balena.features.supervisor-api: '1'
  c:
    image: c:1
";
    let t = one("r1", yaml);
    let app_id = t.apps[APP].id;
    let h = HostContext {
        supervisor_api_key: "global".into(),
        service_api_keys: BTreeMap::from([(
            app_id,
            BTreeMap::from([("a".to_string(), "key-a".to_string())]),
        )]),
        ..HostContext::default()
    };
    let all = desired_containers(&t, &h);
    let env = |s: &str| &all.iter().find(|c| c.service == s).unwrap().env;
    for brand in ["FLEET", "BALENA", "RESIN"] {
        let name = format!("{brand}_SUPERVISOR_API_KEY");
        assert_eq!(env("a")[&name], "key-a");
        // No key of its own (the supervisor makes one before each apply): the host's.
        assert_eq!(env("b")[&name], "global");
        // No feature, no key.
        assert!(!env("c").contains_key(&name));
    }
    // Another app's key is not this app's.
    let other = HostContext {
        service_api_keys: BTreeMap::from([(
            app_id + 1,
            BTreeMap::from([("a".to_string(), "key-x".to_string())]),
        )]),
        ..h.clone()
    };
    let all = desired_containers(&t, &other);
    let a = all.iter().find(|c| c.service == "a").unwrap();
    assert_eq!(a.env["BALENA_SUPERVISOR_API_KEY"], "global");
}

#[test]
fn every_feature_label_gives_mounts_and_env() {
    let yaml = "services:
  a:
    image: a:1
    labels:
      io.balena.features.balena-socket: '1'
      io.balena.features.dbus: '1'
      io.resin.features.sysfs: '1'
      io.resin.features.procfs: '1'
      io.fleet.features.kernel-modules: '1'
      io.fleet.features.firmware: '1'
      io.balena.features.journal-logs: '1'
      io.balena.features.supervisor-api: '1'
      io.balena.features.balena-api: '1'
";
    let t = one("r1", yaml);
    let h = HostContext {
        device_api_key: Some("k".into()),
        ..HostContext::default()
    };
    let c = &desired_containers(&t, &h)[0];
    let targets: BTreeSet<&str> = c.binds.iter().map(|b| b.target.as_str()).collect();
    for t in [
        "/var/run/balena-engine.sock",
        "/host/run/dbus",
        "/sys",
        "/proc",
        "/lib/modules",
        "/lib/firmware",
        "/var/log/journal",
        "/run/log/journal",
        "/etc/machine-id",
        "/tmp/balena",
        "/tmp/resin",
    ] {
        assert!(targets.contains(t), "missing {t}: {targets:?}");
    }
    for k in [
        "DOCKER_HOST",
        "DBUS_SYSTEM_BUS_ADDRESS",
        "BALENA_SUPERVISOR_ADDRESS",
        "BALENA_SUPERVISOR_API_KEY",
        "BALENA_API_KEY",
        "BALENA_APP_UUID",
        "BALENA_SERVICE_NAME",
        "BALENA_DEVICE_UUID",
    ] {
        assert!(c.env.contains_key(k), "missing {k}");
    }
    assert_eq!(c.labels[LABEL_APP], APP);
    assert_eq!(c.labels[LABEL_SERVICE], "a");
    assert_eq!(c.labels[LABEL_RELEASE], "r1");
    assert_eq!(c.labels[LABEL_DIGEST], c.digest);
    assert_eq!(c.labels["io.balena.supervised"], "true");
    assert_eq!(c.labels["io.balena.app-uuid"], APP);
    assert_eq!(c.labels["io.balena.service-name"], "a");
    assert!(c.labels.contains_key("io.balena.app-id"));
    assert_eq!(c.spec.ulimits["core"].hard, 0);
}

#[test]
fn balena_service_id_label_from_the_v3_target() {
    let doc = serde_json::json!({"dev": {"apps": {"app1": {"id": "77", "name": "a", "releases": {
        "c0mmit": {"id": 5, "services": {"web": {"id": "31", "image_id": 41, "image": "w:1",
            "environment": {}, "labels": {}}}}}}}}});
    let t = target_state::parse(doc.to_string().as_bytes()).unwrap();
    let c = &desired_containers(&t, &host())[0];
    assert_eq!(c.labels["io.balena.app-id"], "77");
    assert_eq!(c.labels["io.balena.service-id"], "31");
    assert_eq!(c.labels["io.balena.service-name"], "web");
}

#[test]
fn plain_service_gets_only_the_lock_mounts() {
    let c = &desired_containers(&one("r1", "services:\n  a: {image: a:1}\n"), &host())[0];
    let targets: Vec<&str> = c.binds.iter().map(|b| b.target.as_str()).collect();
    assert_eq!(targets, ["/tmp/balena", "/tmp/resin"]);
    assert_eq!(c.binds[0].source, "/tmp/fleet-supervisor/apps/app1");
    assert_eq!(c.networks.keys().collect::<Vec<_>>(), ["app1_default"]);
}

#[test]
fn service_env_overrides_supervisor_env() {
    let c = &desired_containers(
        &one(
            "r1",
            "services:\n  a: {image: a:1, environment: {BALENA_APP_NAME: mine}}\n",
        ),
        &host(),
    )[0];
    assert_eq!(c.env["BALENA_APP_NAME"], "mine");
}

#[test]
fn container_from_labels() {
    let t = one("r1", "services:\n  a: {image: a:1}\n");
    let c = &desired_containers(&t, &host())[0];
    let got = Container::from_labels(
        &c.name,
        "a:1",
        ContainerStatus::Running,
        &c.labels,
        BTreeSet::new(),
    )
    .unwrap();
    assert_eq!(
        (got.app.as_str(), got.service.as_str(), got.release.as_str()),
        (APP, "a", "r1")
    );
    assert_eq!(got.digest, c.digest);
    assert!(
        Container::from_labels(
            "x",
            "i",
            ContainerStatus::Running,
            &BTreeMap::new(),
            BTreeSet::new()
        )
        .is_none()
    );
}

#[test]
fn interrupted_hand_over_resumes() {
    let yaml = |tag: &str| {
        format!(
            "services:\n  s:\n    image: s:{tag}\n    labels: {{io.balena.update.strategy: hand-over}}\n"
        )
    };
    let (state, t2, p) = installed_then(&yaml("1"), "r2", &yaml("2"));
    // Killed after the new container was created, before it started.
    let mut mid = state.clone();
    apply_all(&mut mid, &p.steps[..2], &t2).unwrap();
    assert_eq!(
        describe(&plan_for(&mid, &t2).steps, &mid),
        [
            "start s@r2",
            "handover-kill s@r1 after 60000",
            "remove s@r1"
        ]
    );
}

#[test]
fn hand_over_inside_one_release_removes_the_same_named_container_first() {
    let yaml = |k: &str| {
        format!(
            "services:\n  s:\n    image: s:1\n    environment: {{K: '{k}'}}\n    labels: {{io.balena.update.strategy: hand-over}}\n"
        )
    };
    let (state, t2, p) = installed_then(&yaml("1"), "r1", &yaml("2"));
    assert_eq!(
        describe(&p.steps, &state),
        ["stop s@r1", "remove s@r1", "create s@r1", "start s@r1"]
    );
    let end = converge(state, &t2, PlanOptions::default());
    assert_eq!(end.containers.len(), 1);
}

#[test]
fn a_current_container_under_an_older_name_is_renamed_not_recreated() {
    let t = one("r1", "services:\n  a: {image: a:1}\n");
    let mut state = converge(CurrentState::default(), &t, PlanOptions::default());
    state.containers[0].name = "a_app1_0123456789ab".into();
    let p = plan_for(&state, &t);
    assert_eq!(describe(&p.steps, &state), ["rename a@r1 to a"]);
    let end = converge(state, &t, PlanOptions::default());
    assert_eq!(end.containers[0].name, "a_0_1_r1");
    assert!(plan_for(&end, &t).steps.is_empty());
}

#[test]
fn containers_are_named_as_balena_names_them() {
    let doc = json!({"dev": {"apps": {"a1": {"id": 3, "name": "a", "releases": {"c0ffee": {
        "id": 12,
        "services": {
            "web": {"id": 5, "image_id": "77", "image": "web:1", "composition": {}},
            "db": {"id": 6, "image": "db:1", "composition": {}}
        }
    }}}}}});
    let t = target_state::parse(doc.to_string().as_bytes()).unwrap();
    let names: BTreeSet<String> = desired_containers(&t, &host())
        .into_iter()
        .map(|c| c.name)
        .collect();
    // No image id in the target (hand-written documents): 0 in its place.
    assert_eq!(
        names,
        BTreeSet::from(["web_77_12_c0ffee".to_string(), "db_0_12_c0ffee".to_string()])
    );
    // Two apps with the same release key, id and service (hand-written): the app is added.
    let yaml = "services:\n  s: {image: s:1}\n";
    let t = target_of(&[("a1", Some(("r1", yaml))), ("a2", Some(("r1", yaml)))]);
    let names: BTreeSet<String> = desired_containers(&t, &host())
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

// ---- resumability: a property over random targets and random current states ----

#[derive(Debug, Clone)]
struct GenService {
    image: usize,
    strategy: usize,
    deps: Vec<usize>,
    host_net: bool,
    volume: bool,
    env: u8,
}

#[derive(Debug, Clone)]
struct GenContainer {
    service: usize,
    /// 0 = the target's digest, else an older configuration.
    digest: u8,
    status: u8,
    image: usize,
}

#[derive(Debug, Clone)]
struct GenApp {
    present: bool,
    services: Vec<GenService>,
    containers: Vec<GenContainer>,
    locked: bool,
    has_network: bool,
    has_volume: bool,
}

const IMAGES: [&str; 4] = ["img-a:1", "img-a:2", "img-b:1", "img-c:1"];
const STRATEGIES: [&str; 4] = [
    "download-then-kill",
    "kill-then-download",
    "delete-then-download",
    "hand-over",
];

fn gen_app() -> impl Strategy<Value = GenApp> {
    let service = (
        0..4usize,
        0..4usize,
        prop::collection::vec(0..4usize, 0..3),
        any::<bool>(),
        any::<bool>(),
        0..3u8,
    )
        .prop_map(
            |(image, strategy, deps, host_net, volume, env)| GenService {
                image,
                strategy,
                deps,
                host_net,
                volume,
                env,
            },
        );
    let container =
        (0..5usize, 0..3u8, 0..3u8, 0..4usize).prop_map(|(service, digest, status, image)| {
            GenContainer {
                service,
                digest,
                status,
                image,
            }
        });
    (
        any::<bool>(),
        prop::collection::vec(service, 1..5),
        prop::collection::vec(container, 0..6),
        prop::bool::weighted(0.3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(present, services, containers, locked, has_network, has_volume)| GenApp {
                present,
                services,
                containers,
                locked,
                has_network,
                has_volume,
            },
        )
}

fn compose_yaml(services: &[GenService]) -> String {
    let mut y = String::from("version: '2.1'\nvolumes:\n  data:\nservices:\n");
    for (i, s) in services.iter().enumerate() {
        y += &format!("  s{i}:\n    image: {}\n", IMAGES[s.image]);
        y += &format!(
            "    labels: {{io.balena.update.strategy: {}}}\n",
            STRATEGIES[s.strategy]
        );
        y += &format!("    environment: {{E: '{}'}}\n", s.env);
        // Only earlier services: keeps depends_on acyclic.
        let deps: BTreeSet<usize> = s.deps.iter().copied().filter(|d| *d < i).collect();
        if !deps.is_empty() {
            let names: Vec<String> = deps.iter().map(|d| format!("s{d}")).collect();
            y += &format!("    depends_on: [{}]\n", names.join(", "));
        }
        if s.host_net {
            y += "    network_mode: host\n";
        }
        if s.volume {
            y += "    volumes: ['data:/data']\n";
        }
    }
    y
}

fn build(apps: &[GenApp]) -> (TargetState, CurrentState) {
    let names: Vec<String> = (0..apps.len()).map(|i| format!("app{i}")).collect();
    let yamls: Vec<String> = apps.iter().map(|a| compose_yaml(&a.services)).collect();
    let spec: Vec<(&str, Option<(&str, &str)>)> = apps
        .iter()
        .enumerate()
        .filter(|(_, a)| a.present)
        .map(|(i, _)| (names[i].as_str(), Some(("rel", yamls[i].as_str()))))
        .collect();
    let target = target_of(&spec);
    let desired = desired_containers(&target, &host());
    let mut current = CurrentState::default();
    for (i, app) in apps.iter().enumerate() {
        let uuid = &names[i];
        if app.locked {
            current.locked_apps.insert(uuid.clone());
        }
        if app.has_network {
            current.networks.insert(Owned::new(uuid, "default"));
        }
        if app.has_volume {
            current.volumes.insert(Owned::new(uuid, "data"));
        }
        for g in &app.containers {
            // Service index past the compose: a service the target dropped.
            let service = format!("s{}", g.service);
            let want = desired
                .iter()
                .find(|d| &d.app == uuid && d.service == service);
            let status = [
                ContainerStatus::Created,
                ContainerStatus::Running,
                ContainerStatus::Exited,
            ][g.status as usize];
            let (name, digest, image, networks) = match (g.digest, want) {
                // Current configuration under an older naming: renamed, not recreated.
                (0, Some(d)) if g.image % 2 == 1 => (
                    format!("{service}_{uuid}_legacy"),
                    d.digest.clone(),
                    d.spec.image.clone(),
                    d.spec.networks.keys().cloned().collect::<BTreeSet<_>>(),
                ),
                (0, Some(d)) => (
                    d.name.clone(),
                    d.digest.clone(),
                    d.spec.image.clone(),
                    d.spec.networks.keys().cloned().collect::<BTreeSet<_>>(),
                ),
                // An even old digest keeps the target's name: a change inside one release.
                (n, Some(d)) if n % 2 == 0 => (
                    d.name.clone(),
                    format!("old{n}"),
                    IMAGES[g.image].to_string(),
                    if app.has_network {
                        BTreeSet::from(["default".to_string()])
                    } else {
                        BTreeSet::new()
                    },
                ),
                (n, _) => (
                    format!("{service}_{uuid}_old{n}"),
                    format!("old{n}"),
                    IMAGES[g.image].to_string(),
                    if app.has_network {
                        BTreeSet::from(["default".to_string()])
                    } else {
                        BTreeSet::new()
                    },
                ),
            };
            if current.containers.iter().any(|c| c.name == name) {
                continue;
            }
            for n in &networks {
                current.networks.insert(Owned::new(uuid, n));
            }
            current.images.insert(image.clone());
            current.containers.push(Container {
                name,
                app: uuid.clone(),
                service,
                release: "old".into(),
                image,
                digest,
                status,
                networks,
                id: String::new(),
                restart_count: 0,
            });
        }
    }
    (target, current)
}

/// Applies steps one by one, checking the update strategies' promises before each kill:
/// download-first strategies have the new image, hand-over has the new container started.
fn apply_checked(
    state: &mut CurrentState,
    steps: &[Step],
    target: &TargetState,
) -> Result<(), String> {
    let desired = desired_containers(target, &host());
    for step in steps {
        if let Step::Stop { container } | Step::HandoverKill { container, .. } = step {
            let old = state
                .containers
                .iter()
                .find(|c| &c.name == container)
                .cloned();
            let want = old.as_ref().and_then(|o| {
                desired
                    .iter()
                    .find(|d| d.app == o.app && d.service == o.service && d.digest != o.digest)
            });
            if let Some(d) = want {
                let image_ready = state.images.contains(&d.spec.image);
                // The successor: the current configuration, under either name (a kept
                // container is renamed last).
                let new_started = state.containers.iter().any(|c| {
                    c.app == d.app
                        && c.service == d.service
                        && c.digest == d.digest
                        && c.status != ContainerStatus::Created
                });
                match d.strategy {
                    crate::labels::UpdateStrategy::DownloadThenKill if !image_ready => {
                        return Err(format!(
                            "{container} killed before {} was fetched",
                            d.spec.image
                        ));
                    }
                    crate::labels::UpdateStrategy::HandOver
                        if !new_started && d.name != *container =>
                    {
                        return Err(format!("{container} killed before its successor started"));
                    }
                    _ => {}
                }
            }
        }
        super::simulate::apply(state, step, target).map_err(|e| format!("{step:?}: {e}"))?;
    }
    Ok(())
}

fn comparable(s: &CurrentState) -> (Vec<Container>, BTreeSet<Owned>, BTreeSet<Owned>) {
    let mut cs = s.containers.clone();
    cs.sort();
    (cs, s.volumes.clone(), s.networks.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn plans_apply_converge_and_resume(
        apps in prop::collection::vec(gen_app(), 1..3),
        force in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let (target, start) = build(&apps);
        let options = PlanOptions { force };
        let full = plan(&start, &target, &host(), options);

        // Every step's precondition holds (image before create, dependency started, …).
        let mut end = start.clone();
        apply_checked(&mut end, &full.steps, &target).map_err(TestCaseError::fail)?;

        // Idempotent: at the end there is nothing left to do.
        let again = plan(&end, &target, &host(), options);
        prop_assert!(again.steps.is_empty(), "replan not empty: {:?}", again.steps);
        prop_assert_eq!(&again.held, &full.held);

        // Resumable: stop after any prefix, plan again, finish: same end state.
        let k = cut.index(full.steps.len() + 1);
        let mut mid = start.clone();
        apply_all(&mut mid, &full.steps[..k], &target).map_err(TestCaseError::fail)?;
        let rest = plan(&mid, &target, &host(), options);
        apply_checked(&mut mid, &rest.steps, &target).map_err(TestCaseError::fail)?;
        prop_assert_eq!(comparable(&mid), comparable(&end));

        // Without held updates the end state is exactly the target.
        if full.held.is_empty() {
            let desired = desired_containers(&target, &host());
            prop_assert_eq!(end.containers.len(), desired.len());
            for d in &desired {
                let c = end.containers.iter().find(|c| c.name == d.name);
                prop_assert!(c.is_some_and(|c| c.digest == d.digest && c.status != ContainerStatus::Created));
                prop_assert!(end.images.contains(&d.spec.image));
            }
        }
    }
}
