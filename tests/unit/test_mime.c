/* Unit tests for lib/mime.c: RFC 2045 quoted-printable, RFC 2047 headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"
#include "encode.h"
#include "mime.h"

static char *
qp(const char *s)
{
	struct buf	 b;

	buf_init(&b);
	mime_qp(&b, s, strlen(s));
	return b.data;
}

/* Decode quoted-printable (CRLF lines) back to text with LF ends. */
static char *
qp_decode(const char *s)
{
	struct buf	 b;
	char		 hx[3] = { 0, 0, 0 };

	buf_init(&b);
	buf_add(&b, "", 0);
	while (*s != '\0') {
		if (s[0] == '=' && s[1] == '\r' && s[2] == '\n')
			s += 3;
		else if (s[0] == '=') {
			assert_non_null(strchr("0123456789ABCDEF", s[1]));
			assert_non_null(strchr("0123456789ABCDEF", s[2]));
			hx[0] = s[1];
			hx[1] = s[2];
			buf_addc(&b, (char)strtol(hx, NULL, 16));
			s += 3;
		} else if (s[0] == '\r' && s[1] == '\n') {
			buf_addc(&b, '\n');
			s += 2;
		} else {
			assert_true(s[0] != '\r' && s[0] != '\n');
			buf_addc(&b, *s++);
		}
	}
	return b.data;
}

/* Every line at most 76 characters; whitespace never ends a line. */
static void
assert_qp_lines(const char *s)
{
	const char	*eol;

	for (; *s != '\0'; s = eol + 2) {
		eol = strstr(s, "\r\n");
		assert_non_null(eol);
		if ((size_t)(eol - s) > MIME_QP_LINE)
			fail_msg("a %zu-character line: %.*s",
			    (size_t)(eol - s), (int)(eol - s), s);
		if (eol > s && (eol[-1] == ' ' || eol[-1] == '\t'))
			fail_msg("a line ends in whitespace: %.*s",
			    (int)(eol - s), s);
	}
}

static void
test_qp_rules(void **state)
{
	static const struct {
		const char	*in, *out;
	} vec[] = {
		{ "", "\r\n" },
		{ "plain text", "plain text\r\n" },
		{ "a=b", "a=3Db\r\n" },
		{ "tail \nnext\t\n", "tail=20\r\nnext=09\r\n" },
		{ "end ", "end=20\r\n" },
		{ "mid space", "mid space\r\n" },
		{ "caf\xc3\xa9", "caf=C3=A9\r\n" },
		{ "cr\rx\x7f", "cr=0Dx=7F\r\n" },
		{ "a\n\nb", "a\r\n\r\nb\r\n" },
		{ "last\n", "last\r\n" },
	};
	size_t		 i;
	char		*s;

	for (i = 0; i < nitems(vec); i++) {
		s = qp(vec[i].in);
		assert_string_equal(s, vec[i].out);
		free(s);
	}
}

static void
test_qp_soft_breaks(void **state)
{
	char		 in[400], *s, *d;
	size_t		 i;

	/* 76 characters: 75 and a soft break, then the last one. */
	memset(in, 'x', 76);
	in[76] = '\0';
	s = qp(in);
	assert_int_equal(strlen(s), 75 + 3 + 1 + 2);
	assert_memory_equal(s + 75, "=\r\nx\r\n", 6);
	free(s);
	/* 75 characters fit on one line; no soft break. */
	in[75] = '\0';
	s = qp(in);
	assert_null(strstr(s, "=\r\n"));
	free(s);
	/* An escape is never split by a soft break; round trip. */
	for (i = 0; i < sizeof(in) - 1; i++)
		in[i] = "ab=\xc3\xa9 \t\n"[i % 8];
	in[sizeof(in) - 2] = '\n';
	in[sizeof(in) - 1] = '\0';
	s = qp(in);
	assert_qp_lines(s);
	d = qp_decode(s);
	assert_string_equal(d, in);
	free(s);
	free(d);
	/* Spaces up to a soft break and at the end. */
	memset(in, ' ', 200);
	in[200] = '\n';
	in[201] = '\0';
	s = qp(in);
	assert_qp_lines(s);
	d = qp_decode(s);
	assert_string_equal(d, in);
	free(s);
	free(d);
}

static char *
hdr(const char *name, const char *value)
{
	struct buf	 b;

	buf_init(&b);
	mime_header(&b, name, value);
	return b.data;
}

static void
test_header_ascii(void **state)
{
	char	*s;

	s = hdr("Subject", "[alertrelay] High: plain");
	assert_string_equal(s, "Subject: [alertrelay] High: plain\r\n");
	free(s);
	s = hdr("To", "");
	assert_string_equal(s, "To: \r\n");
	free(s);
}

/* A long ASCII value folds at spaces; unfolding gives it back. */
static void
test_header_fold(void **state)
{
	struct buf	 v, u;
	char		*s, *p, *eol;
	size_t		 i;

	buf_init(&v);
	buf_init(&u);
	for (i = 0; i < 12; i++)
		buf_addf(&v, "%srecipient%zu@customer%zu.example", i ? ", " : "",
		    i, i);
	s = hdr("To", v.data);
	for (p = s; (eol = strstr(p, "\r\n")) != NULL; p = eol + 2) {
		if ((size_t)(eol - p) > MIME_HEADER_LINE)
			fail_msg("a %zu-character line", (size_t)(eol - p));
		if (p != s)
			assert_int_equal(*p, ' ');
		buf_add(&u, p, (size_t)(eol - p));
	}
	assert_non_null(strstr(s, ",\r\n recipient"));
	assert_memory_equal(u.data, "To: ", 4);
	assert_string_equal(u.data + 4, v.data);
	free(s);
	buf_clear(&v);
	buf_clear(&u);
}

