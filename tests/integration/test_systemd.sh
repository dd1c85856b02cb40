#!/bin/sh
# test_systemd.sh: build the Debian package, install it with dpkg -i, and
# check what an operator gets: the programs run, the shipped configuration
# is valid and readable by an unprivileged service user, the installed unit
# passes systemd-analyze verify, its exposure is at most 1.5, and the man
# pages are found.  Needs root (dpkg -i).  Exits non-zero on any failure.
#   tests/integration/test_systemd.sh [PACKAGE.deb]
# KEEP_INSTALLED=1 leaves the package installed afterwards.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
fails=0
max_exposure=1.5

ok() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }

if [ "$(id -u)" -ne 0 ]; then
	echo "test_systemd.sh: must run as root (it installs the package)" >&2
	exit 1
fi
for tool in dpkg systemd-analyze; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "test_systemd.sh: $tool is missing" >&2
		exit 1
	fi
done

deb=${1:-}
if [ -z "$deb" ]; then
	deb=$(packaging/build-deb.sh) || { echo "FAIL - build the .deb"; exit 1; }
fi
[ -f "$deb" ] || { echo "FAIL - no package at $deb"; exit 1; }
ok "package built: $deb"

was_installed=no
dpkg-query -W -f='${Status}' alertrelay 2>/dev/null | grep -q "ok installed" &&
    was_installed=yes
cleanup() {
	if [ "$was_installed" = no ] && [ "${KEEP_INSTALLED:-0}" != 1 ]; then
		dpkg --purge alertrelay >/dev/null 2>&1
	fi
}
trap cleanup EXIT

tmp=$(mktemp -d /tmp/test_systemd.XXXXXX)
trap 'cleanup; rm -rf "$tmp"' EXIT

if dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1; then
	ok "dpkg -i"
else
	cat "$tmp/dpkg.log"
	fail "dpkg -i"
	exit 1
fi

for f in /usr/sbin/alertrelayd /usr/sbin/alertrelayctl \
    /lib/systemd/system/alertrelayd.service /etc/alertrelay/alertrelay.conf; do
	[ -e "$f" ] && ok "installed $f" || fail "missing $f"
done
mode=$(stat -c %a /etc/alertrelay/secrets 2>/dev/null)
[ "$mode" = 700 ] && ok "/etc/alertrelay/secrets is 0700" ||
    fail "/etc/alertrelay/secrets mode is ${mode:-missing}, not 0700"

# --version prints the program's version.
ver=$(sed -n 's/^#define AR_VERSION "\(.*\)"$/\1/p' lib/util.h)
out=$(/usr/sbin/alertrelayd --version 2>&1)
[ "$out" = "alertrelayd $ver" ] && ok "alertrelayd --version: $out" ||
    fail "alertrelayd --version printed \"$out\", expected alertrelayd $ver"

# The shipped configuration is valid, as root and as a nobody-like user
# (the service runs under a dynamic user that owns nothing in /etc).
if /usr/sbin/alertrelayd --check-config >"$tmp/check.out" 2>&1; then
	ok "alertrelayd --check-config on /etc/alertrelay/alertrelay.conf"
else
	cat "$tmp/check.out"
	fail "alertrelayd --check-config on the shipped configuration"
fi
grep -q "configuration OK: 0 tenants, 1 output" "$tmp/check.out" &&
    ok "--check-config prints its verdict: $(cat "$tmp/check.out")" ||
    fail "--check-config printed no verdict line"
/usr/sbin/alertrelayd --check-config -v >"$tmp/check.out" 2>&1
grep -q "^output stdout:" "$tmp/check.out" &&
    ok "--check-config -v summarises the outputs" ||
    fail "--check-config -v printed no output summary"
if command -v setpriv >/dev/null 2>&1; then
	if setpriv --reuid=65534 --regid=65534 --clear-groups \
	    /usr/sbin/alertrelayd --check-config >/dev/null 2>"$tmp/nobody.err"
	then
		ok "the shipped configuration is readable by an unprivileged user"
	else
		cat "$tmp/nobody.err"
		fail "--check-config as uid 65534"
	fi
fi
# A broken configuration is refused with status 78 and FILE:LINE.
printf '[daemon]\npoll_interval = soon\n[output "o"]\ntransport = stdout\n' \
    >"$tmp/bad.conf"
/usr/sbin/alertrelayd --check-config -c "$tmp/bad.conf" >/dev/null \
    2>"$tmp/bad.err"
rc=$?
if [ $rc -eq 78 ] && grep -q "bad.conf:2: poll_interval" "$tmp/bad.err"; then
	ok "a broken configuration exits 78 with FILE:LINE"
else
	cat "$tmp/bad.err"
	fail "broken configuration: exit $rc (expected 78 and bad.conf:2:)"
fi

# The unit as installed: verify must be silent and succeed.
man_opt=""
command -v man >/dev/null 2>&1 || man_opt=--man=no
if systemd-analyze verify $man_opt /lib/systemd/system/alertrelayd.service \
    >"$tmp/verify.out" 2>&1 && [ ! -s "$tmp/verify.out" ]; then
	ok "systemd-analyze verify alertrelayd.service"
else
	cat "$tmp/verify.out"
	fail "systemd-analyze verify alertrelayd.service"
fi

systemd-analyze security --offline=true \
    /lib/systemd/system/alertrelayd.service >"$tmp/security.out" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' \
    "$tmp/security.out")
echo "     systemd-analyze security exposure: ${exposure:-unknown}"
if [ -n "$exposure" ] &&
    awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }'; then
	ok "exposure $exposure <= $max_exposure"
else
	grep "✗" "$tmp/security.out"
	fail "exposure ${exposure:-unknown} > $max_exposure"
fi

if command -v man >/dev/null 2>&1; then
	for page in alertrelayd.8 alertrelayctl.8 alertrelay.conf.5; do
		name=${page%.*}
		sect=${page##*.}
		man -w "$sect" "$name" >/dev/null 2>&1 &&
		    ok "man $sect $name" || fail "man $sect $name not found"
	done
fi

if [ $fails -ne 0 ]; then
	echo "test_systemd.sh: $fails failed"
	exit 1
fi
echo "test_systemd.sh: all passed"
