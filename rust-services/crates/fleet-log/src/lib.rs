//! How fleetOS programs report.

pub mod error;
