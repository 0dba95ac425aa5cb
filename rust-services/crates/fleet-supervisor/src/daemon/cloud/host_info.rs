//! What the report says about the host: addresses and balena's metrics. The supervisor runs
//! in the host's network namespace and sees the host's `/proc` and `/sys`.

use std::collections::BTreeSet;

/// Interfaces that are the engine's or the apps', not the device's (balena leaves the same
/// ones out).
fn is_virtual(name: &str) -> bool {
    name == "lo"
        || [
            "docker",
            "veth",
            "br-",
            "balena",
            "supervisor",
            "resin-",
            "vpn",
            "tun",
        ]
        .iter()
        .any(|p| name.starts_with(p))
}

/// `ip_address` and `mac_address`: the device's IPv4 addresses and their interfaces' MACs,
/// space-separated (balena's format).
pub fn addresses() -> (String, String) {
    let mut ips = BTreeSet::new();
    let mut macs = BTreeSet::new();
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return (String::new(), String::new());
    };
    for ifa in list.filter(|i| !is_virtual(&i.interface_name)) {
        let Some(address) = ifa.address else { continue };
        if let Some(v4) = address.as_sockaddr_in() {
            ips.insert(v4.ip().to_string());
            let path = format!("/sys/class/net/{}/address", ifa.interface_name);
            if let Ok(mac) = std::fs::read_to_string(path) {
                macs.insert(mac.trim().to_string());
            }
        }
    }
    let join = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>().join(" ");
    (join(ips), join(macs))
}

/// The report fields [`Metrics::read`] fills.
pub const METRIC_KEYS: &[&str] = &[
    "memory_total",
    "memory_usage",
    "storage_total",
    "storage_usage",
    "cpu_usage",
    "cpu_temp",
];

/// balena's metrics: memory in MiB, storage of the data partition in MiB, CPU use in
/// percent since the last call, the SoC temperature in °C when the kernel has it.
#[derive(Debug, Default)]
pub struct Metrics {
    last_cpu: Option<(u64, u64)>,
}

impl Metrics {
    pub fn read(
        &mut self,
        data_dir: &std::path::Path,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Ok(info) = std::fs::read_to_string("/proc/meminfo") {
            let kib = |key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            };
            if let (Some(total), Some(available)) = (kib("MemTotal:"), kib("MemAvailable:")) {
                m.insert("memory_total".into(), (total / 1024).into());
                m.insert(
                    "memory_usage".into(),
                    (total.saturating_sub(available) / 1024).into(),
                );
            }
        }
        if let Ok(fs) = nix::sys::statvfs::statvfs(data_dir) {
            // c_ulong: 32 bits on 32-bit Raspberry Pi OS builds, 64 elsewhere.
            #[allow(clippy::useless_conversion)]
            let (block, blocks, available) = (
                u64::from(fs.fragment_size()),
                u64::from(fs.blocks()),
                u64::from(fs.blocks_available()),
            );
            let total = blocks * block;
            let free = available * block;
            m.insert("storage_total".into(), (total >> 20).into());
            m.insert(
                "storage_usage".into(),
                (total.saturating_sub(free) >> 20).into(),
            );
        }
        if let Some((busy, all)) = cpu_times() {
            if let Some((b0, a0)) = self.last_cpu
                && all > a0
            {
                m.insert("cpu_usage".into(), ((busy - b0) * 100 / (all - a0)).into());
            }
            self.last_cpu = Some((busy, all));
        }
        if let Some(t) = std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp")
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        {
            m.insert("cpu_temp".into(), (t / 1000).into());
        }
        m
    }
}

/// (busy, total) jiffies of all CPUs.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total.saturating_sub(idle), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_and_app_interfaces_are_not_the_devices() {
        for name in [
            "lo",
            "docker0",
            "veth12ab",
            "br-0a1b",
            "balena0",
            "supervisor0",
        ] {
            assert!(is_virtual(name), "{name}");
        }
        for name in ["eth0", "wlan0", "enp0s3", "end0"] {
            assert!(!is_virtual(name), "{name}");
        }
    }

    #[test]
    fn metrics_read_this_host() {
        let mut m = Metrics::default();
        let first = m.read(std::path::Path::new("/"));
        assert!(first["memory_total"].as_u64().unwrap() > 0);
        assert!(first.contains_key("storage_total"));
        assert!(
            !first.contains_key("cpu_usage"),
            "no usage without an interval"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        let second = m.read(std::path::Path::new("/"));
        assert!(second["cpu_usage"].as_u64().unwrap() <= 100);
    }
}
