/* Base64 (RFC 4648 §4) and base64url (§5) over OpenSSL's block codec. */
#ifndef B64_H
#define B64_H

#include <stddef.h>

#include "util.h"

enum b64_alphabet {
	B64_STD,		/* "+/", padded with "=" */
	B64_URL,		/* "-_", no padding (RFC 7515 §2) */
};

/* Append the encoding of n bytes at p to out. */
void	 b64_encode(struct buf *out, const void *p, size_t n,
	    enum b64_alphabet);
/*
 * Append the decoding of len characters at s to out (padding optional,
 * no whitespace).  0, or -1 on a character outside the alphabet or a
 * length no encoder produces; out is then unchanged.
 */
int	 b64_decode(struct buf *out, const char *s, size_t len,
	    enum b64_alphabet);

#endif
