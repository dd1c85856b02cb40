/* Unit tests for lib/util.c: the loopback test and duration parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util.h"

static void
test_loopback_yes(void **state)
{
	static const char *yes[] = {
		"127.0.0.1", "127.1.2.3", "127.255.255.255", "127.0.0.0",
		"localhost", "LocalHost", "::1", "[::1]", "0:0:0:0:0:0:0:1",
		"[0000::0001]",
	};
	size_t	 i;

	for (i = 0; i < nitems(yes); i++) {
		if (!host_is_loopback(yes[i]))
			fail_msg("%s is loopback", yes[i]);
	}
}

static void
test_loopback_no(void **state)
{
	static const char *no[] = {
		/* The prefix test this replaces took these for loopback. */
		"127.mail.example.com", "127.0.0.1.evil.example", "127.",
		"127.0.0.1:25", "127.0.0.1 ", " 127.0.0.1", "127.1",
		"0x7f.0.0.1", "0177.0.0.1", "2130706433",
		"localhost.", "localhost.example.com", "mylocalhost",
		"128.0.0.1", "126.255.255.255", "10.0.0.1", "0.0.0.0",
		"::", "[::]", "::2", "[::1", "::1]", "[[::1]]",
		"::ffff:10.0.0.1",
		"[::1%25lo]", "", "[]",
		"[0000:0000:0000:0000:0000:0000:0000:0000:0001]",
	};
	size_t	 i;

	for (i = 0; i < nitems(no); i++) {
		if (host_is_loopback(no[i]))
			fail_msg("\"%s\" is not loopback", no[i]);
	}
	assert_false(host_is_loopback(NULL));
}

static void
test_duration(void **state)
{
	int64_t	 v = -1;

	assert_int_equal(parse_duration_ms("250ms", &v), 0);
	assert_int_equal(v, 250);
	assert_int_equal(parse_duration_ms("15m", &v), 0);
	assert_int_equal(v, 900000);
	assert_int_equal(parse_duration_ms("2", &v), 0);
	assert_int_equal(v, 2000);
	assert_int_equal(parse_duration_ms("106751991167d", &v), 0);
	assert_int_equal(v, 106751991167LL * 86400000);
	/* Overflow in the suffix multiplication, and in strtoll. */
	assert_int_equal(parse_duration_ms("106751991168d", &v), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(parse_duration_ms("9223372036854775807d", &v), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(parse_duration_ms("99999999999999999999ms", &v), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(parse_duration_ms("-1s", &v), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(parse_duration_ms("1w", &v), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(parse_duration_ms("", &v), -1);
	assert_int_equal(errno, EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loopback_yes),
		cmocka_unit_test(test_loopback_no),
		cmocka_unit_test(test_duration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
