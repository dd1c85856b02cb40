/*
 * metrics: the Prometheus text format (version 0.0.4) at GET /metrics on
 * metrics_listen, served on the relay's base.
 *
 * Per tenant (label tenant="NAME"): alertrelay_polls_total{result},
 * alertrelay_http_responses_total{class}, alertrelay_alerts_forwarded_total,
 * alertrelay_lag_seconds, alertrelay_token_expiry_timestamp_seconds (both
 * only while known), alertrelay_up, alertrelay_tenant_failing,
 * alertrelay_tenant_last_success_timestamp_seconds (tenants this daemon
 * polls), alertrelay_tenant_credential_expiry_timestamp_seconds{credential}
 * (certificate notAfter or secret_expires, when known).  Per output (label
 * output="NAME"): alertrelay_output_connected, alertrelay_output_spool_bytes,
 * alertrelay_output_spool_max_bytes, alertrelay_output_spool_records,
 * alertrelay_output_messages_sent_total, alertrelay_output_reconnects_total.
 * Daemon: alertrelay_daemon_alerts_forwarded_total (survives removed
 * tenants), alertrelay_reloads_total, alertrelay_start_time_seconds,
 * alertrelay_build_info{version}, and the histogram alertrelay_loop_lag_
 * seconds: how late a 100 ms timer fires, i.e. how long the event loop
 * was busy while work was due.  packaging/prometheus and packaging/grafana
 * use these names; tests/prometheus/check_names.py holds them to it.
 *
 * An answer is rendered a slice of tenants per loop turn (struct mrender)
 * and sent whole, with its Content-Length, once the last slice is done.
 *
 * The server is small on purpose: one request per connection (the
 * answer says Connection: close), a head of at most 16 KiB parsed by
 * lib/httpreq.c, 10 s to send it, at most METRICS_MAX_CONN connections
 * at once and never more than an eighth of the open-files limit (more
 * are closed at accept), so idle clients cannot take the descriptors the
 * daemon's own work needs.  When accept() still runs out of descriptors
 * the listener pauses for a second instead of spinning (one warning per
 * minute at most), and a spare descriptor lets it take the waiting
 * connection off the queue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <netdb.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "internal.h"
#include "histogram.h"
#include "httpreq.h"

#define METRICS_TIMEOUT_S	10
#define METRICS_MAX_CONN	64
#define METRICS_PAUSE_MS	1000
#define METRICS_WARN_MS		60000	/* EMFILE warning at most this often */
#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"
#define LOOPLAG_INTERVAL_US	100000
#define METRICS_TURN_SAMPLES	256	/* tenants' samples per loop turn */

struct mrender;

struct mconn {
	struct metrics		*m;
	struct bufferevent	*bev;
	bool			 answered;
	bool			 head;		/* a HEAD request */
	struct mrender		*render;	/* /metrics being rendered */
	struct event		*step;		/* its next slice */
	TAILQ_ENTRY(mconn)	 entry;
};

struct metrics {
	struct relay		*relay;
	struct evconnlistener	*listener;
	TAILQ_HEAD(, mconn)	 conns;
	unsigned		 nconns;
	uint64_t		 refused;	/* over METRICS_MAX_CONN */
	struct event		*pause;		/* accept paused (EMFILE) */
	int64_t			 warned_ms;	/* last EMFILE warning; 0 none */
	unsigned		 max_conn;	/* see the top of this file */
	int			 spare_fd;	/* for EMFILE, see above */
	char			*listen;
	struct event		*lag_timer;	/* the loop-lag probe */
	int64_t			 lag_due_us;	/* when it should fire */
	struct histogram	 lag;
};

/* Append a label value escaped as the text format wants (\\, \", \n). */
static void
metrics_label(struct buf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\')
			buf_adds(b, "\\\\");
		else if (*v == '"')
			buf_adds(b, "\\\"");
		else if (*v == '\n')
			buf_adds(b, "\\n");
		else
			buf_addc(b, *v);
	}
}

static void
metrics_family(struct buf *b, const char *name, const char *type,
    const char *help)
{
	buf_addf(b, "# HELP alertrelay_%s %s\n", name, help);
	buf_addf(b, "# TYPE alertrelay_%s %s\n", name, type);
}

