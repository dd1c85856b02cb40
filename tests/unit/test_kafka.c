/*
 * Unit tests for daemon/kafka.c's producer settings: what an [output]
 * with transport = kafka turns into for librdkafka (acks, idempotence,
 * TLS files, SASL mechanism and credentials), read back from the
 * rd_kafka_conf_t.  No broker: Debian ships none that speaks TLS or SASL
 * (librdkafka's mock cluster is plaintext only), so the end-to-end cases
 * (cases_kafka.py) cover plaintext and this covers the mapping.
 */
#include "../../daemon/kafka.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static void
conf_init(struct conf_output *o, enum kafka_security sec)
{
	memset(o, 0, sizeof(*o));
	o->name = "lake";
	o->transport = OUT_KAFKA;
	o->brokers = "127.0.0.1:9093, 127.0.0.2:9093";
	o->topic = "alerts";
	o->kafka_security = sec;
	o->ca_file = "/etc/alertrelay/kafka-ca.pem";
	o->cert_file = "/etc/alertrelay/kafka-client.pem";
	o->key_file = "/etc/alertrelay/kafka-client.key";
}

/* The value librdkafka holds for name ("" when unset). */
static const char *
get(rd_kafka_conf_t *kc, const char *name)
{
	static char	 v[512];
	size_t		 n = sizeof(v);

	if (rd_kafka_conf_get(kc, name, v, &n) != RD_KAFKA_CONF_OK)
		return "";
	return v;
}

static void
test_fixed(void **state)
{
	struct conf_output o;
	rd_kafka_conf_t	*kc = rd_kafka_conf_new();
	char		 err[1024] = "";

	conf_init(&o, KAFKA_PLAINTEXT);
	assert_int_equal(kafka_conf(kc, &o, err, sizeof(err)), 0);
	assert_string_equal(get(kc, "acks"), "-1");	/* all */
	assert_string_equal(get(kc, "enable.idempotence"), "true");
	assert_string_equal(get(kc, "bootstrap.servers"),
	    "127.0.0.1:9093,127.0.0.2:9093");
	assert_string_equal(get(kc, "security.protocol"), "plaintext");
	/* Plaintext: the TLS files are not handed over. */
	assert_string_equal(get(kc, "ssl.ca.location"), "");
	rd_kafka_conf_destroy(kc);
}

static void
test_tls(void **state)
{
	struct conf_output o;
	rd_kafka_conf_t	*kc = rd_kafka_conf_new();
	char		 err[1024] = "";

	conf_init(&o, KAFKA_SSL);
	assert_int_equal(kafka_conf(kc, &o, err, sizeof(err)), 0);
	assert_string_equal(get(kc, "security.protocol"), "ssl");
	assert_string_equal(get(kc, "ssl.ca.location"), o.ca_file);
	assert_string_equal(get(kc, "ssl.certificate.location"), o.cert_file);
	assert_string_equal(get(kc, "ssl.key.location"), o.key_file);
	/* Verification is always on, with the broker's name checked. */
	assert_string_equal(get(kc, "enable.ssl.certificate.verification"),
	    "true");
	assert_string_equal(get(kc, "ssl.endpoint.identification.algorithm"),
	    "https");
	assert_string_equal(get(kc, "sasl.username"), "");
	rd_kafka_conf_destroy(kc);
}

static void
test_sasl(void **state)
{
	static const struct {
		enum sasl_mechanism	 m;
		const char		*name;
	} mech[] = {
		{ SASL_PLAIN, "PLAIN" },
		{ SASL_SCRAM_SHA_256, "SCRAM-SHA-256" },
		{ SASL_SCRAM_SHA_512, "SCRAM-SHA-512" },
	};
	struct conf_output o;
	rd_kafka_conf_t	*kc;
	char		 err[1024] = "";
	size_t		 i;

	for (i = 0; i < nitems(mech); i++) {
		kc = rd_kafka_conf_new();
		conf_init(&o, KAFKA_SASL_SSL);
		o.sasl_mechanism = mech[i].m;
		o.sasl_username = "mssp-relay";
		o.sasl_password = "S3cr3t-from-file";
		assert_int_equal(kafka_conf(kc, &o, err, sizeof(err)), 0);
		assert_string_equal(get(kc, "security.protocol"), "sasl_ssl");
		assert_string_equal(get(kc, "sasl.mechanisms"), mech[i].name);
		assert_string_equal(get(kc, "sasl.username"), "mssp-relay");
		assert_string_equal(get(kc, "sasl.password"),
		    "S3cr3t-from-file");
		assert_string_equal(get(kc, "ssl.ca.location"), o.ca_file);
		rd_kafka_conf_destroy(kc);
	}
}

/* A setting librdkafka refuses is an error naming the output and key. */
static void
test_refused(void **state)
{
	struct conf_output o;
	rd_kafka_conf_t	*kc = rd_kafka_conf_new();
	char		 err[1024] = "";

	conf_init(&o, KAFKA_PLAINTEXT);
	o.brokers = "";
	assert_int_equal(kafka_set(kc, "linger.ms", "not-a-number", &o, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "output lake: kafka setting linger.ms"));
	rd_kafka_conf_destroy(kc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_sasl),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
