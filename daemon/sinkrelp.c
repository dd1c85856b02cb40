/* Outputs over RELP: the session's transactions and its responses. */

#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "relp.h"
#include "sink_int.h"

/* The next transaction number (1..999999999, then 1 again). */
static uint32_t
sinkrelp_next(struct sinkrelp *r)
{
	if (++r->txnr > RELP_TXNR_MAX)
		r->txnr = 1;
	return r->txnr;
}

/* A new session: its "open" command into frame; records may follow. */
void
sinkrelp_open(struct sinkrelp *r, struct buf *frame)
{
	r->txnr = 0;
	r->rsp_at = mono_ms();
	buf_reset(frame);
	relp_frame(frame, sinkrelp_next(r), "open", RELP_OFFERS,
	    strlen(RELP_OFFERS));
}

/*
 * One record as a "syslog" command, into frame; idle: no record was
 * waiting for its response, so the response timeout starts now.
 */
void
sinkrelp_frame(struct sinkrelp *r, struct buf *frame, const char *msg,
    size_t len, bool idle)
{
	if (idle)
		r->rsp_at = mono_ms();
	relp_frame(frame, sinkrelp_next(r), "syslog", msg, len);
}

/* A response: mark its record (or the open) answered, or say why not. */
static int
sinkrelp_rsp(struct sinkrelp *r, struct sink_recs *recs,
    const struct relp_msg *m, char *why, size_t whylen)
{
	size_t	 i;
	int	 tl = (int)(m->textlen > 200 ? 200 : m->textlen);

	r->rsp_at = mono_ms();
	for (i = recs->first; i < recs->n; i++) {
		if (recs->v[i].txnr == m->txnr)
			break;
	}
	if (m->code != 200) {
		snprintf(why, whylen, "RELP server answered %d %.*s to %s",
		    m->code, tl, m->text, i < recs->n ? "a record" :
		    "the session's open");
		return -1;
	}
	if (i < recs->n)
		recs->v[i].acked_at = r->rsp_at;
	return 0;
}

/*
 * Bytes from a RELP server: each "rsp 200" marks its record answered
 * (acked_at); the caller acknowledges them in the spool, in order.
 */
enum sinkrelp_input
sinkrelp_input(struct sinkrelp *r, struct sink_recs *recs, const char *data,
    size_t len, char *why, size_t whylen)
{
	struct relp_msg	 m;
	const char	*bad = NULL;
	long		 n;
	size_t		 off = 0;

	buf_add(&r->in, data, len);
	while ((n = relp_parse(r->in.data + off, r->in.len - off, &m,
	    &bad)) > 0) {
		off += (size_t)n;
		if (strcmp(m.cmd, "serverclose") == 0)
			return SINKRELP_CLOSED;
		if (strcmp(m.cmd, "rsp") == 0 &&
		    sinkrelp_rsp(r, recs, &m, why, whylen) == -1)
			return SINKRELP_FAILED;
	}
	if (n == -1) {
		snprintf(why, whylen, "%s", bad);
		return SINKRELP_FAILED;
	}
	memmove(r->in.data, r->in.data + off, r->in.len - off);
	r->in.len -= off;
	return SINKRELP_OK;
}
