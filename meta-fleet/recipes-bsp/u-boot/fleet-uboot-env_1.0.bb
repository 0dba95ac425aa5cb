SUMMARY = "fw_printenv/fw_setenv configuration for fleetOS's U-Boot environment on fleet-boot"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
COMPATIBLE_MACHINE = "^rpi$"

# U-Boot keeps its environment in uboot.env on fleet-boot (ENV_IS_IN_FAT); the size must
# match the U-Boot build's CONFIG_ENV_SIZE (0x4000 for the Raspberry Pi defconfigs).
FLEET_UBOOT_ENV_FILE ?= "/mnt/boot/uboot.env"
FLEET_UBOOT_ENV_SIZE ?= "0x4000"

inherit allarch

do_install() {
    install -d ${D}${sysconfdir}
    printf '%s 0x0000 %s\n' "${FLEET_UBOOT_ENV_FILE}" "${FLEET_UBOOT_ENV_SIZE}" > ${D}${sysconfdir}/fw_env.config
    chmod 0644 ${D}${sysconfdir}/fw_env.config
}

FILES:${PN} = "${sysconfdir}/fw_env.config"
