# shellcheck shell=bash disable=SC2154 # top and T are the caller's
# Shell shared by the benchmarks (sourced, not run): release binaries, a private Debian
# dockerd with `docker import`ed busybox images (no registry), the idle-RSS measurements and
# the budget checks against scripts/lib/budgets. The caller sets `top` (the repo) and `T` (its
# temp dir) and calls bench_cleanup from its EXIT trap.

bench_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_PIDS=()     # processes bench_cleanup kills (daemons under test), last first
BENCH_DPID=       # the private dockerd
BENCH_OVER=0      # how many budget_check rows were over budget

# release_binary PKG: builds PKG's release binary and copies it to $T/PKG at once (a shared
# CARGO_TARGET_DIR may be rebuilt by someone else meanwhile); prints the copy's path.
release_binary() {
  (cd "$top/rust-services" && nice -n 10 cargo build --quiet --release --locked -p "$1" >&2)
  cp "${CARGO_TARGET_DIR:-$top/rust-services/target}/release/$1" "$T/$1"
  echo "$T/$1"
}

# start_dockerd: a private dockerd on $T/docker.sock (vfs, no bridge, no iptables);
# exports DOCKER_HOST. App networks get addresses from 10.214.0.0/16.
start_dockerd() {
  export DOCKER_HOST=unix://$T/docker.sock
  dockerd --data-root "$T/docker" --exec-root "$T/exec" --pidfile "$T/dockerd.pid" -H "$DOCKER_HOST" \
    --bridge=none --iptables=false --ip6tables=false --storage-driver=vfs \
    --default-address-pool base=10.214.0.0/16,size=24 >"$T/dockerd.log" 2>&1 &
  BENCH_DPID=$!
  local _
  for _ in $(seq 100); do docker version >/dev/null 2>&1 && return 0; sleep 0.3; done
  echo "dockerd did not start:" >&2; tail -n 5 "$T/dockerd.log" >&2; return 1
}

# bench_cleanup: stops the daemons under test, removes every container and network of the
# private dockerd, stops it, unmounts and removes $T. For EXIT traps.
bench_cleanup() {
  set +e
  local i ids
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    kill "${BENCH_PIDS[i]}" 2>/dev/null && wait "${BENCH_PIDS[i]}" 2>/dev/null
  done
  if [ -n "$BENCH_DPID" ]; then
    ids=$(docker ps -aq)
    # shellcheck disable=SC2086 # one word per container ID
    [ -z "$ids" ] || docker rm -f $ids >/dev/null
    docker network prune -f >/dev/null
    kill "$BENCH_DPID"; wait "$BENCH_DPID"
  fi
  grep -o " ${T}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$T"
}

# busybox_image TAG CMD_JSON [CONTENT]: imports a busybox-only image (/bin/busybox, /bin/sh;
# CONTENT written to /n makes images differ) with CMD_JSON as its CMD.
busybox_image() {
  rm -rf "$T/img"; mkdir -p "$T/img/bin" "$T/img/www"
  cp /bin/busybox "$T/img/bin/busybox"
  ln -s busybox "$T/img/bin/sh"
  echo "${3:-}" >"$T/img/n"
  tar -C "$T/img" -c . | docker import --change "CMD $2" - "$1" >/dev/null
}

# bench_app N: N busybox services (bench/svcI:1, a sleep loop that exits on TERM), written as
# $T/docker-compose.yml and as the supervisor's target documents $T/target.json (the app) and
# $T/empty.json (the app with no release: applying it removes its containers and network).
bench_app() {
  local i
  echo 'services:' >"$T/docker-compose.yml"
  for i in $(seq 1 "$1"); do
    busybox_image "bench/svc$i:1" \
      '["/bin/busybox","sh","-c","trap \"exit 0\" TERM; while :; do /bin/busybox sleep 1 & wait $!; done"]' "$i"
    printf '  svc%d:\n    image: bench/svc%d:1\n    restart: always\n' "$i" "$i" >>"$T/docker-compose.yml"
  done
  python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
compose = open(f"{t}/docker-compose.yml").read()
doc = {"bench0": {"apps": {"bench": {"id": 1, "name": "bench",
       "releases": {"r1": {"id": 1, "composition": compose}}}}}}
json.dump(doc, open(f"{t}/target.json", "w"))
doc["bench0"]["apps"]["bench"]["releases"] = {}
json.dump(doc, open(f"{t}/empty.json", "w"))
PY
}

