use super::*;
use crate::compose::{NetworkMode, RestartPolicy};
use serde_json::json;

const EXAMPLE: &str = include_str!("../../doc/target.example.json");

fn problems(doc: serde_json::Value) -> Vec<Problem> {
    match parse(doc.to_string().as_bytes()) {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(TargetError { problems }) => problems,
    }
}

fn wrap(releases: serde_json::Value) -> serde_json::Value {
    json!({"dev1": {"apps": {"app1": {"id": 1, "name": "a", "releases": releases}}}})
}

#[test]
fn documented_example_parses() {
    let t = parse(EXAMPLE.as_bytes()).unwrap();
    assert_eq!(t.device_uuid, "f3a1c2d4e5b6478990a1b2c3d4e5f607");
    let app = &t.apps["7d2c9b1e4a5f4c3b8e6d0a1b2c3d4e5f"];
    assert_eq!((app.id, app.name.as_str()), (1804, "greenhouse"));
    let rel = app.release.as_ref().unwrap();
    assert_eq!(rel.id, 5521);
    let services = &rel.compose.services;
    assert_eq!(services.len(), 3);
    assert_eq!(services["sensor"].environment["SITE"], "north");
    assert_eq!(services["sensor"].environment["SAMPLE_SECONDS"], "10");
    assert_eq!(services["db"].environment["SITE"], "north");
    assert!(!services["db"].environment.contains_key("SAMPLE_SECONDS"));
    assert_eq!(services["ui"].restart, RestartPolicy::Always);
}

#[test]
fn composition_as_object_and_per_service_form() {
    let obj = wrap(json!({"r1": {"id": 2, "composition": {
        "version": "2.1", "services": {"main": {"image": "x:1", "environment": {"A": "compose", "B": "compose"}}}
    }, "environment": {"A": "app"}, "services": {"main": {"environment": {"B": "service"}}}}}));
    let t = parse(obj.to_string().as_bytes()).unwrap();
    let main = &t.apps["app1"].release.as_ref().unwrap().compose.services["main"];
    assert_eq!(main.environment["A"], "app");
    assert_eq!(main.environment["B"], "service");

    let v3 = wrap(json!({"r1": {"id": 2,
    "volumes": {"data": {}},
    "services": {
        "main": {"id": 11, "image_id": 12, "image": "registry/x@sha256:ab",
                  "composition": {"volumes": ["data:/data"], "labels": {"io.balena.features.dbus": "1"}},
                  "environment": {"K": "v"}},
    }}}));
    let t = parse(v3.to_string().as_bytes()).unwrap();
    let compose = &t.apps["app1"].release.as_ref().unwrap().compose;
    let main = &compose.services["main"];
    assert_eq!(main.image, "registry/x@sha256:ab");
    assert_eq!(main.volumes[0].volume, "data");
    assert_eq!(main.environment["K"], "v");
    assert!(compose.volumes.contains("data"));
}

#[test]
fn single_image_release() {
    let doc = wrap(json!({"r1": {"id": 3, "image": "legacy:1"}}));
    let t = parse(doc.to_string().as_bytes()).unwrap();
    let main = &t.apps["app1"].release.as_ref().unwrap().compose.services["main"];
    assert!(main.privileged);
    assert_eq!(main.network_mode, NetworkMode::Host);
    assert_eq!(main.volumes[0].volume, "resin-data");
}

#[test]
fn app_without_release_and_host_app() {
    let doc = json!({"dev1": {"apps": {
        "app1": {"id": 1, "name": "a", "releases": {}},
        "hostos": {"id": 2, "name": "os", "is_host": true, "releases": {"r": {"id": 1, "image": "os"}}},
    }}});
    let t = parse(doc.to_string().as_bytes()).unwrap();
    assert!(t.apps["app1"].release.is_none());
    assert!(!t.apps.contains_key("hostos"));
    let host = t
        .host_os
        .expect("the host release is kept for the OS updater");
    assert_eq!(
        (
            host.app.as_str(),
            host.release.as_str(),
            host.release_id,
            host.bundle
        ),
        ("hostos", "r", 1, None),
        "no bundle label: the device's channel"
    );
}

