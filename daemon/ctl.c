/*
 * ctl: the control socket that alertrelayctl talks to, and the commands
 * behind it (status, reload, check-tenant, cursor, backfill).
 *
 * Protocol.  A client connects to the AF_UNIX stream socket at
 * control_socket and sends one request line (at most 4 KiB, LF-ended) of
 * words separated by blanks:
 *
 *	status [--json]
 *	reload
 *	check-tenant NAME
 *	cursor show NAME
 *	cursor set NAME TIME
 *	backfill NAME FROM TO
 *
 * TIME, FROM and TO are ISO 8601 UTC ("2026-11-01T00:00:00Z", fractions
 * allowed) or a bare date ("2026-11-01", midnight UTC).  The daemon
 * answers with lines "TAG TEXT", where TAG is
 *
 *	o	a line for the client's standard output
 *	e	a line for its standard error
 *	p	a progress line (a terminal shows only the latest one)
 *	x	the last line: TEXT is the exit status (0 ok, 1 failed,
 *		64 usage)
 *
 * and then closes the connection.  The client keeps its end open until
 * it has read the "x" line: end of file from the client cancels the
 * command (a running backfill stops).  The request must arrive within
 * CTL_REQUEST_S seconds; a client that stops reading for CTL_WRITE_S
 * seconds is dropped.  Secrets are never part of any answer.
 *
 * Access.  The socket is created mode 0600, so only the daemon's own
 * user (and root) can connect; in addition the peer's credentials
 * (SO_PEERCRED) must be uid 0 or the daemon's uid.  A stale socket file
 * left by a dead daemon is replaced; a live one is refused.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <jansson.h>

#include "alertrelayd.h"
#include "jwt.h"
#include "oauth.h"

#define CTL_MAX_REQUEST	4096
#define CTL_MAX_WORDS	8
#define CTL_REQUEST_S	10
#define CTL_WRITE_S	30

#define CTL_EXIT_OK	0
#define CTL_EXIT_FAIL	1
#define CTL_EXIT_USAGE	64

enum ctl_state {
	CTL_READ,		/* waiting for the request line */
	CTL_BUSY,		/* check-tenant or backfill running */
	CTL_CLOSING,		/* answer complete, flushing */
};

struct ctl_check;

struct ctl_client {
	struct ctl		*ctl;		/* NULL once detached */
	struct relay		*relay;
	struct bufferevent	*bev;
	enum ctl_state		 state;
	struct ctl_check	*check;		/* check-tenant */
	/*
	 * The tenant whose backfill this client runs.  Every end of a
	 * backfill (done, failed, tenant stopped, reconfigured or freed)
	 * calls ctl_backfill_cb, which clears it: never a dangling pointer.
	 */
	struct tenant		*bf_tenant;
	char			*bf_name;
	TAILQ_ENTRY(ctl_client)	 entry;
};

TAILQ_HEAD(ctl_clients, ctl_client);

struct ctl {
	struct relay		*relay;
	char			*path;
	dev_t			 dev;
	ino_t			 ino;
	struct evconnlistener	*listener;
	struct ctl_clients	 clients;
};

/* check-tenant: its own token request and one $top=1 call. */
struct ctl_check {
	struct ctl_client	*client;
	struct http_req		*req;
	char			*name;
	char			*tenant_id;
	char			*client_id;
	char			*login_url;
	char			*api_url;
	char			*scope;
	char			*ca_file;
	char			*cert_file;	/* certificate auth */
	char			*key_file;
	char			*user_agent;
	int64_t			 timeout_ms;
	enum tenant_source	 source;
	char			*token;		/* secret */
	unsigned		 problems;
	bool			 no_permission;	/* said already */
};

/* The client whose command is running (reload may stop the socket). */
static struct ctl_client *ctl_current;

static void	ctl_client_free(struct ctl_client *);
static void	ctl_check_free(struct ctl_check *);

/* Formatting helpers. */

/* "2026-11-01T10:00:00Z", or "-" for TICKS_NONE. */
static void
fmt_iso(int64_t ticks, char *out, size_t len)
{
	time_t		 secs;
	struct tm	 tm;

	if (ticks == TICKS_NONE || ticks == 0) {
		snprintf(out, len, "-");
		return;
	}
	secs = (time_t)(ticks / TICKS_PER_SEC);
	if (ticks < 0 && ticks % TICKS_PER_SEC != 0)
		secs--;
	if (gmtime_r(&secs, &tm) == NULL ||
	    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, len, "?");
}

/* A duration as chronyc-like short text: 45s, 4m12s, 3h05m, 2d04h. */
static void
fmt_dur(int64_t secs, char *out, size_t len)
{
	if (secs < 0)
		secs = 0;
	if (secs < 60)
		snprintf(out, len, "%llds", (long long)secs);
	else if (secs < 3600)
		snprintf(out, len, "%lldm%02llds", (long long)secs / 60,
		    (long long)secs % 60);
	else if (secs < 86400)
		snprintf(out, len, "%lldh%02lldm", (long long)secs / 3600,
		    (long long)secs % 3600 / 60);
	else
		snprintf(out, len, "%lldd%02lldh", (long long)secs / 86400,
		    (long long)secs % 86400 / 3600);
}

/* Parse an operator's time: ISO 8601 UTC or a bare YYYY-MM-DD. */
static int
ctl_parse_time(const char *s, int64_t *out)
{
	char	 tmp[32];
	size_t	 len = strlen(s);

	if (len == 10 && s[4] == '-' && s[7] == '-') {
		snprintf(tmp, sizeof(tmp), "%sT00:00:00Z", s);
		return ts_parse(tmp, strlen(tmp), out);
	}
	return ts_parse(s, len, out);
}

/* "failed" for a tenant whose state file is unusable, else its phase. */
static const char *
tenant_state_name(const struct tenant *t)
{
	return t->state_bad ? "failed" : tenant_phase_name(t->phase);
}

/*
 * The tenant's state word: phase, with "/failing" while failing and
 * "/lagging" while no catch-up completed for lag_warning.
 */
static void
fmt_state(const struct relay *r, const struct tenant *t, char *out,
    size_t len)
{
	if (r->conf->cluster.enabled && !tenant_owned(t))
		snprintf(out, len, "standby");
	else
		snprintf(out, len, "%s%s%s", tenant_state_name(t),
		    t->failing && t->phase != TENANT_FAILED ? "/failing" : "",
		    t->lagging ? "/lagging" : "");
}

static bool
tenant_has_token(const struct tenant *t)
{
	return t->token.access != NULL && t->token.wall_expires != 0;
}

/* A table of text cells printed with aligned columns. */
struct table {
	size_t		 ncols;
	size_t		 nrows;
	char		**cells;
};

static void
table_init(struct table *tb, size_t ncols)
{
	memset(tb, 0, sizeof(*tb));
	tb->ncols = ncols;
}