/* One sample: name{key="value"[,key2="value2"]} number. */
static void
metrics_sample(struct buf *b, const char *name, const char *key,
    const char *value, const char *key2, const char *value2,
    const char *number)
{
	buf_addf(b, "alertrelay_%s", name);
	if (key != NULL) {
		buf_addf(b, "{%s=\"", key);
		metrics_label(b, value);
		buf_addc(b, '"');
		if (key2 != NULL) {
			buf_addf(b, ",%s=\"", key2);
			metrics_label(b, value2);
			buf_addc(b, '"');
		}
		buf_addc(b, '}');
	}
	buf_addf(b, " %s\n", number);
}

static const char *
num_u(char *s, size_t len, uint64_t v)
{
	snprintf(s, len, "%llu", (unsigned long long)v);
	return s;
}

static const char *
num_ticks(char *s, size_t len, int64_t ticks)
{
	snprintf(s, len, "%.3f", (double)ticks / TICKS_PER_SEC);
	return s;
}

static bool
metrics_tenant_up(const struct tenant_stats *ts)
{
	return ts->enabled && !ts->failing && ts->phase != TENANT_FAILED;
}

/* Is the tenant polled by this daemon (enabled, and owned in a cluster)? */
static bool
metrics_tenant_polled(const struct relay *r, const struct tenant_stats *ts)
{
	return ts->enabled && (!r->conf->cluster.enabled || ts->owned);
}

/*
 * The per-tenant families, one tenant's samples at a time, so that the
 * answer can be rendered a slice of tenants per loop turn (see
 * mconn_step).
 */
struct tfam {
	const char	*name, *type, *help;
	void		(*sample)(struct buf *, const struct tfam *,
			    const struct relay *, const struct tenant_stats *,
			    int64_t);
};

static void
tf_polls(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	char	 n[64];

	metrics_sample(b, f->name, "tenant", ts->name, "result", "ok",
	    num_u(n, sizeof(n), ts->polls_ok));
	metrics_sample(b, f->name, "tenant", ts->name, "result", "error",
	    num_u(n, sizeof(n), ts->polls_failed));
}

static void
tf_http(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	static const char *cls[] = { "error", NULL, "2xx", "3xx", "4xx",
	    "5xx" };
	char	 n[64];
	size_t	 j;

	for (j = 0; j < nitems(cls); j++)
		if (cls[j] != NULL)
			metrics_sample(b, f->name, "tenant", ts->name, "class",
			    cls[j], num_u(n, sizeof(n), ts->http_status[j]));
}

static void
tf_forwarded(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	char	 n[64];

	metrics_sample(b, f->name, "tenant", ts->name, NULL, NULL,
	    num_u(n, sizeof(n), ts->forwarded));
}

static void
tf_lag(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	char	 n[64];

	if (ts->cursor != TICKS_NONE)
		metrics_sample(b, f->name, "tenant", ts->name, NULL, NULL,
		    num_ticks(n, sizeof(n), now - ts->cursor));
}

static void
tf_token(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	char	 n[64];

	if (ts->token_expires != 0)
		metrics_sample(b, f->name, "tenant", ts->name, NULL, NULL,
		    num_ticks(n, sizeof(n), ts->token_expires));
}

static void
tf_up(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	metrics_sample(b, f->name, "tenant", ts->name, NULL, NULL,
	    metrics_tenant_up(ts) ? "1" : "0");
}

static void
tf_failing(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	metrics_sample(b, f->name, "tenant", ts->name, NULL, NULL,
	    ts->enabled && (ts->failing || ts->phase == TENANT_FAILED) ?
	    "1" : "0");
}

static void
tf_last_success(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	char	 n[64];

	if (metrics_tenant_polled(r, ts))
		metrics_sample(b, f->name, "tenant", ts->name, NULL, NULL,
		    num_ticks(n, sizeof(n), ts->last_success != 0 ?
		    ts->last_success : r->started));
}

static void
tf_cred(struct buf *b, const struct tfam *f, const struct relay *r,
    const struct tenant_stats *ts, int64_t now)
{
	char	 n[64];

	if (ts->cred_expires != 0)
		metrics_sample(b, f->name, "tenant", ts->name, "credential",
		    ts->credential, num_u(n, sizeof(n),
		    (uint64_t)ts->cred_expires));
}

