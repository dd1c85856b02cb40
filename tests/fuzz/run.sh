#!/bin/sh
# Fuzz every libFuzzer target (or the ones named) for SECONDS each (default
# 10), from its seeds and regression inputs plus the corpus grown so far in
# build-fuzz/corpus-TARGET.  FUZZ_JOBS targets run at once (default 1), at
# low priority.  Prints one line per target: executions, coverage (cov:,
# ft: of libFuzzer's final stats) and crashes; each crash input is saved as
# tests/fuzz/crashes/TARGET-crash-SHA1 and makes the script fail.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
set -e
cd "$(dirname "$0")/../.."
SECS=10
case ${1:-} in [0-9]*) SECS=$1; shift ;; esac
. tests/fuzz/build.sh
TARGETS=$(fuzz_targets "$@")
fuzz_build $TARGETS
mkdir -p tests/fuzz/crashes
JOBS=${FUZZ_JOBS:-1}

fuzz_one() {
	n=$1
	corpus="$B/corpus-$n"
	mkdir -p "$corpus"
	for d in tests/fuzz/seeds/$n tests/fuzz/regress/$n; do
		[ -d "$d" ] && cp -n "$d"/* "$corpus/" 2>/dev/null || true
	done
	nice -n 10 "$B/$n" -max_total_time="$SECS" -max_len=65536 -timeout=10 \
	    -rss_limit_mb=2048 -dict="$(fuzz_dict "$n")" -close_fd_mask=3 \
	    -artifact_prefix="tests/fuzz/crashes/$n-" -print_final_stats=1 \
	    "$corpus" >"$B/log-$n.txt" 2>&1 || true
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
	    "$B/log-$n.txt" | tail -1)
	final=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' \
	    "$B/log-$n.txt" | tail -1)
	cov=$(echo "$final" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$final" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	crashes=$(ls tests/fuzz/crashes/ 2>/dev/null | grep -c "^$n-" || true)
	printf '%-16s %4ss execs %-10s cov %-6s ft %-6s crashes %s\n' \
	    "$n" "$SECS" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
	grep -E "^(==[0-9]+==ERROR|SUMMARY)" "$B/log-$n.txt" || true
}

running=0
for n in $TARGETS; do
	fuzz_one "$n" &
	running=$((running + 1))
	if [ "$running" -ge "$JOBS" ]; then
		wait		# POSIX sh has no "wait -n": whole batches
		running=0
	fi
done
wait
for n in $TARGETS; do
	if ls tests/fuzz/crashes/ 2>/dev/null | grep -q "^$n-"; then
		echo "fuzz: crash in $n, see tests/fuzz/crashes/ and $B/log-$n.txt"
		exit 1
	fi
done
