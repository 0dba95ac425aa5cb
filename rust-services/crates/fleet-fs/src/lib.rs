//! The device's files as the fleetOS services see them.
//!
//! - [`root`]: the root prefix (`--root DIR` / `FLEET_ROOT`) and the fixed paths of the design
//!   contract (DESIGN.md, "Disk layout" and "State binds").
//! - [`keyvalue`]: the strict reader of the image's `KEY=value` settings files;
//! - the power-loss-safe writes every service uses ([`atomic_write`], [`write_if_changed`]).

mod atomic;
pub mod keyvalue;
pub mod root;

pub use atomic::*;
pub use keyvalue::{KeyValueError, KeyValues};
pub use root::Root;