static const struct tfam tfams[] = {
	{ "polls_total", "counter", "Alert catch-ups per tenant, by result "
	    "(ok: completed, error: ended by an error).", tf_polls },
	{ "http_responses_total", "counter", "HTTP responses to the tenant's "
	    "API calls by status class (error: no response).", tf_http },
	{ "alerts_forwarded_total", "counter", "Alert versions of the tenant "
	    "queued for its outputs.", tf_forwarded },
	{ "lag_seconds", "gauge", "Seconds between now and the tenant's "
	    "cursor (newest lastUpdateTime forwarded).", tf_lag },
	{ "token_expiry_timestamp_seconds", "gauge", "When the tenant's "
	    "cached access token expires (Unix time).", tf_token },
	{ "up", "gauge", "1 when the tenant is polled without errors, 0 when "
	    "it is failing or stopped.", tf_up },
	{ "tenant_failing", "gauge", "1 while the tenant's polls keep failing "
	    "(or it was given up on), else 0.", tf_failing },
	{ "tenant_last_success_timestamp_seconds", "gauge", "When the "
	    "tenant's last catch-up completed (Unix time); the daemon's start "
	    "until its first.  Only for tenants polled here.",
	    tf_last_success },
	{ "tenant_credential_expiry_timestamp_seconds", "gauge", "When the "
	    "tenant's certificate (notAfter) or client secret (secret_expires) "
	    "expires (Unix time), when known.", tf_cred },
};

static void
metrics_outputs(struct relay *r, struct buf *b)
{
	static const struct {
		const char	*name, *type, *help;
	} fam[] = {
		{ "output_connected", "gauge",
		    "1 when the output is connected to its SIEM (or file)." },
		{ "output_spool_bytes", "gauge",
		    "Bytes queued in the output's spool, not yet "
		    "acknowledged." },
		{ "output_spool_max_bytes", "gauge",
		    "The spool's bound (spool_max_bytes); polling for its "
		    "tenants pauses when it is full." },
		{ "output_spool_records", "gauge",
		    "Messages queued in the output's spool." },
		{ "output_messages_sent_total", "counter",
		    "Messages sent to the output." },
		{ "output_reconnects_total", "counter",
		    "Connections to the output re-established after a loss." },
		{ "output_messages_in_flight", "gauge",
		    "Messages sent and waiting for the receiver's "
		    "acknowledgement." },
		{ "output_resends_total", "counter",
		    "Messages sent again after a broken connection or a "
		    "failed delivery." },
	};
	struct sink_stats ss;
	uint64_t	 v[nitems(fam)];
	char		 n[32];
	size_t		 i, j;

	for (j = 0; j < nitems(fam); j++) {
		metrics_family(b, fam[j].name, fam[j].type, fam[j].help);
		for (i = 0; i < r->nsinks; i++) {
			sink_stats(r->sinks[i], &ss);
			v[0] = ss.connected;
			v[1] = ss.spool_bytes;
			v[2] = sink_conf(r->sinks[i])->spool_max_bytes;
			v[3] = ss.spool_records;
			v[4] = ss.sent;
			v[5] = ss.reconnects;
			v[6] = ss.inflight;
			v[7] = ss.resends;
			metrics_sample(b, fam[j].name, "output",
			    sink_conf(r->sinks[i])->name, NULL, NULL,
			    num_u(n, sizeof(n), v[j]));
		}
	}
}

static void
metrics_daemon(struct relay *r, struct buf *b)
{
	char	 n[64];

	metrics_family(b, "daemon_alerts_forwarded_total", "counter",
	    "Alert versions queued for outputs since the daemon started.");
	metrics_sample(b, "daemon_alerts_forwarded_total", NULL, NULL, NULL,
	    NULL, num_u(n, sizeof(n), r->forwarded));
	metrics_family(b, "reloads_total", "counter",
	    "Configuration reloads applied.");
	metrics_sample(b, "reloads_total", NULL, NULL, NULL, NULL,
	    num_u(n, sizeof(n), r->reloads));
	metrics_family(b, "start_time_seconds", "gauge",
	    "When the daemon started (Unix time).");
	metrics_sample(b, "start_time_seconds", NULL, NULL, NULL, NULL,
	    num_ticks(n, sizeof(n), r->started));
	metrics_family(b, "build_info", "gauge",
	    "Always 1; the version of alertrelayd as a label.");
	metrics_sample(b, "build_info", "version", AR_VERSION, NULL, NULL,
	    "1");
}

