/*
 * metrics: the Prometheus text format (version 0.0.4) at GET /metrics on
 * metrics_listen, served by libevent's evhttp on the relay's base.
 *
 * Per tenant (label tenant="NAME"): alertrelay_polls_total{result},
 * alertrelay_http_responses_total{class}, alertrelay_alerts_forwarded_total,
 * alertrelay_lag_seconds, alertrelay_token_expiry_timestamp_seconds (both
 * only while known), alertrelay_up.  Per output (label output="NAME"):
 * alertrelay_output_connected, alertrelay_output_spool_bytes,
 * alertrelay_output_spool_records, alertrelay_output_messages_sent_total,
 * alertrelay_output_reconnects_total.  Daemon: alertrelay_daemon_alerts_
 * forwarded_total (survives removed tenants), alertrelay_reloads_total,
 * alertrelay_start_time_seconds, alertrelay_build_info{version}.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "alertrelayd.h"

#define METRICS_TIMEOUT_S	10
#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

struct metrics {
	struct relay		*relay;
	struct evhttp		*http;
	char			*listen;
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
metrics_tenant_up(const struct tenant *t)
{
	return t->conf->enabled && !t->failing && t->phase != TENANT_FAILED;
}

static void
metrics_tenants(struct relay *r, int64_t now, struct buf *b)
{
	static const char *cls[] = { "error", NULL, "2xx", "3xx", "4xx",
	    "5xx" };
	struct tenant	*t;
	char		 n[64];
	size_t		 i, j;

	metrics_family(b, "polls_total", "counter", "Alert catch-ups per "
	    "tenant, by result (ok: completed, error: ended by an error).");
	for (i = 0; i < r->ntenants; i++) {
		t = r->tenants[i];
		metrics_sample(b, "polls_total", "tenant", t->name, "result",
		    "ok", num_u(n, sizeof(n), t->polls_ok));
		metrics_sample(b, "polls_total", "tenant", t->name, "result",
		    "error", num_u(n, sizeof(n), t->polls_failed));
	}
	metrics_family(b, "http_responses_total", "counter", "HTTP responses "
	    "to the tenant's API calls by status class (error: no response).");
	for (i = 0; i < r->ntenants; i++) {
		t = r->tenants[i];
		for (j = 0; j < nitems(cls); j++)
			if (cls[j] != NULL)
				metrics_sample(b, "http_responses_total",
				    "tenant", t->name, "class", cls[j],
				    num_u(n, sizeof(n), t->http_status[j]));
	}
	metrics_family(b, "alerts_forwarded_total", "counter", "Alert "
	    "versions of the tenant queued for its outputs.");
	for (i = 0; i < r->ntenants; i++)
		metrics_sample(b, "alerts_forwarded_total", "tenant",
		    r->tenants[i]->name, NULL, NULL, num_u(n, sizeof(n),
		    r->tenants[i]->forwarded));
	metrics_family(b, "lag_seconds", "gauge", "Seconds between now and "
	    "the tenant's cursor (newest lastUpdateTime forwarded).");
	for (i = 0; i < r->ntenants; i++) {
		t = r->tenants[i];
		if (t->state.cursor != TICKS_NONE)
			metrics_sample(b, "lag_seconds", "tenant", t->name,
			    NULL, NULL, num_ticks(n, sizeof(n),
			    now - t->state.cursor));
	}
	metrics_family(b, "token_expiry_timestamp_seconds", "gauge", "When "
	    "the tenant's cached access token expires (Unix time).");
	for (i = 0; i < r->ntenants; i++) {
		t = r->tenants[i];
		if (t->token.access != NULL && t->token.wall_expires != 0)
			metrics_sample(b, "token_expiry_timestamp_seconds",
			    "tenant", t->name, NULL, NULL, num_ticks(n,
			    sizeof(n), t->token.wall_expires));
	}
	metrics_family(b, "up", "gauge", "1 when the tenant is polled "
	    "without errors, 0 when it is failing or stopped.");
	for (i = 0; i < r->ntenants; i++)
		metrics_sample(b, "up", "tenant", r->tenants[i]->name, NULL,
		    NULL, metrics_tenant_up(r->tenants[i]) ? "1" : "0");
}

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
			v[2] = ss.spool_records;
			v[3] = ss.sent;
			v[4] = ss.reconnects;
			v[5] = ss.inflight;
			v[6] = ss.resends;
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

/* The whole exposition. */
static void
metrics_render(struct relay *r, int64_t now, struct buf *b)
{
	metrics_tenants(r, now, b);
	metrics_outputs(r, b);
	metrics_daemon(r, b);
}

static void
metrics_request_cb(struct evhttp_request *req, void *arg)
{
	struct metrics		*m = arg;
	const struct evhttp_uri	*uri;
	const char		*path;
	struct evbuffer		*out;
	struct buf		 b;

	uri = evhttp_request_get_evhttp_uri(req);
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND,
		    "Not Found: try /metrics");
		return;
	}
	buf_init(&b);
	metrics_render(m->relay, ts_now(), &b);
	out = evbuffer_new();
	evbuffer_add(out, b.data, b.len);
	buf_clear(&b);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
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

int
metrics_start(struct relay *r, char *err, size_t elen)
{
	struct metrics	*m;
	const char	*listen = r->conf->daemon.metrics_listen;
	char		*tmp, *host, *port, *end;
	long		 pn;

	if (r->metrics != NULL)
		metrics_stop(r);
	if (listen == NULL || *listen == '\0')
		return 0;
	tmp = xstrdup(listen);
	if (metrics_split(tmp, &host, &port) == -1 ||
	    (pn = strtol(port, &end, 10)) < 1 || pn > 65535 || *end != '\0') {
		snprintf(err, elen, "metrics_listen %s: expected HOST:PORT "
		    "(e.g. 127.0.0.1:9469)", listen);
		free(tmp);
		return -1;
	}
	m = xcalloc(1, sizeof(*m));
	m->relay = r;
	m->listen = xstrdup(listen);
	m->http = evhttp_new(r->base);
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(m->http, METRICS_TIMEOUT_S);
	evhttp_set_max_headers_size(m->http, 16384);
	evhttp_set_max_body_size(m->http, 1024);
	evhttp_set_gencb(m->http, metrics_request_cb, m);
	errno = 0;
	if (evhttp_bind_socket_with_handle(m->http, host, (uint16_t)pn) ==
	    NULL) {
		snprintf(err, elen, "metrics_listen %s: cannot listen%s%s",
		    listen, errno ? ": " : "", errno ? strerror(errno) : "");
		evhttp_free(m->http);
		free(m->listen);
		free(m);
		free(tmp);
		return -1;
	}
	free(tmp);
	r->metrics = m;
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
	evhttp_free(m->http);
	free(m->listen);
	free(m);
}