/* Add a row of ncols strings (copied). */
static void
table_row(struct table *tb, const char **row)
{
	size_t	 i;

	tb->cells = xreallocarray(tb->cells, (tb->nrows + 1) * tb->ncols,
	    sizeof(*tb->cells));
	for (i = 0; i < tb->ncols; i++)
		tb->cells[tb->nrows * tb->ncols + i] = xstrdup(row[i]);
	tb->nrows++;
}

/* Print left-aligned columns two blanks apart; numbers right-aligned. */
static void
table_print(struct table *tb, const bool *right, struct buf *out)
{
	size_t	 i, j, w, *width;
	char	*cell;

	width = xcalloc(tb->ncols, sizeof(*width));
	for (i = 0; i < tb->nrows; i++)
		for (j = 0; j < tb->ncols; j++) {
			w = strlen(tb->cells[i * tb->ncols + j]);
			if (w > width[j])
				width[j] = w;
		}
	for (i = 0; i < tb->nrows; i++) {
		for (j = 0; j < tb->ncols; j++) {
			cell = tb->cells[i * tb->ncols + j];
			if (j + 1 == tb->ncols && !right[j])
				buf_adds(out, cell);
			else
				buf_addf(out, right[j] ? "%*s" : "%-*s",
				    (int)width[j], cell);
			if (j + 1 < tb->ncols)
				buf_adds(out, "  ");
		}
		buf_addc(out, '\n');
	}
	for (i = 0; i < tb->nrows * tb->ncols; i++)
		free(tb->cells[i]);
	free(tb->cells);
	free(width);
}

/* status */

static void
ctl_status_header(struct relay *r, int64_t now, struct buf *out)
{
	char	 up[32];

	if (r->started != 0)
		fmt_dur((now - r->started) / TICKS_PER_SEC, up, sizeof(up));
	else
		snprintf(up, sizeof(up), "-");
	buf_addf(out, "alertrelayd %s, pid %d, up %s, %zu tenant%s, "
	    "%zu output%s, %llu reload%s, %llu alert%s forwarded\n",
	    AR_VERSION, r->pid, up, r->ntenants, r->ntenants == 1 ? "" : "s",
	    r->nsinks, r->nsinks == 1 ? "" : "s",
	    (unsigned long long)r->reloads, r->reloads == 1 ? "" : "s",
	    (unsigned long long)r->forwarded, r->forwarded == 1 ? "" : "s");
}

static void
ctl_status_tenants(struct relay *r, int64_t now, struct buf *out)
{
	static const char *head[] = { "TENANT", "STATE", "CURSOR", "LAG",
	    "LAST SUCCESS", "TOKEN EXPIRES", "FORWARDED" };
	static const bool right[] = { 0, 0, 0, 1, 1, 1, 1 };
	struct table	 tb;
	struct tenant	*t;
	char		 st[48], cur[32], lag[32], lag2[32], ok[40];
	char		 tok[40], fw[32];
	const char	*row[7] = { NULL, st, cur, lag, ok, tok, fw };
	size_t		 i;

	table_init(&tb, nitems(head));
	table_row(&tb, head);
	for (i = 0; i < r->ntenants; i++) {
		t = r->tenants[i];
		row[0] = t->name;
		fmt_state(r, t, st, sizeof(st));
		fmt_iso(t->state.cursor, cur, sizeof(cur));
		snprintf(lag, sizeof(lag), "-");
		if (t->state.cursor != TICKS_NONE)
			fmt_dur((now - t->state.cursor) / TICKS_PER_SEC, lag,
			    sizeof(lag));
		snprintf(ok, sizeof(ok), "never");
		if (t->last_success != 0) {
			fmt_dur((now - t->last_success) / TICKS_PER_SEC, lag2,
			    sizeof(lag2));
			snprintf(ok, sizeof(ok), "%s ago", lag2);
		}
		snprintf(tok, sizeof(tok), "-");
		if (tenant_has_token(t) && t->token.wall_expires <= now)
			snprintf(tok, sizeof(tok), "expired");
		else if (tenant_has_token(t)) {
			snprintf(tok, sizeof(tok), "in ");
			fmt_dur((t->token.wall_expires - now) / TICKS_PER_SEC,
			    tok + 3, sizeof(tok) - 3);
		}
		snprintf(fw, sizeof(fw), "%llu",
		    (unsigned long long)t->forwarded);
		table_row(&tb, row);
	}
	table_print(&tb, right, out);
}

static void
ctl_status_outputs(struct relay *r, struct buf *out)
{
	static const char *head[] = { "OUTPUT", "STATE", "SPOOLED",
	    "SPOOL BYTES", "SENT", "RECONNECTS", "ADDRESS" };
	static const bool right[] = { 0, 0, 1, 1, 1, 1, 0 };
	struct table	 tb;
	struct sink_stats ss;
	const struct conf_output *co;
	char		 n[4][32], addr[300];
	const char	*row[7] = { NULL, NULL, n[0], n[1], n[2], n[3],
	    addr };
	size_t		 i;

	table_init(&tb, nitems(head));
	table_row(&tb, head);
	for (i = 0; i < r->nsinks; i++) {
		co = sink_conf(r->sinks[i]);
		sink_stats(r->sinks[i], &ss);
		row[0] = co->name;
		row[1] = ss.connected ? "connected" : "down";
		snprintf(n[0], sizeof(n[0]), "%llu",
		    (unsigned long long)ss.spool_records);
		snprintf(n[1], sizeof(n[1]), "%llu",
		    (unsigned long long)ss.spool_bytes);
		snprintf(n[2], sizeof(n[2]), "%llu",
		    (unsigned long long)ss.sent);
		snprintf(n[3], sizeof(n[3]), "%llu",
		    (unsigned long long)ss.reconnects);
		snprintf(addr, sizeof(addr), "%s %s",
		    conf_transport_name(co->transport),
		    co->address != NULL ? co->address : co->brokers != NULL ?
		    co->brokers : "-");
		table_row(&tb, row);
	}
	table_print(&tb, right, out);
}

/* Why each output that is down is down, after the tenants' errors. */
static void
ctl_status_output_errors(struct relay *r, size_t nerr, struct buf *out)
{
	struct sink_stats ss;
	size_t		 i;

	for (i = 0; i < r->nsinks; i++) {
		sink_stats(r->sinks[i], &ss);
		if (ss.connected || ss.last_error[0] == '\0')
			continue;
		if (nerr++ == 0)
			buf_adds(out, "\nLast errors:\n");
		buf_addf(out, "  output %s: %s\n",
		    sink_conf(r->sinks[i])->name, ss.last_error);
	}
}

