# The real balena CLI (npm balena-cli, pinned), installed once into the cache; shared by
# tests/balena-cli and the QEMU suite (sourced after scripts/lib/install.sh for $fleet_cache).
# shellcheck shell=bash disable=SC2034,SC2154 # BALENA is for the caller; fleet_cache from install.sh
#
# --ignore-scripts: its postinstall downloads helper binaries from GitHub (not reachable);
# the overrides replace pinned versions the registry does not serve. Without the
# compose-parser binary, projects are single-Dockerfile ones.
BALENA_CLI_VERSION=25.2.6

# need_balena_cli: installs it when missing; sets BALENA to its executable.
need_balena_cli() {
  local dir=$fleet_cache/balena-cli-$BALENA_CLI_VERSION package_json
  package_json="{\"name\":\"fleet-balena-cli\",\"private\":true,\"dependencies\":{\"balena-cli\":\"$BALENA_CLI_VERSION\"},
 \"overrides\":{\"unbzip2-stream\":\"1.4.3\",\"balena-preload\":\"18.0.5\"}}"
  if [ ! -x "$dir/node_modules/.bin/balena" ] || [ "$(cat "$dir/package.json" 2>/dev/null)" != "$package_json" ]; then
    echo "installing balena-cli@$BALENA_CLI_VERSION from npm into $dir"
    mkdir -p "$dir"
    printf '%s' "$package_json" >"$dir/package.json"
    (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) || return 1
  fi
  BALENA=$dir/node_modules/.bin/balena
}
