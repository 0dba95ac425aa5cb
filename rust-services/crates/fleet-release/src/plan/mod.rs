//! The planner: a pure function from the current state (plain data read from the engine)
//! and the target state to an ordered list of steps. Running the steps in order reaches
//! the target; planning again from any state reached by a prefix of them reaches the same
//! end (so a supervisor killed mid-way resumes by planning again), and planning at the
//! target gives no steps.

mod desired;
mod model;
mod planner;
pub mod simulate;
#[cfg(test)]
mod tests;

pub use desired::{ContainerConfig, VolumeBinding, container_name, desired_containers};
pub use model::{
    Container, ContainerStatus, CurrentState, LABEL_APP, LABEL_APP_ID, LABEL_DIGEST, LABEL_NAME,
    LABEL_RELEASE, LABEL_SERVICE, LABEL_SUPERVISED, Owned,
};
pub use planner::{Held, Plan, PlanOptions, Step, plan};