/* The human status: a header line, the tenant and output tables. */
static void
ctl_status_text(struct relay *r, int64_t now, struct buf *out)
{
	size_t	 i, nerr = 0;

	ctl_status_header(r, now, out);
	buf_addc(out, '\n');
	ctl_status_tenants(r, now, out);
	buf_addc(out, '\n');
	ctl_status_outputs(r, out);
	for (i = 0; i < r->ntenants; i++) {
		if (r->tenants[i]->last_error[0] == '\0')
			continue;
		if (nerr++ == 0)
			buf_adds(out, "\nLast errors:\n");
		buf_addf(out, "  %s: %s\n", r->tenants[i]->name,
		    r->tenants[i]->last_error);
	}
	ctl_status_output_errors(r, nerr, out);
	if (r->cluster != NULL) {
		buf_addc(out, '\n');
		cluster_status(r, out, false);
	}
}

static json_t *
json_ts(int64_t ticks)
{
	char	 s[40];

	if (ticks == TICKS_NONE || ticks == 0)
		return json_null();
	ts_format(ticks, s, sizeof(s));
	return json_string(s);
}

static json_t *
ctl_status_json_tenant(const struct relay *r, const struct tenant *t,
    int64_t now)
{
	static const char *cls[] = { "error", "1xx", "2xx", "3xx", "4xx",
	    "5xx" };
	json_t	*o, *h;
	size_t	 i;

	h = json_object();
	for (i = 0; i < nitems(cls); i++)
		json_object_set_new(h, cls[i],
		    json_integer((json_int_t)t->http_status[i]));
	o = json_object();
	json_object_set_new(o, "name", json_string(t->name));
	json_object_set_new(o, "label", json_string(t->conf->label));
	json_object_set_new(o, "enabled", json_boolean(t->conf->enabled));
	json_object_set_new(o, "state", json_string(tenant_state_name(t)));
	json_object_set_new(o, "failing", json_boolean(t->failing));
	json_object_set_new(o, "lagging", json_boolean(t->lagging));
	json_object_set_new(o, "owned",
	    json_boolean(!r->conf->cluster.enabled || tenant_owned(t)));
	json_object_set_new(o, "cursor", json_ts(t->state.cursor));
	json_object_set_new(o, "lag_seconds", t->state.cursor == TICKS_NONE ?
	    json_null() : json_integer((now - t->state.cursor) /
	    TICKS_PER_SEC));
	json_object_set_new(o, "last_success", json_ts(t->last_success));
	json_object_set_new(o, "last_error", t->last_error[0] == '\0' ?
	    json_null() : json_string(t->last_error));
	json_object_set_new(o, "token_expires", tenant_has_token(t) ?
	    json_ts(t->token.wall_expires) : json_null());
	json_object_set_new(o, "alerts_forwarded",
	    json_integer((json_int_t)t->forwarded));
	json_object_set_new(o, "polls", json_integer((json_int_t)t->polls));
	json_object_set_new(o, "polls_ok",
	    json_integer((json_int_t)t->polls_ok));
	json_object_set_new(o, "polls_failed",
	    json_integer((json_int_t)t->polls_failed));
	json_object_set_new(o, "http_responses", h);
	json_object_set_new(o, "backfill_running",
	    json_boolean(t->backfill != NULL));
	return o;
}

static json_t *
ctl_status_json_output(struct sink *s)
{
	const struct conf_output *co = sink_conf(s);
	struct sink_stats ss;
	json_t		*o;

	sink_stats(s, &ss);
	o = json_object();
	json_object_set_new(o, "name", json_string(co->name));
	json_object_set_new(o, "transport", json_string(
	    conf_transport_name(co->transport)));
	json_object_set_new(o, "address", co->address != NULL ?
	    json_string(co->address) : json_null());
	json_object_set_new(o, "format", json_string(
	    conf_format_name(co->format)));
	json_object_set_new(o, "connected", json_boolean(ss.connected));
	json_object_set_new(o, "spool_records",
	    json_integer((json_int_t)ss.spool_records));
	json_object_set_new(o, "spool_bytes",
	    json_integer((json_int_t)ss.spool_bytes));
	json_object_set_new(o, "messages_sent",
	    json_integer((json_int_t)ss.sent));
	json_object_set_new(o, "reconnects",
	    json_integer((json_int_t)ss.reconnects));
	json_object_set_new(o, "last_error", ss.last_error[0] == '\0' ?
	    json_null() : json_string(ss.last_error));
	json_object_set_new(o, "messages_in_flight",
	    json_integer((json_int_t)ss.inflight));
	json_object_set_new(o, "resends",
	    json_integer((json_int_t)ss.resends));
	if (co->transport == OUT_KAFKA) {
		json_object_set_new(o, "brokers", json_string(co->brokers));
		json_object_set_new(o, "topic", json_string(co->topic));
	}
	return o;
}

/* The machine status: one JSON object (caller frees). */
static char *
ctl_status_json(struct relay *r, int64_t now)
{
	json_t	*o, *ts, *os;
	char	*s;
	size_t	 i;

	ts = json_array();
	for (i = 0; i < r->ntenants; i++)
		json_array_append_new(ts, ctl_status_json_tenant(r,
		    r->tenants[i], now));
	os = json_array();
	for (i = 0; i < r->nsinks; i++)
		json_array_append_new(os, ctl_status_json_output(r->sinks[i]));
	o = json_object();
	json_object_set_new(o, "version", json_string(AR_VERSION));
	json_object_set_new(o, "pid", json_integer(r->pid));
	json_object_set_new(o, "started", json_ts(r->started));
	json_object_set_new(o, "uptime_seconds", r->started == 0 ?
	    json_null() : json_integer((now - r->started) / TICKS_PER_SEC));
	json_object_set_new(o, "reloads", json_integer((json_int_t)r->reloads));
	json_object_set_new(o, "alerts_forwarded",
	    json_integer((json_int_t)r->forwarded));
	json_object_set_new(o, "tenants", ts);
	json_object_set_new(o, "outputs", os);
	if (r->cluster != NULL) {
		struct buf	 cb;

		buf_init(&cb);
		cluster_status(r, &cb, true);
		json_object_set_new(o, "cluster", json_loadb(cb.data, cb.len, 0,
		    NULL));
		buf_clear(&cb);
	}
	s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (s == NULL)
		fatalx("json_dumps failed");
	return s;
}

/* Client I/O. */

/* Send one "TAG TEXT" line; control characters become blanks. */
static void
ctl_vsend(struct ctl_client *c, char tag, const char *fmt, va_list ap)
{
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	buf_addc(&b, tag);
	buf_addc(&b, ' ');
	buf_vaddf(&b, fmt, ap);
	for (i = 2; i < b.len; i++)
		if ((unsigned char)b.data[i] < 0x20 || b.data[i] == 0x7f)
			b.data[i] = ' ';
	buf_addc(&b, '\n');
	bufferevent_write(c->bev, b.data, b.len);
	buf_clear(&b);
}

