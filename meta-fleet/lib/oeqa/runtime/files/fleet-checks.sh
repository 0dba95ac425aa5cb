# fleetOS device checks: the one definition of each check, run ON the device (POSIX sh).
# shellcheck shell=sh
#
# Read by both harnesses, which never copy a check:
#   - scripts/test-image (any x86 image under QEMU) sends this file over SSH and calls one
#     function per case: { cat fleet-checks.sh; echo 'fleet_check_"$@"'; } | ssh DEV sh -s -- NAME ARGS
#   - the testimage cases (lib/oeqa/runtime/cases/fleet.py) copy it to the target and make one
#     test per "#@oeqa" line below, running `fleet_check_NAME ARGS` through the target.
# Each check prints the reason and returns non-zero when it fails.
#
# "#@oeqa NAME [ARGS] | DESCRIPTION": the checks that hold on any first boot of an image with
# no test-specific config.json (what `bitbake -c testimage fleet-image` can assert).
#@oeqa slot A | booted slot A (kernel command line and root label)
#@oeqa root_readonly | root filesystem mounted read-only
#@oeqa partitions_mounted | fleet-boot/state/data mounted by label
#@oeqa state_binds | every state bind in place and writable
#@oeqa engine_on_data | container engine root on fleet-data
#@oeqa provisioned | fleet-provision.service succeeded
#@oeqa netimport_first_try | fleet-netimport succeeded on its first start
#@oeqa journal_volatile | journal volatile, capped at 8M
#@oeqa supervisor_healthy 300 | fleet_supervisor running and healthy, fleet-supervisor.service active
#@oeqa supervisor_restart_always | supervisor container restart policy always
#@oeqa engine_independent | docker.service neither ordered after nor needing a fleetOS service

# slot SLOT [VERSION_ID]: the running root is SLOT (and carries VERSION_ID when given).
fleet_check_slot() {
  cmdline=$(cat /proc/cmdline)
  version=$(. /etc/os-release && echo "$VERSION_ID")
  rootlabel=$(blkid -s LABEL -o value "$(findmnt -n -o SOURCE /)")
  case " $cmdline " in *" fleet.slot=$1 "*) ;; *) echo "cmdline: $cmdline"; return 1 ;; esac
  [ -z "${2:-}" ] || [ "$version" = "$2" ] || { echo "VERSION_ID $version, expected $2"; return 1; }
  [ "$rootlabel" = "fleet-root$1" ] || { echo "root is $rootlabel, expected fleet-root$1"; return 1; }
}

fleet_check_root_readonly() {
  findmnt -n -o OPTIONS / | tr , '\n' | grep -qx ro || { echo "/ not mounted ro"; return 1; }
  if touch /fleet-check-write 2>/dev/null; then rm -f /fleet-check-write; echo "/ is writable"; return 1; fi
}

fleet_check_partitions_mounted() {
  got=$(for m in /mnt/boot /mnt/state /mnt/data; do echo "$m $(findmnt -n -o LABEL,FSTYPE "$m")"; done | tr -s ' ')
  want="/mnt/boot fleet-boot vfat
/mnt/state fleet-state ext4
/mnt/data fleet-data ext4"
  [ "$got" = "$want" ] || { echo "mounts: $got" | tr '\n' ' '; return 1; }
}

