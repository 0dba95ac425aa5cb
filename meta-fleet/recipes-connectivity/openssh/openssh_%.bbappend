# fleetOS sshd: keys only, on port 22222 like balenaOS (port 22 stays free for containers).
FILESEXTRAPATHS:prepend:fleetos := "${THISDIR}/files:"

SRC_URI:append:fleetos = " file://50-fleet.conf"

do_install:append:fleetos() {
    install -d ${D}${sysconfdir}/ssh/sshd_config.d
    install -m 0600 ${UNPACKDIR}/50-fleet.conf ${D}${sysconfdir}/ssh/sshd_config.d/50-fleet.conf
}

FILES:${PN}-sshd:append:fleetos = " ${sysconfdir}/ssh/sshd_config.d/50-fleet.conf"
