#!/bin/sh
# The long randomized variants of the integration tests (make check-long):
# a 30 s SIEM outage, 20 connection resets per transport, 20 kill -9
# during a 20,000-alert backfill, ... (see cases_durability.py), plus every
# other case as usual.  Run once before resolving durability work.
#   ALERTRELAY_BUILD=build tests/integration/run_long.sh [--keep] [-v] [CASE...]
# A failing randomized case prints its seed; ALERTRELAY_SEED=N replays it.
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/run.sh" --long "$@"
