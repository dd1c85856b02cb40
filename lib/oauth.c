/* oauth: Entra ID token responses, error bodies and AADSTS hints. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "oauth.h"
#include "util.h"

/*
 * The one AADSTS table: the daemon's log line and check-tenant's diagnosis
 * both print these words.  title names the problem, what says the fix.
 */
static const struct aadsts_hint hints[] = {
	{ 7000215, 1, AADSTS_SECRET, "bad client secret",
	    "invalid client secret: check that client_secret_file holds the "
	    "secret's value (not its ID)" },
	{ 7000222, 1, AADSTS_SECRET, "expired client secret",
	    "the client secret has expired: create a new secret for the "
	    "application and update client_secret_file" },
	{ 700016, 1, AADSTS_CONSENT, "consent missing",
	    "the application is not known in this tenant: the customer has "
	    "not consented to it (send the admin consent link), or "
	    "tenant_id/client_id is wrong" },
	{ 65001, 1, AADSTS_CONSENT, "consent missing",
	    "the customer has not granted consent to the application" },
	{ 500011, 1, AADSTS_CONSENT, "API not provisioned",
	    "the API's service principal is missing in the tenant: Defender "
	    "for Endpoint is not provisioned there, or scope/cloud is wrong" },
	{ 650052, 1, AADSTS_CONSENT, "API not provisioned",
	    "the tenant has no subscription for the requested API (Defender "
	    "for Endpoint not enabled)" },
	{ 90002, 1, AADSTS_CLOUD, "wrong cloud (or tenant_id)",
	    "tenant not found: check tenant_id, or the tenant is in another "
	    "cloud (set cloud =)" },
	{ 90038, 1, AADSTS_CLOUD, "wrong cloud (or tenant_id)",
	    "the tenant belongs to another national cloud: set cloud = "
	    "gcc-high or dod" },
	{ 700027, 1, AADSTS_CERT, "certificate not accepted",
	    "the client assertion signature was rejected: the certificate is "
	    "not registered on the application" },
	{ 700024, 0, AADSTS_CERT, "assertion expired",
	    "the client assertion is outside its valid time range: with "
	    "client_assertion_file its issuer must write a fresh token; with a "
	    "certificate check this host's clock" },
	{ 700211, 1, AADSTS_FEDERATED, "federated credential not accepted",
	    "no federated credential of the application matches the issuer "
	    "of the assertion in client_assertion_file" },
	{ 700212, 1, AADSTS_FEDERATED, "federated credential not accepted",
	    "the audience of the assertion in client_assertion_file is not "
	    "api://AzureADTokenExchange" },
	{ 700213, 1, AADSTS_FEDERATED, "federated credential not accepted",
	    "no federated credential of the application matches the subject "
	    "of the assertion in client_assertion_file" },
	{ 70011, 1, AADSTS_OTHER, "bad scope",
	    "the scope is invalid: check scope =" },
	{ 7000218, 1, AADSTS_OTHER, "no credential",
	    "no credential was sent: set client_secret_file, "
	    "client_assertion_file or certificate_file" },
	{ 53003, 1, AADSTS_OTHER, "blocked by Conditional Access",
	    "blocked by the customer's Conditional Access policy" },
	{ 90055, 0, AADSTS_THROTTLED, "throttled",
	    "Entra is throttling requests for this tenant" },
	{ 90024, 0, AADSTS_OTHER, "Entra is failing",
	    "Entra is temporarily unavailable" },
	{ 90006, 0, AADSTS_OTHER, "Entra is failing",
	    "Entra is temporarily unavailable" },
	{ 90033, 0, AADSTS_OTHER, "Entra is failing",
	    "Entra is temporarily unavailable" },
};

const struct aadsts_hint *
aadsts_hint(long code)
{
	size_t	 i;

	for (i = 0; i < nitems(hints); i++)
		if (hints[i].code == code)
			return &hints[i];
	return NULL;
}

/* Seconds from a number or a numeric string ("3599"); -1 if neither. */
static long long
json_seconds(json_t *v)
{
	const char	*s;
	char		*end;
	long long	 n;
	double		 d;

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v)) {
		/* 1e308 or NaN would be undefined as an integer. */
		d = json_real_value(v);
		return d >= 0 && d < 1e18 ? (long long)d : -1;
	}
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	n = strtoll(s, &end, 10);
	return end == s || *end != '\0' ? -1 : n;
}

int
oauth_token_parse(const char *body, size_t len, struct oauth_token *tk,
    char *err, size_t errlen)
{
	json_t		*root, *at;
	json_error_t	 je;
	long long	 secs;

	memset(tk, 0, sizeof(*tk));
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL || !json_is_object(root)) {
		if (root == NULL)
			snprintf(err, errlen, "token response is not JSON "
			    "(line %d column %d: %s)", je.line, je.column,
			    je.text);
		else
			snprintf(err, errlen, "token response is not a JSON "
			    "object");
		json_decref(root);
		return -1;
	}
	at = json_object_get(root, "access_token");
	secs = json_seconds(json_object_get(root, "expires_in"));
	if (!json_is_string(at) || json_string_length(at) == 0) {
		snprintf(err, errlen, "token response has no access_token");
		json_decref(root);
		return -1;
	}
	if (secs <= 0 || secs > 86400 * 366) {
		snprintf(err, errlen, "token response has no valid "
		    "expires_in");
		json_decref(root);
		return -1;
	}
	tk->access_token = xstrdup(json_string_value(at));
	tk->expires_in = secs;
	json_decref(root);
	return 0;
}

static void
copy_str(char *dst, size_t len, json_t *v)
{
	if (json_is_string(v))
		snprintf(dst, len, "%s", json_string_value(v));
}

int
oauth_error_parse(const char *body, size_t len, struct oauth_error *e)
{
	json_t		*root, *codes;
	json_error_t	 je;

	memset(e, 0, sizeof(*e));
	root = json_loadb(body, len, 0, &je);
	if (!json_is_object(root)) {
		json_decref(root);
		return -1;
	}
	copy_str(e->error, sizeof(e->error), json_object_get(root, "error"));
	copy_str(e->correlation_id, sizeof(e->correlation_id),
	    json_object_get(root, "correlation_id"));
	copy_str(e->trace_id, sizeof(e->trace_id),
	    json_object_get(root, "trace_id"));
	codes = json_object_get(root, "error_codes");
	if (json_is_array(codes) && json_is_integer(json_array_get(codes, 0)))
		e->aadsts = (long)json_integer_value(json_array_get(codes, 0));
	json_decref(root);
	return 0;
}

int
api_error_parse(const char *body, size_t len, struct api_error *e)
{
	json_t		*root, *o;
	json_error_t	 je;

	memset(e, 0, sizeof(*e));
	root = json_loadb(body, len, 0, &je);
	o = json_object_get(root, "error");
	if (!json_is_object(o)) {
		json_decref(root);
		return -1;
	}
	copy_str(e->code, sizeof(e->code), json_object_get(o, "code"));
	copy_str(e->message, sizeof(e->message),
	    json_object_get(o, "message"));
	copy_str(e->target, sizeof(e->target), json_object_get(o, "target"));
	json_decref(root);
	return 0;
}

long long
oauth_refresh_after(long long expires_in)
{
	if (expires_in > 600)
		return expires_in - 300;
	return expires_in - expires_in / 10;
}
