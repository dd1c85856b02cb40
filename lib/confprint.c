/* Configuration printer (--check-config, -v) and reload comparison. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "conf_int.h"
#include "util.h"

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