static void __attribute__((format(printf, 3, 4)))
ctl_send(struct ctl_client *c, char tag, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	ctl_vsend(c, tag, fmt, ap);
	va_end(ap);
}

/* Send multi-line text, one tagged line per line. */
static void
ctl_send_text(struct ctl_client *c, char tag, const char *text)
{
	const char	*p = text, *nl;

	while (*p != '\0') {
		if ((nl = strchr(p, '\n')) == NULL)
			nl = p + strlen(p);
		ctl_send(c, tag, "%.*s", (int)(nl - p), p);
		p = *nl == '\n' ? nl + 1 : nl;
	}
}

/* End the answer with the exit status; the connection closes once sent. */
static void
ctl_finish(struct ctl_client *c, int status)
{
	if (c->state == CTL_CLOSING)
		return;
	ctl_send(c, 'x', "%d", status);
	c->state = CTL_CLOSING;
}

static void
ctl_fail(struct ctl_client *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
ctl_fail(struct ctl_client *c, int status, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	ctl_vsend(c, 'e', fmt, ap);
	va_end(ap);
	ctl_finish(c, status);
}

static struct tenant *
ctl_tenant(struct ctl_client *c, const char *name)
{
	struct tenant	*t;

	if ((t = relay_tenant_find(c->relay, name)) == NULL)
		ctl_fail(c, CTL_EXIT_FAIL, "no tenant %s is polled by this "
		    "daemon (check the name, enabled and shard)", name);
	return t;
}

/* Commands. */

static void
cmd_status(struct ctl_client *c, int argc, char **argv)
{
	struct buf	 b;
	char		*s;

	if (argc == 2 && strcmp(argv[1], "--json") == 0) {
		s = ctl_status_json(c->relay, ts_now());
		ctl_send_text(c, 'o', s);
		free(s);
		ctl_finish(c, CTL_EXIT_OK);
		return;
	}
	if (argc != 1) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: status [--json]");
		return;
	}
	buf_init(&b);
	ctl_status_text(c->relay, ts_now(), &b);
	ctl_send_text(c, 'o', b.data);
	buf_clear(&b);
	ctl_finish(c, CTL_EXIT_OK);
}

static void
cmd_reload(struct ctl_client *c, int argc, char **argv)
{
	if (argc != 1) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: reload");
		return;
	}
	log_info("reload requested over the control socket");
	if (relay_reload(c->relay) == -1) {
		char	*line, *save = NULL, *copy;

		copy = xstrdup(c->relay->reload_errors.data != NULL ?
		    c->relay->reload_errors.data : "");
		for (line = strtok_r(copy, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			ctl_send(c, 'e', "%s", line);
		free(copy);
		ctl_fail(c, CTL_EXIT_FAIL, "reload rejected; the running "
		    "configuration stays in force");
		return;
	}
	ctl_send(c, 'o', "reload applied");
	ctl_finish(c, CTL_EXIT_OK);
}

static void
cmd_cursor(struct ctl_client *c, int argc, char **argv)
{
	struct tenant	*t;
	int64_t		 ticks;
	char		 err[256], ts[40];

	if (!((argc == 3 && strcmp(argv[1], "show") == 0) ||
	    (argc == 4 && strcmp(argv[1], "set") == 0))) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: cursor show NAME | "
		    "cursor set NAME TIME");
		return;
	}
	if ((t = ctl_tenant(c, argv[2])) == NULL)
		return;
	if (argc == 3) {
		if (t->state.cursor == TICKS_NONE)
			ctl_send(c, 'o', "none");
		else {
			ts_format(t->state.cursor, ts, sizeof(ts));
			ctl_send(c, 'o', "%s", ts);
		}
		ctl_finish(c, CTL_EXIT_OK);
		return;
	}
	if (ctl_parse_time(argv[3], &ticks) == -1) {
		ctl_fail(c, CTL_EXIT_USAGE, "cursor set: \"%s\" is not a time; "
		    "use ISO 8601 UTC such as 2026-11-01T00:00:00Z", argv[3]);
		return;
	}
	if (ticks > ts_now() + 60 * TICKS_PER_SEC) {
		ctl_fail(c, CTL_EXIT_FAIL, "cursor set: %s is in the future",
		    argv[3]);
		return;
	}
	if (tenant_cursor_set(t, ticks, err, sizeof(err)) == -1) {
		ctl_fail(c, CTL_EXIT_FAIL, "cursor set: %s", err);
		return;
	}
	ts_format(ticks, ts, sizeof(ts));
	ctl_send(c, 'o', "cursor of %s set to %s", t->name, ts);
	ctl_finish(c, CTL_EXIT_OK);
}

/* backfill */

static void
ctl_backfill_end(struct ctl_client *c)
{
	c->bf_tenant = NULL;
}

static void
ctl_backfill_cb(void *arg, int done, int ok, uint64_t pages, uint64_t seen,
    uint64_t forwarded, const char *error)
{
	struct ctl_client	*c = arg;
	const char		*name = c->bf_name;

	if (!done) {
		ctl_send(c, 'p', "backfill %s: %llu page%s, %llu alerts seen, "
		    "%llu forwarded", name, (unsigned long long)pages,
		    pages == 1 ? "" : "s", (unsigned long long)seen,
		    (unsigned long long)forwarded);
		return;
	}
	ctl_backfill_end(c);
	if (ok) {
		ctl_send(c, 'o', "backfill %s done: %llu page%s, %llu alerts "
		    "seen, %llu forwarded", name, (unsigned long long)pages,
		    pages == 1 ? "" : "s", (unsigned long long)seen,
		    (unsigned long long)forwarded);
		ctl_finish(c, CTL_EXIT_OK);
	} else
		ctl_fail(c, CTL_EXIT_FAIL, "backfill %s failed after %llu "
		    "page%s (%llu alerts seen, %llu forwarded): %s", name,
		    (unsigned long long)pages, pages == 1 ? "" : "s",
		    (unsigned long long)seen, (unsigned long long)forwarded,
		    error != NULL ? error : "unknown error");
}

static void
cmd_backfill(struct ctl_client *c, int argc, char **argv)
{
	struct tenant	*t;
	int64_t		 from, to;
	char		 err[256], f[40], e[40];

	if (argc != 4) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: backfill NAME FROM TO");
		return;
	}
	if (ctl_parse_time(argv[2], &from) == -1 ||
	    ctl_parse_time(argv[3], &to) == -1) {
		ctl_fail(c, CTL_EXIT_USAGE, "backfill: FROM and TO must be "
		    "ISO 8601 UTC times such as 2026-11-01T00:00:00Z");
		return;
	}
	if (from >= to) {
		ctl_fail(c, CTL_EXIT_USAGE, "backfill: FROM must be before TO");
		return;
	}
	if ((t = ctl_tenant(c, argv[1])) == NULL)
		return;
	free(c->bf_name);
	c->bf_name = xstrdup(t->name);
	c->bf_tenant = t;
	c->state = CTL_BUSY;
	if (tenant_backfill(t, from, to, ctl_backfill_cb, c, err,
	    sizeof(err)) == -1) {
		c->bf_tenant = NULL;
		ctl_fail(c, CTL_EXIT_FAIL, "backfill %s: %s", t->name, err);
		return;
	}
	if (c->bf_tenant == NULL)
		return;		/* finished at once */
	ts_format(from, f, sizeof(f));
	ts_format(to, e, sizeof(e));
	ctl_send(c, 'p', "backfill %s: reading %s to %s", t->name, f, e);
}

