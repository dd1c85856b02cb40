/*
 * kafkamock: librdkafka's mock cluster (a Kafka protocol implementation
 * inside librdkafka, on loopback) in a process of its own, for the
 * integration tests of kafka outputs.
 *
 * Usage: kafkamock [-b BROKERS] [-t TOPIC] [-p PARTITIONS]
 *
 * Creates the cluster (3 brokers by default) and TOPIC (4 partitions,
 * replication factor 3 by default), prints "bootstrap HOST:PORT,..." and
 * then reads commands on standard input, one per line, answering each
 * with "ok" or "error REASON":
 *
 *   down ID              broker ID (1..BROKERS) goes down
 *   up ID                and comes back
 *   leader PART ID       partition PART's leader becomes broker ID
 *   produce-errors N ERR the next N produce requests fail with Kafka
 *                        error code ERR (e.g. 19 NOT_ENOUGH_REPLICAS)
 *
 * It exits when standard input closes.  Consumers (kcat -C) read what
 * was produced from the same bootstrap servers.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static void
usage(void)
{
	fprintf(stderr, "usage: kafkamock [-b BROKERS] [-t TOPIC] "
	    "[-p PARTITIONS]\n");
	exit(64);
}

/* One command line; the answer goes to standard output. */
static void
command(rd_kafka_mock_cluster_t *mc, const char *topic, char *line)
{
	char			 cmd[32];
	int			 a = 0, b = 0, n;
	rd_kafka_resp_err_t	 e = RD_KAFKA_RESP_ERR_NO_ERROR;

	n = sscanf(line, "%31s %d %d", cmd, &a, &b);
	if (n >= 2 && strcmp(cmd, "down") == 0)
		e = rd_kafka_mock_broker_set_down(mc, a);
	else if (n >= 2 && strcmp(cmd, "up") == 0)
		e = rd_kafka_mock_broker_set_up(mc, a);
	else if (n == 3 && strcmp(cmd, "leader") == 0)
		e = rd_kafka_mock_partition_set_leader(mc, topic, a, b);
	else if (n == 3 && strcmp(cmd, "produce-errors") == 0) {
		rd_kafka_resp_err_t *errs = calloc((size_t)a, sizeof *errs);
		int i;

		for (i = 0; i < a; i++)
			errs[i] = (rd_kafka_resp_err_t)b;
		rd_kafka_mock_push_request_errors_array(mc, 0 /* Produce */,
		    (size_t)a, errs);
		free(errs);
	} else {
		printf("error unknown command\n");
		return;
	}
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		printf("error %s\n", rd_kafka_err2str(e));
	else
		printf("ok\n");
}

int
main(int argc, char *argv[])
{
	rd_kafka_conf_t		*conf;
	rd_kafka_t		*rk;
	rd_kafka_mock_cluster_t	*mc;
	const char		*topic = "alerts";
	char			 err[512], line[256];
	int			 ch, brokers = 3, parts = 4;

	while ((ch = getopt(argc, argv, "b:t:p:")) != -1) {
		switch (ch) {
		case 'b':
			brokers = atoi(optarg);
			break;
		case 't':
			topic = optarg;
			break;
		case 'p':
			parts = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (brokers < 1 || parts < 1)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	conf = rd_kafka_conf_new();
	/* A handle to host the cluster; it never produces anything. */
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err)) ==
	    NULL) {
		fprintf(stderr, "kafkamock: %s\n", err);
		return 1;
	}
	if ((mc = rd_kafka_mock_cluster_new(rk, brokers)) == NULL) {
		fprintf(stderr, "kafkamock: cannot create the mock cluster\n");
		return 1;
	}
	if (rd_kafka_mock_topic_create(mc, topic, parts,
	    brokers < 3 ? brokers : 3) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "kafkamock: cannot create topic %s\n", topic);
		return 1;
	}
	printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
	while (fgets(line, sizeof line, stdin) != NULL)
		command(mc, topic, line);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