/* The loop-lag histogram: le in seconds, cumulative counts. */
static void
metrics_looplag(const struct histogram *h, struct buf *b)
{
	char	 le[32], n[32];
	int64_t	 bound;
	size_t	 i;

	metrics_family(b, "loop_lag_seconds", "histogram", "How late the "
	    "event loop ran a timer due every 100 ms (time the loop was busy "
	    "while work waited).");
	for (i = 0; i < HISTOGRAM_NBUCKETS; i++) {
		if ((bound = histogram_bound_us(i)) < 0)
			snprintf(le, sizeof(le), "+Inf");
		else
			snprintf(le, sizeof(le), "%g", (double)bound / 1e6);
		metrics_sample(b, "loop_lag_seconds_bucket", "le", le, NULL,
		    NULL, num_u(n, sizeof(n), histogram_cumulative(h, i)));
	}
	snprintf(n, sizeof(n), "%.6f", (double)h->sum_us / 1e6);
	metrics_sample(b, "loop_lag_seconds_sum", NULL, NULL, NULL, NULL, n);
	metrics_sample(b, "loop_lag_seconds_count", NULL, NULL, NULL, NULL,
	    num_u(n, sizeof(n), h->count));
}

/*
 * The exposition, rendered a slice at a time: the per-tenant families
 * METRICS_TURN_SAMPLES tenants' samples per call, then the outputs, the
 * daemon and the loop-lag histogram.  With 10,000 tenants the answer is
 * about 8 MB and 130,000 lines, which took the loop 100-170 ms in one
 * turn (tests/bench/RESULTS.md); a slice takes well under a millisecond.
 * A reload between slices (the tenant list changed) starts it over, so
 * that no tenant is missing or twice in a family.
 */
struct mrender {
	struct buf	 b;
	int64_t		 now;
	size_t		 fam;		/* next family in tfams */
	size_t		 next;		/* its next tenant */
	uint64_t	 reloads;	/* r->reloads when this began */
	unsigned	 restarts;
};

static void
mrender_begin(struct mrender *mr, const struct relay *r)
{
	buf_reset(&mr->b);
	mr->now = ts_now();
	mr->fam = mr->next = 0;
	mr->reloads = r->reloads;
}

/* Render up to budget tenants' samples; true when the answer is whole. */
static bool
mrender_step(struct mrender *mr, struct relay *r, size_t budget)
{
	struct tenant_stats ts;

	if (mr->reloads != r->reloads) {
		mr->restarts++;
		mrender_begin(mr, r);
	}
	for (; mr->fam < nitems(tfams) && budget > 0; budget--) {
		const struct tfam *f = &tfams[mr->fam];

		if (mr->next == 0)
			metrics_family(&mr->b, f->name, f->type, f->help);
		if (mr->next < r->ntenants) {
			tenant_stats(r->tenants[mr->next], &ts);
			f->sample(&mr->b, f, r, &ts, mr->now);
			mr->next++;
		}
		if (mr->next >= r->ntenants) {
			mr->fam++;
			mr->next = 0;
		}
	}
	if (mr->fam < nitems(tfams))
		return false;
	metrics_outputs(r, &mr->b);
	metrics_daemon(r, &mr->b);
	if (r->metrics != NULL)
		metrics_looplag(&r->metrics->lag, &mr->b);
	return true;
}

static int64_t
looplag_now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * (Re)arm the probe: it is due LOOPLAG_INTERVAL_US from now.  libevent
 * counts timeouts from the time it cached when the loop woke up, which may
 * be long before this callback runs; refresh it so that its deadline and
 * ours agree, or the next lateness would be understated by that much.
 */
static void
looplag_arm(struct metrics *m)
{
	struct timeval	 tv = { 0, LOOPLAG_INTERVAL_US };

	event_base_update_cache_time(m->relay->base);
	m->lag_due_us = looplag_now_us() + LOOPLAG_INTERVAL_US;
	evtimer_add(m->lag_timer, &tv);
}

/* The probe fired: record how late, measured on a fresh clock. */
static void
looplag_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics	*m = arg;

	histogram_add(&m->lag, looplag_now_us() - m->lag_due_us);
	looplag_arm(m);
}

static void
mconn_render_free(struct mconn *c)
{
	if (c->step != NULL)
		event_free(c->step);
	c->step = NULL;
	if (c->render != NULL)
		buf_clear(&c->render->b);
	free(c->render);
	c->render = NULL;
}

static void
mconn_free(struct mconn *c)
{
	TAILQ_REMOVE(&c->m->conns, c, entry);
	c->m->nconns--;
	mconn_render_free(c);
	bufferevent_free(c->bev);
	free(c);
}

static void
mconn_reply(struct mconn *c, int code, const char *reason, const char *type,
    const char *body, size_t len, bool head)
{
	struct evbuffer	*out = bufferevent_get_output(c->bev);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", code, reason,
	    type, len);
	if (!head)
		evbuffer_add(out, body, len);
	c->answered = true;
	bufferevent_disable(c->bev, EV_READ);
}

