/*
 * tenant: one customer tenant's poller.  A catch-up reads every alert
 * version with lastUpdateTime >= cursor - overlap, page by page, drops the
 * versions already forwarded, queues the rest durably on every routed
 * output, and only then moves the cursor.  A backfill is the same reading
 * over a fixed range that never moves the cursor.  Errors back off this
 * tenant alone; the API's rate budget and Retry-After are honoured.
 *
 * With incidents = yes the tenant also reads Graph incidents after each
 * live catch-up (the ireader, ireader.c), with their own cursor and dedupe
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

#include "internal.h"
#include "paging.h"
#include "backoff.h"
#include "graph.h"
#include "incident.h"
#include "jscan.h"
#include "oauth.h"

#define ONCE_MAX_RETRIES	3
#define BACKFILL_MAX_RETRIES	5

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
	/* The page's commit in flight (commit.c), and what follows it. */
	struct commit	*commit;
	bool		 saving;	/* it saves the state */
	bool		 page_good;	/* the page was whole: read on */
	void		(*then)(struct catchup *, bool);
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

static void	tenant_poll(struct tenant *);
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

/* Wait before the next step of a catch-up (live: with its phase). */
static void
catchup_wait(struct catchup *c, enum tenant_phase phase, int64_t ms)
{
	if (c->backfill)
		timer_in(c->timer, ms);
	else
		tenant_schedule(c->t, phase, ms);
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
	commit_detach(c->commit);
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
	t->ops->done(t->relay, t, ok);
}

