#!/usr/bin/env python3
"""Offline checks of the meta-fleet layer and the kas files. One line per case:
"PASS <case>" or "FAIL <case>: <reason>"; exit status 1 when a case failed.

Usage: check_layer.py TOP                        run every check
       check_layer.py TOP --write-pinned CLONES  rewrite pinned-layers.txt from local clones

FLEET_YOCTO_CLONES=DIR (clones named like the kas repo ids) adds a check of
pinned-layers.txt against the real repositories.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
from importlib import resources

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
PINNED = HERE / "pinned-layers.txt"
# What DESIGN.md §2 "Disk layout" fixes: partition labels in disk order, and default sizes in MiB.
LABELS = ["fleet-boot", "fleet-rootA", "fleet-rootB", "fleet-state", "fleet-data"]
SIZES = {"FLEET_ROOT_SIZE": "1024", "FLEET_STATE_SIZE": "64"}
BOOT_SIZE = {"fleet-gpt-efi.wks.in": "128", "fleet-rpi.wks.in": "256",
             "fleet-rpi-tryboot.wks.in": "256"}
PTABLE = {"fleet-gpt-efi.wks.in": "gpt", "fleet-rpi.wks.in": "msdos",
          "fleet-rpi-tryboot.wks.in": "msdos"}
# The tryboot layout (meta-fleet/README.md "Raspberry Pi firmware tryboot"): autoboot.txt's
# partition and one boot partition per slot first (primaries 1-3, the firmware's partition
# numbers 2 = A, 3 = B), then the config partition fleet-boot and the rest as logical 5-9.
TRYBOOT_LABELS = ["fleet-auto", "fleet-bootA", "fleet-bootB"] + LABELS
# The newest kas configuration format every kas 5.x reads (kas 5.0 accepts 1..20).
KAS5_MAX_FORMAT = 20

failures = 0


def report(case, problems):
    global failures
    if problems:
        failures += 1
        print(f"FAIL {case}: {'; '.join(problems)}")
    else:
        print(f"PASS {case}")


# ---------------------------------------------------------------- bitbake text helpers

def logical_lines(path):
    """The file's lines with backslash continuations joined."""
    out, cur = [], ""
    for line in path.read_text().splitlines():
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    if cur:
        out.append(cur)
    return out


ASSIGN = re.compile(r'^([A-Za-z0-9_${}\-./]+)((?::[A-Za-z0-9_${}\-]+)*)\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*"(.*)"\s*$')


REQUIRE = re.compile(r"^(?:require|include)\s+(\S+)\s*$")


def assignments(path):
    """(name, overrides, op, value) for every simple assignment in a recipe file and in the
    files it requires from its own directory (${BPN} expanded), in parse order."""
    for line in logical_lines(path):
        req = REQUIRE.match(line.strip())
        if req:
            inc = path.parent / req.group(1).replace("${BPN}", recipe_name(path).removesuffix("-native"))
            if inc.is_file():
                yield from assignments(inc)
            continue
        m = ASSIGN.match(line.strip())
        if m:
            yield m.group(1), m.group(2), m.group(3), m.group(4)


def functions(path):
    """{function name with overrides: body} for shell functions."""
    text = path.read_text()
    return {m.group(1): m.group(2) for m in
            re.finditer(r"^([a-z_][A-Za-z0-9_:${}\-]*)\s*\(\)\s*\{\n(.*?)^\}", text, re.S | re.M)}


def var_values(path, name):
    vals = []
    for n, ov, _op, v in assignments(path):
        if n == name and not ov.startswith(":remove"):
            vals.append(v)
    return " ".join(vals)


def recipe_name(path):
    return path.name.split("_")[0].removesuffix(".bb").removesuffix(".bbappend")


def search_dirs(path, top):
    """FILESPATH as bitbake builds it for this recipe, for the variables the layer uses."""
    subst = {"${THISDIR}": str(path.parent), "${FLEET_SRC_DIR}": str(top / "rust-services")}
    dirs = []
    for value in var_values(path, "FILESEXTRAPATHS").split(":"):
        value = value.strip()
        for k, v in subst.items():
            value = value.replace(k, v)
        if value and "${" not in value:
            dirs.append(pathlib.Path(value))
    bpn = recipe_name(path)
    ver = path.stem.split("_")[1] if "_" in path.stem else ""
    dirs += [path.parent / f"{bpn}-{ver}", path.parent / bpn, path.parent / "files"]
    return dirs


