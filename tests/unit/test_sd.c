/* Unit tests for daemon/sd.c against a notify socket the test binds. */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define SD_STATUS_MS	100	/* instead of 5 s, to keep the test short */
#include "../../daemon/sd.c"

#define WD_USEC		200000	/* WATCHDOG_USEC: feed every 100 ms */
#define MAX_MSGS	256

/* sink.c is not linked into unit tests: a sink is just its stats here. */
struct sink {
	struct sink_stats st;
};

void
sink_stats(const struct sink *s, struct sink_stats *st)
{
	*st = s->st;
}

struct fixture {
	char		 dir[64];
	char		 path[96];
	int		 fd;
	struct relay	 r;
	char		*msgs[MAX_MSGS];	/* datagrams received */
	size_t		 nmsgs;
};

static int
setup(void **state)
{
	struct fixture		*f = xcalloc(1, sizeof(*f));
	struct sockaddr_un	 sun;
	char			 pid[32];

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_sd.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/notify", f->dir);
	f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(f->fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->path);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setenv("NOTIFY_SOCKET", f->path, 1);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	snprintf(pid, sizeof(pid), "%d", WD_USEC);
	setenv("WATCHDOG_USEC", pid, 1);
	f->r.base = event_base_new();
	assert_non_null(f->r.base);
	*state = f;
	return 0;
}

static void
msgs_clear(struct fixture *f)
{
	size_t	 i;

	for (i = 0; i < f->nmsgs; i++)
		free(f->msgs[i]);
	f->nmsgs = 0;
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	sd_stop(&f->r);
	event_base_free(f->r.base);
	msgs_clear(f);
	close(f->fd);
	unlink(f->path);
	rmdir(f->dir);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	free(f);
	return 0;
}

/* Read every datagram waiting on the socket; returns how many. */
static size_t
drain(struct fixture *f)
{
	char	 buf[4096];
	ssize_t	 n;
	size_t	 got = 0;

	while ((n = recv(f->fd, buf, sizeof(buf) - 1, 0)) >= 0) {
		assert_true(f->nmsgs < MAX_MSGS);
		buf[n] = '\0';
		f->msgs[f->nmsgs++] = xstrdup(buf);
		got++;
	}
	assert_int_equal(errno, EAGAIN);
	return got;
}

/* How many datagrams from index 'from' on contain 'line' as a line. */
static size_t
count_line(struct fixture *f, size_t from, const char *line)
{
	size_t		 i, n = 0, len = strlen(line);
	const char	*m, *p;

	for (i = from; i < f->nmsgs; i++) {
		for (m = f->msgs[i]; m != NULL; m = p != NULL ? p + 1 : NULL) {
			p = strchr(m, '\n');
			if ((p != NULL ? (size_t)(p - m) : strlen(m)) == len &&
			    strncmp(m, line, len) == 0) {
				n++;
				break;
			}
		}
	}
	return n;
}

/* The value of KEY= in datagram i, or NULL. */
static const char *
field(struct fixture *f, size_t i, const char *key)
{
	size_t		 len = strlen(key);
	const char	*m;

	for (m = f->msgs[i]; m != NULL; m = strchr(m, '\n')) {
		if (*m == '\n')
			m++;
		if (strncmp(m, key, len) == 0 && m[len] == '=')
			return m + len + 1;
	}
	return NULL;
}

/* Run the loop for ms milliseconds. */
static void
run_for(struct fixture *f, int64_t ms)
{
	struct timeval	 tv = { (time_t)(ms / 1000),
			    (suseconds_t)(ms % 1000 * 1000) };

	event_base_loopexit(f->r.base, &tv);
	event_base_dispatch(f->r.base);
}

static void
test_ready_reloading_stopping(void **state)
{
	struct fixture		*f = *state;
	struct conf_tenant	 on = { .enabled = true };
	struct conf_tenant	 off = { .enabled = false };
	struct tenant		 t[5];
	struct tenant		*tp[5];
	struct sink		 s[2];
	struct sink		*sp[2] = { &s[0], &s[1] };
	unsigned long long	 before, after, mono;
	const char		*v;
	size_t			 i;

	memset(t, 0, sizeof(t));
	memset(s, 0, sizeof(s));
	for (i = 0; i < 5; i++) {
		t[i].conf = &on;
		tp[i] = &t[i];
	}
	t[0].phase = TENANT_IDLE;
	t[1].phase = TENANT_FETCH;
	t[2].phase = TENANT_BACKOFF;		/* throttled: backing off */
	t[3].phase = TENANT_BACKOFF;
	t[3].failing = true;			/* failing */
	t[4].phase = TENANT_FAILED;
	t[4].conf = &off;			/* disabled, not failing */
	s[0].st.spool_records = 7;
	s[1].st.spool_records = 5;
	f->r.tenants = tp;
	f->r.ntenants = 5;
	f->r.sinks = sp;
	f->r.nsinks = 2;
	f->r.forwarded = 42;

	sd_start(&f->r);
	sd_ready(&f->r);
	assert_int_equal(drain(f), 1);
	assert_int_equal(count_line(f, 0, "READY=1"), 1);
	assert_string_equal(field(f, 0, "STATUS"), "tenants: 2 ok, "
	    "1 backing off, 1 failing, 1 disabled; 42 alerts forwarded; "
	    "12 spooled");

	before = sd_monotonic_usec();
	sd_reloading(&f->r);
	after = sd_monotonic_usec();
	assert_int_equal(drain(f), 1);
	assert_int_equal(count_line(f, 1, "RELOADING=1"), 1);
	assert_non_null(v = field(f, 1, "MONOTONIC_USEC"));
	mono = strtoull(v, NULL, 10);
	assert_true(mono >= before && mono <= after);

	sd_ready(&f->r);
	sd_stopping(&f->r);
	assert_int_equal(drain(f), 2);
	assert_int_equal(count_line(f, 2, "READY=1"), 1);
	assert_int_equal(count_line(f, 3, "STOPPING=1"), 1);
	assert_int_equal(count_line(f, 0, "WATCHDOG=1"), 0);
}

