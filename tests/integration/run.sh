#!/bin/sh
# Entry point of the alertrelayd integration tests (see README.md).
#   ALERTRELAY_BUILD=build tests/integration/run.sh [--quick] [--keep] [-v] [CASE...]
# Runs from the repository top; the build directory defaults to "build".
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top" || exit 1
: "${ALERTRELAY_BUILD:=build}"
export ALERTRELAY_BUILD
PYTHONDONTWRITEBYTECODE=1 exec python3 "$here/harness.py" "$@"
