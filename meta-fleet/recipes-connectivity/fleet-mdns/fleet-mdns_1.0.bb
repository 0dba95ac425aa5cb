SUMMARY = "fleetOS's mDNS announcement: <hostname>.local and SSH on port 22222"
DESCRIPTION = "An Avahi service file announcing the device's sshd (_ssh._tcp on port 22222) \
with the _resin-device subtype that balena-cli's `balena device detect` browses for, and \
fleetOS's own subtype. Avahi (oe-core's avahi-daemon) publishes <hostname>.local as well."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = " \
    file://fleet-ssh.service.in \
    file://fleet-mdns-service \
"

S = "${UNPACKDIR}"

inherit allarch

# Subtypes of the _ssh._tcp service, space-separated (without `._sub._ssh._tcp`).
FLEET_MDNS_SUBTYPES ?= "_resin-device _fleetos-device"

do_install() {
    install -d ${D}${sysconfdir}/avahi/services
    sh ${UNPACKDIR}/fleet-mdns-service ${UNPACKDIR}/fleet-ssh.service.in ${FLEET_MDNS_SUBTYPES} \
        >${D}${sysconfdir}/avahi/services/fleet-ssh.service
    chmod 0644 ${D}${sysconfdir}/avahi/services/fleet-ssh.service
}

RDEPENDS:${PN} = "avahi-daemon"
