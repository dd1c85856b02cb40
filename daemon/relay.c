/*
 * relay: the core below main.  It owns the tenants, the outputs (sinks)
 * and the notifiers, applies a reload all or nothing, watches lag, and
 * ends --once and a stop.  The services above it (control socket,
 * metrics, systemd, cluster) hear of a reload or a stop through the
 * hooks main gives it (struct relay_hooks); relay.c calls none of them.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/dns.h>

#include "internal.h"

#define LAG_CHECK_MAX_MS 30000	/* lag_warning check: at most this often */

static void	relay_tenant_done(struct relay *, struct tenant *, bool);

/* What the tenants tell the relay. */
static const struct tenant_ops relay_tenant_ops = {
	.done = relay_tenant_done,
};

struct sink *
relay_sink_find(struct relay *r, const char *name)
{
	size_t	 i;

	for (i = 0; i < r->nsinks; i++)
		if (r->sinks[i] != NULL &&
		    strcmp(sink_conf(r->sinks[i])->name, name) == 0)
			return r->sinks[i];
	return NULL;
}

struct tenant *
relay_tenant_find(struct relay *r, const char *name)
{
	size_t	 i;

	for (i = 0; i < r->ntenants; i++)
		if (r->tenants[i] != NULL &&
		    strcmp(r->tenants[i]->name, name) == 0)
			return r->tenants[i];
	return NULL;
}

/* Parse and check a new configuration; NULL (errors logged) if bad. */
static struct config *
reload_load(struct relay *r)
{
	struct conf_errors	 errs = { NULL, 0 };
	struct config		*nc;
	size_t			 i;

	if ((nc = conf_load(r->conf->path, &errs)) == NULL) {
		for (i = 0; i < errs.n; i++) {
			log_ctx(LOG_ERR, NULL, "%s", errs.msg[i]);
			buf_addf(&r->reload_errors, "%s\n", errs.msg[i]);
		}
		conf_errors_clear(&errs);
		return NULL;
	}
	if (strcmp(nc->daemon.state_dir, r->conf->daemon.state_dir) != 0) {
		log_warnx("%s: state_dir cannot change on reload (it holds "
		    "cursors and spools); restart alertrelayd to move it",
		    nc->path);
		buf_addf(&r->reload_errors, "%s: state_dir cannot change on "
		    "reload; restart alertrelayd to move it\n", nc->path);
		conf_free(nc);
		return NULL;
	}
	return nc;
}

/*
 * What a reload builds before anything running changes, one slot per
 * [output] and [notify] section of the new configuration.  A NULL sink
 * slot keeps the running output of that name as it is; a NULL notifier
 * slot reconciles the running notifier of that name.
 */
struct reload_plan {
	struct config	 *conf;
	struct sink	**sinks;	/* built, started by sink_commit */
	struct sink	**from;		/* running output of the same name */
	struct notifier	**notifiers;	/* built for a new name */
};

static void	relay_end_poke(struct relay *);
static void	relay_end_poke_cb(void *);

/* What every output takes from the relay: resolver, disk thread, poke. */
static void
relay_sink_attach(struct relay *r, struct sink *s)
{
	sink_set_resolver(s, r->dns);
	sink_set_disk(s, r->disk);
	sink_on_drained(s, relay_end_poke_cb, r);
}

/* Note one reason the reload cannot be applied. */
static void
reload_reject(struct relay *r, const char *file, int line,
    const char *output, const char *why)
{
	log_output(LOG_ERR, output, "%s:%d: %s", file, line, why);
	buf_addf(&r->reload_errors, "%s:%d: %s\n", file, line, why);
}

/*
 * Build the outputs whose settings changed, and the TLS and file outputs
 * (certificate renewal, log rotation), whatever changed.  -1 if any
 * failed (each reason noted).
 */
