# Shared by the suites that need a private Debian dockerd (sourced, not run).
# start_dockerd DIR [DOCKERD-ARGS...]: a dockerd with everything under DIR (data root, exec
# root, pid file, DIR/docker.sock; no docker0, no iptables, vfs, json-file logs), optionally run
# through $DOCKERD_WRAP (say `ip netns exec NS`); log in DIR/dockerd.log; sets DOCKERD_PID and
# DOCKER_HOST. stop_dockerd: TERM, then KILL after 30 s.

# until_true SECONDS CMD...: polls CMD every 0.2 s until it succeeds or SECONDS pass.
until_true() {
  local wait_s=$1; shift
  local end=$((SECONDS + wait_s))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}

start_dockerd() {
  local dir=$1; shift
  export DOCKER_HOST=unix://$dir/docker.sock
  # shellcheck disable=SC2086 # DOCKERD_WRAP is a command line
  ${DOCKERD_WRAP:-} dockerd --data-root "$dir/docker" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$dir/docker.sock" --bridge=none --iptables=false --ip6tables=false \
    --storage-driver=vfs --log-driver=json-file "$@" >>"$dir/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  until_true 60 docker version || { echo "dockerd did not start:"; tail -20 "$dir/dockerd.log"; return 1; }
}

stop_dockerd() {
  [ -n "${DOCKERD_PID:-}" ] || return 0
  kill "$DOCKERD_PID" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$DOCKERD_PID" 2>/dev/null || true
  wait "$DOCKERD_PID" 2>/dev/null || true
  DOCKERD_PID=
}
