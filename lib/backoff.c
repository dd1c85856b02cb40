/* backoff: retry delays with jitter, and the per-tenant API rate budget. */
#include "backoff.h"

int64_t
jitter_ms(int64_t ms, int pct, uint32_t rnd)
{
	int64_t	 span = ms * pct / 100;

	if (span <= 0)
		return ms;
	return ms - span + (int64_t)((uint64_t)rnd * (uint64_t)(2 * span) >>
	    32);
}

int64_t
backoff_delay(unsigned failures, int64_t retry_after_ms, uint32_t rnd)
{
	int64_t	 delay = BACKOFF_MIN_MS;
	unsigned i;

	for (i = 1; i < failures && delay < BACKOFF_MAX_MS; i++)
		delay *= 2;
	if (delay > BACKOFF_MAX_MS)
		delay = BACKOFF_MAX_MS;
	delay = jitter_ms(delay, 25, rnd);
	if (retry_after_ms > delay)
		delay = retry_after_ms;
	return delay;
}

void
rate_init(struct rate *r, unsigned per_minute)
{
	r->head = r->count = 0;
	r->per_minute = per_minute == 0 ? 1 : per_minute;
	if (r->per_minute > RATE_PER_HOUR)
		r->per_minute = RATE_PER_HOUR;
}

/* Time of the request n places back (1 = the newest). */
static int64_t
rate_back(const struct rate *r, unsigned n)
{
	return r->t[(r->head + RATE_PER_HOUR - n) % RATE_PER_HOUR];
}

int64_t
rate_wait(const struct rate *r, int64_t now)
{
	int64_t	 t, wait = 0;

	if (r->count >= r->per_minute) {
		t = rate_back(r, r->per_minute);
		if (now - t < 60000)
			wait = 60000 - (now - t);
	}
	if (r->count >= RATE_PER_HOUR) {
		t = rate_back(r, RATE_PER_HOUR);
		if (now - t < 3600000 && 3600000 - (now - t) > wait)
			wait = 3600000 - (now - t);
	}
	return wait;
}

void
rate_note(struct rate *r, int64_t now)
{
	r->t[r->head] = now;
	r->head = (r->head + 1) % RATE_PER_HOUR;
	if (r->count < RATE_PER_HOUR)
		r->count++;
}
