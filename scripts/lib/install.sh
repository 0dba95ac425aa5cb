# Idempotent installers shared by scripts/test and scripts/setup-host (sourced, not run).
# apt-get update runs only when a package is missing; pip installs into a cached venv.

fleet_cache=${FLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetos}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# need_debian_packages FILE|DIR...: installs the packages listed (one per line, # comments)
# in each FILE, or in DIR/packages.
need_debian_packages() {
  local want=() missing=() src list
  for src in "$@"; do
    list=$src
    [ -d "$src" ] && list=$src/packages
    [ -f "$list" ] || continue
    while read -r pkg _; do
      [ -n "$pkg" ] && [ "${pkg#\#}" = "$pkg" ] && want+=("$pkg")
    done <"$list"
  done
  for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# need_python_packages DIR...: a venv in the cache with every DIR/requirements.txt installed;
# puts it first on PATH.
need_python_packages() {
  local venv=$fleet_cache/venv reqs=() d stamp
  for d in "$@"; do [ -f "$d/requirements.txt" ] && reqs+=("$d/requirements.txt"); done
  [ ${#reqs[@]} -gt 0 ] || return 0
  [ -x "$venv/bin/python" ] || { mkdir -p "$fleet_cache"; python3 -m venv "$venv"; }
  stamp=$(cat "${reqs[@]}" | sha256sum | cut -c1-16)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $(printf -- '-r %s ' "${reqs[@]}")
    echo "$stamp" >"$venv/.stamp"
  fi
  export PATH="$venv/bin:$PATH"
}

need_rust_tools() {
  command -v cargo >/dev/null || { echo "cargo is required (rustup.rs)" >&2; return 1; }
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
  cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
}
