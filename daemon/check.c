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

#include "internal.h"
#include "graph.h"
#include "jwt.h"
#include "oauth.h"

enum check_consent {
	CONSENT_MDE,		/* /api/alerts */
	CONSENT_GRAPH,		/* Graph alerts_v2 */
	CONSENT_INCIDENTS,	/* Graph incidents */
	CONSENT_N,
};

enum check_grant {
	GRANT_UNCHECKED,
	GRANT_YES,		/* HTTP 200 */
	GRANT_NO,		/* HTTP 401 or 403 */
	GRANT_UNKNOWN,		/* another answer, or no token */
};

/*
 * check-tenant: its own token request and one $top=1 call, then the
 * consent report: the other source's API (a token for its scope) and,
 * for Graph tenants or incidents = yes, Graph incidents.
 */
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
	char			*assertion_file; /* federated */
	enum tenant_thumbprint	 thumbprint;
	char			*secret;	/* secret: client_secret */
	bool			 incidents;	/* incidents = yes */
	char			*token;		/* secret */
	unsigned		 problems;
	bool			 no_permission;	/* said already */
	/* The consent report: the other API, and what each API answered. */
	char			*other_api;
	char			*other_scope;
	char			*other_token;	/* secret */
	enum check_consent	 probe;		/* the call in flight */
	enum check_grant	 grant[CONSENT_N];
	int			 grant_status[CONSENT_N];
};

/* The APIs the consent report covers and the permission each needs. */
static const struct {
	const char	*label;
	const char	*perm;
} consent_names[CONSENT_N] = {
	[CONSENT_MDE] = { "Defender for Endpoint alerts",
	    "WindowsDefenderATP Alert.Read.All" },
	[CONSENT_GRAPH] = { "Graph alerts",
	    "Microsoft Graph SecurityAlert.Read.All" },
	[CONSENT_INCIDENTS] = { "Graph incidents",
	    "Microsoft Graph SecurityIncident.Read.All" },
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

/* Record what an API answered for the consent report. */
static void
check_grant_set(struct check *k, enum check_consent which,
    const struct http_result *res)
{
	k->grant_status[which] = res->failed ? 0 : res->status;
	if (res->failed)
		k->grant[which] = GRANT_UNKNOWN;
	else if (res->status == 200)
		k->grant[which] = GRANT_YES;
	else if (res->status == 401 || res->status == 403)
		k->grant[which] = GRANT_NO;
	else
		k->grant[which] = GRANT_UNKNOWN;
}

static void	check_next(struct check *);

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
	check_grant_set(k, k->source == SRC_GRAPH ? CONSENT_GRAPH :
	    CONSENT_MDE, res);
	check_next(k);
}

/* GET url with token, answered to cb. */
static void
check_get(struct check *k, const char *url, const char *token,
    http_done_cb cb)
{
	struct http_opts o;

	memset(&o, 0, sizeof(o));
	o.method = "GET";
	o.url = url;
	o.bearer = token;
	o.user_agent = k->user_agent;
	o.ca_file = k->ca_file;
	o.timeout_ms = k->timeout_ms;
	o.max_body = 16 * 1024 * 1024;
	o.done_cb = cb;
	o.arg = k;
	k->req = http_request(k->relay->http, &o);
}

static void
check_api(struct check *k)
{
	struct buf	 url;

	buf_init(&url);
	graph_alerts_url(&url, k->api_url, k->source == SRC_GRAPH);
	buf_adds(&url, "?$top=1");
	check_get(k, url.data, k->token, check_api_cb);
	buf_clear(&url);
}

static void
check_probe_cb(const struct http_result *res, void *arg)
{
	struct check *k = arg;

	k->req = NULL;
	check_grant_set(k, k->probe, res);
	check_next(k);
}

/* One $top=1 call of the consent report. */
static void
check_probe(struct check *k, enum check_consent which, const char *base,
    const char *token)
{
	struct buf	 url;

	buf_init(&url);
	if (which == CONSENT_INCIDENTS)
		buf_addf(&url, "%s%s", base, graph_path(GRAPH_INCIDENTS));
	else
		graph_alerts_url(&url, base, which == CONSENT_GRAPH);
	buf_adds(&url, "?$top=1");
	k->probe = which;
	check_get(k, url.data, token, check_probe_cb);
	buf_clear(&url);
}

