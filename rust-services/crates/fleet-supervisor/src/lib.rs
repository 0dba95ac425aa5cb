//! fleetOS supervisor: running releases on the engine. What to run and in which order is
//! decided offline by `fleet-release` (compose files, feature labels, target state, the
//! planner); this crate does it:
//!
//! - [`lock`]: the per-app update-lock directories and the flock check;
//! - [`target_file`]: reading target-state files, the local-mode target file;
//! - [`daemon`]: `fleet-supervisor run`: target polling, the reconcile loop and the HTTP API,
//!   driving the engine through its `Reconciler` trait (implemented by [`exec`]);
//! - [`exec`]: the executor, running plans against the engine through the shared Engine
//!   API client (`fleet-engine`).

pub mod daemon;
pub mod exec;
pub mod lock;
pub mod target_file;
