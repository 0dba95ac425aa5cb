//! The device's identity on the fleet server, and how its random parts are made.

/// The device's identity on the server once registered: its UUID and the key it
/// authenticates with (`Authorization: Bearer`, `d_<uuid>` at the registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uuid: String,
    pub device_api_key: String,
}

impl Identity {
    pub fn registry_login(&self) -> fleet_engine::RegistryLogin {
        fleet_engine::RegistryLogin {
            username: format!("d_{}", self.uuid),
            password: self.device_api_key.clone(),
        }
    }
}

/// A random lower-case hex string of `bytes` random bytes (balena's UUIDs and keys).
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_are_hex_of_the_asked_length() {
        let k = random_hex(16).unwrap();
        assert_eq!(k.len(), 32);
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(k, random_hex(16).unwrap());
    }
}