# Every line of the image's bind list is a bind of SOURCE (on state/data) over TARGET.
fleet_check_state_binds() {
  n=0
  while read -r src dst _; do
    case $src in ""|"#"*) continue ;; esac
    part=/${src#/}; part=${part#/mnt/}; part=/mnt/${part%%/*}
    dev=$(findmnt -n -o SOURCE "$part")
    got=$(findmnt -n -o SOURCE --mountpoint "$dst" | tail -n 1)
    rel=${src#"$part"}
    [ "$got" = "${dev}[$rel]" ] || { echo "$dst: mounted from \"$got\", expected ${dev}[$rel]"; return 1; }
    n=$((n + 1))
  done </etc/fleet/state-binds.conf
  [ "$n" -ge 9 ] || { echo "only $n binds listed"; return 1; }
  for d in /var/lib/fleet /etc/NetworkManager/system-connections /home/root/.ssh; do
    if ! touch "$d/.fleet-check"; then echo "$d not writable"; return 1; fi
    rm -f "$d/.fleet-check"
  done
}

fleet_check_engine_on_data() {
  root=$(docker info --format '{{.DockerRootDir}}')
  [ "$root" = /mnt/data/docker ] || { echo "DockerRootDir $root"; return 1; }
  [ "$(findmnt -n -o LABEL -T "$root")" = fleet-data ] || { echo "$root not on fleet-data"; return 1; }
  findmnt -n -o SOURCE /var/lib/docker | grep -q '\[/docker\]' || { echo "/var/lib/docker not bound from data"; return 1; }
}

fleet_check_provisioned() {
  if ! systemctl is-active -q fleet-provision.service ||
      [ "$(systemctl show -P Result fleet-provision.service)" != success ]; then
    echo "fleet-provision: $(systemctl show -p ActiveState -p Result fleet-provision.service | tr '\n' ' ')"; return 1
  fi
}

# hostname NAME: live and stored on fleet-state.
fleet_check_hostname() {
  live=$(hostname); stored=$(cat /mnt/state/etc/hostname)
  if [ "$live" != "$1" ] || [ "$stored" != "$1" ]; then echo "hostname $live, state $stored"; return 1; fi
}

fleet_check_ssh_keys_managed() {
  grep -q "fleetOS managed keys begin" /home/root/.ssh/authorized_keys || { echo "no managed block in authorized_keys"; return 1; }
  [ -n "$(findmnt -n -o SOURCE /home/root/.ssh)" ] || { echo "/home/root/.ssh not bound"; return 1; }
}

# connection_active NAME ADDRESS/PREFIX: NetworkManager activated NAME (manual) with ADDRESS.
fleet_check_connection_active() {
  state=$(nmcli -g GENERAL.STATE connection show "$1" 2>&1)
  method=$(nmcli -g ipv4.method connection show "$1" 2>&1)
  addr=$(ip -4 -o addr show dev "$(nmcli -g GENERAL.DEVICES connection show "$1")" scope global | awk '{print $4}')
  if [ "$state" != activated ] || [ "$method" != manual ] || [ "$addr" != "$2" ]; then
    echo "$1: state $state, method $method, address $addr"; return 1
  fi
}

fleet_check_netimport_first_try() {
  n=$(systemctl show -P NRestarts fleet-netimport.service)
  [ "$n" = 0 ] || { echo "fleet-netimport restarted $n times"; return 1; }
}

fleet_check_journal_volatile() {
  cfg=$(systemd-analyze cat-config systemd/journald.conf | grep -E "^(Storage|RuntimeMaxUse)=" | tail -n 2 | tr "\n" " ")
  [ "$cfg" = "Storage=volatile RuntimeMaxUse=8M " ] || { echo "journald: $cfg"; return 1; }
  if journalctl --header | grep "File path" | grep -v -q "/run/log/journal/"; then echo "journal file outside /run"; return 1; fi
  if findmnt /var/log/journal >/dev/null; then echo "/var/log/journal is bound"; return 1; fi
}

# supervisor_engine_healthy [TIMEOUT]: the engine reports the container running and healthy.
fleet_check_supervisor_engine_healthy() {
  deadline=$(( $(date +%s) + ${1:-180} ))
  until st=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' fleet_supervisor 2>&1) &&
      [ "$st" = "running healthy" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "fleet_supervisor: $st"; return 1; }
    sleep 3
  done
}

# supervisor_healthy [TIMEOUT]: ...and fleetd's unit is active (it only is once healthy).
fleet_check_supervisor_healthy() {
  fleet_check_supervisor_engine_healthy "${1:-180}" || return 1
  systemctl is-active -q fleet-supervisor.service || { echo "fleet-supervisor.service $(systemctl is-active fleet-supervisor.service)"; return 1; }
  docker exec fleet_supervisor /usr/bin/fleet-supervisor healthcheck
}

# The engine starts the container at every boot on its own; fleetd adopts it.
fleet_check_supervisor_restart_always() {
  p=$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' fleet_supervisor)
  [ "$p" = always ] || { echo "restart policy $p"; return 1; }
}

# The unit graph, not a timing: docker.service is neither ordered after nor depends on any
# fleetOS service (systemd merges both directions: a unit's Before= shows in docker's After=).
fleet_check_engine_independent() {
  # shellcheck disable=SC2020 # spaces and '=' both become newlines
  w=$(systemctl show -p After -p Requires -p Wants -p Requisite -p BindsTo docker.service | tr ' =' '\n\n' |
    grep -xE '(fleet-supervisor|fleet-provision|fleet-netimport|fleet-health|fleet-journal-persist)\.service' |
    sort -u | tr '\n' ' ')
  [ -z "$w" ] || { echo "docker.service after/needs: $w"; return 1; }
}
