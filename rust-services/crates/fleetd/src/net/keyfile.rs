//! Checks a NetworkManager keyfile from the boot partition before it reaches
//! `/etc/NetworkManager/system-connections`, and gives it a stable UUID when it has none.
//!
//! The checks are the ones that would otherwise make NetworkManager drop the file silently at
//! boot. Error messages name the line and the key, never a value: values may be secrets.

use sha2::{Digest, Sha256};

/// Keyfiles larger than this are refused (NetworkManager's own profiles are a few hundred bytes).
pub const MAX_KEYFILE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyfileError {
    #[error("larger than {MAX_KEYFILE_BYTES} bytes")]
    TooLarge,
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("line {0}: not a [section], key=value, comment or blank line")]
    Syntax(usize),
    #[error("line {0}: key outside any [section]")]
    KeyOutsideSection(usize),
    #[error("no [connection] section")]
    NoConnectionSection,
    #[error("[connection] has no {0}=")]
    MissingKey(&'static str),
    #[error("[connection] uuid is not a well-formed UUID")]
    BadUuid,
    #[error("file name {0:?} is not a plain file name NetworkManager loads")]
    BadName(String),
}

/// A keyfile that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyfile {
    pub id: String,
    pub uuid: String,
    pub kind: String,
    /// The text to install: the original bytes, plus a `uuid=` line when it had none.
    pub text: String,
}

/// Whether this boot-partition file is meant as a connection: not hidden (macOS `._` files),
/// not a backup NetworkManager itself would ignore, and not `*.ignore` — balenaOS ships its
/// `resin-sample.ignore` disabled that way and users enable it by renaming.
pub fn is_candidate(name: &str) -> bool {
    !(name.starts_with('.')
        || name.ends_with('~')
        || [
            ".ignore",
            ".bak",
            ".tmp",
            ".swp",
            ".orig",
            ".rej",
            ".dpkg-old",
            ".rpmnew",
        ]
        .iter()
        .any(|s| name.ends_with(s)))
}

/// Validates `bytes` read from the boot file `name`.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Keyfile, KeyfileError> {
    if name.is_empty() || name.contains('/') || !name.chars().all(|c| !c.is_control()) {
        return Err(KeyfileError::BadName(name.to_string()));
    }
    if bytes.len() > MAX_KEYFILE_BYTES {
        return Err(KeyfileError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| KeyfileError::NotUtf8)?;

    let mut section: Option<&str> = None;
    let mut seen_connection = false;
    let (mut id, mut uuid, mut kind) = (None, None, None);
    // Byte offset just after the [connection] header line, where a generated uuid goes.
    let mut connection_body_at = 0;
    let mut offset = 0;
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        offset += raw.len();
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .filter(|n| !n.is_empty() && !n.contains(['[', ']']))
                .ok_or(KeyfileError::Syntax(line_no))?;
            section = Some(name);
            if name == "connection" && !seen_connection {
                seen_connection = true;
                connection_body_at = offset;
            }
            continue;
        }
        let (key, value) = line.split_once('=').ok_or(KeyfileError::Syntax(line_no))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(KeyfileError::Syntax(line_no));
        }
        let Some(current) = section else {
            return Err(KeyfileError::KeyOutsideSection(line_no));
        };
        if current == "connection" {
            let value = value.trim().to_string();
            match key {
                "id" => id = Some(value),
                "uuid" => uuid = Some(value),
                "type" => kind = Some(value),
                _ => {}
            }
        }
    }
    if !seen_connection {
        return Err(KeyfileError::NoConnectionSection);
    }
    let id = id
        .filter(|v| !v.is_empty())
        .ok_or(KeyfileError::MissingKey("id"))?;
    let kind = kind
        .filter(|v| !v.is_empty())
        .ok_or(KeyfileError::MissingKey("type"))?;
    let (uuid, text) = match uuid {
        Some(u) if is_uuid(&u) => (u.to_ascii_lowercase(), text.to_string()),
        Some(_) => return Err(KeyfileError::BadUuid),
        None => {
            let u = stable_uuid("keyfile", name);
            let mut with_uuid = String::with_capacity(text.len() + 45);
            with_uuid.push_str(&text[..connection_body_at]);
            if !with_uuid.ends_with('\n') {
                with_uuid.push('\n');
            }
            with_uuid.push_str(&format!("uuid={u}\n"));
            with_uuid.push_str(&text[connection_body_at..]);
            (u, with_uuid)
        }
    };
    Ok(Keyfile {
        id,
        uuid,
        kind,
        text,
    })
}

