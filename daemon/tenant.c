/*
 * tenant: one customer tenant's poller.  A catch-up reads every alert
 * version with lastUpdateTime >= cursor - overlap, page by page, drops the
 * versions already forwarded, queues the rest durably on every routed
 * output, and only then moves the cursor.  A backfill is the same reading
 * over a fixed range that never moves the cursor.  Errors back off this
 * tenant alone; the API's rate budget and Retry-After are honoured.
 *
 * With incidents = yes the tenant also reads Graph incidents after each
 * live catch-up (the ireader, below), with their own cursor and dedupe
 * set.
 *
 * Ownership: the tenant owns its token, its live catch-up, its backfill
 * and its incident reader; each catch-up owns its page request and
 * timer, the reader its page or alerts-list request.  Nothing
 * points at a catch-up from outside: the token's answer comes to the
 * tenant (tenant_token_cb), which serves whichever catch-ups wait for it
 * then.  A reload that disables the tenant or changes its credentials,
 * api_url or outputs abandons the page in flight (what it had read is
 * forgotten and read again) and ends a backfill with an error.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "alertrelayd.h"
#include "paging.h"
#include "backoff.h"
#include "graph.h"
#include "incident.h"
#include "jscan.h"
#include "oauth.h"

#define PAUSE_CHECK_MS		1000
#define MAX_ALERT_BYTES		(16 * 1024 * 1024)
/* A page of 10,000 alerts is ~40 MB; far larger bodies are hostile. */
#define MAX_PAGE_BYTES		((size_t)512 * 1024 * 1024)
#define ONCE_MAX_RETRIES	3
#define BACKFILL_MAX_RETRIES	5
/* A cursor never moves further ahead of this host's clock. */
#define FUTURE_MAX_TICKS	(5 * 60 * TICKS_PER_SEC)

/*
 * One reading of the alerts API: the live poller's catch-up, or a
 * backfill.  Where the next request starts is lib/paging.c's decision:
 * a nextLink chain counts as one answer, and only an answer shorter than
 * $top ends the catch-up (SPEC 5, "Paging always ends caught up").
 */
struct catchup {
	struct tenant	*t;
	bool		 backfill;
	int64_t		 from;		/* where this catch-up started */
	int64_t		 to;		/* lt this; TICKS_NONE: open */
	struct paging	 pg;		/* the next boundary request */
	struct paging	 pg_sent;	/* pg when the request went out */
	char		*next_link;
	struct pagesplit *split;
	struct http_req	*req;
	int64_t		 page_sane;	/* newest lastUpdateTime in the page,
					   not past now + 5 min */
	unsigned	 page_n;
	char		 page_error[256];
	int		 retried_401;
	bool		 awaiting_token;	/* served by tenant_token_cb */
	bool		 dirty;		/* state changed since the last save */
	/* Backfill only. */
	struct event	*timer;
	unsigned	 failures;
	uint64_t	 pages, seen, forwarded;
	backfill_cb	 cb;
	void		*cb_arg;
};

#define MAX_CHECKPOINTS		64

struct checkpoint {
	int64_t		 cursor;
	struct spool_pos *tail;		/* one per routed sink */
};

/* The incident reader (see ireader_new below). */
struct ireader {
	struct tenant	*t;
	struct paging	 pg;
	struct paging	 pg_sent;	/* pg when the request went out */
	char		*next_link;
	struct pagesplit *split;
	struct http_req	*req;
	int64_t		 page_sane;	/* newest sane lastUpdateDateTime */
	unsigned	 page_n;
	int		 retried_401;
	bool		 awaiting_token;
	bool		 dirty;
	char		 page_error[256];
	struct incident	 inc;		/* scratch: the incident being read */
	/*
	 * Fallback when $expand=alerts answers 500: the page is read
	 * without it, and each incident to forward waits here for its
	 * /incidents/{id}/alerts, asked one at a time.
	 */
	bool		 no_expand;
	struct ipend	*pend;
	size_t		 npend, ipend;
};

struct ipend {
	char		*raw;		/* the incident object as received */
	size_t		 len;
	int		 kind;		/* created 0, updated 1 */
};

static void	tenant_poll(struct tenant *);
static void	ireader_start(struct ireader *);
static void	ireader_fetch(struct ireader *);
static bool	ireader_abandon(struct ireader *);
static void	ireader_fetch_alerts(struct ireader *, const char *);
static void	ireader_token_cb(struct ireader *, int);
static int	ireader_commit(struct ireader *);
static void	tenant_checkpoint(struct tenant *);
static void	catchup_fetch(struct catchup *);
static int	catchup_data_cb(const char *, size_t, void *);
static int	catchup_alert_cb(const char *, size_t, void *);
static void	catchup_page_cb(const struct http_result *, void *);
static unsigned	catchup_top(const struct catchup *);

const char *
tenant_phase_name(enum tenant_phase p)
{
	static const char *names[] = { "idle", "token", "fetching",
	    "backoff", "paused", "stopped" };

	return (unsigned)p < nitems(names) ? names[p] : "unknown";
}

static void
timer_in(struct event *ev, int64_t ms)
{
	struct timeval	 tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

static void
tenant_schedule(struct tenant *t, enum tenant_phase phase, int64_t ms)
{
	t->phase = phase;
	timer_in(t->timer, ms);
}

/* Wait before the next step of a catch-up (live: with its phase). */
static void
catchup_wait(struct catchup *c, enum tenant_phase phase, int64_t ms)
{
	if (c->backfill)
		timer_in(c->timer, ms);
	else
		tenant_schedule(c->t, phase, ms);
}

void
tenant_error(struct tenant *t, int prio, const struct log_ctx *c,
    const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(t->last_error, sizeof(t->last_error), fmt, ap);
	va_end(ap);
	log_ctx(prio, c, "%s", t->last_error);
}

/* "@1798761600" (RFC 9745) as "2027-01-01"; anything else as it is. */
static void
sunset_date(const char *v, char *out, size_t len)
{
	char		*end;
	long long	 secs;
	time_t		 w;
	struct tm	 tm;

	if (v[0] == '@' && (secs = strtoll(v + 1, &end, 10)) > 0 &&
	    *end == '\0' && (w = (time_t)secs, gmtime_r(&w, &tm)) != NULL &&
	    strftime(out, len, "%Y-%m-%d", &tm) > 0)
		return;
	snprintf(out, len, "%s", v);
}

void
tenant_note_sunset(struct tenant *t, const struct http_result *res,
    const char *what)
{
	int64_t		 day = ts_now() / TICKS_PER_SEC / 86400;
	char		 dep[120], sun[120];

	if ((res->deprecation == NULL && res->sunset == NULL) ||
	    (t->sunset_day != 0 && t->sunset_day == day))
		return;
	t->sunset_day = day;
	sunset_date(res->deprecation ? res->deprecation : "", dep,
	    sizeof(dep));
	sunset_date(res->sunset ? res->sunset : "", sun, sizeof(sun));
	log_tenant(LOG_WARNING, t->name, "tenant %s: the %s API says it is "
	    "going away: %s%s%s%s%s; %s", t->name, what,
	    res->deprecation ? "deprecated since " : "", dep,
	    res->deprecation && res->sunset ? ", " : "",
	    res->sunset ? "stops on " : "", sun,
	    t->conf->source == SRC_MDE ? "plan the move to source = graph "
	    "(alertrelay.conf(5))" : "check alertrelay's release notes");
}

/*
 * The state file cannot be read: this tenant stops alone, with an error
 * that says the way out, until alertrelayctl cursor set gives it a
 * fresh state.
 */
static void
tenant_state_failed(struct tenant *t, const char *err)
{
	struct log_ctx	 c = { .tenant = t->name };

	t->state_bad = true;
	t->phase = TENANT_FAILED;
	if (t->timer != NULL)
		evtimer_del(t->timer);
	tenant_error(t, LOG_ERR, &c, "tenant %s: cannot use its state file: "
	    "%s; this tenant is stopped, the others carry on; to recover, "
	    "choose where to read from: alertrelayctl cursor set %s TIME",
	    t->name, err, t->name);
}

/* Forget what was read but not committed: back to the saved state. */
static int
tenant_state_reread(struct tenant *t)
{
	char	 err[512];

	tenant_state_clear(&t->state);
	tenant_state_init(&t->state);
	if (tenant_state_load(t->state_path, &t->state, err,
	    sizeof(err)) == -1) {
		tenant_state_failed(t, err);
		return -1;
	}
	return 0;
}

static int64_t
poll_interval(const struct tenant *t)
{
	return t->conf->poll_interval_ms != 0 ? t->conf->poll_interval_ms :
	    t->relay->conf->daemon.poll_interval_ms;
}

static struct catchup *
catchup_new(struct tenant *t, bool backfill)
{
	struct catchup	*c;

	c = xcalloc(1, sizeof(*c));
	c->t = t;
	c->backfill = backfill;
	c->to = TICKS_NONE;
	return c;
}

static void
catchup_reset_page(struct catchup *c)
{
	pagesplit_free(c->split);
	c->split = pagesplit_new(MAX_ALERT_BYTES, catchup_alert_cb, c);
	c->page_n = 0;
	c->page_sane = TICKS_NONE;
	c->page_error[0] = '\0';
}

static void
catchup_free(struct catchup *c)
{
	if (c == NULL)
		return;
	if (c->req != NULL)
		http_cancel(c->t->relay->http, c->req);
	if (c->timer != NULL)
		event_free(c->timer);
	pagesplit_free(c->split);
	free(c->next_link);
	free(c);
}

/* Free a finished backfill from the loop, not from its own callback. */
static void
catchup_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	catchup_free(arg);
}

