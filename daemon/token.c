/*
 * token: the per-tenant OAuth2 client-credentials token cache.  A token is
 * used until shortly before it expires; at most one refresh per tenant is
 * in flight; Entra's AADSTS codes become messages that say what to fix.
 * Certificate tenants authenticate with a client-assertion JWT signed
 * afresh for every request; credentials about to expire are warned about.
 *
 * Credentials are part of a token's identity: the cached token and the
 * request in flight each carry the fingerprint of the credentials they
 * were made for, and neither is used once the tenant's fingerprint
 * differs (token_reset cancels the request on a credential change).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "internal.h"
#include "jwt.h"
#include "oauth.h"

#define EXPIRY_WARN_DAYS	30
/* A federated assertion this close to its exp is warned about. */
#define ASSERTION_WARN_SEC	300
#define JWT_BEARER	"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

void
token_clear(struct token *tk)
{
	secret_free(tk->access);
	tk->access = NULL;
	tk->expires_ms = 0;
	tk->wall_expires = 0;
}

/* Add one length-prefixed field (NULL differs from "") to a digest. */
static void
fp_field(EVP_MD_CTX *md, const char *s)
{
	uint32_t	 len = s != NULL ? (uint32_t)strlen(s) + 1 : 0;

	EVP_DigestUpdate(md, &len, sizeof(len));
	if (s != NULL)
		EVP_DigestUpdate(md, s, len);
}

void
token_fingerprint(const struct conf_tenant *ct, unsigned char *fp)
{
	EVP_MD_CTX	*md;
	unsigned int	 n = TOKEN_FP_LEN;

	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		fatalx("token fingerprint: out of memory");
	fp_field(md, ct->tenant_id);
	fp_field(md, ct->client_id);
	fp_field(md, ct->client_secret);
	fp_field(md, ct->certificate_file);
	fp_field(md, ct->private_key_file);
	fp_field(md, ct->certificate_thumbprint == THUMB_SHA256 ? "sha256" :
	    "sha1");
	fp_field(md, ct->client_assertion_file);
	fp_field(md, ct->login_url);
	fp_field(md, ct->scope);
	fp_field(md, ct->ca_file);
	EVP_DigestFinal_ex(md, fp, &n);
	EVP_MD_CTX_free(md);
}

static bool
token_fp_current(const struct token *tk, const unsigned char *fp)
{
	return CRYPTO_memcmp(fp, tk->cred_fp, TOKEN_FP_LEN) == 0;
}

const char *
token_current(struct tenant *t)
{
	struct token	*tk = &t->token;

	if (tk->access != NULL && !token_fp_current(tk, tk->fp))
		token_clear(tk);	/* made for other credentials */
	if (tk->access == NULL || mono_ms() >= tk->expires_ms)
		return NULL;
	return tk->access;
}

void
token_invalidate(struct tenant *t)
{
	token_clear(&t->token);
}

void
token_reset(struct tenant *t)
{
	token_clear(&t->token);
	if (t->token.req != NULL) {
		http_cancel(t->relay->http, t->token.req);
		t->token.req = NULL;
	}
}

static void
token_finish(struct tenant *t, int rc)
{
	if (t->token.done_cb != NULL)
		t->token.done_cb(t, rc);
}

/* Store a parsed token in the cache. */
static void
token_store(struct token *tk, struct oauth_token *ot)
{
	token_clear(tk);
	memcpy(tk->fp, tk->req_fp, TOKEN_FP_LEN);
	tk->access = ot->access_token;
	ot->access_token = NULL;
	tk->expires_ms = mono_ms() + oauth_refresh_after(ot->expires_in) *
	    1000;
	tk->wall_expires = ts_now() + ot->expires_in * TICKS_PER_SEC;
}

/* For a rejected assertion: which certificate the portal must list. */
static const char *
token_cert_hint(struct tenant *t, long aadsts)
{
	static char		 hint[600];
	struct jwt_cert_info	 ci;
	char			 err[256];

	if (t->conf->certificate_file == NULL || (aadsts != 700027 &&
	    aadsts != 700024) || jwt_cert_info(t->conf->certificate_file,
	    &ci, err, sizeof(err)) == -1)
		return "";
	snprintf(hint, sizeof(hint), " (certificate_file %s, thumbprint "
	    "%s)", t->conf->certificate_file, ci.sha1_hex);
	return hint;
}

