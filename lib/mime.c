/* MIME for notification mails: RFC 2045 quoted-printable, RFC 2047 headers. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "b64.h"
#include "encode.h"
#include "mime.h"

#define WORD_OPEN	"=?UTF-8?B?"
#define WORD_CLOSE	"?="
#define WORD_FRAME	(sizeof(WORD_OPEN) - 1 + sizeof(WORD_CLOSE) - 1)

void
mime_one_line(struct buf *out, const char *s, size_t max)
{
	struct buf	 b;
	size_t		 i, len;
	unsigned char	 c;

	buf_init(&b);
	sanitize_utf8(&b, s, strlen(s));
	len = b.len > max ? utf8_prefix(b.data, b.len, max) : b.len;
	for (i = 0; i < len; i++) {
		c = (unsigned char)b.data[i];
		buf_addc(out, c < 0x20 || c == 0x7f ? ' ' : (char)c);
	}
	if (len < b.len)
		buf_adds(out, "\xe2\x80\xa6");
	buf_clear(&b);
}

/* Bytes of text that fit in one encoded word taking at most cols columns. */
static size_t
word_bytes(size_t cols)
{
	size_t	 chars;

	if (cols > MIME_WORD_MAX)
		cols = MIME_WORD_MAX;
	if (cols < WORD_FRAME + 4)
		return 0;
	chars = cols - WORD_FRAME;
	return chars / 4 * 3;
}

/* value as encoded words; col is where the first one starts. */
static void
header_words(struct buf *out, const char *value, size_t len, size_t col)
{
	const char	*p = value;
	size_t		 n, room;

	while (len > 0) {
		room = word_bytes(MIME_HEADER_LINE - col);
		n = room > 0 ? utf8_prefix(p, len, room) : 0;
		if (n == 0 && col > 1) {
			buf_adds(out, "\r\n ");	/* fold, retry the line */
			col = 1;
			continue;
		}
		if (n == 0)			/* not UTF-8: keep going */
			n = len < room ? len : room;
		buf_adds(out, WORD_OPEN);
		b64_encode(out, p, n, B64_STD);
		buf_adds(out, WORD_CLOSE);
		p += n;
		len -= n;
		if (len > 0) {
			buf_adds(out, "\r\n ");
			col = 1;
		}
	}
}

/*
 * ASCII value, folded (RFC 5322 2.2.3: CRLF before a space) where a line
 * would pass MIME_HEADER_LINE; a single longer word stays whole.
 */
static void
header_ascii(struct buf *out, const char *v, size_t len, size_t col)
{
	size_t	 i = 0, w;

	while (i < len) {
		for (w = i + 1; w < len && v[w] != ' '; w++)
			;
		if (v[i] == ' ' && col + (w - i) > MIME_HEADER_LINE &&
		    col > 1) {
			buf_adds(out, "\r\n");
			col = 0;
		}
		buf_add(out, v + i, w - i);
		col += w - i;
		i = w;
	}
}

void
mime_header(struct buf *out, const char *name, const char *value)
{
	struct buf	 v;
	size_t		 i;
	bool		 ascii = true;
	unsigned char	 c;

	buf_init(&v);
	for (i = 0; value[i] != '\0'; i++) {
		c = (unsigned char)value[i];
		if (c >= 0x80)
			ascii = false;
		buf_addc(&v, c < 0x20 || c == 0x7f ? ' ' : (char)c);
	}
	buf_addf(out, "%s: ", name);
	if (ascii)
		header_ascii(out, v.data, v.len, strlen(name) + 2);
	else
		header_words(out, v.data, v.len, strlen(name) + 2);
	buf_adds(out, "\r\n");
	buf_clear(&v);
}

void
mime_qp(struct buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		 i, col = 0, w;
	unsigned char	 c;
	bool		 eol;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '\n') {
			buf_adds(out, "\r\n");
			col = 0;
			continue;
		}
		eol = i + 1 == len || s[i + 1] == '\n';
		w = (c >= 33 && c <= 126 && c != '=') ||
		    ((c == ' ' || c == '\t') && !eol) ? 1 : 3;
		if (col + w > MIME_QP_LINE - 1) {
			buf_adds(out, "=\r\n");
			col = 0;
		}
		if (w == 1)
			buf_addc(out, (char)c);
		else {
			buf_addc(out, '=');
			buf_addc(out, hex[c >> 4]);
			buf_addc(out, hex[c & 15]);
		}
		col += w;
	}
	if (len == 0 || s[len - 1] != '\n')
		buf_adds(out, "\r\n");
}

char *
mime_bare_address(const char *s)
{
	const char	*lt = strrchr(s, '<'), *gt;

	if (lt != NULL && (gt = strchr(lt, '>')) != NULL)
		return xstrndup(lt + 1, (size_t)(gt - lt - 1));
	while (*s == ' ')
		s++;
	return xstrdup(s);
}

void
mime_date(struct buf *out, time_t t)
{
	static const char *days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
	    "Sat" };
	static const char *mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm	 tm;

	gmtime_r(&t, &tm);
	buf_addf(out, "%s, %02d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday], tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
}
