SUMMARY = "fleetOS firmware A/B for Raspberry Pi 4/5: autoboot.txt, per-slot cmdline.txt"
DESCRIPTION = "With FLEET_RPI_BOOT = \"tryboot\": autoboot.txt for the fleet-auto partition \
(tryboot_a_b=1, slot A's boot partition 2 by default, slot B's partition 3 under [tryboot]) and \
one cmdline.txt per slot naming its root by PARTUUID. fleetd commits an update by rewriting \
autoboot.txt in place (see the layer README)."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
COMPATIBLE_MACHINE = "^(raspberrypi4-64|raspberrypi5)$"

INHIBIT_DEFAULT_DEPS = "1"

# fleetd rewrites this file byte for byte (fleet-bootenv's tryboot::render): do not edit it.
SRC_URI = "file://autoboot.txt"

S = "${UNPACKDIR}"

# Kernel arguments besides root= and fleet.slot=.
FLEET_CMDLINE ?= "console=serial0,115200 console=tty1"
# MBR partition numbers of the slots' roots in fleet-rpi-tryboot.wks.in (logical 6 and 7).
FLEET_TRYBOOT_ROOT_PART_A = "06"
FLEET_TRYBOOT_ROOT_PART_B = "07"

inherit deploy nopackages

do_compile() {
    for slot in A B; do
        if [ "$slot" = A ]; then part=${FLEET_TRYBOOT_ROOT_PART_A}; else part=${FLEET_TRYBOOT_ROOT_PART_B}; fi
        echo "${FLEET_CMDLINE} root=PARTUUID=${FLEET_RPI_DISKID}-$part rootfstype=ext4 ro rootwait fleet.slot=$slot" \
            > ${B}/cmdline-$slot.txt
    done
}

do_deploy() {
    install -d ${DEPLOYDIR}/fleet-tryboot
    install -m 0644 ${UNPACKDIR}/autoboot.txt ${B}/cmdline-A.txt ${B}/cmdline-B.txt ${DEPLOYDIR}/fleet-tryboot/
}
addtask deploy after do_compile before do_build
