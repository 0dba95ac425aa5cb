//! Validation of `config.json`: every problem at once, each with its JSON path.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::dupkeys;
use super::problem::{Problem, Severity};
use super::settings::{Connectivity, Settings, WifiNetwork};

/// Largest `config.json` accepted. balenaOS files are a few KiB; this leaves room for many
/// udev rules and keys while refusing a wrong file copied in by mistake.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// SSH public key types OpenSSH accepts in `authorized_keys`.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

fn problem(severity: Severity, path: &str, message: impl Into<String>) -> Problem {
    Problem {
        severity,
        path: path.to_string(),
        message: message.into(),
    }
}

/// Bytes → JSON object, refusing oversize files, invalid UTF-8, syntax errors, duplicate
/// keys and a non-object top level.
pub(super) fn parse_document(bytes: &[u8]) -> Result<Map<String, Value>, Vec<Problem>> {
    let err = |msg: String| vec![problem(Severity::Error, "(file)", msg)];
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(err(format!(
            "file is larger than the {MAX_CONFIG_BYTES}-byte limit"
        )));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        return Err(err(format!("invalid UTF-8 at byte {at} (line {line})")));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        err(format!(
            "not valid JSON: {} at line {} column {}",
            syntax_reason(&e),
            e.line(),
            e.column()
        ))
    })?;
    let dups = dupkeys::find(bytes);
    if !dups.is_empty() {
        return Err(dups
            .iter()
            .map(|p| problem(Severity::Error, p, "duplicate key (only one may be given)"))
            .collect());
    }
    match value {
        Value::Object(map) => Ok(map),
        other => Err(err(format!(
            "top level must be a JSON object, found {}",
            kind(&other)
        ))),
    }
}

fn syntax_reason(e: &serde_json::Error) -> String {
    // serde_json appends " at line X column Y"; we print those separately.
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Collects problems while walking the document.
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn error(&mut self, path: &str, msg: impl Into<String>) {
        self.problems.push(problem(Severity::Error, path, msg));
    }

    fn warn(&mut self, path: &str, msg: impl Into<String>) {
        self.problems.push(problem(Severity::Warning, path, msg));
    }

    fn wrong_type(&mut self, path: &str, want: &str, got: &Value) {
        self.error(path, format!("must be {want}, found {}", kind(got)));
    }

    fn bool(&mut self, path: &str, v: Option<&Value>) -> Option<bool> {
        match v? {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(path, "true or false", other);
                None
            }
        }
    }

    /// A whole number; balena tools write some of them as strings.
    fn whole_number(&mut self, path: &str, v: Option<&Value>) -> Option<u64> {
        match v? {
            Value::Null => None,
            Value::Number(n) if n.is_u64() => n.as_u64(),
            Value::String(t) if t.trim().parse::<u64>().is_ok() => t.trim().parse().ok(),
            other => {
                self.wrong_type(path, "a whole number", other);
                None
            }
        }
    }

    fn string<'v>(&mut self, path: &str, v: Option<&'v Value>) -> Option<&'v str> {
        match v? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    fn object<'v>(&mut self, path: &str, v: Option<&'v Value>) -> Option<&'v Map<String, Value>> {
        match v? {
            Value::Object(m) => Some(m),
            other => {
                self.wrong_type(path, "an object", other);
                None
            }
        }
    }

    fn unknown_keys(&mut self, path: &str, obj: &Map<String, Value>, known: &[&str]) {
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            self.warn(
                &format!("{path}.{key}"),
                "unknown key, ignored by fleetOS (kept in the file)",
            );
        }
    }
}

/// Validates the document and builds the typed settings from it.
pub(super) fn check(doc: &Map<String, Value>) -> (Settings, Vec<Problem>) {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let mut s = Settings::default();

    if let Some(h) = c.string("hostname", doc.get("hostname")) {
        match hostname_problem(h) {
            None => s.hostname = Some(h.to_string()),
            Some(why) => c.error("hostname", why),
        }
    }
    s.persistent_logging = c
        .bool("persistentLogging", doc.get("persistentLogging"))
        .unwrap_or(false);
    s.development_mode = c
        .bool("developmentMode", doc.get("developmentMode"))
        .unwrap_or(false);
    if let Some(v) = doc.get("ntpServers") {
        s.ntp_servers = server_list(
            &mut c,
            "ntpServers",
            v,
            |e| is_valid_ip(e) || is_valid_hostname(e),
            "not a hostname or IP address",
        );
    }
    if let Some(v) = doc.get("dnsServers") {
        s.dns_servers = if v.as_str() == Some("null") {
            // balenaOS: "null" disables the default (Google) DNS server.
            Some(Vec::new())
        } else {
            Some(server_list(
                &mut c,
                "dnsServers",
                v,
                is_valid_ip,
                "not an IP address",
            ))
        };
    }
    if let Some(os) = c.object("os", doc.get("os")) {
        check_os(&mut c, os, &mut s);
    }
    check_supervisor_keys(&mut c, doc, &mut s);
    if let Some(fleet) = c.object("fleet", doc.get("fleet")) {
        check_fleet(&mut c, fleet, &mut s);
    }
    (s, c.problems)
}