/* The tenant gave up (--once) or finished its catch-up. */
static void
tenant_once_done(struct tenant *t, bool ok)
{
	t->phase = ok ? TENANT_IDLE : TENANT_FAILED;
	relay_tenant_done(t->relay, t, ok);
}

/* A backfill ended: report, then free it from the loop. */
static void
backfill_end(struct catchup *c, bool ok, const char *error)
{
	struct tenant	*t = c->t;

	/* Remember the range so a second backfill skips it. */
	if (ok) {
		tenant_state_cover(&t->state, c->from, c->to);
		if (tenant_state_save(t->state_path, &t->state) == -1)
			log_tenant(LOG_WARNING, t->name, "tenant %s: cannot "
			    "save state %s: %s", t->name, t->state_path,
			    strerror(errno));
	}
	if (c->cb != NULL)
		c->cb(c->cb_arg, 1, ok, c->pages, c->seen, c->forwarded,
		    error);
	log_tenant(ok ? LOG_INFO : LOG_WARNING, t->name, "tenant %s: "
	    "backfill %s: %llu pages, %llu alerts read, %llu forwarded%s%s",
	    t->name, ok ? "done" : "failed", (unsigned long long)c->pages,
	    (unsigned long long)c->seen, (unsigned long long)c->forwarded,
	    error != NULL ? ": " : "", error != NULL ? error : "");
	t->backfill = NULL;
	c->cb = NULL;
	event_base_once(t->relay->base, -1, EV_TIMEOUT, catchup_reap_cb, c,
	    NULL);
}

/* An error ended this attempt: wait, then start the catch-up again. */
static void
catchup_backoff(struct catchup *c, int64_t retry_after_ms, bool counts)
{
	struct tenant	*t = c->t;
	int64_t		 delay;
	struct log_ctx	 lc = { .tenant = t->name };

	if (t->state_bad) {		/* failed alone, logged already */
		if (c->backfill)
			backfill_end(c, false, t->last_error);
		else if (t->relay->once)
			tenant_once_done(t, false);
		else
			t->phase = TENANT_FAILED;
		return;
	}
	if (c->backfill) {
		c->failures += counts;
		if (c->failures > BACKFILL_MAX_RETRIES || t->auth_failed) {
			backfill_end(c, false, t->last_error);
			return;
		}
		timer_in(c->timer, backoff_delay(c->failures ? c->failures : 1,
		    retry_after_ms, arc4random()));
		return;
	}
	if (counts) {
		t->failures++;
		t->polls_failed++;
	}
	delay = backoff_delay(t->failures > 0 ? t->failures : 1,
	    retry_after_ms, arc4random());
	if (t->relay->once && (t->auth_failed ||
	    t->failures > ONCE_MAX_RETRIES)) {
		log_ctx(LOG_ERR, &lc, "tenant %s: giving up after %u "
		    "attempt%s; see the error above", t->name, t->failures,
		    t->failures == 1 ? "" : "s");
		tenant_once_done(t, false);
		return;
	}
	if (counts && !t->failing) {
		t->failing = true;
		lc.message_id = MSGID_TENANT_FAILING;
		log_ctx(LOG_WARNING, &lc, "tenant %s: failing, other tenants "
		    "carry on; retrying in %llds", t->name,
		    (long long)(delay + 999) / 1000);
	} else
		log_ctx(LOG_INFO, &lc, "tenant %s: retrying in %llds",
		    t->name, (long long)(delay + 999) / 1000);
	tenant_schedule(t, TENANT_BACKOFF, delay);
}

static void
tenant_succeeded(struct tenant *t)
{
	struct log_ctx	 c = { .tenant = t->name };

	/* Alerts caught up: the incidents' turn (they call back here). */
	if (t->incidents != NULL && !t->incidents_done) {
		ireader_start(t->incidents);
		return;
	}
	t->incidents_done = false;
	t->failures = 0;
	t->polls_ok++;
	t->last_success = ts_now();
	t->last_error[0] = '\0';
	if (t->failing) {
		t->failing = false;
		c.message_id = MSGID_TENANT_RECOVERED;
		log_ctx(LOG_INFO, &c, "tenant %s: recovered", t->name);
	}
	if (t->relay->once) {
		tenant_once_done(t, true);
		return;
	}
	/* Jitter only shortens the interval: a poll is never late. */
	tenant_schedule(t, TENANT_IDLE, poll_interval(t) -
	    (int64_t)((uint64_t)arc4random() * (uint64_t)poll_interval(t) /
	    10 >> 32));
}

static void
tenant_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tenant	*t = arg;

	if (t->phase == TENANT_IDLE || t->phase == TENANT_BACKOFF)
		tenant_poll(t);
	else if (t->incidents_active)
		ireader_fetch(t->incidents);	/* its own waits */
	else
		catchup_fetch(t->live);	/* paused, rate or token wait */
}

static void
backfill_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	catchup_fetch(arg);
}

static bool
tenant_outputs_full(struct tenant *t, bool quiet)
{
	size_t		 i;
	struct log_ctx	 c = { .tenant = t->name };

	for (i = 0; i < t->nsinks; i++) {
		if (!sink_full(t->sinks[i]))
			continue;
		if (!quiet) {
			c.output = sink_conf(t->sinks[i])->name;
			c.message_id = MSGID_SPOOL_FULL;
			log_ctx(LOG_WARNING, &c, "tenant %s: polling paused: "
			    "spool of output %s is full (spool_max_bytes); "
			    "it resumes when the SIEM takes the backlog",
			    t->name, c.output);
		}
		return true;
	}
	if (quiet && t->phase == TENANT_PAUSED)
		log_tenant(LOG_INFO, t->name, "tenant %s: polling resumed: "
		    "the outputs' spools have room again", t->name);
	return false;
}

/* Start a catch-up from the cursor (minus the overlap window). */
static void
tenant_poll(struct tenant *t)
{
	const struct conf_daemon *d = &t->relay->conf->daemon;
	struct catchup	*c = t->live;
	int64_t		 now = ts_now();

	if (t->state.since == TICKS_NONE)
		t->state.since = now - d->first_fetch_ms * TICKS_PER_MS;
	if (t->state.cursor == TICKS_NONE)
		c->from = t->state.since;
	else
		c->from = t->state.cursor - d->overlap_ms * TICKS_PER_MS;
	paging_start(&c->pg, c->from, catchup_top(c));
	c->retried_401 = 0;
	free(c->next_link);
	c->next_link = NULL;
	t->polls++;
	catchup_fetch(c);
}

static void
catchup_token_cb(struct catchup *c, int rc)
{
	c->awaiting_token = false;
	if (rc == -1) {
		catchup_backoff(c, -1, true);
		return;
	}
	catchup_fetch(c);
}

/* The token's answer: serve the catch-ups that wait for it now. */
static void
tenant_token_cb(struct tenant *t, int rc)
{
	if (t->live->awaiting_token)
		catchup_token_cb(t->live, rc);
	if (t->backfill != NULL && t->backfill->awaiting_token)
		catchup_token_cb(t->backfill, rc);
	if (t->incidents != NULL && t->incidents->awaiting_token)
		ireader_token_cb(t->incidents, rc);
}

/* $top of this catch-up's boundary requests. */
static unsigned
catchup_top(const struct catchup *c)
{
	unsigned	 page_size = c->t->relay->conf->daemon.page_size;

	if (c->t->conf->source == SRC_GRAPH)
		return graph_top_clamp(GRAPH_ALERTS_V2, page_size);
	return page_size;
}

/* Say once per tenant that Graph gets a smaller $top than page_size. */
static void
tenant_top_notice(struct tenant *t)
{
	unsigned	 page_size = t->relay->conf->daemon.page_size;
	unsigned	 top;

	if (t->conf->source != SRC_GRAPH || t->top_noticed)
		return;
	top = graph_top_clamp(GRAPH_ALERTS_V2, page_size);
	if (top == page_size)
		return;
	t->top_noticed = true;
	log_tenant(LOG_NOTICE, t->name, "tenant %s: page_size %u is above "
	    "the $top maximum of Graph alerts_v2; asking for %u alerts a "
	    "page", t->name, page_size, top);
}

/* Extra request headers: Graph is asked for every enum member. */
static const char *const *
tenant_headers(const struct tenant *t)
{
	static const char *const graph[] = {
		"Prefer: include-unknown-enum-members", NULL
	};

	return t->conf->source == SRC_GRAPH ? graph : NULL;
}