/* check-tenant */

static bool
is_guid(const char *s)
{
	size_t	 i;

	if (strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* Decode base64url (no padding needed) into out; -1 on a bad character. */
static int
b64url_decode(const char *s, size_t len, struct buf *out)
{
	uint32_t	 acc = 0;
	int		 bits = 0, v;
	size_t		 i;
	char		 ch;

	for (i = 0; i < len; i++) {
		ch = s[i];
		if (ch >= 'A' && ch <= 'Z')
			v = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			v = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			v = ch - '0' + 52;
		else if (ch == '-' || ch == '+')
			v = 62;
		else if (ch == '_' || ch == '/')
			v = 63;
		else if (ch == '=')
			break;
		else
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_addc(out, (char)((acc >> bits) & 0xff));
		}
	}
	return 0;
}

/* The JSON payload of a JWT (no signature check), or NULL. */
static json_t *
jwt_payload(const char *jwt)
{
	const char	*p, *q;
	struct buf	 b;
	json_t		*o;
	json_error_t	 je;

	if ((p = strchr(jwt, '.')) == NULL ||
	    (q = strchr(p + 1, '.')) == NULL)
		return NULL;
	buf_init(&b);
	if (b64url_decode(p + 1, (size_t)(q - p - 1), &b) == -1) {
		buf_clear(&b);
		return NULL;
	}
	o = json_loadb(b.data ? b.data : "", b.len, 0, &je);
	buf_clear(&b);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Does the roles claim carry a permission that can read alerts? */
static bool
roles_can_read(json_t *roles, enum tenant_source src)
{
	static const char *mde[] = { "Alert.Read.All", "Alert.ReadWrite.All" };
	static const char *graph[] = { "SecurityAlert.Read.All",
	    "SecurityAlert.ReadWrite.All" };
	const char	**want = src == SRC_GRAPH ? graph : mde;
	const char	*s;
	size_t		 i, j;

	for (i = 0; i < json_array_size(roles); i++) {
		if ((s = json_string_value(json_array_get(roles, i))) == NULL)
			continue;
		for (j = 0; j < 2; j++)
			if (strcmp(s, want[j]) == 0)
				return true;
	}
	return false;
}

static const char *
permission_name(enum tenant_source src)
{
	return src == SRC_GRAPH ? "Microsoft Graph SecurityAlert.Read.All" :
	    "WindowsDefenderATP Alert.Read.All";
}

/* One diagnosis: a problem, what it means, how to fix it. */
static void
check_problem(struct ctl_check *k, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
check_problem(struct ctl_check *k, const char *what, const char *fmt, ...)
{
	va_list	 ap;

	k->problems++;
	ctl_send(k->client, 'o', "  diagnosis: %s", what);
	va_start(ap, fmt);
	ctl_vsend(k->client, 'o', fmt, ap);
	va_end(ap);
}

/* The certificate was refused: name the thumbprint the portal must list. */
static void
check_cert_problem(struct ctl_check *k)
{
	struct jwt_cert_info	 ci;
	char			 err[256];

	if (k->cert_file == NULL || jwt_cert_info(k->cert_file, &ci, err,
	    sizeof(err)) == -1)
		snprintf(ci.sha1_hex, sizeof(ci.sha1_hex), "(unknown)");
	check_problem(k, "certificate not accepted", "  fix: upload "
	    "certificate_file %s (thumbprint %s) to application %s "
	    "(Certificates & secrets) or check that it has not expired",
	    k->cert_file ? k->cert_file : "-", ci.sha1_hex, k->client_id);
}

/* Explain a failed token request by its AADSTS code or HTTP status. */
static void
check_token_error(struct ctl_check *k, const struct http_result *res)
{
	struct oauth_error	 e;
	const struct aadsts_hint *h;
	const char		*body;

	body = res->body->data ? res->body->data : "";
	if (oauth_error_parse(body, res->body->len, &e) == -1)
		memset(&e, 0, sizeof(e));
	ctl_send(k->client, 'o', "token: FAILED: HTTP %d%s%s, AADSTS%ld%s%s",
	    res->status, e.error[0] ? " " : "", e.error, e.aadsts,
	    e.correlation_id[0] ? ", correlation id " : "", e.correlation_id);
	switch (e.aadsts) {
	case 700016:
	case 65001:
	case 650052:
		check_problem(k, "consent missing", "  fix: the application "
		    "%s is not consented in tenant %s: have a Global "
		    "Administrator of the customer open %s/%s/adminconsent?"
		    "client_id=%s (or check tenant_id and client_id)",
		    k->client_id, k->tenant_id, k->login_url, k->tenant_id,
		    k->client_id);
		return;
	case 7000215:
		check_problem(k, "bad client secret", "  fix: put the secret's "
		    "Value (not its Secret ID) into client_secret_file, then "
		    "alertrelayctl reload");
		return;
	case 7000222:
		check_problem(k, "expired client secret", "  fix: create a new "
		    "client secret for application %s, write it to "
		    "client_secret_file, set secret_expires, then "
		    "alertrelayctl reload", k->client_id);
		return;
	case 90002:
	case 90038:
		check_problem(k, "wrong cloud (or tenant_id)", "  fix: tenant "
		    "%s is not known at %s: check tenant_id, or set cloud = "
		    "gcc-high or dod for a national-cloud tenant",
		    k->tenant_id, k->login_url);
		return;
	case 90055:
		check_problem(k, "throttled", "  fix: Entra is throttling "
		    "token requests; run check-tenant again in %llds",
		    (long long)(res->retry_after_ms > 0 ?
		    (res->retry_after_ms + 999) / 1000 : 60));
		return;
	case 700027:
	case 700024:
		check_cert_problem(k);
		return;
	}
	if (res->status == 429) {
		check_problem(k, "throttled", "  fix: the token endpoint "
		    "answered 429; retry in %llds",
		    (long long)(res->retry_after_ms > 0 ?
		    (res->retry_after_ms + 999) / 1000 : 60));
		return;
	}
	if ((h = aadsts_hint(e.aadsts)) != NULL) {
		check_problem(k, h->permanent ? "token request refused" :
		    "temporary failure", "  fix: %s", h->what);
		return;
	}
	check_problem(k, res->status >= 500 ? "Entra is failing" :
	    "token request refused", "  fix: %s", res->status >= 500 ?
	    "retry later" : "check tenant_id, client_id, scope and login_url");
}

/* Print the claims operators need, and judge roles and tid. */
static void
check_claims(struct ctl_check *k)
{
	json_t		*p, *roles, *v;
	const char	*tid, *aud;
	struct buf	 b;
	size_t		 i;

	if ((p = jwt_payload(k->token)) == NULL) {
		ctl_send(k->client, 'o', "token: not a JWT; roles and tid "
		    "cannot be checked");
		return;
	}
	roles = json_object_get(p, "roles");
	tid = json_string_value(json_object_get(p, "tid"));
	aud = json_string_value(json_object_get(p, "aud"));
	buf_init(&b);
	for (i = 0; i < json_array_size(roles); i++)
		if ((v = json_array_get(roles, i)) != NULL &&
		    json_is_string(v))
			buf_addf(&b, "%s%s", i ? ", " : "",
			    json_string_value(v));
	ctl_send(k->client, 'o', "token: roles: %s", b.len ? b.data :
	    "(none)");
	ctl_send(k->client, 'o', "token: tid: %s, aud: %s",
	    tid ? tid : "(none)", aud ? aud : "(none)");
	buf_clear(&b);
	if (!roles_can_read(roles, k->source)) {
		k->no_permission = true;
		check_problem(k, "permission missing", "  fix: add the "
		    "application permission %s to application %s (API "
		    "permissions, type Application), then have the customer "
		    "grant admin consent again: "
		    "%s/%s/adminconsent?client_id=%s",
		    permission_name(k->source), k->client_id, k->login_url,
		    k->tenant_id, k->client_id);
	}
	if (is_guid(k->tenant_id) && (tid == NULL ||
	    strcasecmp(tid, k->tenant_id) != 0))
		check_problem(k, "wrong tenant", "  fix: the token is for "
		    "tenant %s, not tenant_id %s: check tenant_id (the "
		    "customer's Directory (tenant) ID) and login_url",
		    tid ? tid : "(none)", k->tenant_id);
	json_decref(p);
}

/* Explain a failed $top=1 call. */
static void
check_api_error(struct ctl_check *k, const struct http_result *res)
{
	long long	 ra;

	ctl_send(k->client, 'o', "alerts API: FAILED: HTTP %d from %s",
	    res->status, k->api_url);
	switch (res->status) {
	case 401:
		check_problem(k, "wrong cloud or scope", "  fix: %s rejected "
		    "the token: check cloud, scope and api_url (they must "
		    "belong to the same cloud)", k->api_url);
		break;
	case 403:
		if (k->no_permission)
			break;		/* explained by the roles above */
		check_problem(k, "permission missing", "  fix: the API refused "
		    "access: grant %s to application %s and have the customer "
		    "consent again: %s/%s/adminconsent?client_id=%s",
		    permission_name(k->source), k->client_id, k->login_url,
		    k->tenant_id, k->client_id);
		break;
	case 429:
		ra = res->retry_after_ms >= 0 ? (res->retry_after_ms + 999) /
		    1000 : 60;
		check_problem(k, "throttled", "  fix: the API is throttling "
		    "this tenant (Retry-After %llds); the daemon waits that "
		    "long by itself. If it persists, poll less often "
		    "(poll_interval) or check what else calls the API with "
		    "this application", ra);
		break;
	default:
		check_problem(k, res->status >= 500 ? "the API is failing" :
		    "unexpected answer", "  fix: %s", res->status >= 500 ?
		    "retry later; the daemon backs off by itself" :
		    "check api_url and source");
		break;
	}
}

static void
check_done(struct ctl_check *k)
{
	struct ctl_client	*c = k->client;

	if (k->problems == 0) {
		ctl_send(c, 'o', "check-tenant %s: all checks passed",
		    k->name);
		ctl_finish(c, CTL_EXIT_OK);
	} else
		ctl_fail(c, CTL_EXIT_FAIL, "check-tenant %s: %u problem%s "
		    "found", k->name, k->problems, k->problems == 1 ? "" : "s");
	c->check = NULL;
	ctl_check_free(k);
}

static void
check_api_cb(const struct http_result *res, void *arg)
{
	struct ctl_check *k = arg;
	json_t		*o;
	json_error_t	 je;

	k->req = NULL;
	if (res->failed)
		check_problem(k, "API unreachable", "  fix: cannot reach %s "
		    "(%s): check api_url, DNS, proxy, firewall and ca_file",
		    k->api_url, res->error);
	else if (res->status != 200)
		check_api_error(k, res);
	else {
		o = json_loadb(res->body->data ? res->body->data : "",
		    res->body->len, 0, &je);
		if (!json_is_array(json_object_get(o, "value")))
			check_problem(k, "unexpected answer", "  fix: %s did "
			    "not answer with an alerts list: check api_url "
			    "and source", k->api_url);
		else
			ctl_send(k->client, 'o', "alerts API: ok (HTTP 200, "
			    "%zu alert%s in a $top=1 sample, %lld ms)",
			    json_array_size(json_object_get(o, "value")),
			    json_array_size(json_object_get(o, "value")) == 1 ?
			    "" : "s", (long long)res->elapsed_ms);
		json_decref(o);
	}
	check_done(k);
}

static void
check_api(struct ctl_check *k)
{
	struct http_opts o;
	struct buf	 url;

	buf_init(&url);
	buf_addf(&url, "%s%s", k->api_url, k->source == SRC_GRAPH ?
	    "/v1.0/security/alerts_v2?$top=1" : "/api/alerts?$top=1");
	memset(&o, 0, sizeof(o));
	o.method = "GET";
	o.url = url.data;
	o.bearer = k->token;
	o.user_agent = k->user_agent;
	o.ca_file = k->ca_file;
	o.timeout_ms = k->timeout_ms;
	o.max_body = 16 * 1024 * 1024;
	o.done_cb = check_api_cb;
	o.arg = k;
	k->req = http_request(k->client->relay->http, &o);
	buf_clear(&url);
}

static void	check_token_answer(struct ctl_check *,
		    const struct http_result *);

static void
check_token_cb(const struct http_result *res, void *arg)
{
	struct ctl_check *k = arg;

	k->req = NULL;
	check_token_answer(k, res);
	/* The body held the access token: wipe it before http frees it. */
	if (res->body != NULL && res->body->data != NULL)
		explicit_bzero(res->body->data, res->body->len);
}

/* Read check-tenant's token answer; go on to the API call if good. */
static void
check_token_answer(struct ctl_check *k, const struct http_result *res)
{
	struct oauth_token ot;
	char		 err[256];

	if (res->failed) {
		ctl_send(k->client, 'o', "token: FAILED: %s", res->error);
		check_problem(k, "login endpoint unreachable", "  fix: cannot "
		    "reach %s: check login_url, cloud, DNS, proxy, firewall "
		    "and ca_file", k->login_url);
		check_done(k);
		return;
	}
	if (res->status != 200) {
		check_token_error(k, res);
		check_done(k);
		return;
	}
	if (oauth_token_parse(res->body->data ? res->body->data : "",
	    res->body->len, &ot, err, sizeof(err)) == -1) {
		ctl_send(k->client, 'o', "token: FAILED: %s", err);
		check_problem(k, "bad token response", "  fix: %s is not an "
		    "Entra ID token endpoint: check login_url", k->login_url);
		check_done(k);
		return;
	}
	k->token = ot.access_token;
	ctl_send(k->client, 'o', "token: ok (expires in %llds)",
	    ot.expires_in);
	check_claims(k);
	check_api(k);
}

/* Request a token of our own (the tenant's cache is not touched). */
static int
check_token(struct ctl_check *k, const char *secret)
{
	struct http_opts o;
	struct conf_tenant ct;
	struct buf	 url, form;
	char		 err[512];

	memset(&ct, 0, sizeof(ct));
	ct.login_url = k->login_url;
	ct.tenant_id = k->tenant_id;
	ct.client_id = k->client_id;
	ct.scope = k->scope;
	ct.client_secret = (char *)secret;
	ct.certificate_file = k->cert_file;
	ct.private_key_file = k->key_file;
	buf_init(&url);
	buf_init(&form);
	if (token_request_build(&ct, &url, &form, err, sizeof(err)) == -1) {
		ctl_send(k->client, 'o', "token: FAILED: %s", err);
		explicit_bzero(form.data, form.len);
		buf_clear(&form);
		buf_clear(&url);
		return -1;
	}
	memset(&o, 0, sizeof(o));
	o.method = "POST";
	o.url = url.data;
	o.body = form.data;
	o.body_len = form.len;
	o.user_agent = k->user_agent;
	o.ca_file = k->ca_file;
	o.timeout_ms = k->timeout_ms;
	o.max_body = 1024 * 1024;
	o.done_cb = check_token_cb;
	o.arg = k;
	k->req = http_request(k->client->relay->http, &o);
	explicit_bzero(form.data, form.len);
	buf_clear(&form);
	buf_clear(&url);
	return 0;
}

static void
ctl_check_free(struct ctl_check *k)
{
	if (k == NULL)
		return;
	if (k->req != NULL)
		http_cancel(k->client->relay->http, k->req);
	secret_free(k->token);
	free(k->name);
	free(k->tenant_id);
	free(k->client_id);
	free(k->login_url);
	free(k->api_url);
	free(k->scope);
	free(k->ca_file);
	free(k->cert_file);
	free(k->key_file);
	free(k->user_agent);
	free(k);
}

static char *
xstrdup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
cmd_check_tenant(struct ctl_client *c, int argc, char **argv)
{
	struct relay		*r = c->relay;
	struct conf_tenant	*ct;
	struct ctl_check	*k;

	if (argc != 2) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: check-tenant NAME");
		return;
	}
	if ((ct = conf_tenant_find(r->conf, argv[1])) == NULL) {
		ctl_fail(c, CTL_EXIT_FAIL, "no tenant %s in the configuration",
		    argv[1]);
		return;
	}
	ctl_send(c, 'o', "tenant %s: tenant_id %s, client_id %s, source %s",
	    ct->name, ct->tenant_id, ct->client_id,
	    ct->source == SRC_GRAPH ? "graph" : "mde");
	ctl_send(c, 'o', "login %s, api %s, scope %s%s", ct->login_url,
	    ct->api_url, ct->scope, ct->enabled ? "" : " (tenant disabled)");
	if (ct->client_secret == NULL && ct->certificate_file == NULL) {
		ctl_fail(c, CTL_EXIT_FAIL, "check-tenant %s: no client secret "
		    "or certificate configured", ct->name);
		return;
	}
	ctl_send(c, 'o', "credential: %s", ct->certificate_file != NULL ?
	    "certificate" : "client secret");
	k = xcalloc(1, sizeof(*k));
	k->client = c;
	k->name = xstrdup(ct->name);
	k->tenant_id = xstrdup(ct->tenant_id);
	k->client_id = xstrdup(ct->client_id);
	k->login_url = xstrdup(ct->login_url);
	k->api_url = xstrdup(ct->api_url);
	k->scope = xstrdup(ct->scope);
	k->ca_file = xstrdup_or_null(ct->ca_file);
	k->cert_file = xstrdup_or_null(ct->certificate_file);
	k->key_file = xstrdup_or_null(ct->private_key_file);
	k->user_agent = xstrdup_or_null(r->conf->daemon.user_agent);
	k->timeout_ms = r->conf->daemon.request_timeout_ms;
	k->source = ct->source;
	c->check = k;
	c->state = CTL_BUSY;
	if (check_token(k, ct->client_secret) == -1) {
		check_problem(k, "certificate unusable", "  fix: check "
		    "certificate_file and private_key_file");
		check_done(k);
	}
}

static void
ctl_dispatch(struct ctl_client *c, char *line)
{
	static const struct {
		const char	*name;
		void		(*fn)(struct ctl_client *, int, char **);
	} cmds[] = {
		{ "status", cmd_status },
		{ "reload", cmd_reload },
		{ "check-tenant", cmd_check_tenant },
		{ "cursor", cmd_cursor },
		{ "backfill", cmd_backfill },
	};
	char	*argv[CTL_MAX_WORDS + 1], *p;
	int	 argc = 0;
	size_t	 i;

	while ((p = strsep(&line, " \t\r")) != NULL) {
		if (*p == '\0')
			continue;
		if (argc == CTL_MAX_WORDS) {
			ctl_fail(c, CTL_EXIT_USAGE, "too many words in the "
			    "request");
			return;
		}
		argv[argc++] = p;
	}
	argv[argc] = NULL;
	if (argc == 0) {
		ctl_fail(c, CTL_EXIT_USAGE, "empty request");
		return;
	}
	for (i = 0; i < nitems(cmds); i++) {
		if (strcmp(argv[0], cmds[i].name) != 0)
			continue;
		log_debug("control socket: %s", argv[0]);
		ctl_current = c;
		cmds[i].fn(c, argc, argv);
		ctl_current = NULL;
		return;
	}
	ctl_fail(c, CTL_EXIT_USAGE, "unknown command \"%s\"", argv[0]);
}

/* Connection handling. */

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 len;

	if (c->state != CTL_READ) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CTL_MAX_REQUEST)
			ctl_fail(c, CTL_EXIT_USAGE, "request longer than %d "
			    "bytes", CTL_MAX_REQUEST);
		return;
	}
	if (len > CTL_MAX_REQUEST)
		ctl_fail(c, CTL_EXIT_USAGE, "request longer than %d bytes",
		    CTL_MAX_REQUEST);
	else {
		/* Now only end of file matters (it cancels the command). */
		bufferevent_set_timeouts(bev, NULL, NULL);
		ctl_dispatch(c, line);
	}
	free(line);
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client	*c = arg;

	if (c->state == CTL_CLOSING &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		ctl_client_free(c);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client	*c = arg;

	if (what & BEV_EVENT_TIMEOUT)
		log_debug("control socket: client timed out");
	ctl_client_free(c);
}

