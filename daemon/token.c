/*
 * token: the per-tenant OAuth2 client-credentials token cache.  A token is
 * used until shortly before it expires; at most one refresh per tenant is
 * in flight; Entra's AADSTS codes become messages that say what to fix.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "alertrelayd.h"

#define TOKEN_MARGIN_MS		(5 * 60 * 1000)	/* refresh 5 min early */
#define TOKEN_MIN_MARGIN_MS	(10 * 1000)

/* What an AADSTS code means for the operator, and whether to retry. */
struct aadsts_hint {
	long		 code;
	int		 permanent;
	const char	*what;
};

static const struct aadsts_hint aadsts_hints[] = {
	{ 7000215, 1, "invalid client secret: check client_secret_file "
	    "holds the secret's value (not its ID)" },
	{ 7000222, 1, "the client secret has expired: create a new secret "
	    "for the application and update client_secret_file" },
	{ 700016, 1, "the application is not known in this tenant: the "
	    "customer has not consented to it (admin consent link), or "
	    "tenant_id/client_id is wrong" },
	{ 65001, 1, "the customer has not granted consent to the "
	    "application" },
	{ 500011, 1, "the API's service principal is missing in the "
	    "tenant: Defender for Endpoint is not provisioned there, or "
	    "scope/cloud is wrong" },
	{ 650052, 1, "the tenant has no subscription for the requested "
	    "API (Defender for Endpoint not enabled)" },
	{ 90002, 1, "tenant not found: check tenant_id, or the tenant is in "
	    "another cloud (set cloud =)" },
	{ 90038, 1, "the tenant belongs to another national cloud: set "
	    "cloud = gcc-high or dod" },
	{ 700027, 1, "the client assertion signature was rejected: the "
	    "certificate is not registered on the application" },
	{ 70011, 1, "the scope is invalid: check scope =" },
	{ 7000218, 1, "no credential was sent: set client_secret_file or "
	    "certificate_file" },
	{ 53003, 1, "blocked by the customer's Conditional Access policy" },
	{ 90055, 0, "Entra is throttling this tenant" },
	{ 90024, 0, "Entra is temporarily unavailable" },
	{ 90006, 0, "Entra is temporarily unavailable" },
	{ 90033, 0, "Entra is temporarily unavailable" },
};

static const struct aadsts_hint *
aadsts_find(long code)
{
	size_t	 i;

	for (i = 0; i < nitems(aadsts_hints); i++)
		if (aadsts_hints[i].code == code)
			return &aadsts_hints[i];
	return NULL;
}

void
token_clear(struct token *tk)
{
	secret_free(tk->access);
	tk->access = NULL;
	tk->expires_ms = 0;
}

const char *
token_current(struct tenant *t)
{
	struct token	*tk = &t->token;

	if (tk->access == NULL || mono_ms() >= tk->expires_ms)
		return NULL;
	return tk->access;
}

void
token_invalidate(struct tenant *t)
{
	token_clear(&t->token);
}

static void
token_finish(struct tenant *t, int rc)
{
	void	(*cb)(void *, int) = t->token.waiter;
	void	*arg = t->token.waiter_arg;

	t->token.waiter = NULL;
	t->token.waiter_arg = NULL;
	if (cb != NULL)
		cb(arg, rc);
}

/* Seconds from a number or a numeric string ("3599"); -1 if neither. */
static long long
json_seconds(json_t *v)
{
	const char	*s;
	char		*end;
	long long	 n;

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (long long)json_real_value(v);
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	n = strtoll(s, &end, 10);
	return end == s || *end != '\0' ? -1 : n;
}

/* Parse a 200 token response into the cache; -1 with why in err. */
static int
token_parse(struct token *tk, const struct buf *body, char *err, size_t elen)
{
	json_t		*root, *at;
	json_error_t	 je;
	long long	 secs;
	int64_t		 life;

	root = json_loadb(body->data == NULL ? "" : body->data, body->len,
	    JSON_REJECT_DUPLICATES, &je);
	if (root == NULL || !json_is_object(root)) {
		snprintf(err, elen, "token response is not a JSON object "
		    "(line %d column %d: %s)", je.line, je.column, je.text);
		json_decref(root);
		return -1;
	}
	at = json_object_get(root, "access_token");
	secs = json_seconds(json_object_get(root, "expires_in"));
	if (!json_is_string(at) || json_string_length(at) == 0 ||
	    secs <= 0) {
		snprintf(err, elen, "token response lacks access_token or "
		    "a positive expires_in");
		json_decref(root);
		return -1;
	}
	token_clear(tk);
	tk->access = xstrdup(json_string_value(at));
	life = secs * 1000;
	life -= life > 2 * TOKEN_MARGIN_MS ? TOKEN_MARGIN_MS :
	    (life / 10 > TOKEN_MIN_MARGIN_MS ? life / 10 : 0);
	tk->expires_ms = mono_ms() + life;
	tk->wall_expires = ts_now() + secs * TICKS_PER_SEC;
	json_decref(root);
	return 0;
}