static int
reload_build_outputs(struct relay *r, struct reload_plan *pl)
{
	const struct conf_output *o;
	struct sink	*from;
	size_t		 i;
	char		 err[512];
	int		 rc = 0;

	for (i = 0; i < pl->conf->noutputs; i++) {
		o = pl->conf->outputs[i];
		from = relay_sink_find(r, o->name);
		pl->from[i] = from;
		if (conf_output_action(from != NULL ? sink_conf(from) : NULL,
		    o) == RELOAD_KEEP)
			continue;
		pl->sinks[i] = sink_build(r->base, o,
		    pl->conf->daemon.state_dir, from, err, sizeof(err));
		if (pl->sinks[i] == NULL) {
			reload_reject(r, o->file, o->line, o->name, err);
			rc = -1;
		} else
			relay_sink_attach(r, pl->sinks[i]);
	}
	return rc;
}

/* Build the notifiers with a new name; -1 if any failed. */
static int
reload_build_notifiers(struct relay *r, struct reload_plan *pl)
{
	const struct conf_notify *c;
	size_t		 i, j;
	char		 err[512];
	int		 rc = 0;

	for (i = 0; i < pl->conf->nnotifies; i++) {
		c = pl->conf->notifies[i];
		for (j = 0; j < r->nnotifiers; j++)
			if (strcmp(notifier_conf(r->notifiers[j])->name,
			    c->name) == 0)
				break;
		if (j < r->nnotifiers)
			continue;
		if ((pl->notifiers[i] = notifier_new(r, c, err,
		    sizeof(err))) == NULL) {
			reload_reject(r, c->file, c->line, NULL, err);
			rc = -1;
		}
	}
	return rc;
}

static void
reload_plan_free(struct reload_plan *pl)
{
	size_t	 i;

	if (pl->conf == NULL)
		return;
	for (i = 0; i < pl->conf->noutputs; i++)
		sink_free(pl->sinks[i]);
	for (i = 0; i < pl->conf->nnotifies; i++)
		notifier_free(pl->notifiers[i]);
	free(pl->sinks);
	free(pl->from);
	free(pl->notifiers);
	conf_free(pl->conf);
	memset(pl, 0, sizeof(*pl));
}

/* Read the new configuration and build all it needs; -1 (logged) if bad. */
static int
reload_build(struct relay *r, struct reload_plan *pl)
{
	int	 rc;

	memset(pl, 0, sizeof(*pl));
	buf_reset(&r->reload_errors);
	if ((pl->conf = reload_load(r)) == NULL)
		return -1;
	pl->sinks = xcalloc(pl->conf->noutputs, sizeof(*pl->sinks));
	pl->from = xcalloc(pl->conf->noutputs, sizeof(*pl->from));
	pl->notifiers = xcalloc(pl->conf->nnotifies, sizeof(*pl->notifiers));
	rc = reload_build_outputs(r, pl);
	if (reload_build_notifiers(r, pl) == -1)
		rc = -1;
	if (rc == -1)
		reload_plan_free(pl);
	return rc;
}

/*
 * Swap the outputs: kept ones stay, built ones are committed (taking over
 * the spool of the running output of their name), removed ones are freed.
 * Undelivered records stay in each output's spool across the swap.
 */
static void
reload_outputs(struct relay *r, struct reload_plan *pl, unsigned *changed)
{
	struct sink	**ns;
	size_t		 i, j;

	ns = xcalloc(pl->conf->noutputs, sizeof(*ns));
	for (i = 0; i < pl->conf->noutputs; i++) {
		for (j = 0; pl->from[i] != NULL && j < r->nsinks; j++)
			if (r->sinks[j] == pl->from[i])
				r->sinks[j] = NULL;
		if (pl->sinks[i] == NULL) {
			ns[i] = pl->from[i];
			continue;
		}
		ns[i] = sink_commit(pl->sinks[i], pl->from[i]);
		pl->sinks[i] = NULL;
		(*changed)++;
	}
	for (j = 0; j < r->nsinks; j++) {
		if (r->sinks[j] == NULL)
			continue;
		log_output(LOG_INFO, sink_conf(r->sinks[j])->name, "output %s "
		    "removed; what it had not delivered stays in its spool",
		    sink_conf(r->sinks[j])->name);
		sink_free(r->sinks[j]);
		(*changed)++;
	}
	free(r->sinks);
	r->sinks = ns;
	r->nsinks = pl->conf->noutputs;
}