/// A list of servers given as balenaOS does (one space-separated string) or as an array.
fn server_list(
    c: &mut Checker,
    path: &str,
    v: &Value,
    valid: impl Fn(&str) -> bool,
    reason: &str,
) -> Vec<String> {
    let entries: Vec<(String, &str)> = match v {
        Value::String(s) => s
            .split_whitespace()
            .enumerate()
            .map(|(i, e)| (format!("{path}[{i}]"), e))
            .collect(),
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match item {
                    Value::String(e) => out.push((p, e.as_str())),
                    other => c.wrong_type(&p, "a string", other),
                }
            }
            out
        }
        other => {
            c.wrong_type(
                path,
                "a space-separated string or an array of strings",
                other,
            );
            return Vec::new();
        }
    };
    let mut good = Vec::new();
    for (p, e) in entries {
        if valid(e) {
            good.push(e.to_string());
        } else {
            c.error(&p, format!("{e:?} is {reason}"));
        }
    }
    good
}

fn check_os(c: &mut Checker, os: &Map<String, Value>, s: &mut Settings) {
    match os.get("sshKeys") {
        None => {}
        Some(Value::Array(keys)) => {
            for (i, k) in keys.iter().enumerate() {
                let p = format!("os.sshKeys[{i}]");
                let Some(k) = c.string(&p, Some(k)) else {
                    continue;
                };
                match ssh_key_problem(k) {
                    None if k.trim_start().starts_with("ssh-dss ") => c.warn(
                        &p,
                        "ssh-dss (DSA) keys are refused by current OpenSSH; key ignored",
                    ),
                    None => s.ssh_keys.push(k.trim().to_string()),
                    Some(why) => c.error(&p, why),
                }
            }
        }
        Some(other) => c.wrong_type("os.sshKeys", "an array of strings", other),
    }
    if let Some(rules) = c.object("os.udevRules", os.get("udevRules")) {
        for (name, rule) in rules {
            let p = format!("os.udevRules.{name}");
            let Some(rule) = c.string(&p, Some(rule)) else {
                continue;
            };
            if !is_safe_file_stem(name) {
                c.error(
                    &p,
                    "rule name must use only letters, digits, '-', '_' and '.'",
                );
            } else if rule.trim().is_empty() {
                c.error(&p, "rule is empty");
            } else {
                s.udev_rules.insert(name.clone(), rule.to_string());
            }
        }
    }
    if let Some(net) = c.object("os.network", os.get("network")) {
        if let Some(conn) = c.object("os.network.connectivity", net.get("connectivity")) {
            s.connectivity = check_connectivity(c, conn);
        }
        c.unknown_keys("os.network", net, &["connectivity", "wifi"]);
    }
    c.unknown_keys("os", os, &["sshKeys", "udevRules", "network"]);
}

fn check_connectivity(c: &mut Checker, conn: &Map<String, Value>) -> Option<Connectivity> {
    const P: &str = "os.network.connectivity";
    let uri = c.string(&format!("{P}.uri"), conn.get("uri"));
    let uri = match uri {
        Some(u) if is_http_url(u) => Some(u.to_string()),
        Some(u) => {
            c.error(
                &format!("{P}.uri"),
                format!("{u:?} is not an http:// or https:// URL"),
            );
            None
        }
        None => {
            if !conn.contains_key("uri") {
                c.error(
                    &format!("{P}.uri"),
                    "missing (the URL NetworkManager checks)",
                );
            }
            None
        }
    };
    // balenaOS writes the interval as a string ("3600"); a number is accepted too.
    let interval = match conn.get("interval") {
        None => Some(300),
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(Value::String(t)) if t.parse::<u64>().is_ok() => t.parse().ok(),
        Some(other) => {
            c.error(
                &format!("{P}.interval"),
                format!(
                    "must be a whole number of seconds, found {}",
                    match other {
                        Value::String(t) => format!("{t:?}"),
                        v => kind(v).to_string(),
                    }
                ),
            );
            None
        }
    };
    let response = c
        .string(&format!("{P}.response"), conn.get("response"))
        .map(str::to_string);
    c.unknown_keys(P, conn, &["uri", "interval", "response"]);
    Some(Connectivity {
        uri: uri?,
        interval: interval?,
        response,
    })
}