/* Log an Entra error body with its AADSTS code and a hint. */
static int
token_error(struct tenant *t, const struct http_result *res)
{
	json_t			*root = NULL, *codes;
	json_error_t		 je;
	const char		*error = NULL, *corr = NULL;
	const struct aadsts_hint *hint = NULL;
	struct log_ctx		 c = { .tenant = t->name };
	long			 code = 0;

	if (res->body != NULL && res->body->len > 0)
		root = json_loadb(res->body->data, res->body->len, 0, &je);
	if (json_is_object(root)) {
		error = json_string_value(json_object_get(root, "error"));
		corr = json_string_value(json_object_get(root,
		    "correlation_id"));
		codes = json_object_get(root, "error_codes");
		if (json_is_array(codes) && json_array_size(codes) > 0)
			code = (long)json_integer_value(
			    json_array_get(codes, 0));
	}
	hint = aadsts_find(code);
	c.http_status = res->status;
	c.aadsts = code;
	c.correlation_id = corr;
	if (code != 0)
		tenant_error(t, LOG_ERR, &c, "tenant %s: token request "
		    "failed: AADSTS%ld %s%s%s", t->name, code,
		    error != NULL ? error : "error",
		    hint != NULL ? ": " : "", hint != NULL ? hint->what : "");
	else
		tenant_error(t, LOG_ERR, &c, "tenant %s: token request "
		    "failed: HTTP %d%s%s from %s", t->name, res->status,
		    error != NULL ? " " : "", error != NULL ? error : "",
		    t->conf->login_url);
	json_decref(root);
	/* 4xx with a known permanent code: retrying won't help. */
	return hint != NULL ? hint->permanent :
	    (res->status >= 400 && res->status < 500 && res->status != 429);
}

static void
token_done_cb(const struct http_result *res, void *arg)
{
	struct tenant	*t = arg;
	char		 err[256];
	struct log_ctx	 c = { .tenant = t->name };

	t->token.req = NULL;
	t->auth_failed = false;
	if (res->failed) {
		tenant_error(t, LOG_WARNING, &c, "tenant %s: token request "
		    "to %s failed: %s", t->name, t->conf->login_url,
		    res->error);
		token_finish(t, -1);
		return;
	}
	if (res->status != 200) {
		t->auth_failed = token_error(t, res);
		token_finish(t, -1);
		return;
	}
	if (token_parse(&t->token, res->body, err, sizeof(err)) == -1) {
		c.http_status = res->status;
		tenant_error(t, LOG_WARNING, &c, "tenant %s: %s", t->name, err);
		token_finish(t, -1);
		return;
	}
	log_tenant(LOG_DEBUG, t->name, "tenant %s: token refreshed",
	    t->name);
	token_finish(t, 0);
}

void
token_refresh(struct tenant *t, void (*cb)(void *, int), void *arg)
{
	struct conf_tenant	*ct = t->conf;
	struct http_opts	 o;
	struct buf		 url, form;

	t->token.waiter = cb;
	t->token.waiter_arg = arg;
	if (t->token.req != NULL)
		return;		/* one refresh in flight per tenant */
	buf_init(&url);
	buf_init(&form);
	buf_addf(&url, "%s/", ct->login_url);
	http_urlencode(&url, ct->tenant_id);
	buf_adds(&url, "/oauth2/v2.0/token");
	buf_adds(&form, "grant_type=client_credentials&client_id=");
	http_urlencode(&form, ct->client_id);
	buf_adds(&form, "&scope=");
	http_urlencode(&form, ct->scope);
	buf_adds(&form, "&client_secret=");
	http_urlencode(&form, ct->client_secret != NULL ?
	    ct->client_secret : "");
	memset(&o, 0, sizeof(o));
	o.method = "POST";
	o.url = url.data;
	o.body = form.data;
	o.body_len = form.len;
	o.user_agent = t->relay->conf->daemon.user_agent;
	o.ca_file = ct->ca_file;
	o.timeout_ms = t->relay->conf->daemon.request_timeout_ms;
	o.max_body = 1024 * 1024;
	o.done_cb = token_done_cb;
	o.arg = t;
	t->token.req = http_request(t->relay->http, &o);
	explicit_bzero(form.data, form.len);
	buf_clear(&form);
	buf_clear(&url);
}