/* RFC 2047 §8-style vector: the encoded word of a short value. */
static void
test_header_word(void **state)
{
	char	*s;

	s = hdr("Subject", "caf\xc3\xa9");
	assert_string_equal(s, "Subject: =?UTF-8?B?Y2Fmw6k=?=\r\n");
	free(s);
}

/* Decode a header made of encoded words; check every limit on the way. */
static char *
words_decode(const char *h, const char *name)
{
	struct buf	 b;
	const char	*p, *e, *eol;
	size_t		 len;

	buf_init(&b);
	buf_add(&b, "", 0);
	assert_memory_equal(h, name, strlen(name));
	for (p = h; (eol = strstr(p, "\r\n")) != NULL; p = eol + 2) {
		if ((size_t)(eol - p) > MIME_HEADER_LINE)
			fail_msg("a %zu-character header line",
			    (size_t)(eol - p));
		if (eol[2] == '\0')
			break;
		assert_int_equal(eol[2], ' ');	/* folded */
	}
	for (p = h; (p = strstr(p, "=?UTF-8?B?")) != NULL; p = e + 2) {
		e = strstr(p + 10, "?=");
		assert_non_null(e);
		len = (size_t)(e + 2 - p);
		if (len > MIME_WORD_MAX)
			fail_msg("a %zu-character encoded word", len);
		assert_int_equal(b64_decode(&b, p + 10, (size_t)(e - p - 10),
		    B64_STD), 0);
	}
	return b.data;
}

static void
test_header_long(void **state)
{
	char		 v[600], *s, *d;
	size_t		 i, n;
	const char	*p;

	/* 200 two-byte and 3 four-byte characters: whole ones per word. */
	for (i = 0, n = 0; i < 200; i++, n += 2)
		memcpy(v + n, "\xc3\xa9", 2);
	for (i = 0; i < 3; i++, n += 4)
		memcpy(v + n, "\xf0\x9f\x94\xa5", 4);
	v[n] = '\0';
	s = hdr("Subject", v);
	d = words_decode(s, "Subject: ");
	assert_string_equal(d, v);
	/* Each word alone decodes to valid UTF-8 (no split character). */
	for (p = s; (p = strstr(p, "=?UTF-8?B?")) != NULL; p += 10) {
		struct buf w, u;

		buf_init(&w);
		buf_init(&u);
		assert_int_equal(b64_decode(&w, p + 10,
		    (size_t)(strstr(p + 10, "?=") - p - 10), B64_STD), 0);
		sanitize_utf8(&u, w.data, w.len);
		assert_int_equal(u.len, w.len);
		assert_memory_equal(u.data, w.data, w.len);
		buf_clear(&w);
		buf_clear(&u);
	}
	free(s);
	free(d);
	/* A long header name: the first word moves to the next line. */
	s = hdr("X-A-Very-Long-Header-Name-Of-Sixty-Four-Characters-For-Folding-",
	    "\xc3\xa9t\xc3\xa9");
	d = words_decode(s, "X-A-Very");
	assert_string_equal(d, "\xc3\xa9t\xc3\xa9");
	assert_non_null(strstr(s, ": \r\n =?UTF-8?B?"));
	free(s);
	free(d);
}

/* CR/LF in a subject never reaches the header: no injected field. */
static void
test_header_injection(void **state)
{
	char		*s, *d;

	s = hdr("Subject", "hi\r\nBcc: victim@example.com\r\n\r\nbody");
	assert_string_equal(s, "Subject: hi  Bcc: victim@example.com    "
	    "body\r\n");
	free(s);
	s = hdr("Subject", "\xc3\xa9\nBcc: x@y\r");
	assert_null(strstr(s, "\nBcc"));
	d = words_decode(s, "Subject: ");
	assert_string_equal(d, "\xc3\xa9 Bcc: x@y ");
	free(s);
	free(d);
	/* mime_one_line: controls become spaces, cut with an ellipsis. */
	{
		struct buf	 b;

		buf_init(&b);
		mime_one_line(&b, "a\r\nb\tc\x1b[31m", 100);
		assert_string_equal(b.data, "a  b c\xef\xbf\xbd[31m");
		buf_reset(&b);
		mime_one_line(&b, "\xc3\xa9\xc3\xa9\xc3\xa9", 5);
		assert_string_equal(b.data, "\xc3\xa9\xc3\xa9\xe2\x80\xa6");
		buf_reset(&b);
		mime_one_line(&b, "bad\xff", 100);
		assert_string_equal(b.data, "bad\xef\xbf\xbd");
		buf_clear(&b);
	}
}

static void
test_address_date(void **state)
{
	struct buf	 b;
	char		*a;

	a = mime_bare_address("SOC Team <soc@example.com>");
	assert_string_equal(a, "soc@example.com");
	free(a);
	a = mime_bare_address("  ops@example.com");
	assert_string_equal(a, "ops@example.com");
	free(a);
	buf_init(&b);
	mime_date(&b, 1796350941);	/* 2026-12-04T02:22:21Z */
	assert_string_equal(b.data, "Fri, 04 Dec 2026 02:22:21 +0000");
	buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qp_rules),
		cmocka_unit_test(test_qp_soft_breaks),
		cmocka_unit_test(test_header_ascii),
		cmocka_unit_test(test_header_fold),
		cmocka_unit_test(test_header_word),
		cmocka_unit_test(test_header_long),
		cmocka_unit_test(test_header_injection),
		cmocka_unit_test(test_address_date),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