static void
mconn_error(struct mconn *c, int code, const char *reason, const char *msg)
{
	mconn_reply(c, code, reason, "text/plain; charset=utf-8", msg,
	    strlen(msg), false);
}

/* A slice of the answer; the next one on the next loop turn. */
static void
mconn_step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mconn	*c = arg;
	struct timeval	 tv = { 0, 0 };
	struct mrender	*mr = c->render;

	if (!mrender_step(mr, c->m->relay, METRICS_TURN_SAMPLES)) {
		evtimer_add(c->step, &tv);
		return;
	}
	if (mr->restarts > 0)
		log_debug("metrics: answer begun again %u time(s): the tenants "
		    "changed while it was rendered", mr->restarts);
	mconn_reply(c, 200, "OK", METRICS_CONTENT_TYPE, mr->b.data, mr->b.len,
	    c->head);
	mconn_render_free(c);
}

/* The whole request head is there: answer it. */
static void
mconn_answer(struct mconn *c, const struct httpreq *req)
{
	bool		 head = strcmp(req->method, "HEAD") == 0;

	if (!head && strcmp(req->method, "GET") != 0) {
		mconn_error(c, 405, "Method Not Allowed", "GET or HEAD only\n");
		return;
	}
	if (strcmp(req->path, "/metrics") != 0) {
		mconn_error(c, 404, "Not Found", "Not Found: try /metrics\n");
		return;
	}
	c->head = head;
	c->render = xcalloc(1, sizeof(*c->render));
	buf_init(&c->render->b);
	mrender_begin(c->render, c->m->relay);
	c->step = evtimer_new(bufferevent_get_base(c->bev), mconn_step_cb, c);
	mconn_step_cb(-1, 0, c);
}

static void
mconn_read_cb(struct bufferevent *bev, void *arg)
{
	struct mconn	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	size_t		 len = evbuffer_get_length(in);
	struct httpreq	 req;
	const char	*p;

	if (c->answered || c->render != NULL)
		return;
	if (len > HTTPREQ_MAX_HEAD)
		len = HTTPREQ_MAX_HEAD;
	p = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
	switch (httpreq_parse(p, len, &req)) {
	case HTTPREQ_MORE:
		return;
	case HTTPREQ_OK:
		mconn_answer(c, &req);
		break;
	case HTTPREQ_BAD:
		mconn_error(c, 400, "Bad Request", "Bad Request\n");
		break;
	case HTTPREQ_TOO_LARGE:
		mconn_error(c, 431, "Request Header Fields Too Large",
		    "Request Header Fields Too Large\n");
		break;
	}
}

/* The answer is out: close. */
static void
mconn_write_cb(struct bufferevent *bev, void *arg)
{
	struct mconn	*c = arg;

	if (c->answered)
		mconn_free(c);
}

static void
mconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	mconn_free(arg);
}

static void
metrics_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct metrics	*m = arg;
	struct mconn	*c;
	struct timeval	 tv = { METRICS_TIMEOUT_S, 0 };

	if (m->nconns >= m->max_conn) {
		m->refused++;
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->m = m;
	c->bev = bufferevent_socket_new(m->relay->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&m->conns, c, entry);
	m->nconns++;
	bufferevent_setcb(c->bev, mconn_read_cb, mconn_write_cb,
	    mconn_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
metrics_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics	*m = arg;

	if (m->spare_fd == -1)
		m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	evconnlistener_enable(m->listener);
}

/*
 * accept() failed.  Out of descriptors: take the waiting connection off
 * the queue with the spare one (so the listener is not woken for it
 * again), and pause accepting for a moment.
 */
static void
metrics_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct metrics	*m = arg;
	int		 e = EVUTIL_SOCKET_ERROR(), fd;
	struct timeval	 tv = { 0, METRICS_PAUSE_MS * 1000 };

	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
		log_debug("metrics: accept: %s", strerror(e));
		return;
	}
	if (m->warned_ms == 0 || mono_ms() - m->warned_ms >= METRICS_WARN_MS) {
		log_warnx("metrics on %s: cannot accept a connection: %s; "
		    "pausing the listener (raise LimitNOFILE= if this "
		    "repeats)", m->listen, strerror(e));
		m->warned_ms = mono_ms();
	}
	if (m->spare_fd != -1) {
		close(m->spare_fd);
		m->spare_fd = -1;
		if ((fd = accept(evconnlistener_get_fd(l), NULL, NULL)) != -1)
			close(fd);
	}
	evconnlistener_disable(l);
	evtimer_add(m->pause, &tv);
}

