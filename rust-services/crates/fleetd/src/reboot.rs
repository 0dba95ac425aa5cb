//! A clean reboot through systemd, the reboot syscall if systemd does not take it: what a
//! trial needs after `health` rejects it and after `update check --reboot` arms one.

/// Reboots; returns only when both ways failed.
pub async fn reboot() -> Result<(), nix::Error> {
    let ok = tokio::process::Command::new("systemctl")
        .arg("reboot")
        .status()
        .await
        .is_ok_and(|s| s.success());
    if ok {
        return Ok(());
    }
    nix::unistd::sync();
    nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT).map(|_| ())
}
