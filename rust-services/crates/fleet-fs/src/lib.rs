//! The device's files as the fleetOS services see them.
//!
//! - [`root`]: the root prefix (`--root DIR` / `FLEET_ROOT`) and the fixed paths of the design
//!   contract (DESIGN.md, "Disk layout" and "State binds").
//! - the power-loss-safe writes every service uses ([`atomic_write`], [`write_if_changed`]).

mod atomic;
pub mod root;

pub use atomic::*;
pub use root::Root;
