//! The binary's offline subcommands, run as a process.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleet-supervisor"))
}

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fleet-release/doc/target.example.json"
);

#[test]
fn check_compose_names_every_problem_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        "services:\n  web:\n    image: x\n    links: [db]\n    volumes: ['./d:/d']\n",
    )
    .unwrap();
    let out = bin().arg("check-compose").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("service `web`: unsupported key `links`"),
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

/// `run` as a process: it serves the API, `healthcheck` reports the engine it cannot reach,
/// and SIGTERM ends it cleanly.
#[test]
fn run_serves_healthcheck_judges_and_sigterm_stops() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = bin()
        .arg("run")
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--config")
        .arg(tmp.path().join("config.json"))
        .arg("--engine-socket")
        .arg(tmp.path().join("no-engine.sock"))
        .args(["--listen-address", "127.0.0.1"])
        .env("FLEET_LISTEN_PORT", port.to_string())
        .env("FLEET_LOG_STDERR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ping = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    let mut answer = None;
    for _ in 0..100 {
        answer = ping();
        if answer.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let answer = answer.expect("the daemon never answered /ping");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nOK"), "{answer}");
    assert!(tmp.path().join("data/api-key").exists());

    let check = bin()
        .args(["healthcheck", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("HTTP 500") && err.contains("no-engine.sock"),
        "{err}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.wait().unwrap();
    let mut log = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("supervisor API on 127.0.0.1"), "{log}");
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
