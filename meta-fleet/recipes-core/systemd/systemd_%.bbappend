# fleetOS default journal: volatile, in RAM, capped at 8M (fleetd switches it at runtime).
FILESEXTRAPATHS:prepend:fleetos := "${THISDIR}/files:"

SRC_URI:append:fleetos = " file://journald-fleet.conf"

# Vendor default under /usr/lib so an admin's /etc drop-in and provisioning's /run drop-in
# (50-fleet-logging.conf) both override it.
do_install:append:fleetos() {
    install -d ${D}${systemd_unitdir}/journald.conf.d
    install -m 0644 ${UNPACKDIR}/journald-fleet.conf ${D}${systemd_unitdir}/journald.conf.d/10-fleet.conf
}

FILES:${PN}:append:fleetos = " ${systemd_unitdir}/journald.conf.d/10-fleet.conf"
