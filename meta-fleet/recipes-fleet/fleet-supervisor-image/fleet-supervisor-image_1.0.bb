SUMMARY = "Supervisor container image preloaded into fleetOS (docker save archive)"
DESCRIPTION = "Installs the supervisor image archive that fleetd supervisor loads into the \
engine on first start. Without FLEET_SUPERVISOR_IMAGE_TAR a small stand-in image is built \
here: it loads, it does not supervise anything."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# Absolute path of a `docker save` archive of the real supervisor, built for this machine.
FLEET_SUPERVISOR_IMAGE_TAR ?= ""
# Tag the stand-in carries (fleetd's supervisor.conf names the image it runs).
FLEET_SUPERVISOR_STANDIN_TAG ?= "fleet/supervisor:standin"

DEPENDS = "python3-native"

SRC_URI = "file://make-standin-image"

S = "${UNPACKDIR}"

inherit python3native

FLEET_SUPERVISOR_ARCH = "${@{'x86_64': 'amd64', 'aarch64': 'arm64', 'arm': 'arm'}.get(d.getVar('TARGET_ARCH'), d.getVar('TARGET_ARCH'))}"

do_compile() {
    if [ -n "${FLEET_SUPERVISOR_IMAGE_TAR}" ]; then
        cp ${FLEET_SUPERVISOR_IMAGE_TAR} ${B}/supervisor-image.tar
    else
        ${PYTHON} ${UNPACKDIR}/make-standin-image ${FLEET_SUPERVISOR_ARCH} \
            ${FLEET_SUPERVISOR_STANDIN_TAG} ${B}/supervisor-image.tar
    fi
}

do_install() {
    install -d ${D}${datadir}/fleet
    install -m 0644 ${B}/supervisor-image.tar ${D}${datadir}/fleet/supervisor-image.tar
}

FILES:${PN} += "${datadir}/fleet/supervisor-image.tar"
