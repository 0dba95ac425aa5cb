SUMMARY = "Supervisor container image preloaded into fleetOS (docker save archive)"
DESCRIPTION = "Packs the fleet-supervisor-container root filesystem into a docker save \
archive tagged as /etc/fleet/supervisor.conf names it, with the supervisor as its command \
and its healthcheck, and installs it where fleetd supervisor loads it on first start."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

DEPENDS = "python3-native"

# Absolute path of a ready `docker save` archive to install instead of building one.
FLEET_SUPERVISOR_IMAGE_TAR ?= ""
# The tag fleetd runs: SUPERVISOR_IMAGE in fleetd's supervisor.conf.
FLEET_SUPERVISOR_TAG ?= "fleet/supervisor:latest"
# The image recipe whose tar rootfs becomes the image's one layer.
FLEET_SUPERVISOR_ROOTFS ?= "fleet-supervisor-container"
# Docker HEALTHCHECK timing, seconds. The engine runs the first check one interval after the
# start, and fleetd reports READY (boot, trial health) only once it passed: keep it short.
FLEET_SUPERVISOR_HEALTH_INTERVAL ?= "5"
FLEET_SUPERVISOR_HEALTH_START_PERIOD ?= "60"

SRC_URI = "file://make-docker-archive"

S = "${UNPACKDIR}"

# image-artifact-names: IMAGE_MACHINE_SUFFIX / IMAGE_NAME_SUFFIX, to find the rootfs tar.
inherit python3native image-artifact-names

# The archive holds a rootfs built for this machine.
PACKAGE_ARCH = "${MACHINE_ARCH}"

FLEET_SUPERVISOR_ARCH = "${@{'x86_64': 'amd64', 'aarch64': 'arm64', 'arm': 'arm'}.get(d.getVar('TARGET_ARCH'), d.getVar('TARGET_ARCH'))}"
FLEET_SUPERVISOR_ROOTFS_TAR = "${DEPLOY_DIR_IMAGE}/${FLEET_SUPERVISOR_ROOTFS}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}.tar"

do_compile[depends] += "${@'' if d.getVar('FLEET_SUPERVISOR_IMAGE_TAR') else d.getVar('FLEET_SUPERVISOR_ROOTFS') + ':do_image_complete'}"

do_compile() {
    if [ -n "${FLEET_SUPERVISOR_IMAGE_TAR}" ]; then
        cp ${FLEET_SUPERVISOR_IMAGE_TAR} ${B}/supervisor-image.tar
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