#[test]
fn host_os_release_names_its_bundle_by_label() {
    let host = |labels: serde_json::Value| {
        json!({"dev1": {"apps": {"hostos": {"id": 2, "name": "os", "is_host": true,
            "releases": {"c0mm1t": {"id": 9, "services": {"hostapp": {"id": 1, "image_id": 3,
                "image": "registry2/hostapp@sha256:02", "labels": labels}}}}}}}})
    };
    let t = parse(
        host(json!({"io.balena.image.store": "root",
            "io.fleet.update.bundle": "https://updates.example/os/2.1.fleet"}))
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let h = t.host_os.unwrap();
    assert_eq!(h.release, "c0mm1t");
    assert_eq!(
        h.bundle.as_deref(),
        Some("https://updates.example/os/2.1.fleet")
    );
    // Not an http(s) URL: accepted, nothing handed over, the note says why.
    let t = parse(
        host(json!({"io.fleet.update.bundle": "file:///tmp/x.fleet"}))
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert!(t.host_os.is_none());
    assert!(
        t.notes
            .iter()
            .any(|n| n.path.ends_with("labels.io.fleet.update.bundle")
                && n.message.contains("not an http(s) URL")),
        "{:?}",
        t.notes
    );
}

#[test]
fn compose_problems_carry_the_release_path() {
    let doc = wrap(json!({"r1": {"id": 2, "composition":
        "services:\n  web:\n    image: x\n    links: [db]\n    volumes: ['./d:/d']\n"}}));
    let p = problems(doc);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        p[0].path,
        "dev1.apps.app1.releases.r1.composition:services.web.links"
    );
    assert!(p[1].message.contains("bind mount of `./d`"));
}

#[test]
fn keys_the_device_does_not_know_are_dropped_and_reported() {
    let doc = wrap(json!({"r1": {"id": 2, "composition":
        "x-common: {a: 1}\nservices:\n  web:\n    image: x\n    container_name: w\n    env_file: .env\n"}}));
    let t = parse(doc.to_string().as_bytes()).unwrap();
    assert!(t.apps["app1"].release.is_some());
    let notes: Vec<String> = t.notes.iter().map(ToString::to_string).collect();
    for key in ["container_name", "env_file"] {
        let n = notes
            .iter()
            .filter(|n| {
                n.contains(&format!(
                    "dev1.apps.app1.releases.r1.composition:services.web.{key}"
                )) && n.contains("service `web`")
                    && n.contains("dropped")
            })
            .count();
        assert_eq!(n, 1, "one warning for {key}: {notes:?}");
    }
    assert!(!notes.iter().any(|n| n.contains("x-common")), "{notes:?}");
}

#[test]
fn structural_problems() {
    assert!(
        problems(json!({"a": {}, "b": {}}))[0]
            .message
            .contains("exactly one key")
    );
    assert!(problems(json!([]))[0].message.contains("not a JSON object"));
    assert!(
        problems(json!({"d": {"apps": {}, "bogus": 1}}))[0]
            .message
            .contains("bogus")
    );
    let two = problems(wrap(
        json!({"r1": {"id": 1, "image": "x"}, "r2": {"id": 2, "image": "y"}}),
    ));
    assert!(two[0].message.contains("at most one"));
    let no_image = problems(wrap(
        json!({"r1": {"id": 1, "services": {"a": {"environment": {}}}}}),
    ));
    assert!(
        no_image[0].message.contains("missing `image`"),
        "{no_image:?}"
    );
    let both = problems(wrap(
        json!({"r1": {"id": 1, "image": "x", "composition": "services: {}"}}),
    ));
    assert!(both[0].message.contains("at most one of"));
    let ghost = problems(wrap(json!({"r1": {"id": 1, "image": "x",
        "services": {"ghost": {"environment": {}}}}})));
    assert!(ghost[0].message.contains("`ghost` is not in the release"));
    let bad_uuid = problems(json!({"d": {"apps": {"App_1": {"id": 1, "name": "a"}}}}));
    assert!(bad_uuid[0].path.ends_with("App_1"));
}

#[test]
fn readme_shows_the_tested_example() {
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(EXAMPLE.trim_end()),
        "README example out of date"
    );
}

