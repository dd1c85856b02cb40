#!/bin/sh
# Build the libFuzzer targets (sourced by run.sh and replay.sh, or run
# alone): lib/*.c once into $B/lib/*.o, then one binary per
# tests/fuzz/fuzz_*.c, all with clang -fsanitize=fuzzer,address,undefined.
# Only what is out of date is rebuilt.  Usage: build.sh [TARGET...]
set -e
B=${FUZZ_BUILD:-build-fuzz}
CC=${FUZZ_CC:-clang}
FUZZ_CFLAGS="-std=gnu11 -D_GNU_SOURCE -g -O1 -Ilib -fno-omit-frame-pointer \
-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
$(pkg-config --cflags libcurl jansson libevent libsystemd openssl)"
FUZZ_LIBS="$(pkg-config --libs libcurl jansson libevent libsystemd openssl) -lm"

fuzz_newer() {	# is $1 missing or older than any of the rest?
	t=$1; shift
	[ -e "$t" ] || return 0
	for s in "$@"; do [ "$s" -nt "$t" ] && return 0; done
	return 1
}

fuzz_build() {
	mkdir -p "$B/lib"
	objs=
	for c in lib/*.c; do
		o="$B/lib/$(basename "$c" .c).o"
		if fuzz_newer "$o" "$c" lib/*.h; then
			$CC $FUZZ_CFLAGS -c -o "$o" "$c"
		fi
		objs="$objs $o"
	done
	for n in "$@"; do
		if fuzz_newer "$B/$n" "tests/fuzz/$n.c" $objs; then
			$CC $FUZZ_CFLAGS -fsanitize=fuzzer -o "$B/$n" \
			    "tests/fuzz/$n.c" $objs $FUZZ_LIBS
		fi
	done
}

fuzz_targets() {
	if [ $# -gt 0 ]; then echo "$@"; return; fi
	for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done
}

fuzz_dict() {	# the dictionary of target $1
	case $1 in
	fuzz_config|fuzz_reload) echo tests/fuzz/dict/config.dict ;;
	fuzz_oauth) echo tests/fuzz/dict/oauth.dict ;;
	fuzz_state) echo tests/fuzz/dict/state.dict ;;
	fuzz_spool) echo tests/fuzz/dict/spool.dict ;;
	fuzz_incident) echo tests/fuzz/dict/incident.dict ;;
	fuzz_ctl) echo tests/fuzz/dict/ctl.dict ;;
	*) echo tests/fuzz/dict/json.dict ;;
	esac
}

if [ "$(basename "$0")" = build.sh ]; then
	fuzz_build $(fuzz_targets "$@")
fi
