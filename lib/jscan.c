/* The in-place JSON scanner used to read alert objects without a tree. */

#include <stdint.h>
#include <string.h>

#include "jscan.h"

#define IS_DIGIT(c)	((c) >= '0' && (c) <= '9')

void
jscan_init(struct jscan *js, const char *p, size_t len)
{
	js->base = js->p = p;
	js->end = p + len;
	js->depth = 0;
	js->err = NULL;
	js->err_off = 0;
}

int
jscan_fail(struct jscan *js, const char *msg)
{
	if (js->err == NULL) {
		js->err = msg;
		js->err_off = js->p - js->base;
	}
	return -1;
}

int
jscan_open(struct jscan *js, int c)
{
	if (jscan_peek(js) != c)
		return jscan_fail(js, c == '{' ? "expected '{'" :
		    "expected '['");
	if (js->depth >= JSCAN_MAXDEPTH)
		return jscan_fail(js, "nested too deeply");
	js->depth++;
	js->p++;
	return 0;
}

/* Shared by jscan_member and jscan_element: close, or step past ','. */
static int
jscan_next(struct jscan *js, unsigned *n, int close)
{
	int	 c;

	c = jscan_peek(js);
	if (c == -1)
		return jscan_fail(js, "unexpected end");
	if (c == close) {
		js->p++;
		js->depth--;
		return 0;
	}
	if (*n > 0) {
		if (c != ',')
			return jscan_fail(js, close == '}' ?
			    "expected ',' or '}'" : "expected ',' or ']'");
		js->p++;
		c = jscan_peek(js);
	}
	if (c == -1)
		return jscan_fail(js, "unexpected end");
	(*n)++;
	return 1;
}

int
jscan_member(struct jscan *js, unsigned *n, struct jstr *key)
{
	int	 r;

	if ((r = jscan_next(js, n, '}')) != 1)
		return r;
	if (*js->p != '"')
		return jscan_fail(js, "expected a string key");
	if (jscan_string(js, key) != 0)
		return -1;
	if (jscan_peek(js) != ':')
		return jscan_fail(js, "expected ':'");
	js->p++;
	if (jscan_peek(js) == -1)
		return jscan_fail(js, "unexpected end");
	return 1;
}

int
jscan_element(struct jscan *js, unsigned *n)
{
	int	 r;

	if ((r = jscan_next(js, n, ']')) == 1 && *js->p == ']')
		return jscan_fail(js, "expected a value");
	return r;
}

