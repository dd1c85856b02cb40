# alertrelay: plain GNU make with pkg-config.
#   make            build daemon, client, fakes into build/
#   make check      unit tests, the same under ASan+UBSan, integration tests
#   make demo       fake cloud with three demo tenants -> CEF on the terminal
#   make install    PREFIX=/usr/local DESTDIR=

PREFIX	?= /usr/local
SBINDIR	?= $(PREFIX)/sbin
BINDIR	?= $(PREFIX)/bin
MANDIR	?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR	?= /lib/systemd/system

B	?= build
CC	?= cc
PKGS	 = libcurl jansson libevent libsystemd openssl rdkafka
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

WARN	 = -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	   -Wmissing-prototypes -Wno-unused-parameter
CFLAGS	?= -O2 -g
ifeq ($(SAN),1)
CFLAGS	+= -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined
LDFLAGS	+= -fsanitize=address,undefined
endif
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(CPPFLAGS) $(WARN) $(CFLAGS) -Ilib -Idaemon \
	     $(PKG_CFLAGS) -MMD -MP

LIB_SRC	 := $(sort $(wildcard lib/*.c))
LIB_OBJ	 := $(LIB_SRC:%.c=$(B)/%.o)
LIBA	 := $(B)/lib/libalertrelay.a
D_SRC	 := $(filter-out daemon/alertrelayctl.c,$(sort $(wildcard daemon/*.c)))
D_OBJ	 := $(D_SRC:%.c=$(B)/%.o)
CTL_SRC	 := $(wildcard daemon/alertrelayctl.c)
FAKE_SRC := $(sort $(wildcard tests/fakes/*.c))
FAKES	 := $(FAKE_SRC:tests/fakes/%.c=$(B)/tests/fakes/%)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNITS	 := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/unit/%)
BENCH_SRC := $(filter-out tests/bench/slowsync.c tests/bench/turns.c,$(sort $(wildcard tests/bench/*.c)))
BENCHES	 := $(BENCH_SRC:tests/bench/%.c=$(B)/tests/bench/%)
# An LD_PRELOAD shim that slows fsync/fdatasync down (tests/bench/slowsync.c),
# and one that profiles the loop's turns (tests/bench/turns.c).
SLOWSYNC := $(B)/tests/bench/slowsync.so
TURNS	 := $(B)/tests/bench/turns.so

PROGS	 = $(B)/alertrelayd $(if $(CTL_SRC),$(B)/alertrelayctl)

.PHONY: all check check-valgrind check-package check-systemd check-bench check-long check-docs check-fuzz valgrind check-unit check-asan check-integration \
	check-prometheus \
	demo install clean bench fuzz

all: $(PROGS) $(FAKES) $(UNITS) $(BENCHES) $(SLOWSYNC) $(TURNS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/alertrelayd: $(D_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $(D_OBJ) $(LIBA) $(PKG_LIBS) -lm -pthread

$(B)/alertrelayctl: $(B)/daemon/alertrelayctl.o $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/tests/fakes/%: $(B)/tests/fakes/%.o $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

# test_sink includes daemon/sink.c, which calls the kafka producer and
# the RELP framing.
$(B)/tests/unit/test_sink: $(B)/daemon/kafka.o $(B)/daemon/relp.o
$(B)/tests/unit/test_relp: $(B)/daemon/kafka.o $(B)/daemon/relp.o

$(B)/tests/unit/%: $(B)/tests/unit/%.o $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CMOCKA_LIBS) -lm -pthread

$(B)/tests/bench/%: $(B)/tests/bench/%.o $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

# Never sanitised: it is preloaded into programs that may not be.
$(SLOWSYNC): tests/bench/slowsync.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE $(WARN) -O2 -g -shared -fPIC -o $@ $< -ldl

$(TURNS): tests/bench/turns.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE $(WARN) -O2 -g -shared -fPIC -o $@ $< -ldl

# The integration suite runs last: its "N passed, M failed, K skipped"
# closes the run.
check: check-unit check-docs check-asan check-fuzz check-valgrind \
	check-package check-systemd check-bench check-prometheus check-integration

# Keep objects make considers intermediate (no "rm" at the end of a run).
.SECONDARY:

# memcheck over a --once run and 100 reloads: zero errors, zero leaks.
check-valgrind: all
	ALERTRELAY_BUILD=$(B) tests/integration/valgrind.sh

# Build the .deb, install it, check the unit (needs root, as CI is).
check-package:
	tests/integration/test_systemd.sh

# The .deb in a booted minimal Debian (systemd-nspawn over a cached
# mmdebstrap root): start, reload, credentials, watchdog, stop, exposure.
# Prints "skipped: REASON" and succeeds where the machine cannot (not root,
# no mmdebstrap or systemd-nspawn, no namespaces).
check-systemd: all
	ALERTRELAY_BUILD=$(B) tests/systemd/check_systemd.sh

# The benchmarks in their short mode: figures printed, nothing asserted.
check-bench: all
	tests/bench/run.sh $(B) --short

# Replays every fuzz seed and regression input, then fuzzes briefly.
check-fuzz:
	tests/fuzz/replay.sh
	FUZZ_JOBS=2 tests/fuzz/run.sh 10

valgrind: all
	ALERTRELAY_BUILD=$(B) tests/integration/valgrind.sh

check-docs:
	tests/docs_check.sh

# The shipped alerting rules and Grafana dashboard (Debian's prometheus
# package has promtool): syntax, the rules' unit tests, and every metric
# and label they name is one a running alertrelayd exports.
check-prometheus: $(B)/alertrelayd
	@command -v promtool >/dev/null || { echo "check-prometheus:" \
	    "promtool is missing (apt-get install prometheus," \
	    "packaging/install-deps.sh)" >&2; exit 1; }
	promtool check rules packaging/prometheus/alertrelay-rules.yml
	promtool test rules packaging/prometheus/alertrelay-rules.test.yml
	tests/prometheus/check_names.py --daemon $(B)/alertrelayd

# Unit tests run from the top so they find tests/data (the injection vectors
# included); no test reads anything outside the repository.
check-unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

check-asan:
	$(MAKE) B=build-asan SAN=1 all
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(MAKE) B=build-asan SAN=1 check-unit
	ASAN_OPTIONS=detect_leaks=1 ALERTRELAY_BUILD=build-asan \
	    tests/integration/run.sh --quick

check-integration: all
	ALERTRELAY_BUILD=$(B) tests/integration/run.sh

# The long randomized variants (20 resets, 20 kill -9, 30 s outage...).
check-long: all
	ALERTRELAY_BUILD=$(B) tests/integration/run_long.sh

demo: all
	tests/demo.sh $(B)

bench: all
	tests/bench/run.sh $(B)

FUZZ_SECONDS ?= 60
fuzz:
	tests/fuzz/run.sh $(FUZZ_SECONDS)

install: $(PROGS)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/alertrelay
	install -m 0755 $(B)/alertrelayd $(DESTDIR)$(SBINDIR)/
	$(if $(CTL_SRC),install -m 0755 $(B)/alertrelayctl $(DESTDIR)$(SBINDIR)/)
	install -m 0644 etc/alertrelay.conf \
	    $(DESTDIR)$(SYSCONFDIR)/alertrelay/alertrelay.conf.example
	if [ -f systemd/alertrelayd.service ]; then \
	    install -d $(DESTDIR)$(UNITDIR); \
	    install -m 0644 systemd/alertrelayd.service $(DESTDIR)$(UNITDIR)/; fi
	for m in daemon/*.8 lib/*.5; do [ -f "$$m" ] || continue; \
	    s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
	    install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(B) -name '*.d' 2>/dev/null)