/* Swap the notifiers: reconcile by name, add the built ones, free the rest. */
static void
reload_notifiers(struct relay *r, struct reload_plan *pl)
{
	struct notifier	**nn;
	size_t		 i, j;

	nn = xcalloc(pl->conf->nnotifies, sizeof(*nn));
	for (i = 0; i < pl->conf->nnotifies; i++) {
		if ((nn[i] = pl->notifiers[i]) != NULL) {
			pl->notifiers[i] = NULL;
			continue;
		}
		for (j = 0; j < r->nnotifiers && nn[i] == NULL; j++) {
			if (r->notifiers[j] == NULL ||
			    strcmp(notifier_conf(r->notifiers[j])->name,
			    pl->conf->notifies[i]->name) != 0)
				continue;
			nn[i] = r->notifiers[j];
			r->notifiers[j] = NULL;
			notifier_reconcile(nn[i], pl->conf->notifies[i]);
		}
	}
	for (j = 0; j < r->nnotifiers; j++)
		notifier_free(r->notifiers[j]);
	free(r->notifiers);
	r->notifiers = nn;
	r->nnotifiers = pl->conf->nnotifies;
}

/*
 * Stop the tenants the new configuration drops while their outputs still
 * exist, so what a cut page read is committed and a tenant added back
 * later does not forward it again.
 */
static void
reload_stop_removed(struct relay *r, struct config *nc)
{
	size_t	 i;

	for (i = 0; i < r->ntenants; i++)
		if (conf_tenant_find(nc, r->tenants[i]->name) == NULL ||
		    !conf_in_shard(nc, r->tenants[i]->name))
			tenant_stop(r->tenants[i]);
}

#define RATE_KEEP_MS	(60 * 60 * 1000)

struct rate_kept {
	char		*name;
	struct rate	 rate;
	int64_t		 at;		/* mono_ms when kept */
};

static void
rate_kept_drop(struct relay *r, size_t i)
{
	free(r->rates_kept[i].name);
	r->rates_kept[i] = r->rates_kept[--r->nrates_kept];
}

/* Keep a removed tenant's rate budget (and forget those over an hour). */
static void
relay_rate_keep(struct relay *r, const struct tenant *t)
{
	int64_t	 now = mono_ms();
	size_t	 i;

	for (i = r->nrates_kept; i-- > 0;)
		if (now - r->rates_kept[i].at > RATE_KEEP_MS)
			rate_kept_drop(r, i);
	r->rates_kept = xreallocarray(r->rates_kept, r->nrates_kept + 1,
	    sizeof(*r->rates_kept));
	r->rates_kept[r->nrates_kept].name = xstrdup(t->name);
	r->rates_kept[r->nrates_kept].rate = t->rate;
	r->rates_kept[r->nrates_kept].at = now;
	r->nrates_kept++;
}

/* A tenant added by a reload takes the budget its name had. */
static void
relay_rate_adopt(struct relay *r, struct tenant *t)
{
	size_t	 i;

	for (i = 0; i < r->nrates_kept; i++) {
		if (strcmp(r->rates_kept[i].name, t->name) != 0)
			continue;
		if (mono_ms() - r->rates_kept[i].at <= RATE_KEEP_MS) {
			unsigned per_minute = t->rate.per_minute;

			t->rate = r->rates_kept[i].rate;
			rate_set_limit(&t->rate, per_minute);
		}
		rate_kept_drop(r, i);
		return;
	}
}