/* Log an Entra error with its AADSTS code; 1 if retrying cannot help. */
static int
token_error(struct tenant *t, const struct http_result *res)
{
	struct oauth_error	 e;
	const struct aadsts_hint *hint;
	struct log_ctx		 c = { .tenant = t->name };
	const char		*body = res->body->data ? res->body->data : "";

	if (oauth_error_parse(body, res->body->len, &e) == -1)
		memset(&e, 0, sizeof(e));
	hint = aadsts_hint(e.aadsts);
	c.http_status = res->status;
	c.aadsts = e.aadsts;
	c.correlation_id = e.correlation_id[0] ? e.correlation_id : NULL;
	if (e.aadsts != 0)
		tenant_error(t, LOG_ERR, &c, "tenant %s: token request "
		    "failed: AADSTS%ld %s%s%s%s", t->name, e.aadsts,
		    e.error[0] ? e.error : "error", hint ? ": " : "",
		    hint ? hint->what : "", token_cert_hint(t, e.aadsts));
	else
		tenant_error(t, LOG_ERR, &c, "tenant %s: token request "
		    "failed: HTTP %d%s%s from %s", t->name, res->status,
		    e.error[0] ? " " : "", e.error, t->conf->login_url);
	if (hint != NULL)
		return hint->permanent;
	return res->status >= 400 && res->status < 500 && res->status != 429;
}

/* Read a token answer into the cache: an enum token_result (logged). */
static int
token_answer(struct tenant *t, const struct http_result *res)
{
	char		 err[256];
	struct log_ctx	 c = { .tenant = t->name };
	struct oauth_token ot;

	tenant_note_sunset(t, res, "Entra ID token");
	if (res->failed) {
		tenant_error(t, LOG_WARNING, &c, "tenant %s: token request "
		    "to %s failed: %s", t->name, t->conf->login_url,
		    res->error);
		return TOKEN_FAILED;
	}
	if (res->status != 200)
		return token_error(t, res) ? TOKEN_REJECTED : TOKEN_FAILED;
	if (oauth_token_parse(res->body->data ? res->body->data : "",
	    res->body->len, &ot, err, sizeof(err)) == -1) {
		c.http_status = res->status;
		tenant_error(t, LOG_WARNING, &c, "tenant %s: %s", t->name, err);
		return TOKEN_FAILED;
	}
	token_store(&t->token, &ot);
	log_tenant(LOG_DEBUG, t->name, "token refreshed");
	return TOKEN_OK;
}

static void
token_done_cb(const struct http_result *res, void *arg)
{
	struct tenant	*t = arg;
	int		 rc;

	t->token.req = NULL;
	/* An answer for other credentials is dropped unread: ask again. */
	if (!token_fp_current(&t->token, t->token.req_fp)) {
		if (res->body != NULL && res->body->data != NULL)
			explicit_bzero(res->body->data, res->body->len);
		token_refresh(t);
		return;
	}
	rc = token_answer(t, res);
	/* The body held the access token: wipe it before http frees it. */
	if (res->body != NULL && res->body->data != NULL)
		explicit_bzero(res->body->data, res->body->len);
	token_finish(t, rc);
}

/* Add client_assertion_type and client_assertion (wiped) to a form. */
static void
form_assertion(struct buf *form, struct buf *jwt)
{
	buf_adds(form, "&client_assertion_type=");
	http_urlencode(form, JWT_BEARER);
	buf_adds(form, "&client_assertion=");
	http_urlencode(form, jwt->data);
	explicit_bzero(jwt->data, jwt->len);
	buf_clear(jwt);
}

/*
 * Build a token request for these credentials: the URL and the form.  A
 * certificate's client assertion is a JWT for the token URL as audience,
 * signed with the key read afresh, so that a certificate renewed on disk
 * is used without a reload (RS256 + x5t, or PS256 + x5t#S256 with
 * certificate_thumbprint = sha256).  A federated assertion is the
 * external JWT in client_assertion_file, read afresh for every request
 * (its issuer renews it).  0, or -1 with err.
 */
int
token_request_build(const struct conf_tenant *ct, struct buf *url,
    struct buf *form, char *err, size_t errlen)
{
	struct jwt_signer	*s;
	struct buf		 jwt;
	enum jwt_alg		 alg;

	buf_addf(url, "%s/", ct->login_url);
	http_urlencode(url, ct->tenant_id);
	buf_adds(url, "/oauth2/v2.0/token");
	buf_adds(form, "grant_type=client_credentials&client_id=");
	http_urlencode(form, ct->client_id);
	buf_adds(form, "&scope=");
	http_urlencode(form, ct->scope);
	buf_init(&jwt);
	if (ct->client_assertion_file != NULL) {
		if (jwt_assertion_load(ct->client_assertion_file, &jwt, err,
		    errlen) == -1)
			return -1;
		form_assertion(form, &jwt);
		return 0;
	}
	if (ct->certificate_file == NULL) {
		buf_adds(form, "&client_secret=");
		http_urlencode(form, ct->client_secret != NULL ?
		    ct->client_secret : "");
		return 0;
	}
	if ((s = jwt_signer_load(ct->certificate_file, ct->private_key_file,
	    err, errlen)) == NULL)
		return -1;
	alg = ct->certificate_thumbprint == THUMB_SHA256 ? JWT_PS256 :
	    JWT_RS256;
	if (jwt_assertion(&jwt, s, alg, url->data, ct->client_id,
	    ts_now() / TICKS_PER_SEC, err, errlen) == -1) {
		jwt_signer_free(s);
		buf_clear(&jwt);
		return -1;
	}
	jwt_signer_free(s);
	form_assertion(form, &jwt);
	return 0;
}

