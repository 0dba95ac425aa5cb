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
}

#[test]
fn compose_problems_carry_the_release_path() {
    let doc = wrap(json!({"r1": {"id": 2, "composition":
        "services:\n  web:\n    image: x\n    build: .\n    volumes: ['./d:/d']\n"}}));
    let p = problems(doc);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        p[0].path,
        "dev1.apps.app1.releases.r1.composition:services.web.build"
    );
    assert!(p[1].message.contains("bind mount of `./d`"));
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
    let neither = problems(wrap(json!({"r1": {"id": 1}})));
    assert!(neither[0].message.contains("exactly one of"));
    let both = problems(wrap(
        json!({"r1": {"id": 1, "image": "x", "composition": "services: {}"}}),
    ));
    assert!(both[0].message.contains("exactly one of"));
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
