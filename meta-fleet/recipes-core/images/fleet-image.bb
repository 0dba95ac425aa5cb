SUMMARY = "fleetOS device image: read-only A/B root, container engine and fleetd"
DESCRIPTION = "The fleetOS root filesystem and its wic disk image: NetworkManager and \
ModemManager, docker-moby, openssh (keys only, port 22222), fleetd and its units, the \
OpenVPN client (off unless config.json enables it), the redsocks system proxy (off \
unless the boot partition configures one), mounted read-only in one of two A/B slots."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

IMAGE_FEATURES += "read-only-rootfs ssh-server-openssh"

# fleet-dev: tools for development images (kas/dev.yml); development *mode* itself is a
# config.json switch that fleetd applies at boot.
IMAGE_FEATURES[validitems] += "fleet-dev"
FEATURE_PACKAGES_fleet-dev = "strace less procps util-linux"

IMAGE_INSTALL = " \
    packagegroup-core-boot \
    ${CORE_IMAGE_EXTRA_INSTALL} \
    fleetd \
    fleet-filesystems \
    fleet-grow-data \
    fleet-supervisor-image-archive \
    fleet-device-config \
    fleet-os-config \
    fleet-vpn \
    ${FLEET_IMAGE_PROXY} \
    networkmanager \
    networkmanager-nmcli \
    modemmanager \
    docker-moby \
    ca-certificates \
    kernel-modules \
    ${FLEET_IMAGE_BOOTLOADER_TOOLS} \
    ${FLEET_IMAGE_MDNS} \
"
# mDNS (Avahi): <hostname>.local and SSH on 22222 with the _resin-device subtype that
# `balena device detect` browses for; in production and development images alike.
FLEET_MDNS ?= "1"
FLEET_IMAGE_MDNS = "${@'fleet-mdns' if d.getVar('FLEET_MDNS') == '1' else ''}"
# The system proxy balena's supervisor API configures (PATCH /v1/device/host-config):
# fleet-proxy.service runs redsocks only when the boot partition holds
# system-proxy/redsocks.conf.
FLEET_PROXY ?= "1"
FLEET_IMAGE_PROXY = "${@'fleet-proxy' if d.getVar('FLEET_PROXY') == '1' else ''}"
# Boot-state tools: fleetd edits the environment itself, these are for people debugging.
FLEET_IMAGE_BOOTLOADER_TOOLS ?= ""
FLEET_IMAGE_BOOTLOADER_TOOLS:x86-64 ?= "grub-editenv"
FLEET_IMAGE_BOOTLOADER_TOOLS:rpi ?= "${@'' if d.getVar('FLEET_RPI_TRYBOOT') == '1' else 'libubootenv-bin fleet-u-boot-env'}"

IMAGE_LINGUAS = ""

inherit core-image

# Disk layout: fleet-boot, fleet-rootA, fleet-rootB, fleet-state, fleet-data. Hard
# assignments: the machine configurations already set their own defaults with ?=.
# ext4: the root filesystem alone, what the update bundle (fleet-image-bundle) carries.
IMAGE_FSTYPES = "wic wic.bmap wic.zst ext4"
WKS_FILE = "fleet-gpt-efi.wks.in"
WKS_FILE:rpi = "${@'fleet-rpi-tryboot.wks.in' if d.getVar('FLEET_RPI_TRYBOOT') == '1' else 'fleet-rpi.wks.in'}"
FLEET_BOOT_SIZE ?= "128"
FLEET_BOOT_SIZE:rpi ?= "256"
FLEET_ROOT_SIZE ?= "1024"
FLEET_STATE_SIZE ?= "64"
FLEET_DATA_SIZE ?= "256"
# tryboot layout only: the autoboot.txt partition and the config partition fleet-boot (MiB).
FLEET_AUTOBOOT_SIZE ?= "4"
FLEET_CONFIG_SIZE ?= "32"
# One knob for the slot size: the root filesystem must fit FLEET_ROOT_SIZE (MiB), which
# both wks files give each slot; IMAGE_ROOTFS_MAXSIZE is in KiB.
IMAGE_ROOTFS_MAXSIZE = "${@int(d.getVar('FLEET_ROOT_SIZE')) * 1024}"

# x86: fleetOS's own GRUB (A/B script embedded) and its environment block on the ESP.
# Kernels stay in each slot's /boot, so nothing else goes on fleet-boot.
IMAGE_BOOT_FILES:x86-64 = " \
    fleet-grub-efi/BOOTX64.EFI;EFI/BOOT/BOOTX64.EFI \
    fleet-grub-efi/grubenv;EFI/fleet/grubenv \
"
# Raspberry Pi 4/5 with FLEET_RPI_BOOT = "tryboot": autoboot.txt alone on fleet-auto, and each
# slot's boot partition gets meta-raspberrypi's boot files with its own cmdline.txt (listed
# last, so it replaces rpi-cmdline's).
IMAGE_BOOT_FILES_label-fleet-auto = "fleet-tryboot/autoboot.txt;autoboot.txt"
IMAGE_BOOT_FILES_label-fleet-bootA = "${IMAGE_BOOT_FILES} fleet-tryboot/cmdline-A.txt;cmdline.txt"
IMAGE_BOOT_FILES_label-fleet-bootB = "${IMAGE_BOOT_FILES} fleet-tryboot/cmdline-B.txt;cmdline.txt"
WICVARS:append = " IMAGE_BOOT_FILES_label-fleet-auto IMAGE_BOOT_FILES_label-fleet-bootA IMAGE_BOOT_FILES_label-fleet-bootB"
FLEET_IMAGE_BOOT_DEPLOY = ""
FLEET_IMAGE_BOOT_DEPLOY:x86-64 = "grub-fleet-efi:do_deploy"
FLEET_IMAGE_BOOT_DEPLOY:rpi = "${@'fleet-rpi-tryboot:do_deploy' if d.getVar('FLEET_RPI_TRYBOOT') == '1' else ''}"
do_image_wic[depends] += "${FLEET_IMAGE_BOOT_DEPLOY}"

# Development images: the dev overlay's allow-empty-password also lifts fleetOS's key-only
# sshd drop-in, which would otherwise win over the edited sshd_config.
ROOTFS_POSTPROCESS_COMMAND += "${@bb.utils.contains('IMAGE_FEATURES', 'allow-empty-password', 'fleet_ssh_allow_passwords', '', d)}"
fleet_ssh_allow_passwords[doc] = "Drops the key-only lines of the fleet sshd drop-in"
fleet_ssh_allow_passwords() {
    sed -i -e '/^PasswordAuthentication/d' -e '/^KbdInteractiveAuthentication/d' \
        ${IMAGE_ROOTFS}${sysconfdir}/ssh/sshd_config.d/50-fleet.conf
}
