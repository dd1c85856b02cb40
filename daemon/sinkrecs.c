/* Outputs: the records sent on a connection and not yet acknowledged. */

#include <string.h>

#include "internal.h"
#include "sink_int.h"

/* Remember a record that now sits in the output buffer. */
void
sinkrecs_push(struct sink_recs *rs, const struct spool_pos *end,
    uint64_t end_off, uint32_t txnr)
{
	if (rs->first > 0 && rs->n == rs->cap) {
		memmove(rs->v, rs->v + rs->first,
		    (rs->n - rs->first) * sizeof *rs->v);
		rs->n -= rs->first;
		rs->tcp -= rs->first;
		rs->first = 0;
	}
	if (rs->n == rs->cap) {
		rs->cap = rs->cap == 0 ? 64 : rs->cap * 2;
		rs->v = xreallocarray(rs->v, rs->cap, sizeof *rs->v);
	}
	rs->v[rs->n].end = *end;
	rs->v[rs->n].end_off = end_off;
	rs->v[rs->n].acked_at = 0;
	rs->v[rs->n].txnr = txnr;
	rs->n++;
}

/* Records sent and not acknowledged in the spool. */
size_t
sinkrecs_pending(const struct sink_recs *rs)
{
	return rs->n - rs->first;
}

/* The connection is gone: forget them all (the spool still has them). */
void
sinkrecs_clear(struct sink_recs *rs)
{
	rs->first = rs->tcp = rs->n = 0;
}

/*
 * The peer's TCP stack holds the bytes before done: note now as the
 * acknowledgement of the records they end; true when there were any.
 */
bool
sinkrecs_reach(struct sink_recs *rs, uint64_t done, int64_t now)
{
	bool	 any = false;

	while (rs->tcp < rs->n && rs->v[rs->tcp].end_off <= done) {
		rs->v[rs->tcp++].acked_at = now;
		any = true;
	}
	return any;
}

/*
 * Take off the held records that the peer has had for hold_ms, or with
 * hold_bytes acknowledged after them (0, 0: every held one).  Returns how
 * many, the position after the last one in *end.
 */
uint64_t
sinkrecs_release(struct sink_recs *rs, uint64_t done, int64_t now,
    int64_t hold_ms, uint64_t hold_bytes, struct spool_pos *end)
{
	struct sink_rec	*r;
	uint64_t	 n = 0;

	while (rs->first < rs->tcp) {
		r = &rs->v[rs->first];
		if (now - r->acked_at < hold_ms &&
		    done - r->end_off < hold_bytes)
			break;
		*end = r->end;
		rs->first++;
		n++;
	}
	if (rs->first == rs->n)
		sinkrecs_clear(rs);
	return n;
}

/*
 * RELP: take off the leading records answered "200" (acked_at set), in
 * order.  Returns how many, the position after the last one in *end.
 */
uint64_t
sinkrecs_answered(struct sink_recs *rs, struct spool_pos *end)
{
	uint64_t	 n = 0;

	while (rs->first < rs->n && rs->v[rs->first].acked_at != 0) {
		*end = rs->v[rs->first++].end;
		n++;
	}
	if (rs->first == rs->n)
		sinkrecs_clear(rs);
	return n;
}