static int
hex4(const char *p)
{
	int	 i, v = 0, c;

	for (i = 0; i < 4; i++) {
		c = (unsigned char)p[i];
		if (IS_DIGIT(c))
			v = v * 16 + c - '0';
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = v * 16 + c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * Strings: raw control bytes and invalid UTF-8 are accepted and passed on,
 * like any other attacker-controlled text (the encoders sanitise).
 */
int
jscan_string(struct jscan *js, struct jstr *s)
{
	const char	*start, *q = NULL, *x;

	if (jscan_peek(js) != '"')
		return jscan_fail(js, "expected a string");
	start = ++js->p;
	s->esc = false;
	for (;;) {
		x = jscan_special(js->p, js->end, &q);
		if (x == js->end) {
			js->p = start - 1;
			return jscan_fail(js, "unterminated string");
		}
		js->p = x;
		if (*x == '"')
			break;
		s->esc = true;
		if (x + 1 == js->end) {
			js->p = start - 1;
			return jscan_fail(js, "unterminated string");
		}
		switch (x[1]) {
		case '"': case '\\': case '/': case 'b': case 'f':
		case 'n': case 'r': case 't':
			js->p = x + 2;
			break;
		case 'u':
			if (js->end - x < 6 || hex4(x + 2) < 0)
				return jscan_fail(js, "invalid \\u escape");
			js->p = x + 6;
			break;
		default:
			return jscan_fail(js, "invalid escape");
		}
	}
	s->p = start;
	s->len = js->p - start;
	js->p++;
	return 0;
}

int
jscan_number(struct jscan *js, struct jstr *s)
{
	const char	*p, *e = js->end;

	jscan_peek(js);
	p = js->p;
	if (p < e && *p == '-')
		p++;
	if (p < e && *p == '0')
		p++;
	else if (p < e && IS_DIGIT(*p)) {
		while (p < e && IS_DIGIT(*p))
			p++;
	} else
		return jscan_fail(js, "invalid number");
	if (p < e && *p == '.') {
		if (++p == e || !IS_DIGIT(*p))
			return jscan_fail(js, "invalid number");
		while (p < e && IS_DIGIT(*p))
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		if (++p < e && (*p == '+' || *p == '-'))
			p++;
		if (p == e || !IS_DIGIT(*p))
			return jscan_fail(js, "invalid number");
		while (p < e && IS_DIGIT(*p))
			p++;
	}
	s->p = js->p;
	s->len = p - js->p;
	s->esc = false;
	js->p = p;
	return 0;
}

static int
jscan_literal(struct jscan *js, const char *word, size_t len)
{
	if ((size_t)(js->end - js->p) < len || memcmp(js->p, word, len) != 0)
		return jscan_fail(js, "invalid literal");
	js->p += len;
	return 0;
}

int
jscan_skip(struct jscan *js)
{
	struct jstr	 s;
	unsigned	 n = 0;
	int		 c, r;

	switch (c = jscan_peek(js)) {
	case '"':
		return jscan_string(js, &s);
	case '{':
	case '[':
		if (jscan_open(js, c) != 0)
			return -1;
		if (c == '{') {
			while ((r = jscan_member(js, &n, &s)) == 1) {
				if (jscan_skip(js) != 0)
					return -1;
			}
		} else {
			while ((r = jscan_element(js, &n)) == 1) {
				if (jscan_skip(js) != 0)
					return -1;
			}
		}
		return r;
	case 't':
		return jscan_literal(js, "true", 4);
	case 'f':
		return jscan_literal(js, "false", 5);
	case 'n':
		return jscan_literal(js, "null", 4);
	case -1:
		return jscan_fail(js, "unexpected end");
	default:
		if (c == '-' || IS_DIGIT(c))
			return jscan_number(js, &s);
		return jscan_fail(js, "unexpected character");
	}
}

int
jscan_end(struct jscan *js)
{
	if (jscan_peek(js) != -1)
		return jscan_fail(js, "unexpected bytes after the value");
	return 0;
}

/* Append code point cp as UTF-8; returns the bytes written. */
static size_t
put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Decode the \u escape at p (e - p bytes left, p[1] == 'u'): writes the
 * UTF-8 to *o and returns the escape bytes used, or 0 if malformed.
 */
static size_t
unescape_u(const char *p, const char *e, char **o)
{
	int	 hi, lo;

	if (e - p < 6 || (hi = hex4(p + 2)) < 0)
		return 0;
	if (hi >= 0xd800 && hi <= 0xdbff && e - p >= 12 && p[6] == '\\' &&
	    p[7] == 'u' && (lo = hex4(p + 8)) >= 0xdc00 && lo <= 0xdfff) {
		*o += put_utf8(*o, 0x10000 + ((uint32_t)(hi - 0xd800) << 10) +
		    (uint32_t)(lo - 0xdc00));
		return 12;
	}
	if (hi >= 0xd800 && hi <= 0xdfff)
		hi = 0xfffd;
	*o += put_utf8(*o, (uint32_t)hi);
	return 6;
}

size_t
jscan_unescape(const char *p, size_t len, char *out)
{
	const char	*e = p + len, *b;
	char		*o = out;
	size_t		 used;

	while (p < e) {
		if ((b = memchr(p, '\\', e - p)) == NULL)
			b = e;
		memcpy(o, p, b - p);
		o += b - p;
		if ((p = b) == e)
			break;
		if (p + 1 == e) {
			*o++ = *p++;
			break;
		}
		switch (p[1]) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			if ((used = unescape_u(p, e, &o)) != 0) {
				p += used;
				continue;
			}
			/* FALLTHROUGH */
		default:
			/* \" \\ \/, and a malformed escape copied raw. */
			if (p[1] != '"' && p[1] != '\\' && p[1] != '/')
				*o++ = '\\';
			*o++ = p[1];
			break;
		}
		p += 2;
	}
	return o - out;
}

bool
jstr_eq(const struct jstr *s, const char *v, size_t len)
{
	char	 tmp[128];

	if (s->p == NULL)
		return false;
	if (!s->esc)
		return s->len == len && memcmp(s->p, v, len) == 0;
	if (s->len > sizeof tmp)
		return false;
	return jscan_unescape(s->p, s->len, tmp) == len &&
	    memcmp(tmp, v, len) == 0;
}