/// `8-4-4-4-12` hex digits, the form NetworkManager accepts.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A UUID derived from `kind` and `name`, so re-running the import yields the same one
/// (RFC 9562 version 8, "custom": the first 128 bits of SHA-256).
pub fn stable_uuid(kind: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("fleetos-{kind}:{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BALENA_SAMPLE: &str = "[connection]\nid=resin-wifi\ntype=wifi\n\n[wifi]\nhidden=true\nmode=infrastructure\nssid=My_Wifi_Ssid\n\n[ipv4]\nmethod=auto\n\n[ipv6]\naddr-gen-mode=stable-privacy\nmethod=auto\n\n[wifi-security]\nauth-alg=open\nkey-mgmt=wpa-psk\npsk=super_secret_wifi_password\n";

    #[test]
    fn balena_sample_gets_a_stable_uuid_and_keeps_its_text() {
        let k = parse("resin-wifi", BALENA_SAMPLE.as_bytes()).unwrap();
        assert_eq!(k.id, "resin-wifi");
        assert_eq!(k.kind, "wifi");
        assert!(is_uuid(&k.uuid));
        assert_eq!(k, parse("resin-wifi", BALENA_SAMPLE.as_bytes()).unwrap());
        assert!(
            k.text
                .starts_with(&format!("[connection]\nuuid={}\nid=resin-wifi\n", k.uuid))
        );
        assert_eq!(
            k.text.replace(&format!("uuid={}\n", k.uuid), ""),
            BALENA_SAMPLE
        );
    }

    #[test]
    fn existing_uuid_is_kept() {
        let t = "[connection]\nid=a\nuuid=0B6E7F2E-9A57-4C0B-8F00-3A2B1C4D5E6F\ntype=ethernet\n";
        let k = parse("a.nmconnection", t.as_bytes()).unwrap();
        assert_eq!(k.uuid, "0b6e7f2e-9a57-4c0b-8f00-3a2b1c4d5e6f");
        assert_eq!(k.text, t);
    }

    #[test]
    fn refusals_name_the_reason_without_values() {
        let cases: &[(&[u8], KeyfileError)] = &[
            (b"[connection\nid=a\n", KeyfileError::Syntax(1)),
            (b"id=a\n[connection]\n", KeyfileError::KeyOutsideSection(1)),
            (b"[wifi]\nssid=x\n", KeyfileError::NoConnectionSection),
            (b"[connection]\ntype=wifi\n", KeyfileError::MissingKey("id")),
            (b"[connection]\nid=x\n", KeyfileError::MissingKey("type")),
            (
                b"[connection]\nid=x\ntype=wifi\nuuid=nope\n",
                KeyfileError::BadUuid,
            ),
            (b"[connection]\nid=\xff\n", KeyfileError::NotUtf8),
            (
                b"[connection]\nid=x\ntype=wifi\n[wifi-security]\npsk secret\n",
                KeyfileError::Syntax(5),
            ),
        ];
        for (bytes, want) in cases {
            let err = parse("f", bytes).unwrap_err();
            assert_eq!(&err, want);
            assert!(!err.to_string().contains("secret"));
        }
        assert_eq!(
            parse("f", &vec![b'#'; MAX_KEYFILE_BYTES + 1]).unwrap_err(),
            KeyfileError::TooLarge
        );
    }

    #[test]
    fn candidates_skip_hidden_and_backup_files() {
        assert!(is_candidate("home.nmconnection"));
        assert!(is_candidate("resin-wifi"));
        assert!(!is_candidate(".DS_Store"));
        assert!(!is_candidate("._home.nmconnection"));
        assert!(!is_candidate("home~"));
        assert!(!is_candidate("resin-sample.ignore"));
    }

    #[test]
    fn stable_uuids_are_well_formed_and_distinct() {
        let a = stable_uuid("wifi", "a");
        assert!(is_uuid(&a));
        assert_eq!(&a[14..15], "8");
        assert_eq!(a, stable_uuid("wifi", "a"));
        assert_ne!(a, stable_uuid("wifi", "b"));
        assert_ne!(a, stable_uuid("keyfile", "a"));
    }
}