def file_uris(path):
    for entry in var_values(path, "SRC_URI").split():
        if entry.startswith("file://"):
            yield entry[len("file://"):].split(";")[0]


# ---------------------------------------------------------------- checks

def check_oelint(top, layer):
    files = sorted(p for pat in ("*.bb", "*.bbappend", "*.bbclass") for p in layer.rglob(pat))
    suppress = []
    for line in (HERE / "oelint-suppressions").read_text().splitlines():
        rule = line.split("#")[0].strip()
        if rule:
            suppress.append(f"--suppress={rule}")
    cmd = ["oelint-adv", "--release=wrynose", "--quiet", "--relpaths", "--jobs=1",
           f"--constantmods=+{HERE / 'oelint-constants.json'}", *suppress,
           *[str(f.relative_to(layer)) for f in files]]
    res = subprocess.run(cmd, cwd=layer, capture_output=True, text=True)
    findings = {}
    for line in (res.stdout + res.stderr).splitlines():
        m = re.match(r"^([^:]+):(\d+):(\w+):([^:]+):(.*)$", line)
        if m:
            findings.setdefault(m.group(1), []).append(f"line {m.group(2)} {m.group(4)}")
        elif line.strip():
            findings.setdefault("(oelint-adv)", []).append(line.strip())
    names = [str(f.relative_to(layer)) for f in files] + sorted(
        set(findings) - {str(f.relative_to(layer)) for f in files})
    for name in names:
        report(f"oelint {name}", findings.get(name, []))


def kas_schema():
    return json.loads(resources.files("kas").joinpath("schema-kas.json").read_text())


def load_kas(top):
    return {p: yaml.safe_load(p.read_text()) for p in sorted((top / "kas").glob("*.yml"))}


def check_kas_schema(top, kasfiles):
    schema = kas_schema()
    validator = jsonschema.Draft7Validator(schema)
    for path, cfg in kasfiles.items():
        problems = [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}"
                    for e in validator.iter_errors(cfg)]
        version = (cfg or {}).get("header", {}).get("version")
        if isinstance(version, int) and version > KAS5_MAX_FORMAT:
            problems.append(f"header version {version} is newer than kas 5.0 reads ({KAS5_MAX_FORMAT})")
        for inc in (cfg or {}).get("header", {}).get("includes", []):
            inc_path = inc if isinstance(inc, str) else inc.get("file", "")
            if not (top / inc_path).is_file():
                problems.append(f"include {inc_path} does not exist")
        report(f"kas schema {path.relative_to(top)}", problems)


def read_pinned():
    pinned = {}
    for line in PINNED.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            repo, commit, layer = line.split()
            pinned.setdefault((repo, commit), set()).add(layer)
    return pinned


def check_kas_layers(top, kasfiles):
    pinned = read_pinned()
    for path, cfg in kasfiles.items():
        problems = []
        for repo_id, repo in ((cfg or {}).get("repos") or {}).items():
            repo = repo or {}
            layers = repo.get("layers")
            wanted = ["."] if layers is None else [
                name for name, state in layers.items() if state != "disabled"]
            if repo.get("url") is None:
                for name in wanted:
                    if not (top / name / "conf" / "layer.conf").is_file():
                        problems.append(f"{repo_id}: {name}/conf/layer.conf missing in this repository")
                continue
            key = (repo_id, repo.get("commit", ""))
            if key not in pinned:
                problems.append(f"{repo_id}@{key[1] or '(no commit)'} is not in {PINNED.name}")
                continue
            for name in wanted:
                if name not in pinned[key]:
                    problems.append(f"{repo_id}@{key[1][:12]} has no layer {name}")
        report(f"kas layers {path.relative_to(top)}", problems)


