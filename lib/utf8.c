/* UTF-8: how many bytes one (valid or invalid) sequence takes. */

#include "utf8.h"

/*
 * Bytes taken by the UTF-8 sequence at s: its length when it is a valid,
 * shortest-form scalar value (*ok set), else the length of its maximal
 * invalid prefix, which is what one U+FFFD replaces (Unicode 3.9, "best
 * practice", which CPython follows).
 */
size_t
utf8_seq(const unsigned char *s, size_t len, int *ok)
{
	unsigned char	 c = s[0], lo = 0x80, hi = 0xbf;
	size_t		 n, i;

	*ok = 0;
	if (c < 0x80) {
		*ok = 1;
		return (1);
	}
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;		/* overlong */
		else if (c == 0xed)
			hi = 0x9f;		/* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;		/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;		/* above U+10FFFF */
	} else
		return (1);
	for (i = 1; i < n; i++) {
		if (i >= len || s[i] < lo || s[i] > hi)
			return (i);
		lo = 0x80;
		hi = 0xbf;
	}
	*ok = 1;
	return (n);
}
