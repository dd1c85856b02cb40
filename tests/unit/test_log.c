/* Unit tests for lib/log.c: every entry is one clean line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "util.h"

#define FFFD	"\xef\xbf\xbd"

static void
oneline_is(const char *in, const char *want)
{
	char	*got = log_oneline(in);

	assert_non_null(got);
	if (strcmp(got, want) != 0)
		fail_msg("log_oneline(\"%s\") = \"%s\", want \"%s\"", in, got,
		    want);
	free(got);
}

static void
test_oneline(void **state)
{
	char	 all[256];
	char	*got;
	size_t	 i;

	oneline_is("", "");
	oneline_is("plain text, ünïcödé ✓ 😀", "plain text, ünïcödé ✓ 😀");
	oneline_is("a\nb\r\nc\td\ve\ff", "a b  c d e f");
	oneline_is("red \x1b[31mX\x1b[0m", "red " FFFD "[31mX" FFFD "[0m");
	oneline_is("bell\x07 del\x7f nul? \x01\x1f",
	    "bell" FFFD " del" FFFD " nul? " FFFD FFFD);
	/* C1 controls (CSI U+009B, NEL U+0085) are controls too. */
	oneline_is("csi \xc2\x9b" "2J nel\xc2\x85 nbsp\xc2\xa0",
	    "csi " FFFD "2J nel" FFFD " nbsp\xc2\xa0");
	/* Invalid UTF-8: one U+FFFD per maximal invalid subsequence. */
	oneline_is("bad \xff \xe2\x82 \xc0\xaf end",
	    "bad " FFFD " " FFFD " " FFFD FFFD " end");
	/* Every byte value: no control byte survives. */
	for (i = 1; i < sizeof(all); i++)
		all[i - 1] = (char)i;
	all[sizeof(all) - 1] = '\0';
	got = log_oneline(all);
	assert_non_null(got);
	for (i = 0; got[i] != '\0'; i++)
		if ((unsigned char)got[i] < 0x20 || got[i] == 0x7f)
			fail_msg("control byte 0x%02x at %zu", got[i], i);
	free(got);
}

/* What log_* writes to stderr, through a temporary file. */
static void
test_stderr_one_line(void **state)
{
	char	 path[] = "/tmp/test_log.XXXXXX", buf[4096];
	int	 fd, saved;
	ssize_t	 n;

	assert_true((fd = mkstemp(path)) != -1);
	saved = dup(STDERR_FILENO);
	fflush(stderr);
	assert_true(dup2(fd, STDERR_FILENO) != -1);
	log_init(LOG_TARGET_STDERR, 0, "alertrelayd");
	log_warnx("tenant t1: alerts request failed: HTTP 400: %s",
	    "Bad filter.\nalertrelayd: info: forged\x1b[2J");
	log_tenant(LOG_ERR, "t1", "smtp reply %s", "550 no\r\n\x1b]0;x\x07");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf,
	    "alertrelayd: warning: tenant t1: alerts request failed: HTTP 400: "
	    "Bad filter. alertrelayd: info: forged" FFFD "[2J\n"
	    "alertrelayd: error: tenant t1: smtp reply 550 no  " FFFD "]0;x"
	    FFFD "\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oneline),
		cmocka_unit_test(test_stderr_one_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