def pinned_from_clones(top, clones):
    """{(repo id, commit): {layer dirs}} read from the clones at the commits kas/fleet.yml pins."""
    cfg = yaml.safe_load((top / "kas" / "fleet.yml").read_text())
    result = {}
    for repo_id, repo in cfg["repos"].items():
        if not repo or not repo.get("url"):
            continue
        commit = repo["commit"]
        out = subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(clones / repo_id), "ls-tree", "-r",
             "--name-only", commit], capture_output=True, text=True, check=True).stdout
        layers = {os.path.dirname(os.path.dirname(f)) or "." for f in out.splitlines()
                  if f.endswith("conf/layer.conf")}
        result[(repo_id, commit)] = layers
    return result


def write_pinned(top, clones):
    lines = ["# Layer directories (those with conf/layer.conf) of each repository at the commit",
             "# kas/fleet.yml pins. Regenerate: tests/layer/check_layer.py TOP --write-pinned CLONES"]
    for (repo, commit), layers in sorted(pinned_from_clones(top, clones).items()):
        lines += [f"{repo} {commit} {layer}" for layer in sorted(layers)]
    PINNED.write_text("\n".join(lines) + "\n")


def check_pinned_against_clones(top, clones):
    problems = []
    try:
        real = pinned_from_clones(top, clones)
    except subprocess.CalledProcessError as e:
        problems.append(f"git: {e.stderr.strip()}")
        real = {}
    listed = read_pinned()
    for key in sorted(set(real) | set(listed)):
        if real.get(key) != listed.get(key):
            problems.append(f"{key[0]}@{key[1][:12]}: clones have {sorted(real.get(key, []))}, "
                            f"{PINNED.name} says {sorted(listed.get(key, []))}")
    report(f"pinned layers match clones in {clones}", problems)