static void
catchup_url(struct catchup *c, struct buf *url)
{
	const struct conf_tenant *ct = c->t->conf;
	char		 ts[40];
	bool		 graph = ct->source == SRC_GRAPH;
	const char	*field = graph ? "lastUpdateDateTime" : "lastUpdateTime";

	if (c->next_link != NULL) {
		buf_adds(url, c->next_link);
		return;
	}
	ts_format(c->pg.from, ts, sizeof(ts));
	buf_addf(url, "%s%s?$filter=%s+ge+%s", ct->api_url,
	    graph ? "/v1.0/security/alerts_v2" : "/api/alerts", field, ts);
	if (c->to != TICKS_NONE) {
		ts_format(c->to, ts, sizeof(ts));
		buf_addf(url, "+and+%s+lt+%s", field, ts);
	}
	buf_addf(url, "&$top=%u", c->pg.top);
	if (c->pg.skip > 0)
		buf_addf(url, "&$skip=%u", c->pg.skip);
	buf_addf(url, "&$orderby=%s+asc", field);
	if (!graph)
		buf_adds(url, "&$expand=evidence");
}

/* Get a token for a catch-up; false when it has to wait for one. */
static bool
catchup_token(struct catchup *c, const char **tok)
{
	struct tenant	*t = c->t;

	if ((*tok = token_current(t)) != NULL)
		return true;
	c->awaiting_token = true;
	if (!c->backfill)
		t->phase = TENANT_TOKEN;
	token_refresh(t);	/* may answer at once */
	return false;
}

/* Request the next page (after the spool, rate budget, token checks). */
static void
catchup_fetch(struct catchup *c)
{
	struct tenant	*t = c->t;
	struct http_opts o;
	struct buf	 url;
	const char	*tok;
	int64_t		 now = mono_ms(), wait;

	if (c->req != NULL || c->awaiting_token)
		return;
	if (c->backfill)
		evtimer_del(c->timer);
	if (t->state_bad) {
		catchup_backoff(c, -1, false);
		return;
	}
	if (tenant_outputs_full(t, c->backfill || t->phase == TENANT_PAUSED)) {
		catchup_wait(c, TENANT_PAUSED, PAUSE_CHECK_MS);
		return;
	}
	if ((wait = rate_wait(&t->rate, now)) > 0) {
		log_tenant(LOG_DEBUG, t->name, "tenant %s: rate budget spent, "
		    "waiting %llds", t->name, (long long)(wait + 999) / 1000);
		catchup_wait(c, TENANT_FETCH, wait);
		return;
	}
	if (!catchup_token(c, &tok))
		return;
	buf_init(&url);
	catchup_url(c, &url);
	catchup_reset_page(c);
	c->pg_sent = c->pg;
	memset(&o, 0, sizeof(o));
	o.method = "GET";
	o.url = url.data;
	o.bearer = tok;
	o.headers = tenant_headers(t);
	o.user_agent = t->relay->conf->daemon.user_agent;
	o.ca_file = t->conf->ca_file;
	o.timeout_ms = t->relay->conf->daemon.request_timeout_ms;
	o.max_body = MAX_PAGE_BYTES;
	o.data_cb = catchup_data_cb;
	o.done_cb = catchup_page_cb;
	o.arg = c;
	rate_note(&t->rate, now);
	if (!c->backfill)
		t->phase = TENANT_FETCH;
	c->req = http_request(t->relay->http, &o);
	buf_clear(&url);
}

static int
catchup_data_cb(const char *p, size_t len, void *arg)
{
	struct catchup	*c = arg;

	if (pagesplit_feed(c->split, p, len) == -1) {
		if (c->page_error[0] == '\0')
			snprintf(c->page_error, sizeof(c->page_error),
			    "bad response body: %s",
			    pagesplit_error(c->split));
		return -1;
	}
	return 0;
}

/* Is this version to be forwarded, and as created (0) or updated (1)? */
static int
tenant_classify(struct catchup *c, const struct alert *a)
{
	struct tenant	*t = c->t;
	enum severity	 min = t->conf->min_severity;
	enum dedupe_result r;

	r = dedupe_check(&t->state.seen, a->id.p, a->id.len, a->last_update);
	if (r == DEDUPE_DUP)
		return -1;
	/*
	 * A backfill skips versions the live poller has covered: those not
	 * in the dedupe set any more were forwarded and then pruned.
	 */
	if (c->backfill && r == DEDUPE_NEW &&
	    tenant_state_covered(&t->state, a->last_update))
		return -1;
	if (min > SEV_INFORMATIONAL && a->severity < min)
		return -1;
	if (r == DEDUPE_NEWER)
		return t->conf->forward_updates ? 1 : -1;
	/*
	 * Not in the dedupe set.  It was forwarded before only if it was
	 * created inside our coverage but before the prune horizon.
	 */
	if (a->creation != TICKS_NONE && t->state.horizon != TICKS_NONE &&
	    a->creation < t->state.horizon && a->creation >= t->state.since)
		return t->conf->forward_updates ? 1 : -1;
	return 0;
}

/* What every event of this tenant carries besides the alert or incident. */
static void
tenant_event_meta(const struct tenant *t, int updated, struct event_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->tenant_name = t->name;
	m->tenant_label = t->conf->label;
	m->tenant_id = t->conf->tenant_id;
	m->updated = updated;
	m->forwarded_at = ts_now();
}

/* Encode one alert version for every routed output and queue it. */
static int
tenant_forward(struct catchup *c, const struct alert *a, int updated)
{
	static struct buf	 msg;
	struct tenant		*t = c->t;
	struct relay		*r = t->relay;
	struct event_meta	 m;
	size_t			 i;

	tenant_event_meta(t, updated, &m);
	for (i = 0; i < t->nsinks; i++) {
		buf_reset(&msg);
		if (event_encode(&msg, sink_conf(t->sinks[i]), a, &m,
		    r->hostname, r->pid) == -1)
			continue;	/* cannot happen at sane sizes */
		if (sink_enqueue_alert(t->sinks[i], t->name, a->id.p,
		    a->id.len, msg.data, msg.len) == -1) {
			snprintf(c->page_error, sizeof(c->page_error),
			    "output %s: cannot queue alert in spool: %s",
			    sink_conf(t->sinks[i])->name, strerror(errno));
			return -1;
		}
	}
	/* Mails are best effort: a notify spool error does not stop polling. */
	for (i = 0; !c->backfill && i < r->nnotifiers; i++) {
		if (!notifier_wants(r->notifiers[i], t->name, a))
			continue;
		if (notifier_enqueue(r->notifiers[i], a, &m) == -1)
			log_tenant(LOG_WARNING, t->name, "tenant %s: notify "
			    "%s: cannot queue mail: %s", t->name,
			    notifier_conf(r->notifiers[i])->name,
			    strerror(errno));
	}
	return 0;
}

/* A version stamped ahead of our clock: forwarded, but said. */
static void
tenant_warn_future(struct tenant *t, const struct alert *a)
{
	struct log_ctx	 c = { .tenant = t->name };
	char		 id[160], ts[40];
	size_t		 i;

	snprintf(id, sizeof(id), "%.*s", (int)(a->id.len < 128 ?
	    a->id.len : 128), a->id.p);
	for (i = 0; id[i] != '\0'; i++)	/* remote text: one line */
		if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
			id[i] = '?';
	ts_format(a->last_update, ts, sizeof(ts));
	c.alert_id = id;
	log_ctx(LOG_WARNING, &c, "tenant %s: alert %s has lastUpdateTime %s, "
	    "more than 5 minutes ahead of this host's clock; forwarded, but "
	    "the cursor does not follow it", t->name, id, ts);
}

static int
catchup_alert_cb(const char *obj, size_t len, void *arg)
{
	struct catchup	*c = arg;
	struct tenant	*t = c->t;
	struct alert	*a = &t->relay->alert;
	char		 err[200];
	int		 kind;

	if (alert_parse(a, t->conf->source, obj, len, err, sizeof(err)) ==
	    -1) {
		log_tenant(LOG_WARNING, t->name, "tenant %s: skipping "
		    "alert %zu of a page: %s", t->name,
		    pagesplit_count(c->split), err);
		/* It still counts against $top. */
		paging_seen(&c->pg, TICKS_NONE);
		return 0;
	}
	paging_seen(&c->pg, a->last_update);
	c->page_n++;
	c->seen++;
	if (a->last_update <= ts_now() + FUTURE_MAX_TICKS &&
	    (c->page_sane == TICKS_NONE || a->last_update > c->page_sane))
		c->page_sane = a->last_update;
	if ((kind = tenant_classify(c, a)) == -1)
		return 0;
	/*
	 * service_sources filters after dedupe: the version is seen, not
	 * forwarded, and the alerts that pass keep their every version.
	 */
	if (!graph_source_pass(t->conf->service_sources, a->service_source.p,
	    a->service_source.len)) {
		dedupe_put(&t->state.seen, a->id.p, a->id.len, a->last_update);
		c->dirty = true;
		return 0;
	}
	if (a->last_update > ts_now() + FUTURE_MAX_TICKS)
		tenant_warn_future(t, a);
	if (tenant_forward(c, a, kind) == -1)
		return -1;
	dedupe_put(&t->state.seen, a->id.p, a->id.len, a->last_update);
	c->dirty = true;
	c->forwarded++;
	t->forwarded++;
	t->relay->forwarded++;
	return 0;
}

/*
 * Make what this page queued durable on every output, then move the
 * cursor (live catch-ups only) and save the state.  If an output cannot
 * write, the in-memory dedupe set is thrown away (reloaded) so the
 * versions are read again.
 */
