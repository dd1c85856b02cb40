/* Unit tests: retry delays and the per-tenant rate budget. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void
test_doubling_and_cap(void **state)
{
	/* rnd = 2^31 is the middle of the jitter range: no jitter. */
	assert_int_equal(backoff_delay(1, -1, 1U << 31), 2000);
	assert_int_equal(backoff_delay(2, -1, 1U << 31), 4000);
	assert_int_equal(backoff_delay(5, -1, 1U << 31), 32000);
	assert_int_equal(backoff_delay(9, -1, 1U << 31), BACKOFF_MAX_MS);
	assert_int_equal(backoff_delay(1000, -1, 1U << 31), BACKOFF_MAX_MS);
}

static void
test_jitter_bounds(void **state)
{
	assert_int_equal(backoff_delay(1, -1, 0), 1500);
	assert_true(backoff_delay(1, -1, UINT32_MAX) <= 2500);
	assert_true(backoff_delay(1, -1, UINT32_MAX) > 2490);
	assert_int_equal(jitter_ms(60000, 10, 0), 54000);
}

/* Retry-After wins when it asks for longer. */
static void
test_retry_after(void **state)
{
	assert_int_equal(backoff_delay(1, 30000, 1U << 31), 30000);
	assert_int_equal(backoff_delay(1, 100, 1U << 31), 2000);
}

/* 100 calls in a minute, then wait for the oldest to age out. */
static void
test_rate_minute(void **state)
{
	static struct rate r;
	int64_t		 now = 1000000;
	int		 i;

	rate_init(&r, 100);
	for (i = 0; i < 100; i++) {
		assert_int_equal(rate_wait(&r, now + i), 0);
		rate_note(&r, now + i);
	}
	assert_int_equal(rate_wait(&r, now + 100), 60000 - 100);
	assert_int_equal(rate_wait(&r, now + 60000), 0);
}

/* A new limit (source changed on reload) keeps the calls counted. */
static void
test_rate_set_limit(void **state)
{
	static struct rate r;
	int64_t		 now = 1000000;
	int		 i;

	rate_init(&r, 150);
	for (i = 0; i < 120; i++)
		rate_note(&r, now + i);
	assert_int_equal(rate_wait(&r, now + 120), 0);
	rate_set_limit(&r, 100);
	/* The 100th-newest call was at now + 20. */
	assert_int_equal(rate_wait(&r, now + 120), 60000 - 100);
	rate_set_limit(&r, 150);
	assert_int_equal(rate_wait(&r, now + 120), 0);
}

/* 1,500 calls in an hour even when spread under 100/min. */
static void
test_rate_hour(void **state)
{
	static struct rate r;
	int64_t		 now = 0;
	int		 i;

	rate_init(&r, 100);
	for (i = 0; i < 1500; i++) {
		now = (int64_t)i * 1000;	/* 60 per minute */
		assert_int_equal(rate_wait(&r, now), 0);
		rate_note(&r, now);
	}
	assert_int_equal(rate_wait(&r, now + 1000), 3600000 - 1500000);
	assert_int_equal(rate_wait(&r, 3600000), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubling_and_cap),
		cmocka_unit_test(test_jitter_bounds),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_rate_minute),
		cmocka_unit_test(test_rate_set_limit),
		cmocka_unit_test(test_rate_hour),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
