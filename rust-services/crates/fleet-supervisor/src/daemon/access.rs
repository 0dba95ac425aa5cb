//! Who may reach the API: what balenaOS's firewall allows for port 48484 — the host itself
//! and the containers on the engine's bridge networks — decided per connection, so no
//! iptables rules are needed. In development mode any peer is accepted.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::Reconciler;
use super::state::Shared;
use fleet_log::error::Chain;

/// The engine's networks are read again at most this often when an unknown peer connects
/// (a network created since the last read), so a flood of refused peers costs no engine calls.
const REFRESH_AFTER: Duration = Duration::from_secs(2);
/// At most one log line per this period for refused peers (the rest are counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: no /prefix"))?;
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s}: bad prefix length"))?;
        Ok(Subnet { addr, prefix })
    }
}

impl Subnet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`, a dual-stack listener) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Allowed without asking the engine: loopback, and a connection from the host to one of its
/// own addresses (the kernel routes it over `lo`, as balenaOS's firewall sees it).
pub fn is_local(peer: IpAddr, local: IpAddr) -> bool {
    let peer = canonical(peer);
    peer.is_loopback() || peer == canonical(local)
}

/// The verdict for one connection; a refusal is logged (rate-limited).
pub async fn allowed<R: Reconciler>(shared: &Shared<R>, peer: IpAddr, local: IpAddr) -> bool {
    if shared.settings.development_mode || is_local(peer, local) {
        return true;
    }
    if in_engine_networks(shared, peer) {
        return true;
    }
    let stale = shared
        .subnets_read
        .get()
        .is_none_or(|at| at.elapsed() >= REFRESH_AFTER);
    if stale {
        shared.subnets_read.set(Some(Instant::now()));
        match shared.reconciler.bridge_subnets().await {
            Ok(subnets) => {
                shared.subnets.replace(subnets);
            }
            Err(e) => log::warn!(
                "API access: cannot read the engine's networks: {}",
                Chain(&e)
            ),
        }
        if in_engine_networks(shared, peer) {
            return true;
        }
    }
    log_refusal(shared, peer);
    false
}

fn in_engine_networks<R>(shared: &Shared<R>, peer: IpAddr) -> bool {
    shared.subnets.borrow().iter().any(|s| s.contains(peer))
}

fn log_refusal<R>(shared: &Shared<R>, peer: IpAddr) {
    let due = shared
        .refusal_logged
        .get()
        .is_none_or(|at| at.elapsed() >= LOG_EVERY);
    if !due {
        shared
            .refusals_unlogged
            .set(shared.refusals_unlogged.get() + 1);
        return;
    }
    let more = shared.refusals_unlogged.replace(0);
    let suffix = if more > 0 {
        format!(" ({more} more refused since the last report)")
    } else {
        String::new()
    };
    log::warn!(
        "API: refused a connection from {peer}: only the host and the engine's bridge networks may connect (developmentMode allows any){suffix}"
    );
    shared.refusal_logged.set(Some(Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_contain_their_addresses_only() {
        let net: Subnet = "10.213.4.0/24".parse().unwrap();
        assert!(net.contains(ip("10.213.4.7")));
        assert!(net.contains(ip("::ffff:10.213.4.7")));
        assert!(!net.contains(ip("10.213.5.7")));
        assert!(!net.contains(ip("fd00::1")));
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        let v6: Subnet = "fd00:1::/64".parse().unwrap();
        assert!(v6.contains(ip("fd00:1::5")));
        assert!(!v6.contains(ip("fd00:2::5")));
        assert!("10.0.0.0".parse::<Subnet>().is_err());
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
        assert!("nonsense/8".parse::<Subnet>().is_err());
    }

    #[test]
    fn the_host_itself_is_local() {
        assert!(is_local(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(is_local(ip("127.0.0.5"), ip("0.0.0.0")));
        assert!(is_local(ip("::1"), ip("::1")));
        assert!(is_local(ip("::ffff:127.0.0.1"), ip("::ffff:127.0.0.1")));
        assert!(is_local(ip("192.168.1.5"), ip("192.168.1.5")));
        assert!(!is_local(ip("192.168.1.6"), ip("192.168.1.5")));
    }
}