static int
catchup_commit(struct catchup *c)
{
	struct tenant	*t = c->t;
	const struct conf_daemon *d = &t->relay->conf->daemon;
	size_t		 i;
	int64_t		 max;
	struct log_ctx	 lc = { .tenant = t->name };

	if (t->state_bad)
		return -1;
	for (i = 0; i < t->nsinks; i++) {
		if (sink_sync(t->sinks[i]) == 0)
			continue;
		lc.output = sink_conf(t->sinks[i])->name;
		/* Logged once per streak; the retries are debug. */
		tenant_error(t, t->spool_failing ? LOG_DEBUG : LOG_ERR, &lc,
		    "tenant %s: output %s: cannot write spool in %s: %s; "
		    "polling this tenant pauses until it can", t->name,
		    lc.output, d->state_dir, strerror(errno));
		t->spool_failing = true;
		tenant_state_reread(t);
		return -1;
	}
	for (i = 0; i < t->relay->nnotifiers; i++)
		if (notifier_sync(t->relay->notifiers[i]) == -1)
			log_tenant(LOG_WARNING, t->name, "tenant %s: notify "
			    "%s: cannot write mail spool: %s", t->name,
			    notifier_conf(t->relay->notifiers[i])->name,
			    strerror(errno));
	if (t->spool_failing) {
		t->spool_failing = false;
		log_tenant(LOG_INFO, t->name, "tenant %s: spools writable "
		    "again; polling resumes", t->name);
	}
	/*
	 * Clock sanity: versions stamped past now + 5 min do not move the
	 * cursor (it would blind the tenant until then).
	 */
	max = c->page_sane;
	if (!c->backfill && max != TICKS_NONE &&
	    (t->state.cursor == TICKS_NONE || max > t->state.cursor)) {
		t->state.cursor = max;
		c->dirty = true;
	}
	if (t->state.cursor != TICKS_NONE) {
		size_t	 before = t->state.seen.n;

		t->state.horizon = t->state.cursor -
		    2 * d->overlap_ms * TICKS_PER_MS;
		dedupe_prune(&t->state.seen, t->state.horizon);
		c->dirty |= t->state.seen.n != before;
	}
	/* An idle poll changes nothing: no write, no fsync. */
	if (!c->dirty && !t->state_unsaved)
		return 0;
	c->dirty = false;
	t->state_unsaved = true;
	if (tenant_state_save(t->state_path, &t->state) == -1) {
		tenant_error(t, LOG_ERR, &lc, "tenant %s: cannot save state "
		    "%s: %s", t->name, t->state_path, strerror(errno));
		return -1;
	}
	t->state_unsaved = false;
	if (!c->backfill && t->relay->cluster != NULL)
		tenant_checkpoint(t);
	return 0;
}

static void
checkpoints_clear(struct tenant *t)
{
	size_t	 i;

	for (i = 0; i < t->nckpt; i++)
		free(t->ckpt[i].tail);
	t->nckpt = 0;
}

/* Remember where the spools end for the cursor just committed. */
static void
tenant_checkpoint(struct tenant *t)
{
	struct checkpoint *k;
	struct spool_pos head;
	size_t		 i;

	if (t->ckpt == NULL)
		t->ckpt = xcalloc(MAX_CHECKPOINTS, sizeof(*t->ckpt));
	/* When full, the newest one absorbs this commit: still safe. */
	if (t->nckpt == MAX_CHECKPOINTS)
		k = &t->ckpt[t->nckpt - 1];
	else {
		k = &t->ckpt[t->nckpt++];
		k->tail = xcalloc(t->nsinks ? t->nsinks : 1, sizeof(*k->tail));
	}
	k->cursor = t->state.cursor;
	for (i = 0; i < t->nsinks; i++)
		sink_positions(t->sinks[i], &head, &k->tail[i]);
}

int64_t
tenant_delivered_cursor(struct tenant *t)
{
	struct spool_pos head, tail;
	size_t		 n = 0, i;

	for (; n < t->nckpt; n++) {
		for (i = 0; i < t->nsinks; i++) {
			sink_positions(t->sinks[i], &head, &tail);
			if (spool_pos_cmp(&head, &t->ckpt[n].tail[i]) < 0)
				break;
		}
		if (i < t->nsinks)
			break;
		t->delivered = t->ckpt[n].cursor;
	}
	if (n == 0)
		return t->delivered;
	for (i = 0; i < n; i++)
		free(t->ckpt[i].tail);
	memmove(t->ckpt, t->ckpt + n, (t->nckpt - n) * sizeof(*t->ckpt));
	t->nckpt -= n;
	return t->delivered;
}

bool
tenant_incidents_get(const struct tenant *t, int64_t *icursor,
    const struct dedupe **seen)
{
	*icursor = t->state.icursor;
	*seen = &t->state.iseen;
	return t->incidents != NULL;
}

void
tenant_incidents_set(struct tenant *t, int64_t icursor, struct dedupe *seen)
{
	dedupe_clear(&t->state.iseen);
	t->state.iseen = *seen;
	dedupe_init(seen);
	t->state.icursor = icursor;
}

bool
tenant_owned(const struct tenant *t)
{
	return t->owned;
}

void
tenant_own(struct tenant *t, bool own, int64_t delivered)
{
	if (own == t->owned)
		return;
	t->owned = own;
	if (!own) {
		tenant_stop(t);
		log_tenant(LOG_INFO, t->name, "tenant %s: handed to another "
		    "member", t->name);
		return;
	}
	if (delivered != TICKS_NONE) {
		/* The shared cursor is authoritative: re-read from it. */
		t->state.cursor = delivered;
		if (t->state.since == TICKS_NONE || delivered < t->state.since)
			t->state.since = delivered;
		t->delivered = delivered;
	} else
		t->delivered = t->state.cursor;
	checkpoints_clear(t);
	log_tenant(LOG_INFO, t->name, "tenant %s: now polled by this member",
	    t->name);
	tenant_start(t);
	if (t->phase == TENANT_IDLE)	/* take over promptly */
		tenant_schedule(t, TENANT_IDLE, arc4random_uniform(1000));
}

/* An API error response: log it with its correlation id. */
static void
tenant_api_error(struct tenant *t, const struct http_result *res)
{
	struct api_error e;
	const char	*hint = "";
	struct log_ctx	 c = { .tenant = t->name };

	if (res->body == NULL || res->body->len == 0 ||
	    api_error_parse(res->body->data, res->body->len, &e) == -1)
		memset(&e, 0, sizeof(e));
	if (res->status == 403)
		hint = t->conf->source == SRC_GRAPH ? "; the application "
		    "lacks the SecurityAlert.Read.All application permission "
		    "or admin consent in this tenant" : "; the application "
		    "lacks the Alert.Read.All application permission or admin "
		    "consent in this tenant";
	else if (res->status >= 300 && res->status < 400)
		hint = "; redirects are not followed (the token must not "
		    "leave api_url): check api_url";
	else if (res->status == 429)
		hint = "; throttled by the API, honouring Retry-After";
	else if (res->status >= 500)
		hint = "; the service is failing, backing off";
	c.http_status = res->status;
	c.correlation_id = e.target[0] != '\0' ? e.target : NULL;
	tenant_error(t, res->status == 429 ? LOG_WARNING : LOG_ERR, &c,
	    "tenant %s: alerts request failed: HTTP %d%s%s%s%s%s%s%s", t->name,
	    res->status, e.code[0] ? " " : "", e.code,
	    e.message[0] ? ": " : "", e.message,
	    res->location != NULL ? " to " : "",
	    res->location != NULL ? res->location : "", hint);
}

/*
 * "scheme://host:port" of an absolute http(s) URL, lower case, with the
 * default port filled in; -1 for anything else (user info included).
 */
static int
url_origin(const char *url, char *out, size_t len)
{
	const char	*h, *end, *hend, *port;
	size_t		 i, n;
	bool		 tls;

	if (strncasecmp(url, "https://", 8) == 0)
		tls = true;
	else if (strncasecmp(url, "http://", 7) == 0)
		tls = false;
	else
		return -1;
	h = url + (tls ? 8 : 7);
	end = h + strcspn(h, "/?#");
	if (*h == '[') {
		if ((hend = memchr(h, ']', end - h)) == NULL)
			return -1;
		hend++;
	} else
		hend = h + strcspn(h, ":/?#");
	if (hend == h || hend > end)
		return -1;
	if (hend == end) {
		port = tls ? "443" : "80";
		n = strlen(port);
	} else {
		port = hend + 1;
		n = end - port;
		if (*hend != ':' || n == 0 || n > 5 ||
		    strspn(port, "0123456789") < n)
			return -1;
	}
	for (i = 0; h + i < hend; i++)
		if (!isalnum((unsigned char)h[i]) &&
		    strchr(".-_[]:", h[i]) == NULL)
			return -1;
	snprintf(out, len, "%s://%.*s:%.*s", tls ? "https" : "http",
	    (int)(hend - h), h, (int)n, port);
	for (i = 0; out[i] != '\0'; i++)
		out[i] = tolower((unsigned char)out[i]);
	return 0;
}

