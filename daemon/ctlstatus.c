/* ctlstatus: alertrelayctl status as aligned text tables and as JSON. */
#include <sys/types.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "internal.h"

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

/* "failed" for a tenant whose state file is unusable, else its phase. */
static const char *
tenant_state_name(const struct tenant_stats *t)
{
	return t->state_bad ? "failed" : tenant_phase_name(t->phase);
}

/*
 * The tenant's state word: phase, with "/failing" while failing and
 * "/lagging" while no catch-up completed for lag_warning.
 */
static void
fmt_state(const struct relay *r, const struct tenant_stats *t, char *out,
    size_t len)
{
	if (r->conf->cluster.enabled && !t->owned)
		snprintf(out, len, "standby");
	else
		snprintf(out, len, "%s%s%s", tenant_state_name(t),
		    t->failing && t->phase != TENANT_FAILED ? "/failing" : "",
		    t->lagging ? "/lagging" : "");
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
	struct tenant_stats ts, *t = &ts;
	char		 st[48], cur[32], lag[32], lag2[32], ok[40];
	char		 tok[40], fw[32];
	const char	*row[7] = { NULL, st, cur, lag, ok, tok, fw };
	size_t		 i;

	table_init(&tb, nitems(head));
	table_row(&tb, head);
	for (i = 0; i < r->ntenants; i++) {
		tenant_stats(r->tenants[i], t);
		row[0] = t->name;
		fmt_state(r, t, st, sizeof(st));
		fmt_iso(t->cursor, cur, sizeof(cur));
		snprintf(lag, sizeof(lag), "-");
		if (t->cursor != TICKS_NONE)
			fmt_dur((now - t->cursor) / TICKS_PER_SEC, lag,
			    sizeof(lag));
		snprintf(ok, sizeof(ok), "never");
		if (t->last_success != 0) {
			fmt_dur((now - t->last_success) / TICKS_PER_SEC, lag2,
			    sizeof(lag2));
			snprintf(ok, sizeof(ok), "%s ago", lag2);
		}
		snprintf(tok, sizeof(tok), "-");
		if (t->token_expires != 0 && t->token_expires <= now)
			snprintf(tok, sizeof(tok), "expired");
		else if (t->token_expires != 0) {
			snprintf(tok, sizeof(tok), "in ");
			fmt_dur((t->token_expires - now) / TICKS_PER_SEC,
			    tok + 3, sizeof(tok) - 3);
		}
		snprintf(fw, sizeof(fw), "%llu",
		    (unsigned long long)t->forwarded);
		table_row(&tb, row);
	}
	table_print(&tb, right, out);
}

/* A count for a table cell (32 bytes), or "-" where it does not apply. */
static void
num_cell(char *cell, uint64_t v, bool applies)
{
	if (applies)
		snprintf(cell, 32, "%llu", (unsigned long long)v);
	else
		snprintf(cell, 32, "-");
}

static void
ctl_status_outputs(struct relay *r, struct buf *out)
{
	static const char *head[] = { "OUTPUT", "STATE", "SPOOLED",
	    "SPOOL BYTES", "SENT", "IN FLIGHT", "RESENDS", "RECONNECTS",
	    "ADDRESS" };
	static const bool right[] = { 0, 0, 1, 1, 1, 1, 1, 1, 0 };
	struct table	 tb;
	struct sink_stats ss;
	const struct conf_output *co;
	char		 n[6][32], addr[300];
	const char	*row[9] = { NULL, NULL, n[0], n[1], n[2], n[3], n[4],
	    n[5], addr };
	bool		 acked;
	size_t		 i;

	table_init(&tb, nitems(head));
	table_row(&tb, head);
	for (i = 0; i < r->nsinks; i++) {
		co = sink_conf(r->sinks[i]);
		sink_stats(r->sinks[i], &ss);
		/* Only RELP and Kafka have records awaiting their receipt. */
		acked = co->transport == OUT_RELP || co->transport == OUT_KAFKA;
		row[0] = co->name;
		row[1] = ss.connected ? "connected" : "down";
		num_cell(n[0], ss.spool_records, true);
		num_cell(n[1], ss.spool_bytes, true);
		num_cell(n[2], ss.sent, true);
		num_cell(n[3], ss.inflight, acked);
		num_cell(n[4], ss.resends, acked);
		num_cell(n[5], ss.reconnects, true);
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
void
ctl_status_text(struct relay *r, int64_t now, struct buf *out)
{
	struct tenant_stats ts;
	size_t	 i, nerr = 0;

	ctl_status_header(r, now, out);
	buf_addc(out, '\n');
	ctl_status_tenants(r, now, out);
	buf_addc(out, '\n');
	ctl_status_outputs(r, out);
	for (i = 0; i < r->ntenants; i++) {
		tenant_stats(r->tenants[i], &ts);
		if (ts.last_error[0] == '\0')
			continue;
		if (nerr++ == 0)
			buf_adds(out, "\nLast errors:\n");
		buf_addf(out, "  %s: %s\n", ts.name, ts.last_error);
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
ctl_status_json_tenant(const struct relay *r, const struct tenant_stats *t,
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
	json_object_set_new(o, "label", json_string(t->label));
	json_object_set_new(o, "enabled", json_boolean(t->enabled));
	json_object_set_new(o, "state", json_string(tenant_state_name(t)));
	json_object_set_new(o, "failing", json_boolean(t->failing));
	json_object_set_new(o, "lagging", json_boolean(t->lagging));
	json_object_set_new(o, "owned",
	    json_boolean(!r->conf->cluster.enabled || t->owned));
	json_object_set_new(o, "cursor", json_ts(t->cursor));
	json_object_set_new(o, "lag_seconds", t->cursor == TICKS_NONE ?
	    json_null() : json_integer((now - t->cursor) /
	    TICKS_PER_SEC));
	json_object_set_new(o, "last_success", json_ts(t->last_success));
	json_object_set_new(o, "last_error", t->last_error[0] == '\0' ?
	    json_null() : json_string(t->last_error));
	json_object_set_new(o, "token_expires", t->token_expires != 0 ?
	    json_ts(t->token_expires) : json_null());
	json_object_set_new(o, "alerts_forwarded",
	    json_integer((json_int_t)t->forwarded));
	json_object_set_new(o, "polls", json_integer((json_int_t)t->polls));
	json_object_set_new(o, "polls_ok",
	    json_integer((json_int_t)t->polls_ok));
	json_object_set_new(o, "polls_failed",
	    json_integer((json_int_t)t->polls_failed));
	json_object_set_new(o, "http_responses", h);
	json_object_set_new(o, "backfill_running",
	    json_boolean(t->backfilling));
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
char *
ctl_status_json(struct relay *r, int64_t now)
{
	struct tenant_stats st;
	json_t	*o, *ts, *os;
	char	*s;
	size_t	 i;

	ts = json_array();
	for (i = 0; i < r->ntenants; i++) {
		tenant_stats(r->tenants[i], &st);
		json_array_append_new(ts, ctl_status_json_tenant(r, &st, now));
	}
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
