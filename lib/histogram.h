/* histogram: a fixed-bucket latency histogram with Prometheus semantics. */
#ifndef AR_HISTOGRAM_H
#define AR_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

/*
 * Upper bounds in microseconds, 0.5 ms to 10 s, plus the +Inf bucket.  A
 * value v is counted in the first bucket whose bound b has v <= b (the
 * "le" of the text format).
 */
#define HISTOGRAM_NBOUNDS	14
#define HISTOGRAM_NBUCKETS	(HISTOGRAM_NBOUNDS + 1)

struct histogram {
	uint64_t	 bucket[HISTOGRAM_NBUCKETS];	/* not cumulative */
	uint64_t	 count;
	uint64_t	 sum_us;
	int64_t		 max_us;
};

void		 histogram_init(struct histogram *);
/* Record one value in microseconds (negative counts as 0). */
void		 histogram_add(struct histogram *, int64_t us);
/* Bound of bucket i in microseconds; -1 for the +Inf bucket. */
int64_t		 histogram_bound_us(size_t i);
/* Values <= bound of bucket i (the text format's cumulative count). */
uint64_t	 histogram_cumulative(const struct histogram *, size_t i);
/*
 * Estimate of quantile q (0..1) in microseconds, interpolated linearly
 * inside the bucket as Prometheus' histogram_quantile() does; the
 * largest finite bound when it falls in +Inf; 0 when empty.
 */
int64_t		 histogram_quantile(const struct histogram *, double q);

#endif
