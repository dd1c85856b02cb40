/* Configuration copies, freeing, lookups and the effective-config printer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf_int.h"

static const struct nameval severities[] = {
	{ "unspecified", SEV_UNSPECIFIED },
	{ "informational", SEV_INFORMATIONAL }, { "low", SEV_LOW },
	{ "medium", SEV_MEDIUM }, { "high", SEV_HIGH }, { NULL, 0 }
};

/* ---- freeing ---- */

/* An [output]'s strings; not file, which the configuration lends. */
static void
output_clear(struct conf_output *o)
{
	free(o->name);
	free(o->address);
	free(o->host);
	free(o->port);
	free(o->ca_file);
	free(o->cert_file);
	free(o->key_file);
	free(o->tls_server_name);
	free(o->brokers);
	free(o->topic);
	free(o->sasl_username);
	free(o->sasl_password_file);
	secret_free(o->sasl_password);
}

/* Free one [output]. */
static void
output_free(struct conf_output *o)
{
	output_clear(o);
	free(o);
}

static char *
dup_or_null(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

void
conf_output_dup(struct conf_output *dst, const struct conf_output *src)
{
	*dst = *src;
	dst->name = dup_or_null(src->name);
	dst->address = dup_or_null(src->address);
	dst->host = dup_or_null(src->host);
	dst->port = dup_or_null(src->port);
	dst->ca_file = dup_or_null(src->ca_file);
	dst->cert_file = dup_or_null(src->cert_file);
	dst->key_file = dup_or_null(src->key_file);
	dst->tls_server_name = dup_or_null(src->tls_server_name);
	dst->brokers = dup_or_null(src->brokers);
	dst->topic = dup_or_null(src->topic);
	dst->sasl_username = dup_or_null(src->sasl_username);
	dst->sasl_password_file = dup_or_null(src->sasl_password_file);
	dst->sasl_password = dup_or_null(src->sasl_password);
	dst->file = dup_or_null(src->file);	/* a copy owns its own */
}

void
conf_output_dup_free(struct conf_output *c)
{
	output_clear(c);
	free((char *)c->file);
	memset(c, 0, sizeof(*c));
}

/* Free one [tenant]; the secret is wiped first. */
/* Free the strings of a [cluster] section. */
static void
cluster_clear(struct conf_cluster *cl)
{
	strv_free(cl->etcd_endpoints, cl->netcd_endpoints);
	free(cl->member_name);
	free(cl->prefix);
	free(cl->ca_file);
	free(cl->cert_file);
	free(cl->key_file);
}

struct conf_cluster *
conf_cluster_dup(const struct conf_cluster *cl)
{
	struct conf_cluster	*d;
	size_t			 i;

	d = xcalloc(1, sizeof(*d));
	*d = *cl;
	d->etcd_endpoints = xcalloc(cl->netcd_endpoints + 1,
	    sizeof(*d->etcd_endpoints));
	for (i = 0; i < cl->netcd_endpoints; i++)
		d->etcd_endpoints[i] = xstrdup(cl->etcd_endpoints[i]);
	d->member_name = dup_or_null(cl->member_name);
	d->prefix = dup_or_null(cl->prefix);
	d->ca_file = dup_or_null(cl->ca_file);
	d->cert_file = dup_or_null(cl->cert_file);
	d->key_file = dup_or_null(cl->key_file);
	return d;
}

void
conf_cluster_free(struct conf_cluster *cl)
{
	if (cl == NULL)
		return;
	cluster_clear(cl);
	free(cl);
}

static void
conf_tenant_free(struct conf_tenant *t)
{
	free(t->name);
	free(t->tenant_id);
	free(t->client_id);
	secret_free(t->client_secret);
	free(t->client_secret_file);
	free(t->certificate_file);
	free(t->private_key_file);
	free(t->client_assertion_file);
	free(t->api_url);
	free(t->login_url);
	free(t->scope);
	free(t->ca_file);
	free(t->label);
	free(t->service_sources);
	strv_free(t->outputs, t->noutputs);
	free(t);
}

/* Free one [notify]; the password is wiped first. */
static void
notify_free(struct conf_notify *n)
{
	free(n->name);
	free(n->smtp_url);
	free(n->from);
	strv_free(n->to, n->nto);
	free(n->username);
	secret_free(n->password);
	free(n->password_file);
	strv_free(n->tenants, n->ntenants);
	free(n);
}

/* Free the [daemon] and [cluster] strings. */
static void
daemon_cluster_clear(struct config *c)
{
	struct conf_daemon	*d = &c->daemon;
	struct conf_cluster	*cl = &c->cluster;

	free(d->state_dir);
	free(d->user_agent);
	free(d->control_socket);
	free(d->metrics_listen);
	cluster_clear(cl);
}

void
conf_free(struct config *c)
{
	size_t	 i;

	if (c == NULL)
		return;
	for (i = 0; i < c->noutputs; i++)
		output_free(c->outputs[i]);
	free(c->outputs);
	for (i = 0; i < c->ntenants; i++)
		conf_tenant_free(c->tenants[i]);
	free(c->tenants);
	free(c->tenant_index);
	for (i = 0; i < c->nnotifies; i++)
		notify_free(c->notifies[i]);
	free(c->notifies);
	daemon_cluster_clear(c);
	strv_free(c->files, c->nfiles);
	free(c->path);
	free(c);
}

/* ---- lookups ---- */

struct conf_output *
conf_output_find(const struct config *c, const char *name)
{
	size_t	 i;

	for (i = 0; i < c->noutputs; i++) {
		if (strcmp(c->outputs[i]->name, name) == 0)
			return c->outputs[i];
	}
	return NULL;
}

struct conf_tenant *
conf_tenant_find(const struct config *c, const char *name)
{
	size_t	 i, j;

	if (c->tenant_index_cap > 0) {
		j = hash64(name, strlen(name)) & (c->tenant_index_cap - 1);
		for (; (i = c->tenant_index[j]) != 0;
		    j = (j + 1) & (c->tenant_index_cap - 1))
			if (strcmp(c->tenants[i - 1]->name, name) == 0)
				return c->tenants[i - 1];
		return NULL;
	}
	for (i = 0; i < c->ntenants; i++) {
		if (strcmp(c->tenants[i]->name, name) == 0)
			return c->tenants[i];
	}
	return NULL;
}

bool
conf_tenant_routes(const struct conf_tenant *t, const struct conf_output *o)
{
	size_t	 i;

	if (t->outputs == NULL)
		return true;
	for (i = 0; i < t->noutputs; i++) {
		if (strcmp(t->outputs[i], o->name) == 0)
			return true;
	}
	return false;
}

bool
conf_in_shard(const struct config *c, const char *name)
{
	const struct conf_daemon *d = &c->daemon;

	if (d->shard_n <= 1)
		return true;
	return hash64(name, strlen(name)) % d->shard_n + 1 == d->shard_k;
}

const char *
conf_transport_name(enum out_transport t)
{
	return nv_name(conf_transports, (int)t);
}

const char *
conf_format_name(enum out_format f)
{
	return nv_name(conf_formats, (int)f);
}

const char *
severity_name(enum severity s)
{
	if ((int)s < SEV_UNSPECIFIED || s > SEV_HIGH)
		return "unspecified";
	return nv_name(severities, (int)s);
}

int
severity_parse(const char *s, size_t len)
{
	const struct nameval	*nv;

	if ((nv = nv_find(severities, s, len)) == NULL)
		return -1;
	return nv->value;
}

/* ---- summary ---- */

/* Print " key=value", quoting values with spaces; NULL is "none". */
static void
put_kv(FILE *f, const char *key, const char *val)
{
	if (val == NULL)
		val = "none";
	if (val[strcspn(val, " \t\"")] != '\0')
		fprintf(f, " %s=\"%s\"", key, val);
	else
		fprintf(f, " %s=%s", key, val);
}

/* Print " key=a,b,c" ("all" for a NULL list). */
static void
put_list(FILE *f, const char *key, char **v, size_t n)
{
	size_t	 i;

	fprintf(f, " %s=", key);
	for (i = 0; i < n; i++)
		fprintf(f, "%s%s", i == 0 ? "" : ",", v[i]);
	if (v == NULL)
		fprintf(f, "all");
}

/* Print " key=DURATION". */
static void
put_dur(FILE *f, const char *key, int64_t ms)
{
	char	 tmp[32];

	fprintf(f, " %s=%s", key, dur_fmt(ms, tmp, sizeof(tmp)));
}

/* The [daemon] line. */
static void
summary_daemon(const struct conf_daemon *d, FILE *f, bool all)
{
	fprintf(f, "daemon:");
	put_kv(f, "state_dir", d->state_dir);
	if (!all) {
		put_dur(f, "poll_interval", d->poll_interval_ms);
		fputc('\n', f);
		return;
	}
	put_dur(f, "poll_interval", d->poll_interval_ms);
	put_dur(f, "overlap", d->overlap_ms);
	put_dur(f, "first_fetch", d->first_fetch_ms);
	fprintf(f, " page_size=%u max_concurrent_requests=%u", d->page_size,
	    d->max_concurrent_requests);
	put_dur(f, "request_timeout", d->request_timeout_ms);
	put_kv(f, "user_agent", d->user_agent);
	put_kv(f, "control_socket", d->control_socket);
	put_kv(f, "metrics_listen", d->metrics_listen);
	put_dur(f, "lag_warning", d->lag_warning_ms);
	fprintf(f, " shard=%u/%u\n", d->shard_k, d->shard_n);
}

/* One [output] line. */
static void
summary_output(const struct conf_output *o, FILE *f, bool all)
{
	char	 tmp[32];

	fprintf(f, "output %s: %s", o->name, conf_transport_name(o->transport));
	if (o->address != NULL)
		fprintf(f, " %s", o->address);
	if (!all) {
		fprintf(f, " %s\n", conf_format_name(o->format));
		return;
	}
	fprintf(f, " %s %s %s facility=%s", conf_format_name(o->format),
	    nv_name(conf_headers, (int)o->header), nv_name(conf_framings,
	    (int)o->framing), nv_name(conf_facilities, o->facility));
	fprintf(f, " max_message_bytes=%zu spool_max_bytes=%s",
	    o->max_message_bytes,
	    size_fmt(o->spool_max_bytes, tmp, sizeof(tmp)));
	if (o->transport == OUT_KAFKA) {
		put_kv(f, "brokers", o->brokers);
		put_kv(f, "topic", o->topic);
		put_kv(f, "kafka_security", nv_name(conf_kafka_securities,
		    (int)o->kafka_security));
		if (o->kafka_security == KAFKA_SASL_SSL) {
			put_kv(f, "sasl_mechanism", nv_name(
			    conf_sasl_mechanisms, (int)o->sasl_mechanism));
			put_kv(f, "sasl_username", o->sasl_username);
		}
	}
	if (o->transport == OUT_RELP)
		put_kv(f, "tls", o->tls ? "yes" : "no");
	if (output_uses_tls(o)) {
		put_kv(f, "tls_server_name", o->tls_server_name);
		put_kv(f, "ca_file", o->ca_file != NULL ? o->ca_file :
		    "system");
		put_kv(f, "cert_file", o->cert_file);
	}
	fputc('\n', f);
}

/* How a tenant authenticates, without the secret. */
static const char *
tenant_auth_name(const struct conf_tenant *t)
{
	if (t->certificate_file != NULL)
		return t->certificate_thumbprint == THUMB_SHA256 ?
		    "certificate(sha256)" : "certificate";
	if (t->client_assertion_file != NULL)
		return "federated";
	if (t->client_secret_file != NULL)
		return "secret(file)";
	return "secret(inline)";
}

/* One [tenant] line; how it authenticates, never the secret. */
static void
summary_tenant(const struct conf_tenant *t, FILE *f, bool all)
{
	char	 tmp[32];
	time_t	 when = (time_t)t->secret_expires;
	struct tm tm;

	fprintf(f, "tenant %s:", t->name);
	if (!all) {
		fprintf(f, " source=%s auth=%s enabled=%s\n",
		    nv_name(conf_sources, (int)t->source), tenant_auth_name(t),
		    t->enabled ? "yes" : "no");
		return;
	}
	put_kv(f, "label", t->label);
	put_kv(f, "tenant_id", t->tenant_id);
	put_kv(f, "client_id", t->client_id);
	fprintf(f, " auth=%s", tenant_auth_name(t));
	if (t->secret_expires != 0 && gmtime_r(&when, &tm) != NULL &&
	    strftime(tmp, sizeof(tmp), "%Y-%m-%d", &tm) > 0)
		fprintf(f, " secret_expires=%s", tmp);
	fprintf(f, " source=%s cloud=%s", nv_name(conf_sources, (int)t->source),
	    nv_name(conf_clouds, (int)t->cloud));
	put_kv(f, "api", t->api_url);
	put_kv(f, "login", t->login_url);
	put_kv(f, "scope", t->scope);
	if (t->service_sources != NULL)
		put_kv(f, "service_sources", t->service_sources);
	put_list(f, "outputs", t->outputs, t->noutputs);
	fprintf(f, " min_severity=%s forward_updates=%s",
	    severity_name(t->min_severity), t->forward_updates ? "yes" : "no");
	if (t->incidents)
		fprintf(f, " incidents=yes");
	if (t->poll_interval_ms != 0)
		put_dur(f, "poll_interval", t->poll_interval_ms);
	fprintf(f, " enabled=%s\n", t->enabled ? "yes" : "no");
}

/* One [notify] line; the password shows as <redacted>. */
static void
summary_notify(const struct conf_notify *n, FILE *f, bool all)
{
	fprintf(f, "notify %s:", n->name);
	put_kv(f, "smtp_url", n->smtp_url);
	fprintf(f, " events=%s", nv_name(conf_notify_events, (int)n->events));
	if (!all) {
		fputc('\n', f);
		return;
	}
	put_kv(f, "from", n->from);
	put_list(f, "to", n->to, n->nto);
	if (n->username != NULL) {
		put_kv(f, "username", n->username);
		fprintf(f, " password=<redacted>");
	}
	fprintf(f, " min_severity=%s", severity_name(n->min_severity));
	put_list(f, "tenants", n->tenants, n->ntenants);
	fprintf(f, " max_per_hour=%u", n->max_per_hour);
	put_dur(f, "digest_interval", n->digest_interval_ms);
	fputc('\n', f);
}

/* The [cluster] line. */
static void
summary_cluster(const struct conf_cluster *cl, FILE *f, bool all)
{
	fprintf(f, "cluster:");
	put_list(f, "etcd_endpoints", cl->etcd_endpoints,
	    cl->netcd_endpoints);
	if (!all) {
		fputc('\n', f);
		return;
	}
	put_kv(f, "member_name", cl->member_name);
	put_dur(f, "lease_ttl", cl->lease_ttl_ms);
	put_kv(f, "prefix", cl->prefix);
	put_kv(f, "tls", cl->ca_file != NULL || cl->cert_file != NULL ?
	    "yes" : "no");
	fputc('\n', f);
}

void
conf_summary(const struct config *c, FILE *f, bool all)
{
	size_t	 i;

	summary_daemon(&c->daemon, f, all);
	for (i = 0; i < c->noutputs; i++)
		summary_output(c->outputs[i], f, all);
	for (i = 0; i < c->ntenants; i++)
		summary_tenant(c->tenants[i], f, all);
	for (i = 0; i < c->nnotifies; i++)
		summary_notify(c->notifies[i], f, all);
	if (c->cluster.enabled)
		summary_cluster(&c->cluster, f, all);
}

static bool
str_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
conf_notify_same_delivery(const struct conf_notify *a,
    const struct conf_notify *b)
{
	size_t	 i;

	if (!str_same(a->smtp_url, b->smtp_url) ||
	    !str_same(a->from, b->from) ||
	    !str_same(a->username, b->username) ||
	    !str_same(a->password, b->password) || a->nto != b->nto)
		return false;
	for (i = 0; i < a->nto; i++)
		if (strcmp(a->to[i], b->to[i]) != 0)
			return false;
	return true;
}

bool
conf_output_equal(const struct conf_output *a, const struct conf_output *b)
{
	return str_same(a->name, b->name) && a->transport == b->transport &&
	    str_same(a->address, b->address) && a->format == b->format &&
	    a->header == b->header && a->framing == b->framing &&
	    a->facility == b->facility && str_same(a->ca_file, b->ca_file) &&
	    str_same(a->cert_file, b->cert_file) &&
	    str_same(a->key_file, b->key_file) &&
	    str_same(a->tls_server_name, b->tls_server_name) &&
	    a->max_message_bytes == b->max_message_bytes &&
	    a->spool_max_bytes == b->spool_max_bytes && a->tls == b->tls &&
	    str_same(a->brokers, b->brokers) && str_same(a->topic, b->topic) &&
	    a->kafka_security == b->kafka_security &&
	    a->sasl_mechanism == b->sasl_mechanism &&
	    str_same(a->sasl_username, b->sasl_username) &&
	    str_same(a->sasl_password_file, b->sasl_password_file) &&
	    str_same(a->sasl_password, b->sasl_password);
}

/*
 * Unchanged outputs keep their connection; TLS and file outputs still
 * reload their files (certificate renewal, log rotation).
 */
enum conf_reload_action
conf_output_action(const struct conf_output *old,
    const struct conf_output *nw)
{
	if (old == NULL)
		return RELOAD_ADD;
	if (!conf_output_equal(old, nw))
		return RELOAD_REBUILD;
	if (nw->transport == OUT_TLS || nw->transport == OUT_FILE)
		return RELOAD_REFRESH;
	return RELOAD_KEEP;
}
