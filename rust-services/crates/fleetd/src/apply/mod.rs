//! What `provision` and `logging` both stand on: reading config.json (and the last good copy),
//! the external effects (commands, syscalls) that only happen on the real system, the file
//! helpers, and the error of one setting. Neither subcommand module is used from here.

pub mod effects;
pub mod error;
pub mod files;
pub mod load;

pub use effects::{EffectError, Effects};
pub use error::{ItemError, LoadError};
