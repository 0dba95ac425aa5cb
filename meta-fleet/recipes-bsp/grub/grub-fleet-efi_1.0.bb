SUMMARY = "fleetOS GRUB EFI: standalone BOOTX64.EFI with the A/B boot script embedded"
DESCRIPTION = "A GRUB EFI image whose built-in config is grub-fleet.cfg, plus the initial \
environment block (fleet_active=A) for the fleet-boot partition."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# The modules come from grub-efi's build, grub-mkimage and grub-editenv from grub-native.
DEPENDS = "grub-efi grub-native"
COMPATIBLE_HOST = "x86_64.*-linux"

SRC_URI = "file://grub-fleet.cfg.in"

S = "${UNPACKDIR}"

# Kernel arguments besides root= (set per machine, e.g. the serial console for QEMU).
FLEET_CMDLINE ?= "console=tty0 console=ttyS0,115200"
# Where the environment block lives on fleet-boot (fleetd reads the same path).
FLEET_GRUB_ENV ?= "/EFI/fleet/grubenv"
# The embedded script needs: search (labels), loadenv (load_env/save_env), probe
# (PARTUUID), test/echo/normal (scripting), ext2/fat/part_gpt (reading disks), linux.
FLEET_GRUB_MODULES ?= "normal configfile test echo search search_label search_fs_uuid \
    loadenv probe part_gpt part_msdos fat ext2 linux boot efi_gop all_video reboot"

inherit deploy nopackages

do_compile() {
    sed -e 's|@@FLEET_CMDLINE@@|${FLEET_CMDLINE}|' \
        -e 's|@@FLEET_ENV@@|${FLEET_GRUB_ENV}|' \
        ${UNPACKDIR}/grub-fleet.cfg.in > ${B}/grub-fleet.cfg
    grub-mkimage -c ${B}/grub-fleet.cfg -p /EFI/BOOT \
        -d ${RECIPE_SYSROOT}${libdir}/grub/x86_64-efi \
        -O x86_64-efi -o ${B}/BOOTX64.EFI ${FLEET_GRUB_MODULES}
    rm -f ${B}/grubenv
    grub-editenv ${B}/grubenv create
    grub-editenv ${B}/grubenv set fleet_active=A
}

do_deploy() {
    install -d ${DEPLOYDIR}/fleet-grub-efi
    install -m 0644 ${B}/BOOTX64.EFI ${B}/grubenv ${DEPLOYDIR}/fleet-grub-efi/
}
addtask deploy after do_compile before do_build
