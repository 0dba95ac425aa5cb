SUMMARY = "Supervisor container image preloaded into fleetOS (docker save archive)"
DESCRIPTION = "Packs the tarball of the fleet-supervisor-rootfs image recipe into a docker \
save archive tagged as /etc/fleet/supervisor.conf names it, with the supervisor as its \
command and its healthcheck, and installs it where fleetd supervisor loads it on first start."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

DEPENDS = "python3-native"

# A ready `docker save` archive to install instead of building one, as a fetcher URI
# (file://NAME through FILESEXTRAPATHS, file:///absolute/path.tar, or a download with its
# sha256sum). In SRC_URI the fetcher checksums it, so a new archive at the same path rebuilds
# the package instead of coming stale from sstate. Empty: build it from FLEET_SUPERVISOR_ROOTFS.
FLEET_SUPERVISOR_ARCHIVE_URI ??= ""
# The tag fleetd runs: SUPERVISOR_IMAGE in fleetd's supervisor.conf.
FLEET_SUPERVISOR_TAG ?= "fleet/supervisor:latest"
# The image recipe whose tar rootfs becomes the image's one layer.
FLEET_SUPERVISOR_ROOTFS ?= "fleet-supervisor-rootfs"
# Docker HEALTHCHECK timing, seconds. The engine runs the first check one interval after the
# start, and fleetd reports READY (boot, trial health) only once it passed: keep it short.
FLEET_SUPERVISOR_HEALTH_INTERVAL ?= "5"
FLEET_SUPERVISOR_HEALTH_START_PERIOD ?= "60"

SRC_URI = "file://make-docker-archive"
# Copied as it is (unpack=0: the fetcher would extract a .tar) into its own directory.
SRC_URI += "${@'${FLEET_SUPERVISOR_ARCHIVE_URI};unpack=0;subdir=supervisor-archive' if d.getVar('FLEET_SUPERVISOR_ARCHIVE_URI') else ''}"

S = "${UNPACKDIR}"

# image-artifact-names: IMAGE_MACHINE_SUFFIX / IMAGE_NAME_SUFFIX, to find the rootfs tar.
inherit python3native image-artifact-names

# The archive holds a rootfs built for this machine.
PACKAGE_ARCH = "${MACHINE_ARCH}"

FLEET_SUPERVISOR_ARCH = "${@{'x86_64': 'amd64', 'aarch64': 'arm64', 'arm': 'arm'}.get(d.getVar('TARGET_ARCH'), d.getVar('TARGET_ARCH'))}"
FLEET_SUPERVISOR_ROOTFS_TAR = "${DEPLOY_DIR_IMAGE}/${FLEET_SUPERVISOR_ROOTFS}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}.tar"

do_compile[depends] += "${@'' if d.getVar('FLEET_SUPERVISOR_ARCHIVE_URI') else d.getVar('FLEET_SUPERVISOR_ROOTFS') + ':do_image_complete'}"

do_compile() {
    if [ -n "${FLEET_SUPERVISOR_ARCHIVE_URI}" ]; then
        # A file:///absolute/path keeps its directories below the subdir.
        archive=$(find ${UNPACKDIR}/supervisor-archive -type f)
        [ "$(echo "$archive" | wc -w)" -eq 1 ] || \
            bbfatal "FLEET_SUPERVISOR_ARCHIVE_URI must name one file, got: $archive"
        cp "$archive" ${B}/supervisor-image.tar
    else
        ${PYTHON} ${UNPACKDIR}/make-docker-archive \
            --arch ${FLEET_SUPERVISOR_ARCH} \
            --tag ${FLEET_SUPERVISOR_TAG} \
            --output ${B}/supervisor-image.tar \
            --layer ${FLEET_SUPERVISOR_ROOTFS_TAR} \
            --cmd '["${bindir}/fleet-supervisor","run"]' \
            --healthcheck '["CMD","${bindir}/fleet-supervisor","healthcheck"]' \
            --healthcheck-interval ${FLEET_SUPERVISOR_HEALTH_INTERVAL} \
            --healthcheck-start-period ${FLEET_SUPERVISOR_HEALTH_START_PERIOD}
    fi
}

do_install() {
    install -d ${D}${datadir}/fleet
    install -m 0644 ${B}/supervisor-image.tar ${D}${datadir}/fleet/supervisor-image.tar
}

FILES:${PN} += "${datadir}/fleet/supervisor-image.tar"
