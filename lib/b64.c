/* Base64 and base64url: the one codec, on OpenSSL's EVP block functions. */
#include <string.h>

#include <openssl/evp.h>

#include "b64.h"

#define B64_CHUNK	768		/* bytes per EVP call: 1024 characters */

void
b64_encode(struct buf *out, const void *p, size_t n, enum b64_alphabet a)
{
	const unsigned char	*s = p;
	size_t			 chunk, i, start;
	int			 got;

	start = out->len;
	while (n > 0) {
		chunk = n < B64_CHUNK ? n : B64_CHUNK;
		buf_reserve(out, (chunk + 2) / 3 * 4);
		got = EVP_EncodeBlock((unsigned char *)out->data + out->len,
		    s, (int)chunk);
		out->len += (size_t)got;
		out->data[out->len] = '\0';
		s += chunk;
		n -= chunk;
	}
	if (a != B64_URL)
		return;
	while (out->len > start && out->data[out->len - 1] == '=')
		out->data[--out->len] = '\0';
	for (i = start; i < out->len; i++) {
		if (out->data[i] == '+')
			out->data[i] = '-';
		else if (out->data[i] == '/')
			out->data[i] = '_';
	}
}

/* Copy len characters into std alphabet, padded; -1 on a bad one. */
static int
b64_normalise(struct buf *t, const char *s, size_t len, enum b64_alphabet a)
{
	size_t	 i, pad = 0;
	char	 c;

	while (len > 0 && s[len - 1] == '=' && pad < 2) {
		len--;
		pad++;
	}
	if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0))
		return -1;
	for (i = 0; i < len; i++) {
		c = s[i];
		if (a == B64_URL && c == '-')
			c = '+';
		else if (a == B64_URL && c == '_')
			c = '/';
		else if ((a == B64_URL && (c == '+' || c == '/')) ||
		    !(c == '+' || c == '/' || (c >= '0' && c <= '9') ||
		    (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
			return -1;
		buf_addc(t, c);
	}
	while (t->len % 4 != 0)
		buf_addc(t, '=');
	return 0;
}

int
b64_decode(struct buf *out, const char *s, size_t len, enum b64_alphabet a)
{
	struct buf	 t;
	size_t		 pad, n;
	int		 got, rv = -1;

	buf_init(&t);
	if (b64_normalise(&t, s, len, a) == -1)
		goto done;
	if (t.len == 0) {
		rv = 0;
		goto done;
	}
	pad = (t.data[t.len - 1] == '=') + (t.data[t.len - 2] == '=');
	buf_reserve(out, t.len / 4 * 3);
	got = EVP_DecodeBlock((unsigned char *)out->data + out->len,
	    (unsigned char *)t.data, (int)t.len);
	if (got < 0 || (size_t)got < pad)
		goto done;
	n = (size_t)got - pad;	/* EVP counts the padding's zero bytes */
	out->len += n;
	out->data[out->len] = '\0';
	rv = 0;
done:
	buf_clear(&t);
	return rv;
}
