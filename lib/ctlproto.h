/* ctlproto: the control socket's request line, parsed without the loop. */
#ifndef AR_CTLPROTO_H
#define AR_CTLPROTO_H

#include <stddef.h>
#include <stdint.h>

/*
 * A request is one line of at most CTLPROTO_MAX_REQUEST bytes (without
 * its LF) of at most CTLPROTO_MAX_WORDS words separated by blanks (space,
 * tab, CR).  No quoting: a word is what lies between blanks.  The first
 * word is the command.
 */
#define CTLPROTO_MAX_REQUEST	4096
#define CTLPROTO_MAX_WORDS	8

enum ctlproto_cmd {
	CTLPROTO_STATUS,
	CTLPROTO_RELOAD,
	CTLPROTO_CHECK_TENANT,
	CTLPROTO_CURSOR,
	CTLPROTO_BACKFILL,
};

struct ctlproto_req {
	enum ctlproto_cmd cmd;
	int		 argc;			/* argv[0] is the command */
	char		*argv[CTLPROTO_MAX_WORDS + 1];	/* into buf */
	char		 buf[CTLPROTO_MAX_REQUEST + 1];
};

/*
 * Parse the len bytes at line (the request without its LF; not
 * NUL-terminated).  0, or -1 with a message for the client in err: an
 * empty request, one longer than CTLPROTO_MAX_REQUEST, a NUL byte, too
 * many words, an unknown command.  The message quotes at most 64 bytes
 * of the input.
 */
int	 ctlproto_parse(const char *line, size_t len, struct ctlproto_req *,
	    char *err, size_t errlen);

/*
 * An operator's time: ISO 8601 UTC ("2026-11-01T00:00:00Z", fractions
 * allowed) or a bare date ("2026-11-01", midnight UTC), as ticks.  0 or -1.
 */
int	 ctlproto_time(const char *, int64_t *);

#endif
