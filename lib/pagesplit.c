/* Page splitter: cuts an API page into its element objects as it streams. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "log.h"
#include "pagesplit.h"
#include "util.h"

#define IS_WS(c)	((c) == ' ' || (c) == '\n' || (c) == '\r' || \
			 (c) == '\t')

/*
 * The page splitter: a state machine over the envelope that is fed the
 * body in pieces of any size.  Values other than "value" and
 * "@odata.nextLink" are scanned (strings and bracket nesting) but not kept;
 * an element of "value" is kept only while it spans pieces, so memory is
 * O(largest element).  Element contents are checked by alert_parse, not
 * here: the splitter only needs their strings and brackets to find the end.
 */
enum ps_state {
	PS_START,	/* before the envelope's '{' */
	PS_OBJ,		/* after '{': a member name or '}' */
	PS_KEY,		/* after ',': a member name */
	PS_COLON,
	PS_VALUE,	/* a member's value */
	PS_SCALAR,	/* inside a skipped number or literal */
	PS_RAW,		/* inside a string or container (see ps->what) */
	PS_ARRAY,	/* after "value": [ : an element or ']' */
	PS_ELEM,	/* after ',' in "value": an element */
	PS_ARRNEXT,	/* after an element: ',' or ']' */
	PS_NEXT,	/* after a member: ',' or '}' */
	PS_DONE,
	PS_ERROR,
};

/* What a raw value being scanned is. */
enum ps_what { PS_CAP_NONE, PS_CAP_KEY, PS_CAP_LINK, PS_CAP_ELEM };
enum ps_member { PS_MEMBER_OTHER, PS_MEMBER_VALUE, PS_MEMBER_LINK };

struct pagesplit {
	enum ps_state	 state;
	pagesplit_cb	 cb;
	void		*arg;
	size_t		 max;
	size_t		 off;		/* bytes fed before this piece */
	size_t		 count;		/* elements handed to cb */
	int		 seen_value;
	enum ps_member	 member;

	/* The raw value being scanned. */
	enum ps_what	 what;
	unsigned	 depth;
	uint64_t	 arrays;	/* bit d: level d is an array */
	int		 in_str, esc;
	size_t		 cap_start;	/* where it starts in this piece */
	size_t		 cap_off;	/* where it starts in the body */
	struct buf	 cap;		/* its bytes from earlier pieces */

	char		 scalar[32];
	size_t		 nscalar;

	struct buf	 link;
	int		 has_link;
	char		 err[256];
};

struct pagesplit *
pagesplit_new(size_t max_element, pagesplit_cb cb, void *arg)
{
	struct pagesplit	*ps;

	ps = xcalloc(1, sizeof *ps);
	ps->max = max_element == 0 ? SIZE_MAX : max_element;
	ps->cb = cb;
	ps->arg = arg;
	buf_init(&ps->cap);
	buf_init(&ps->link);
	return ps;
}

void
pagesplit_free(struct pagesplit *ps)
{
	if (ps == NULL)
		return;
	buf_clear(&ps->cap);
	buf_clear(&ps->link);
	free(ps);
}

static int __attribute__((format(printf, 2, 3)))
ps_fail(struct pagesplit *ps, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(ps->err, sizeof ps->err, fmt, ap);
	va_end(ap);
	ps->state = PS_ERROR;
	return -1;
}

/* Start scanning a string or container at p[i] (not yet consumed). */
static void
ps_raw_begin(struct pagesplit *ps, enum ps_what what, size_t i)
{
	ps->state = PS_RAW;
	ps->what = what;
	ps->depth = 0;
	ps->in_str = ps->esc = 0;
	ps->cap_start = i;
	ps->cap_off = ps->off + i;
	buf_reset(&ps->cap);
}

