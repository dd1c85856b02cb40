#!/bin/sh
# build-deb.sh: build the Debian package from this tree.  dpkg-buildpackage
# wants debian/ at the top of the source, so the tree is copied to a temp
# directory with packaging/debian as debian/ and built there.  Prints the
# path of the .deb (copied, with its -dbgsym companion, to OUTDIR, default
# build/pkg).
#   packaging/build-deb.sh [OUTDIR]
set -eu

. "$(dirname "$0")/outdir.sh"

need=""
command -v dpkg-buildpackage >/dev/null 2>&1 || need="$need dpkg-dev"
command -v dh >/dev/null 2>&1 || need="$need debhelper"
command -v fakeroot >/dev/null 2>&1 || need="$need fakeroot"
if [ -n "$need" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "build-deb.sh: missing:$need (apt-get install$need)" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $need >&2
fi

# The package version must be the program's.
ver=$(sed -n 's/^#define AR_VERSION "\(.*\)"$/\1/p' "$top/lib/util.h")
debver=$(sed -n '1s/^[^ ]* (\([^)-]*\).*/\1/p' "$top/packaging/debian/changelog")
if [ "$ver" != "$debver" ]; then
	echo "build-deb.sh: lib/util.h says $ver, debian/changelog $debver" >&2
	exit 1
fi

tmp=$(mktemp -d /tmp/alertrelay-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
src="$tmp/alertrelay-$ver"
mkdir "$src"
# The sources only: no build trees, no VCS data.
(cd "$top" && tar cf - --exclude=./build --exclude=./build-asan \
    --exclude=./build-fuzz --exclude=./.git --exclude=./packaging/debian .) |
    (cd "$src" && tar xf -)
cp -R "$top/packaging/debian" "$src/debian"

(cd "$src" && dpkg-buildpackage -b -us -uc) >"$tmp/build.log" 2>&1 || {
	tail -n 40 "$tmp/build.log" >&2
	echo "build-deb.sh: dpkg-buildpackage failed" >&2
	exit 1
}
cp "$tmp"/*.deb "$out/"
echo "$out/alertrelay_${ver}_$(dpkg --print-architecture).deb"