fn check_supervisor_keys(c: &mut Checker, doc: &Map<String, Value>, s: &mut Settings) {
    let sv = &mut s.supervisor;
    sv.uuid = c.string("uuid", doc.get("uuid")).map(str::to_string);
    if let Some(u) = &sv.uuid
        && (u.is_empty() || !u.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        c.error("uuid", "must be a non-empty hexadecimal string");
    } else if let Some(u) = &sv.uuid
        && let Some(why) = crate::header::problem(u, crate::header::MAX_UUID)
    {
        c.error("uuid", why);
    }
    sv.api_endpoint = c
        .string("apiEndpoint", doc.get("apiEndpoint"))
        .map(str::to_string);
    if let Some(e) = &sv.api_endpoint
        && !is_http_url(e)
    {
        c.error(
            "apiEndpoint",
            format!("{e:?} is not an http:// or https:// URL"),
        );
    } else if let Some(e) = &sv.api_endpoint
        && let Some(why) = crate::header::problem(e, crate::header::MAX_URL)
    {
        c.error("apiEndpoint", why);
    }
    sv.device_api_key = c
        .string("deviceApiKey", doc.get("deviceApiKey"))
        .map(str::to_string);
    // Sent as `Authorization: Bearer <deviceApiKey>`.
    if let Some(k) = &sv.device_api_key
        && let Some(why) = crate::header::problem(k, crate::header::MAX_API_KEY)
    {
        c.error("deviceApiKey", why);
    }
    // balena tools leave `"apiKey": null` behind once registered.
    let provisioning_key = doc.get("apiKey").filter(|v| !v.is_null());
    sv.provisioning_key = c.string("apiKey", provisioning_key).map(str::to_string);
    if let Some(k) = &sv.provisioning_key
        && let Some(why) = crate::header::problem(k, crate::header::MAX_API_KEY)
    {
        c.error("apiKey", why);
    }
    sv.registered_at = c.whole_number("registered_at", doc.get("registered_at"));
    sv.device_id = c.whole_number("deviceId", doc.get("deviceId"));
    sv.device_type = c
        .string("deviceType", doc.get("deviceType"))
        .map(str::to_string);
    sv.application_id = match doc.get("applicationId") {
        None => None,
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(Value::String(t)) => Some(t.clone()),
        Some(other) => {
            c.wrong_type("applicationId", "a whole number or a string", other);
            None
        }
    };
    sv.listen_port = port(c, "listenPort", doc.get("listenPort"), false);
    // Written into the OpenVPN config's `remote` line: a hostname or an IP address only.
    if let Some(e) = c.string("vpnEndpoint", doc.get("vpnEndpoint")) {
        if is_valid_ip(e) || is_valid_hostname(e) {
            sv.vpn_endpoint = Some(e.to_string());
        } else {
            c.error(
                "vpnEndpoint",
                format!("{e:?} is not a hostname or IP address"),
            );
        }
    }
    // balena tools write a number; older files a numeric string.
    sv.vpn_port = port(c, "vpnPort", doc.get("vpnPort"), true);
}

/// A port number 1–65535 (`numeric_string`: `"443"` is accepted too).
fn port(c: &mut Checker, path: &str, v: Option<&Value>, numeric_string: bool) -> Option<u16> {
    let v = v?;
    let n = match v {
        Value::String(t) if numeric_string => t.parse::<u64>().ok(),
        other => other.as_u64(),
    };
    let p = n.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0);
    if p.is_none() {
        c.error(path, "must be a port number from 1 to 65535");
    }
    p
}

