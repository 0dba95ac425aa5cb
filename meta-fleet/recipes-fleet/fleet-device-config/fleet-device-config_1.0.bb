SUMMARY = "fleetOS device identity for updates: device type, trusted keys, update settings"
DESCRIPTION = "Installs /etc/fleet/device-type (the type update bundles must name), the \
ed25519 public keys fleetd trusts for update bundles (/etc/fleet/keys) and \
/etc/fleet/update.conf."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://update.conf"

S = "${UNPACKDIR}"

# The device type bundles are checked against (a name from the repository's conf/device-types/).
FLEET_DEVICE_TYPE ?= "${MACHINE}"
# Absolute paths of the `fleet bundle keygen` public keys (*.pub) this image trusts. Without
# one, the device refuses every update bundle.
FLEET_UPDATE_PUBKEYS ?= ""

PACKAGE_ARCH = "${MACHINE_ARCH}"

do_install[vardeps] += "FLEET_DEVICE_TYPE FLEET_UPDATE_PUBKEYS"
do_install() {
    install -d ${D}${sysconfdir}/fleet/keys
    echo "${FLEET_DEVICE_TYPE}" > ${D}${sysconfdir}/fleet/device-type
    install -m 0644 ${UNPACKDIR}/update.conf ${D}${sysconfdir}/fleet/update.conf
    for key in ${FLEET_UPDATE_PUBKEYS}; do
        install -m 0644 "$key" ${D}${sysconfdir}/fleet/keys/
    done
    if [ -z "${FLEET_UPDATE_PUBKEYS}" ]; then
        bbwarn "FLEET_UPDATE_PUBKEYS is empty: this image will refuse every update bundle"
    fi
}

FILES:${PN} += "${sysconfdir}/fleet"
CONFFILES:${PN} = "${sysconfdir}/fleet/update.conf"
