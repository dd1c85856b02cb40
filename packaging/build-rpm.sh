#!/bin/sh
# build-rpm.sh: build the RPM package from this tree with rpmbuild.  On a
# Debian machine (package "rpm") the build dependencies are Debian packages
# rpm cannot see, so --nodeps is passed there.  Prints the path of the .rpm
# (copied to OUTDIR, default build/pkg).
#   packaging/build-rpm.sh [OUTDIR]
set -eu

. "$(dirname "$0")/outdir.sh"
spec="$top/packaging/rpm/alertrelay.spec"

if ! command -v rpmbuild >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		    --no-install-recommends rpm >&2
	else
		echo "build-rpm.sh: rpmbuild is missing (package rpm)" >&2
		exit 1
	fi
fi

ver=$(sed -n 's/^#define AR_VERSION "\(.*\)"$/\1/p' "$top/lib/util.h")
specver=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
if [ "$ver" != "$specver" ]; then
	echo "build-rpm.sh: lib/util.h says $ver, the spec $specver" >&2
	exit 1
fi

nodeps=""
[ -f /etc/debian_version ] && nodeps=--nodeps

tmp=$(mktemp -d /tmp/alertrelay-rpm.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/SOURCES" "$tmp/stage/alertrelay-$ver"
(cd "$top" && tar cf - --exclude=./build --exclude=./build-asan \
    --exclude=./build-fuzz --exclude=./.git .) |
    (cd "$tmp/stage/alertrelay-$ver" && tar xf -)
tar czf "$tmp/SOURCES/alertrelay-$ver.tar.gz" -C "$tmp/stage" \
    "alertrelay-$ver"

rpmbuild --define "_topdir $tmp" -bb $nodeps "$spec" >"$tmp/build.log" 2>&1 || {
	tail -n 40 "$tmp/build.log" >&2
	echo "build-rpm.sh: rpmbuild failed" >&2
	exit 1
}
found=""
for f in $(find "$tmp/RPMS" -name '*.rpm' | sort); do
	cp "$f" "$out/"
	case "$f" in
	*-debuginfo-*|*-debugsource-*) ;;
	*) found="$out/$(basename "$f")" ;;
	esac
done
[ -n "$found" ] || { echo "build-rpm.sh: no package built" >&2; exit 1; }
echo "$found"
