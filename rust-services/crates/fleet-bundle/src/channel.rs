//! Release channels: a small signed JSON on the same static server as the bundles, so a fleet
//! rolls out without a server of ours. `channel.json` names the latest version, its bundle
//! (a URL, relative to the channel's) and an optional rollout wave; `channel.json.sig` is the
//! raw ed25519 signature of its bytes by a release key (the bundles' keys).
//!
//! A wave spreads the fleet over `hours` from `start`: each device's place in it is fixed
//! (the first 8 bytes of sha256 of its id, as a fraction), so a device installs at
//! `start + place × hours` and the rollout can be stopped by pointing the channel back.

use sha2::{Digest, Sha256};

use super::BundleError;

pub const FORMAT: u32 = 1;
/// Largest channel file read.
pub const MAX_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub format: u32,
    pub version: String,
    /// The bundle's URL, absolute or relative to the channel file's.
    pub bundle: String,
    /// Device types the bundle runs on.
    pub compatible: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<Wave>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// Unix seconds when the first devices may install.
    pub start: u64,
    /// Hours over which the fleet is spread (0: all at `start`).
    pub hours: u32,
}

impl Channel {
    pub fn parse(bytes: &[u8]) -> Result<Channel, BundleError> {
        let c: Channel = serde_json::from_slice(bytes)
            .map_err(|e| BundleError::Manifest(format!("channel.json: {e}")))?;
        if c.format != FORMAT {
            return Err(BundleError::Manifest(format!(
                "channel.json: format {} (this fleetd reads format {FORMAT})",
                c.format
            )));
        }
        Ok(c)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// When the device with `device_id` may install (unix seconds).
    pub fn due(&self, device_id: &str) -> u64 {
        match self.wave {
            None => 0,
            Some(w) => w.start + (place(device_id) * f64::from(w.hours) * 3600.0) as u64,
        }
    }
}

/// The device's fixed place in a wave, in [0, 1).
pub fn place(device_id: &str) -> f64 {
    let h = Sha256::digest(device_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_spread_over_the_wave() {
        let mut early = 0;
        for i in 0..1000 {
            let p = place(&format!("device-{i}"));
            assert!((0.0..1.0).contains(&p));
            if p < 0.5 {
                early += 1;
            }
        }
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
        let c = Channel {
            format: 1,
            version: "2".into(),
            bundle: "b.fleet".into(),
            compatible: vec![],
            wave: Some(Wave {
                start: 1000,
                hours: 2,
            }),
        };
        let due = c.due("device-1");
        assert!((1000..1000 + 7200).contains(&due));
        assert!(
            Channel::parse(b"{\"format\":2,\"version\":\"1\",\"bundle\":\"b\",\"compatible\":[]}")
                .is_err()
        );
    }
}
