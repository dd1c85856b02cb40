/* Unit tests: the metrics endpoint's request head parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "httpreq.h"

static enum httpreq_result
parse(const char *s, struct httpreq *r)
{
	return httpreq_parse(s, strlen(s), r);
}

static void
test_prometheus_request(void **state)
{
	struct httpreq	 r;

	assert_int_equal(parse("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9469"
	    "\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: text/plain;"
	    "version=0.0.4;q=1,*/*;q=0.1\r\nAccept-Encoding: gzip\r\n"
	    "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n", &r), HTTPREQ_OK);
	assert_string_equal(r.method, "GET");
	assert_string_equal(r.path, "/metrics");
	/* curl, bare LF lines, a query. */
	assert_int_equal(parse("HEAD /metrics?x=1 HTTP/1.0\n\n", &r),
	    HTTPREQ_OK);
	assert_string_equal(r.method, "HEAD");
	assert_string_equal(r.path, "/metrics");
}

/* Byte by byte: MORE until the blank line, then OK. */
static void
test_incremental(void **state)
{
	const char	*s = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	struct httpreq	 r;
	size_t		 i, n = strlen(s);

	for (i = 0; i < n; i++)
		assert_int_equal(httpreq_parse(s, i, &r), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(s, n, &r), HTTPREQ_OK);
}

static void
test_bad(void **state)
{
	static const char *const bad[] = {
		"\r\n\r\n",
		"GET\r\n\r\n",
		"GET /metrics\r\n\r\n",
		"get /metrics HTTP/1.1\r\n\r\n",
		"GET metrics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/2.0\r\n\r\n",
		"GET /metrics HTTP/1.1 x\r\n\r\n",
		"GET /met\x01rics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
		"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nX: a\x1b[2Jb\r\n\r\n",
		"VERYLONGMETHOD /metrics HTTP/1.1\r\n\r\n",
	};
	struct httpreq	 r;
	size_t		 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("%zu\n", i);
		assert_int_equal(parse(bad[i], &r), HTTPREQ_BAD);
	}
}

/* A head that never ends, and a path longer than we keep. */
static void
test_sizes(void **state)
{
	char		*s = malloc(HTTPREQ_MAX_HEAD + 100);
	struct httpreq	 r;

	memset(s, 'a', HTTPREQ_MAX_HEAD + 100);
	memcpy(s, "GET /metrics HTTP/1.1\r\nX: ", 26);
	assert_int_equal(httpreq_parse(s, HTTPREQ_MAX_HEAD - 1, &r),
	    HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(s, HTTPREQ_MAX_HEAD, &r),
	    HTTPREQ_TOO_LARGE);
	memcpy(s, "GET /", 5);
	memset(s + 5, 'p', 300);
	memcpy(s + 305, " HTTP/1.1\r\n\r\n", 13);
	assert_int_equal(httpreq_parse(s, 318, &r), HTTPREQ_BAD);
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prometheus_request),
		cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_sizes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
