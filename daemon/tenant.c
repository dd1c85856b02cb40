/*
 * tenant: one customer tenant's poller.  A catch-up reads every alert
 * version with lastUpdateTime >= cursor - overlap, page by page, drops the
 * versions already forwarded, queues the rest durably on every routed
 * output, and only then moves the cursor.  Errors back off this tenant
 * alone; the API's rate budget and Retry-After are honoured.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "alertrelayd.h"
#include "backoff.h"

#define PAUSE_CHECK_MS		1000
#define MAX_ALERT_BYTES		(16 * 1024 * 1024)
#define ONCE_MAX_RETRIES	3

static void	tenant_poll(struct tenant *);
static void	tenant_fetch(struct tenant *);

static void
tenant_schedule(struct tenant *t, enum tenant_phase phase, int64_t ms)
{
	struct timeval	 tv;

	if (ms < 0)
		ms = 0;
	t->phase = phase;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(t->timer, &tv);
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

static int64_t
poll_interval(const struct tenant *t)
{
	return t->conf->poll_interval_ms != 0 ? t->conf->poll_interval_ms :
	    t->relay->conf->daemon.poll_interval_ms;
}

/* The tenant gave up (--once) or finished its catch-up. */
static void
tenant_once_done(struct tenant *t, bool ok)
{
	t->phase = ok ? TENANT_IDLE : TENANT_FAILED;
	relay_tenant_done(t->relay, t, ok);
}

/* An error ended this attempt: wait, then start the catch-up again. */
static void
tenant_backoff(struct tenant *t, int64_t retry_after_ms, bool counts)
{
	int64_t		 delay;
	struct log_ctx	 c = { .tenant = t->name };

	if (counts)
		t->failures++;
	delay = backoff_delay(t->failures > 0 ? t->failures : 1,
	    retry_after_ms, arc4random());
	if (t->relay->once && (t->auth_failed ||
	    t->failures > ONCE_MAX_RETRIES)) {
		log_ctx(LOG_ERR, &c, "tenant %s: giving up after %u "
		    "attempt%s; see the error above", t->name, t->failures,
		    t->failures == 1 ? "" : "s");
		tenant_once_done(t, false);
		return;
	}
	if (counts && !t->failing) {
		t->failing = true;
		c.message_id = MSGID_TENANT_FAILING;
		log_ctx(LOG_WARNING, &c, "tenant %s: failing, other tenants "
		    "carry on; retrying in %llds", t->name,
		    (long long)(delay + 999) / 1000);
	} else
		log_ctx(LOG_INFO, &c, "tenant %s: retrying in %llds",
		    t->name, (long long)(delay + 999) / 1000);
	tenant_schedule(t, TENANT_BACKOFF, delay);
}

static void
tenant_succeeded(struct tenant *t)
{
	struct log_ctx	 c = { .tenant = t->name };

	t->failures = 0;
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
	tenant_schedule(t, TENANT_IDLE, jitter_ms(poll_interval(t), 10, arc4random()));
}

static void
tenant_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tenant	*t = arg;

	switch (t->phase) {
	case TENANT_PAUSED:
		tenant_fetch(t);
		break;
	case TENANT_IDLE:
	case TENANT_BACKOFF:
		tenant_poll(t);
		break;
	default:
		tenant_fetch(t);	/* rate budget wait */
		break;
	}
}

static bool
tenant_outputs_full(struct tenant *t)
{
	size_t		 i;
	struct log_ctx	 c = { .tenant = t->name };

	for (i = 0; i < t->nsinks; i++) {
		if (!sink_full(t->sinks[i]))
			continue;
		if (t->phase != TENANT_PAUSED) {
			c.output = sink_conf(t->sinks[i])->name;
			c.message_id = MSGID_SPOOL_FULL;
			log_ctx(LOG_WARNING, &c, "tenant %s: polling paused: "
			    "spool of output %s is full (spool_max_bytes); "
			    "it resumes when the SIEM takes the backlog",
			    t->name, c.output);
		}
		return true;
	}
	return false;
}

/* Start a catch-up from the cursor (minus the overlap window). */
static void
tenant_poll(struct tenant *t)
{
	const struct conf_daemon *d = &t->relay->conf->daemon;
	int64_t		 now = ts_now();

	if (t->state.since == TICKS_NONE)
		t->state.since = now - d->first_fetch_ms * TICKS_PER_MS;
	if (t->state.cursor == TICKS_NONE)
		t->from = t->state.since;
	else
		t->from = t->state.cursor - d->overlap_ms * TICKS_PER_MS;
	t->skip = 0;
	t->retried_401 = 0;
	free(t->next_link);
	t->next_link = NULL;
	t->polls++;
	tenant_fetch(t);
}

