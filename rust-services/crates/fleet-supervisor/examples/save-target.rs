//! The supervisor's target-state save (`target_file::save_local`: validated, then
//! `fleet_fs::atomic_write` of `/mnt/data/fleet-supervisor/target.json`, the file the daemon
//! keeps its target in) for tests/powerloss's `supervisor-target` scenario.
//! Usage: save-target ROOT FILE   (FILE: a target-state document)

use fleet_fs::Root;
use fleet_supervisor::target_file;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(file)) = (args.next(), args.next()) else {
        return Err("usage: save-target ROOT FILE".into());
    };
    let bytes = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
    let state = target_file::save_local(&Root::new(root), &bytes)
        .map_err(|e| fleet_log::error::one_line(&e))?;
    println!("saved the target of {} app(s)", state.apps.len());
    Ok(())
}
