SUMMARY = "fleetOS device services (fleetd) and the fleet supervisor binary"
DESCRIPTION = "One multi-call binary, fleetd, with one subcommand per job (provisioning, network \
import, supervisor, health, updates), and the systemd units that run it. The same workspace \
build also yields fleet-supervisor, packaged on its own for the supervisor container image."
# LICENSE of the recipe and of each package: Apache-2.0 (fleetOS's own crates) and the
# licences of the crates linked in, generated from Cargo.lock by scripts/gen-crates-inc.
require ${BPN}-licenses.inc
require fleet-rust-services.inc

SRC_URI += " \
    file://fleet-provision.service \
    file://fleet-netimport.service \
    file://fleet-supervisor.service \
    file://fleet-health.service \
    file://fleet-update.service \
    file://fleet-update.timer \
    file://fleet-slot-index.service \
    file://fleet-devmode-engine.socket \
    file://fleet-devmode-engine.service \
    file://supervisor.conf \
"

# Build the two device binaries in one cargo run (they share most crates); the workspace
# lock file pins every crate.
CARGO_SRC_DIR = "crates/fleetd"
CARGO_BUILD_FLAGS:append = " --package fleetd --package fleet-supervisor"

inherit cargo cargo-update-recipe-crates systemd

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    for unit in ${FLEETD_UNITS}; do
        install -m 0644 ${UNPACKDIR}/$unit ${D}${systemd_system_unitdir}/
    done
    install -d ${D}${sysconfdir}/fleet
    install -m 0644 ${UNPACKDIR}/supervisor.conf ${D}${sysconfdir}/fleet/supervisor.conf
}

FLEETD_UNITS = " \
    fleet-provision.service \
    fleet-netimport.service \
    fleet-supervisor.service \
    fleet-health.service \
    fleet-update.service \
    fleet-update.timer \
    fleet-slot-index.service \
    fleet-devmode-engine.socket \
    fleet-devmode-engine.service \
"
# The development-mode engine socket is started by fleetd provision when config.json asks.
SYSTEMD_SERVICE:${PN} = " \
    fleet-provision.service \
    fleet-netimport.service \
    fleet-supervisor.service \
    fleet-health.service \
    fleet-update.timer \
    fleet-slot-index.service \
"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# fleet-supervisor runs in its own container, not on the host: the fleet-supervisor-rootfs
# image installs this package.
PACKAGES =+ "fleet-supervisor"
FILES:fleet-supervisor += "${bindir}/fleet-supervisor"

FILES:${PN} += "${systemd_system_unitdir} ${sysconfdir}/fleet"
CONFFILES:${PN} = "${sysconfdir}/fleet/supervisor.conf"

RDEPENDS:${PN} = "docker-moby networkmanager"