static void
tenant_token_cb(void *arg, int rc)
{
	struct tenant	*t = arg;

	if (rc == -1) {
		tenant_backoff(t, -1, true);
		return;
	}
	tenant_fetch(t);
}

static int	tenant_data_cb(const char *, size_t, void *);
static int	tenant_alert_cb(const char *, size_t, void *);
static void	tenant_page_cb(const struct http_result *, void *);

static void
tenant_url(struct tenant *t, struct buf *url)
{
	const struct conf_tenant *ct = t->conf;
	char		 ts[40];
	bool		 graph = ct->source == SRC_GRAPH;
	const char	*field = graph ? "lastUpdateDateTime" : "lastUpdateTime";

	if (t->next_link != NULL) {
		buf_adds(url, t->next_link);
		return;
	}
	ts_format(t->from, ts, sizeof(ts));
	buf_addf(url, "%s%s?$filter=%s+ge+%s&$top=%u", ct->api_url,
	    graph ? "/v1.0/security/alerts_v2" : "/api/alerts", field, ts,
	    t->relay->conf->daemon.page_size);
	if (t->skip > 0)
		buf_addf(url, "&$skip=%u", t->skip);
	buf_addf(url, "&$orderby=%s+asc", field);
	if (!graph)
		buf_adds(url, "&$expand=evidence");
}

/* Request the next page (after the token, rate budget, spool checks). */
static void
tenant_fetch(struct tenant *t)
{
	struct http_opts o;
	struct buf	 url;
	const char	*tok;
	int64_t		 now = mono_ms(), wait;

	if (tenant_outputs_full(t)) {
		tenant_schedule(t, TENANT_PAUSED, PAUSE_CHECK_MS);
		return;
	}
	if ((wait = rate_wait(&t->rate, now)) > 0) {
		log_tenant(LOG_DEBUG, t->name, "tenant %s: rate budget spent, "
		    "waiting %llds", t->name, (long long)(wait + 999) / 1000);
		tenant_schedule(t, TENANT_FETCH, wait);
		return;
	}
	if ((tok = token_current(t)) == NULL) {
		t->phase = TENANT_TOKEN;
		token_refresh(t, tenant_token_cb, t);
		return;
	}
	buf_init(&url);
	tenant_url(t, &url);
	pagesplit_free(t->split);
	t->split = pagesplit_new(MAX_ALERT_BYTES, tenant_alert_cb, t);
	t->page_n = 0;
	t->page_max = TICKS_NONE;
	t->page_at_max = 0;
	t->page_error[0] = '\0';
	memset(&o, 0, sizeof(o));
	o.method = "GET";
	o.url = url.data;
	o.bearer = tok;
	o.user_agent = t->relay->conf->daemon.user_agent;
	o.ca_file = t->conf->ca_file;
	o.timeout_ms = t->relay->conf->daemon.request_timeout_ms;
	o.max_body = 0;
	o.data_cb = tenant_data_cb;
	o.done_cb = tenant_page_cb;
	o.arg = t;
	rate_note(&t->rate, now);
	t->phase = TENANT_FETCH;
	t->req = http_request(t->relay->http, &o);
	buf_clear(&url);
}

static int
tenant_data_cb(const char *p, size_t len, void *arg)
{
	struct tenant	*t = arg;

	if (pagesplit_feed(t->split, p, len) == -1) {
		if (t->page_error[0] == '\0')
			snprintf(t->page_error, sizeof(t->page_error),
			    "bad response body: %s",
			    pagesplit_error(t->split));
		return -1;
	}
	return 0;
}

