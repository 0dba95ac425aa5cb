# Helpers for tests/networkmanager/run (sourced): a private system bus and a real
# NetworkManager in a network namespace, everything under $work. Process ids live in
# $work/NAME.pid, so cases may run in subshells and cleanup still finds every process.

# started NAME PID: records a background process.
started() { echo "$2" >"$work/$1.pid"; }

# stop NAME: TERM (then KILL after 10 s) the recorded process and wait until it is gone.
stop() {
  local pid i
  pid=$(cat "$work/$1.pid" 2>/dev/null) || return 0
  rm -f "$work/$1.pid"
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# start_bus: dbus-daemon with a system-bus policy that lets root own and call anything
# (the suite runs as root); exports DBUS_SYSTEM_BUS_ADDRESS.
start_bus() {
  cat >"$work/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
CONF
  dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile >"$work/dbus.log" 2>&1 &
  started bus $!
  export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/system_bus_socket"
  local i
  for i in $(seq 50); do [ -S "$work/system_bus_socket" ] && return 0; sleep 0.1; done
  echo "dbus-daemon did not start: $(cat "$work/dbus.log")" >&2
  return 1
}

# start_nm [managed]: NetworkManager --no-daemon in netns $netns. Its config, state, runtime
# dir and keyfile dir all live under $work ($root is the tree fleetd imports into); /run and
# /var/lib/NetworkManager are private mounts inside the namespace, the host's are untouched.
# With no udev in the namespace NetworkManager leaves the veths unmanaged; "managed" gives it
# a read-only /sys, from which it concludes there is no udev to wait for (as in a container),
# so it manages and activates them as a device's NetworkManager does its NICs.
start_nm() {
  local sys_ro=
  [ "${1:-}" != managed ] || sys_ro='mount -o remount,bind,ro /sys &&'
  mkdir -p "$work/nm/conf.d" "$work/nm/system-conf.d" "$work/nm/lib" "$work/nm/run" \
    "$root/etc/NetworkManager/system-connections"
  chmod 700 "$root/etc/NetworkManager/system-connections"
  cat >"$work/nm/NetworkManager.conf" <<CONF
[main]
plugins=keyfile
auth-polkit=false
dns=none
rc-manager=unmanaged
hostname-mode=none
no-auto-default=*

[keyfile]
path=$root/etc/NetworkManager/system-connections

[logging]
level=INFO
CONF
  : >"$work/nm.log"
  ip netns exec "$netns" unshare --mount --propagation private sh -c '
      mount -t tmpfs tmpfs /run && '"$sys_ro"'
      mount --bind "$1/nm/lib" /var/lib/NetworkManager &&
      exec NetworkManager --no-daemon --config="$1/nm/NetworkManager.conf" \
        --config-dir="$1/nm/conf.d" --system-config-dir="$1/nm/system-conf.d" \
        --state-file="$1/nm/lib/NetworkManager.state" \
        --intern-config="$1/nm/lib/NetworkManager-intern.conf" \
        --pid-file="$1/nm/run/nm.pid"' sh "$work" >>"$work/nm.log" 2>&1 &
  local nm_pid=$! i
  started nm "$nm_pid"
  for i in $(seq 100); do
    if busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" status org.freedesktop.NetworkManager >/dev/null 2>&1 &&
      nmcli -t -f RUNNING general 2>/dev/null | grep -q running; then
      return 0
    fi
    kill -0 "$nm_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "NetworkManager did not start; its log:" >&2
  tail -n 20 "$work/nm.log" >&2
  return 1
}

stop_nm() { stop nm; }
stop_bus() { stop bus; }
