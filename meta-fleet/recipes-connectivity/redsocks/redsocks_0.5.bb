SUMMARY = "Transparent TCP-to-proxy redirector (SOCKS4/5, HTTP CONNECT)"
DESCRIPTION = "redsocks accepts TCP connections redirected to it by iptables and relays \
them through a SOCKS or HTTP proxy; dnsu2t turns UDP DNS into DNS over TCP. fleet-proxy \
runs it with the boot partition's system-proxy/redsocks.conf, as balenaOS does."
SECTION = "net"
# Apache-2.0 (README's "License", the sources' headers); md5.* is Aladdin's zlib-style
# licence, base64.* comes from FFmpeg (LGPL-2.1-or-later), list.h from Linux (GPLv2).
LICENSE = "Apache-2.0 & Zlib & LGPL-2.1-or-later & GPL-2.0-only"
LIC_FILES_CHKSUM = " \
    file://README.md;beginline=143;endline=146;md5=1347e8d14d8f1dcc600aa8bb345e8d6a \
    file://md5.c;beginline=2;endline=21;md5=7c7b12ec8935a8ff34a485ccd7b9a825 \
    file://base64.c;beginline=2;endline=18;md5=d58e3ba4a323462997e6ff8120af397f \
    file://list.h;beginline=3;endline=6;md5=cec2d5049e51f63752e11f24d46c5d51 \
"

# master of 2019-07-16: release-0.5 and later fixes, dnsu2t (DNS over TCP) included.
DEPENDS = "libevent"

PV = "0.5+git"
SRC_URI = "git://github.com/darkk/redsocks.git;branch=master;protocol=https"
SRCREV = "19b822e345f6a291f6cff6b168f1cfdfeeb2cd7d"

# The Makefile takes CC, CFLAGS and LDFLAGS from the environment and names the version
# from `git describe` when the checkout has .git.
EXTRA_OEMAKE = "-e MAKEFLAGS="

do_compile() {
    # An empty, up-to-date .depend: its rule runs the build host's gcc -MM (without the
    # target's libevent headers) and falls back to bash-only shell under /bin/sh.
    : >${S}/.depend
    oe_runmake redsocks
}

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${S}/redsocks ${D}${bindir}/redsocks
}