/* Is this version to be forwarded, and as created (0) or updated (1)? */
static int
tenant_classify(struct tenant *t, const struct alert *a)
{
	enum severity	 min = t->conf->min_severity;
	enum dedupe_result r;

	r = dedupe_check(&t->state.seen, a->id.p, a->id.len, a->last_update);
	if (r == DEDUPE_DUP)
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

/* Encode one alert version for every routed output and queue it. */
static int
tenant_forward(struct tenant *t, const struct alert *a, int updated)
{
	static struct buf	 msg;
	struct event_meta	 m;
	size_t			 i;
	struct relay		*r = t->relay;

	memset(&m, 0, sizeof(m));
	m.tenant_name = t->name;
	m.tenant_label = t->conf->label;
	m.tenant_id = t->conf->tenant_id;
	m.updated = updated;
	m.forwarded_at = ts_now();
	for (i = 0; i < t->nsinks; i++) {
		buf_reset(&msg);
		event_encode(&msg, sink_conf(t->sinks[i]), a, &m, r->hostname,
		    r->pid);
		if (sink_enqueue(t->sinks[i], msg.data, msg.len) == -1) {
			snprintf(t->page_error, sizeof(t->page_error),
			    "output %s: cannot queue alert in spool: %s",
			    sink_conf(t->sinks[i])->name, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int
tenant_alert_cb(const char *obj, size_t len, void *arg)
{
	struct tenant	*t = arg;
	struct alert	*a = &t->alert;
	char		 err[200];
	int		 kind;

	if (alert_parse(a, t->conf->source, obj, len, err, sizeof(err)) ==
	    -1) {
		log_tenant(LOG_WARNING, t->name, "tenant %s: skipping "
		    "alert %zu of a page: %s", t->name,
		    pagesplit_count(t->split), err);
		return 0;
	}
	t->page_n++;
	if (a->last_update > t->page_max || t->page_max == TICKS_NONE) {
		t->page_max = a->last_update;
		t->page_at_max = 0;
	}
	if (a->last_update == t->page_max)
		t->page_at_max++;
	if ((kind = tenant_classify(t, a)) == -1)
		return 0;
	if (tenant_forward(t, a, kind) == -1)
		return -1;
	dedupe_put(&t->state.seen, a->id.p, a->id.len, a->last_update);
	t->forwarded++;
	t->relay->forwarded++;
	return 0;
}

/*
 * Make what this page queued durable on every output, then move the
 * cursor and save the state.  If an output cannot write, the in-memory
 * dedupe set is thrown away (reloaded) so the versions are read again.
 */
static int
tenant_commit(struct tenant *t)
{
	const struct conf_daemon *d = &t->relay->conf->daemon;
	char		 err[256];
	size_t		 i;
	struct log_ctx	 c = { .tenant = t->name };

	for (i = 0; i < t->nsinks; i++) {
		if (sink_sync(t->sinks[i]) == 0)
			continue;
		c.output = sink_conf(t->sinks[i])->name;
		tenant_error(t, LOG_ERR, &c, "tenant %s: output %s: cannot "
		    "write spool in %s: %s; polling this tenant pauses until "
		    "it can", t->name, c.output, d->state_dir,
		    strerror(errno));
		tenant_state_clear(&t->state);
		tenant_state_init(&t->state);
		if (tenant_state_load(t->state_path, &t->state, err,
		    sizeof(err)) == -1)
			fatalx("tenant %s: %s", t->name, err);
		return -1;
	}
	if (t->page_max != TICKS_NONE && (t->state.cursor == TICKS_NONE ||
	    t->page_max > t->state.cursor))
		t->state.cursor = t->page_max;
	if (t->state.cursor != TICKS_NONE) {
		t->state.horizon = t->state.cursor -
		    2 * d->overlap_ms * TICKS_PER_MS;
		dedupe_prune(&t->state.seen, t->state.horizon);
	}
	if (tenant_state_save(t->state_path, &t->state) == -1) {
		tenant_error(t, LOG_ERR, &c, "tenant %s: cannot save state "
		    "%s: %s", t->name, t->state_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* An API error response: log it with its correlation id. */
static void
tenant_api_error(struct tenant *t, const struct http_result *res)
{
	json_t		*root = NULL, *e;
	json_error_t	 je;
	const char	*code = NULL, *msg = NULL, *hint = "";
	struct log_ctx	 c = { .tenant = t->name };

	if (res->body != NULL && res->body->len > 0)
		root = json_loadb(res->body->data, res->body->len, 0, &je);
	e = json_object_get(root, "error");
	if (json_is_object(e)) {
		code = json_string_value(json_object_get(e, "code"));
		msg = json_string_value(json_object_get(e, "message"));
		c.correlation_id = json_string_value(json_object_get(e,
		    "target"));
	}
	if (res->status == 403)
		hint = "; the application lacks the Alert.Read.All "
		    "application permission or admin consent in this tenant";
	else if (res->status == 429)
		hint = "; throttled by the API, honouring Retry-After";
	else if (res->status >= 500)
		hint = "; the service is failing, backing off";
	c.http_status = res->status;
	tenant_error(t, res->status == 429 ? LOG_WARNING : LOG_ERR, &c,
	    "tenant %s: alerts request failed: HTTP %d%s%s%s%s%s", t->name,
	    res->status, code != NULL ? " " : "", code != NULL ? code : "",
	    msg != NULL ? ": " : "", msg != NULL ? msg : "", hint);
	json_decref(root);
}

/* Continue the catch-up after a good page, or finish it. */
static void
tenant_next_page(struct tenant *t)
{
	const char	*link = pagesplit_next_link(t->split);

	free(t->next_link);
	t->next_link = link != NULL ? xstrdup(link) : NULL;
	if (t->next_link == NULL &&
	    t->page_n < t->relay->conf->daemon.page_size) {
		tenant_succeeded(t);
		return;
	}
	if (t->next_link == NULL) {
		/* Time-boundary paging: resume at the newest time seen. */
		if (t->page_max == t->from)
			t->skip += t->page_n;
		else {
			t->from = t->page_max;
			t->skip = t->page_at_max;
		}
	}
	tenant_fetch(t);
}

static void
tenant_page_cb(const struct http_result *res, void *arg)
{
	struct tenant	*t = arg;
	struct log_ctx	 c = { .tenant = t->name };
	bool		 good;

	t->req = NULL;
	good = !res->failed && res->status == 200;
	if (good && pagesplit_finish(t->split) == -1) {
		snprintf(t->page_error, sizeof(t->page_error),
		    "bad response body: %s", pagesplit_error(t->split));
		good = false;
	}
	if (res->status == 200 && tenant_commit(t) == -1) {
		tenant_backoff(t, -1, true);
		return;
	}
	if (good) {
		tenant_next_page(t);
		return;
	}
	if (res->status == 401 && !t->retried_401) {
		t->retried_401 = 1;
		token_invalidate(t);
		tenant_fetch(t);
		return;
	}
	if (t->page_error[0] != '\0' || res->failed) {
		c.http_status = res->status;
		tenant_error(t, LOG_WARNING, &c, "tenant %s: alerts request "
		    "to %s failed: %s", t->name, t->conf->api_url,
		    t->page_error[0] != '\0' ? t->page_error : res->error);
	} else
		tenant_api_error(t, res);
	if (res->status == 401 || res->status == 403)
		t->auth_failed = true;
	tenant_backoff(t, res->retry_after_ms, res->status != 429);
}

static bool
tenant_route(struct tenant *t, struct sink *s)
{
	return conf_tenant_routes(t->conf, sink_conf(s));
}

struct tenant *
tenant_new(struct relay *r, struct conf_tenant *ct, char *err, size_t elen)
{
	struct tenant	*t;
	size_t		 i;

	t = xcalloc(1, sizeof(*t));
	t->relay = r;
	t->conf = ct;
	t->name = xstrdup(ct->name);
	xasprintf(&t->state_path, "%s/tenants/%s.state",
	    r->conf->daemon.state_dir, ct->name);
	tenant_state_init(&t->state);
	if (tenant_state_load(t->state_path, &t->state, err, elen) == -1) {
		tenant_free(t);
		return NULL;
	}
	alert_init(&t->alert);
	t->sinks = xcalloc(r->nsinks, sizeof(*t->sinks));
	for (i = 0; i < r->nsinks; i++)
		if (tenant_route(t, r->sinks[i]))
			t->sinks[t->nsinks++] = r->sinks[i];
	rate_init(&t->rate, ct->source == SRC_GRAPH ? 150 : 100);
	t->timer = evtimer_new(r->base, tenant_timer_cb, t);
	t->phase = TENANT_IDLE;
	return t;
}

void
tenant_start(struct tenant *t)
{
	int64_t	 first;

	if (!t->conf->enabled) {
		t->phase = TENANT_FAILED;
		snprintf(t->last_error, sizeof(t->last_error), "disabled");
		return;
	}
	if (t->conf->client_secret == NULL) {
		tenant_error(t, LOG_ERR, &(struct log_ctx){ .tenant = t->name },
		    "tenant %s: certificate authentication is not supported "
		    "by this version; use client_secret_file", t->name);
		t->auth_failed = true;
		if (t->relay->once)
			tenant_once_done(t, false);
		else
			t->phase = TENANT_FAILED;
		return;
	}
	/* Spread the first polls so many tenants do not start at once. */
	first = poll_interval(t) < 30000 ? poll_interval(t) : 30000;
	tenant_schedule(t, TENANT_IDLE, t->relay->once ? 0 :
	    (int64_t)arc4random_uniform((uint32_t)first));
}

void
tenant_free(struct tenant *t)
{
	if (t == NULL)
		return;
	if (t->req != NULL)
		http_cancel(t->relay->http, t->req);
	if (t->token.req != NULL)
		http_cancel(t->relay->http, t->token.req);
	token_clear(&t->token);
	if (t->timer != NULL)
		event_free(t->timer);
	pagesplit_free(t->split);
	alert_clear(&t->alert);
	tenant_state_clear(&t->state);
	free(t->next_link);
	free(t->sinks);
	free(t->state_path);
	free(t->name);
	free(t);
}