static bool
ctl_peer_allowed(int fd, uid_t *uid)
{
	struct ucred	 cr;
	socklen_t	 len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1) {
		log_warn("control socket: SO_PEERCRED");
		return false;
	}
	*uid = cr.uid;
	return cr.uid == 0 || cr.uid == geteuid();
}

static void
ctl_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct ctl		*ctl = arg;
	struct ctl_client	*c;
	struct timeval		 rtv = { CTL_REQUEST_S, 0 };
	struct timeval		 wtv = { CTL_WRITE_S, 0 };
	uid_t			 uid = (uid_t)-1;
	bool			 allowed;

	allowed = ctl_peer_allowed(fd, &uid);
	c = xcalloc(1, sizeof(*c));
	c->ctl = ctl;
	c->relay = ctl->relay;
	c->bev = bufferevent_socket_new(ctl->relay->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&ctl->clients, c, entry);
	bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CTL_MAX_REQUEST + 2);
	bufferevent_set_timeouts(c->bev, &rtv, &wtv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (!allowed) {
		log_warnx("control socket: refused a client with uid %ld "
		    "(only root and uid %ld may connect)", (long)uid,
		    (long)geteuid());
		ctl_fail(c, CTL_EXIT_FAIL, "permission denied: only root and "
		    "the daemon's user may use the control socket");
	}
}

