# fleetOS: NetworkManager settings for the read-only root (see files/fleet-networkmanager.conf).
FILESEXTRAPATHS:prepend:fleetos := "${THISDIR}/files:"

SRC_URI:append:fleetos = " file://fleet-networkmanager.conf"

do_install:append:fleetos() {
    install -d ${D}${sysconfdir}/NetworkManager/conf.d
    install -m 0644 ${UNPACKDIR}/fleet-networkmanager.conf \
        ${D}${sysconfdir}/NetworkManager/conf.d/50-fleet.conf
}

FILES:${PN}:append:fleetos = " ${sysconfdir}/NetworkManager/conf.d/50-fleet.conf"
