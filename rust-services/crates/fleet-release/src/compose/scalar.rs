//! Parsers for compose's string forms: commands, durations, byte sizes, ports.

use super::{ExposedPort, PortMapping, Protocol};

/// Splits a command string the way a POSIX shell splits words (quotes and backslashes),
/// as compose does for the string form of `command`/`entrypoint`.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `1m30s`, `10s`, `500ms`, `2h`, `1.5s` → milliseconds.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a duration (like 10s, 1m30s, 500ms)");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return Err(bad()),
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(total.round() as u64)
}

/// `512m`, `1g`, `1024`, `100kb` → bytes (binary multiples, as the engine reads them).
pub fn bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a size (like 512m, 1g, 1048576)");
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    if digits_end == 0 {
        return Err(bad());
    }
    let n: u64 = lower[..digits_end].parse().map_err(|_| bad())?;
    let shift = match &lower[digits_end..] {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

fn split_protocol(s: &str) -> Result<(&str, Protocol), String> {
    match s.rsplit_once('/') {
        None => Ok((s, Protocol::Tcp)),
        Some((p, "tcp")) => Ok((p, Protocol::Tcp)),
        Some((p, "udp")) => Ok((p, Protocol::Udp)),
        Some((_, other)) => Err(format!("unknown protocol `{other}` (tcp or udp)")),
    }
}

/// `80` or `8000-8002` → the ports.
fn port_range(s: &str) -> Result<Vec<u16>, String> {
    let one = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` is not a port number (1-65535)"))
    };
    match s.split_once('-') {
        None => Ok(vec![one(s)?]),
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!("port range `{s}` runs backwards"));
            }
            Ok((a..=b).collect())
        }
    }
}

/// `[[ip:]host:]container[/proto]` with optional equal-length ranges → one mapping per port.
pub fn port_mappings(s: &str) -> Result<Vec<PortMapping>, String> {
    let (spec, protocol) = split_protocol(s)?;
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (host_ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [c, h] => (None, Some(*h), *c),
        [c, h, ip] => (
            Some(ip.trim_start_matches('[').trim_end_matches(']')),
            Some(*h),
            *c,
        ),
        _ => return Err(format!("`{s}` is not a port mapping")),
    };
    let container = port_range(container)?;
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(port_range(h)?),
    };
    if let Some(h) = &host
        && h.len() > 1
        && container.len() == 1
    {
        // One container port behind a host range: the engine picks the host port.
        return Ok(vec![PortMapping {
            host_ip: host_ip.map(str::to_string),
            host_port: h.first().copied(),
            host_port_end: h.last().copied(),
            container_port: container[0],
            protocol,
        }]);
    }
    if let Some(h) = &host
        && h.len() != container.len()
    {
        return Err(format!("`{s}`: host and container ranges differ in length"));
    }
    Ok(container
        .iter()
        .enumerate()
        .map(|(i, c)| PortMapping {
            host_ip: host_ip.map(str::to_string),
            host_port: host.as_ref().map(|h| h[i]),
            host_port_end: None,
            container_port: *c,
            protocol,
        })
        .collect())
}

/// `80`, `80/udp`, `8000-8002` → exposed ports.
pub fn exposed_ports(s: &str) -> Result<Vec<ExposedPort>, String> {
    let (spec, protocol) = split_protocol(s)?;
    Ok(port_range(spec)?
        .into_iter()
        .map(|port| ExposedPort { port, protocol })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            split_command(r#"sh -c 'echo "a b"' x\ y "q\"z""#).unwrap(),
            vec!["sh", "-c", "echo \"a b\"", "x y", "q\"z"]
        );
        assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_command("''").unwrap(), vec![""]);
        assert!(split_command("'open").is_err());
        assert!(split_command("\"open").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("10s"), Ok(10_000));
        assert_eq!(duration_ms("1m30s"), Ok(90_000));
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("1.5s"), Ok(1500));
        assert_eq!(duration_ms("2h"), Ok(7_200_000));
        for bad in ["", "10", "s", "10x", "1m30", "-1s"] {
            assert!(duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("512m"), Ok(512 << 20));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        assert_eq!(bytes("100kb"), Ok(100 << 10));
        assert_eq!(bytes("1024"), Ok(1024));
        for bad in ["", "m", "1t", "1.5g", "99999999999999999999g"] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        let m = port_mappings("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            m,
            vec![PortMapping {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(8080),
                host_port_end: None,
                container_port: 80,
                protocol: Protocol::Udp
            }]
        );
        assert_eq!(port_mappings("80").unwrap()[0].host_port, None);
        assert_eq!(port_mappings("8000-8002:9000-9002").unwrap().len(), 3);
        // A host range for one container port: the engine picks one.
        let r = port_mappings("8000-9000:80").unwrap();
        assert_eq!(
            (r.len(), r[0].host_port, r[0].host_port_end),
            (1, Some(8000), Some(9000))
        );
        assert!(port_mappings("8000-8002:9000-9001").is_err());
        assert_eq!(
            port_mappings("[::1]:6001:6001").unwrap()[0]
                .host_ip
                .as_deref(),
            Some("::1")
        );
        assert!(port_mappings("0:80").is_err());
        assert!(port_mappings("80/sctp").is_err());
        assert!(port_mappings("70000").is_err());
        assert_eq!(
            exposed_ports("53/udp").unwrap(),
            vec![ExposedPort {
                port: 53,
                protocol: Protocol::Udp
            }]
        );
    }

    proptest! {
        #[test]
        fn split_command_never_panics(s in ".*") {
            let _ = split_command(&s);
            let _ = duration_ms(&s);
            let _ = bytes(&s);
            let _ = port_mappings(&s);
        }

        #[test]
        fn plain_words_round_trip(words in prop::collection::vec("[a-zA-Z0-9_./=-]{1,8}", 0..6)) {
            prop_assert_eq!(split_command(&words.join(" ")).unwrap(), words);
        }
    }
}
