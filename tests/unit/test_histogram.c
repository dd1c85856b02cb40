/* Unit tests: the loop-lag histogram's buckets, sums and quantiles. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "histogram.h"

/* A value equal to a bound belongs to that bucket ("le"), one above not. */
static void
test_bucket_edges(void **state)
{
	struct histogram h;

	histogram_init(&h);
	histogram_add(&h, 500);
	histogram_add(&h, 501);
	histogram_add(&h, 1000);
	histogram_add(&h, 10000000);
	histogram_add(&h, 10000001);
	assert_int_equal(h.bucket[0], 1);
	assert_int_equal(h.bucket[1], 2);
	assert_int_equal(h.bucket[HISTOGRAM_NBOUNDS - 1], 1);
	assert_int_equal(h.bucket[HISTOGRAM_NBOUNDS], 1);
	assert_int_equal(h.count, 5);
	assert_int_equal(h.max_us, 10000001);
	assert_int_equal(h.sum_us, 500 + 501 + 1000 + 10000000 + 10000001);
}

/* Cumulative counts end at the total; early firings count as 0 lag. */
static void
test_cumulative(void **state)
{
	struct histogram h;
	size_t		 i;

	histogram_init(&h);
	histogram_add(&h, -40);
	histogram_add(&h, 3000);
	histogram_add(&h, 3000);
	histogram_add(&h, 60000);
	assert_int_equal(h.sum_us, 66000);
	assert_int_equal(histogram_cumulative(&h, 0), 1);	/* le 0.5 ms */
	assert_int_equal(histogram_cumulative(&h, 2), 1);	/* le 2.5 ms */
	assert_int_equal(histogram_cumulative(&h, 3), 3);	/* le 5 ms */
	assert_int_equal(histogram_cumulative(&h, 6), 3);	/* le 50 ms */
	assert_int_equal(histogram_cumulative(&h, 7), 4);	/* le 100 ms */
	assert_int_equal(histogram_cumulative(&h, HISTOGRAM_NBOUNDS), 4);
	for (i = 1; i < HISTOGRAM_NBUCKETS; i++)
		assert_true(histogram_cumulative(&h, i) >=
		    histogram_cumulative(&h, i - 1));
	for (i = 1; i < HISTOGRAM_NBOUNDS; i++)
		assert_true(histogram_bound_us(i) > histogram_bound_us(i - 1));
	assert_int_equal(histogram_bound_us(HISTOGRAM_NBOUNDS), -1);
}

/* Quantiles interpolate inside a bucket like histogram_quantile(). */
static void
test_quantile(void **state)
{
	struct histogram h;
	int		 i;

	histogram_init(&h);
	assert_int_equal(histogram_quantile(&h, 0.99), 0);
	/* 100 values in (2.5 ms, 5 ms]: p50 is halfway through it. */
	for (i = 0; i < 100; i++)
		histogram_add(&h, 4000);
	assert_int_equal(histogram_quantile(&h, 0.5), 3750);
	assert_int_equal(histogram_quantile(&h, 1), 5000);
	/* One stall of 30 s: p99 stays low, p100 is the last finite bound. */
	histogram_add(&h, 30000000);
	assert_true(histogram_quantile(&h, 0.99) <= 5000);
	assert_int_equal(histogram_quantile(&h, 1), 10000000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_edges),
		cmocka_unit_test(test_cumulative),
		cmocka_unit_test(test_quantile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