static int
ps_too_big(struct pagesplit *ps)
{
	switch (ps->what) {
	case PS_CAP_ELEM:
		return ps_fail(ps, "value[%zu] is larger than %zu bytes",
		    ps->count, ps->max);
	case PS_CAP_LINK:
		return ps_fail(ps, "\"@odata.nextLink\" is longer than %zu "
		    "bytes", ps->max);
	default:
		return ps_fail(ps, "member name at byte %zu is longer than "
		    "%zu bytes", ps->cap_off, ps->max);
	}
}

/* A member name or the next link: one JSON string, checked. */
static int
ps_string(struct pagesplit *ps, const char *p, size_t len, struct jstr *s)
{
	struct jscan	 js;

	jscan_init(&js, p, len);
	if (jscan_string(&js, s) != 0 || jscan_end(&js) != 0)
		return ps_fail(ps, "invalid JSON at byte %zu: %s",
		    ps->cap_off + js.err_off, js.err);
	return 0;
}

/* A raw value is complete: p holds all len of its bytes. */
static int
ps_deliver(struct pagesplit *ps, const char *p, size_t len)
{
	struct jstr	 s;
	int		 r;

	switch (ps->what) {
	case PS_CAP_NONE:
		ps->state = PS_NEXT;
		return 0;
	case PS_CAP_KEY:
		if (ps_string(ps, p, len, &s) != 0)
			return -1;
		if (jstr_eq(&s, "value", 5))
			ps->member = PS_MEMBER_VALUE;
		else if (jstr_eq(&s, "@odata.nextLink", 15))
			ps->member = PS_MEMBER_LINK;
		else
			ps->member = PS_MEMBER_OTHER;
		ps->state = PS_COLON;
		return 0;
	case PS_CAP_LINK:
		if (ps_string(ps, p, len, &s) != 0)
			return -1;
		buf_reset(&ps->link);
		buf_reserve(&ps->link, s.len);
		ps->link.len = jscan_unescape(s.p, s.len, ps->link.data);
		ps->link.data[ps->link.len] = '\0';
		if (memchr(ps->link.data, '\0', ps->link.len) != NULL)
			return ps_fail(ps, "\"@odata.nextLink\" holds a NUL");
		ps->has_link = 1;
		ps->state = PS_NEXT;
		return 0;
	case PS_CAP_ELEM:
		r = ps->cb(p, len, ps->arg);
		if (r != 0)
			return ps_fail(ps, "value[%zu] rejected (error %d)",
			    ps->count, r);
		ps->count++;
		ps->state = PS_ARRNEXT;
		return 0;
	}
	return 0;
}

/* The raw value ended just before p[end]. */
static int
ps_raw_end(struct pagesplit *ps, const char *p, size_t end)
{
	size_t	 len = end - ps->cap_start;
	int	 r;

	if (ps->what == PS_CAP_NONE)
		return ps_deliver(ps, NULL, 0);
	if (ps->cap.len > ps->max || len > ps->max - ps->cap.len)
		return ps_too_big(ps);
	if (ps->cap.len == 0)
		return ps_deliver(ps, p + ps->cap_start, len);
	buf_add(&ps->cap, p + ps->cap_start, len);
	r = ps_deliver(ps, ps->cap.data, ps->cap.len);
	buf_reset(&ps->cap);
	return r;
}

