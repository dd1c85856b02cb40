/*
 * ireader: a tenant's incident reader (incidents = yes).  After each live
 * catch-up of the alerts has caught up, the tenant reads Graph
 * security/incidents with lastUpdateDateTime >= its own cursor - overlap,
 * $top at most 50, $expand=alerts, following @odata.nextLink, inside the
 * tenant's rate budget; each version not in the incidents' dedupe set is
 * forwarded as its own event (SPEC 4 "Incidents") and only then does the
 * incidents' cursor move.  Paging is lib/paging.c's, as for alerts.
 * Owned by the tenant; owns its page request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "graph.h"
#include "incident.h"
#include "jscan.h"
#include "oauth.h"
#include "paging.h"

struct ireader {
	struct tenant	*t;
	const struct ireader_ops *ops;	/* the tenant's, for the ends */
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
	struct commit	*commit;	/* the page's, in flight (commit.c) */
	bool		 page_good;	/* the page was whole: read on */
	struct incident	 inc;		/* scratch: the incident being read */
	/*
	 * Fallback when $expand=alerts answers 500: the page is read
	 * without it, and each incident to forward waits here for its
	 * /incidents/{id}/alerts, asked one at a time.
	 */
	bool		 no_expand;
	struct ipend	*pend;
	size_t		 npend, ipend;
	/* The pending incident's alerts list goes on at this nextLink. */
	char		*alerts_link;
	unsigned	 alerts_pages;	/* of that list read so far */
};

/* An incident's alerts list longer than this is an error, not a loop. */
#define IREADER_MAX_ALERT_PAGES	1000

struct ipend {
	char		*raw;		/* the incident object as received */
	size_t		 len;
	int		 kind;		/* created 0, updated 1 */
};


static struct ireader *
ireader_new(struct tenant *t, const struct ireader_ops *ops)
{
	struct ireader	*ir;

	ir = xcalloc(1, sizeof(*ir));
	ir->t = t;
	ir->ops = ops;
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
	free(ir->alerts_link);
	ir->alerts_link = NULL;
	ir->alerts_pages = 0;
}

void
ireader_free(struct ireader *ir)
{
	if (ir == NULL)
		return;
	if (ir->req != NULL)
		http_cancel(ir->t->relay->http, ir->req);
	commit_detach(ir->commit);
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
void
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
	ir->ops->done(t);
}

/* An error ended the reading: back off the tenant as for alerts. */
static void
ireader_backoff(struct ireader *ir, int64_t retry_after_ms, bool counts)
{
	ireader_pend_clear(ir);
	ir->t->incidents_active = false;
	ir->ops->backoff(ir->t, retry_after_ms, counts);
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
	struct buf	 url;
	char		 err[200], *id;

	if (ir->alerts_link != NULL) {		/* the list's next page */
		ir->req = tenant_api_get(t, ir->alerts_link, tok,
		    MAX_ALERT_BYTES, NULL, ireader_alerts_cb, ir);
		return;
	}
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
	ir->req = tenant_api_get(t, url.data, tok, MAX_ALERT_BYTES, NULL,
	    ireader_alerts_cb, ir);
	buf_clear(&url);
}

/* Request the next page of incidents (after the same checks as alerts). */
void
ireader_fetch(struct ireader *ir)
{
	struct tenant	*t = ir->t;
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
	ir->req = tenant_api_get(t, url.data, tok, MAX_PAGE_BYTES,
	    ireader_data_cb, ireader_page_cb, ir);
	buf_clear(&url);
}

