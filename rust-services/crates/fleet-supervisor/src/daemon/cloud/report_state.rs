//! What the state report remembers between reports: the last body sent, when, the throttle
//! and backoff, the releases the server knows, the CPU counters for the next usage figure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::host_info;
use crate::daemon::backoff::Backoff;

/// Waits after failed reports.
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(5 * 60));

/// Bookkeeping of the report.
#[derive(Debug)]
pub struct ReportState {
    pub last_sent: Option<Value>,
    pub sent_at: Option<Instant>,
    pub metrics_at: Option<Instant>,
    /// No report before this (throttle, backoff after a failure).
    pub not_before: Instant,
    pub backoff: Backoff,
    /// Releases each app's targets named (commit per app): the server knows these.
    pub known_releases: BTreeMap<String, BTreeSet<String>>,
    pub metrics: host_info::Metrics,
}

impl Default for ReportState {
    fn default() -> Self {
        ReportState {
            last_sent: None,
            sent_at: None,
            metrics_at: None,
            not_before: Instant::now(),
            backoff: BACKOFF,
            known_releases: BTreeMap::new(),
            metrics: host_info::Metrics::default(),
        }
    }
}
