//! How fleetOS programs report: [`logger`] (journal or stderr, one setup for every binary)
//! and [`error`] (an error and its causes in one line).

pub mod error;
pub mod logger;