fn check_fleet(c: &mut Checker, fleet: &Map<String, Value>, s: &mut Settings) {
    if let Some(net) = c.object("fleet.network", fleet.get("network")) {
        match net.get("wifi") {
            None => {}
            Some(Value::Array(list)) => {
                for (i, entry) in list.iter().enumerate() {
                    let p = format!("fleet.network.wifi[{i}]");
                    if let Some(obj) = c.object(&p, Some(entry))
                        && let Some(w) = check_wifi(c, &p, obj)
                    {
                        if s.fleet.wifi.iter().any(|o| o.ssid == w.ssid) {
                            c.error(
                                &format!("{p}.ssid"),
                                format!("{:?} is listed twice", w.ssid),
                            );
                        } else {
                            s.fleet.wifi.push(w);
                        }
                    }
                }
            }
            Some(other) => c.wrong_type("fleet.network.wifi", "an array of objects", other),
        }
        c.unknown_keys("fleet.network", net, &["wifi"]);
    }
    if let Some(sup) = c.object("fleet.supervisor", fleet.get("supervisor")) {
        if let Some(img) = c.string("fleet.supervisor.image", sup.get("image")) {
            if is_image_reference(img) {
                s.fleet.supervisor_image = Some(img.to_string());
            } else {
                c.error(
                    "fleet.supervisor.image",
                    format!("{img:?} is not a container image reference (name[:tag][@digest])"),
                );
            }
        }
        c.unknown_keys("fleet.supervisor", sup, &["image", "rootCA"]);
    }
    if let Some(log) = c.object("fleet.logging", fleet.get("logging")) {
        if let Some(max) = c.string("fleet.logging.maxUse", log.get("maxUse")) {
            if is_journald_size(max) {
                s.fleet.logging_max_use = Some(max.to_string());
            } else {
                c.error(
                    "fleet.logging.maxUse",
                    format!("{max:?} is not a size such as 32M or 1G"),
                );
            }
        }
        c.unknown_keys("fleet.logging", log, &["maxUse"]);
    }
    if let Some(update) = c.object("fleet.update", fleet.get("update")) {
        if let Some(url) = c.string("fleet.update.url", update.get("url")) {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() <= 2048
                && url.bytes().all(|b| b.is_ascii_graphic());
            if ok {
                s.fleet.update_url = Some(url.to_string());
            } else {
                c.error(
                    "fleet.update.url",
                    format!("{url:?} is not an http:// or https:// URL (visible ASCII, at most 2048 bytes)"),
                );
            }
        }
        c.unknown_keys("fleet.update", update, &["url"]);
    }
    if let Some(vpn) = c.object("fleet.vpn", fleet.get("vpn")) {
        s.fleet.vpn_enabled = c
            .bool("fleet.vpn.enabled", vpn.get("enabled"))
            .unwrap_or(false);
        c.unknown_keys("fleet.vpn", vpn, &["enabled"]);
    }
    c.unknown_keys(
        "fleet",
        fleet,
        &["network", "supervisor", "logging", "update", "vpn"],
    );
}

fn check_wifi(c: &mut Checker, p: &str, obj: &Map<String, Value>) -> Option<WifiNetwork> {
    let ssid = match c.string(&format!("{p}.ssid"), obj.get("ssid")) {
        Some(t) if !t.is_empty() && t.len() <= 32 => Some(t.to_string()),
        Some(_) => {
            c.error(&format!("{p}.ssid"), "must be 1 to 32 bytes");
            None
        }
        None => {
            if !obj.contains_key("ssid") {
                c.error(&format!("{p}.ssid"), "missing");
            }
            None
        }
    };
    let psk = c.string(&format!("{p}.psk"), obj.get("psk"));
    let psk_ok = match psk {
        None => true,
        Some(k) if k.len() == 64 => k.bytes().all(|b| b.is_ascii_hexdigit()),
        Some(k) => (8..=63).contains(&k.chars().count()) && k.is_ascii(),
    };
    if !psk_ok {
        // Never echo the secret itself.
        c.error(
            &format!("{p}.psk"),
            "must be 8 to 63 ASCII characters or 64 hex digits",
        );
    }
    let hidden = c
        .bool(&format!("{p}.hidden"), obj.get("hidden"))
        .unwrap_or(false);
    let priority = match obj.get("priority") {
        None => Some(0),
        Some(v) => match v.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                c.error(&format!("{p}.priority"), "must be a whole number");
                None
            }
        },
    };
    c.unknown_keys(p, obj, &["ssid", "psk", "hidden", "priority"]);
    Some(WifiNetwork {
        ssid: ssid?,
        psk: if psk_ok {
            psk.map(str::to_string)
        } else {
            return None;
        },
        hidden,
        priority: priority?,
    })
}