running_containers() { docker ps -q | wc -l; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_rss_fleetd_supervisor FLEETD: runs `fleetd supervisor` in a temp root against the
# private dockerd with a busybox httpd as the supervisor image, waits until it reports the
# container healthy, idles 5 s (several 1 s checks) and prints "VmRSS VmHWM" in KiB.
bench_rss_fleetd_supervisor() {
  local root=$T/fleetd-root port pid _ rss hwm
  mkdir -p "$root/etc/fleet" "$root/mnt/boot" "$root/mnt/data" "$root/tmp" "$root/run/dbus" "$root/run/systemd/journal"
  # The container binds the host's bus and journal sockets: stand-ins, nothing listens.
  touch "$root/run/dbus/system_bus_socket" "$root/run/systemd/journal/socket"
  port=$(free_port)
  busybox_image fleet/supervisor:bench "[\"/bin/busybox\",\"httpd\",\"-f\",\"-p\",\"$port\",\"-h\",\"/www\"]"
  echo SUPERVISOR_IMAGE=fleet/supervisor:bench >"$root/etc/fleet/supervisor.conf"
  echo "{\"listenPort\":$port}" >"$root/mnt/boot/config.json"
  "$1" --root "$root" supervisor --engine-socket "$T/docker.sock" --check-ms 1000 >"$T/fleetd.log" 2>&1 &
  pid=$!
  BENCH_PIDS+=("$pid")
  for _ in $(seq 60); do grep -q "is healthy" "$T/fleetd.log" && break; sleep 0.5; done
  grep -q "is healthy" "$T/fleetd.log" || { echo "fleetd supervisor: no healthy container:" >&2; tail -n 5 "$T/fleetd.log" >&2; return 1; }
  sleep 5
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" || true
  docker rm -f fleet_supervisor >/dev/null 2>&1 || true
  echo "$rss $hwm"
}

# bench_rss_supervisor_run FLEET_SUPERVISOR N: `fleet-supervisor run` in local mode applies
# $T/target.json (bench_app N) from its data dir; once all N containers run it idles 15 s (a
# reconcile tick, no API call) and prints "VmRSS VmHWM" in KiB. Leaves the app running.
bench_rss_supervisor_run() {
  local data=$T/daemon port pid _ rss hwm running
  mkdir -p "$data"
  cp "$T/target.json" "$data/target.json"
  port=$(free_port)
  FLEET_LOG_STDERR=1 FLEET_LISTEN_PORT=$port "$1" run --data-dir "$data" \
    --config "$data/no-config.json" --engine-socket "$T/docker.sock" \
    --listen-address 127.0.0.1 >"$T/daemon.log" 2>&1 &
  pid=$!
  BENCH_PIDS+=("$pid")
  for _ in $(seq 150); do [ "$(running_containers)" -eq "$2" ] && break; sleep 0.2; done
  running=$(running_containers)
  [ "$running" -eq "$2" ] || { echo "fleet-supervisor run: $running of $2 containers running:" >&2; tail -n 5 "$T/daemon.log" >&2; return 1; }
  sleep 15
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" || true
  echo "$rss $hwm"
}

# budget KEY: the value of KEY in scripts/lib/budgets (KiB).
budget() {
  local v
  v=$(sed -n "s/^$1=\([0-9]*\)\$/\1/p" "$bench_lib/budgets")
  [ -n "$v" ] || { echo "no budget $1 in $bench_lib/budgets" >&2; return 1; }
  echo "$v"
}

budget_header() { printf '%-44s %12s %12s  %s\n' "figure" "measured" "budget" "verdict"; }

# budget_check LABEL KIB KEY: prints LABEL, the figure, the budget KEY and OK/OVER; counts
# the OVER rows in BENCH_OVER (exit with budget_status at the end).
budget_check() {
  local max verdict=OK
  max=$(budget "$3")
  [ "$2" -le "$max" ] || { verdict=OVER; BENCH_OVER=$((BENCH_OVER + 1)); }
  printf '%-44s %8s KiB %8s KiB  %s\n' "$1" "$2" "$max" "$verdict"
}

# budget_status: non-zero (and a line on stderr) when any budget_check was over.
budget_status() {
  [ "$BENCH_OVER" -eq 0 ] || { echo "$BENCH_OVER figure(s) over budget (scripts/lib/budgets)" >&2; return 1; }
}

# file_kib FILE: size in KiB, rounded up.
file_kib() { echo $((($(stat -c %s "$1") + 1023) / 1024)); }