void
ireader_token_cb(struct ireader *ir, int rc)
{
	if (!ir->awaiting_token)
		return;
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

	return reader_feed(ir->split, p, len, ir->page_error,
	    sizeof(ir->page_error));
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

static int
ireader_encode(struct buf *out, const struct conf_output *oc, const void *ev,
    const struct event_meta *m, const char *hostname, int pid)
{
	return incident_encode(out, oc, ev, m, hostname, pid);
}

/* Encode one incident version for every routed output and queue it. */
static int
ireader_forward(struct ireader *ir, const struct incident *in, int updated)
{
	struct tenant		*t = ir->t;
	struct relay		*r = t->relay;
	struct event_meta	 m;

	tenant_event_meta(t, updated, &m);
	if (reader_enqueue(t, "incident", in->id.p, in->id.len,
	    ireader_encode, in, &m, ir->page_error,
	    sizeof(ir->page_error)) == -1)
		return -1;
	notifiers_incident(r->notifiers, r->nnotifiers, in, &m);
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
		log_tenant(LOG_WARNING, t->name, "skipping "
		    "incident %zu of a page: %s",
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

static void	ireader_next_page(struct ireader *);

/* The commit of a page ended (commit.c): read on, or back off. */
static void
ireader_committed_cb(void *arg, int error, const char *output)
{
	struct ireader	*ir = arg;
	struct tenant	*t = ir->t;
	const struct conf_daemon *d = &t->relay->conf->daemon;
	struct log_ctx	 lc = { .tenant = t->name, .output = output };

	ir->commit = NULL;
	if (error != 0 && output != NULL) {
		tenant_error(t, error == ECANCELED ? LOG_DEBUG : LOG_ERR, &lc,
		    "tenant %s: output %s: cannot write spool in %s: %s",
		    t->name, output, d->state_dir, strerror(error));
		tenant_state_reread(t);
	} else if (error != 0)
		tenant_error(t, LOG_ERR, &lc, "tenant %s: cannot save state "
		    "%s: %s", t->name, t->state_path, strerror(error));
	if (error != 0) {
		ireader_backoff(ir, -1, true);
		return;
	}
	if (ir->page_good) {
		ir->retried_401 = 0;
		ireader_next_page(ir);
		return;
	}
	lc.output = NULL;
	lc.http_status = 200;
	tenant_error(t, LOG_WARNING, &lc, "tenant %s: incidents request to "
	    "%s failed: %s", t->name, t->conf->api_url, ir->page_error);
	ireader_backoff(ir, -1, true);
}

/*
 * Commit the incidents this page queued: move the incidents' cursor in
 * memory, then let commit.c make the outputs durable and save the state
 * off the loop (ireader_committed_cb follows).  An output that cannot
 * write throws the unsaved state away (re-read), so the page is read
 * again.  cut: a page cut short by a stop, committed on its own.
 */
static void
ireader_commit(struct ireader *ir, bool cut)
{
	struct tenant	*t = ir->t;
	const struct conf_daemon *d = &t->relay->conf->daemon;
	size_t		 before;

	if (t->state_bad) {
		if (!cut)
			ireader_backoff(ir, -1, true);
		return;
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
	ir->commit = commit_start(t, ir->dirty || t->state_unsaved,
	    cut ? NULL : ireader_committed_cb, ir);
	ir->dirty = false;
	if (cut)
		ir->commit = NULL;
}

void
ireader_commit_cut(struct ireader *ir)
{
	ireader_commit(ir, true);
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
	char		 got[300];

	if (reader_link_home(t, link, got, sizeof(got)))
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
	tenant_count_status(t, res);
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
	if (res->status == 200) {
		if (!good && ir->page_error[0] == '\0')
			snprintf(ir->page_error, sizeof(ir->page_error), "%s",
			    res->error != NULL ? res->error : "cut short");
		ir->page_good = good;
		ireader_commit(ir, false);
		return;
	}
	if (res->status == 500 && !ir->no_expand) {
		log_tenant(LOG_NOTICE, t->name, "incidents with "
		    "$expand=alerts answered HTTP 500; reading them without "
		    "it and each incident's alerts on their own");
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

/*
 * After a page of an incident's alerts list: follow its @odata.nextLink
 * (1: another page to read) or end the list (0); -1 with page_error.
 */
static int
ireader_alerts_more(struct ireader *ir, const char *link)
{
	char	 got[300];

	free(ir->alerts_link);
	ir->alerts_link = NULL;
	if (link == NULL) {
		ir->alerts_pages = 0;
		ir->inc.alerts_known = true;	/* an empty list: 0 alerts */
		return 0;
	}
	if (!reader_link_home(ir->t, link, got, sizeof(got))) {
		snprintf(ir->page_error, sizeof(ir->page_error), "refusing an "
		    "incident alerts @odata.nextLink off api_url (%.150s)", got);
		return -1;
	}
	if (++ir->alerts_pages >= IREADER_MAX_ALERT_PAGES) {
		snprintf(ir->page_error, sizeof(ir->page_error), "incident "
		    "alerts list longer than %d pages", IREADER_MAX_ALERT_PAGES);
		return -1;
	}
	ir->alerts_link = xstrdup(link);
	return 1;
}

/*
 * Read a page of an alerts list into the kept incident (the first page
 * starts it afresh from the kept text): 1 when the list goes on at a
 * nextLink, 0 at its end, -1 with page_error.
 */
static int
ireader_alerts_read(struct ireader *ir, const struct http_result *res)
{
	struct ipend	 *pe = &ir->pend[ir->ipend];
	struct pagesplit *ps;
	char		  err[200];
	int		  rc;

	if (ir->alerts_link == NULL && incident_parse(&ir->inc, pe->raw,
	    pe->len, err, sizeof(err)) == -1)
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
		rc = ireader_alerts_more(ir, pagesplit_next_link(ps));
	pagesplit_free(ps);
	return rc;
}

/* The alerts of a kept incident came: forward it, then the next. */
static void
ireader_alerts_cb(const struct http_result *res, void *arg)
{
	struct ireader	*ir = arg;
	struct tenant	*t = ir->t;
	int		 more;

	ir->req = NULL;
	tenant_count_status(t, res);
	ir->page_error[0] = '\0';
	if (res->status == 401 && !res->failed && !ir->retried_401) {
		ir->retried_401 = 1;
		token_invalidate(t);
		ireader_fetch(ir);
		return;
	}
	more = res->failed || res->status != 200 ? -1 :
	    ireader_alerts_read(ir, res);
	if (more == 1) {
		ir->retried_401 = 0;
		ireader_fetch(ir);
		return;
	}
	if (more == -1 ||
	    ireader_forward(ir, &ir->inc, ir->pend[ir->ipend].kind) == -1) {
		/* The page is read again; what was forwarded is deduped. */
		free(ir->alerts_link);
		ir->alerts_link = NULL;
		ir->alerts_pages = 0;
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
	ir->page_good = true;
	ireader_commit(ir, false);
}

/* Cancel the reader's request; true if it had read part of a page. */
bool
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
	/* A page being committed: the commit finishes without us. */
	commit_detach(ir->commit);
	ir->commit = NULL;
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
bool
ireader_reconcile(struct tenant *t, const struct ireader_ops *ops)
{
	bool	 partial, active;

	if (t->conf->incidents && t->incidents == NULL)
		t->incidents = ireader_new(t, ops);
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
