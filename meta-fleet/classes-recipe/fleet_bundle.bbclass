# fleet_bundle: turns an image recipe's ext4 root filesystem into a signed fleetOS update
# bundle, ${FLEET_BUNDLE_IMAGE}-${MACHINE}.fleet in DEPLOY_DIR_IMAGE beside the .wic, with the
# host tool `fleet bundle create` (fleet-native). As with meta-rauc's bundle class, the bundle
# is a recipe of its own that inherits this class: the image recipe stays a plain image (image
# recipes fetch nothing, and the key comes through the fetcher), and a new key re-runs only the
# bundle. Knobs: the layer README, "Variables".

inherit deploy image-artifact-names nopackages

# The image recipe whose root goes into the bundle; it must have ext4 in IMAGE_FSTYPES (and,
# for the tryboot layout, wic: slot A's boot partition is taken from the .wic).
FLEET_BUNDLE_IMAGE ??= "fleet-image"
# The `fleet bundle keygen` private key (PEM) as a fetcher URI: file://NAME.pem through
# FILESEXTRAPATHS (a bbappend of the bundle recipe), or file:///absolute/path/NAME.pem. In
# SRC_URI the fetcher checksums it, so a key rotated at the same path rebuilds the bundle.
# Empty: the bundle is unsigned (a warning), to be signed later with `fleet bundle sign`.
FLEET_BUNDLE_KEY ??= ""
# The device type(s) the bundle installs on (fleetd compares /etc/fleet/device-type).
FLEET_DEVICE_TYPE ??= "${MACHINE}"
FLEET_BUNDLE_COMPATIBLE ??= "${FLEET_DEVICE_TYPE}"
# The version devices compare with their own (VERSION_ID of os-release: DISTRO_VERSION).
FLEET_BUNDLE_VERSION ??= "${DISTRO_VERSION}"
FLEET_BUNDLE_ZSTD_LEVEL ??= "19"
# 1: the bundle also carries slot A's boot partition (Raspberry Pi firmware tryboot layout,
# one boot partition per slot); fleetd refuses a bundle without it on that layout.
FLEET_BUNDLE_BOOT ??= "${@'1' if d.getVar('FLEET_RPI_TRYBOOT') == '1' else '0'}"

FLEET_BUNDLE_NAME = "${FLEET_BUNDLE_IMAGE}${IMAGE_MACHINE_SUFFIX}"
FLEET_BUNDLE_ROOTFS = "${DEPLOY_DIR_IMAGE}/${FLEET_BUNDLE_IMAGE}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}.ext4"
FLEET_BUNDLE_WIC = "${DEPLOY_DIR_IMAGE}/${FLEET_BUNDLE_IMAGE}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}.wic"

DEPENDS += "fleet-native"
INHIBIT_DEFAULT_DEPS = "1"

SRC_URI += "${FLEET_BUNDLE_KEY}"

S = "${UNPACKDIR}"
B = "${WORKDIR}/bundle"

# The bundle holds a root filesystem built for this machine.
PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"
do_install[noexec] = "1"
deltask do_populate_sysroot

do_compile[depends] += "${FLEET_BUNDLE_IMAGE}:do_image_complete"
do_compile[cleandirs] = "${B}"

do_compile() {
    [ -f "${FLEET_BUNDLE_ROOTFS}" ] || \
        bbfatal "${FLEET_BUNDLE_ROOTFS} not found: add ext4 to IMAGE_FSTYPES of ${FLEET_BUNDLE_IMAGE}"
    # A file:///absolute/path keeps its directories below UNPACKDIR: look for the key.
    keys=$(find ${UNPACKDIR} -type f -name '*.pem')
    set --
    if [ -n "${FLEET_BUNDLE_KEY}" ]; then
        [ "$(echo "$keys" | wc -w)" -eq 1 ] || \
            bbfatal "FLEET_BUNDLE_KEY must name one *.pem private key, got: $keys"
        set -- --key "$keys"
    else
        bbwarn "FLEET_BUNDLE_KEY is empty: ${FLEET_BUNDLE_NAME}.fleet is unsigned and every device refuses it until it is signed (fleet bundle sign)"
    fi
    if [ "${FLEET_BUNDLE_BOOT}" = "1" ]; then
        fleet_bundle_boot_partition ${FLEET_BUNDLE_WIC} ${B}/boot.vfat
        set -- "$@" --boot ${B}/boot.vfat
    fi
    for c in ${FLEET_BUNDLE_COMPATIBLE}; do
        set -- "$@" --compatible "$c"
    done
    fleet bundle create --rootfs ${FLEET_BUNDLE_ROOTFS} --os-version "${FLEET_BUNDLE_VERSION}" \
        --level ${FLEET_BUNDLE_ZSTD_LEVEL} "$@" -o ${B}/${FLEET_BUNDLE_NAME}.fleet
}

# fleet_bundle_boot_partition WIC OUT: copies MBR partition 2 (fleet-bootA on the tryboot
# layout, meta-fleet/files/wic/fleet-rpi-tryboot.wks.in) out of the disk image, after checking
# the FAT32 volume label in its boot sector, so another layout fails here and not on a device.
fleet_bundle_boot_partition[doc] = "Copies slot A's boot partition out of the tryboot .wic"
fleet_bundle_boot_partition() {
    [ -f "$1" ] || bbfatal "$1 not found: add wic to IMAGE_FSTYPES of ${FLEET_BUNDLE_IMAGE}"
    start=$(od -An -tu4 -j470 -N4 "$1" | tr -d ' ')
    sectors=$(od -An -tu4 -j474 -N4 "$1" | tr -d ' ')
    label=$(dd if="$1" bs=1 skip=$(expr "$start" \* 512 + 71) count=11 status=none)
    [ "$label" = "fleet-bootA" ] || \
        bbfatal "$1: partition 2 is labelled '$label', not fleet-bootA (not the tryboot layout?)"
    dd if="$1" of="$2" bs=512 skip="$start" count="$sectors" status=none
}

do_deploy[doc] = "Deploys ${FLEET_BUNDLE_NAME}.fleet beside the image's .wic"
do_deploy() {
    install -m 0644 ${B}/${FLEET_BUNDLE_NAME}.fleet ${DEPLOYDIR}/
}
addtask deploy after do_compile before do_build
