/* check: alertrelayctl check-tenant, one tenant's sign-in and API access. */
/*
 * The check requests a token of its own with the tenant's configured
 * credential (the tenant's cache is not touched), prints the claims that
 * matter (roles, tid, aud), and calls the alerts API with $top=1.  Every
 * problem is a diagnosis and a fix.  It reports only through the
 * check_report callbacks it was given (ctl.c prints them to the client).
 */
#include <sys/types.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "alertrelayd.h"
#include "graph.h"
#include "jwt.h"
#include "oauth.h"

/* check-tenant: its own token request and one $top=1 call. */
struct check {
	struct relay		*relay;
	struct check_report	 rep;
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

/* Print one line of the diagnosis. */
static void
check_vsend(struct check *k, const char *fmt, va_list ap)
{
	struct buf	 b;

	buf_init(&b);
	buf_vaddf(&b, fmt, ap);
	k->rep.line_cb(k->rep.arg, b.data != NULL ? b.data : "");
	buf_clear(&b);
}

static void __attribute__((format(printf, 2, 3)))
check_send(struct check *k, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	check_vsend(k, fmt, ap);
	va_end(ap);
}

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
check_problem(struct check *k, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
check_problem(struct check *k, const char *what, const char *fmt, ...)
{
	va_list	 ap;

	k->problems++;
	check_send(k, "  diagnosis: %s", what);
	va_start(ap, fmt);
	check_vsend(k, fmt, ap);
	va_end(ap);
}

/* The certificate was refused: name the thumbprint the portal must list. */
static void
check_cert_problem(struct check *k, const struct aadsts_hint *h)
{
	struct jwt_cert_info	 ci;
	char			 err[256];

	if (jwt_cert_info(k->cert_file, &ci, err, sizeof(err)) == -1)
		snprintf(ci.sha1_hex, sizeof(ci.sha1_hex), "(unknown)");
	check_problem(k, h->title, "  fix: %s: upload certificate_file %s "
	    "(thumbprint %s) to application %s (Certificates & secrets) or "
	    "check that it has not expired", h->what, k->cert_file,
	    ci.sha1_hex, k->client_id);
}

/* Retry-After in seconds, or 60 when the answer had none. */
static long long
check_retry_s(const struct http_result *res)
{
	return res->retry_after_ms > 0 ? (res->retry_after_ms + 999) / 1000 :
	    60;
}

/* A diagnosis from the AADSTS table, with what this tenant adds to it. */
static void
check_hint(struct check *k, const struct aadsts_hint *h,
    const struct http_result *res)
{
	switch (h->kind) {
	case AADSTS_CONSENT:
		check_problem(k, h->title, "  fix: %s: have a Global "
		    "Administrator of the customer open %s/%s/adminconsent?"
		    "client_id=%s (or check tenant_id and client_id)", h->what,
		    k->login_url, k->tenant_id, k->client_id);
		break;
	case AADSTS_CLOUD:
		check_problem(k, h->title, "  fix: %s (tenant %s is not known "
		    "at %s)", h->what, k->tenant_id, k->login_url);
		break;
	case AADSTS_CERT:
		if (k->cert_file != NULL) {
			check_cert_problem(k, h);
			break;
		}
		check_problem(k, h->title, "  fix: %s", h->what);
		break;
	case AADSTS_THROTTLED:
		check_problem(k, h->title, "  fix: %s; run check-tenant again "
		    "in %llds", h->what, check_retry_s(res));
		break;
	default:
		check_problem(k, h->title, "  fix: %s, then alertrelayctl "
		    "reload", h->what);
		break;
	}
}

/* Explain a failed token request by its AADSTS code or HTTP status. */
static void
check_token_error(struct check *k, const struct http_result *res)
{
	struct oauth_error	 e;
	const struct aadsts_hint *h;
	const char		*body;

	body = res->body->data ? res->body->data : "";
	if (oauth_error_parse(body, res->body->len, &e) == -1)
		memset(&e, 0, sizeof(e));
	check_send(k, "token: FAILED: HTTP %d%s%s, AADSTS%ld%s%s",
	    res->status, e.error[0] ? " " : "", e.error, e.aadsts,
	    e.correlation_id[0] ? ", correlation id " : "", e.correlation_id);
	if ((h = aadsts_hint(e.aadsts)) != NULL)
		check_hint(k, h, res);
	else if (res->status == 429)
		check_problem(k, "throttled", "  fix: the token endpoint "
		    "answered 429; retry in %llds", check_retry_s(res));
	else
		check_problem(k, res->status >= 500 ? "Entra is failing" :
		    "token request refused", "  fix: %s", res->status >= 500 ?
		    "retry later" :
		    "check tenant_id, client_id, scope and login_url");
}

/* Print the claims operators need, and judge roles and tid. */
static void
check_claims(struct check *k)
{
	json_t		*p, *roles, *v;
	const char	*tid, *aud;
	struct buf	 b;
	size_t		 i;

	if ((p = jwt_payload(k->token)) == NULL) {
		check_send(k, "token: not a JWT; roles and tid "
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
	check_send(k, "token: roles: %s", b.len ? b.data :
	    "(none)");
	check_send(k, "token: tid: %s, aud: %s",
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
check_api_error(struct check *k, const struct http_result *res)
{
	long long	 ra;

	check_send(k, "alerts API: FAILED: HTTP %d from %s",
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
check_done(struct check *k)
{
	struct buf	 b;

	buf_init(&b);
	if (k->problems == 0) {
		check_send(k, "check-tenant %s: all checks passed", k->name);
		k->rep.done_cb(k->rep.arg, 0, NULL);
	} else {
		buf_addf(&b, "check-tenant %s: %u problem%s found", k->name,
		    k->problems, k->problems == 1 ? "" : "s");
		k->rep.done_cb(k->rep.arg, 1, b.data);
	}
	buf_clear(&b);
	check_free(k);
}

static void
check_api_cb(const struct http_result *res, void *arg)
{
	struct check *k = arg;
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
			check_send(k, "alerts API: ok (HTTP 200, "
			    "%zu alert%s in a $top=1 sample, %lld ms)",
			    json_array_size(json_object_get(o, "value")),
			    json_array_size(json_object_get(o, "value")) == 1 ?
			    "" : "s", (long long)res->elapsed_ms);
		json_decref(o);
	}
	check_done(k);
}

static void
check_api(struct check *k)
{
	struct http_opts o;
	struct buf	 url;

	buf_init(&url);
	graph_alerts_url(&url, k->api_url, k->source == SRC_GRAPH);
	buf_adds(&url, "?$top=1");
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
	k->req = http_request(k->relay->http, &o);
	buf_clear(&url);
}

static void	check_token_answer(struct check *,
		    const struct http_result *);

static void
check_token_cb(const struct http_result *res, void *arg)
{
	struct check *k = arg;

	k->req = NULL;
	check_token_answer(k, res);
	/* The body held the access token: wipe it before http frees it. */
	if (res->body != NULL && res->body->data != NULL)
		explicit_bzero(res->body->data, res->body->len);
}

/* Read check-tenant's token answer; go on to the API call if good. */
static void
check_token_answer(struct check *k, const struct http_result *res)
{
	struct oauth_token ot;
	char		 err[256];

	if (res->failed) {
		check_send(k, "token: FAILED: %s", res->error);
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
		check_send(k, "token: FAILED: %s", err);
		check_problem(k, "bad token response", "  fix: %s is not an "
		    "Entra ID token endpoint: check login_url", k->login_url);
		check_done(k);
		return;
	}
	k->token = ot.access_token;
	check_send(k, "token: ok (expires in %llds)",
	    ot.expires_in);
	check_claims(k);
	check_api(k);
}

/* Request a token of our own (the tenant's cache is not touched). */
static int
check_token(struct check *k, const char *secret)
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
		check_send(k, "token: FAILED: %s", err);
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
	k->req = http_request(k->relay->http, &o);
	explicit_bzero(form.data, form.len);
	buf_clear(&form);
	buf_clear(&url);
	return 0;
}

void
check_free(struct check *k)
{
	if (k == NULL)
		return;
	if (k->req != NULL)
		http_cancel(k->relay->http, k->req);
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

/* End a check that could not start: one line for stderr. */
static struct check *
check_refuse(const struct check_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static struct check *
check_refuse(const struct check_report *rep, const char *fmt, ...)
{
	struct buf	 b;
	va_list		 ap;

	buf_init(&b);
	va_start(ap, fmt);
	buf_vaddf(&b, fmt, ap);
	va_end(ap);
	rep->done_cb(rep->arg, 1, b.data);
	buf_clear(&b);
	return NULL;
}

/* What the check is about: the tenant's identity and endpoints. */
static void
check_intro(const struct conf_tenant *ct, const struct check_report *rep)
{
	struct buf	 b;

	buf_init(&b);
	buf_addf(&b, "tenant %s: tenant_id %s, client_id %s, source %s",
	    ct->name, ct->tenant_id, ct->client_id,
	    ct->source == SRC_GRAPH ? "graph" : "mde");
	rep->line_cb(rep->arg, b.data);
	buf_reset(&b);
	buf_addf(&b, "login %s, api %s, scope %s%s", ct->login_url,
	    ct->api_url, ct->scope, ct->enabled ? "" : " (tenant disabled)");
	rep->line_cb(rep->arg, b.data);
	buf_clear(&b);
}

static struct check *
check_new(struct relay *r, const struct conf_tenant *ct,
    const struct check_report *rep)
{
	struct check	*k;

	k = xcalloc(1, sizeof(*k));
	k->relay = r;
	k->rep = *rep;
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
	return k;
}

struct check *
check_start(struct relay *r, const char *name, const struct check_report *rep)
{
	struct conf_tenant	*ct;
	struct check		*k;

	if ((ct = conf_tenant_find(r->conf, name)) == NULL)
		return check_refuse(rep, "no tenant %s in the configuration",
		    name);
	check_intro(ct, rep);
	if (ct->client_secret == NULL && ct->certificate_file == NULL)
		return check_refuse(rep, "check-tenant %s: no client secret "
		    "or certificate configured", ct->name);
	k = check_new(r, ct, rep);
	check_send(k, "credential: %s", ct->certificate_file != NULL ?
	    "certificate" : "client secret");
	if (check_token(k, ct->client_secret) == -1) {
		check_problem(k, "certificate unusable", "  fix: check "
		    "certificate_file and private_key_file");
		check_done(k);
		return NULL;
	}
	return k;
}
