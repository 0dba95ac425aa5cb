SUMMARY = "fleetOS U-Boot boot script for Raspberry Pi (A/B slot selection)"
DESCRIPTION = "boot.scr that picks the A or B root slot from fleetOS's two-copy boot state \
(fleet-a.env/fleet-b.env: fleet_active, fleet_try, fleet_tries), counting trial boots down and \
rolling back. Only boot.scr is deployed: the state files are created by the first write."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
COMPATIBLE_MACHINE = "^rpi$"

DEPENDS = "u-boot-mkimage-native"
INHIBIT_DEFAULT_DEPS = "1"

# Takes meta-raspberrypi's place as u-boot-default-script (PREFERRED_PROVIDER in fleetos.conf),
# so sdcard/wic images pick up this boot.scr the same way.
PROVIDES += "u-boot-default-script"

SRC_URI = "file://boot.cmd.in"

S = "${UNPACKDIR}"

# Kernel arguments besides root= (the firmware's own bootargs are kept by the script).
FLEET_CMDLINE ?= "console=serial0,115200 console=tty1"

inherit kernel-arch deploy nopackages

do_compile() {
    sed -e 's|@@KERNEL_IMAGETYPE@@|${KERNEL_IMAGETYPE}|' \
        -e 's|@@KERNEL_BOOTCMD@@|${KERNEL_BOOTCMD}|' \
        -e 's|@@FLEET_CMDLINE@@|${FLEET_CMDLINE}|' \
        ${UNPACKDIR}/boot.cmd.in > ${B}/boot.cmd
    mkimage -A ${UBOOT_ARCH} -T script -C none -n "fleetOS boot script" -d ${B}/boot.cmd ${B}/boot.scr
}

do_deploy() {
    install -d ${DEPLOYDIR}
    install -m 0644 ${B}/boot.scr ${DEPLOYDIR}
}
addtask deploy after do_compile before do_build
