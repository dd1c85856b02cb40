#!/bin/sh
# Install the Debian packages needed to build, demo and test alertrelay.
# mmdebstrap and systemd-container (systemd-nspawn) are for
# make check-systemd, which boots the .deb in a minimal Debian.
# librelp0 is for rsyslog's imrelp, which the RELP integration cases
# unpack from the Debian packages into the build directory (rsyslog
# itself is not installed: it would start a system logger).
set -e
PKGS="build-essential pkg-config libcurl4-openssl-dev libjansson-dev
libevent-dev libssl-dev libsystemd-dev librdkafka-dev librdkafka1 kcat
libcmocka-dev openssl curl librelp0
syslog-ng-core liblognorm-utils python3 clang etcd-server prometheus
valgrind debhelper dpkg-dev fakeroot systemd man-db groff-base
mmdebstrap gpg systemd-container"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
	    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
# syslog-ng's postinst may try to start the service; tests run their own.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends $missing
