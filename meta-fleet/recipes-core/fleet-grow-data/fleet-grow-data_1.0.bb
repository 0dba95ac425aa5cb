SUMMARY = "First-boot growth of the fleet-data partition to the end of the disk"
DESCRIPTION = "Grows fleet-data (and, on MBR, the extended partition holding it) with sfdisk, \
then the mounted ext4 with resize2fs. systemd-repart only handles GPT, and growpart cannot \
grow the extended container of the Raspberry Pi's logical partitions."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = " \
    file://fleet-grow-data \
    file://fleet-grow-data.service \
"

S = "${UNPACKDIR}"

inherit allarch systemd

do_install() {
    install -d ${D}${libexecdir}/fleet ${D}${systemd_system_unitdir}
    install -m 0755 ${UNPACKDIR}/fleet-grow-data ${D}${libexecdir}/fleet/fleet-grow-data
    sed -e 's|@LIBEXECDIR@|${libexecdir}|g' ${UNPACKDIR}/fleet-grow-data.service \
        > ${D}${systemd_system_unitdir}/fleet-grow-data.service
    chmod 0644 ${D}${systemd_system_unitdir}/fleet-grow-data.service
}

SYSTEMD_SERVICE:${PN} = "fleet-grow-data.service"

RDEPENDS:${PN} = "e2fsprogs-resize2fs util-linux-findmnt util-linux-lsblk util-linux-partx util-linux-sfdisk"