def check_crates(top):
    """The generated includes equal what scripts/gen-crates-inc makes of Cargo.lock now."""
    for what, name in (("crates", "fleetd-crates.inc"),
                       ("licenses", "fleetd-licenses.inc and fleet-licenses.inc")):
        res = subprocess.run([sys.executable, str(top / "scripts" / "gen-crates-inc"), "--check", what],
                             capture_output=True, text=True)
        diff = [l for l in res.stdout.splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")]
        problems = []
        if res.returncode == 1 and diff:
            problems.append(f"{len(diff)} lines differ (run scripts/gen-crates-inc), first: {diff[0]}")
        elif res.returncode != 0:
            problems.append(res.stderr.strip() or f"gen-crates-inc exited {res.returncode}")
        report(f"{name} in sync with rust-services/Cargo.lock", problems)


def check_src_uri(top, layer, recipes):
    for path in recipes:
        problems = []
        dirs = search_dirs(path, top)
        for name in file_uris(path):
            if "${" in name:
                problems.append(f"file://{name}: unexpanded variable")
            elif not any((d / name).exists() for d in dirs):
                problems.append(f"file://{name} not found")
        report(f"SRC_URI files {path.relative_to(layer)}", problems)


def check_units(layer, recipes):
    for path in recipes:
        units = var_values(path, "SYSTEMD_SERVICE").split()
        if not units:
            continue
        problems = []
        sources = {pathlib.PurePath(n).name for n in file_uris(path)}
        install = " ".join(body for name, body in functions(path).items()
                           if name.startswith("do_install"))
        if "${systemd_system_unitdir}" not in install:
            problems.append("do_install installs nothing into ${systemd_system_unitdir}")
        for unit in units:
            if unit not in sources:
                problems.append(f"{unit} not in SRC_URI")
            listed_in = [n for n, _ov, _op, v in assignments(path)
                         if unit in v.split() and "${%s}" % n in install]
            if unit not in install and not listed_in:
                problems.append(f"{unit} is not installed by do_install")
        report(f"units installed {path.relative_to(layer)}", problems)


def check_image_packages(layer):
    image = layer / "recipes-core" / "images" / "fleet-image.bb"
    ours = {recipe_name(p) for p in layer.rglob("*.bb")}
    problems = []
    for pkg in var_values(image, "IMAGE_INSTALL").split():
        if pkg.startswith("fleet") and pkg not in ours:
            problems.append(f"{pkg}: no recipe in meta-fleet")
    report("fleet-image installs existing fleet recipes", problems)


def check_supervisor_tag(layer):
    """The preloaded image must carry the tag fleetd's supervisor.conf tells it to run."""
    recipe = layer / "recipes-fleet" / "fleet-supervisor-image-archive" / "fleet-supervisor-image-archive_1.0.bb"
    conf = layer / "recipes-fleet" / "fleetd" / "files" / "supervisor.conf"
    tag = var_values(recipe, "FLEET_SUPERVISOR_TAG")
    named = [line.split("=", 1)[1].strip().strip('"') for line in conf.read_text().splitlines()
             if line.startswith("SUPERVISOR_IMAGE=")]
    problems = [] if named == [tag] else [f"recipe tags {tag!r}, supervisor.conf runs {named}"]
    report("supervisor image tag matches supervisor.conf", problems)


def check_tryboot(layer, labels, wks):
    """The numbers the firmware, fleetd and each slot's cmdline.txt rely on."""
    problems = []
    # MBR numbering as wic makes it: 1-3 primary, 4 the extended container, then 5, 6, ...
    number = {label: (i + 1 if i < 3 else i + 2) for i, label in enumerate(labels)}
    autoboot = (layer / "recipes-bsp" / "fleet-rpi-tryboot" / "files" / "autoboot.txt").read_text()
    want = ("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    if autoboot != want:
        problems.append("autoboot.txt is not the file fleetd rewrites (fleet-bootenv tryboot::render)")
    if (number.get("fleet-bootA"), number.get("fleet-bootB")) != (2, 3):
        problems.append("fleet-bootA/B are not partitions 2/3")
    recipe = layer / "recipes-bsp" / "fleet-rpi-tryboot" / "fleet-rpi-tryboot_1.0.bb"
    for slot in "AB":
        have = var_values(recipe, f"FLEET_TRYBOOT_ROOT_PART_{slot}")
        if have != f"{number.get('fleet-root' + slot, 0):02d}":
            problems.append(f"FLEET_TRYBOOT_ROOT_PART_{slot} {have} is not fleet-root{slot}'s number")
    if "--diskid 0x${FLEET_RPI_DISKID}" not in wks:
        problems.append("the disk identifier is not FLEET_RPI_DISKID (cmdline.txt's PARTUUIDs)")
    return problems


def check_wks(layer):
    image = layer / "recipes-core" / "images" / "fleet-image.bb"
    defaults = {n: v for n, ov, op, v in assignments(image) if op == "?=" and not ov}
    for name, boot_size in BOOT_SIZE.items():
        path = layer / "files" / "wic" / name
        problems = []
        parts = [l for l in path.read_text().splitlines() if l.startswith("part ")]
        labels = [re.search(r"--label (\S+)", p).group(1) if "--label" in p else "?" for p in parts]
        want_labels = TRYBOOT_LABELS if name == "fleet-rpi-tryboot.wks.in" else LABELS
        if labels != want_labels:
            problems.append(f"labels {labels}, want {want_labels}")
        if name == "fleet-rpi-tryboot.wks.in":
            problems += check_tryboot(layer, labels, path.read_text())
        if PTABLE[name] == "gpt":
            names = [re.search(r"--part-name (\S+)", p).group(1) if "--part-name" in p else "?"
                     for p in parts]
            if names != LABELS:
                problems.append(f"GPT partition names {names}, want {LABELS}")
        if f"--ptable {PTABLE[name]}" not in path.read_text():
            problems.append(f"partition table is not {PTABLE[name]}")
        boot_var = "FLEET_BOOT_SIZE"
        boot_default = defaults.get(boot_var)
        rpi_boot = next((v for n, ov, _op, v in assignments(image) if n == boot_var and ov == ":rpi"), None)
        have_boot = rpi_boot if name.startswith("fleet-rpi") else boot_default
        if have_boot != boot_size:
            problems.append(f"fleet-boot {have_boot} MiB, want {boot_size}")
        for var, want in SIZES.items():
            if defaults.get(var) != want:
                problems.append(f"{var} {defaults.get(var)}, want {want}")
        # One size knob per slot: both slots and the rootfs limit follow FLEET_ROOT_SIZE.
        for part in parts:
            label = re.search(r"--label (\S+)", part)
            if label and label.group(1) in ("fleet-rootA", "fleet-rootB") and \
                    "--fixed-size ${FLEET_ROOT_SIZE}M" not in part:
                problems.append(f"{label.group(1)} is not --fixed-size ${{FLEET_ROOT_SIZE}}M")
        maxsize = var_values(image, "IMAGE_ROOTFS_MAXSIZE")
        if "FLEET_ROOT_SIZE" not in maxsize:
            problems.append(f"IMAGE_ROOTFS_MAXSIZE {maxsize!r} is not derived from FLEET_ROOT_SIZE")
        report(f"disk layout {name}", problems)


def check_device_checks(top, layer):
    """fleet-checks.sh is the one definition of the device checks: every check testimage
    (#@oeqa lines) and scripts/test-image (gcheck NAME) call is a function defined there."""
    checks = layer / "lib" / "oeqa" / "runtime" / "files" / "fleet-checks.sh"
    text = checks.read_text()
    defined = set(re.findall(r"^fleet_check_(\w+)\(\)", text, re.M))
    problems = []
    oeqa = re.findall(r"^#@oeqa (\S+)[^|\n]*\|\s*\S", text, re.M)
    if not oeqa:
        problems.append("no #@oeqa lines")
    problems += [f"#@oeqa {n}: no fleet_check_{n}" for n in oeqa if n not in defined]
    used = set(re.findall(r"\bgcheck ([a-z_]+)", (top / "scripts" / "test-image").read_text()))
    problems += [f"scripts/test-image calls gcheck {n}: no fleet_check_{n}" for n in sorted(used - defined)]
    problems += [f"fleet_check_{n} used by neither harness" for n in sorted(defined - used - set(oeqa))]
    report("device checks shared by testimage and scripts/test-image", problems)


# ---------------------------------------------------------------- the VPN client

def rust_const(path, name):
    m = re.search(r'pub const %s: &str = "([^"]*)";' % name, path.read_text())
    return m.group(1) if m else None


def unit_values(path):
    """{key: [values]} of a systemd unit file (every section together)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def check_vpn(top, layer):
    """fleet-vpn reads exactly the files the supervisor writes, only with the switch fleetd
    provision writes, restarts on failure, comes after the network, and is in the image with
    openvpn from a layer the layer declares."""
    crates = top / "rust-services" / "crates"
    os_config = crates / "fleet-supervisor" / "src" / "daemon" / "cloud" / "os_config.rs"
    data_dir = rust_const(crates / "fleetd" / "src" / "supervisor" / "spec.rs", "DATA_DIR")
    switch = rust_const(crates / "fleetd" / "src" / "provision" / "vpn.rs", "SWITCH")
    consts = {n: rust_const(os_config, n) for n in ("DIR", "CONFIG_FILE", "CA_FILE", "AUTH_FILE")}
    problems = [f"{n} not found in the Rust sources" for n, v in
                {"DATA_DIR": data_dir, "SWITCH": switch, **consts}.items() if v is None]
    if problems:
        return report("VPN unit reads what the supervisor writes, off by default", problems)
    vpn_dir = f"{data_dir}/{consts['DIR']}"
    files = [f"{vpn_dir}/{consts[n]}" for n in ("CONFIG_FILE", "CA_FILE", "AUTH_FILE")]
    recipe_dir = layer / "recipes-connectivity" / "fleet-vpn"
    service = unit_values(recipe_dir / "files" / "fleet-vpn.service")
    path_unit = unit_values(recipe_dir / "files" / "fleet-vpn.path")
    conditions = service.get("ConditionPathExists", [])
    problems += [f"fleet-vpn.service: no ConditionPathExists={p}" for p in [switch] + files
                 if p not in conditions]
    if switch not in path_unit.get("ConditionPathExists", []):
        problems.append(f"fleet-vpn.path: no ConditionPathExists={switch}")
    if path_unit.get("PathExists") != [files[0]]:
        problems.append(f"fleet-vpn.path: PathExists={path_unit.get('PathExists')}, want {files[0]}")
    if service.get("Restart") not in (["on-failure"], ["always"]):
        problems.append(f"fleet-vpn.service: Restart={service.get('Restart')}")
    for key in ("After", "Wants"):
        if "network-online.target" not in " ".join(service.get(key, [])).split():
            problems.append(f"fleet-vpn.service: {key}= lacks network-online.target")
    exec_start = " ".join(service.get("ExecStart", [])).split()
    want = ["--cd", vpn_dir, "--config", consts["CONFIG_FILE"]]
    if not any(exec_start[i:i + 4] == want for i in range(len(exec_start))):
        problems.append(f"fleet-vpn.service: ExecStart lacks {' '.join(want)}")
    recipe = recipe_dir / "fleet-vpn_1.0.bb"
    if "openvpn" not in var_values(recipe, "RDEPENDS").split():
        problems.append("fleet-vpn: RDEPENDS lacks openvpn")
    if "fleet-vpn" not in var_values(layer / "recipes-core" / "images" / "fleet-image.bb",
                                     "IMAGE_INSTALL").split():
        problems.append("fleet-image: IMAGE_INSTALL lacks fleet-vpn")
    if "networking-layer" not in var_values(layer / "conf" / "layer.conf", "LAYERDEPENDS_fleet").split():
        problems.append("layer.conf: LAYERDEPENDS_fleet lacks networking-layer (openvpn)")
    report("VPN unit reads what the supervisor writes, off by default", problems)


# ---------------------------------------------------------------- the update bundle

def class_knobs(path):
    """The ?=/??= variables a class offers."""
    return sorted({n for n, ov, op, _v in assignments(path) if op in ("?=", "??=") and not ov})


def check_bundle_recipes(top, layer):
    """kas build makes fleet-image-<machine>.fleet: the class, the recipes and their wiring."""
    problems = []
    cls = layer / "classes-recipe" / "fleet_bundle.bbclass"
    bundles = sorted((layer / "recipes-core" / "bundles").glob("fleet-image-bundle_*.bb"))
    natives = sorted((layer / "recipes-fleet" / "fleetd").glob("fleet-native_*.bb"))
    image = layer / "recipes-core" / "images" / "fleet-image.bb"
    if not cls.is_file():
        return report("bundle class and recipes", [f"{cls.relative_to(layer)} missing"])
    if len(bundles) != 1 or len(natives) != 1:
        return report("bundle class and recipes", [f"bundle recipes {bundles}, fleet-native recipes {natives}"])
    bundle, native = bundles[0], natives[0]
    text = cls.read_text()
    if "inherit fleet_bundle" not in bundle.read_text():
        problems.append(f"{bundle.name} does not inherit fleet_bundle")
    if var_values(bundle, "FLEET_BUNDLE_IMAGE") != "fleet-image":
        problems.append(f"{bundle.name}: FLEET_BUNDLE_IMAGE is not fleet-image")
    if "fleet-native" not in var_values(cls, "DEPENDS").split():
        problems.append("the class does not DEPEND on fleet-native")
    if "${FLEET_BUNDLE_KEY}" not in var_values(cls, "SRC_URI").split():
        problems.append("the signing key FLEET_BUNDLE_KEY is not in the class's SRC_URI")
    if 'do_compile[depends] += "${FLEET_BUNDLE_IMAGE}:do_image_complete"' not in text:
        problems.append("do_compile does not wait for the image's do_image_complete")
    if var_values(cls, "FLEET_BUNDLE_NAME") != "${FLEET_BUNDLE_IMAGE}${IMAGE_MACHINE_SUFFIX}":
        problems.append("the bundle is not named <image>-<machine>.fleet")
    if "${DEPLOYDIR}" not in functions(cls).get("do_deploy", "") or "addtask deploy" not in text:
        problems.append("the class does not deploy the bundle")
    fstypes = var_values(image, "IMAGE_FSTYPES").split()
    for want in ("ext4", "wic"):
        if want not in fstypes:
            problems.append(f"fleet-image's IMAGE_FSTYPES lacks {want}")
    ntext = native.read_text()
    if not re.search(r"^inherit(_defer)? native$", ntext, re.M) or not re.search(r"^inherit cargo\b", ntext, re.M):
        problems.append(f"{native.name} does not inherit cargo and native")
    crate = var_values(native, "CARGO_SRC_DIR")
    manifest = top / "rust-services" / crate / "Cargo.toml"
    if not manifest.is_file() or not re.search(r'^name = "fleet"$', manifest.read_text(), re.M):
        problems.append(f"CARGO_SRC_DIR {crate!r} is not the fleet crate")
    if recipe_packages_of(native) != ["fleet"]:
        problems.append(f"{native.name} builds {recipe_packages_of(native)}, not --package fleet")
    targets = (yaml.safe_load((top / "kas" / "fleet.yml").read_text()) or {}).get("target")
    targets = [targets] if isinstance(targets, str) else (targets or [])
    if "fleet-image" not in targets or "fleet-image-bundle" not in targets:
        problems.append(f"kas/fleet.yml targets {targets}: kas build must make the image and its bundle")
    readme = (layer / "README.md").read_text()
    undocumented = [k for k in class_knobs(cls) if f"`{k}`" not in readme and k != "FLEET_DEVICE_TYPE"]
    if undocumented:
        problems.append(f"knobs not in the layer README: {undocumented}")
    report("bundle class and recipes", problems)


def recipe_packages_of(recipe):
    return re.findall(r"--package\s+([A-Za-z0-9_-]+)", recipe.read_text())


def expand(text, values):
    """${NAME} -> values[NAME], repeatedly, as bitbake expands a shell task's variables."""
    for _ in range(10):
        new = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
        if new == text:
            break
        text = new
    return text


def run_bundle_task(layer, work, values):
    """The class's do_compile (with its helper) run by sh, its variables set as bitbake would."""
    cls = layer / "classes-recipe" / "fleet_bundle.bbclass"
    funcs = functions(cls)
    script = ('set -e\nbbfatal() { echo "ERROR: $*" >&2; exit 1; }\nbbwarn() { echo "WARNING: $*" >&2; }\n'
              f"fleet_bundle_boot_partition() {{\n{funcs['fleet_bundle_boot_partition']}}}\n"
              f"do_compile() {{\n{funcs['do_compile']}}}\ndo_compile\n")
    missing = sorted(set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", expand(script, values))))
    if missing:
        raise RuntimeError(f"unexpanded {missing}")
    return subprocess.run(["sh", "-c", expand(script, values)], cwd=work, capture_output=True, text=True)


def check_bundle_task(layer):
    """The class's shell, run outside bitbake on real files: an ext4 root (mkfs.ext4) and a
    tryboot-shaped .wic (sfdisk, mkfs.vfat -n fleet-bootA as partition 2), with the fleet CLI
    on PATH (scripts/test builds it): the bundle it writes verifies with the public key."""
    import shutil
    import tempfile
    if not shutil.which("fleet"):
        return report("bundle class makes a signed bundle", ["no fleet CLI on PATH (cargo build -p fleet)"])
    problems = []
    with tempfile.TemporaryDirectory(prefix="fleet-layer-bundle.") as tmp:
        work = pathlib.Path(tmp)
        sh = lambda cmd: subprocess.run(["sh", "-ec", cmd], cwd=work, capture_output=True, text=True, check=True)
        try:
            sh("mkdir -p deploy unpack/k root/etc && printf 'VERSION_ID=7.1\\n' >root/etc/os-release"
               " && truncate -s 16M deploy/img-m1.rootfs.ext4 && mkfs.ext4 -q -d root deploy/img-m1.rootfs.ext4"
               " && fleet bundle keygen -o unpack/k/release >/dev/null"
               # tryboot shape: p1 fleet-auto, p2 fleet-bootA (FAT32), p3 fleet-bootB
               " && truncate -s 80M deploy/img-m1.rootfs.wic"
               " && printf '2048,8192,c\\n10240,69632,c\\n79872,,c\\n' | sfdisk -q deploy/img-m1.rootfs.wic"
               " && truncate -s 34M boot.vfat && mkfs.vfat -F 32 -n fleet-bootA boot.vfat >/dev/null"
               " && dd if=boot.vfat of=deploy/img-m1.rootfs.wic bs=512 seek=10240 conv=notrunc status=none")
        except subprocess.CalledProcessError as e:
            return report("bundle class makes a signed bundle", [f"fixture: {e.stderr.strip()}"])
        base = {"B": str(work / "out"), "UNPACKDIR": str(work / "unpack"), "FLEET_BUNDLE_NAME": "img-m1",
                "FLEET_BUNDLE_IMAGE": "img", "FLEET_BUNDLE_ROOTFS": str(work / "deploy/img-m1.rootfs.ext4"),
                "FLEET_BUNDLE_WIC": str(work / "deploy/img-m1.rootfs.wic"), "FLEET_BUNDLE_VERSION": "7.1",
                "FLEET_BUNDLE_COMPATIBLE": "m1 m1-alt", "FLEET_BUNDLE_ZSTD_LEVEL": "3",
                "FLEET_BUNDLE_KEY": "file://release.pem", "FLEET_BUNDLE_BOOT": "0"}
        for case, values in (("root only", base), ("tryboot", {**base, "FLEET_BUNDLE_BOOT": "1"})):
            (work / "out").mkdir(exist_ok=True)
            res = run_bundle_task(layer, work, values)
            out = work / "out" / "img-m1.fleet"
            if res.returncode != 0 or not out.is_file():
                problems.append(f"{case}: do_compile failed: {res.stderr.strip()[-300:]}")
                continue
            ver = subprocess.run(["fleet", "bundle", "verify", "--key", str(work / "unpack/k/release.pub"), str(out)],
                                 capture_output=True, text=True)
            if ver.returncode != 0:
                problems.append(f"{case}: fleet bundle verify: {ver.stderr.strip()}")
            said = ver.stdout + ver.stderr
            if "OK, version 7.1, for m1, m1-alt, signed by" not in said:
                problems.append(f"{case}: fleet bundle verify said {said.strip()!r}")
            if ("with a boot partition image" in said) != (case == "tryboot"):
                problems.append(f"{case}: boot partition image {'missing' if case == 'tryboot' else 'present'}: {said.strip()!r}")
            # fleet-bootA of the .wic, whole (69632 sectors), as fleet bundle create reports it.
            if case == "tryboot" and "boot 35651584 bytes" not in res.stdout + res.stderr:
                problems.append(f"tryboot: not the whole fleet-bootA: {(res.stdout + res.stderr).strip()!r}")
            shutil.rmtree(work / "out")
        # Another layout: partition 2 is not fleet-bootA -> one clear error.
        sh("dd if=/dev/zero of=deploy/img-m1.rootfs.wic bs=512 seek=10240 count=1 conv=notrunc status=none")
        (work / "out").mkdir()
        res = run_bundle_task(layer, work, {**base, "FLEET_BUNDLE_BOOT": "1"})
        if res.returncode == 0 or "not fleet-bootA" not in res.stderr:
            problems.append(f"a .wic whose partition 2 is not fleet-bootA was accepted: {res.stderr.strip()}")
        # No key: an unsigned bundle and a warning.
        shutil.rmtree(work / "unpack" / "k")
        shutil.rmtree(work / "out"); (work / "out").mkdir()
        res = run_bundle_task(layer, work, {**base, "FLEET_BUNDLE_KEY": ""})
        if res.returncode != 0 or "FLEET_BUNDLE_KEY is empty" not in res.stderr:
            problems.append(f"without a key: {res.returncode} {res.stderr.strip()}")
    report("bundle class makes a signed bundle (root only, tryboot, bad layout, no key)", problems)


def main(argv):
    if len(argv) < 1:
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    top = pathlib.Path(argv[0]).resolve()
    if len(argv) == 3 and argv[1] == "--write-pinned":
        write_pinned(top, pathlib.Path(argv[2]).resolve())
        return 0
    layer = top / "meta-fleet"
    recipes = sorted(p for pat in ("*.bb", "*.bbappend") for p in layer.rglob(pat))
    kasfiles = load_kas(top)
    check_oelint(top, layer)
    check_kas_schema(top, kasfiles)
    check_kas_layers(top, kasfiles)
    if os.environ.get("FLEET_YOCTO_CLONES"):
        check_pinned_against_clones(top, pathlib.Path(os.environ["FLEET_YOCTO_CLONES"]))
    check_crates(top)
    check_src_uri(top, layer, recipes)
    check_units(layer, recipes)
    check_image_packages(layer)
    check_supervisor_tag(layer)
    check_wks(layer)
    check_device_checks(top, layer)
    check_vpn(top, layer)
    check_bundle_recipes(top, layer)
    check_bundle_task(layer)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
