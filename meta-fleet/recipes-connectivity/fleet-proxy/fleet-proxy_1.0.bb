SUMMARY = "fleetOS system proxy: redsocks and its iptables redirect"
DESCRIPTION = "fleet-proxy.service runs redsocks with the boot partition's \
system-proxy/redsocks.conf and sends outgoing TCP (the host's and containers') through it, \
except system-proxy/no_proxy and private ranges, as balenaOS does with the files the \
supervisor API writes. Without redsocks.conf it does not start."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = " \
    file://fleet-proxy \
    file://fleet-proxy.service \
"

S = "${UNPACKDIR}"

inherit allarch systemd useradd

do_install() {
    install -d ${D}${libexecdir}/fleet ${D}${systemd_system_unitdir}
    install -m 0755 ${UNPACKDIR}/fleet-proxy ${D}${libexecdir}/fleet/
    sed -e 's|@LIBEXECDIR@|${libexecdir}|g' -e 's|@BINDIR@|${bindir}|g' \
        ${UNPACKDIR}/fleet-proxy.service >${D}${systemd_system_unitdir}/fleet-proxy.service
    chmod 0644 ${D}${systemd_system_unitdir}/fleet-proxy.service
}

SYSTEMD_SERVICE:${PN} = "fleet-proxy.service"

# redsocks runs as its own user: the redirect leaves that user's connections alone.
USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group redsocks"

RDEPENDS:${PN} = "iproute2 iptables redsocks"
RRECOMMENDS:${PN} = "kernel-module-bridge kernel-module-xt-nat kernel-module-xt-owner"
