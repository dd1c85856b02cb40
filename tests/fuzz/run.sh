#!/bin/sh
# Build every libFuzzer target with clang and run each for SECONDS (default
# 10) from its seed corpus; crashes are kept in tests/fuzz/crashes/.
set -e
SECS=${1:-10}
B=build-fuzz
CFLAGS="-std=gnu11 -D_GNU_SOURCE -g -O1 -Ilib -fsanitize=fuzzer,address,undefined"
PKG="$(pkg-config --cflags --libs libcurl jansson libevent libsystemd openssl)"
mkdir -p "$B" tests/fuzz/crashes
LIBSRC=$(ls lib/*.c)
for f in tests/fuzz/fuzz_*.c; do
	n=$(basename "$f" .c)
	clang $CFLAGS -o "$B/$n" "$f" $LIBSRC $PKG -lm
	corpus="$B/corpus-$n"
	mkdir -p "$corpus"
	[ -d "tests/fuzz/seeds/$n" ] && cp -n tests/fuzz/seeds/$n/* "$corpus/" 2>/dev/null || true
	echo "== $n (${SECS}s)"
	"$B/$n" -max_total_time="$SECS" -max_len=65536 -timeout=10 \
	    -artifact_prefix=tests/fuzz/crashes/ -print_final_stats=1 \
	    "$corpus" 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|SUMMARY" || true
	[ -z "$(ls tests/fuzz/crashes 2>/dev/null)" ] || { echo "fuzz: crash in $n, see tests/fuzz/crashes/"; exit 1; }
done
