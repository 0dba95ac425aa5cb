# Idempotent installers shared by scripts/test and scripts/setup-host (sourced, not run).
# apt-get update runs only when a package is missing; pip installs into a cached venv.

fleet_cache=${FLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetos}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# need_debian_packages FILE|DIR...: installs the packages listed (one per line, # comments)
# in each FILE, or in DIR/packages. A second column names the release to take the package
# from (`qemu-system-x86 bookworm-backports`: the machine's qemu-utils comes from
# backports, and bookworm's qemu-system breaks against it); that release's source is added.
need_debian_packages() {
  # missing: packages from the default release; missing_from: "PKG RELEASE" pairs.
  local missing=() missing_from=() releases=() src list pkg rel
  for src in "$@"; do
    list=$src
    [ -d "$src" ] && list=$src/packages
    [ -f "$list" ] || continue
    while read -r pkg rel _; do
      [ -n "$pkg" ] && [ "${pkg#\#}" = "$pkg" ] || continue
      [ "${rel#\#}" = "$rel" ] || rel=
      [ -z "$rel" ] || releases+=("$rel")
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' && continue
      if [ -n "$rel" ]; then missing_from+=("$pkg $rel"); else missing+=("$pkg"); fi
    done <"$list"
  done
  [ $(( ${#missing[@]} + ${#missing_from[@]} )) -gt 0 ] || return 0
  echo "installing Debian packages: ${missing[*]} ${missing_from[*]%% *}"
  for rel in $(printf '%s\n' "${releases[@]}" | sort -u); do
    grep -rqs "^deb .* $rel " /etc/apt/sources.list /etc/apt/sources.list.d/ ||
      echo "deb http://deb.debian.org/debian $rel main" | as_root tee "/etc/apt/sources.list.d/fleet-$rel.list" >/dev/null
  done
  as_root apt-get update -qq
  [ ${#missing[@]} -eq 0 ] ||
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  local pair
  for pair in "${missing_from[@]}"; do
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -t "${pair#* }" "${pair%% *}" >/dev/null
  done
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
