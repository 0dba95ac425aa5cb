# meta-virtualization's container kernel options only reach linux-yocto: give the Raspberry
# Pi kernel what docker-moby, containerd and runc need.
FILESEXTRAPATHS:prepend:fleetos := "${THISDIR}/files:"

SRC_URI:append:fleetos = " file://fleet-containers.cfg"