/// A document shaped as open-balena-api's `GET /device/v3/<uuid>/state` builds it: releases
/// keyed by commit, ids as numbers and numeric strings, one service with the builder's
/// composition (nulls, `build` dropped, `ipam: {}`), one image-only service, `contract`,
/// the supervisor app and the host-OS app next to the user's.
fn open_balena_v3() -> serde_json::Value {
    json!({"4f8c2a10b3d94e6f8a7b6c5d4e3f2a10": {
        "name": "weathered-leaf",
        "config": {
            "RESIN_SUPERVISOR_POLL_INTERVAL": "600000",
            "RESIN_SUPERVISOR_UPDATE_STRATEGY": "kill-then-download",
            "BALENA_HOST_CONFIG_gpu_mem": "64",
            "RESIN_SUPERVISOR_DELTA": "1"
        },
        "apps": {
            "900de4f3cbac4b9bbd232885a35e407b": {
                "id": 2, "name": "balena_os/aarch64-supervisor", "is_host": false, "class": "app",
                "releases": {"0c6f6c1bd5e24a63b5ba0ba3c6f1f0e7": {"id": 3, "services": {
                    "balena-supervisor": {"id": 4, "image_id": 5, "image": "registry2.balena-cloud.com/v2/abc@sha256:01",
                        "environment": {}, "labels": {}}}}}
            },
            "a1b2c3d4e5f60718293a4b5c6d7e8f90": {
                "id": 6, "name": "generic-aarch64", "is_host": true, "class": "app",
                "releases": {"1d2e3f": {"id": 7, "services": {"hostapp": {"id": 8, "image_id": 9,
                    "image": "registry2/hostapp@sha256:02", "environment": {},
                    "labels": {"io.balena.image.store": "root"}}}}}
            },
            "c0ffee00c0ffee00c0ffee00c0ffee00": {
                "id": "1804", "name": "greenhouse", "is_host": false, "class": "fleet",
                "releases": {"3b1d5f0e9a7c4b2d8e6f0a1b2c3d4e5f": {
                    "id": 5521,
                    "services": {
                        "web": {
                            "id": 31, "image_id": "41",
                            "image": "registry2.balena-cloud.com/v2/77aa@sha256:0a",
                            "environment": {"SITE": "north"},
                            "labels": {"io.balena.features.supervisor-api": "1"},
                            "contract": {"type": "sw.container", "requires": [{"type": "hw.device-type", "slug": "raspberrypi4-64"}]},
                            "composition": {
                                "image": "web", "command": null, "restart": "always",
                                "networks": {"default": null},
                                "ports": ["80:8080"],
                                "labels": {"io.balena.features.supervisor-api": "1"}
                            }
                        },
                        "worker": {
                            "id": 32, "image_id": 42,
                            "image": "registry2.balena-cloud.com/v2/88bb@sha256:0b",
                            "environment": {}, "labels": {}, "running": true
                        }
                    },
                    "networks": {"default": {"ipam": {}}},
                    "volumes": {"data": {"labels": {"owner": "greenhouse"}, "driver_opts": {}}}
                }}
            }
        }
    }})
}

#[test]
fn open_balena_v3_document_is_accepted() {
    let t = parse(open_balena_v3().to_string().as_bytes()).unwrap();
    assert_eq!(
        t.apps.len(),
        1,
        "only the user's app is run: {:?}",
        t.apps.keys()
    );
    let app = &t.apps["c0ffee00c0ffee00c0ffee00c0ffee00"];
    assert_eq!(app.id, 1804, "numeric-string id");
    let rel = app.release.as_ref().unwrap();
    assert_eq!(rel.uuid, "3b1d5f0e9a7c4b2d8e6f0a1b2c3d4e5f");
    let web = &rel.compose.services["web"];
    assert_eq!(web.image, "registry2.balena-cloud.com/v2/77aa@sha256:0a");
    assert_eq!(web.command, None, "`command: null` is unset");
    assert_eq!(web.environment["SITE"], "north");
    assert_eq!(web.ports.len(), 1);
    let worker = &rel.compose.services["worker"];
    assert_eq!(worker.image, "registry2.balena-cloud.com/v2/88bb@sha256:0b");
    // The config variable becomes the default strategy label, as balena's API does.
    assert_eq!(
        worker.labels["io.balena.update.strategy"],
        "kill-then-download"
    );
    assert_eq!(
        rel.compose.volume_options["data"].labels["owner"],
        "greenhouse"
    );
    let notes: Vec<String> = t.notes.iter().map(ToString::to_string).collect();
    let has = |needle: &str| notes.iter().any(|n| n.contains(needle));
    assert!(has("balena's supervisor"), "{notes:?}");
    assert!(has("is the host OS"), "{notes:?}");
    assert!(has("HOST_CONFIG_gpu_mem"), "{notes:?}");
    assert!(has("RESIN_SUPERVISOR_DELTA"), "{notes:?}");
    assert!(has("services.web.contract"), "{notes:?}");
    assert!(!has("POLL_INTERVAL"), "applied, not reported: {notes:?}");
}

#[test]
fn explicit_strategy_label_beats_config_default() {
    let mut doc = open_balena_v3();
    doc["4f8c2a10b3d94e6f8a7b6c5d4e3f2a10"]["apps"]["c0ffee00c0ffee00c0ffee00c0ffee00"]["releases"]
        ["3b1d5f0e9a7c4b2d8e6f0a1b2c3d4e5f"]["services"]["worker"]["labels"] =
        json!({"io.resin.update.strategy": "hand-over"});
    let t = parse(doc.to_string().as_bytes()).unwrap();
    let rel = t.apps["c0ffee00c0ffee00c0ffee00c0ffee00"]
        .release
        .clone()
        .unwrap();
    let worker = &rel.compose.services["worker"];
    assert_eq!(worker.labels["io.resin.update.strategy"], "hand-over");
    assert!(!worker.labels.contains_key("io.balena.update.strategy"));
}

