//! The binary's offline subcommands, run as a process.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleet-supervisor"))
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/doc/target.example.json");

#[test]
fn check_compose_names_every_problem_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        "services:\n  web:\n    image: x\n    build: .\n    volumes: ['./d:/d']\n",
    )
    .unwrap();
    let out = bin().arg("check-compose").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("service `web`: unsupported key `build`"),
        "{err}"
    );
    assert!(err.contains("bind mount of `./d` refused"), "{err}");
}

#[test]
fn check_target_accepts_the_documented_example() {
    let out = bin().arg("check-target").arg(EXAMPLE).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plan_from_empty_state_prints_json_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let current = tmp.path().join("current.json");
    std::fs::write(&current, "{}").unwrap();
    let out = bin()
        .args(["plan", "--target", EXAMPLE, "--current"])
        .arg(&current)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "start").count(), 3);
    assert_eq!(kinds[0], "create-network");
}

#[test]
fn apply_without_an_engine_names_the_socket_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("no-engine.sock");
    let out = bin()
        .args(["apply", "--target", EXAMPLE, "--engine"])
        .arg(&socket)
        .arg("--lock-root")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("engine at {}", socket.display())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
