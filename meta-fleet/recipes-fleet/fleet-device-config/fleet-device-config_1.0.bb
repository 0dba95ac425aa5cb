SUMMARY = "fleetOS device identity for updates: device type, trusted keys, update settings"
DESCRIPTION = "Installs /etc/fleet/device-type (the type update bundles must name), the \
ed25519 public keys fleetd trusts for update bundles (/etc/fleet/keys) and \
/etc/fleet/update.conf."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# The `fleet bundle keygen` public keys (*.pub) this image trusts, as fetcher URIs: file://NAME
# found through FILESEXTRAPATHS (a bbappend of this recipe), or file:///absolute/path/NAME.pub.
# In SRC_URI the fetcher checksums each key, so a key rotated at the same path rebuilds the
# package instead of coming stale from sstate. Empty: the device refuses every update bundle.
FLEET_UPDATE_KEYS_URI ??= ""

SRC_URI = "file://update.conf"
SRC_URI += "${FLEET_UPDATE_KEYS_URI}"

S = "${UNPACKDIR}"

# The device type bundles are checked against (a name from the repository's conf/device-types/).
FLEET_DEVICE_TYPE ?= "${MACHINE}"

PACKAGE_ARCH = "${MACHINE_ARCH}"

# How many keys FLEET_UPDATE_KEYS_URI names: each must arrive as one *.pub (fleetd reads no other).
FLEET_UPDATE_KEYS_COUNT = "${@len(d.getVar('FLEET_UPDATE_KEYS_URI').split())}"

do_install() {
    install -d ${D}${sysconfdir}/fleet/keys
    echo "${FLEET_DEVICE_TYPE}" > ${D}${sysconfdir}/fleet/device-type
    install -m 0644 ${UNPACKDIR}/update.conf ${D}${sysconfdir}/fleet/update.conf
    # A file:///absolute/path keeps its directories below UNPACKDIR: look for the keys.
    find ${UNPACKDIR} -type f -name '*.pub' -exec install -m 0644 {} ${D}${sysconfdir}/fleet/keys/ \;
    installed=$(find ${D}${sysconfdir}/fleet/keys -type f | wc -l)
    if [ "$installed" -ne "${FLEET_UPDATE_KEYS_COUNT}" ]; then
        bbfatal "FLEET_UPDATE_KEYS_URI names ${FLEET_UPDATE_KEYS_COUNT} keys but $installed distinct *.pub files arrived (fleetd reads only *.pub)"
    fi
    if [ "$installed" -eq 0 ]; then
        bbwarn "FLEET_UPDATE_KEYS_URI is empty: this image will refuse every update bundle"
    fi
}

FILES:${PN} += "${sysconfdir}/fleet"
CONFFILES:${PN} = "${sysconfdir}/fleet/update.conf"