/* The token stays home: a link elsewhere ends the catch-up (logged). */
static bool
catchup_link_ok(struct catchup *c, const char *link)
{
	struct tenant	*t = c->t;
	struct log_ctx	 lc = { .tenant = t->name };
	char		 want[300], got[300];

	if (url_origin(link, got, sizeof(got)) == 0 &&
	    url_origin(t->conf->api_url, want, sizeof(want)) == 0 &&
	    strcmp(got, want) == 0)
		return true;
	tenant_error(t, LOG_ERR, &lc, "tenant %s: refusing an @odata.nextLink "
	    "to %s: it is not api_url (%s), and the token is sent to api_url "
	    "only", t->name, url_origin(link, got, sizeof(got)) == 0 ? got :
	    "a URL that is not http(s)://host[:port]", t->conf->api_url);
	return false;
}

/* Continue the catch-up after a good page, or finish it. */
static void
catchup_next_page(struct catchup *c)
{
	const char	*link = pagesplit_next_link(c->split);

	if (link != NULL && !catchup_link_ok(c, link)) {
		pagesplit_free(c->split);
		c->split = NULL;
		catchup_backoff(c, -1, true);
		return;
	}
	c->pages++;
	free(c->next_link);
	c->next_link = link != NULL ? xstrdup(link) : NULL;
	pagesplit_free(c->split);	/* a split holds up to an alert */
	c->split = NULL;
	switch (paging_page_end(&c->pg, c->next_link != NULL)) {
	case PAGING_DONE:
		if (c->backfill)
			backfill_end(c, true, NULL);
		else
			tenant_succeeded(c->t);
		return;
	case PAGING_LINK:
	case PAGING_BOUNDARY:
		break;
	}
	if (c->backfill && c->cb != NULL)
		c->cb(c->cb_arg, 0, 1, c->pages, c->seen, c->forwarded, NULL);
	catchup_fetch(c);
}

static void
count_status(struct tenant *t, const struct http_result *res)
{
	int	 cls = res->status / 100;

	t->http_status[res->failed && res->status == 0 ? 0 :
	    (cls >= 1 && cls <= 5 ? cls : 0)]++;
}

static void
catchup_page_cb(const struct http_result *res, void *arg)
{
	struct catchup	*c = arg;
	struct tenant	*t = c->t;
	struct log_ctx	 lc = { .tenant = t->name };
	bool		 good;

	c->req = NULL;
	count_status(t, res);
	tenant_note_sunset(t, res, t->conf->source == SRC_GRAPH ? "Graph "
	    "alerts" : "Defender for Endpoint alerts");
	good = !res->failed && res->status == 200;
	if (good && pagesplit_finish(c->split) == -1) {
		snprintf(c->page_error, sizeof(c->page_error),
		    "bad response body: %s", pagesplit_error(c->split));
		good = false;
	}
	/* A page that failed is asked again: it must not count twice. */
	if (!good)
		c->pg = c->pg_sent;
	if (res->status == 200 && catchup_commit(c) == -1) {
		catchup_backoff(c, -1, true);
		return;
	}
	if (good) {
		c->retried_401 = 0;
		catchup_next_page(c);
		return;
	}
	if (res->status == 401 && !c->retried_401) {
		c->retried_401 = 1;
		token_invalidate(t);
		catchup_fetch(c);
		return;
	}
	if (c->page_error[0] != '\0' || res->failed) {
		lc.http_status = res->status;
		tenant_error(t, LOG_WARNING, &lc, "tenant %s: alerts request "
		    "to %s failed: %s", t->name, t->conf->api_url,
		    c->page_error[0] != '\0' ? c->page_error : res->error);
	} else
		tenant_api_error(t, res);
	if (res->status == 401 || res->status == 403)
		t->auth_failed = true;
	catchup_backoff(c, res->retry_after_ms, res->status != 429);
}

/*
 * The incident reader (incidents = yes).  After each live catch-up of
 * the alerts has caught up, the tenant reads Graph security/incidents
 * with lastUpdateDateTime >= its own cursor - overlap, $top at most 50,
 * $expand=alerts, following @odata.nextLink, inside the tenant's rate
 * budget; each version not in the incidents' dedupe set is forwarded as
 * its own event (SPEC 4 "Incidents") and only then does the incidents'
 * cursor move.  Paging is lib/paging.c's, as for alerts.  Owned by the
 * tenant; owns its page request.
 */

static struct ireader *
ireader_new(struct tenant *t)
{
	struct ireader	*ir;

	ir = xcalloc(1, sizeof(*ir));
	ir->t = t;
	incident_init(&ir->inc);
	return ir;
}

/* Forget the incidents waiting for their alerts. */
static void
ireader_pend_clear(struct ireader *ir)
{
	size_t	 i;

	for (i = 0; i < ir->npend; i++)
		free(ir->pend[i].raw);
	free(ir->pend);
	ir->pend = NULL;
	ir->npend = ir->ipend = 0;
}

static void
ireader_free(struct ireader *ir)
{
	if (ir == NULL)
		return;
	if (ir->req != NULL)
		http_cancel(ir->t->relay->http, ir->req);
	ireader_pend_clear(ir);
	pagesplit_free(ir->split);
	free(ir->next_link);
	incident_clear(&ir->inc);
	free(ir);
}

/* The incidents' page size: page_size within Graph's $top of 50. */
static unsigned
ireader_top(const struct ireader *ir)
{
	return graph_top_clamp(GRAPH_INCIDENTS,
	    ir->t->relay->conf->daemon.page_size);
}

/* Start reading incidents from the incidents' cursor. */
static void
ireader_start(struct ireader *ir)
{
	struct tenant	*t = ir->t;
	const struct conf_daemon *d = &t->relay->conf->daemon;
	int64_t		 from;

	if (t->state.icursor == TICKS_NONE)
		from = t->state.since;
	else
		from = t->state.icursor - d->overlap_ms * TICKS_PER_MS;
	paging_start(&ir->pg, from, ireader_top(ir));
	free(ir->next_link);
	ir->next_link = NULL;
	ir->retried_401 = 0;
	ir->no_expand = false;	/* each poll tries $expand again */
	t->incidents_active = true;
	ireader_fetch(ir);
}

/* The incidents are read: finish the poll (tenant_succeeded). */
static void
ireader_done(struct ireader *ir)
{
	struct tenant	*t = ir->t;

	t->incidents_active = false;
	t->incidents_done = true;
	tenant_succeeded(t);
}

/* An error ended the reading: back off the tenant as for alerts. */
static void
ireader_backoff(struct ireader *ir, int64_t retry_after_ms, bool counts)
{
	ireader_pend_clear(ir);
	ir->t->incidents_active = false;
	catchup_backoff(ir->t->live, retry_after_ms, counts);
}

static void
ireader_url(struct ireader *ir, struct buf *url)
{
	char	 ts[40];

	if (ir->next_link != NULL) {
		buf_adds(url, ir->next_link);
		return;
	}
	ts_format(ir->pg.from, ts, sizeof(ts));
	buf_addf(url, "%s%s?$filter=lastUpdateDateTime+ge+%s&$top=%u",
	    ir->t->conf->api_url, graph_path(GRAPH_INCIDENTS), ts, ir->pg.top);
	if (ir->pg.skip > 0)
		buf_addf(url, "&$skip=%u", ir->pg.skip);
	buf_adds(url, "&$orderby=lastUpdateDateTime+asc");
	if (!ir->no_expand)
		buf_adds(url, "&$expand=alerts");
}

static int	ireader_data_cb(const char *, size_t, void *);
static int	ireader_incident_cb(const char *, size_t, void *);
static void	ireader_page_cb(const struct http_result *, void *);
static void	ireader_alerts_cb(const struct http_result *, void *);

/* Ask for the alerts of the next incident waiting for them. */
static void
ireader_fetch_alerts(struct ireader *ir, const char *tok)
{
	struct tenant	*t = ir->t;
	struct ipend	*pe = &ir->pend[ir->ipend];
	struct http_opts o;
	struct buf	 url;
	char		 err[200], *id;

	if (incident_parse(&ir->inc, pe->raw, pe->len, err,
	    sizeof(err)) == -1)
		fatalx("tenant %s: a kept incident does not parse: %s",
		    t->name, err);
	buf_init(&url);
	buf_addf(&url, "%s%s/", t->conf->api_url, graph_path(GRAPH_INCIDENTS));
	id = xstrndup(ir->inc.id.p, ir->inc.id.len);
	http_urlencode(&url, id);
	free(id);
	buf_adds(&url, "/alerts");
	memset(&o, 0, sizeof(o));
	o.method = "GET";
	o.url = url.data;
	o.bearer = tok;
	o.headers = tenant_headers(t);
	o.user_agent = t->relay->conf->daemon.user_agent;
	o.ca_file = t->conf->ca_file;
	o.timeout_ms = t->relay->conf->daemon.request_timeout_ms;
	o.max_body = MAX_ALERT_BYTES;
	o.done_cb = ireader_alerts_cb;
	o.arg = ir;
	ir->req = http_request(t->relay->http, &o);
	buf_clear(&url);
}

