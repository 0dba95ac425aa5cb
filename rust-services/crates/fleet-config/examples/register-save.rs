//! The supervisor's registration record (fleet-supervisor `cloud::provision::attempt`) as two
//! `Config::save` calls on a config.json, for tests/powerloss's kernel-vfat scenario: first
//! `uuid` and `deviceApiKey`, then `registered_at` and `deviceId` with `apiKey` removed.
//! Fixed values, so the same run on any file system writes the same documents.
//! Usage: register-save CONFIG [SAVES]   (SAVES: 1 or 2, default 2)

use fleet_config::Config;
use serde_json::Value;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: register-save CONFIG [SAVES]")?;
    let saves: u32 = args.next().map_or(Ok(2), |s| s.parse())?;
    let path = Path::new(&path);
    let problems = |p: Vec<fleet_config::Problem>| {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut config = Config::load(path)?.ok_or("config.json is gone")?;
    config
        .set(&["uuid"], Value::from("f22c0ffee0ddf00df22c0ffee0ddf00d"))
        .map_err(problems)?;
    config
        .set(
            &["deviceApiKey"],
            Value::from("f22d3v1c3k3yf22d3v1c3k3yf22d3v1c"),
        )
        .map_err(problems)?;
    config.save(path)?;
    if saves < 2 {
        return Ok(());
    }
    let mut config = Config::load(path)?.ok_or("config.json is gone")?;
    config
        .set(&["registered_at"], Value::from(1_780_000_000_000_u64))
        .map_err(problems)?;
    config
        .set(&["deviceId"], Value::from(2222))
        .map_err(problems)?;
    config.remove(&["apiKey"]).map_err(problems)?;
    config.save(path)?;
    Ok(())
}
