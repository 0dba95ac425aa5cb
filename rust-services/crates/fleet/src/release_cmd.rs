//! `fleet compose check FILE [--strict]` and `fleet target check FILE`: a release checked on
//! the host with the supervisor's own parser and planner (the `fleet-release` crate), before
//! it goes to a device.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use fleet_release::labels::HostContext;
use fleet_release::plan::{self, CurrentState, PlanOptions};
use fleet_release::target_state::{self, TargetError};
use fleet_release::{Problem, compose};

use crate::outcome::{Reported, Unreadable};

#[derive(Debug, clap::Subcommand)]
pub enum ComposeCommand {
    /// Check a project's docker-compose.yml (or .json) as balena's builder and the
    /// supervisor read it (${VAR} from the environment, then .env beside the file): one
    /// line per problem (FILE: PATH: reason); exit 1 when any.
    Check {
        file: PathBuf,
        /// Also refuse what is accepted with a warning: keys the device drops, an unset
        /// variable, a `version` other than 2 to 2.4, labels under
        /// io.fleet./io.balena./io.resin. that nothing reads.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TargetCommand {
    /// Check a target-state JSON (balena's v3 state, or a preload `apps.json`, recognised by
    /// its top-level `apps`): validate it, plan it from an empty engine and run the plan on
    /// the planner's model; one line per problem, else one per app and service, with a
    /// warning line per note (what the device drops or does not do).
    Check { file: PathBuf },
}

pub fn run_compose(cmd: ComposeCommand) -> anyhow::Result<()> {
    match cmd {
        ComposeCommand::Check { file, strict } => compose_check(&file, strict),
    }
}

pub fn run_target(cmd: TargetCommand) -> anyhow::Result<()> {
    match cmd {
        TargetCommand::Check { file } => target_check(&file),
    }
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).map_err(|source| {
        Unreadable {
            path: file.to_path_buf(),
            source,
        }
        .into()
    })
}

/// Prints each problem as `FILE: PATH: reason` and fails with exit status 1.
fn refuse(name: &impl Display, problems: &[Problem]) -> anyhow::Error {
    for p in problems {
        println!("{name}: {p}");
    }
    let n = problems.len();
    Reported(format!(
        "{name}: {n} problem{}",
        if n == 1 { "" } else { "s" }
    ))
    .into()
}

fn compose_check(file: &Path, strict: bool) -> anyhow::Result<()> {
    let bytes = read(file)?;
    let name = file.display();
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(refuse(&name, &[Problem::new("(file)", "not UTF-8 text")]));
    };
    // As compose: the environment first, then `.env` beside the file.
    let dotenv_path = file.parent().unwrap_or(Path::new(".")).join(".env");
    let dotenv = if dotenv_path.exists() {
        compose::interpolate::dotenv(&String::from_utf8_lossy(&read(&dotenv_path)?))
    } else {
        Default::default()
    };
    let vars = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| dotenv.get(name).cloned())
    };
    let checked = compose::check_project(&text, &vars);
    let mut problems = checked.problems;
    if strict {
        problems.extend(checked.ignored);
    } else {
        for w in &checked.ignored {
            println!("{name}: warning: {w}");
        }
    }
    match checked.compose {
        Some(c) if problems.is_empty() => {
            let services: Vec<&str> = c.services.keys().map(String::as_str).collect();
            println!(
                "{name}: valid: {} service{} ({})",
                services.len(),
                if services.len() == 1 { "" } else { "s" },
                services.join(", ")
            );
            Ok(())
        }
        _ => Err(refuse(&name, &problems)),
    }
}

fn target_check(file: &Path) -> anyhow::Result<()> {
    let bytes = read(file)?;
    let name = file.display();
    let is_apps_json = serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|v| v.get("apps").is_some_and(serde_json::Value::is_object));
    let parsed = if is_apps_json {
        target_state::parse_apps_json(&bytes, "preloaded-device")
    } else {
        target_state::parse(&bytes)
    };
    let state = match parsed {
        Ok(s) => s,
        Err(TargetError { problems }) => return Err(refuse(&name, &problems)),
    };
    // From an empty engine, as on a freshly provisioned device: every service is created.
    let host = HostContext::default();
    let empty = CurrentState::default();
    let planned = plan::plan(&empty, &state, &host, PlanOptions::default());
    let mut reached = empty.clone();
    if let Err(e) = plan::simulate::apply_all(&mut reached, &planned.steps, &state) {
        let p = Problem::new(
            "(plan)",
            format!("the plan from an empty engine fails: {e}"),
        );
        return Err(refuse(&name, &[p]));
    }
    let again = plan::plan(&reached, &state, &host, PlanOptions::default());
    if !again.steps.is_empty() {
        let p = Problem::new(
            "(plan)",
            format!(
                "the plan from an empty engine does not converge: {} more step(s)",
                again.steps.len()
            ),
        );
        return Err(refuse(&name, &[p]));
    }
    for note in &state.notes {
        println!("{name}: warning: {note}");
    }
    let desired = plan::desired_containers(&state, &host);
    for app in state.apps.values() {
        match &app.release {
            None => println!(
                "{name}: app {} ({}): no release, nothing runs",
                app.uuid, app.name
            ),
            Some(r) => println!(
                "{name}: app {} ({}): release {} (id {}), {} service(s)",
                app.uuid,
                app.name,
                r.uuid,
                r.id,
                r.compose.services.len()
            ),
        }
        for c in desired.iter().filter(|c| c.app == app.uuid) {
            println!(
                "{name}: app {}: service {}: {}, {}, network {}",
                app.uuid,
                c.service,
                c.spec.image,
                c.strategy.name(),
                c.spec.network_mode.name()
            );
        }
    }
    println!(
        "{name}: valid: device {}, {} app(s), {} service(s), {} step(s) from an empty engine",
        state.device_uuid,
        state.apps.len(),
        desired.len(),
        planned.steps.len()
    );
    Ok(())
}
