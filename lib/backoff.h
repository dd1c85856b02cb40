/* backoff: retry delays with jitter, and the per-tenant API rate budget. */
#ifndef AR_BACKOFF_H
#define AR_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

#define BACKOFF_MIN_MS		2000
#define BACKOFF_MAX_MS		(5 * 60 * 1000)

/*
 * Delay before retry number failures (1 = first failure): doubling from
 * BACKOFF_MIN_MS to BACKOFF_MAX_MS, then jittered by +-25 % using rnd
 * (uniform in [0, 2^32)), and never shorter than retry_after_ms (-1 if
 * the server gave none).
 */
int64_t	backoff_delay(unsigned failures, int64_t retry_after_ms, uint32_t rnd);
/* ms +- pct %, using rnd uniform in [0, 2^32). */
int64_t	jitter_ms(int64_t ms, int pct, uint32_t rnd);

/*
 * The rate budget: at most per_minute requests in any 60 s and
 * RATE_PER_HOUR in any hour (the Defender API allows 100/min, 1500/h;
 * Graph 150/min).  The minute window keeps each request's time; the hour
 * window counts requests per minute, so a tenant costs under 1 KiB.
 */
#define RATE_PER_HOUR	1500
#define RATE_MAX_MINUTE	150

struct rate {
	int64_t		 base;			/* ms that t[] counts from */
	bool		 based;
	uint32_t	 t[RATE_MAX_MINUTE];	/* ms since base, a ring */
	unsigned	 head, count;
	unsigned	 per_minute;
	uint16_t	 hour[60];		/* requests per minute */
	int64_t		 hour_min;		/* minute number of hour[] head */
	unsigned	 hour_total;
};

void	rate_init(struct rate *, unsigned per_minute);
/* Change the per-minute limit, keeping the requests already counted. */
void	rate_set_limit(struct rate *, unsigned per_minute);
/* Milliseconds to wait before one more request at time now (ms). */
int64_t	rate_wait(const struct rate *, int64_t now);
void	rate_note(struct rate *, int64_t now);

#endif
