//! A process killed at any moment during `atomic_write` leaves the old or the new content.
//! The writer runs as a child process (this test binary re-run with CRASH_TARGET set) that
//! rewrites one file in a loop; the parent SIGKILLs it at random moments and checks the file.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const A: &[u8] = &[b'a'; 64 * 1024];
const B: &[u8] = &[b'b'; 96 * 1024];

#[test]
fn crash_writer_child() {
    // Only does work when started by `killed_writer_never_leaves_a_mix`.
    let Some(target) = std::env::var_os("CRASH_TARGET") else {
        return;
    };
    let target = Path::new(&target);
    for i in 0.. {
        let bytes = if i % 2 == 0 { A } else { B };
        fleet_fs::atomic_write(target, bytes, 0o644).unwrap();
    }
}

#[test]
fn killed_writer_never_leaves_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("config.json");
    fleet_fs::atomic_write(&target, A, 0o644).unwrap();
    let exe = std::env::current_exe().unwrap();
    // A cheap xorshift so every run kills at different moments without a rand dependency.
    let mut seed = std::process::id() as u64 | 1;
    for round in 0..60 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_writer_child", "--nocapture"])
            .env("CRASH_TARGET", &target)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(2_000 + seed % 20_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let now = std::fs::read(&target).unwrap();
        assert!(
            now == A || now == B,
            "round {round}: mixed content of {} bytes",
            now.len()
        );
    }
    // Leftover temp files from killed writers are allowed (they never replace the target).
}
