/*
 * relp.c: the RELP protocol (rsyslog's Reliable Event Logging Protocol,
 * as imrelp speaks it): command frames out, response frames in.  No I/O:
 * sink.c sends and receives on its own sockets (plain or TLS).
 */
#ifndef RELP_H
#define RELP_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* What alertrelayd offers in its open command. */
#define RELP_OFFERS	"relp_version=0\nrelp_software=alertrelayd\n" \
			"commands=syslog"
#define RELP_TXNR_MAX	999999999

/* Append "TXNR SP COMMAND SP DATALEN [SP DATA] LF" to out. */
void	relp_frame(struct buf *out, uint32_t txnr, const char *cmd,
	    const char *data, size_t len);

/* One frame from the server. */
struct relp_msg {
	uint32_t	 txnr;
	char		 cmd[32];	/* "rsp", "serverclose", ... */
	int		 code;		/* rsp: 200, 500, ...; else 0 */
	const char	*text;		/* rsp: the rest of its first line */
	size_t		 textlen;
};

/*
 * Parse one frame at the start of data: its length (> 0) when complete,
 * 0 when more bytes are needed, -1 when it is not RELP (why says what).
 */
long	relp_parse(const char *data, size_t len, struct relp_msg *,
	    const char **why);

#endif
