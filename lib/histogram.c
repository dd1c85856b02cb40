/* histogram: a fixed-bucket latency histogram with Prometheus semantics. */
#include <string.h>

#include "histogram.h"

static const int64_t bounds_us[HISTOGRAM_NBOUNDS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 5000000, 10000000,
};

void
histogram_init(struct histogram *h)
{
	memset(h, 0, sizeof(*h));
}

void
histogram_add(struct histogram *h, int64_t us)
{
	size_t	 i;

	if (us < 0)
		us = 0;
	for (i = 0; i < HISTOGRAM_NBOUNDS && us > bounds_us[i]; i++)
		;
	h->bucket[i]++;
	h->count++;
	h->sum_us += (uint64_t)us;
	if (us > h->max_us)
		h->max_us = us;
}

int64_t
histogram_bound_us(size_t i)
{
	return i < HISTOGRAM_NBOUNDS ? bounds_us[i] : -1;
}

uint64_t
histogram_cumulative(const struct histogram *h, size_t i)
{
	uint64_t n = 0;
	size_t	 j;

	for (j = 0; j <= i && j < HISTOGRAM_NBUCKETS; j++)
		n += h->bucket[j];
	return n;
}

int64_t
histogram_quantile(const struct histogram *h, double q)
{
	double	 rank, below, lo, hi;
	size_t	 i;

	if (h->count == 0)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	rank = q * (double)h->count;
	for (i = 0; i < HISTOGRAM_NBOUNDS; i++)
		if ((double)histogram_cumulative(h, i) >= rank)
			break;
	if (i == HISTOGRAM_NBOUNDS)
		return bounds_us[HISTOGRAM_NBOUNDS - 1];
	below = i == 0 ? 0 : (double)histogram_cumulative(h, i - 1);
	lo = i == 0 ? 0 : (double)bounds_us[i - 1];
	hi = (double)bounds_us[i];
	if (h->bucket[i] == 0)
		return (int64_t)hi;
	return (int64_t)(lo + (hi - lo) * (rank - below) /
	    (double)h->bucket[i]);
}