#[test]
fn ids_must_be_numeric() {
    let doc = json!({"dev1": {"apps": {"app1": {"id": "12a", "name": "a"}}}});
    let p = problems(doc);
    assert!(p[0].message.contains("numeric string"), "{p:?}");
}

#[test]
fn running_false_is_left_out_and_reported() {
    let doc = wrap(json!({"r1": {"id": 2, "services": {
        "a": {"id": 1, "image_id": 1, "image": "a:1", "environment": {}, "labels": {}},
        "b": {"id": 2, "image_id": 2, "image": "b:1", "environment": {}, "labels": {}, "running": false}
    }}}));
    let t = parse(doc.to_string().as_bytes()).unwrap();
    let compose = &t.apps["app1"].release.as_ref().unwrap().compose;
    assert_eq!(compose.services.keys().collect::<Vec<_>>(), ["a"]);
    assert!(
        t.notes
            .iter()
            .any(|n| n.path.ends_with("services.b.running"))
    );
}

#[test]
fn release_without_services_runs_nothing() {
    let doc = wrap(json!({"r1": {"id": 2}}));
    let t = parse(doc.to_string().as_bytes()).unwrap();
    assert!(
        t.apps["app1"]
            .release
            .as_ref()
            .unwrap()
            .compose
            .services
            .is_empty()
    );
}

#[test]
fn network_options_from_the_release() {
    let doc = wrap(json!({"r1": {"id": 2,
        "networks": {"default": {"ipam": {}}, "back": {"internal": true, "labels": {"k": "v"},
            "driver_opts": {"com.docker.network.bridge.name": "br-back"},
            "ipam": {"driver": "default", "config": [{"subnet": "10.9.0.0/16", "gateway": "10.9.0.1"}]}}},
        "services": {"a": {"id": 1, "image_id": 1, "image": "a:1", "environment": {}, "labels": {},
            "composition": {"networks": ["back"]}}}}}));
    let t = parse(doc.to_string().as_bytes()).unwrap();
    let compose = &t.apps["app1"].release.as_ref().unwrap().compose;
    let back = &compose.network_options["back"];
    assert!(back.internal);
    assert_eq!(back.ipam[0].subnet.as_deref(), Some("10.9.0.0/16"));
    assert_eq!(
        back.driver_opts["com.docker.network.bridge.name"],
        "br-back"
    );
    assert!(
        !compose.network_options.contains_key("default"),
        "ipam: {{}} sets nothing"
    );
}

/// The preload format as balena documents it: config and apps keyed by UUID, no device key.
#[test]
fn apps_json_preload_is_read_as_the_device_target() {
    let doc = json!({
        "config": {"RESIN_HOST_CONFIG_gpu_mem": "128"},
        "apps": {"5f6e7d8c": {"id": 42, "name": "kiosk", "releases": {"9a8b7c6d": {"id": 7,
            "services": {"browser": {"id": 3, "image_id": 4, "image": "registry.example/kiosk:7",
                "labels": {"io.resin.features.dbus": "1"}, "environment": {}}}}}}},
        "pinDevice": true
    });
    let t = parse_apps_json(doc.to_string().as_bytes(), "dev9").unwrap();
    assert_eq!(t.device_uuid, "dev9");
    let rel = t.apps["5f6e7d8c"].release.as_ref().unwrap();
    assert_eq!(
        rel.compose.services["browser"].image,
        "registry.example/kiosk:7"
    );
    assert!(
        t.notes.iter().any(|n| n.path == "pinDevice"),
        "{:?}",
        t.notes
    );
    assert!(t.notes.iter().any(|n| n.message.contains("gpu_mem")));

    let legacy = parse_apps_json(b"[]", "dev9").unwrap_err();
    assert!(legacy.to_string().contains("legacy apps.json"), "{legacy}");
    let v2 = json!({"apps": {"1234": {"id": 1234, "name": "a"}}});
    let err = parse_apps_json(v2.to_string().as_bytes(), "dev9").unwrap_err();
    assert!(err.problems[0].path == "apps.1234", "{err}");
    // balena reads only its keys: another is noted, and the numeric-id reason still shows.
    let unknown = parse_apps_json(br#"{"apps": {}, "extra": 1}"#, "dev9").unwrap();
    assert!(
        unknown.notes.iter().any(|n| n.path == "extra"),
        "{:?}",
        unknown.notes
    );
    let named = json!({"name": "x", "apps": {"1234": {"id": 1234, "name": "a"}}});
    let err = parse_apps_json(named.to_string().as_bytes(), "dev9").unwrap_err();
    assert!(err.to_string().contains("numeric id"), "{err}");
}
