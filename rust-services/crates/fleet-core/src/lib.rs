//! Shared code of the fleetOS services and host tools.
//!
//! - [`config`]: the `config.json` model (balenaOS-compatible keys, fleetOS keys under `fleet`),
//!   validation that reports every problem with its JSON path, read-modify-write that keeps
//!   unknown keys in order.
//! - [`bootenv`]: the A/B boot state in GRUB's or U-Boot's environment.
//! - `bundle` (feature `bundle`): signed update bundles.
//! - [`error`]: one line for an error and its causes.
//! - [`fs`]: power-loss-safe file writes.
//! - [`root`]: the root prefix (`--root` / `FLEET_ROOT`) and the paths of the fleetOS contract.

pub mod base64;
pub mod bootenv;
#[cfg(feature = "bundle")]
pub mod bundle;
pub mod config;
pub mod error;
pub mod fs;
pub mod root;

pub use config::{Config, ConfigError, Problem, Severity};
pub use root::Root;
