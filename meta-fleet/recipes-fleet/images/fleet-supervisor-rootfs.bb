SUMMARY = "Root filesystem of the fleetOS supervisor container (an image recipe: a tarball)"
DESCRIPTION = "The fleet-supervisor binary, the C library it links and the CA certificates \
it trusts for an https:// apiEndpoint; no package manager, no init. The \
fleet-supervisor-image-archive recipe packs this tarball into the container image that \
fleetOS preloads."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# A plain tar: make-docker-archive turns it into an image layer.
IMAGE_FSTYPES = "tar"
IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
NO_RECOMMENDATIONS = "1"
# As meta-virtualization's container images: no run-postinsts.
ROOTFS_BOOTSTRAP_INSTALL = ""
# ca-certificates: /etc/ssl/certs/ca-certificates.crt, the trust roots of an https://
# apiEndpoint (its postinst builds the bundle at rootfs time; it brings openssl-bin along).
IMAGE_INSTALL = "fleet-supervisor ca-certificates"
# No kernel in a container: neither its modules' data nor its deployed image.
KERNELDEPMODDEPEND = ""
KERNEL_DEPLOY_DEPEND = ""

inherit image

# Mount points the container contract binds (fleetd's container spec): the engine socket
# under /var/run, config.json in /boot, the data dir, the host's D-Bus and journal sockets.
ROOTFS_POSTPROCESS_COMMAND += "fleet_supervisor_mountpoints"
fleet_supervisor_mountpoints[doc] = "Creates the directories the container's binds mount over"
fleet_supervisor_mountpoints() {
    install -d ${IMAGE_ROOTFS}/data ${IMAGE_ROOTFS}/boot ${IMAGE_ROOTFS}/tmp
    install -d ${IMAGE_ROOTFS}${localstatedir}/run ${IMAGE_ROOTFS}/run/dbus
    install -d ${IMAGE_ROOTFS}/run/systemd/journal
}
