/* backoff: retry delays with jitter, and the per-tenant API rate budget. */
#include <string.h>

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
	memset(r, 0, sizeof(*r));
	r->per_minute = per_minute == 0 ? 1 : per_minute;
	if (r->per_minute > RATE_MAX_MINUTE)
		r->per_minute = RATE_MAX_MINUTE;
	r->based = false;
}

void
rate_set_limit(struct rate *r, unsigned per_minute)
{
	r->per_minute = per_minute == 0 ? 1 : per_minute;
	if (r->per_minute > RATE_MAX_MINUTE)
		r->per_minute = RATE_MAX_MINUTE;
}

/* Requests in the hour ending at minute m (counts older minutes out). */
static unsigned
rate_hour_count(const struct rate *r, int64_t m, int64_t *oldest)
{
	unsigned	 total = 0;
	int64_t		 i;

	*oldest = -1;
	for (i = m - 59; i <= m; i++) {
		if (i < 0 || i < r->hour_min - 59 || i > r->hour_min)
			continue;
		if (r->hour[(uint64_t)i % 60] != 0 && *oldest == -1)
			*oldest = i;
		total += r->hour[(uint64_t)i % 60];
	}
	return total;
}

int64_t
rate_wait(const struct rate *r, int64_t now)
{
	int64_t	 t, wait = 0, oldest;

	if (!r->based)
		return 0;
	if (r->count >= r->per_minute) {
		t = r->base + r->t[(r->head + RATE_MAX_MINUTE - r->per_minute) %
		    RATE_MAX_MINUTE];
		if (now - t < 60000)
			wait = 60000 - (now - t);
	}
	if (rate_hour_count(r, now / 60000, &oldest) >= RATE_PER_HOUR &&
	    oldest >= 0) {
		t = (oldest + 60) * 60000;	/* that minute leaves the hour */
		if (t - now > wait)
			wait = t - now;
	}
	return wait;
}

void
rate_note(struct rate *r, int64_t now)
{
	int64_t	 m = now / 60000, i;

	if (!r->based || now - r->base > (int64_t)UINT32_MAX / 2) {
		/* Rebase: keep the minute window's times meaningful. */
		int64_t	 nb = now - 120000;
		unsigned k;

		for (k = 0; k < RATE_MAX_MINUTE && r->based; k++)
			r->t[k] = r->base + r->t[k] < nb ? 0 :
			    (uint32_t)(r->base + r->t[k] - nb);
		r->base = nb;
		r->based = true;
	}
	r->t[r->head] = (uint32_t)(now - r->base);
	r->head = (r->head + 1) % RATE_MAX_MINUTE;
	if (r->count < RATE_MAX_MINUTE)
		r->count++;
	/* Clear the minutes that left the hour since the last note. */
	for (i = r->hour_min + 1; i <= m && i <= r->hour_min + 60; i++)
		r->hour[(uint64_t)i % 60] = 0;
	if (m > r->hour_min)
		r->hour_min = m;
	r->hour[(uint64_t)m % 60]++;
}