/// Why `h` is not a valid hostname (RFC 1123 labels, ≤ 64 bytes as Linux allows), or `None`.
fn hostname_problem(h: &str) -> Option<String> {
    if h.is_empty() {
        return Some("is empty".into());
    }
    if h.len() > 64 {
        return Some(format!("is {} bytes long; at most 64 are allowed", h.len()));
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some(format!(
                "{h:?}: each dot-separated label must be 1 to 63 characters"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some(format!(
                "{h:?}: only letters, digits and '-' are allowed (RFC 1123)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("{h:?}: a label may not start or end with '-'"));
        }
    }
    None
}

/// RFC 1123 hostname check (public for NTP server names and the host CLI).
pub fn is_valid_hostname(h: &str) -> bool {
    hostname_problem(h).is_none()
}

pub fn is_valid_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// `type base64 [comment]`, where the base64 blob decodes and names the same key type.
fn ssh_key_problem(k: &str) -> Option<String> {
    let mut parts = k.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Some("not an OpenSSH public key (expected \"TYPE BASE64 [comment]\")".into());
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Some(format!("unknown SSH key type {kind:?}"));
    }
    // Canonical padding, as sshd's decoder (b64_pton) demands: a key stripped of its `=` or
    // with one appended is refused here as sshd would refuse it.
    let Ok(raw) = STANDARD.decode(blob) else {
        return Some("key data is not valid base64".into());
    };
    // The blob starts with the key type as an SSH string: u32 length, then the name.
    let named = raw
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| raw.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Some(format!("key data does not hold a {kind} key"));
    }
    None
}

fn is_safe_file_stem(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_http_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !u.chars().any(char::is_whitespace)
    })
}

fn is_image_reference(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && !r.starts_with(['-', '.', ':', '/', '@'])
        && r.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'-' | b'_' | b'/' | b':' | b'@')
                || b.is_ascii_uppercase() // tags may hold upper case
        })
}

fn is_journald_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['K', 'M', 'G', 'T']);
    v.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(is_valid_hostname("fleet-device-01"));
        assert!(is_valid_hostname("a.example.com"));
        assert!(!is_valid_hostname("-bad"));
        assert!(!is_valid_hostname("bad_underscore"));
        assert!(!is_valid_hostname(""));
        assert!(!is_valid_hostname(&"a".repeat(65)));
        assert!(!is_valid_hostname("a..b"));
    }

    #[test]
    fn ssh_keys() {
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb5m0U4q1f0hY0Jp6s2C3kz2vW4m6xw0S0yQn1m3y7Q user@host";
        assert_eq!(ssh_key_problem(good), None);
        assert!(
            ssh_key_problem(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGb5m0U4q1f0hY0Jp6s2C3kz2vW4m6xw0S0yQn1m3y7Q"
            )
            .is_some()
        );
        assert!(ssh_key_problem("ssh-ed25519 !!!").is_some());
        // One stray character past a whole key: a length no encoder produces (a paste error).
        assert_eq!(
            ssh_key_problem(&good.replace("3y7Q ", "3y7Qx ")).as_deref(),
            Some("key data is not valid base64")
        );
        assert!(ssh_key_problem("hello").is_some());
    }

    /// Padding as sshd's decoder wants it (checked with `ssh-keygen -l`, which shares it):
    /// an ECDSA key stripped of its `=` and an ed25519 key with one appended are refused.
    #[test]
    fn ssh_key_padding_as_sshd() {
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLnwQTlqkNgnBQT/UgnMuIuEJSSnp0IsjdSUFs+oKMtxl/LitP/AV1p6BsbU2mjYiSTUYwqyiQjeLoJPTXyloxo= root@vm";
        let ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILudUZMPMhCnHZo+f7/CKQA2jzsy7jpgbAEg93Ee2C8u root@vm";
        assert_eq!(ssh_key_problem(ecdsa), None);
        assert_eq!(ssh_key_problem(ed25519), None);
        let invalid = Some("key data is not valid base64");
        assert_eq!(
            ssh_key_problem(&ecdsa.replace("o= ", "o ")).as_deref(),
            invalid
        );
        assert_eq!(
            ssh_key_problem(&ed25519.replace("u ", "u= ")).as_deref(),
            invalid
        );
        assert_eq!(
            ssh_key_problem(&ecdsa.replace("o= ", "o== ")).as_deref(),
            invalid
        );
    }

    #[test]
    fn sizes_and_images() {
        assert!(is_journald_size("32M"));
        assert!(is_journald_size("1048576"));
        assert!(!is_journald_size("32MB"));
        assert!(!is_journald_size("M"));
        assert!(is_image_reference(
            "registry.local:5000/fleet/supervisor:v1.2"
        ));
        assert!(!is_image_reference("bad image"));
    }
}