/* Reconcile tenants by name: keep, adopt, start or stop. */
static void
reload_tenants(struct relay *r, struct config *nc, unsigned n[3])
{
	struct tenant	**nt, *t;
	struct log_ctx	 lc = { 0 };
	size_t		 i, j, cnt = 0;
	char		 err[512];

	nt = xcalloc(nc->ntenants, sizeof(*nt));
	for (i = 0; i < nc->ntenants; i++) {
		struct conf_tenant *ct = nc->tenants[i];

		if (!conf_in_shard(nc, ct->name))
			continue;
		/* Same order as before is the common case: look there first. */
		t = i < r->ntenants && r->tenants[i] != NULL &&
		    strcmp(r->tenants[i]->name, ct->name) == 0 ?
		    r->tenants[i] : relay_tenant_find(r, ct->name);
		if (t != NULL) {
			tenant_reconcile(t, ct);
			if (i < r->ntenants && r->tenants[i] == t)
				r->tenants[i] = NULL;
			else
				for (j = 0; j < r->ntenants; j++)
					if (r->tenants[j] == t)
						r->tenants[j] = NULL;
			nt[cnt++] = t;
			continue;
		}
		if ((t = tenant_new(r, &relay_tenant_ops, ct, err,
		    sizeof(err))) == NULL) {
			log_tenant(LOG_ERR, ct->name, "%s; not "
			    "started", err);
			continue;
		}
		relay_rate_adopt(r, t);
		nt[cnt++] = t;
		if (!nc->cluster.enabled)
			tenant_start(t);	/* else the cluster assigns it */
		r->tenants_added = ts_now();
		n[0]++;
	}
	for (j = 0; j < r->ntenants; j++) {
		if (r->tenants[j] == NULL)
			continue;
		lc.tenant = r->tenants[j]->name;
		log_ctx(LOG_INFO, &lc, "tenant %s removed", lc.tenant);
		relay_rate_keep(r, r->tenants[j]);
		tenant_free(r->tenants[j]);
		n[1]++;
	}
	free(r->tenants);
	r->tenants = nt;
	r->ntenants = cnt;
}