/* Request a token for scope with the tenant's credential; 0 or -1. */
static int
check_token(struct check *k, const char *scope, http_done_cb cb)
{
	struct http_opts o;
	struct conf_tenant ct;
	struct buf	 url, form;
	char		 err[512];

	memset(&ct, 0, sizeof(ct));
	ct.login_url = k->login_url;
	ct.tenant_id = k->tenant_id;
	ct.client_id = k->client_id;
	ct.scope = (char *)scope;
	ct.client_secret = k->secret;
	ct.certificate_file = k->cert_file;
	ct.private_key_file = k->key_file;
	ct.certificate_thumbprint = k->thumbprint;
	ct.client_assertion_file = k->assertion_file;
	buf_init(&url);
	buf_init(&form);
	if (token_request_build(&ct, &url, &form, err, sizeof(err)) == -1) {
		check_send(k, "token: FAILED: %s", err);
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
	o.done_cb = cb;
	o.arg = k;
	k->req = http_request(k->relay->http, &o);
	explicit_bzero(form.data, form.len);
	buf_clear(&form);
	buf_clear(&url);
	return 0;
}

/* The token for the other source's API: the report goes on either way. */
static void
check_other_token_cb(const struct http_result *res, void *arg)
{
	struct check	*k = arg;
	struct oauth_token ot;
	struct oauth_error e;
	char		 err[256];

	k->req = NULL;
	if (!res->failed && res->status == 200 &&
	    oauth_token_parse(res->body->data ? res->body->data : "",
	    res->body->len, &ot, err, sizeof(err)) == 0)
		k->other_token = ot.access_token;
	else {
		if (res->failed || oauth_error_parse(res->body->data ?
		    res->body->data : "", res->body->len, &e) == -1)
			memset(&e, 0, sizeof(e));
		check_send(k, "token for scope %s: FAILED: HTTP %d, "
		    "AADSTS%ld", k->other_scope, res->failed ? 0 : res->status,
		    e.aadsts);
		k->grant[k->source == SRC_GRAPH ? CONSENT_MDE :
		    CONSENT_GRAPH] = GRANT_UNKNOWN;
		if (k->grant[CONSENT_INCIDENTS] == GRANT_UNCHECKED)
			k->grant[CONSENT_INCIDENTS] = GRANT_UNKNOWN;
	}
	if (res->body != NULL && res->body->data != NULL)
		explicit_bzero(res->body->data, res->body->len);
	check_next(k);
}

/* One line of the consent report. */
static void
check_grant_line(struct check *k, enum check_consent which)
{
	const char	*word;
	char		 st[32] = "";

	if (k->grant_status[which] != 0)
		snprintf(st, sizeof(st), " (HTTP %d)", k->grant_status[which]);
	word = k->grant[which] == GRANT_YES ? "granted" :
	    k->grant[which] == GRANT_NO ? "NOT granted" : "not known";
	check_send(k, "consent: %s (%s): %s%s", consent_names[which].label,
	    consent_names[which].perm, word, k->grant[which] == GRANT_YES ?
	    "" : st);
}

/* Which APIs the consent covers, and what to ask the customer for. */
static void
check_consent_report(struct check *k)
{
	enum check_consent	 i;

	for (i = 0; i < CONSENT_N; i++)
		if (k->grant[i] != GRANT_UNCHECKED)
			check_grant_line(k, i);
	for (i = 0; i < CONSENT_N; i++) {
		if (k->grant[i] != GRANT_NO)
			continue;
		check_send(k, "consent: for %s, ask the customer to grant %s: "
		    "add it to application %s (API permissions, type "
		    "Application), then a Global Administrator of the customer "
		    "opens %s/%s/adminconsent?client_id=%s",
		    consent_names[i].label, consent_names[i].perm,
		    k->client_id, k->login_url, k->tenant_id, k->client_id);
	}
	if (k->incidents && k->grant[CONSENT_INCIDENTS] == GRANT_NO)
		check_problem(k, "permission missing", "  fix: incidents = yes "
		    "needs %s: ask the customer to grant it (above)",
		    consent_names[CONSENT_INCIDENTS].perm);
}

/*
 * The consent report's next call: Graph incidents on a Graph token, the
 * other source's API on a token of its own; then the report and the end.
 */
static void
check_next(struct check *k)
{
	bool			 graph = k->source == SRC_GRAPH;
	bool			 inc = k->incidents || graph;
	enum check_consent	 other = graph ? CONSENT_MDE : CONSENT_GRAPH;

	if (k->token == NULL)
		;		/* the tenant's own token failed */
	else if (inc && graph && k->grant[CONSENT_INCIDENTS] ==
	    GRANT_UNCHECKED) {
		check_probe(k, CONSENT_INCIDENTS, k->api_url, k->token);
		return;
	} else if (k->grant[other] == GRANT_UNCHECKED && k->other_token ==
	    NULL) {
		if (check_token(k, k->other_scope, check_other_token_cb) == 0)
			return;
		k->grant[other] = GRANT_UNKNOWN;
	} else if (k->grant[other] == GRANT_UNCHECKED) {
		check_probe(k, other, k->other_api, k->other_token);
		return;
	} else if (inc && k->grant[CONSENT_INCIDENTS] == GRANT_UNCHECKED &&
	    k->other_token != NULL) {
		check_probe(k, CONSENT_INCIDENTS, k->other_api,
		    k->other_token);
		return;
	}
	check_consent_report(k);
	check_done(k);
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

void
check_free(struct check *k)
{
	if (k == NULL)
		return;
	if (k->req != NULL)
		http_cancel(k->relay->http, k->req);
	secret_free(k->token);
	secret_free(k->other_token);
	secret_free(k->secret);
	free(k->name);
	free(k->tenant_id);
	free(k->client_id);
	free(k->login_url);
	free(k->api_url);
	free(k->scope);
	free(k->ca_file);
	free(k->cert_file);
	free(k->key_file);
	free(k->assertion_file);
	free(k->user_agent);
	free(k->other_api);
	free(k->other_scope);
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
	buf_addf(&b, "tenant %s: tenant_id %s, client_id %s, source %s%s",
	    ct->name, ct->tenant_id, ct->client_id,
	    ct->source == SRC_GRAPH ? "graph" : "mde",
	    ct->incidents ? ", incidents" : "");
	rep->line_cb(rep->arg, b.data);
	buf_reset(&b);
	buf_addf(&b, "login %s, api %s, scope %s%s", ct->login_url,
	    ct->api_url, ct->scope, ct->enabled ? "" : " (tenant disabled)");
	rep->line_cb(rep->arg, b.data);
	buf_clear(&b);
}

/* Is url's host Microsoft's (rather than a proxy or a local fake)? */
static bool
check_ms_host(const char *url)
{
	const char	*h, *e;
	size_t		 n;

	if ((h = strstr(url, "://")) == NULL)
		return false;
	h += 3;
	e = h + strcspn(h, ":/?#");
	n = (size_t)(e - h);
	return (n > 14 && strncasecmp(e - 14, ".microsoft.com", 14) == 0) ||
	    (n > 13 && strncasecmp(e - 13, ".microsoft.us", 13) == 0);
}

/*
 * The other source's API and scope, from the tenant's cloud; when api_url
 * is not a Microsoft host (a proxy, a fake) it serves both APIs.
 */
static void
check_other_api(struct check *k, const struct conf_tenant *ct)
{
	struct buf	 api, scope;

	buf_init(&api);
	buf_init(&scope);
	conf_cloud_api(ct->cloud, ct->source == SRC_GRAPH ? SRC_MDE :
	    SRC_GRAPH, &api, &scope);
	k->other_api = xstrdup(check_ms_host(ct->api_url) ? api.data :
	    ct->api_url);
	k->other_scope = xstrdup(scope.data);
	buf_clear(&api);
	buf_clear(&scope);
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
	k->assertion_file = xstrdup_or_null(ct->client_assertion_file);
	k->thumbprint = ct->certificate_thumbprint;
	k->secret = xstrdup_or_null(ct->client_secret);
	k->incidents = ct->incidents;
	k->user_agent = xstrdup_or_null(r->conf->daemon.user_agent);
	k->timeout_ms = r->conf->daemon.request_timeout_ms;
	k->source = ct->source;
	check_other_api(k, ct);
	return k;
}

/* The credential the daemon signs in with, as check-tenant names it. */
static const char *
check_credential(const struct conf_tenant *ct)
{
	if (ct->client_assertion_file != NULL)
		return "federated assertion (client_assertion_file)";
	if (ct->certificate_file != NULL)
		return ct->certificate_thumbprint == THUMB_SHA256 ?
		    "certificate (PS256, x5t#S256)" :
		    "certificate (RS256, x5t)";
	return "client secret";
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
	if (ct->client_secret == NULL && ct->certificate_file == NULL &&
	    ct->client_assertion_file == NULL)
		return check_refuse(rep, "check-tenant %s: no client secret, "
		    "certificate or client_assertion_file configured",
		    ct->name);
	k = check_new(r, ct, rep);
	check_send(k, "credential: %s", check_credential(ct));
	if (check_token(k, k->scope, check_token_cb) == -1) {
		if (k->assertion_file != NULL)
			check_problem(k, "assertion unusable", "  fix: check "
			    "client_assertion_file (owner-only, one JWT)");
		else
			check_problem(k, "certificate unusable", "  fix: check "
			    "certificate_file and private_key_file");
		check_done(k);
		return NULL;
	}
	return k;
}
