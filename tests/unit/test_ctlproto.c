/* Unit tests: the control socket's request line parser (lib/ctlproto.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ctlproto.h"
#include "util.h"

static struct ctlproto_req req;
static char err[128];

static int
parse(const char *s)
{
	err[0] = '\0';
	return ctlproto_parse(s, strlen(s), &req, err, sizeof(err));
}

/* Every command alertrelayctl sends, with its words. */
static void
test_commands(void **state)
{
	assert_int_equal(parse("status"), 0);
	assert_int_equal(req.cmd, CTLPROTO_STATUS);
	assert_int_equal(req.argc, 1);
	assert_null(req.argv[1]);
	assert_int_equal(parse("status --json"), 0);
	assert_int_equal(req.argc, 2);
	assert_string_equal(req.argv[1], "--json");
	assert_int_equal(parse("reload"), 0);
	assert_int_equal(req.cmd, CTLPROTO_RELOAD);
	assert_int_equal(parse("check-tenant contoso"), 0);
	assert_int_equal(req.cmd, CTLPROTO_CHECK_TENANT);
	assert_string_equal(req.argv[1], "contoso");
	assert_int_equal(parse("cursor set contoso 2026-11-01"), 0);
	assert_int_equal(req.cmd, CTLPROTO_CURSOR);
	assert_int_equal(req.argc, 4);
	assert_string_equal(req.argv[3], "2026-11-01");
	assert_int_equal(parse("backfill t1 2026-11-01 2026-11-02"), 0);
	assert_int_equal(req.cmd, CTLPROTO_BACKFILL);
	assert_null(req.argv[4]);
}

/* Blanks: spaces, tabs and a CR (a client that sends CRLF) separate. */
static void
test_blanks(void **state)
{
	assert_int_equal(parse("  cursor\tshow \t contoso\r"), 0);
	assert_int_equal(req.argc, 3);
	assert_string_equal(req.argv[0], "cursor");
	assert_string_equal(req.argv[1], "show");
	assert_string_equal(req.argv[2], "contoso");
	/* No quoting: quotes are part of a word. */
	assert_int_equal(parse("check-tenant \"a b\""), 0);
	assert_int_equal(req.argc, 3);
	assert_string_equal(req.argv[1], "\"a");
}

/* What is refused, and the message the client sees. */
static void
test_refused(void **state)
{
	char	 big[CTLPROTO_MAX_REQUEST + 2];
	char	 nul[] = "status\0--json";

	assert_int_equal(parse(""), -1);
	assert_string_equal(err, "empty request");
	assert_int_equal(parse(" \t\r "), -1);
	assert_string_equal(err, "empty request");
	assert_int_equal(parse("a b c d e f g h i"), -1);
	assert_string_equal(err, "too many words in the request");
	assert_int_equal(parse("status a b c d e f g"), 0);	/* 8 words */
	assert_int_equal(req.argc, CTLPROTO_MAX_WORDS);
	assert_int_equal(parse("shutdown now"), -1);
	assert_string_equal(err, "unknown command \"shutdown\"");
	assert_int_equal(parse("STATUS"), -1);
	assert_int_equal(ctlproto_parse(nul, sizeof(nul) - 1, &req, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "request holds a NUL byte");
	/* The longest request passes; one byte more does not. */
	memset(big, ' ', sizeof(big));
	memcpy(big, "status", 6);
	assert_int_equal(ctlproto_parse(big, CTLPROTO_MAX_REQUEST, &req, err,
	    sizeof(err)), 0);
	assert_int_equal(ctlproto_parse(big, CTLPROTO_MAX_REQUEST + 1, &req,
	    err, sizeof(err)), -1);
	assert_string_equal(err, "request longer than 4096 bytes");
	/* A long unknown word is quoted short. */
	memset(big, 'x', CTLPROTO_MAX_REQUEST);
	assert_int_equal(ctlproto_parse(big, CTLPROTO_MAX_REQUEST, &req, err,
	    sizeof(err)), -1);
	assert_true(strlen(err) < 100);
}

static void
test_time(void **state)
{
	int64_t	 t, u;

	assert_int_equal(ctlproto_time("2026-11-01", &t), 0);
	assert_int_equal(ctlproto_time("2026-11-01T00:00:00Z", &u), 0);
	assert_true(t == u);
	assert_int_equal(ctlproto_time("2026-11-01T10:20:30.5Z", &u), 0);
	assert_true(u > t);
	assert_int_equal(ctlproto_time("yesterday", &t), -1);
	assert_int_equal(ctlproto_time("2026-13-01", &t), -1);
	assert_int_equal(ctlproto_time("", &t), -1);
	assert_int_equal(ctlproto_time("2026-11-0x", &t), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_blanks),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
