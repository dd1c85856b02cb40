/*
 * reader: what a tenant's two readers (the alerts catch-up in tenant.c and
 * the incident reader in ireader.c) share: the tenant's schedule, its last
 * error, its state file, its outputs' room, request headers, event meta.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

void
tenant_schedule(struct tenant *t, enum tenant_phase phase, int64_t ms)
{
	t->phase = phase;
	timer_in(t->timer, ms);
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
	log_tenant(LOG_WARNING, t->name, "the %s API says it is "
	    "going away: %s%s%s%s%s; %s", what,
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
void
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
int
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

bool
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
		log_tenant(LOG_INFO, t->name, "polling resumed: "
		    "the outputs' spools have room again");
	return false;
}

/* Extra request headers: Graph is asked for every enum member. */
const char *const *
tenant_headers(const struct tenant *t)
{
	static const char *const graph[] = {
		"Prefer: include-unknown-enum-members", NULL
	};

	return t->conf->source == SRC_GRAPH ? graph : NULL;
}

/* What every event of this tenant carries besides the alert or incident. */
void
tenant_event_meta(const struct tenant *t, int updated, struct event_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->tenant_name = t->name;
	m->tenant_label = t->conf->label;
	m->tenant_id = t->conf->tenant_id;
	m->updated = updated;
	m->forwarded_at = ts_now();
}

/*
 * "scheme://host:port" of an absolute http(s) URL, lower case, with the
 * default port filled in; -1 for anything else (user info included).
 */
static int
reader_url_origin(const char *url, char *out, size_t len)
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

void
tenant_count_status(struct tenant *t, const struct http_result *res)
{
	int	 cls = res->status / 100;

	t->http_status[res->failed && res->status == 0 ? 0 :
	    (cls >= 1 && cls <= 5 ? cls : 0)]++;
}

struct http_req *
tenant_api_get(const struct tenant *t, const char *url, const char *tok,
    size_t max_body, http_data_cb data_cb, http_done_cb done_cb, void *arg)
{
	struct http_opts o;

	memset(&o, 0, sizeof(o));
	o.method = "GET";
	o.url = url;
	o.bearer = tok;
	o.headers = tenant_headers(t);
	o.user_agent = t->relay->conf->daemon.user_agent;
	o.ca_file = t->conf->ca_file;
	o.timeout_ms = t->relay->conf->daemon.request_timeout_ms;
	o.max_body = max_body;
	o.data_cb = data_cb;
	o.done_cb = done_cb;
	o.arg = arg;
	return http_request(t->relay->http, &o);
}

int
reader_enqueue(struct tenant *t, const char *what, const char *id,
    size_t idlen, reader_encode_fn enc, const void *ev,
    const struct event_meta *m, char *err, size_t errlen)
{
	static struct buf	 msg;
	struct relay		*r = t->relay;
	size_t			 i;

	t->unsynced = true;	/* the next commit waits for the spools */
	for (i = 0; i < t->nsinks; i++) {
		buf_reset(&msg);
		if (enc(&msg, sink_conf(t->sinks[i]), ev, m, r->hostname,
		    r->pid) == -1)
			continue;	/* cannot happen at sane sizes */
		if (sink_enqueue_alert(t->sinks[i], t->name, id, idlen,
		    msg.data, msg.len) == -1) {
			snprintf(err, errlen, "output %s: cannot queue %s in "
			    "spool: %s", sink_conf(t->sinks[i])->name, what,
			    strerror(errno));
			return -1;
		}
	}
	return 0;
}

int
reader_feed(struct pagesplit *ps, const char *p, size_t len, char *err,
    size_t errlen)
{
	if (pagesplit_feed(ps, p, len) == -1) {
		if (err[0] == '\0')
			snprintf(err, errlen, "bad response body: %s",
			    pagesplit_error(ps));
		return -1;
	}
	return 0;
}

bool
reader_link_home(const struct tenant *t, const char *link, char *got,
    size_t len)
{
	char	 want[300];

	if (reader_url_origin(link, got, len) == -1) {
		got[0] = '\0';
		return false;
	}
	return reader_url_origin(t->conf->api_url, want, sizeof(want)) == 0 &&
	    strcmp(got, want) == 0;
}
