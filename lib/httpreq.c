/* httpreq: the request head of the metrics endpoint's small HTTP server. */
#include <string.h>

#include "httpreq.h"

/* The end of the head (after its blank line), or 0 if not there yet. */
static size_t
httpreq_head_end(const char *buf, size_t len)
{
	size_t	 i;

	for (i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static bool
httpreq_token(const char *p, size_t n, char *out, size_t outlen)
{
	size_t	 i;

	if (n == 0 || n >= outlen)
		return false;
	for (i = 0; i < n; i++)
		if (p[i] < 'A' || p[i] > 'Z')
			return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

static bool
httpreq_target(const char *p, size_t n, char *out, size_t outlen)
{
	size_t	 i;

	if (n == 0 || p[0] != '/')
		return false;
	for (i = 0; i < n; i++) {
		if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
			return false;
		if (p[i] == '?' || p[i] == '#')
			break;
	}
	if (i >= outlen)
		return false;
	memcpy(out, p, i);
	out[i] = '\0';
	return true;
}

/* METHOD SP TARGET SP HTTP/1.x, then CRLF or LF. */
static bool
httpreq_line(const char *p, size_t n, struct httpreq *r)
{
	const char	*sp1, *sp2;

	if (n > 0 && p[n - 1] == '\r')
		n--;
	if ((sp1 = memchr(p, ' ', n)) == NULL)
		return false;
	if ((sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - p))) == NULL)
		return false;
	if (!httpreq_token(p, (size_t)(sp1 - p), r->method,
	    sizeof(r->method)))
		return false;
	if (!httpreq_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), r->path,
	    sizeof(r->path)))
		return false;
	n -= (size_t)(sp2 + 1 - p);
	return n == 8 && (memcmp(sp2 + 1, "HTTP/1.0", 8) == 0 ||
	    memcmp(sp2 + 1, "HTTP/1.1", 8) == 0);
}

/* Every header line is NAME: VALUE without control characters. */
static bool
httpreq_headers(const char *p, size_t n)
{
	const char	*eol, *colon;
	size_t		 l, i;

	while (n > 0) {
		if ((eol = memchr(p, '\n', n)) == NULL)
			return false;
		l = (size_t)(eol - p);
		if (l == 0 || (l == 1 && p[0] == '\r'))
			return true;
		if ((colon = memchr(p, ':', l)) == NULL || colon == p)
			return false;
		for (i = 0; i < l; i++)
			if (((unsigned char)p[i] < ' ' && p[i] != '\t' &&
			    !(p[i] == '\r' && i == l - 1)) || p[i] == 0x7f)
				return false;
		p += l + 1;
		n -= l + 1;
	}
	return false;
}

enum httpreq_result
httpreq_parse(const char *buf, size_t len, struct httpreq *r)
{
	size_t		 end, l;
	const char	*eol;

	if ((end = httpreq_head_end(buf, len)) == 0)
		return len >= HTTPREQ_MAX_HEAD ? HTTPREQ_TOO_LARGE :
		    HTTPREQ_MORE;
	if (end > HTTPREQ_MAX_HEAD)
		return HTTPREQ_TOO_LARGE;
	eol = memchr(buf, '\n', end);
	l = (size_t)(eol - buf);
	if (!httpreq_line(buf, l, r))
		return HTTPREQ_BAD;
	return httpreq_headers(eol + 1, end - l - 1) ? HTTPREQ_OK :
	    HTTPREQ_BAD;
}
