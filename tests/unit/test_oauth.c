/* Unit tests: Entra token responses, error bodies, AADSTS hints. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "oauth.h"
#include "util.h"

static int
parse(const char *body, struct oauth_token *tk, char *err)
{
	return oauth_token_parse(body, strlen(body), tk, err, 256);
}

/* The v2 response of the reference, expires_in a number. */
static void
test_token_v2_number(void **state)
{
	struct oauth_token tk;
	char		 err[256];

	assert_int_equal(parse("{\"token_type\":\"Bearer\",\"expires_in\":"
	    "3599,\"ext_expires_in\":0,\"access_token\":\"eyJ0eXAi.abc\"}",
	    &tk, err), 0);
	assert_string_equal(tk.access_token, "eyJ0eXAi.abc");
	assert_int_equal(tk.expires_in, 3599);
	secret_free(tk.access_token);
}

/* v1 endpoints send numbers as strings. */
static void
test_token_v1_string(void **state)
{
	struct oauth_token tk;
	char		 err[256];

	assert_int_equal(parse("{\"token_type\":\"Bearer\",\"expires_in\":"
	    "\"3599\",\"expires_on\":\"1488720683\",\"access_token\":\"t\"}",
	    &tk, err), 0);
	assert_int_equal(tk.expires_in, 3599);
	secret_free(tk.access_token);
}

static void
test_token_bad(void **state)
{
	struct oauth_token tk;
	char		 err[256];

	assert_int_equal(parse("<html>", &tk, err), -1);
	assert_non_null(strstr(err, "not JSON"));
	assert_int_equal(parse("[1]", &tk, err), -1);
	assert_non_null(strstr(err, "not a JSON object"));
	assert_int_equal(parse("{\"expires_in\":3599}", &tk, err), -1);
	assert_non_null(strstr(err, "access_token"));
	assert_int_equal(parse("{\"access_token\":\"x\",\"expires_in\":"
	    "\"soon\"}", &tk, err), -1);
	assert_non_null(strstr(err, "expires_in"));
	assert_int_equal(parse("{\"access_token\":\"x\",\"expires_in\":-5}",
	    &tk, err), -1);
	assert_int_equal(parse("{\"access_token\":\"x\",\"access_token\":"
	    "\"y\",\"expires_in\":5}", &tk, err), -1);
	assert_null(tk.access_token);
}

/* The verbatim error body of the reference (invalid_scope). */
static void
test_error_body(void **state)
{
	const char	*body = "{\"error\": \"invalid_scope\", "
	    "\"error_description\": \"AADSTS70011: The provided value ...\", "
	    "\"error_codes\": [70011], \"timestamp\": \"2016-01-09 02:02:12Z\","
	    " \"trace_id\": \"255d1aef-8c98-452f-ac51-23d051240864\", "
	    "\"correlation_id\": \"fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\"}";
	struct oauth_error e;

	assert_int_equal(oauth_error_parse(body, strlen(body), &e), 0);
	assert_string_equal(e.error, "invalid_scope");
	assert_int_equal(e.aadsts, 70011);
	assert_string_equal(e.correlation_id,
	    "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7");
	assert_int_equal(oauth_error_parse("nope", 4, &e), -1);
	assert_int_equal(oauth_error_parse("{\"error_codes\":\"x\"}", 19, &e),
	    0);
	assert_int_equal(e.aadsts, 0);
}

/* The Defender API's error body of the reference (ResourceNotFound). */
static void
test_api_error_body(void **state)
{
	const char	*body = "{\"error\": {\"code\": \"ResourceNotFound\", "
	    "\"message\": \"Machine 123123123 was not found\", \"target\": "
	    "\"43f4cb08-8fac-4b65-9db1-745c2ae65f3a\"}}";
	struct api_error e;

	assert_int_equal(api_error_parse(body, strlen(body), &e), 0);
	assert_string_equal(e.code, "ResourceNotFound");
	assert_string_equal(e.message, "Machine 123123123 was not found");
	assert_string_equal(e.target, "43f4cb08-8fac-4b65-9db1-745c2ae65f3a");
	assert_int_equal(api_error_parse("<html>", 6, &e), -1);
	assert_int_equal(api_error_parse("{\"error\":\"x\"}", 13, &e), -1);
	assert_string_equal(e.code, "");
}

/* The codes operators meet most say what to fix. */
static void
test_hints(void **state)
{
	assert_non_null(strstr(aadsts_hint(7000215)->what, "secret"));
	assert_true(aadsts_hint(7000215)->permanent);
	assert_non_null(strstr(aadsts_hint(7000222)->what, "expired"));
	assert_non_null(strstr(aadsts_hint(700016)->what, "consent"));
	assert_non_null(strstr(aadsts_hint(90038)->what, "cloud"));
	assert_false(aadsts_hint(90055)->permanent);
	assert_null(aadsts_hint(12345));
	assert_null(aadsts_hint(0));
}

/*
 * One table for the daemon's log and check-tenant: every code has a title
 * and a fix, the kinds check-tenant adds to are right, and codes with the
 * same meaning share the title.
 */
static void
test_hint_table(void **state)
{
	static const long codes[] = { 7000215, 7000222, 700016, 65001,
	    500011, 650052, 90002, 90038, 700027, 700024, 700211, 700212,
	    700213, 70011, 7000218, 53003, 90055, 90024, 90006, 90033 };
	const struct aadsts_hint *h;
	size_t		 i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		h = aadsts_hint(codes[i]);
		assert_non_null(h);
		assert_int_equal(h->code, codes[i]);
		assert_true(h->title != NULL && h->title[0] != '\0');
		assert_true(h->what != NULL && strlen(h->what) > 10);
	}
	assert_string_equal(aadsts_hint(7000215)->title, "bad client secret");
	assert_int_equal(aadsts_hint(7000215)->kind, AADSTS_SECRET);
	assert_non_null(strstr(aadsts_hint(7000215)->what,
	    "client_secret_file"));
	assert_string_equal(aadsts_hint(7000222)->title,
	    "expired client secret");
	assert_int_equal(aadsts_hint(700016)->kind, AADSTS_CONSENT);
	assert_int_equal(aadsts_hint(65001)->kind, AADSTS_CONSENT);
	assert_string_equal(aadsts_hint(700016)->title,
	    aadsts_hint(65001)->title);
	assert_int_equal(aadsts_hint(90002)->kind, AADSTS_CLOUD);
	assert_string_equal(aadsts_hint(90002)->title,
	    aadsts_hint(90038)->title);
	assert_int_equal(aadsts_hint(700027)->kind, AADSTS_CERT);
	assert_int_equal(aadsts_hint(700211)->kind, AADSTS_FEDERATED);
	assert_int_equal(aadsts_hint(90055)->kind, AADSTS_THROTTLED);
	assert_true(aadsts_hint(700027)->permanent);
	assert_false(aadsts_hint(700024)->permanent);
	assert_false(aadsts_hint(90024)->permanent);
}

static void
test_refresh_margin(void **state)
{
	assert_int_equal(oauth_refresh_after(3599), 3299);
	assert_int_equal(oauth_refresh_after(60), 54);
	assert_true(oauth_refresh_after(1) >= 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_v2_number),
		cmocka_unit_test(test_token_v1_string),
		cmocka_unit_test(test_token_bad),
		cmocka_unit_test(test_error_body),
		cmocka_unit_test(test_api_error_body),
		cmocka_unit_test(test_hints),
		cmocka_unit_test(test_hint_table),
		cmocka_unit_test(test_refresh_margin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