static void
ctl_client_free(struct ctl_client *c)
{
	if (c == ctl_current) {
		/* Freed after its command returns, from the write path. */
		c->state = CTL_CLOSING;
		return;
	}
	if (c->bf_tenant != NULL) {
		log_tenant(LOG_INFO, c->bf_name, "tenant %s: alertrelayctl "
		    "went away, cancelling the backfill", c->bf_name);
		tenant_backfill_cancel(c->bf_tenant);
	}
	ctl_backfill_end(c);
	ctl_check_free(c->check);
	if (c->ctl != NULL)
		TAILQ_REMOVE(&c->ctl->clients, c, entry);
	bufferevent_free(c->bev);
	free(c->bf_name);
	free(c);
}

/* Listening. */

/* Is a socket at path answered by a live process?  -1 on other errors. */
static int
ctl_socket_live(const char *path, const struct sockaddr_un *sun)
{
	int	 fd, rc;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (rc == 0)
		return 1;
	return errno == ECONNREFUSED ? 0 : -1;
}

/* Replace a stale socket file; refuse a live one or a non-socket. */
static int
ctl_clear_path(const char *path, const struct sockaddr_un *sun, char *err,
    size_t elen)
{
	struct stat	 st;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : (snprintf(err, elen, "control "
		    "socket %s: %s", path, strerror(errno)), -1);
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, elen, "control socket %s: exists and is not a "
		    "socket; remove it or set control_socket", path);
		return -1;
	}
	switch (ctl_socket_live(path, sun)) {
	case 1:
		snprintf(err, elen, "control socket %s: another alertrelayd "
		    "owns it (it answers); stop it or set control_socket",
		    path);
		return -1;
	case -1:
		snprintf(err, elen, "control socket %s: %s", path,
		    strerror(errno));
		return -1;
	}
	log_info("removing stale control socket %s", path);
	if (unlink(path) == -1 && errno != ENOENT) {
		snprintf(err, elen, "cannot remove stale control socket %s: "
		    "%s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
ctl_bind(const char *path, struct sockaddr_un *sun, char *err, size_t elen)
{
	int	 fd, rc, saved;
	mode_t	 old;
	char	*dir, *slash;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		snprintf(err, elen, "control socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)sun, sizeof(*sun));
	saved = errno;
	umask(old);
	if (rc == -1) {
		dir = xstrdup(path);
		if ((slash = strrchr(dir, '/')) != NULL)
			*slash = '\0';
		if (saved == ENOENT)
			snprintf(err, elen, "cannot create control socket %s: "
			    "directory %s does not exist (under systemd, "
			    "RuntimeDirectory= creates it)", path,
			    slash != NULL && *dir ? dir : ".");
		else
			snprintf(err, elen, "cannot create control socket %s: "
			    "%s", path, strerror(saved));
		free(dir);
		close(fd);
		return -1;
	}
	if (chmod(path, 0600) == -1 || listen(fd, 64) == -1) {
		snprintf(err, elen, "control socket %s: %s", path,
		    strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

int
ctl_start(struct relay *r, char *err, size_t elen)
{
	struct ctl		*ctl;
	struct sockaddr_un	 sun;
	struct stat		 st;
	const char		*path = r->conf->daemon.control_socket;
	int			 fd;

	if (r->ctl != NULL)
		ctl_stop(r);
	if (path == NULL || *path == '\0')
		return 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, elen, "control socket %s: path longer than %zu "
		    "bytes", path, sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (ctl_clear_path(path, &sun, err, elen) == -1 ||
	    (fd = ctl_bind(path, &sun, err, elen)) == -1)
		return -1;
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->relay = r;
	ctl->path = xstrdup(path);
	TAILQ_INIT(&ctl->clients);
	if (stat(path, &st) == 0) {
		ctl->dev = st.st_dev;
		ctl->ino = st.st_ino;
	}
	ctl->listener = evconnlistener_new(r->base, ctl_accept_cb, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (ctl->listener == NULL) {
		snprintf(err, elen, "control socket %s: cannot listen", path);
		close(fd);
		unlink(path);
		free(ctl->path);
		free(ctl);
		return -1;
	}
	r->ctl = ctl;
	log_debug("control socket on %s", path);
	return 0;
}

void
ctl_stop(struct relay *r)
{
	struct ctl		*ctl = r->ctl;
	struct ctl_client	*c;
	struct stat		 st;

	if (ctl == NULL)
		return;
	r->ctl = NULL;
	evconnlistener_free(ctl->listener);
	/* Remove the file only if it is still ours. */
	if (stat(ctl->path, &st) == 0 && st.st_dev == ctl->dev &&
	    st.st_ino == ctl->ino)
		unlink(ctl->path);
	while ((c = TAILQ_FIRST(&ctl->clients)) != NULL) {
		TAILQ_REMOVE(&ctl->clients, c, entry);
		c->ctl = NULL;
		if (c != ctl_current)
			ctl_client_free(c);
	}
	free(ctl->path);
	free(ctl);
}