/* A backfill ended: report, then free it from the loop. */
static void
backfill_end(struct catchup *c, bool ok, const char *error)
{
	struct tenant	*t = c->t;

	/* Remember the range so a second backfill skips it. */
	if (ok) {
		tenant_state_cover(&t->state, c->from, c->to);
		commit_start(t, true, NULL, NULL);
	}
	if (c->cb != NULL)
		c->cb(c->cb_arg, 1, ok, c->pages, c->seen, c->forwarded,
		    error);
	log_tenant(ok ? LOG_INFO : LOG_WARNING, t->name, "backfill %s: "
	    "%llu pages, %llu alerts read, %llu forwarded%s%s",
	    ok ? "done" : "failed", (unsigned long long)c->pages,
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
		timer_in(c->timer, backoff_delay(c->failures ?
		    c->failures : 1, retry_after_ms, arc4random()));
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

/* The incident reader's ends, given to it at creation. */
static void
tenant_incidents_backoff(struct tenant *t, int64_t retry_after_ms,
    bool counts)
{
	catchup_backoff(t->live, retry_after_ms, counts);
}

static const struct ireader_ops tenant_ireader_ops = {
	.done = tenant_succeeded,
	.backoff = tenant_incidents_backoff,
};

static void
tenant_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tenant	*t = arg;

	if (t->cursor_work != NULL) {
		t->cursor_missed = true;	/* the save's end polls */
		return;
	}
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

/*
 * The token's answer (enum token_result): note whether the credentials
 * were refused, then serve the catch-ups that wait for it now.
 */
static void
tenant_token_cb(struct tenant *t, int rc)
{
	t->auth_failed = rc == TOKEN_REJECTED;
	if (rc != TOKEN_OK)
		rc = -1;
	if (t->live->awaiting_token)
		catchup_token_cb(t->live, rc);
	if (t->backfill != NULL && t->backfill->awaiting_token)
		catchup_token_cb(t->backfill, rc);
	if (t->incidents != NULL)
		ireader_token_cb(t->incidents, rc);	/* if it waits */
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
	log_tenant(LOG_NOTICE, t->name, "page_size %u is above "
	    "the $top maximum of Graph alerts_v2; asking for %u alerts a "
	    "page", page_size, top);
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
	graph_alerts_url(url, ct->api_url, graph);
	buf_addf(url, "?$filter=%s+ge+%s", field, ts);
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
		log_tenant(LOG_DEBUG, t->name, "rate budget spent, "
		    "waiting %llds", (long long)(wait + 999) / 1000);
		catchup_wait(c, TENANT_FETCH, wait);
		return;
	}
	if (!catchup_token(c, &tok))
		return;
	buf_init(&url);
	catchup_url(c, &url);
	catchup_reset_page(c);
	c->pg_sent = c->pg;
	rate_note(&t->rate, now);
	if (!c->backfill)
		t->phase = TENANT_FETCH;
	c->req = tenant_api_get(t, url.data, tok, MAX_PAGE_BYTES,
	    catchup_data_cb, catchup_page_cb, c);
	buf_clear(&url);
}

static int
catchup_data_cb(const char *p, size_t len, void *arg)
{
	struct catchup	*c = arg;

	return reader_feed(c->split, p, len, c->page_error,
	    sizeof(c->page_error));
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

static int
tenant_encode(struct buf *out, const struct conf_output *oc, const void *ev,
    const struct event_meta *m, const char *hostname, int pid)
{
	return event_encode(out, oc, ev, m, hostname, pid);
}

/* Encode one alert version for every routed output and queue it. */
static int
tenant_forward(struct catchup *c, const struct alert *a, int updated)
{
	struct tenant		*t = c->t;
	struct relay		*r = t->relay;
	struct event_meta	 m;
	size_t			 i;

	tenant_event_meta(t, updated, &m);
	if (reader_enqueue(t, "alert", a->id.p, a->id.len, tenant_encode, a,
	    &m, c->page_error, sizeof(c->page_error)) == -1)
		return -1;
	/* Mails are best effort: a notify spool error does not stop polling. */
	for (i = 0; !c->backfill && i < r->nnotifiers; i++) {
		if (!notifier_wants(r->notifiers[i], t->name, a))
			continue;
		if (notifier_enqueue(r->notifiers[i], a, &m) == -1)
			log_tenant(LOG_WARNING, t->name, "notify "
			    "%s: cannot queue mail: %s",
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
		log_tenant(LOG_WARNING, t->name, "skipping "
		    "alert %zu of a page: %s",
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

/* The commit of a page ended (commit.c): on to then(c, ok). */
static void
catchup_committed_cb(void *arg, int error, const char *output)
{
	struct catchup	*c = arg;
	struct tenant	*t = c->t;
	const struct conf_daemon *d = &t->relay->conf->daemon;
	struct log_ctx	 lc = { .tenant = t->name, .output = output };

	c->commit = NULL;
	if (error != 0 && output != NULL) {
		/* Logged once per streak; the retries are debug. */
		tenant_error(t, t->spool_failing || error == ECANCELED ?
		    LOG_DEBUG : LOG_ERR, &lc, "tenant %s: output %s: cannot "
		    "write spool in %s: %s; polling this tenant pauses until "
		    "it can", t->name, output, d->state_dir, strerror(error));
		t->spool_failing = error != ECANCELED;
		tenant_state_reread(t);
		c->then(c, false);
		return;
	}
	if (error != 0) {
		tenant_error(t, LOG_ERR, &lc, "tenant %s: cannot save state "
		    "%s: %s", t->name, t->state_path, strerror(error));
		c->then(c, false);
		return;
	}
	if (t->spool_failing) {
		t->spool_failing = false;
		log_tenant(LOG_INFO, t->name, "spools writable "
		    "again; polling resumes");
	}
	if (c->saving && !c->backfill && t->relay->cluster != NULL)
		tenant_checkpoint(t);
	c->then(c, true);
}

/*
 * Commit what this page queued: move the cursor (live catch-ups only)
 * and the dedupe horizon in memory, then let commit.c make the spools
 * durable and save the state, off the loop; then(c, ok) follows.  The
 * state file only ever holds a cursor whose records are durable; if an
 * output cannot write, the saved state is re-read, so the page's versions
 * are read again.
 */
static void
catchup_commit(struct catchup *c, void (*then)(struct catchup *, bool))
{
	struct tenant	*t = c->t;
	const struct conf_daemon *d = &t->relay->conf->daemon;
	int64_t		 max;

	c->then = then;
	if (t->state_bad) {
		then(c, false);
		return;
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
	c->saving = c->dirty || t->state_unsaved;
	c->dirty = false;
	c->commit = commit_start(t, c->saving, catchup_committed_cb, c);
}

static void
catchup_commit_end(struct catchup *c, bool ok)
{
}

/* Commit a cut page (an ordered prefix) and let it finish on its own. */
static void
catchup_commit_cut(struct catchup *c)
{
	catchup_commit(c, catchup_commit_end);
	commit_detach(c->commit);
	c->commit = NULL;
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
		log_tenant(LOG_INFO, t->name, "handed to another "
		    "member");
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
	log_tenant(LOG_INFO, t->name, "now polled by this member");
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

/* The token stays home: a link elsewhere ends the catch-up (logged). */
static bool
catchup_link_ok(struct catchup *c, const char *link)
{
	struct tenant	*t = c->t;
	struct log_ctx	 lc = { .tenant = t->name };
	char		 got[300];

	if (reader_link_home(t, link, got, sizeof(got)))
		return true;
	tenant_error(t, LOG_ERR, &lc, "tenant %s: refusing an @odata.nextLink "
	    "to %s: it is not api_url (%s), and the token is sent to api_url "
	    "only", t->name, got[0] != '\0' ? got :
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

/* A 200 page is committed: the next one, or the failure (bad body). */
static void
catchup_page_committed(struct catchup *c, bool ok)
{
	struct tenant	*t = c->t;
	struct log_ctx	 lc = { .tenant = t->name, .http_status = 200 };

	if (ok && c->page_good) {
		c->retried_401 = 0;
		catchup_next_page(c);
		return;
	}
	if (ok)
		tenant_error(t, LOG_WARNING, &lc, "tenant %s: alerts request "
		    "to %s failed: %s", t->name, t->conf->api_url,
		    c->page_error);
	catchup_backoff(c, -1, true);
}

static void
catchup_page_cb(const struct http_result *res, void *arg)
{
	struct catchup	*c = arg;
	struct tenant	*t = c->t;
	struct log_ctx	 lc = { .tenant = t->name };
	bool		 good;

	c->req = NULL;
	tenant_count_status(t, res);
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
	if (res->status == 200) {
		if (!good && c->page_error[0] == '\0')
			snprintf(c->page_error, sizeof(c->page_error), "%s",
			    res->error != NULL ? res->error : "cut short");
		c->page_good = good;
		catchup_commit(c, catchup_page_committed);
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
tenant_new(struct relay *r, const struct tenant_ops *ops,
    struct conf_tenant *ct, char *err, size_t elen)
{
	struct tenant	*t;
	char		 serr[512];

	t = xcalloc(1, sizeof(*t));
	t->relay = r;
	t->ops = ops;
	t->conf = ct;
	t->name = xstrdup(ct->name);
	xasprintf(&t->state_path, "%s/tenants/%s.state",
	    r->conf->daemon.state_dir, ct->name);
	tenant_state_init(&t->state);
	tenant_route_sinks(t);
	rate_init(&t->rate, ct->source == SRC_GRAPH ? 150 : 100);
	t->timer = evtimer_new(r->base, tenant_timer_cb, t);
	t->live = catchup_new(t, false);
	ireader_reconcile(t, &tenant_ireader_ops);
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
			t->ops->done(t->relay, t, !t->state_bad);
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
	/* A page being committed: the commit finishes without us. */
	commit_detach(c->commit);
	c->commit = NULL;
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
		catchup_commit_cut(c);
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
	if (ireader_reconcile(t, &tenant_ireader_ops))
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

/*
 * The operator's cursor set, saved (error 0) or not.  A tenant whose
 * state file was bad gets the fresh state only now; otherwise the cursor
 * moved in memory when the save began, and a failed save goes back to
 * the file's.
 */
static void
tenant_cursor_saved_cb(void *arg, int error)
{
	struct tenant	*t = arg;
	struct timeval	 now = { 0, 0 };
	cursor_set_cb	 cb = t->cursor_cb;
	void		*cbarg = t->cursor_arg;

	t->cursor_work = NULL;
	t->cursor_cb = NULL;
	if (error != 0) {
		log_tenant(LOG_ERR, t->name, "cursor set by the operator: "
		    "cannot save %s: %s; the cursor is unchanged",
		    t->state_path, strerror(error));
		if (!t->cursor_renew)
			tenant_state_reread(t);
	} else if (t->cursor_renew) {
		tenant_state_clear(&t->state);
		tenant_state_init(&t->state);
		t->state.cursor = t->state.since = t->cursor_ticks;
		t->state_bad = false;
		checkpoints_clear(t);
		t->delivered = t->cursor_ticks;
		t->last_error[0] = '\0';
		log_tenant(LOG_INFO, t->name, "new state file %s, cursor "
		    "set by the operator", t->state_path);
	} else
		log_tenant(LOG_INFO, t->name, "cursor set by the operator");
	if (error == 0 && t->cursor_renew && t->conf->enabled &&
	    (t->relay->cluster == NULL || t->owned))
		tenant_start(t);
	else if (t->cursor_missed)
		evtimer_add(t->timer, &now);
	t->cursor_missed = false;
	if (cb != NULL)
		cb(cbarg, error);
}

int
tenant_cursor_set(struct tenant *t, int64_t ticks, cursor_set_cb cb,
    void *arg, char *err, size_t elen)
{
	struct tenant_state fresh;
	struct buf	 b;

	if (t->cursor_work != NULL) {
		snprintf(err, elen, "tenant %s is saving a cursor already; "
		    "try again in a moment", t->name);
		return -1;
	}
	if (t->live->req != NULL || t->live->awaiting_token ||
	    t->ncommits > 0) {
		snprintf(err, elen, "tenant %s is %s; try again in a moment",
		    t->name, t->state_bad ? "saving its state" :
		    "reading a page");
		return -1;
	}
	buf_init(&b);
	t->cursor_renew = t->state_bad;
	t->cursor_ticks = ticks;
	if (t->state_bad) {
		/* The bad file is replaced; the tenant stays stopped till then. */
		tenant_state_init(&fresh);
		fresh.cursor = fresh.since = ticks;
		tenant_state_format(&fresh, &b);
		tenant_state_clear(&fresh);
	} else {
		t->state.cursor = ticks;
		if (t->state.since == TICKS_NONE || ticks < t->state.since)
			t->state.since = ticks;
		tenant_state_format(&t->state, &b);
	}
	t->cursor_cb = cb;
	t->cursor_arg = arg;
	t->cursor_missed = false;
	t->cursor_work = disk_save(t->relay->disk, t->state_path, &b,
	    tenant_cursor_saved_cb, t);
	return 0;
}

void
tenant_cursor_detach(struct tenant *t)
{
	t->cursor_cb = NULL;
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
	log_tenant(LOG_INFO, t->name, "backfill started");
	catchup_fetch(c);
	return 0;
}

void
tenant_backfill_cancel(struct tenant *t)
{
	struct catchup	*c = t->backfill;

	if (c == NULL)
		return;
	log_tenant(LOG_INFO, t->name, "backfill cancelled");
	/* What a cut page read is an ordered prefix: keep it. */
	if (catchup_abandon(c))
		catchup_commit_cut(c);
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
		catchup_commit_cut(c);
	if (ireader_abandon(t->incidents))
		ireader_commit_cut(t->incidents);	/* likewise */
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
	if (t->cursor_work != NULL) {
		/* The file is still written; nobody hears of it. */
		disk_cancel(t->cursor_work);
		if (t->cursor_cb != NULL)
			t->cursor_cb(t->cursor_arg, ECANCELED);
	}
	catchup_free(t->live);
	catchup_free(t->backfill);
	ireader_free(t->incidents);
	commit_tenant_gone(t);
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

void
tenant_stats(const struct tenant *t, struct tenant_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->name = t->name;
	st->label = t->conf->label;
	st->enabled = t->conf->enabled;
	st->state_bad = t->state_bad;
	st->lagging = t->lagging;
	st->backfilling = t->backfill != NULL;
	st->owned = t->owned;
	st->failing = t->failing;
	st->auth_failed = t->auth_failed;
	st->phase = t->phase;
	st->polls = t->polls;
	st->polls_ok = t->polls_ok;
	st->polls_failed = t->polls_failed;
	st->forwarded = t->forwarded;
	memcpy(st->http_status, t->http_status, sizeof(st->http_status));
	st->cursor = t->state.cursor;
	st->last_success = t->last_success;
	st->token_expires = t->token.access != NULL ? t->token.wall_expires :
	    0;
	st->cred_expires = t->token.cred_expires;
	st->credential = t->conf->certificate_file != NULL ? "certificate" :
	    "secret";
	snprintf(st->last_error, sizeof(st->last_error), "%s",
	    t->last_error);
}
