#!/bin/sh
# Run every libFuzzer target once over its seeds and its regression inputs
# (tests/fuzz/seeds/TARGET, tests/fuzz/regress/TARGET) without fuzzing:
# a few seconds, for `make check`.  Fails when any input crashes, leaks or
# trips a sanitizer (each regression input is a crash that was fixed).
#   tests/fuzz/replay.sh [TARGET...]
set -e
cd "$(dirname "$0")/../.."
. tests/fuzz/build.sh
TARGETS=$(fuzz_targets "$@")
fuzz_build $TARGETS
fail=0
for n in $TARGETS; do
	files=$(find tests/fuzz/seeds/$n tests/fuzz/regress/$n -type f \
	    2>/dev/null | sort)
	if [ -z "$files" ]; then
		echo "replay $n: no inputs"
		fail=1
		continue
	fi
	cnt=$(echo "$files" | wc -l)
	if "$B/$n" -runs=1 -close_fd_mask=1 $files >"$B/replay-$n.txt" 2>&1
	then
		echo "replay $n: $cnt inputs ok"
	else
		echo "replay $n: FAILED"
		grep -E "Running:|ERROR|runtime error|SUMMARY" \
		    "$B/replay-$n.txt" | tail -5
		fail=1
	fi
done
exit $fail
