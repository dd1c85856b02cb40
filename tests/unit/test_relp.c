/*
 * Unit tests: RELP frames (daemon/relp.c), fed whole and byte by byte,
 * and the key header of kafka outputs' spool records (daemon/kafka.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kafka.h"
#include "relp.h"

static void
test_frame(void **state)
{
	struct buf	 b;

	buf_init(&b);
	relp_frame(&b, 1, "open", RELP_OFFERS, strlen(RELP_OFFERS));
	relp_frame(&b, 2, "syslog", "CEF:0|x", 7);
	relp_frame(&b, 3, "close", NULL, 0);
	buf_addc(&b, '\0');
	assert_string_equal(b.data, "1 open 56 relp_version=0\n"
	    "relp_software=alertrelayd\ncommands=syslog\n"
	    "2 syslog 7 CEF:0|x\n3 close 0\n");
	buf_clear(&b);
}

/* Every prefix of a complete frame asks for more; the whole one parses. */
static void
test_parse_pieces(void **state)
{
	static const char rsp[] = "17 rsp 93 200 OK\nrelp_version=0\n"
	    "relp_software=librelp,1.11.0,http://librelp.adiscon.com\n"
	    "commands=syslog\n";
	struct relp_msg	 m;
	const char	*why = NULL;
	size_t		 i, len = strlen(rsp);

	for (i = 0; i < len; i++)
		assert_int_equal(relp_parse(rsp, i, &m, &why), 0);
	assert_int_equal(relp_parse(rsp, len, &m, &why), (long)len);
	assert_int_equal(m.txnr, 17);
	assert_string_equal(m.cmd, "rsp");
	assert_int_equal(m.code, 200);
	assert_int_equal(m.textlen, 2);
	assert_memory_equal(m.text, "OK", 2);
}

static void
test_parse_kinds(void **state)
{
	struct relp_msg	 m;
	const char	*why = NULL;

	assert_int_equal(relp_parse("4 rsp 6 200 OK\n5 rsp", 20, &m, &why),
	    15);
	assert_int_equal(m.txnr, 4);
	assert_int_equal(relp_parse("9 rsp 17 500 out of memory\n", 27, &m,
	    &why), 27);
	assert_int_equal(m.code, 500);
	assert_int_equal(m.textlen, 13);
	assert_int_equal(relp_parse("0 serverclose 0\n", 16, &m, &why), 16);
	assert_string_equal(m.cmd, "serverclose");
	assert_int_equal(m.code, 0);
	assert_int_equal(relp_parse("4 rsp 0\n", 8, &m, &why), 8);
	assert_int_equal(m.code, 0);
}

static void
test_parse_bad(void **state)
{
	static const char *const bad[] = {
		"HTTP/1.1 400 Bad Request\r\n",
		"1 rsp 6 200 OKX",	/* no trailer */
		"1 RSP 6 200 OK\n",
		"1234567890 rsp 6 200 OK\n",
		"1 rsp 999999999 x",
		"1 rsp 6 abc OK\n",
		"1  rsp 6 200 OK\n",
	};
	struct relp_msg	 m;
	const char	*why;
	size_t		 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		assert_int_equal(relp_parse(bad[i], strlen(bad[i]), &m, &why),
		    -1);
		assert_non_null(why);
	}
}

static void
test_kafka_record(void **state)
{
	struct buf	 b;
	const char	*key, *msg;
	size_t		 keylen, msglen;

	buf_init(&b);
	kafka_record_build(&b, "contoso", "da6373_1", 8, "CEF:0|y", 7);
	assert_int_equal(b.len, 4 + 16 + 7);
	kafka_record_split(b.data, b.len, &key, &keylen, &msg, &msglen);
	assert_int_equal(keylen, 16);
	assert_memory_equal(key, "contoso/da6373_1", 16);
	assert_int_equal(msglen, 7);
	assert_memory_equal(msg, "CEF:0|y", 7);
	/* A record of another transport: no key, the event as it is. */
	kafka_record_split("<134>1 x", 8, &key, &keylen, &msg, &msglen);
	assert_null(key);
	assert_int_equal(msglen, 8);
	/* A truncated header is not trusted. */
	kafka_record_split(b.data, 10, &key, &keylen, &msg, &msglen);
	assert_null(key);
	buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame),
		cmocka_unit_test(test_parse_pieces),
		cmocka_unit_test(test_parse_kinds),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_kafka_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