/*
 * A federated assertion that has expired or is about to: the token
 * request will fail (AADSTS700024), and the fix is on the issuer's side.
 */
static void
token_assertion_warn(struct tenant *t)
{
	struct log_ctx	 c = { .tenant = t->name };
	struct buf	 jwt;
	char		 err[512], when[96];
	int64_t		 exp, now = ts_now() / TICKS_PER_SEC;

	buf_init(&jwt);
	if (t->conf->client_assertion_file == NULL ||
	    jwt_assertion_load(t->conf->client_assertion_file, &jwt, err,
	    sizeof(err)) == -1) {
		buf_clear(&jwt);
		return;
	}
	exp = jwt_exp(jwt.data);
	explicit_bzero(jwt.data, jwt.len);
	buf_clear(&jwt);
	if (exp == -1 || exp > now + ASSERTION_WARN_SEC)
		return;
	ts_format(exp * TICKS_PER_SEC, when, sizeof(when));
	log_ctx(LOG_WARNING, &c, "tenant %s: the federated assertion in %s "
	    "%s %s (exp); the token request will fail until its issuer "
	    "writes a fresh one", t->name, t->conf->client_assertion_file,
	    exp <= now ? "expired at" : "expires at", when);
}

void
token_refresh(struct tenant *t)
{
	struct conf_tenant	*ct = t->conf;
	struct http_opts	 o;
	struct buf		 url, form;
	char			 err[512];

	if (t->token.req != NULL)
		return;		/* one refresh in flight per tenant */
	buf_init(&url);
	buf_init(&form);
	token_assertion_warn(t);
	if (token_request_build(ct, &url, &form, err, sizeof(err)) == -1) {
		tenant_error(t, LOG_ERR, &(struct log_ctx){ .tenant = t->name },
		    "tenant %s: %s authentication: %s", t->name,
		    ct->client_assertion_file != NULL ? "federated" :
		    "certificate", err);
		explicit_bzero(form.data, form.len);
		buf_clear(&form);
		buf_clear(&url);
		token_finish(t, TOKEN_REJECTED);
		return;
	}
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
	memcpy(t->token.req_fp, t->token.cred_fp, TOKEN_FP_LEN);
	t->token.req = http_request(t->relay->http, &o);
	explicit_bzero(form.data, form.len);
	buf_clear(&form);
	buf_clear(&url);
}

/* "2026-03-01 (in 12 days)" / "(3 days ago)" for an epoch-seconds date. */
static void
expiry_text(int64_t when, int64_t now, char *out, size_t len)
{
	struct tm	 tm;
	time_t		 w = (time_t)when;
	char		 date[32];
	int64_t		 days;

	if (gmtime_r(&w, &tm) == NULL ||
	    strftime(date, sizeof(date), "%Y-%m-%d", &tm) == 0)
		snprintf(date, sizeof(date), "%lld", (long long)when);
	days = (when - now) / 86400;
	if (when <= now)
		snprintf(out, len, "expired on %s (%lld days ago)", date,
		    (long long)-days);
	else
		snprintf(out, len, "expires on %s (in %lld day%s)", date,
		    (long long)days, days == 1 ? "" : "s");
}

void
token_check_expiry(struct tenant *t)
{
	struct conf_tenant	*ct = t->conf;
	struct jwt_cert_info	 ci;
	struct log_ctx		 c = { .tenant = t->name };
	int64_t			 now = ts_now() / TICKS_PER_SEC;
	int64_t			 warn = now + EXPIRY_WARN_DAYS * 86400;
	char			 err[512], when[96];

	t->token.cred_expires = 0;
	if (ct->certificate_file != NULL) {
		if (jwt_cert_info(ct->certificate_file, &ci, err,
		    sizeof(err)) == -1)
			log_ctx(LOG_WARNING, &c, "tenant %s: %s", t->name,
			    err);
		else {
			t->token.cred_expires = ci.not_after;
			expiry_text(ci.not_after, now, when, sizeof(when));
			if (ci.not_after < warn)
				log_ctx(LOG_WARNING, &c, "tenant %s: the "
				    "certificate %s (thumbprint %s) %s; "
				    "register a new certificate on the "
				    "application and update certificate_file "
				    "and private_key_file", t->name,
				    ct->certificate_file, ci.sha1_hex, when);
		}
	}
	if (ct->secret_expires != 0 && ct->certificate_file == NULL) {
		if (t->token.cred_expires == 0 ||
		    ct->secret_expires < t->token.cred_expires)
			t->token.cred_expires = ct->secret_expires;
		expiry_text(ct->secret_expires, now, when, sizeof(when));
		if (ct->secret_expires < warn)
			log_ctx(LOG_WARNING, &c, "tenant %s: the client "
			    "secret %s (secret_expires); create a new secret "
			    "for the application and update "
			    "client_secret_file", t->name, when);
	}
}
