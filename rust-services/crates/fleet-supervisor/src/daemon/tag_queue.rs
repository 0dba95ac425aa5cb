//! The device tags `PATCH /v2/device/tags` queued for the server (balena's `targetTags`) and
//! those last reported (`reportedTags`), kept in the data directory. Plain data: the sender
//! is `tags.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use fleet_log::error::one_line;
use serde::{Deserialize, Serialize};

/// The queue in the data directory (host `/mnt/data/fleet-supervisor/device-tags.json`).
pub const TAGS_FILE: &str = "device-tags.json";

/// Tags last reported to the server and tags still to send (balena's `reportedTags`,
/// `targetTags`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagQueue {
    pub reported: BTreeMap<String, String>,
    pub target: BTreeMap<String, String>,
}

impl TagQueue {
    pub fn load(data_dir: &Path) -> TagQueue {
        std::fs::read(data_dir.join(TAGS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, data_dir: &Path) {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let saved = fleet_fs::ensure_dir(data_dir)
            .and_then(|()| fleet_fs::atomic_write(&data_dir.join(TAGS_FILE), &bytes, 0o600));
        if let Err(e) = saved {
            log::error!("device tags: cannot keep the queue: {}", one_line(&e));
        }
    }

    /// Queues `tags`; a tag set back to its reported value and not queued is skipped, as
    /// balena. Returns whether anything was queued.
    pub fn set(&mut self, tags: BTreeMap<String, String>) -> bool {
        let mut changed = false;
        for (key, value) in tags {
            if self.target.get(&key) == Some(&value) {
                continue;
            }
            if !self.target.contains_key(&key) && self.reported.get(&key) == Some(&value) {
                continue;
            }
            self.target.insert(key, value);
            changed = true;
        }
        changed
    }

    /// What still differs from the reported tags (queued tags equal to them are dropped).
    pub fn diff(&mut self) -> BTreeMap<String, String> {
        let reported = &self.reported;
        self.target.retain(|k, v| reported.get(k) != Some(v));
        self.target.clone()
    }

    /// `sent` reached the server.
    pub fn reported(&mut self, sent: &BTreeMap<String, String>) {
        for (k, v) in sent {
            self.reported.insert(k.clone(), v.clone());
            if self.target.get(k) == Some(v) {
                self.target.remove(k);
            }
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A tag map from pairs (also for the route's tests).
    pub fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_queue_sends_only_what_differs_from_the_reported_tags() {
        let mut q = TagQueue::default();
        assert!(q.set(tags(&[("room", "lab"), ("rack", "3")])));
        assert_eq!(q.diff(), tags(&[("rack", "3"), ("room", "lab")]));
        q.reported(&tags(&[("rack", "3"), ("room", "lab")]));
        assert!(q.diff().is_empty());
        // Setting a tag back to its reported value queues nothing.
        assert!(!q.set(tags(&[("room", "lab")])));
        assert!(q.set(tags(&[("room", "hall")])));
        assert_eq!(q.diff(), tags(&[("room", "hall")]));
        // Queued then set back: nothing left to send.
        q.set(tags(&[("room", "lab")]));
        assert!(q.diff().is_empty());
    }
}
