SUMMARY = "fw_printenv configuration for the U-Boot environment on fleet-boot"
DESCRIPTION = "/etc/fw_env.config for libubootenv's fw_printenv/fw_setenv, naming U-Boot's own \
uboot.env on fleet-boot (fleet_extra_cmdline). The A/B boot state is not there: boot.scr and \
fleetd keep it in fleet-a.env/fleet-b.env (see the layer README)."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
COMPATIBLE_MACHINE = "^rpi$"

# U-Boot keeps its own environment in uboot.env on fleet-boot (ENV_IS_IN_FAT); the size must
# match the U-Boot build's CONFIG_ENV_SIZE (0x4000 for the Raspberry Pi defconfigs).
FLEET_UBOOT_ENV_FILE ?= "/mnt/boot/uboot.env"
FLEET_UBOOT_ENV_SIZE ?= "0x4000"

SRC_URI = "file://fw_env.config.in"

S = "${UNPACKDIR}"

inherit allarch

do_install() {
    install -d ${D}${sysconfdir}
    sed -e 's|@@FLEET_UBOOT_ENV_FILE@@|${FLEET_UBOOT_ENV_FILE}|' \
        -e 's|@@FLEET_UBOOT_ENV_SIZE@@|${FLEET_UBOOT_ENV_SIZE}|' \
        ${UNPACKDIR}/fw_env.config.in > ${D}${sysconfdir}/fw_env.config
    chmod 0644 ${D}${sysconfdir}/fw_env.config
}

FILES:${PN} += "${sysconfdir}/fw_env.config"