/* "1h05m", "3m20s", "42s". */
static const char *
lag_fmt(int64_t ms, char *out, size_t len)
{
	long long	 s = (long long)(ms / 1000);

	if (s >= 3600)
		snprintf(out, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(out, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(out, len, "%llds", s);
	return out;
}

/*
 * Milliseconds since the tenant last completed a catch-up; one that never
 * did counts from the start, or from the last reload that added tenants
 * (no per-tenant start time is kept).
 */
static int64_t
relay_tenant_lag(const struct relay *r, const struct tenant *t, int64_t now)
{
	int64_t	 base = t->last_success;

	if (base == 0)
		base = r->tenants_added > r->started ? r->tenants_added :
		    r->started;
	return (now - base) / (TICKS_PER_SEC / 1000);
}

/* Warn once per streak about a tenant past lag_warning. */
static void
relay_lag_warn(struct relay *r, struct tenant *t, int64_t lag_ms)
{
	struct log_ctx	 c = { .tenant = t->name,
			    .message_id = MSGID_TENANT_LAGGING };
	char		 a[32], b[32];

	t->lagging = true;
	log_ctx(LOG_WARNING, &c, "tenant %s is lagging: no catch-up completed "
	    "for %s (lag_warning %s), so its new alerts are not forwarded; "
	    "check its last error in alertrelayctl status, its credentials "
	    "and the API, and whether an output's spool is full%s%s",
	    t->name, lag_fmt(lag_ms, a, sizeof(a)),
	    lag_fmt(r->conf->daemon.lag_warning_ms, b, sizeof(b)),
	    t->last_error[0] != '\0' ? "; last error: " : "", t->last_error);
}

/*
 * Stalls are loud: a tenant without a completed catch-up for lag_warning
 * gets one warning per streak, and an info line once it completes one.
 */
static void
relay_lag_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay	*r = arg;
	struct tenant	*t;
	struct log_ctx	 c = { .message_id = MSGID_TENANT_CAUGHT_UP };
	int64_t		 now = ts_now(), lag, limit;
	size_t		 i;

	if (r->stopping)
		return;		/* polling has ended on purpose */
	limit = r->conf->daemon.lag_warning_ms;
	for (i = 0; i < r->ntenants; i++) {
		t = r->tenants[i];
		if (!t->conf->enabled ||
		    (r->cluster != NULL && !tenant_owned(t))) {
			t->lagging = false;	/* not polled here */
			continue;
		}
		lag = relay_tenant_lag(r, t, now);
		if (!t->lagging && lag >= limit)
			relay_lag_warn(r, t, lag);
		else if (t->lagging && t->last_success != 0 && lag < limit) {
			t->lagging = false;
			c.tenant = t->name;
			log_ctx(LOG_INFO, &c, "tenant %s caught up again; no "
			    "longer lagging", t->name);
		}
	}
}

/* (Re)arm the lag check: every lag_warning/4, between 1 s and 30 s. */
static void
relay_lag_start(struct relay *r)
{
	int64_t		 ms = r->conf->daemon.lag_warning_ms / 4;
	struct timeval	 tv;

	if (ms < 1000)
		ms = 1000;
	if (ms > LAG_CHECK_MAX_MS)
		ms = LAG_CHECK_MAX_MS;
	tv = tv_from_ms(ms);
	if (r->lag_timer == NULL)
		r->lag_timer = event_new(r->base, -1, EV_PERSIST,
		    relay_lag_cb, r);
	event_del(r->lag_timer);
	event_add(r->lag_timer, &tv);
}

/*
 * Reload is all or nothing: the new configuration is parsed and
 * everything it needs is built first (reload_build); only then does
 * anything running change, by steps that cannot fail.
 */
int
relay_reload(struct relay *r)
{
	struct reload_plan pl;
	struct config	*old = r->conf;
	struct log_ctx	 c = { 0 };
	unsigned	 outs = 0, n[3] = { 0, 0, 0 };

	if (r->once)
		return 0;
	if (r->stopping) {
		/* Reconciling would start tenants the stop has stopped. */
		buf_reset(&r->reload_errors);
		buf_addf(&r->reload_errors, "alertrelayd is stopping\n");
		log_warnx("reload ignored: alertrelayd is stopping");
		return -1;
	}
	r->hooks->reloading(r);
	if (reload_build(r, &pl) == -1) {
		c.message_id = MSGID_RELOAD_REJECTED;
		log_ctx(LOG_ERR, &c, "reload rejected: %s cannot be applied "
		    "(above); the running configuration stays in force",
		    old->path);
		r->hooks->ready(r);
		return -1;
	}
	reload_stop_removed(r, pl.conf);
	reload_outputs(r, &pl, &outs);
	reload_notifiers(r, &pl);
	r->conf = pl.conf;
	reload_tenants(r, pl.conf, n);
	r->hooks->applied(r, old);
	conf_free(old);
	free(pl.sinks);
	free(pl.from);
	free(pl.notifiers);
	r->reloads++;
	relay_lag_start(r);	/* lag_warning may have changed */
	c.message_id = MSGID_RELOAD_APPLIED;
	log_ctx(LOG_INFO, &c, "reload applied: %zu tenants (%u added, %u "
	    "removed), %zu outputs (%u reopened or changed)", r->ntenants,
	    n[0], n[1], r->nsinks, outs);
	r->hooks->ready(r);
	return 0;
}

static bool
relay_drained(struct relay *r)
{
	size_t	 i;

	for (i = 0; i < r->nsinks; i++)
		if (!sink_drained(r->sinks[i]))
			return false;
	return true;
}

/* Every queued mail sent (--once waits for them too). */
static bool
relay_notifiers_drained(struct relay *r)
{
	size_t	 i;

	for (i = 0; i < r->nnotifiers; i++)
		if (!notifier_drained(r->notifiers[i]))
			return false;
	return true;
}

/*
 * Nothing more will be queued: let the outputs half-close once they have
 * written everything (sink_finish), for the SIEM to confirm it.
 */
static void
relay_finish_outputs(struct relay *r)
{
	size_t	 i;

	for (i = 0; i < r->nsinks; i++)
		sink_finish(r->sinks[i]);
}

/*
 * Something an ending waits for happened (a tenant done, an output
 * drained): look at once rather than at the next tick.
 */
static void
relay_end_poke(struct relay *r)
{
	if (r->stopping && r->stop_timer != NULL)
		event_active(r->stop_timer, EV_TIMEOUT, 1);
	else if (r->once && r->once_timer != NULL)
		event_active(r->once_timer, EV_TIMEOUT, 1);
}

static void
relay_end_poke_cb(void *arg)
{
	relay_end_poke(arg);
}

/*
 * --once: exit when every tenant is done and every output drained.  The
 * timer catches the rest (a commit saved, a mail sent) and writes the
 * progress line; relay_end_poke runs the check as soon as a tenant ends
 * or an output drains.
 */
static void
relay_once_check(evutil_socket_t fd, short what, void *arg)
{
	struct relay	*r = arg;
	struct timeval	 tv = { 0, 100000 };
	size_t		 i;
	struct sink_stats st;
	static int64_t	 last_progress;

	if (r->once_pending == 0 && r->commits == 0) {
		if (relay_drained(r) && relay_notifiers_drained(r)) {
			event_base_loopexit(r->base, NULL);
			return;
		}
		relay_finish_outputs(r);
	}
	if (isatty(STDERR_FILENO) && mono_ms() - last_progress > 2000) {
		uint64_t spool = 0;

		for (i = 0; i < r->nsinks; i++) {
			sink_stats(r->sinks[i], &st);
			spool += st.spool_records;
		}
		fprintf(stderr, "alertrelayd: --once: %zu/%zu tenants done, "
		    "%llu alerts forwarded, %llu waiting for outputs\n",
		    r->ntenants - r->once_pending, r->ntenants,
		    (unsigned long long)r->forwarded,
		    (unsigned long long)spool);
		last_progress = mono_ms();
	}
	evtimer_add(r->once_timer, &tv);
}

/* A tenant finished its first catch-up (or gave up) in --once mode. */
static void
relay_tenant_done(struct relay *r, struct tenant *t, bool ok)
{
	if (!r->once)
		return;
	if (!ok)
		r->once_failed++;
	if (r->once_pending > 0)
		r->once_pending--;
	relay_end_poke(r);
	log_tenant(LOG_INFO, t->name, "%s (%llu alerts "
	    "forwarded)", ok ? "caught up" : "gave up",
	    (unsigned long long)t->forwarded);
}

/*
 * Records held by outputs that are connected: worth waiting for while
 * stopping.  Those of outputs that are down stay in their spools.
 */
static uint64_t
relay_deliverable(struct relay *r)
{
	struct sink_stats st;
	uint64_t	 n = 0;
	size_t		 i;

	for (i = 0; i < r->nsinks; i++) {
		if (sink_drained(r->sinks[i]))
			continue;
		sink_stats(r->sinks[i], &st);
		if (st.connected)
			n += st.spool_records;
	}
	return n;
}

/*
 * While stopping: deliver for as long as an output that holds records is
 * connected, up to the deadline; exit at once when none is (an outage
 * must not hold a stop for the whole deadline: the spool keeps them).
 */
static void
relay_stop_check(evutil_socket_t fd, short what, void *arg)
{
	struct relay	*r = arg;
	struct timeval	 tv = { 0, 100000 };

	if (r->commits == 0 && relay_drained(r)) {
		event_base_loopexit(r->base, NULL);
		return;
	}
	if (r->commits == 0)
		relay_finish_outputs(r);
	/* The pages read before the stop are saved first (commit.c). */
	if (r->commits > 0 && mono_ms() < r->stop_deadline) {
		evtimer_add(r->stop_timer, &tv);
		return;
	}
	if (relay_deliverable(r) == 0)
		log_info("no output holding undelivered alerts is connected; "
		    "they stay in the spool and are sent after the next start");
	else if (mono_ms() >= r->stop_deadline)
		log_info("stop deadline reached; undelivered alerts stay in "
		    "the spool and are sent after the next start");
	else {
		evtimer_add(r->stop_timer, &tv);
		return;
	}
	event_base_loopexit(r->base, NULL);
}

void
relay_stop(struct relay *r)
{
	size_t	 i;

	r->stopping = true;
	r->hooks->stopping(r);
	for (i = 0; i < r->ntenants; i++)
		tenant_stop(r->tenants[i]);
	r->stop_deadline = mono_ms() + STOP_DEADLINE_S * 1000;
	r->stop_timer = evtimer_new(r->base, relay_stop_check, r);
	relay_stop_check(-1, 0, r);
}

static int
relay_open_outputs(struct relay *r)
{
	char	 err[512];
	size_t	 i;

	r->sinks = xcalloc(r->conf->noutputs, sizeof(*r->sinks));
	for (i = 0; i < r->conf->noutputs; i++) {
		r->sinks[i] = sink_new(r->base, r->conf->outputs[i],
		    r->conf->daemon.state_dir, err, sizeof(err));
		if (r->sinks[i] == NULL) {
			log_output(LOG_ERR, r->conf->outputs[i]->name,
			    "%s:%d: %s", r->conf->outputs[i]->file,
			    r->conf->outputs[i]->line, err);
			return -1;
		}
		relay_sink_attach(r, r->sinks[i]);
		r->nsinks++;
	}
	return 0;
}

static int
relay_open_tenants(struct relay *r)
{
	char	 err[512], *dir;
	size_t	 i;
	int	 rc = 0;

	xasprintf(&dir, "%s/tenants", r->conf->daemon.state_dir);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		log_warn("cannot create %s", dir);
		free(dir);
		return -1;
	}
	chmod(dir, 0700);
	free(dir);
	r->tenants = xcalloc(r->conf->ntenants, sizeof(*r->tenants));
	for (i = 0; i < r->conf->ntenants; i++) {
		if (!conf_in_shard(r->conf, r->conf->tenants[i]->name))
			continue;
		r->tenants[r->ntenants] = tenant_new(r, &relay_tenant_ops,
		    r->conf->tenants[i], err, sizeof(err));
		if (r->tenants[r->ntenants] == NULL) {
			log_tenant(LOG_ERR, r->conf->tenants[i]->name,
			    "%s", err);
			rc = -1;
			continue;
		}
		r->ntenants++;
	}
	return rc;
}

