/*
 * RELP, the protocol alone (see relp.h).
 *
 * Why not librelp: Debian's librelp 1.11 client (relpCltSendSyslog) queues
 * a message into its window and blocks inside the library, in its own
 * select() loop, whenever the window is full or a connection is being
 * made; it exposes no socket to watch and, above all, no per-message
 * acknowledgement: the application never learns which messages got their
 * "rsp 200" (librelp keeps unacknowledged frames in memory and resends
 * them itself after relpCltReconnect, which is lost with the process).
 * A record may leave alertrelayd's spool only on its own "rsp 200", so
 * the client is this small implementation of the framing on the sink's
 * existing non-blocking sockets (plain or TLS), driven by the loop.
 *
 * Frames (RFC-style, from librelp's doc/relp.html):
 *   TXNR SP COMMAND SP DATALEN [SP DATA] TRAILER
 * TXNR 1..999999999, COMMAND [a-z]{1,32}, DATALEN 0..9 digits, TRAILER LF.
 * A response is "TXNR rsp DATALEN CODE SP TEXT [LF offers]"; the server
 * may send "0 serverclose 0" before it goes away.
 */

#include <stdio.h>
#include <string.h>

#include "relp.h"

#define RELP_MAX_DATALEN	(128 * 1024 * 1024)

void
relp_frame(struct buf *out, uint32_t txnr, const char *cmd,
    const char *data, size_t len)
{
	buf_addf(out, "%u %s %zu", (unsigned)txnr, cmd, len);
	if (len > 0) {
		buf_addc(out, ' ');
		buf_add(out, data, len);
	}
	buf_addc(out, '\n');
}

/* Digits at *pp (at most max of them) followed by a space or LF. */
static int
relp_number(const char **pp, const char *end, int max, unsigned long *v)
{
	const char	*p = *pp;
	int		 n = 0;

	*v = 0;
	while (p < end && *p >= '0' && *p <= '9') {
		if (++n > max)
			return -1;
		*v = *v * 10 + (unsigned long)(*p++ - '0');
	}
	if (p == end)
		return 0;
	if (n == 0)
		return -1;
	*pp = p;
	return 1;
}

long
relp_parse(const char *data, size_t len, struct relp_msg *m,
    const char **why)
{
	const char	*p = data, *end = data + len, *d, *nl;
	unsigned long	 txnr, dlen;
	size_t		 n = 0;
	int		 r;

	memset(m, 0, sizeof *m);
	if ((r = relp_number(&p, end, 9, &txnr)) <= 0)
		goto number;
	if (*p++ != ' ')
		goto bad;
	while (p < end && *p >= 'a' && *p <= 'z' && n < sizeof m->cmd - 1)
		m->cmd[n++] = *p++;
	if (p == end)
		return 0;
	if (n == 0 || *p++ != ' ')
		goto bad;
	if ((r = relp_number(&p, end, 9, &dlen)) <= 0)
		goto number;
	if (dlen > RELP_MAX_DATALEN)
		goto bad;
	if (dlen > 0 && *p++ != ' ')
		goto bad;
	if ((size_t)(end - p) < dlen + 1)
		return 0;
	d = p;
	if (d[dlen] != '\n')
		goto bad;
	m->txnr = (uint32_t)txnr;
	if (strcmp(m->cmd, "rsp") == 0 && dlen >= 3) {
		if (d[0] < '1' || d[0] > '5' || d[1] < '0' || d[1] > '9' ||
		    d[2] < '0' || d[2] > '9')
			goto bad;
		m->code = (d[0] - '0') * 100 + (d[1] - '0') * 10 + d[2] - '0';
		m->text = d + 3 + (dlen > 3 && d[3] == ' ');
		nl = memchr(m->text, '\n', (size_t)(d + dlen - m->text));
		m->textlen = (size_t)((nl != NULL ? nl : d + dlen) - m->text);
	}
	return (long)(d + dlen + 1 - data);
number:
	if (r == 0)
		return 0;
bad:
	*why = "not a RELP frame";
	return -1;
}