/* A timer callback that changes what STATUS= reports. */
static void
forward_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay	*r = arg;

	r->forwarded = 1000;
}

static void
test_status_sent_when_changed(void **state)
{
	struct fixture	*f = *state;
	struct timeval	 tv = { 0, 250000 };
	struct event	*ev;
	size_t		 i, nstatus = 0;

	unsetenv("WATCHDOG_USEC");
	sd_start(&f->r);
	sd_ready(&f->r);
	ev = evtimer_new(f->r.base, forward_cb, &f->r);
	evtimer_add(ev, &tv);
	run_for(f, 550);	/* five status ticks, one change */
	event_free(ev);
	drain(f);
	for (i = 0; i < f->nmsgs; i++) {
		if (field(f, i, "STATUS") != NULL)
			nstatus++;
	}
	/* READY's STATUS, then exactly one update: after the change. */
	assert_int_equal(nstatus, 2);
	assert_string_equal(field(f, f->nmsgs - 1, "STATUS"), "tenants: "
	    "0 ok, 0 backing off, 0 failing; 1000 alerts forwarded; "
	    "0 spooled");
	assert_int_equal(count_line(f, 0, "WATCHDOG=1"), 0);

	sd_status(&f->r);	/* explicit: always sent */
	assert_int_equal(drain(f), 1);
}

static void
test_watchdog_fed(void **state)
{
	struct fixture	*f = *state;
	size_t		 n;

	sd_start(&f->r);
	run_for(f, 550);
	drain(f);
	n = count_line(f, 0, "WATCHDOG=1");
	/* Every 100 ms (half of WATCHDOG_USEC) for 550 ms. */
	assert_true(n >= 3 && n <= 6);
}

/* Block the loop for longer than the whole watchdog interval. */
struct block {
	struct fixture	*f;
	size_t		 before;	/* WATCHDOG=1 seen when it started */
	size_t		 during;	/* ... that arrived while blocked */
	size_t		 mark;		/* nmsgs when the block ended */
};

static void
block_cb(evutil_socket_t fd, short what, void *arg)
{
	struct block	*b = arg;
	struct timespec	 ts = { 0, 350 * 1000 * 1000 };
	size_t		 mark;

	drain(b->f);
	b->before = count_line(b->f, 0, "WATCHDOG=1");
	mark = b->f->nmsgs;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
	drain(b->f);
	b->during = count_line(b->f, mark, "WATCHDOG=1");
	b->mark = b->f->nmsgs;
}

static void
test_watchdog_not_fed_while_blocked(void **state)
{
	struct fixture	*f = *state;
	struct timeval	 tv = { 0, 250000 };
	struct block	 b = { f, 0, 0, 0 };
	struct event	*ev;

	sd_start(&f->r);
	ev = evtimer_new(f->r.base, block_cb, &b);
	evtimer_add(ev, &tv);
	run_for(f, 900);
	event_free(ev);
	drain(f);
	assert_true(b.before >= 1);		/* it was being fed */
	assert_int_equal(b.during, 0);		/* not while stuck */
	assert_true(count_line(f, b.mark, "WATCHDOG=1") >= 2); /* resumed */
}

/*
 * A watchdog tick that comes round again before the loop has run the
 * heartbeat armed at the previous one (a loop that fires this timer but
 * makes no other progress) must not feed.
 */
static void
test_watchdog_stale_heartbeat(void **state)
{
	struct fixture	*f = *state;
	struct sd	*sd;

	sd_start(&f->r);
	assert_non_null(sd = sd_get(&f->r));
	assert_non_null(sd->wd_timer);
	sd_watchdog_cb(-1, EV_TIMEOUT, sd);
	sd_watchdog_cb(-1, EV_TIMEOUT, sd);
	drain(f);
	assert_int_equal(count_line(f, 0, "WATCHDOG=1"), 1);
	event_base_loop(f->r.base, EVLOOP_NONBLOCK);	/* heartbeat runs */
	sd_watchdog_cb(-1, EV_TIMEOUT, sd);
	drain(f);
	assert_int_equal(count_line(f, 0, "WATCHDOG=1"), 2);
}

/* WATCHDOG_PID names another process: the watchdog is not ours. */
static void
test_watchdog_other_pid(void **state)
{
	struct fixture	*f = *state;

	setenv("WATCHDOG_PID", "1", 1);
	sd_start(&f->r);
	run_for(f, 350);
	drain(f);
	assert_int_equal(count_line(f, 0, "WATCHDOG=1"), 0);
}

/* Without NOTIFY_SOCKET nothing is set up and nothing is sent. */
static void
test_no_notify_socket(void **state)
{
	struct fixture	*f = *state;

	unsetenv("NOTIFY_SOCKET");
	sd_start(&f->r);
	assert_null(f->r.sd_timer);
	sd_ready(&f->r);
	sd_status(&f->r);
	sd_stopping(&f->r);
	run_for(f, 150);
	assert_int_equal(drain(f), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ready_reloading_stopping,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_sent_when_changed,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_fed,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_watchdog_not_fed_while_blocked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_stale_heartbeat,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_other_pid,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_notify_socket,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
