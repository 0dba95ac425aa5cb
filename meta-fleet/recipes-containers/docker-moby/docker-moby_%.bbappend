# fleetOS engine configuration: images and containers on the data partition, container logs
# in the journal, API on the unix socket only (development mode adds TCP 2377 through
# fleet-devmode-engine.socket, not here).
FILESEXTRAPATHS:prepend:fleetos := "${THISDIR}/files:"

SRC_URI:append:fleetos = " file://daemon.json"

do_install:append:fleetos() {
    install -d ${D}${sysconfdir}/docker
    install -m 0644 ${UNPACKDIR}/daemon.json ${D}${sysconfdir}/docker/daemon.json
}

FILES:${PN}:append:fleetos = " ${sysconfdir}/docker/daemon.json"
