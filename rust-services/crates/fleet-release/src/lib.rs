//! balena releases offline: what the supervisor should run, decided without an engine,
//! async runtime or network (the supervisor's `exec` runs the plans).
//!
//! - [`compose`]: balena's documented subset of Compose v2.1 → typed service specs;
//! - [`network_mode`]: a service's network mode, shared by compose and labels;
//! - [`labels`]: `io.fleet.` / `io.balena.` / `io.resin.` feature labels → container settings;
//! - [`target_state`]: the target-state JSON (close to balena's v3 `/device/v3/<uuid>/state`);
//! - [`plan`]: the pure planner from current + target state to ordered steps;
//! - [`update_lock`]: names and paths of the per-app update-lock directories.

pub mod compose;
pub mod labels;
pub mod network_mode;
pub mod plan;
pub mod target_state;
pub mod update_lock;

/// One finding of a validator: the path of the offending value (`services.web.volumes[0]`)
/// and the reason. Validators collect all of them instead of stopping at the first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Joins problems into one line for an error message.
pub(crate) fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