static int
relay_open_notifiers(struct relay *r)
{
	char	 err[512];
	size_t	 i;

	r->notifiers = xcalloc(r->conf->nnotifies, sizeof(*r->notifiers));
	for (i = 0; i < r->conf->nnotifies; i++) {
		r->notifiers[i] = notifier_new(r, r->conf->notifies[i], err,
		    sizeof(err));
		if (r->notifiers[i] == NULL) {
			log_warnx("%s:%d: %s", r->conf->notifies[i]->file,
			    r->conf->notifies[i]->line, err);
			return -1;
		}
		r->nnotifiers++;
	}
	return 0;
}

void
relay_free(struct relay *r)
{
	size_t	 i;

	for (i = 0; i < r->ntenants; i++)
		tenant_free(r->tenants[i]);
	free(r->tenants);
	for (i = 0; i < r->nnotifiers; i++)
		notifier_free(r->notifiers[i]);
	free(r->notifiers);
	buf_clear(&r->reload_errors);
	while (r->nrates_kept > 0)
		rate_kept_drop(r, r->nrates_kept - 1);
	free(r->rates_kept);
	alert_clear(&r->alert);
	for (i = 0; i < r->nsinks; i++)
		sink_free(r->sinks[i]);
	free(r->sinks);
	/* After every spool's owner: the commits left end here. */
	disk_free(r->disk);
	if (r->dns != NULL)
		evdns_base_free(r->dns, 0);	/* the sinks cancelled theirs */
	http_free(r->http);
	if (r->once_timer != NULL)
		event_free(r->once_timer);
	if (r->stop_timer != NULL)
		event_free(r->stop_timer);
	if (r->expiry_timer != NULL)
		event_free(r->expiry_timer);
	if (r->lag_timer != NULL)
		event_free(r->lag_timer);
	conf_free(r->conf);
	if (r->lock_fd != -1)
		close(r->lock_fd);
	if (r->base != NULL)
		event_base_free(r->base);
}