/* Request the next page of incidents (after the same checks as alerts). */
static void
ireader_fetch(struct ireader *ir)
{
	struct tenant	*t = ir->t;
	struct http_opts o;
	struct buf	 url;
	const char	*tok;
	int64_t		 now = mono_ms(), wait;

	if (ir->req != NULL || ir->awaiting_token)
		return;
	if (tenant_outputs_full(t, t->phase == TENANT_PAUSED)) {
		tenant_schedule(t, TENANT_PAUSED, PAUSE_CHECK_MS);
		return;
	}
	if ((wait = rate_wait(&t->rate, now)) > 0) {
		tenant_schedule(t, TENANT_FETCH, wait);
		return;
	}
	if ((tok = token_current(t)) == NULL) {
		ir->awaiting_token = true;
		t->phase = TENANT_TOKEN;
		token_refresh(t);	/* may answer at once */
		return;
	}
	rate_note(&t->rate, now);
	t->phase = TENANT_FETCH;
	if (ir->ipend < ir->npend) {
		ireader_fetch_alerts(ir, tok);
		return;
	}
	buf_init(&url);
	ireader_url(ir, &url);
	pagesplit_free(ir->split);
	ir->split = pagesplit_new(MAX_ALERT_BYTES, ireader_incident_cb, ir);
	ir->page_n = 0;
	ir->page_sane = TICKS_NONE;
	ir->page_error[0] = '\0';
	ir->pg_sent = ir->pg;
	memset(&o, 0, sizeof(o));
	o.method = "GET";
	o.url = url.data;
	o.bearer = tok;
	o.headers = tenant_headers(t);
	o.user_agent = t->relay->conf->daemon.user_agent;
	o.ca_file = t->conf->ca_file;
	o.timeout_ms = t->relay->conf->daemon.request_timeout_ms;
	o.max_body = MAX_PAGE_BYTES;
	o.data_cb = ireader_data_cb;
	o.done_cb = ireader_page_cb;
	o.arg = ir;
	ir->req = http_request(t->relay->http, &o);
	buf_clear(&url);
}

static void
ireader_token_cb(struct ireader *ir, int rc)
{
	ir->awaiting_token = false;
	if (rc == -1)
		ireader_backoff(ir, -1, true);
	else
		ireader_fetch(ir);
}

static int
ireader_data_cb(const char *p, size_t len, void *arg)
{
	struct ireader	*ir = arg;

	if (pagesplit_feed(ir->split, p, len) == -1) {
		if (ir->page_error[0] == '\0')
			snprintf(ir->page_error, sizeof(ir->page_error),
			    "bad response body: %s",
			    pagesplit_error(ir->split));
		return -1;
	}
	return 0;
}

/* Created (0), updated (1), or not to be forwarded (-1). */
static int
ireader_classify(struct ireader *ir, const struct incident *in)
{
	struct tenant	*t = ir->t;
	enum severity	 min = t->conf->min_severity;
	enum dedupe_result r;

	r = dedupe_check(&t->state.iseen, in->id.p, in->id.len,
	    in->last_update);
	if (r == DEDUPE_DUP)
		return -1;
	if (min > SEV_INFORMATIONAL && in->severity < min)
		return -1;
	if (in->redirect_id.p != NULL)
		return 1;		/* merged: always told, as updated */
	if (r == DEDUPE_NEWER)
		return t->conf->forward_updates ? 1 : -1;
	return 0;
}

