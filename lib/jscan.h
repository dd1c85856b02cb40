/*
 * A small JSON scanner over a complete buffer: values are read in place,
 * one token at a time, and strings are decoded only when asked for.
 */
#ifndef AR_JSCAN_H
#define AR_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Containers nested deeper than this are an error. */
#define JSCAN_MAXDEPTH	64

/* A string's raw bytes between the quotes, or a number's text. */
struct jstr {
	const char	*p;		/* NULL: absent */
	size_t		 len;
	bool		 esc;		/* holds backslash escapes */
};

struct jscan {
	const char	*base;
	const char	*p;
	const char	*end;
	unsigned	 depth;
	const char	*err;		/* static text; NULL while no error */
	size_t		 err_off;	/* byte offset of the error */
};

void	 jscan_init(struct jscan *, const char *, size_t);
/* Enter the object or array at the cursor ('{' or '[' per c). */
int	 jscan_open(struct jscan *, int c);
/*
 * Step through an entered object: 1 with the key read and the cursor on
 * the value, 0 after the closing '}', -1 on error.  *n counts members and
 * must start at 0.  The caller reads or skips each value.
 */
int	 jscan_member(struct jscan *, unsigned *n, struct jstr *key);
/* The same for an entered array: 1 with the cursor on the element. */
int	 jscan_element(struct jscan *, unsigned *n);
/* Read a string (escapes checked, not decoded) or a number. */
int	 jscan_string(struct jscan *, struct jstr *);
int	 jscan_number(struct jscan *, struct jstr *);
/* Skip one value of any type, checking its syntax. */
int	 jscan_skip(struct jscan *);
/* Only white space may follow. */
int	 jscan_end(struct jscan *);
/* Record an error at the cursor (the first one stays); returns -1. */
int	 jscan_fail(struct jscan *, const char *);

/*
 * Decode a string's raw bytes into out, which has room for len bytes (the
 * decoded form is never longer).  Surrogate pairs become one UTF-8
 * sequence, a lone surrogate U+FFFD, \u0000 a NUL byte; other bytes are
 * copied as they are.  A malformed escape is copied raw.  Returns the
 * decoded length.
 */
size_t	 jscan_unescape(const char *, size_t, char *out);
/* Does the string s decode to exactly the len bytes of v? */
bool	 jstr_eq(const struct jstr *s, const char *v, size_t len);

/*
 * Word-at-a-time helpers: JSCAN_ZEROS(v) sets bit 7 of exactly the bytes
 * of v that are zero; jscan_first gives the memory index of the first.
 */
#define JSCAN_ONES	0x0101010101010101ULL
#define JSCAN_LOW7	0x7f7f7f7f7f7f7f7fULL
#define JSCAN_ZEROS(v)	\
	(~((((v) & JSCAN_LOW7) + JSCAN_LOW7) | (v) | JSCAN_LOW7))

static inline int
jscan_first(uint64_t m)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return __builtin_clzll(m) / 8;
#else
	return __builtin_ctzll(m) / 8;
#endif
}

/* Skip white space; the next byte, or -1 at the end. */
static inline int
jscan_peek(struct jscan *js)
{
	const char	*p = js->p, *e = js->end;
	uint64_t	 m;

	while (p < e) {
		if (*p == ' ' && e - p >= 8) {	/* runs of indentation */
			memcpy(&m, p, sizeof m);
			m = JSCAN_ZEROS(m ^ (JSCAN_ONES * ' '));
			m = ~m & (JSCAN_ONES << 7);	/* not a space */
			p += m == 0 ? 8 : jscan_first(m);
		} else if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
			p++;
		else
			break;
	}
	js->p = p;
	return p < e ? (unsigned char)*p : -1;
}

/*
 * The next '"' or '\\' in string bytes [p, end), or end.  The first 64
 * bytes are read a word at a time (most strings are short); past them
 * memchr takes over, with *quote caching the next '"' (start with NULL)
 * so that a string full of escapes is not searched again and again for
 * its closing quote.
 */
static inline const char *
jscan_special(const char *p, const char *end, const char **quote)
{
	const char	*q = *quote, *b;
	uint64_t	 w, m;
	int		 n;

	for (n = 0; n < 8 && end - p >= 8; n++, p += 8) {
		memcpy(&w, p, sizeof w);
		m = JSCAN_ZEROS(w ^ (JSCAN_ONES * '"')) |
		    JSCAN_ZEROS(w ^ (JSCAN_ONES * '\\'));
		if (m != 0)
			return p + jscan_first(m);
	}
	if (n < 8) {			/* fewer than 8 bytes left */
		for (; p < end; p++) {
			if (*p == '"' || *p == '\\')
				return p;
		}
		return end;
	}
	if (q == NULL || q < p) {
		q = memchr(p, '"', end - p);
		if (q == NULL)
			q = end;
		*quote = q;
	}
	b = memchr(p, '\\', q - p);
	return b != NULL ? b : q;
}

#endif
