SUMMARY = "fleetOS boot, state and data mounts and the state binds on the read-only root"
DESCRIPTION = "Mount units for fleet-boot, fleet-state and fleet-data by label, and one service that binds the writable paths of the read-only root from them, seeding each from the rootfs on first use."
SECTION = "base"
LICENSE = "Apache-2.0"
# The layer's own files carry no licence text of their own: the common Apache-2.0 text applies.
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://mnt-boot.mount \
            file://mnt-state.mount \
            file://mnt-data.mount \
            file://fleet-state-binds.service \
            file://fleet-state-binds \
            file://state-binds.conf \
"

S = "${UNPACKDIR}"

inherit allarch systemd

# One service and a list rather than a mount unit per bind: the binds must be seeded from
# the rootfs on first use (a mount unit cannot), and one list is easier to extend than nine
# escaped unit names (etc-NetworkManager-system\x2dconnections.mount, ...).
SYSTEMD_SERVICE:${PN} = "mnt-boot.mount mnt-state.mount mnt-data.mount fleet-state-binds.service"

do_install() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/mnt-boot.mount ${S}/mnt-state.mount ${S}/mnt-data.mount \
        ${S}/fleet-state-binds.service ${D}${systemd_system_unitdir}/
    install -D -m 0755 ${S}/fleet-state-binds ${D}${libexecdir}/fleet/fleet-state-binds
    install -D -m 0644 ${S}/state-binds.conf ${D}${sysconfdir}/fleet/state-binds.conf

    # Mount points and bind targets must exist on the read-only root.
    install -d ${D}/mnt/boot ${D}/mnt/state ${D}/mnt/data
    install -d ${D}${sysconfdir}/NetworkManager/system-connections ${D}${sysconfdir}/docker
    install -d ${D}${localstatedir}/lib/NetworkManager ${D}${localstatedir}/lib/fleet \
        ${D}${localstatedir}/lib/docker ${D}${localstatedir}/lib/containerd
    install -d -m 0700 ${D}${ROOT_HOME}/.ssh

    # Read-only root: logind needs the linger directory to exist (else each login waits
    # 25 s), and resolv.conf points at what NetworkManager writes under /run.
    install -d ${D}${localstatedir}/lib/systemd/linger
    # Bind source of the supervisor's firmware feature (io.balena.features.firmware, in
    # balena-cli's default composition): the engine cannot create it on a read-only root,
    # and a machine without firmware packages has no /lib/firmware.
    install -d ${D}${nonarch_base_libdir}/firmware
    ln -sf ../run/NetworkManager/resolv.conf ${D}${sysconfdir}/resolv.conf
}

FILES:${PN} += "${systemd_system_unitdir} \
    ${libexecdir}/fleet \
    /mnt \
    ${sysconfdir}/fleet \
    ${sysconfdir}/NetworkManager/system-connections \
    ${sysconfdir}/docker \
    ${sysconfdir}/resolv.conf \
    ${localstatedir}/lib \
    ${ROOT_HOME}/.ssh \
    ${nonarch_base_libdir}/firmware \
"

# cp -a, mount --bind and sync: busybox or coreutils/util-linux both do.
RDEPENDS:${PN} = "util-linux-mount"