/*
 * The outputs' asynchronous resolver on the loop: /etc/hosts, then the
 * name servers of /etc/resolv.conf, read once at start.  It keeps no
 * event pending while no name is being resolved.
 */
static struct evdns_base *
relay_resolver(struct event_base *base)
{
	struct evdns_base	*dns;

	dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns == NULL) {
		log_warnx("cannot set up the name resolver from "
		    "/etc/resolv.conf");
		return NULL;
	}
	/* Plain queries: some resolvers do not echo 0x20 mixed case. */
	evdns_base_set_option(dns, "randomize-case:", "0");
	return dns;
}

int
relay_setup(struct relay *r, struct config *conf, bool once)
{
	char	 err[512];

	r->conf = conf;
	r->once = once;
	r->lock_fd = -1;
	r->pid = (int)getpid();
	if (gethostname(r->hostname, sizeof(r->hostname) - 1) == -1)
		strcpy(r->hostname, "localhost");
	if (http_check_async_dns(err, sizeof(err)) == -1) {
		log_warnx("%s", err);
		return EX_CONFIG;
	}
	if ((r->lock_fd = state_dir_lock(conf->daemon.state_dir, err,
	    sizeof(err))) == -1) {
		log_warnx("%s", err);
		return 1;
	}
	alert_init(&r->alert);
	r->base = event_base_new();
	if ((r->dns = relay_resolver(r->base)) == NULL)
		return 1;
	r->http = http_new(r->base, conf->daemon.max_concurrent_requests);
	r->disk = disk_new(r->base);
	if (relay_open_outputs(r) == -1 || relay_open_notifiers(r) == -1 ||
	    relay_open_tenants(r) == -1)
		return 1;
	return 0;
}

/* Once a day: warn about certificates and secrets about to expire. */
static void
relay_expiry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay	*r = arg;
	size_t		 i;

	for (i = 0; i < r->ntenants; i++)
		if (r->tenants[i]->conf->enabled)
			token_check_expiry(r->tenants[i]);
}

/*
 * Start the timers and the tenants (in cluster mode the cluster starts
 * them as it takes them).  --once: watch for the end.
 */
void
relay_start(struct relay *r)
{
	struct timeval	 day = { 86400, 0 };
	size_t		 i;

	r->started = ts_now();
	r->expiry_timer = event_new(r->base, -1, EV_PERSIST, relay_expiry_cb,
	    r);
	event_add(r->expiry_timer, &day);
	if (!r->once)
		relay_lag_start(r);
	r->once_pending = (unsigned)r->ntenants;
	if (!r->conf->cluster.enabled || r->once)
		for (i = 0; i < r->ntenants; i++)
			tenant_start(r->tenants[i]);
	if (r->once) {
		r->once_timer = evtimer_new(r->base, relay_once_check, r);
		relay_once_check(-1, 0, r);
	}
}
