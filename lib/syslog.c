/* Syslog headers (RFC 5424 and RFC 3164), severities and stream framing. */

#include <stdio.h>
#include <time.h>

#include "encode.h"

static const char *months[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

int
cef_severity(enum severity sev)
{
	switch (sev) {
	case SEV_INFORMATIONAL:
		return (1);
	case SEV_LOW:
		return (3);
	case SEV_MEDIUM:
		return (5);
	case SEV_HIGH:
		return (8);
	default:
		return (0);
	}
}

int
syslog_severity(enum severity sev)
{
	switch (sev) {
	case SEV_HIGH:
		return (2);
	case SEV_MEDIUM:
		return (3);
	case SEV_LOW:
		return (4);
	case SEV_INFORMATIONAL:
		return (6);
	default:
		return (5);
	}
}

/* Split ticks into seconds and the non-negative sub-second remainder. */
static time_t
ticks_split(int64_t ts, int64_t *frac)
{
	*frac = ts % TICKS_PER_SEC;
	if (*frac < 0) {
		*frac += TICKS_PER_SEC;
		return ((time_t)(ts / TICKS_PER_SEC - 1));
	}
	return ((time_t)(ts / TICKS_PER_SEC));
}

/*
 * Append a header field: printable ASCII only (RFC 5424 PRINTUSASCII, and
 * no space for RFC 3164), anything else as '_', "-" when empty.
 */
static void
add_token(struct buf *out, const char *s, size_t max)
{
	size_t	 i;

	if (s == NULL || *s == '\0') {
		buf_addc(out, '-');
		return;
	}
	for (i = 0; s[i] != '\0' && i < max; i++) {
		if (s[i] > 32 && s[i] < 127)
			buf_addc(out, s[i]);
		else
			buf_addc(out, '_');
	}
}

void
syslog_header(struct buf *out, enum out_header hdr, int facility,
    int severity, int64_t ts, const char *hostname, int pid)
{
	struct tm	 tm;
	time_t		 secs;
	int64_t		 frac;

	if (hdr == HDR_NONE)
		return;
	secs = ticks_split(ts, &frac);
	buf_addf(out, "<%d>", facility * 8 + severity);
	if (hdr == HDR_RFC5424) {
		gmtime_r(&secs, &tm);
		buf_addf(out, "1 %04d-%02d-%02dT%02d:%02d:%02d.%06lldZ ",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec, (long long)(frac / 10));
		add_token(out, hostname, 255);
		buf_addf(out, " alertrelayd %d - - ", pid);
		return;
	}
	/* RFC 3164 time stamps are local time without year or zone. */
	localtime_r(&secs, &tm);
	buf_addf(out, "%s %2d %02d:%02d:%02d ", months[tm.tm_mon],
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	add_token(out, hostname, 255);
	buf_addf(out, " alertrelayd[%d]: ", pid);
}

void
frame_message(struct buf *out, enum out_framing framing, const char *msg,
    size_t len)
{
	if (framing == FRAME_OCTET) {
		buf_addf(out, "%zu ", len);
		buf_add(out, msg, len);
	} else {
		buf_add(out, msg, len);
		buf_addc(out, '\n');
	}
}
