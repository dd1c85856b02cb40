/* Sanitising untrusted text to clean UTF-8 and escaping it for CEF. */

#include <string.h>

#include "encode.h"
#include "log.h"

static const char replacement[] = "\xef\xbf\xbd";	/* U+FFFD */

void
sanitize_utf8(struct buf *out, const char *s, size_t len)
{
	const unsigned char	*p = (const unsigned char *)s, *end = p + len;
	char			*o;
	size_t			 n;
	int			 ok;

	if (len > (SIZE_MAX - 1) / 3)
		fatalx("%s: value too long", __func__);
	buf_reserve(out, len * 3);
	o = out->data + out->len;
	while (p < end) {
		if (*p >= 0x20 && *p < 0x7f) {
			*o++ = (char)*p++;
			continue;
		}
		if (*p == '\t' || *p == '\n' || *p == '\r') {
			*o++ = (char)*p++;
			continue;
		}
		n = utf8_seq(p, (size_t)(end - p), &ok);
		/* C0 controls, DEL and C1 (U+0080..U+009F) are replaced too. */
		if (!ok || n == 1 || (p[0] == 0xc2 && p[1] < 0xa0)) {
			memcpy(o, replacement, 3);
			o += 3;
		} else {
			memcpy(o, p, n);
			o += n;
		}
		p += n;
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
}

size_t
utf8_prefix(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return (len);
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return (max);
}

/*
 * CEF escaping.  In the header CR, LF and TAB become a space, and
 * backslash and '|' get a backslash; in the extension CR and LF become
 * the two characters \r and \n, and backslash and '=' get a backslash.
 */
static void
cef_escape(struct buf *out, const char *s, size_t len, int ext)
{
	const char	*special = ext ? "\\=" : "\\|";
	char		*o, c;
	size_t		 i;

	buf_reserve(out, len * 2);
	o = out->data + out->len;
	for (i = 0; i < len; i++) {
		c = s[i];
		if (ext && (c == '\r' || c == '\n')) {
			*o++ = '\\';
			*o++ = c == '\r' ? 'r' : 'n';
		} else if (!ext && (c == '\r' || c == '\n' || c == '\t'))
			*o++ = ' ';
		else {
			if (c == special[0] || c == special[1])
				*o++ = '\\';
			*o++ = c;
		}
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
}

void
cef_escape_header(struct buf *out, const char *s, size_t len)
{
	cef_escape(out, s, len, 0);
}

void
cef_escape_ext(struct buf *out, const char *s, size_t len)
{
	cef_escape(out, s, len, 1);
}