/* Bytes that matter outside strings while scanning a raw value. */
static const unsigned char ps_special[256] = {
	['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1,
};

/*
 * Scan raw value bytes from p[*ip]: strings (escapes included) and bracket
 * nesting, with a type stack so that "{]" is caught.
 */
static int
ps_raw(struct pagesplit *ps, const char *p, size_t *ip, size_t n)
{
	const char	*q = NULL, *x;
	size_t		 i = *ip;
	unsigned	 isarr;
	int		 c;

	while (i < n) {
		if (ps->esc) {
			ps->esc = 0;
			i++;
			continue;
		}
		if (ps->in_str) {
			x = jscan_special(p + i, p + n, &q);
			if ((i = x - p) == n)
				break;
			i++;
			if (*x == '\\') {
				ps->esc = 1;
				continue;
			}
			ps->in_str = 0;
			if (ps->depth > 0)
				continue;
			*ip = i;
			return ps_raw_end(ps, p, i);
		}
		while (i < n && !ps_special[(unsigned char)p[i]])
			i++;
		if (i == n)
			break;
		c = (unsigned char)p[i++];
		if (c == '"')
			ps->in_str = 1;
		else if (c == '{' || c == '[') {
			if (ps->depth == JSCAN_MAXDEPTH)
				return ps_fail(ps, "invalid JSON at byte %zu: "
				    "nested deeper than %d", ps->off + i - 1,
				    JSCAN_MAXDEPTH);
			if (c == '[')
				ps->arrays |= (uint64_t)1 << ps->depth;
			else
				ps->arrays &= ~((uint64_t)1 << ps->depth);
			ps->depth++;
		} else if (c == '}' || c == ']') {
			isarr = (ps->arrays >> (ps->depth - 1)) & 1;
			if (isarr != (c == ']'))
				return ps_fail(ps, "invalid JSON at byte %zu: "
				    "unexpected '%c'", ps->off + i - 1, c);
			if (--ps->depth == 0) {
				*ip = i;
				return ps_raw_end(ps, p, i);
			}
		}
	}
	*ip = n;
	return 0;
}

static int
ps_scalar_char(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || c == '.' || c == '+' || c == '-';
}

/* A skipped number or literal ended before p[i]: check it. */
static int
ps_scalar_end(struct pagesplit *ps, size_t i)
{
	struct jscan	 js;

	jscan_init(&js, ps->scalar, ps->nscalar);
	if (jscan_skip(&js) != 0 || jscan_end(&js) != 0)
		return ps_fail(ps, "invalid JSON at byte %zu: %s",
		    ps->off + i - ps->nscalar + js.err_off, js.err);
	ps->state = PS_NEXT;
	return 0;
}

/* A member's value starts at p[i]. */
static int
ps_value(struct pagesplit *ps, int c, size_t i)
{
	size_t	 at = ps->off + i;

	switch (ps->member) {
	case PS_MEMBER_VALUE:
		if (ps->seen_value)
			return ps_fail(ps, "second \"value\" member at byte "
			    "%zu", at);
		if (c != '[')
			return ps_fail(ps, "\"value\" is not an array "
			    "(byte %zu)", at);
		ps->seen_value = 1;
		ps->state = PS_ARRAY;
		return 1;
	case PS_MEMBER_LINK:
		if (c == '"') {
			ps_raw_begin(ps, PS_CAP_LINK, i);
			return 0;
		}
		if (c != 'n')
			return ps_fail(ps, "\"@odata.nextLink\" is not a "
			    "string (byte %zu)", at);
		break;
	case PS_MEMBER_OTHER:
		if (c == '"' || c == '{' || c == '[') {
			ps_raw_begin(ps, PS_CAP_NONE, i);
			return 0;
		}
		break;
	}
	if (!ps_scalar_char(c))
		return ps_fail(ps, "invalid JSON at byte %zu: unexpected "
		    "character", at);
	ps->nscalar = 0;
	ps->state = PS_SCALAR;
	return 0;
}

/*
 * One envelope byte c at p[i] (never white space): returns 1 if consumed,
 * 0 if a new state reads it, -1 on error.
 */
static int
ps_envelope(struct pagesplit *ps, int c, size_t i)
{
	size_t	 at = ps->off + i;

	switch (ps->state) {
	case PS_START:
		if (c != '{')
			return ps_fail(ps, "not JSON: expected '{' at byte %zu",
			    at);
		ps->state = PS_OBJ;
		return 1;
	case PS_OBJ:
		if (c == '}') {
			ps->state = PS_DONE;
			return 1;
		}
		/* FALLTHROUGH */
	case PS_KEY:
		if (c != '"')
			return ps_fail(ps, "invalid JSON at byte %zu: expected "
			    "a member name", at);
		ps_raw_begin(ps, PS_CAP_KEY, i);
		return 0;
	case PS_COLON:
		if (c != ':')
			return ps_fail(ps, "invalid JSON at byte %zu: expected "
			    "':'", at);
		ps->state = PS_VALUE;
		return 1;
	case PS_VALUE:
		return ps_value(ps, c, i);
	case PS_ARRAY:
		if (c == ']') {
			ps->state = PS_NEXT;
			return 1;
		}
		/* FALLTHROUGH */
	case PS_ELEM:
		if (c != '{')
			return ps_fail(ps, "value[%zu] is not an object "
			    "(byte %zu)", ps->count, at);
		ps_raw_begin(ps, PS_CAP_ELEM, i);
		return 0;
	case PS_ARRNEXT:
		if (c != ',' && c != ']')
			return ps_fail(ps, "invalid JSON at byte %zu: expected "
			    "',' or ']' after value[%zu]", at, ps->count - 1);
		ps->state = c == ',' ? PS_ELEM : PS_NEXT;
		return 1;
	case PS_NEXT:
		if (c != ',' && c != '}')
			return ps_fail(ps, "invalid JSON at byte %zu: expected "
			    "',' or '}'", at);
		ps->state = c == ',' ? PS_KEY : PS_DONE;
		return 1;
	case PS_DONE:
		return ps_fail(ps, "trailing garbage after the envelope at "
		    "byte %zu", at);
	default:
		return ps_fail(ps, "internal error: state %d", ps->state);
	}
}

int
pagesplit_feed(struct pagesplit *ps, const char *p, size_t n)
{
	size_t	 i = 0;
	int	 c, r;

	if (ps->state == PS_ERROR)
		return -1;
	ps->cap_start = 0;
	while (i < n) {
		c = (unsigned char)p[i];
		if (ps->state == PS_RAW) {
			if (ps_raw(ps, p, &i, n) != 0)
				return -1;
		} else if (ps->state == PS_SCALAR) {
			if (!ps_scalar_char(c)) {
				if (ps_scalar_end(ps, i) != 0)
					return -1;
			} else if (ps->nscalar == sizeof ps->scalar) {
				return ps_fail(ps, "invalid JSON at byte %zu: "
				    "number too long", ps->off + i);
			} else {
				ps->scalar[ps->nscalar++] = (char)c;
				i++;
			}
		} else if (IS_WS(c))
			i++;
		else if ((r = ps_envelope(ps, c, i)) < 0)
			return -1;
		else
			i += r;
	}
	if (ps->state == PS_RAW && ps->what != PS_CAP_NONE) {
		if (ps->cap.len > ps->max ||
		    n - ps->cap_start > ps->max - ps->cap.len)
			return ps_too_big(ps);
		buf_add(&ps->cap, p + ps->cap_start, n - ps->cap_start);
	}
	ps->off += n;
	return 0;
}

int
pagesplit_finish(struct pagesplit *ps)
{
	switch (ps->state) {
	case PS_ERROR:
		return -1;
	case PS_DONE:
		if (!ps->seen_value)
			return ps_fail(ps, "no \"value\" array in response");
		return 0;
	case PS_START:
		return ps_fail(ps, "not JSON: empty body");
	case PS_RAW:
		if (ps->what == PS_CAP_ELEM)
			return ps_fail(ps, "body ended inside value[%zu]",
			    ps->count);
		break;
	case PS_ARRAY:
	case PS_ELEM:
	case PS_ARRNEXT:
		return ps_fail(ps, "body ended inside the \"value\" array "
		    "after %zu elements", ps->count);
	default:
		break;
	}
	return ps_fail(ps, "body ended inside the envelope at byte %zu",
	    ps->off);
}

const char *
pagesplit_error(const struct pagesplit *ps)
{
	return ps->state == PS_ERROR ? ps->err : NULL;
}

const char *
pagesplit_next_link(const struct pagesplit *ps)
{
	return ps->has_link ? ps->link.data : NULL;
}

size_t
pagesplit_count(const struct pagesplit *ps)
{
	return ps->count;
}
