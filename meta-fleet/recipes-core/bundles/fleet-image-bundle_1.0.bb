SUMMARY = "Signed fleetOS update bundle of fleet-image: fleet-image-<machine>.fleet"
DESCRIPTION = "fleet-image's ext4 root filesystem (and, on the Raspberry Pi tryboot layout, \
slot A's boot partition) as a signed update bundle with a chunk index, deployed beside the \
.wic: the file fleetd update install reads from a static server, a USB stick or stdin."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

FLEET_BUNDLE_IMAGE = "fleet-image"

inherit fleet_bundle
