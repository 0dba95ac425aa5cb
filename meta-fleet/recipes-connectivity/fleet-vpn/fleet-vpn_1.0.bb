SUMMARY = "fleetOS VPN client: OpenVPN with the settings the fleet server supplies"
DESCRIPTION = "fleet-vpn.service runs openvpn with the config the supervisor writes from the \
server's GET /os/v1/config (as balenaOS's openvpn.service does), only when config.json \
enables it (fleet.vpn.enabled); fleet-vpn.path starts it once the settings are written."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = " \
    file://fleet-vpn.service \
    file://fleet-vpn.path \
"

S = "${UNPACKDIR}"

inherit allarch systemd

do_install() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${UNPACKDIR}/fleet-vpn.service ${UNPACKDIR}/fleet-vpn.path \
        ${D}${systemd_system_unitdir}/
}

# Only the path unit has an [Install] section: enabled, it starts the service once the
# settings are written (and only when the switch is on).
SYSTEMD_SERVICE:${PN} = "fleet-vpn.path fleet-vpn.service"

# openvpn from meta-networking (networking-layer, in LAYERDEPENDS_fleet); tun from the kernel.
RDEPENDS:${PN} = "openvpn"
RRECOMMENDS:${PN} = "kernel-module-tun"
