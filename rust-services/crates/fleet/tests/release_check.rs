//! `fleet compose check` and `fleet target check`, run as a process on the files in
//! tests/data/release (written for these tests).

use std::process::{Command, Output};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/release");

fn data(name: &str) -> String {
    format!("{DATA}/{name}")
}

fn fleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

#[test]
fn good_compose_yaml_and_json_pass() {
    let file = data("compose-good.yml");
    let out = fleet(&["compose", "check", &file]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{file}: valid: 2 services (dashboard, sensor)\n")
    );

    let file = data("compose-good.json");
    let out = fleet(&["compose", "check", "--strict", &file]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), format!("{file}: valid: 1 service (logger)\n"));
}

#[test]
fn unsupported_key_is_named_with_its_path() {
    let file = data("compose-unsupported-key.yml");
    let out = fleet(&["compose", "check", &file]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stdout(&out),
        format!(
            "{file}: services.sensor.logging: service `sensor`: unsupported key `logging` (balena refuses it too)\n"
        )
    );
}

#[test]
fn unknown_keys_and_strategies_warn_and_strict_refuses_them() {
    let file = data("compose-unknown-key.yml");
    let out = fleet(&["compose", "check", &file]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "{file}: warning: services.sensor.container_name: service `sensor`: key `container_name` is not supported by this device: dropped, the rest applies\n\
             {file}: warning: services.sensor.labels.io.balena.update.strategy: service `sensor`: update strategy `sometimes` is not download-then-kill, kill-then-download, delete-then-download or hand-over: download-then-kill is used\n\
             {file}: valid: 1 service (sensor)\n"
        )
    );
    let out = fleet(&["compose", "check", "--strict", &file]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("services.sensor.container_name"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("update strategy `sometimes`"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_values_are_each_named_with_their_path() {
    let file = data("compose-bad-value.yml");
    let out = fleet(&["compose", "check", &file]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!("{file}: services.dashboard.stop_grace_period:")),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("{file}: services.dashboard.ports[0]: `eighty`")),
        "{text}"
    );
}

#[test]
fn not_yaml_is_a_problem_of_the_file() {
    let file = data("compose-not-yaml.yml");
    let out = fleet(&["compose", "check", &file]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).starts_with(&format!("{file}: (file): not valid YAML")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn ignored_settings_warn_and_strict_refuses_them() {
    let file = data("compose-ignored.yml");
    let condition = "version: compose version `3.8` is not read";
    let label = "services.dashboard.labels.io.balena.update.stratgy: service `dashboard`: label `io.balena.update.stratgy` has a supervisor prefix";

    let out = fleet(&["compose", "check", &file]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{file}: warning: {condition}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{file}: warning: {label}")),
        "{text}"
    );
    assert!(text.ends_with(&format!("{file}: valid: 2 services (dashboard, db)\n")));

    let out = fleet(&["compose", "check", "--strict", &file]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!("{file}: {condition}")),
        "{text}"
    );
    assert!(lines[1].starts_with(&format!("{file}: {label}")), "{text}");
}

/// What balena's builder refuses in a project file is refused, each named; a network's
/// `name` (the builder removes it) is only a warning.
#[test]
fn project_file_refused_where_balenas_builder_refuses_it() {
    let file = data("compose-builder-refuses.yml");
    let out = fleet(&["compose", "check", &file]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    for expected in [
        "services.cache.build.context: service `cache`: build context `https://github.com/example/cache.git` is remote",
        "services.dashboard.build.ssh: service `dashboard`: build `ssh` is not allowed",
        "services.dashboard.build.no_cache: service `dashboard`: build `no_cache` is not allowed",
        "services.dashboard.ipc: service `dashboard`: ipc `service:` is not supported by balena's builder",
        "services.dashboard.depends_on.db.condition: depends_on `db`: condition `service_healthy` is not supported by balena's builder",
        "services.dashboard.volumes[0]: service `dashboard`: tmpfs options",
        "warning: networks.backend.name: network `backend`: `name` is not used",
    ] {
        assert!(
            text.contains(&format!("{file}: {expected}")),
            "{expected}\n{text}"
        );
    }
}

#[test]
fn good_target_gets_a_line_per_app_and_service() {
    let file = data("target-good.json");
    let out = fleet(&["target", "check", &file]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let app = "5b1e7c9d2a4f4e3c8d0b1a2c3e4f5a6b";
    let expected = [
        format!(
            "{file}: app {app} (weather-station): release 9e8d7c6b5a4f4e3d2c1b0a9f8e7d6c5b (id 412), 2 service(s)"
        ),
        // Start order: the dashboard depends on the sensor.
        format!(
            "{file}: app {app}: service sensor: registry.example/station-sensor:3, download-then-kill, network bridge"
        ),
        format!(
            "{file}: app {app}: service dashboard: registry.example/station-dashboard:3, kill-then-download, network host"
        ),
        format!("{file}: app a1b2c3d4e5f64a7b8c9d0e1f2a3b4c5d (spare): no release, nothing runs"),
    ];
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[..4], expected.map(|l| l.to_string())[..], "{text}");
    // network + volume, two fetches, two create + start pairs.
    assert_eq!(
        lines[4],
        format!(
            "{file}: valid: device 0c3f9a2b7d1e4c5a8b6f0e1d2c3b4a59, 2 app(s), 2 service(s), 8 step(s) from an empty engine"
        )
    );
}

#[test]
fn malformed_target_names_the_file() {
    let file = data("target-malformed.json");
    let out = fleet(&["target", "check", &file]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).starts_with(&format!("{file}: (file): not a JSON object: EOF")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn invalid_target_names_each_compose_problem_with_its_path() {
    let file = data("target-invalid.json");
    let out = fleet(&["target", "check", &file]);
    assert_eq!(code(&out), 1);
    let release = "0c3f9a2b7d1e4c5a8b6f0e1d2c3b4a59.apps.5b1e7c9d2a4f4e3c8d0b1a2c3e4f5a6b.releases.9e8d7c6b5a4f4e3d2c1b0a9f8e7d6c5b";
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{file}: {release}.composition:services.sensor.volumes[0]: service `sensor`: bind mount of `/dev/shm` refused"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{file}: {release}.composition:services.sensor.links: service `sensor`: unsupported key `links`"
        )),
        "{text}"
    );
}

#[test]
fn unreadable_files_exit_2_naming_the_file() {
    for sub in ["compose", "target"] {
        let file = data("no-such-file.json");
        let out = fleet(&[sub, "check", &file]);
        assert_eq!(code(&out), 2, "{sub}");
        assert!(stdout(&out).is_empty());
        assert_eq!(
            stderr(&out),
            format!("fleet: error: {file}: No such file or directory (os error 2)\n"),
            "{sub}"
        );
    }
    let out = fleet(&["compose", "check"]);
    assert_eq!(code(&out), 2, "usage error");
}

#[test]
fn preload_apps_json_is_checked_as_a_target() {
    let file = data("apps-json.json");
    let out = fleet(&["target", "check", &file]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{file}: warning: pinDevice: ")),
        "{text}"
    );
    assert!(text.contains("HOST_CONFIG_gpu_mem"), "{text}");
    assert!(
        text.contains(&format!(
            "{file}: app 5f6e7d8c: service browser: registry.example/kiosk:7"
        )),
        "{text}"
    );
    assert!(
        text.ends_with("1 app(s), 1 service(s), 4 step(s) from an empty engine\n"),
        "{text}"
    );
}

/// `${VAR}` in a project file: from the environment first, then `.env` beside the file, as
/// compose substitutes them; `${VAR:?}` unset is refused with its path.
#[test]
fn project_variables_from_the_environment_then_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        "services:\n  web:\n    image: \"registry.example/web:${TAG:-latest}\"\n    ports: [\"${PORT}:80\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "PORT=8080\nTAG=2\n").unwrap();
    let file = file.to_str().unwrap();
    let run = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_fleet"))
            .args(["compose", "check", "--strict", file])
            .env_remove("PORT")
            .env_remove("TAG")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    // The environment wins over .env; a bad port from it is named at its path.
    let out = run(&[("PORT", "eighty")]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains(&format!(
            "{file}: services.web.ports[0]: `eighty` is not a port number"
        )),
        "{}",
        stdout(&out)
    );
    std::fs::write(dir.path().join(".env"), "TAG=${NOPE:?set TAG}\n").unwrap();
    std::fs::write(
        file,
        "services:\n  web:\n    image: \"registry.example/web:${TAG2:?set TAG2}\"\n",
    )
    .unwrap();
    let out = run(&[]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains(&format!(
            "{file}: services.web.image: variable `TAG2` is required: set TAG2"
        )),
        "{}",
        stdout(&out)
    );
}
