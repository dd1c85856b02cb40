# Sourced by build-deb.sh and build-rpm.sh (after "set -eu"; $1 is their
# OUTDIR argument): top = the source tree, out = OUTDIR made absolute and
# created (default build/pkg).
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/pkg}
mkdir -p "$out"
out=$(cd "$out" && pwd)
