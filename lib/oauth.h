/*
 * oauth: parsing Entra ID token responses and error bodies, and what each
 * AADSTS code means for the operator.
 */
#ifndef AR_OAUTH_H
#define AR_OAUTH_H

#include <stddef.h>

struct oauth_token {
	char		*access_token;	/* secret: free with secret_free */
	long long	 expires_in;	/* seconds */
};

/*
 * Parse a successful token response: access_token and expires_in (a
 * number or a numeric string, as v1 endpoints send).  0, or -1 with err.
 */
int	oauth_token_parse(const char *, size_t, struct oauth_token *,
	    char *err, size_t errlen);

struct oauth_error {
	char		 error[64];		/* "invalid_client" ... */
	char		 correlation_id[64];
	char		 trace_id[64];
	long		 aadsts;		/* first of error_codes, 0 */
};

/* Parse an Entra error body; fields stay empty when absent.  0 or -1. */
int	oauth_error_parse(const char *, size_t, struct oauth_error *);

/* A Defender or Graph API error body: {"error":{"code","message","target"}}. */
struct api_error {
	char		 code[64];
	char		 message[256];
	char		 target[64];		/* the correlation id */
};

/* Parse an API error body; fields stay empty when absent.  0 or -1. */
int	api_error_parse(const char *, size_t, struct api_error *);

/* What kind of problem an AADSTS code is (what else to tell about it). */
enum aadsts_kind {
	AADSTS_OTHER,
	AADSTS_SECRET,		/* client_secret_file */
	AADSTS_CONSENT,		/* the admin consent link helps */
	AADSTS_CLOUD,		/* tenant_id or cloud */
	AADSTS_CERT,		/* certificate_file (or the assertion's time) */
	AADSTS_FEDERATED,	/* client_assertion_file */
	AADSTS_THROTTLED,	/* retry later */
};

/* What an AADSTS code means, and whether retrying can help. */
struct aadsts_hint {
	long		 code;
	int		 permanent;
	enum aadsts_kind kind;
	const char	*title;		/* "bad client secret" */
	const char	*what;		/* what to fix */
};

const struct aadsts_hint *aadsts_hint(long code);

/*
 * The seconds until a token is refreshed: a margin before expiry (5 min,
 * or a tenth of short lifetimes).
 */
long long oauth_refresh_after(long long expires_in);

#endif
