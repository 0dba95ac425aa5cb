//! The versions the device announces: to balena-cli (`/v2/version`) and to the fleet server
//! (registration, state report), which check them against balena's.

/// The balena supervisor API level this one follows (v3 target state and the v2 local
/// endpoints, balena supervisor 13.0.0); balena-cli wants at least 7.21.4 for `push` and
/// 9.7.0 for its live session.
pub const BALENA_SUPERVISOR_API: &str = "13.0.0";

/// The balenaOS release whose device API this one matches: open-balena-api refuses a
/// multicontainer fleet to an `os_version` below 2.11.0 and one that is not semver.
pub const BALENA_OS_COMPAT: &str = "2.95.0";

/// `os_version` as the server checks it: balena's name and API level, fleetOS's own
/// version as semver build metadata (`balenaOS 2.95.0+fleetos.0.1.0`).
pub fn os_version(fleet_version: Option<&str>) -> String {
    let build: String = fleet_version
        .unwrap_or("unknown")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "balenaOS {BALENA_OS_COMPAT}+fleetos.{}",
        build.trim_matches('.')
    )
}

/// `supervisor_version`: balena's supervisor API level with fleetOS's build (the server
/// keeps at most 20 characters).
pub fn supervisor_version() -> String {
    let full = format!(
        "{BALENA_SUPERVISOR_API}+fleet.{}",
        env!("CARGO_PKG_VERSION")
    );
    if full.len() <= 20 {
        full
    } else {
        BALENA_SUPERVISOR_API.to_string()
    }
}

/// `os_variant`: balena's words for a development and a production device.
pub fn os_variant(development_mode: bool) -> &'static str {
    if development_mode { "dev" } else { "prod" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_satisfy_the_servers_checks() {
        assert_eq!(os_version(Some("0.1.0")), "balenaOS 2.95.0+fleetos.0.1.0");
        assert_eq!(
            os_version(Some("1.0 beta")),
            "balenaOS 2.95.0+fleetos.1.0-beta"
        );
        assert_eq!(os_version(None), "balenaOS 2.95.0+fleetos.unknown");
        assert!(supervisor_version().len() <= 20);
        assert!(supervisor_version().starts_with(BALENA_SUPERVISOR_API));
    }
}
