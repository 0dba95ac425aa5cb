//! config.json `fleet.network.wifi` entries as NetworkManager settings (`a{sa{sv}}`).

use std::collections::HashMap;
use std::fmt;

use fleet_config::WifiNetwork;
use sha2::{Digest, Sha256};
use zbus::Variant;

use super::keyfile::stable_uuid;

/// NetworkManager's connection settings: setting name → property → value.
pub type ConnectionSettings<'a> = HashMap<&'a str, HashMap<&'a str, Variant<'a>>>;

/// Connection ids fleetOS gives its Wi-Fi profiles start with this.
pub const ID_PREFIX: &str = "fleet-wifi-";

/// One Wi-Fi connection fleetOS owns. `Debug` leaves the PSK out.
#[derive(Clone, PartialEq, Eq)]
pub struct WifiProfile {
    pub id: String,
    pub uuid: String,
    pub ssid: String,
    pub hidden: bool,
    pub priority: i32,
    psk: Option<String>,
}

impl fmt::Debug for WifiProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WifiProfile")
            .field("id", &self.id)
            .field("uuid", &self.uuid)
            .field("ssid", &self.ssid)
            .field("hidden", &self.hidden)
            .field("priority", &self.priority)
            .field("psk", &self.psk.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl WifiProfile {
    pub fn from_config(net: &WifiNetwork) -> Self {
        WifiProfile {
            id: format!("{ID_PREFIX}{}", net.ssid),
            // Derived from the SSID: the same entry maps to the same connection on every run.
            uuid: stable_uuid("wifi", &net.ssid),
            ssid: net.ssid.clone(),
            hidden: net.hidden,
            priority: net.priority,
            psk: net.psk.clone(),
        }
    }

    pub fn settings(&self) -> ConnectionSettings<'_> {
        let mut s: ConnectionSettings<'_> = HashMap::new();
        s.insert(
            "connection",
            HashMap::from([
                ("id", Variant::from(self.id.as_str())),
                ("uuid", Variant::from(self.uuid.as_str())),
                ("type", Variant::from("802-11-wireless")),
                ("autoconnect-priority", Variant::from(self.priority)),
            ]),
        );
        s.insert(
            "802-11-wireless",
            HashMap::from([
                // NetworkManager takes the SSID as bytes (`ay`), not as a string.
                ("ssid", Variant::from(self.ssid.as_bytes().to_vec())),
                ("mode", Variant::from("infrastructure")),
                ("hidden", Variant::from(self.hidden)),
            ]),
        );
        if let Some(psk) = &self.psk {
            s.insert(
                "802-11-wireless-security",
                HashMap::from([
                    ("key-mgmt", Variant::from("wpa-psk")),
                    ("psk", Variant::from(psk.as_str())),
                ]),
            );
        }
        s.insert("ipv4", HashMap::from([("method", Variant::from("auto"))]));
        s.insert("ipv6", HashMap::from([("method", Variant::from("auto"))]));
        s
    }

    /// SHA-256 over every field (PSK included), to notice a change without storing the PSK.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.id.as_str(),
            self.uuid.as_str(),
            self.ssid.as_str(),
            if self.hidden { "hidden" } else { "visible" },
            &self.priority.to_string(),
            self.psk.as_deref().unwrap_or("\u{0}open"),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(psk: Option<&str>) -> WifiNetwork {
        WifiNetwork {
            ssid: "Office".into(),
            psk: psk.map(String::from),
            hidden: true,
            priority: 5,
        }
    }

    #[test]
    fn settings_carry_ssid_as_bytes_and_security_only_with_psk() {
        let p = WifiProfile::from_config(&net(Some("secretpass")));
        let s = p.settings();
        assert_eq!(
            s["802-11-wireless"]["ssid"],
            Variant::from(b"Office".to_vec())
        );
        assert_eq!(
            s["802-11-wireless"]["ssid"].value_signature().to_string(),
            "ay"
        );
        assert_eq!(s["connection"]["id"], Variant::from("fleet-wifi-Office"));
        assert_eq!(s["connection"]["autoconnect-priority"], Variant::from(5i32));
        assert!(s.contains_key("802-11-wireless-security"));
        let open = WifiProfile::from_config(&net(None));
        assert!(!open.settings().contains_key("802-11-wireless-security"));
        assert_eq!(open.uuid, p.uuid);
    }

    #[test]
    fn fingerprint_follows_the_psk_and_debug_hides_it() {
        let a = WifiProfile::from_config(&net(Some("secretpass")));
        let b = WifiProfile::from_config(&net(Some("otherpass1")));
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert!(!format!("{a:?}").contains("secretpass"));
    }
}