/* Connections at once: METRICS_MAX_CONN, at most nofile / 8, at least 2. */
static unsigned
metrics_max_conn(void)
{
	return nofile_share(METRICS_MAX_CONN, 8);
}

/* Split "HOST:PORT" or "[V6]:PORT"; host and port point into buf. */
static int
metrics_split(char *buf, char **host, char **port)
{
	char	*p;

	if (buf[0] == '[') {
		if ((p = strchr(buf, ']')) == NULL || p[1] != ':')
			return -1;
		*p = '\0';
		*host = buf + 1;
		*port = p + 2;
	} else {
		if ((p = strrchr(buf, ':')) == NULL)
			return -1;
		*p = '\0';
		*host = buf;
		*port = p + 1;
	}
	return **host != '\0' && **port != '\0' ? 0 : -1;
}

/* The listening address, or -1 with err. */
static int
metrics_addr(const char *listen, struct sockaddr_storage *ss, int *sslen,
    char *err, size_t elen)
{
	struct addrinfo	 hints, *ai;
	char		*tmp, *host, *port, *end;
	long		 pn;
	int		 r;

	tmp = xstrdup(listen);
	if (metrics_split(tmp, &host, &port) == -1 ||
	    (pn = strtol(port, &end, 10)) < 1 || pn > 65535 || *end != '\0') {
		snprintf(err, elen, "metrics_listen %s: expected HOST:PORT "
		    "(e.g. 127.0.0.1:9469)", listen);
		free(tmp);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	/* An address literal, or a name from /etc/hosts such as localhost. */
	if ((r = getaddrinfo(host, port, &hints, &ai)) != 0) {
		snprintf(err, elen, "metrics_listen %s: %s", listen,
		    gai_strerror(r));
		free(tmp);
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sslen = (int)ai->ai_addrlen;
	freeaddrinfo(ai);
	free(tmp);
	return 0;
}

static void
metrics_close_conns(struct metrics *m)
{
	while (!TAILQ_EMPTY(&m->conns))
		mconn_free(TAILQ_FIRST(&m->conns));
}

/*
 * Listen on metrics_listen.  On a reload that moves it, the new address
 * is bound first; if that fails the old listener keeps serving.
 */
int
metrics_start(struct relay *r, char *err, size_t elen)
{
	struct metrics		*m = r->metrics;
	const char		*listen = r->conf->daemon.metrics_listen;
	struct sockaddr_storage	 ss;
	struct evconnlistener	*l;
	int			 sslen;

	if (listen == NULL || *listen == '\0') {
		metrics_stop(r);
		return 0;
	}
	if (metrics_addr(listen, &ss, &sslen, err, elen) == -1)
		return -1;
	errno = 0;
	l = evconnlistener_new_bind(r->base, metrics_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    -1, (struct sockaddr *)&ss, sslen);
	if (l == NULL) {
		snprintf(err, elen, "metrics_listen %s: cannot listen%s%s",
		    listen, errno ? ": " : "", errno ? strerror(errno) : "");
		return -1;
	}
	if (m == NULL) {
		m = xcalloc(1, sizeof(*m));
		m->relay = r;
		TAILQ_INIT(&m->conns);
		m->pause = evtimer_new(r->base, metrics_resume_cb, m);
		m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		histogram_init(&m->lag);
		m->lag_timer = evtimer_new(r->base, looplag_cb, m);
		looplag_arm(m);
		r->metrics = m;
	} else {
		metrics_close_conns(m);
		evconnlistener_free(m->listener);
		evtimer_del(m->pause);
		free(m->listen);
	}
	m->listener = l;
	m->max_conn = metrics_max_conn();
	evconnlistener_set_cb(l, metrics_accept_cb, m);
	evconnlistener_set_error_cb(l, metrics_accept_error_cb);
	m->listen = xstrdup(listen);
	log_debug("metrics on http://%s/metrics", listen);
	return 0;
}

void
metrics_stop(struct relay *r)
{
	struct metrics	*m = r->metrics;

	if (m == NULL)
		return;
	r->metrics = NULL;
	metrics_close_conns(m);
	event_free(m->lag_timer);
	event_free(m->pause);
	evconnlistener_free(m->listener);
	if (m->spare_fd != -1)
		close(m->spare_fd);
	free(m->listen);
	free(m);
}
