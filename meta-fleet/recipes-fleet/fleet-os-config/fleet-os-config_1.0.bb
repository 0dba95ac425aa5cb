SUMMARY = "fleetOS configuration of journald, sshd, NetworkManager and the container engine"
DESCRIPTION = "fleetOS's drop-ins for the system services it configures: a volatile 8M journal, \
key-only sshd on port 22222, NetworkManager on the read-only root, the engine's data root on \
fleet-data. One recipe of its own, so editing a drop-in rebuilds this instead of systemd, \
openssh, NetworkManager or docker-moby."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = " \
    file://journald-fleet.conf \
    file://sshd-fleet.conf \
    file://networkmanager-fleet.conf \
    file://daemon.json \
"

S = "${UNPACKDIR}"

inherit allarch

do_install() {
    # journald: the vendor default under /usr/lib, so an admin's /etc drop-in and
    # provisioning's /run drop-in (50-fleet-logging.conf) both override it.
    install -D -m 0644 ${UNPACKDIR}/journald-fleet.conf \
        ${D}${systemd_unitdir}/journald.conf.d/10-fleet.conf
    # sshd: keys only, on port 22222 like balenaOS (port 22 stays free for containers);
    # sshd_config's Include reads it before its own settings, so these win.
    install -D -m 0600 ${UNPACKDIR}/sshd-fleet.conf \
        ${D}${sysconfdir}/ssh/sshd_config.d/50-fleet.conf
    # NetworkManager on the read-only root.
    install -D -m 0644 ${UNPACKDIR}/networkmanager-fleet.conf \
        ${D}${sysconfdir}/NetworkManager/conf.d/50-fleet.conf
    # Engine: images and containers on fleet-data, container logs in the journal, API on the
    # unix socket only (development mode adds TCP through fleet-devmode-engine.socket).
    install -D -m 0644 ${UNPACKDIR}/daemon.json ${D}${sysconfdir}/docker/daemon.json
}

# One package per configured service, each depending on what it configures; ${PN} (empty)
# pulls in all four and is what fleet-image installs.
PACKAGES =+ "${PN}-journald ${PN}-sshd ${PN}-networkmanager ${PN}-engine"

FILES:${PN}-journald += "${systemd_unitdir}/journald.conf.d/10-fleet.conf"
FILES:${PN}-sshd += "${sysconfdir}/ssh/sshd_config.d/50-fleet.conf"
FILES:${PN}-networkmanager += "${sysconfdir}/NetworkManager/conf.d/50-fleet.conf"
FILES:${PN}-engine += "${sysconfdir}/docker/daemon.json"

CONFFILES:${PN}-sshd = "${sysconfdir}/ssh/sshd_config.d/50-fleet.conf"
CONFFILES:${PN}-networkmanager = "${sysconfdir}/NetworkManager/conf.d/50-fleet.conf"
CONFFILES:${PN}-engine = "${sysconfdir}/docker/daemon.json"

RDEPENDS:${PN}-journald = "systemd"
RDEPENDS:${PN}-sshd = "openssh-sshd"
RDEPENDS:${PN}-networkmanager = "networkmanager"
RDEPENDS:${PN}-engine = "docker-moby"

ALLOW_EMPTY:${PN} = "1"
RDEPENDS:${PN} = "${PN}-engine ${PN}-journald ${PN}-networkmanager ${PN}-sshd"
