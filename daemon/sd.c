/* systemd integration: the notify protocol, STATUS= and the watchdog. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "internal.h"

#ifndef SD_STATUS_MS
#define SD_STATUS_MS	5000	/* tests may shorten it */
#endif
#define SD_STATUS_LEN	256

/*
 * Private state, reached through the callback argument of relay->sd_timer
 * (the only field struct relay keeps for this file).
 *
 * The watchdog is fed from a timer on the relay's own event loop and from
 * nowhere else: no thread, no signal handler.  If a callback blocks or the
 * loop stops turning, the timer cannot fire, WATCHDOG=1 stops, and systemd
 * restarts the service after WatchdogSec=.  As a second check the feed
 * also needs proof that the loop completed a pass since the previous
 * feed: each watchdog tick arms a 0 ms heartbeat event and the next tick
 * feeds only if that heartbeat has run (its stamp is not stale).
 */
struct sd {
	struct relay	*relay;
	struct event	*wd_timer;	/* NULL without WATCHDOG_USEC */
	struct event	*heartbeat;
	int64_t		 wd_ms;		/* feed interval: WATCHDOG_USEC / 2 */
	int64_t		 hb_seen;	/* mono_ms of the heartbeat's run */
	char		 status[SD_STATUS_LEN];	/* last STATUS= sent */
};

/* The private state, or NULL before sd_start. */
static struct sd *
sd_get(struct relay *r)
{
	if (r->sd_timer == NULL)
		return NULL;
	return event_get_callback_arg(r->sd_timer);
}

/* CLOCK_MONOTONIC in microseconds, as MONOTONIC_USEC= wants it. */
static unsigned long long
sd_monotonic_usec(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL;
}

/* The one-line summary: tenants by state, alerts forwarded, spool depth. */
static void
sd_status_line(struct relay *r, char *out, size_t len)
{
	struct sink_stats	 st;
	struct tenant		*t;
	size_t			 i, ok = 0, back = 0, fail = 0, off = 0;
	size_t			 paused = 0;
	uint64_t		 spool = 0;
	int			 n;

	for (i = 0; i < r->ntenants; i++) {
		t = r->tenants[i];
		if (t->conf != NULL && !t->conf->enabled)
			off++;
		else if (t->phase == TENANT_FAILED || t->failing)
			fail++;
		else if (t->phase == TENANT_BACKOFF)
			back++;
		else if (t->phase == TENANT_PAUSED)
			paused++;
		else
			ok++;
	}
	for (i = 0; i < r->nsinks; i++) {
		sink_stats(r->sinks[i], &st);
		spool += st.spool_records;
	}
	n = snprintf(out, len, "tenants: %zu ok, %zu backing off, %zu failing",
	    ok, back, fail);
	if (paused > 0 && n >= 0 && (size_t)n < len)
		n += snprintf(out + n, len - (size_t)n, ", %zu paused", paused);
	if (off > 0 && n >= 0 && (size_t)n < len)
		n += snprintf(out + n, len - (size_t)n, ", %zu disabled", off);
	if (n >= 0 && (size_t)n < len)
		snprintf(out + n, len - (size_t)n, "; %llu alerts forwarded; "
		    "%llu spooled", (unsigned long long)r->forwarded,
		    (unsigned long long)spool);
}

/* Send STATUS= if it differs from the last one sent (or if forced). */
static void
sd_status_send(struct relay *r, bool force)
{
	struct sd	*sd = sd_get(r);
	char		 line[SD_STATUS_LEN];

	sd_status_line(r, line, sizeof(line));
	if (sd != NULL) {
		if (!force && strcmp(line, sd->status) == 0)
			return;
		memcpy(sd->status, line, sizeof(sd->status));
	}
	sd_notifyf(0, "STATUS=%s", line);
}

void
sd_ready(struct relay *r)
{
	struct sd	*sd = sd_get(r);
	char		 line[SD_STATUS_LEN];

	sd_status_line(r, line, sizeof(line));
	if (sd != NULL)
		memcpy(sd->status, line, sizeof(sd->status));
	sd_notifyf(0, "READY=1\nSTATUS=%s", line);
}

void
sd_reloading(struct relay *r)
{
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\n"
	    "STATUS=reloading the configuration", sd_monotonic_usec());
}

void
sd_stopping(struct relay *r)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping; queued alerts stay in the "
	    "spool");
}

void
sd_status(struct relay *r)
{
	sd_status_send(r, true);
}

/* Every 5 s: STATUS= when it changed (not while stopping). */
static void
sd_status_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sd	*sd = arg;

	if (!sd->relay->stopping)
		sd_status_send(sd->relay, false);
}

/* The loop completed a pass since the heartbeat was armed. */
static void
sd_heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sd	*sd = arg;

	sd->hb_seen = mono_ms();
}

/*
 * Every WATCHDOG_USEC / 2: feed the watchdog, unless the heartbeat armed
 * at the previous feed is still pending (its stamp is stale): then the
 * loop fires this timer but has not completed a pass since.  Re-arm the
 * heartbeat after each feed.
 */
static void
sd_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sd	*sd = arg;
	struct timeval	 zero = { 0, 0 };

	if (evtimer_pending(sd->heartbeat, NULL)) {
		log_debug("watchdog not fed: the event loop made no progress "
		    "for %lld ms", (long long)(mono_ms() - sd->hb_seen));
		return;
	}
	sd_notify(0, "WATCHDOG=1");
	evtimer_add(sd->heartbeat, &zero);
}

void
sd_start(struct relay *r)
{
	struct sd	*sd;
	struct timeval	 tv;
	uint64_t	 usec;

	if (r->sd_timer != NULL || getenv("NOTIFY_SOCKET") == NULL)
		return;
	sd = xcalloc(1, sizeof(*sd));
	sd->relay = r;
	r->sd_timer = event_new(r->base, -1, EV_PERSIST, sd_status_cb, sd);
	tv = tv_from_ms(SD_STATUS_MS);
	event_add(r->sd_timer, &tv);
	if (sd_watchdog_enabled(0, &usec) <= 0 || usec < 2000)
		return;
	sd->wd_ms = (int64_t)(usec / 2000);
	sd->hb_seen = mono_ms();
	sd->heartbeat = evtimer_new(r->base, sd_heartbeat_cb, sd);
	sd->wd_timer = event_new(r->base, -1, EV_PERSIST, sd_watchdog_cb, sd);
	tv = tv_from_ms(sd->wd_ms);
	event_add(sd->wd_timer, &tv);
	log_debug("systemd watchdog: feeding every %lld ms",
	    (long long)sd->wd_ms);
}

void
sd_stop(struct relay *r)
{
	struct sd	*sd = sd_get(r);

	if (sd == NULL)
		return;
	if (sd->wd_timer != NULL) {
		event_free(sd->wd_timer);
		event_free(sd->heartbeat);
	}
	event_free(r->sd_timer);
	r->sd_timer = NULL;
	free(sd);
}
