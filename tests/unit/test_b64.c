/* Unit tests for lib/b64.c: RFC 4648 §10 vectors, base64url, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"

static const struct {
	const char	*plain;
	const char	*std;
	const char	*url;
} vec[] = {
	{ "", "", "" },
	{ "f", "Zg==", "Zg" },
	{ "fo", "Zm8=", "Zm8" },
	{ "foo", "Zm9v", "Zm9v" },
	{ "foob", "Zm9vYg==", "Zm9vYg" },
	{ "fooba", "Zm9vYmE=", "Zm9vYmE" },
	{ "foobar", "Zm9vYmFy", "Zm9vYmFy" },
	{ "\xfb\xff\xbf", "+/+/", "-_-_" },
};

static void
test_rfc4648(void **state)
{
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	for (i = 0; i < nitems(vec); i++) {
		buf_reset(&b);
		b64_encode(&b, vec[i].plain, strlen(vec[i].plain), B64_STD);
		assert_string_equal(b.len ? b.data : "", vec[i].std);
		buf_reset(&b);
		b64_encode(&b, vec[i].plain, strlen(vec[i].plain), B64_URL);
		assert_string_equal(b.len ? b.data : "", vec[i].url);
		buf_reset(&b);
		assert_int_equal(b64_decode(&b, vec[i].std,
		    strlen(vec[i].std), B64_STD), 0);
		assert_int_equal(b.len, strlen(vec[i].plain));
		assert_memory_equal(b.len ? b.data : "", vec[i].plain, b.len);
		buf_reset(&b);
		assert_int_equal(b64_decode(&b, vec[i].url,
		    strlen(vec[i].url), B64_URL), 0);
		assert_int_equal(b.len, strlen(vec[i].plain));
		assert_memory_equal(b.len ? b.data : "", vec[i].plain, b.len);
	}
	buf_clear(&b);
}

/* Every byte value and every length across the 768-byte chunk seam. */
static void
test_roundtrip(void **state)
{
	unsigned char	 in[2000];
	struct buf	 e, d;
	size_t		 i, n;
	int		 a;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + 3);
	buf_init(&e);
	buf_init(&d);
	for (a = B64_STD; a <= B64_URL; a++) {
		for (n = 0; n <= sizeof(in); n += (n < 800 ? 1 : 97)) {
			buf_reset(&e);
			buf_reset(&d);
			b64_encode(&e, in, n, a);
			assert_int_equal(b64_decode(&d, e.data, e.len, a), 0);
			assert_int_equal(d.len, n);
			if (n > 0)
				assert_memory_equal(d.data, in, n);
		}
	}
	buf_clear(&e);
	buf_clear(&d);
}

static void
test_bad(void **state)
{
	static const char *bad_std[] = {
		"Z", "Zm9vY", "Zm9v!A==", "Zg=", "Z===", "Zm-_", "Zg==Zg==",
		"Zm 9v",
	};
	static const char *bad_url[] = { "Zm+/", "Z", "Zm9v\n" };
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	buf_adds(&b, "kept");
	for (i = 0; i < nitems(bad_std); i++) {
		if (b64_decode(&b, bad_std[i], strlen(bad_std[i]),
		    B64_STD) != -1)
			fail_msg("\"%s\" decoded", bad_std[i]);
		assert_string_equal(b.data, "kept");
	}
	for (i = 0; i < nitems(bad_url); i++) {
		if (b64_decode(&b, bad_url[i], strlen(bad_url[i]),
		    B64_URL) != -1)
			fail_msg("\"%s\" decoded as base64url", bad_url[i]);
		assert_string_equal(b.data, "kept");
	}
	/* Appends after what the buffer held. */
	assert_int_equal(b64_decode(&b, "IQ", 2, B64_URL), 0);
	assert_string_equal(b.data, "kept!");
	buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
