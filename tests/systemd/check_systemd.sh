#!/bin/sh
# check_systemd.sh (make check-systemd): alertrelayd as a real service.
#
# Builds the .deb, unpacks a cached minimal Debian bookworm root (made once
# with mmdebstrap --variant=minbase: systemd, dbus, syslog-ng, the
# package's libraries, no procps), boots it with systemd-nspawn --boot
# --register=no --private-network (loopback only), installs the .deb
# inside with dpkg, and drives the booted system with nsenter: the fake
# cloud (fakecloud.service) and syslog-ng run inside on the container's
# loopback.  Checks: start -> READY and every alert version delivered;
# reload with a good and a broken configuration; LoadCredential= secrets;
# the watchdog restarting a stopped daemon; stop; systemd-analyze security
# measured online; the dynamic user's state directory; journal TENANT=.
# Every process it starts is stopped by PID at the end, also on failure.
#
# Prints "ok   - ..." / "FAIL - ..." lines and "N passed, M failed"; exits
# 1 on failure.  Exits 0 with "check-systemd: skipped: REASON" when the
# machine cannot do it (not root, tools missing, no namespaces).
#
# Environment: ALERTRELAY_BUILD (default build): build tree, also holding
# the root cache (systemd-root-KEY.tar) and the logs (systemd-logs/);
# ALERTRELAY_DEB: use this .deb instead of building one;
# ALERTRELAY_DEBIAN_MIRROR, ALERTRELAY_DEBIAN_SECURITY: mirrors for
# mmdebstrap; ALERTRELAY_KEEP=1: keep the container's root directory;
# ALERTRELAY_SKIP_SYSTEMD=1: skip.
set -u
umask 022

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
B=${ALERTRELAY_BUILD:-build}
case $B in /*) ;; *) B=$top/$B ;; esac
here=$top/tests/systemd
suite=bookworm
mirror=${ALERTRELAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
secmirror=${ALERTRELAY_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
# The .deb's run-time libraries (and the fake's: the same ones), syslog-ng
# and a systemd with dbus (systemd-analyze security talks to the bus).
pkgs=systemd,systemd-sysv,dbus,syslog-ng-core,libcurl4,libjansson4
pkgs=$pkgs,libevent-2.1-7,libssl3
fake_url=http://127.0.0.1:8000
conf=/etc/alertrelay/alertrelay.conf
creds=/run/credentials/alertrelayd.service
max_exposure=1.5
stop_deadline=15

passed=0
failed=0
nspawn=""
leader=""
root=""
started=$(date +%s)

ok() { echo "ok   - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }
note() { echo "       $*"; }
skip() { echo "check-systemd: skipped: $*"; exit 0; }
now() { date +%s; }
since() { echo $(($(now) - $1)); }

finish() {
	echo "check-systemd: $(since "$started")s in all"
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ] && exit 0
	echo "check-systemd: logs in $logs"
	exit 1
}

# ---- can this machine do it? ----

[ "${ALERTRELAY_SKIP_SYSTEMD:-0}" = 1 ] && skip "ALERTRELAY_SKIP_SYSTEMD=1"
[ "$(id -u)" -eq 0 ] || skip "needs root (mmdebstrap, systemd-nspawn)"
for t in mmdebstrap systemd-nspawn nsenter unshare timeout curl python3; do
	command -v $t >/dev/null 2>&1 ||
	    skip "$t is not installed (packaging/install-deps.sh installs it)"
done
unshare --mount --pid --fork --mount-proc true 2>/dev/null ||
    skip "cannot create mount and PID namespaces (no CAP_SYS_ADMIN?)"
[ -d /sys/fs/cgroup ] && [ -n "$(ls /sys/fs/cgroup 2>/dev/null)" ] ||
    skip "no cgroup file system at /sys/fs/cgroup"
[ -x "$B/tests/fakes/fakecloud" ] || {
	echo "FAIL - $B/tests/fakes/fakecloud is not built (make all)"
	exit 1
}

logs=$B/systemd-logs
rm -rf "$logs"
mkdir -p "$logs"

. "$here/lib.sh"
trap 'container_stop; exit 1' INT TERM
trap 'container_stop' EXIT

# ---- the package and the root ----

t=$(now)
deb=${ALERTRELAY_DEB:-}
if [ -z "$deb" ]; then
	deb=$(packaging/build-deb.sh "$B/pkg" 2>"$logs/build-deb.log") || {
		cat "$logs/build-deb.log"
		fail "packaging/build-deb.sh"
		finish
	}
fi
[ -f "$deb" ] || { fail "no package at $deb"; finish; }
ok "package built: ${deb##*/} ($(since "$t")s)"
# Whatever the package depends on goes into the root too (the first of
# alternatives, without versions), so a new library needs no edit here.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//' |
    tr -d ' ' | grep -v '^$' | sort -u | paste -sd, -)
