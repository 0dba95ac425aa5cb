# Guest handling shared by the QEMU end-to-end suite (tests/qemu/run) and scripts/bench-boot:
# one guest at a time, booted with scripts/run-qemu, reached over SSH on a loopback port.
# The caller sets: top (the checkout), work (a scratch directory), disk (for the ESP edits);
# optionally guest_ssh_port (default 22222, fleetOS's sshd and the stand-in's) and esp_offset
# (bytes; default 1 MiB, the stand-in's layout).
# shellcheck shell=bash

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

qemu_pid=
stop_guest_hard() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  qemu_pid=
  guest_disconnect
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key=$work/id_ed25519
ssh-keygen -q -t ed25519 -N '' -C fleet-e2e -f "$key"
# One SSH connection per boot, shared by every command (ControlMaster): a new connection costs
# about 2 s of key exchange in a TCG guest, and a boot's checks make dozens. Keepalives notice
# a guest that went away without closing the connection.
ssh_opts=(-i "$key" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no
  -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5
  -o ControlMaster=auto -o "ControlPath=$work/ssh-%p" -o ControlPersist=120
  -o ServerAliveInterval=5 -o ServerAliveCountMax=3)
guest() { ssh "${ssh_opts[@]}" root@127.0.0.1 "$@"; }
# Ends the shared connection (before a boot, after the guest stopped).
guest_disconnect() { ssh "${ssh_opts[@]}" -O exit root@127.0.0.1 >/dev/null 2>&1 || true; }

boot_n=0
# boot DISK [QEMU-ARGS...]: starts the guest with the serial console in $serial; sets
# boot_start and qemu_pid.
boot() {
  local disk=$1; shift
  guest_disconnect
  boot_n=$((boot_n + 1))
  serial=$work/serial-$boot_n.log
  : >"$serial"
  boot_start=$(now)
  "$top/scripts/run-qemu" "$disk" --ssh-port "$port" --guest-ssh-port "${guest_ssh_port:-22222}" --serial-log "$serial" --memory 2048 \
    -- "$@" >"$work/qemu-$boot_n.log" 2>&1 &
  qemu_pid=$!
}

# wait_ready TIMEOUT: SSH answers and systemd finished booting; prints the state.
wait_ready() {
  local deadline=$(( $(date +%s) + $1 ))
  while ! guest true 2>/dev/null; do
    kill -0 "$qemu_pid" 2>/dev/null || { echo "QEMU exited: $(tail -n 2 "$work/qemu-$boot_n.log")"; return 1; }
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "no SSH after $1 s; console: $(tr -d '\r' <"$serial" | grep -a -o 'FAILED.*' | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ' ')"
      return 1
    fi
    sleep 2
  done
  secs "$boot_start" "$(now)" >"$work/ssh-ready"
  local state
  state=$(guest "timeout $(( deadline - $(date +%s) > 60 ? deadline - $(date +%s) : 60 )) systemctl is-system-running --wait" 2>&1) || true
  secs "$boot_start" "$(now)" >"$work/ready"
  if [ "$state" != running ]; then
    echo "system $state; failed units: $(guest 'systemctl --failed --plain --no-legend' | awk '{print $1}' | tr '\n' ' ')"
    return 1
  fi
}

# shutdown: poweroff over SSH, wait for QEMU to exit (kill it after 90 s).
shutdown_guest() {
  local i
  guest 'systemctl poweroff' >/dev/null 2>&1 || true
  for i in $(seq 90); do
    kill -0 "$qemu_pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$qemu_pid" 2>/dev/null; then
    echo "guest did not power off in 90 s"; stop_guest_hard; return 1
  fi
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
  guest_disconnect
}

up() { [ -n "$qemu_pid" ] && guest true 2>/dev/null; }

# ESP edits from the host between boots (no mounts): the disk is raw, the ESP at esp_offset.
esp() { echo "$disk@@${esp_offset:-1048576}"; }
set_grubenv() { # KEY=VALUE...
  mcopy -n -i "$(esp)" ::/EFI/fleet/grubenv "$work/grubenv"
  grub-editenv "$work/grubenv" set "$@"
  mcopy -o -i "$(esp)" "$work/grubenv" ::/EFI/fleet/grubenv
}
# fleetd's boot units, and the kernel arguments that boot the image without them (the
# boot-cost baseline; the layout's mounts and state binds stay: both variants have them).
fleet_services="fleet-supervisor fleet-provision fleet-netimport fleet-health"
mask_fleet_units=$(printf 'systemd.mask=%s.service ' $fleet_services)
mask_fleet_units=${mask_fleet_units% }
# ...and the transient unit fleet-provision queues at boot (masked with it).
fleet_services_at_boot="$fleet_services fleet-journal-persist"

# Guest seconds from kernel start to the supervisor's API being up (its journal line), and to
# fleet-supervisor.service's READY (the container passed its Docker health check).
supervisor_up_at() {
  guest 'journalctl -b -o short-monotonic SYSLOG_IDENTIFIER=fleet-supervisor | grep -m1 "supervisor API on" | grep -o "^\[ *[0-9.]*\]"' | tr -d '[] '
}
supervisor_ready_at() {
  guest 'systemctl show -P ActiveEnterTimestampMonotonic fleet-supervisor.service' |
    awk '$1 > 0 { printf "%.3f", $1 / 1e6 }'
}
# Guest CPU seconds the fleetOS services have used since boot (systemd's cgroup accounting).
# They run beside the engine's start of the supervisor, not before it, so on two vCPUs this is
# an upper bound of the time they can take from it.
fleet_units_cpu() {
  guest "for u in $fleet_services_at_boot; do systemctl show -P CPUUsageNSec \$u.service; done" |
    awk '$1 ~ /^[0-9]+$/ { s += $1 } END { printf "%.2f", s / 1e9 }'
}
# The fleetOS services the engine is ordered after or depends on, directly (empty when none
# is). systemd merges both directions: a unit's Before=docker.service shows in docker's After=.
# This is the unit graph, not a timing: `systemd-analyze critical-chain` names whichever unit
# happened to finish last before network-online.target (fleet-netimport is ordered before it by
# design), so it depends on host load and is only printed.
fleet_units_engine_waits_for() {
  guest 'systemctl show -p After -p Requires -p Wants -p Requisite -p BindsTo docker.service' |
    tr ' =' '\n\n' | { grep -xE "(${fleet_services_at_boot// /|})\.service" || true; } | sort -u | tr '\n' ' '
}
# The engine's critical chain at this boot, one line (informational).
engine_critical_chain() {
  guest 'systemd-analyze critical-chain docker.service --no-pager' | grep -oE '[a-zA-Z0-9@._-]+\.(service|target|socket|mount)' | tr '\n' ' '
}

