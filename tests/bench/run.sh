#!/bin/sh
# Run alertrelay's benchmarks: encode, backfill, commit, latency, fleet and
# reload.
# Usage: tests/bench/run.sh [BUILD_DIR] [--short] [BENCH...]
#   BENCH: encode parse backfill commit latency fleet reload backlog
#   transports slowdisk (default: all; fleet and reload share one
#   10,000-tenant daemon).  --short (or BENCH_SHORT=1 in the environment,
#   e.g. "make bench BENCH_SHORT=1") is the CI size.  BENCH_REF=DIR (a
#   reference build, e.g. an older commit's) makes commit run that daemon
#   and this one alternately, 3 times each, and print the ratio;
#   BENCH_SLOW_SYNC=MS delays the daemon's fsyncs (LD_PRELOAD slowsync.so)
#   in commit and backfill, and sets slowdisk's delay (default 500 ms).
#   BENCH_PIN=1 (2 CPUs or more) runs alertrelayd on CPU 0 alone and the
#   fake cloud, the sink and the driver on the other CPUs, as the real
#   cloud and SIEM are other machines.
# Figures are printed, never asserted: the status is non-zero only when a
# benchmark could not run.  RESULT lines are also kept in
# $BENCH_RESULTS (default build/bench-results.txt).
set -u
B=build
SHORT=${BENCH_SHORT:+--short}
BENCHES=""
for arg in "$@"; do
	case "$arg" in
	--short) SHORT=--short ;;
	encode|parse|backfill|commit|latency|fleet|reload|backlog|transports|slowdisk)
		BENCHES="$BENCHES $arg" ;;
	-*) echo "usage: $0 [BUILD_DIR] [--short] [BENCH...]" >&2; exit 64 ;;
	*) B=$arg ;;
	esac
done
[ -n "$BENCHES" ] ||
    BENCHES="encode parse backfill commit latency fleet reload backlog transports slowdisk"
HERE=$(dirname "$0")
OUT=${BENCH_RESULTS:-$B/bench-results.txt}
: >"$OUT"
rc=0

for exe in "$B/alertrelayd" "$B/tests/fakes/fakecloud" \
    "$B/tests/bench/sink" "$B/tests/bench/bench_encode"; do
	[ -x "$exe" ] || { echo "run.sh: $exe missing; run make" >&2; exit 1; }
done

echo "bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs," \
    "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)," \
    "$(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)" \
    "${SHORT:+(short mode)}"

# Run a bench showing its output; keep its RESULT lines; its status.
run() {
	{ "$@"; echo $? >"$OUT.rc"; } | tee "$OUT.log"
	grep '^RESULT' "$OUT.log" >>"$OUT"
	return "$(cat "$OUT.rc")"
}

py=""
for b in $BENCHES; do
	case $b in
	encode)
		echo "== encode"
		if [ -n "$SHORT" ]; then
			run "$B/tests/bench/bench_encode" -s || rc=1
		else
			run "$B/tests/bench/bench_encode" || rc=1
		fi
		;;
	parse)
		echo "== parse"
		if [ -n "$SHORT" ]; then
			run "$B/tests/bench/bench_parse" \
			    tests/data/alert-sample.json 2000 3 || rc=1
		else
			run "$B/tests/bench/bench_parse" || rc=1
		fi
		;;
	transports)
		echo "== transports"
		run python3 -B "$HERE/bench_transports.py" --build "$B" \
		    ${SHORT:+--alerts 500} || rc=1
		;;
	slowdisk)
		echo "== slowdisk"
		run python3 -B "$HERE/bench_slowdisk.py" --build "$B" \
		    --ms "${BENCH_SLOW_SYNC:-500}" || rc=1
		;;
	backlog)
		echo "== backlog"
		run python3 "$HERE/bench_backlog.py" --build "$B" \
		    ${SHORT:+--alerts 20000} || rc=1
		;;
	fleet)
		case "$BENCHES" in
		*reload*) py="$py fleet+reload" ;;
		*) py="$py fleet" ;;
		esac
		;;
	reload)
		case "$BENCHES" in
		*fleet*) ;;
		*) py="$py reload" ;;
		esac
		;;
	*)
		py="$py $b"
		;;
	esac
done
for b in $py; do
	echo "== $b"
	# Unquoted on purpose: empty or one flag.
	run python3 -B "$HERE/bench.py" --build "$B" $SHORT \
	    ${BENCH_REF:+--ref "$BENCH_REF"} \
	    ${BENCH_SLOW_SYNC:+--slow-sync "$BENCH_SLOW_SYNC"} "$b" || rc=1
done
rm -f "$OUT.log" "$OUT.rc"
echo "== results (also in $OUT)"
cat "$OUT"
exit $rc