[ -n "$deps" ] && pkgs=$pkgs,$deps

t=$(now)
root_cache || finish
ok "bookworm minbase root: $cache_note ($(since "$t")s)"

t=$(now)
root=$(mktemp -d "$B/systemd-root.XXXXXX")
tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$cache" ||
    { fail "unpack $cache"; finish; }
if [ ! -e "$root/bin/kill" ] && [ ! -e "$root/usr/bin/kill" ] &&
    [ ! -e "$root/var/lib/dpkg/info/procps.list" ]; then
	ok "the root is minimal: no procps, no /bin/kill"
else
	fail "the root has procps or /bin/kill: it would hide a dependency"
fi
root_prepare
note "root unpacked and prepared in $(since "$t")s: $root"

# ---- boot ----

t=$(now)
container_boot || finish
ok "booted: systemd is PID 1 (host PID $leader), system $boot_state" \
    "($(since "$t")s)"
devs=$(C cat /proc/net/dev | sed -n 's/^ *\([^:]*\):.*/\1/p' | tr '\n' ' ')
[ "$devs" = "lo " ] && ok "private network: only loopback ($devs)" ||
    fail "network devices in the container: $devs (expected lo only)"

# ---- install ----

if C dpkg -i /srv/alertrelay-test/alertrelay.deb >"$logs/dpkg.log" 2>&1; then
	ok "dpkg -i inside the booted system"
else
	cat "$logs/dpkg.log"
	fail "dpkg -i inside the booted system"
	finish
fi
st=$(C systemctl is-active alertrelayd)
[ "$st" = active ] &&
    ok "the package started alertrelayd with its shipped configuration" ||
    fail "after dpkg -i alertrelayd is ${st:-unknown}, not active"
C systemctl stop alertrelayd

# ---- start ----

service_configure contoso fabrikam
t=$(now)
if C systemctl start alertrelayd >"$logs/start.out" 2>&1; then
	show=$(C systemctl show -p ActiveState -p SubState -p StatusText \
	    alertrelayd)
	state=$(prop ActiveState)/$(prop SubState)
	status=$(prop StatusText)
	if [ "$state" = active/running ] && [ -n "$status" ]; then
		ok "systemctl start: READY in $(since "$t")s, $state," \
		    "STATUS=\"$status\""
	else
		fail "systemctl start: $state, STATUS=\"$status\""
	fi
else
	cat "$logs/start.out"
	C journalctl -u alertrelayd --no-pager -n 30
	fail "systemctl start alertrelayd"
	finish
fi
mainpid=$(main_pid)

if wait_delivered 60 contoso fabrikam; then
	ok "alerts delivered to syslog-ng: $dl_have of $dl_want versions the" \
	    "fake made visible, $dl_dups duplicates ($dl_secs s)"
else
	fail "alerts delivered: $dl_have of $dl_want after $dl_secs s"
fi

check_credentials
check_state_dir
check_journal_tenant
check_reload_good
check_reload_broken
check_security
check_watchdog
check_stop

container_stop
if [ -n "$pidns" ] && [ -z "$(ns_procs)" ] && ! kill -0 "$nspawn_done" \
    2>/dev/null; then
	ok "container stopped: systemd-nspawn (PID $nspawn_done) and every" \
	    "process of its PID namespace gone"
else
	fail "processes left: nspawn $nspawn_done, namespace: $(ns_procs)"
fi
finish