/* Encode one incident version for every routed output and queue it. */
static int
ireader_forward(struct ireader *ir, const struct incident *in, int updated)
{
	static struct buf	 msg;
	struct tenant		*t = ir->t;
	struct relay		*r = t->relay;
	struct event_meta	 m;
	size_t			 i;

	tenant_event_meta(t, updated, &m);
	for (i = 0; i < t->nsinks; i++) {
		buf_reset(&msg);
		if (incident_encode(&msg, sink_conf(t->sinks[i]), in, &m,
		    r->hostname, r->pid) == -1)
			continue;
		if (sink_enqueue_alert(t->sinks[i], t->name, in->id.p,
		    in->id.len, msg.data, msg.len) == -1) {
			snprintf(ir->page_error, sizeof(ir->page_error),
			    "output %s: cannot queue incident in spool: %s",
			    sink_conf(t->sinks[i])->name, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int
ireader_incident_cb(const char *obj, size_t len, void *arg)
{
	struct ireader	*ir = arg;
	struct tenant	*t = ir->t;
	struct incident	*in = &ir->inc;
	char		 err[200];
	int		 kind;

	if (incident_parse(in, obj, len, err, sizeof(err)) == -1) {
		log_tenant(LOG_WARNING, t->name, "tenant %s: skipping "
		    "incident %zu of a page: %s", t->name,
		    pagesplit_count(ir->split), err);
		paging_seen(&ir->pg, TICKS_NONE);
		return 0;
	}
	paging_seen(&ir->pg, in->last_update);
	ir->page_n++;
	if (in->last_update <= ts_now() + FUTURE_MAX_TICKS &&
	    (ir->page_sane == TICKS_NONE || in->last_update > ir->page_sane))
		ir->page_sane = in->last_update;
	if ((kind = ireader_classify(ir, in)) == -1)
		return 0;
	if (ir->no_expand) {		/* forwarded once its alerts are in */
		ir->pend = xreallocarray(ir->pend, ir->npend + 1,
		    sizeof(*ir->pend));
		ir->pend[ir->npend].raw = xmalloc(len);
		memcpy(ir->pend[ir->npend].raw, obj, len);
		ir->pend[ir->npend].len = len;
		ir->pend[ir->npend++].kind = kind;
		return 0;
	}
	if (ireader_forward(ir, in, kind) == -1)
		return -1;
	dedupe_put(&t->state.iseen, in->id.p, in->id.len, in->last_update);
	ir->dirty = true;
	t->forwarded++;
	t->relay->forwarded++;
	return 0;
}

/*
 * Make the incidents this page queued durable on every output, then move
 * the incidents' cursor and save the state.  An output that cannot write
 * throws the unsaved state away (re-read), so the page is read again.
 */
static int
ireader_commit(struct ireader *ir)
{
	struct tenant	*t = ir->t;
	const struct conf_daemon *d = &t->relay->conf->daemon;
	struct log_ctx	 lc = { .tenant = t->name };
	size_t		 i, before;

	if (t->state_bad)
		return -1;
	for (i = 0; i < t->nsinks; i++) {
		if (sink_sync(t->sinks[i]) == 0)
			continue;
		lc.output = sink_conf(t->sinks[i])->name;
		tenant_error(t, LOG_ERR, &lc, "tenant %s: output %s: cannot "
		    "write spool in %s: %s", t->name, lc.output,
		    d->state_dir, strerror(errno));
		tenant_state_reread(t);
		return -1;
	}
	if (ir->page_sane != TICKS_NONE && (t->state.icursor == TICKS_NONE ||
	    ir->page_sane > t->state.icursor)) {
		t->state.icursor = ir->page_sane;
		ir->dirty = true;
	}
	if (t->state.icursor != TICKS_NONE) {
		before = t->state.iseen.n;
		dedupe_prune(&t->state.iseen, t->state.icursor -
		    2 * d->overlap_ms * TICKS_PER_MS);
		ir->dirty |= t->state.iseen.n != before;
	}
	if (!ir->dirty)
		return 0;
	ir->dirty = false;
	if (tenant_state_save(t->state_path, &t->state) == -1) {
		t->state_unsaved = true;
		tenant_error(t, LOG_ERR, &lc, "tenant %s: cannot save state "
		    "%s: %s", t->name, t->state_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* An incidents request failed: log it with its correlation id. */
static void
ireader_error(struct ireader *ir, const struct http_result *res)
{
	struct tenant	*t = ir->t;
	struct api_error e;
	struct log_ctx	 c = { .tenant = t->name };

	c.http_status = res->status;
	if (ir->page_error[0] != '\0' || res->failed) {
		tenant_error(t, LOG_WARNING, &c, "tenant %s: incidents request "
		    "to %s failed: %s", t->name, t->conf->api_url,
		    ir->page_error[0] != '\0' ? ir->page_error : res->error);
		return;
	}
	if (res->body == NULL || res->body->len == 0 ||
	    api_error_parse(res->body->data, res->body->len, &e) == -1)
		memset(&e, 0, sizeof(e));
	c.correlation_id = e.target[0] != '\0' ? e.target : NULL;
	tenant_error(t, res->status == 429 ? LOG_WARNING : LOG_ERR, &c,
	    "tenant %s: incidents request failed: HTTP %d%s%s%s%s%s", t->name,
	    res->status, e.code[0] ? " " : "", e.code,
	    e.message[0] ? ": " : "", e.message, res->status == 403 ?
	    "; the application lacks the SecurityIncident.Read.All "
	    "application permission or admin consent in this tenant" : "");
}

/* A nextLink elsewhere than api_url ends the reading (logged). */
static bool
ireader_link_ok(struct ireader *ir, const char *link)
{
	struct tenant	*t = ir->t;
	struct log_ctx	 lc = { .tenant = t->name };
	char		 want[300], got[300];

	if (url_origin(link, got, sizeof(got)) == 0 &&
	    url_origin(t->conf->api_url, want, sizeof(want)) == 0 &&
	    strcmp(got, want) == 0)
		return true;
	tenant_error(t, LOG_ERR, &lc, "tenant %s: refusing an incidents "
	    "@odata.nextLink off api_url (%s): the token is sent to api_url "
	    "only", t->name, t->conf->api_url);
	return false;
}

static void
ireader_next_page(struct ireader *ir)
{
	const char	*link = pagesplit_next_link(ir->split);

	if (link != NULL && !ireader_link_ok(ir, link)) {
		ireader_backoff(ir, -1, true);
		return;
	}
	free(ir->next_link);
	ir->next_link = link != NULL ? xstrdup(link) : NULL;
	pagesplit_free(ir->split);
	ir->split = NULL;
	if (paging_page_end(&ir->pg, ir->next_link != NULL) == PAGING_DONE)
		ireader_done(ir);
	else
		ireader_fetch(ir);
}

static void
ireader_page_cb(const struct http_result *res, void *arg)
{
	struct ireader	*ir = arg;
	struct tenant	*t = ir->t;
	bool		 good;

	ir->req = NULL;
	count_status(t, res);
	tenant_note_sunset(t, res, "Graph incidents");
	good = !res->failed && res->status == 200;
	if (good && pagesplit_finish(ir->split) == -1) {
		snprintf(ir->page_error, sizeof(ir->page_error),
		    "bad response body: %s", pagesplit_error(ir->split));
		good = false;
	}
	if (!good) {
		ir->pg = ir->pg_sent;
		ireader_pend_clear(ir);
	}
	if (good && ir->npend > 0) {	/* their alerts first */
		ir->retried_401 = 0;
		ireader_fetch(ir);
		return;
	}
	if (res->status == 200 && ireader_commit(ir) == -1) {
		ireader_backoff(ir, -1, true);
		return;
	}
	if (good) {
		ir->retried_401 = 0;
		ireader_next_page(ir);
		return;
	}
	if (res->status == 500 && !ir->no_expand) {
		log_tenant(LOG_NOTICE, t->name, "tenant %s: incidents with "
		    "$expand=alerts answered HTTP 500; reading them without "
		    "it and each incident's alerts on their own", t->name);
		ir->no_expand = true;
		free(ir->next_link);	/* that link carries $expand */
		ir->next_link = NULL;
		ireader_fetch(ir);
		return;
	}
	if (res->status == 401 && !ir->retried_401) {
		ir->retried_401 = 1;
		token_invalidate(t);
		ireader_fetch(ir);
		return;
	}
	ireader_error(ir, res);
	ireader_backoff(ir, res->retry_after_ms, res->status != 429);
}

/* One alert of an incident's alerts list: count it with its "id". */
static int
ireader_alert_id_cb(const char *obj, size_t len, void *arg)
{
	struct ireader	*ir = arg;
	struct jscan	 js;
	struct jstr	 key, id;
	unsigned	 n = 0;
	int		 r;

	memset(&id, 0, sizeof(id));
	jscan_init(&js, obj, len);
	if (jscan_open(&js, '{') == 0) {
		while ((r = jscan_member(&js, &n, &key)) == 1) {
			if (key.len == 2 && memcmp(key.p, "id", 2) == 0 &&
			    id.p == NULL && jscan_string(&js, &id) == 0)
				continue;
			if (jscan_skip(&js) == -1)
				break;
		}
	}
	incident_add_alert(&ir->inc, id.p != NULL && !id.esc ? id.p : "",
	    id.p != NULL && !id.esc ? id.len : 0);
	return 0;
}

/* Read an alerts list into the kept incident; -1 with page_error. */
static int
ireader_alerts_read(struct ireader *ir, const struct http_result *res)
{
	struct ipend	 *pe = &ir->pend[ir->ipend];
	struct pagesplit *ps;
	char		  err[200];
	int		  rc = 0;

	if (incident_parse(&ir->inc, pe->raw, pe->len, err,
	    sizeof(err)) == -1)
		fatalx("tenant %s: a kept incident does not parse: %s",
		    ir->t->name, err);
	ps = pagesplit_new(MAX_ALERT_BYTES, ireader_alert_id_cb, ir);
	if (res->body == NULL || pagesplit_feed(ps, res->body->data ?
	    res->body->data : "", res->body->len) == -1 ||
	    pagesplit_finish(ps) == -1) {
		snprintf(ir->page_error, sizeof(ir->page_error), "bad "
		    "incident alerts body: %s", pagesplit_error(ps));
		rc = -1;
	} else
		ir->inc.alerts_known = true;	/* an empty list: 0 alerts */
	pagesplit_free(ps);
	return rc;
}

/* The alerts of a kept incident came: forward it, then the next. */
static void
ireader_alerts_cb(const struct http_result *res, void *arg)
{
	struct ireader	*ir = arg;
	struct tenant	*t = ir->t;

	ir->req = NULL;
	count_status(t, res);
	ir->page_error[0] = '\0';
	if (res->status == 401 && !res->failed && !ir->retried_401) {
		ir->retried_401 = 1;
		token_invalidate(t);
		ireader_fetch(ir);
		return;
	}
	if (res->failed || res->status != 200 ||
	    ireader_alerts_read(ir, res) == -1 ||
	    ireader_forward(ir, &ir->inc, ir->pend[ir->ipend].kind) == -1) {
		/* The page is read again; what was forwarded is deduped. */
		ireader_error(ir, res);
		ir->pg = ir->pg_sent;
		ir->page_sane = TICKS_NONE;
		ireader_backoff(ir, res->retry_after_ms, res->status != 429);
		return;
	}
	ir->retried_401 = 0;
	ir->ipend++;
	dedupe_put(&t->state.iseen, ir->inc.id.p, ir->inc.id.len,
	    ir->inc.last_update);
	ir->dirty = true;
	t->forwarded++;
	t->relay->forwarded++;
	if (ir->ipend < ir->npend) {
		ireader_fetch(ir);
		return;
	}
	ireader_pend_clear(ir);
	if (ireader_commit(ir) == -1) {
		ireader_backoff(ir, -1, true);
		return;
	}
	ireader_next_page(ir);
}

/* Cancel the reader's request; true if it had read part of a page. */
static bool
ireader_abandon(struct ireader *ir)
{
	bool	 partial;

	if (ir == NULL)
		return false;
	partial = (ir->req != NULL && ir->page_n > 0) || ir->ipend > 0;
	/* Kept incidents not yet forwarded: the cursor must not pass them. */
	if (ir->ipend < ir->npend)
		ir->page_sane = TICKS_NONE;
	if (ir->req != NULL) {
		http_cancel(ir->t->relay->http, ir->req);
		ir->req = NULL;
	}
	ireader_pend_clear(ir);
	ir->awaiting_token = false;
	ir->t->incidents_active = false;
	ir->t->incidents_done = false;
	return partial;
}

/*
 * incidents = yes/no on a reload: make or drop the reader.  A reader
 * dropped while reading ends that poll: the tenant polls again now.
 * True if a page had been partly read (the caller forgets it).
 */
static bool
tenant_incidents_reconcile(struct tenant *t)
{
	bool	 partial, active;

	if (t->conf->incidents && t->incidents == NULL)
		t->incidents = ireader_new(t);
	if (t->conf->incidents || t->incidents == NULL)
		return false;
	active = t->incidents_active;
	partial = ireader_abandon(t->incidents);
	ireader_free(t->incidents);
	t->incidents = NULL;
	if (active && t->phase != TENANT_FAILED)
		tenant_schedule(t, TENANT_IDLE, 0);
	return partial;
}

/* Route to the outputs the configuration names; true if they changed. */
static bool
tenant_route_sinks(struct tenant *t)
{
	struct relay	*r = t->relay;
	struct sink	**old = t->sinks;
	size_t		 i, nold = t->nsinks;
	bool		 changed;

	t->sinks = xcalloc(r->nsinks ? r->nsinks : 1, sizeof(*t->sinks));
	t->nsinks = 0;
	for (i = 0; i < r->nsinks; i++)
		if (conf_tenant_routes(t->conf, sink_conf(r->sinks[i])))
			t->sinks[t->nsinks++] = r->sinks[i];
	/* Compared as addresses only: an old sink may be freed already. */
	changed = nold != t->nsinks || (nold > 0 &&
	    memcmp(old, t->sinks, nold * sizeof(*old)) != 0);
	free(old);
	return changed;
}

struct tenant *
tenant_new(struct relay *r, struct conf_tenant *ct, char *err, size_t elen)
{
	struct tenant	*t;
	char		 serr[512];

	t = xcalloc(1, sizeof(*t));
	t->relay = r;
	t->conf = ct;
	t->name = xstrdup(ct->name);
	xasprintf(&t->state_path, "%s/tenants/%s.state",
	    r->conf->daemon.state_dir, ct->name);
	tenant_state_init(&t->state);
	tenant_route_sinks(t);
	rate_init(&t->rate, ct->source == SRC_GRAPH ? 150 : 100);
	t->timer = evtimer_new(r->base, tenant_timer_cb, t);
	t->live = catchup_new(t, false);
	tenant_incidents_reconcile(t);
	t->token.done_cb = tenant_token_cb;
	token_fingerprint(ct, t->token.cred_fp);
	t->phase = TENANT_IDLE;
	/* A bad state file fails this tenant alone (tenant_start keeps it). */
	if (tenant_state_load(t->state_path, &t->state, serr,
	    sizeof(serr)) == -1)
		tenant_state_failed(t, serr);
	t->delivered = t->state.cursor;
	return t;
}

void
tenant_start(struct tenant *t)
{
	int64_t	 first;

	if (!t->conf->enabled || t->state_bad) {
		t->phase = TENANT_FAILED;
		if (!t->state_bad)
			snprintf(t->last_error, sizeof(t->last_error),
			    "disabled");
		if (t->relay->once)
			relay_tenant_done(t->relay, t, !t->state_bad);
		return;
	}
	token_check_expiry(t);
	tenant_top_notice(t);
	/* Spread the first polls so many tenants do not start at once. */
	first = poll_interval(t) < 30000 ? poll_interval(t) : 30000;
	tenant_schedule(t, TENANT_IDLE, t->relay->once ? 0 :
	    (int64_t)arc4random_uniform((uint32_t)first));
}

/* Cancel a catch-up's request; true if it had read part of a page. */
static bool
catchup_abandon(struct catchup *c)
{
	bool	 partial = c->req != NULL && c->page_n > 0;

	if (c->req != NULL) {
		http_cancel(c->t->relay->http, c->req);
		c->req = NULL;
	}
	c->awaiting_token = false;
	if (c->timer != NULL)
		evtimer_del(c->timer);
	return partial;
}

/*
 * End a running backfill, telling its client why.  A page it had half
 * read is committed (keep) or reported (the caller forgets it).
 */
static bool
backfill_abort(struct tenant *t, const char *why, bool keep)
{
	struct catchup	*c = t->backfill;
	bool		 partial;

	if (c == NULL)
		return false;
	partial = catchup_abandon(c);
	if (partial && keep) {
		catchup_commit(c);
		partial = false;
	}
	backfill_end(c, false, why);
	return partial;
}

/*
 * The tenant's configuration changed under its in-flight work: cancel
 * it, forget what a cut page had read (its outputs may be gone), and end
 * a backfill.  The caller decides whether to poll again.
 */
static void
tenant_halt(struct tenant *t, const char *why)
{
	bool	 partial;

	evtimer_del(t->timer);
	partial = backfill_abort(t, why, false);
	partial |= catchup_abandon(t->live);
	partial |= ireader_abandon(t->incidents);
	if (t->phase != TENANT_FAILED)
		t->phase = TENANT_IDLE;
	if (partial)
		tenant_state_reread(t);
}

/* Do two configurations read the same alerts the same way? */
static bool
same_source(const struct conf_tenant *a, const struct conf_tenant *b)
{
	return a->source == b->source && strcmp(a->api_url, b->api_url) == 0;
}

void
tenant_reconcile(struct tenant *t, struct conf_tenant *ct)
{
	bool		 was_enabled = t->conf->enabled, creds, moved;
	unsigned char	 fp[TOKEN_FP_LEN];

	token_fingerprint(ct, fp);
	creds = memcmp(fp, t->token.cred_fp, sizeof(fp)) != 0;
	moved = !same_source(t->conf, ct);
	t->conf = ct;
	checkpoints_clear(t);
	moved |= tenant_route_sinks(t);
	/* The budget is the API's count of our calls: a reload keeps it. */
	rate_set_limit(&t->rate, ct->source == SRC_GRAPH ? 150 : 100);
	tenant_top_notice(t);
	if (tenant_incidents_reconcile(t))
		tenant_state_reread(t);	/* a cut page is read again */
	if (creds) {
		/* Neither the token nor a request for it survives. */
		memcpy(t->token.cred_fp, fp, sizeof(fp));
		token_reset(t);
		t->auth_failed = false;
	}
	if (!ct->enabled && was_enabled) {
		tenant_halt(t, "the tenant was disabled by a reload");
		t->phase = TENANT_FAILED;
		if (!t->state_bad)
			snprintf(t->last_error, sizeof(t->last_error),
			    "disabled");
	} else if ((creds || moved) && t->phase != TENANT_FAILED) {
		tenant_halt(t, creds ? "the tenant's credentials were changed "
		    "by a reload" : "the tenant's api_url, source or outputs "
		    "were changed by a reload");
		if (!t->state_bad && (t->relay->cluster == NULL || t->owned))
			tenant_schedule(t, TENANT_IDLE, 0);
	} else if (ct->enabled && t->phase == TENANT_FAILED &&
	    !t->state_bad && (t->relay->cluster == NULL || t->owned)) {
		t->last_error[0] = '\0';
		tenant_start(t);
	}
}

/* cursor set on a tenant whose state file was bad: start afresh. */
static int
tenant_state_renew(struct tenant *t, int64_t ticks, char *err, size_t elen)
{
	struct tenant_state fresh;

	tenant_state_init(&fresh);
	fresh.cursor = ticks;
	fresh.since = ticks;
	if (tenant_state_save(t->state_path, &fresh) == -1) {
		snprintf(err, elen, "cannot save %s: %s", t->state_path,
		    strerror(errno));
		tenant_state_clear(&fresh);
		return -1;
	}
	tenant_state_clear(&t->state);
	t->state = fresh;
	t->state_bad = false;
	checkpoints_clear(t);
	t->delivered = ticks;
	t->last_error[0] = '\0';
	log_tenant(LOG_INFO, t->name, "tenant %s: new state file %s, cursor "
	    "set by the operator", t->name, t->state_path);
	if (t->conf->enabled && (t->relay->cluster == NULL || t->owned))
		tenant_start(t);
	return 0;
}

int
tenant_cursor_set(struct tenant *t, int64_t ticks, char *err, size_t elen)
{
	if (t->state_bad)
		return tenant_state_renew(t, ticks, err, elen);
	if (t->live->req != NULL || t->live->awaiting_token) {
		snprintf(err, elen, "tenant %s is reading a page; try again "
		    "in a moment", t->name);
		return -1;
	}
	t->state.cursor = ticks;
	if (t->state.since == TICKS_NONE || ticks < t->state.since)
		t->state.since = ticks;
	if (tenant_state_save(t->state_path, &t->state) == -1) {
		snprintf(err, elen, "cannot save %s: %s", t->state_path,
		    strerror(errno));
		return -1;
	}
	log_tenant(LOG_INFO, t->name, "tenant %s: cursor set by the "
	    "operator", t->name);
	return 0;
}

int
tenant_backfill(struct tenant *t, int64_t from, int64_t to, backfill_cb cb,
    void *arg, char *err, size_t elen)
{
	struct catchup	*c;

	if (t->backfill != NULL) {
		snprintf(err, elen, "a backfill of tenant %s is already "
		    "running", t->name);
		return -1;
	}
	if (from >= to) {
		snprintf(err, elen, "the range is empty: FROM must be before "
		    "TO");
		return -1;
	}
	if (!t->conf->enabled || t->state_bad) {
		snprintf(err, elen, "tenant %s is not polled (%s)", t->name,
		    t->last_error[0] ? t->last_error : "disabled");
		return -1;
	}
	c = catchup_new(t, true);
	c->from = from;
	c->to = to;
	paging_start(&c->pg, from, catchup_top(c));
	c->cb = cb;
	c->cb_arg = arg;
	c->timer = evtimer_new(t->relay->base, backfill_timer_cb, c);
	t->backfill = c;
	log_tenant(LOG_INFO, t->name, "tenant %s: backfill started",
	    t->name);
	catchup_fetch(c);
	return 0;
}

void
tenant_backfill_cancel(struct tenant *t)
{
	struct catchup	*c = t->backfill;

	if (c == NULL)
		return;
	log_tenant(LOG_INFO, t->name, "tenant %s: backfill cancelled",
	    t->name);
	/* What a cut page read is an ordered prefix: keep it. */
	if (catchup_abandon(c))
		catchup_commit(c);
	t->backfill = NULL;
	catchup_free(c);
}

void
tenant_stop(struct tenant *t)
{
	struct catchup	*c = t->live;
	bool		 partial;

	evtimer_del(t->timer);
	backfill_abort(t, t->relay->stopping ? "the daemon is stopping" :
	    "polling of the tenant stopped (removed by a reload or handed to "
	    "another member)", true);
	/* A token request may finish later: keep the token, do not poll. */
	partial = catchup_abandon(c);
	/* The alerts read so far are an ordered prefix: keep them. */
	if (partial)
		catchup_commit(c);
	if (ireader_abandon(t->incidents))
		ireader_commit(t->incidents);	/* likewise */
	if (t->phase != TENANT_FAILED)
		t->phase = TENANT_IDLE;
}

void
tenant_free(struct tenant *t)
{
	if (t == NULL)
		return;
	if (t->backfill != NULL && t->backfill->cb != NULL)
		t->backfill->cb(t->backfill->cb_arg, 1, 0, t->backfill->pages,
		    t->backfill->seen, t->backfill->forwarded,
		    "tenant removed from the configuration");
	catchup_free(t->live);
	catchup_free(t->backfill);
	ireader_free(t->incidents);
	token_reset(t);
	if (t->timer != NULL)
		event_free(t->timer);
	tenant_state_clear(&t->state);
	checkpoints_clear(t);
	free(t->ckpt);
	free(t->sinks);
	free(t->state_path);
	free(t->name);
	free(t);
}
