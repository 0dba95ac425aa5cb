//! Values that go into HTTP headers or request lines (`Authorization: Bearer <deviceApiKey>`,
//! the device UUID in paths, the API endpoint's host): visible ASCII only and bounded, so a
//! stray newline or space in config.json cannot split or corrupt a request.

/// Longest `deviceApiKey` accepted (balena's are 32 characters).
pub const MAX_API_KEY: usize = 256;
/// Longest device UUID accepted (balena's are 32 or 62 hexadecimal characters).
pub const MAX_UUID: usize = 64;
/// Longest `apiEndpoint` accepted.
pub const MAX_URL: usize = 2048;

/// Why `value` cannot go into an HTTP header, or `None`: it must be 1 to `max` bytes of
/// visible ASCII (0x21-0x7e: no space, control character or non-ASCII).
pub fn problem(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".to_string());
    }
    if value.len() > max {
        return Some(format!("is {} bytes long, at most {max}", value.len()));
    }
    value
        .bytes()
        .position(|b| !(0x21..=0x7e).contains(&b))
        .map(|i| {
            format!(
                "has a character that cannot go into an HTTP header at byte {i} (only visible ASCII, no spaces)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_ascii_within_the_length() {
        assert_eq!(
            problem("4e2b6a1c9d8f7e6a5b4c3d2e1f0a9b8c", MAX_API_KEY),
            None
        );
        assert!(problem("", 8).unwrap().contains("empty"));
        assert!(problem("abcdefghi", 8).unwrap().contains("at most 8"));
        for bad in [
            "key\r\nX-Injected: 1",
            "two words",
            "tab\there",
            "caf\u{e9}",
            "nul\0",
        ] {
            assert!(problem(bad, 64).unwrap().contains("HTTP header"), "{bad:?}");
        }
    }
}
