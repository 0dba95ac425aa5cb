//! The record of the last trial boot (`/var/lib/fleet/trial.json`, on fleet-state), so
//! `fleetd update status` can say how the last update ended. The bootloader clears a failed
//! trial without telling anyone; this record plus the boot state tells it apart from a
//! trial that is still running or one that was marked good.

use fleet_bootenv::{BootState, Slot};
use fleet_fs::Root;
use fleet_log::error::Chain;

pub const TRIAL_RECORD: &str = "/var/lib/fleet/trial.json";

/// How a trial ended, as far as fleetd wrote it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recorded {
    /// Armed by `install`; nobody has judged it yet.
    Armed,
    /// `mark-good` made the slot active.
    Good,
    /// `fleetd health` found the trial boot unhealthy and rebooted.
    Unhealthy,
    /// `rollback` dropped it.
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrialRecord {
    pub slot: Slot,
    pub version: String,
    pub tries: u32,
    pub recorded: Recorded,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The outcome `status` reports: the record read against the boot state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Armed and the bootloader still has tries left (or is running it now).
    Pending,
    Good,
    /// The bootloader rolled back, or health rejected the trial.
    Failed,
    RolledBack,
}

impl TrialRecord {
    pub fn outcome(&self, state: &BootState) -> Outcome {
        match self.recorded {
            Recorded::Good => Outcome::Good,
            Recorded::RolledBack => Outcome::RolledBack,
            _ if state.trial == Some(self.slot) => Outcome::Pending,
            // mark-good's env write landed but its record write did not (power cut).
            _ if state.active == self.slot => Outcome::Good,
            _ => Outcome::Failed,
        }
    }
}

pub fn read(root: &Root) -> Option<TrialRecord> {
    let bytes = std::fs::read(root.path(TRIAL_RECORD)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn write(root: &Root, record: &TrialRecord) -> Result<(), fleet_fs::FsError> {
    let mut bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
    bytes.push(b'\n');
    fleet_fs::write_if_changed(&root.path(TRIAL_RECORD), &bytes, 0o644).map(|_| ())
}

/// Updates the record of `slot`'s trial, if that is the one on record. Failing to write it
/// only costs the status report, so the error is logged, not returned.
pub fn settle(root: &Root, slot: Slot, recorded: Recorded, reason: Option<String>) {
    let Some(mut record) = read(root) else { return };
    if record.slot != slot {
        return;
    }
    record.recorded = recorded;
    record.reason = reason;
    if let Err(e) = write(root, &record) {
        log::warn!("{}", Chain(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(recorded: Recorded) -> TrialRecord {
        TrialRecord {
            slot: Slot::B,
            version: "2".into(),
            tries: 3,
            recorded,
            reason: None,
        }
    }

    fn state(active: Slot, trial: Option<Slot>) -> BootState {
        BootState {
            active,
            trial,
            tries: 0,
        }
    }

    #[test]
    fn outcome_follows_the_boot_state() {
        let armed = record(Recorded::Armed);
        assert_eq!(
            armed.outcome(&state(Slot::A, Some(Slot::B))),
            Outcome::Pending
        );
        assert_eq!(armed.outcome(&state(Slot::A, None)), Outcome::Failed);
        assert_eq!(armed.outcome(&state(Slot::B, None)), Outcome::Good);
        let unhealthy = record(Recorded::Unhealthy);
        assert_eq!(
            unhealthy.outcome(&state(Slot::A, Some(Slot::B))),
            Outcome::Pending
        );
        assert_eq!(unhealthy.outcome(&state(Slot::A, None)), Outcome::Failed);
        assert_eq!(
            record(Recorded::Good).outcome(&state(Slot::A, None)),
            Outcome::Good
        );
        assert_eq!(
            record(Recorded::RolledBack).outcome(&state(Slot::A, None)),
            Outcome::RolledBack
        );
    }

    #[test]
    fn settle_only_touches_the_recorded_slot() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        write(&root, &record(Recorded::Armed)).unwrap();
        settle(&root, Slot::A, Recorded::Good, None);
        assert_eq!(read(&root).unwrap().recorded, Recorded::Armed);
        settle(&root, Slot::B, Recorded::Unhealthy, Some("x".into()));
        let r = read(&root).unwrap();
        assert_eq!(
            (r.recorded, r.reason.as_deref()),
            (Recorded::Unhealthy, Some("x"))
        );
    }
}
