/*
 * Kafka outputs with librdkafka.
 *
 * Delivery: the producer runs with acks=all and enable.idempotence=true;
 * a record leaves the spool only when its delivery report says the
 * partition's in-sync replicas have it.  Each produced record gets a
 * sequence number (its per-message opaque) and a slot in a window of
 * KAFKA_WINDOW records holding its end position in the spool.  Reports
 * come in order per partition but not across partitions, so the spool is
 * acknowledged up to the first record without a successful report.  When
 * a record fails (message timeout, fatal idempotence error, ...) nothing
 * more is produced; once every record of the window has its report the
 * sink is told, and it starts again from its spool head: records after
 * the failed one that were delivered come again (duplicates bounded by
 * the window).
 *
 * The loop: librdkafka's threads do the network; its main queue (delivery
 * reports, errors, logs) wakes the loop through a pipe
 * (rd_kafka_queue_io_event_enable) and is served with rd_kafka_poll(rk, 0)
 * from there, so every callback below runs on the loop's thread.  A one
 * second timer serves it too, in case a wake-up was lost.  Nothing ever
 * calls rd_kafka_flush: on shutdown or reload, what was not acknowledged
 * is purged and stays in the spool.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "internal.h"
#include "kafka.h"

#define KAFKA_WINDOW		4096	/* records produced, not released */
#define KAFKA_WINDOW_BYTES	(8 * 1024 * 1024)
#define KAFKA_TICK_MS		1000
#define KAFKA_TIMEOUT_MS	"120000" /* message.timeout.ms */

enum kafka_slot_state {
	KAFKA_SLOT_SENT,
	KAFKA_SLOT_OK,
	KAFKA_SLOT_FAILED,
};

struct kafka_slot {
	struct spool_pos	 end;
	size_t			 bytes;
	enum kafka_slot_state	 state;
};

struct kafka {
	struct event_base	*base;
	struct conf_output	 conf;		/* borrowed strings: sink's */
	struct kafka_cbs	 cbs;
	rd_kafka_t		*rk;
	int			 pipe[2];
	struct event		*ev;		/* the queue's wake-up pipe */
	struct event		*tick;
	struct kafka_slot	 slots[KAFKA_WINDOW];
	uint64_t		 head;		/* first unreleased sequence */
	uint64_t		 next;		/* next sequence */
	uint64_t		 reported;	/* reports in [head, next) */
	size_t			 bytes;		/* in the window */
	bool			 failed;	/* a record failed */
	bool			 fatal;		/* the producer is unusable */
	bool			 up;		/* a report succeeded lately */
	bool			 down;		/* announced as down */
	char			 reason[256];
	char			 warned[256];	/* last error logged */
	char			 lasterr[256];	/* last error reported */
};

static void	kafka_serve(struct kafka *);

/* Remote text for the log: one line, printable. */
static void
kafka_text(char *dst, size_t len, const char *src)
{
	size_t	 i, n;

	if (src == NULL)
		src = "";
	n = strnlen(src, len - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
	for (i = 0; i < n; i++) {
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			dst[i] = ' ';
	}
}

static void
kafka_fail(struct kafka *k, const char *what, const char *detail)
{
	char	 d[200];

	if (k->failed)
		return;
	kafka_text(d, sizeof d, detail);
	snprintf(k->reason, sizeof k->reason, "%s: %s", what, d);
	k->failed = true;
}

/* A delivery report (from rd_kafka_poll, on the loop's thread). */
static void
kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct kafka		*k = opaque;
	uint64_t		 seq = (uint64_t)(uintptr_t)m->_private;
	struct kafka_slot	*sl;

	if (seq < k->head || seq >= k->next)
		return;		/* from before a reset */
	sl = &k->slots[seq % KAFKA_WINDOW];
	k->reported++;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		sl->state = KAFKA_SLOT_OK;
		k->up = true;
		if (k->down)
			log_output(LOG_INFO, k->conf.name, "output %s: the "
			    "brokers take records again", k->conf.name);
		k->down = false;
		k->warned[0] = '\0';
		return;
	}
	sl->state = KAFKA_SLOT_FAILED;
	kafka_fail(k, "delivery failed", rd_kafka_err2str(m->err));
}

/* Errors: all brokers down, fatal errors; the rest is for debugging. */
static void
kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct kafka	*k = opaque;
	char		 fe[256], r[256];

	kafka_text(r, sizeof r, reason);
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, fe, sizeof fe);
		k->fatal = true;
		k->up = false;
		kafka_fail(k, "producer failed", fe);
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
		if (!k->down)
			log_output(LOG_WARNING, k->conf.name, "output %s: "
			    "all brokers are down (%s%s%s); alerts are kept in "
			    "the spool", k->conf.name, r, k->lasterr[0] != '\0' ?
			    "; last error: " : "", k->lasterr);
		k->up = false;
		k->down = true;
		return;
	}
	/* What the operator must fix is said once per distinct reason. */
	if ((err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
	    err == RD_KAFKA_RESP_ERR__SSL ||
	    err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
	    err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
	    err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) &&
	    strcmp(k->warned, r) != 0) {
		memcpy(k->warned, r, sizeof k->warned);
		log_output(LOG_WARNING, k->conf.name, "output %s: %s; alerts "
		    "are kept in the spool", k->conf.name, r);
		return;
	}
	memcpy(k->lasterr, r, sizeof k->lasterr);
	log_debug("output %s: kafka: %s: %s", k->conf.name,
	    rd_kafka_err2name(err), r);
}

/* librdkafka's own log lines, served from the main queue: debug only. */
static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
    const char *buf)
{
	const struct kafka	*k = rd_kafka_opaque(rk);
	char			 b[512];

	kafka_text(b, sizeof b, buf);
	log_debug("output %s: kafka %s: %s", k->conf.name, fac, b);
}

static int
kafka_set(rd_kafka_conf_t *kc, const char *name, const char *val,
    const struct conf_output *c, char *err, size_t errlen)
{
	char	 e[256];

	if (val == NULL)
		return 0;
	if (rd_kafka_conf_set(kc, name, val, e, sizeof e) ==
	    RD_KAFKA_CONF_OK)
		return 0;
	snprintf(err, errlen, "output %s: kafka setting %s: %s", c->name,
	    name, e);
	return -1;
}

/* bootstrap.servers from brokers: the same list without blanks. */
static char *
kafka_servers(const char *brokers)
{
	char	*s = xstrdup(brokers), *d = s;
	size_t	 i;

	for (i = 0; brokers[i] != '\0'; i++) {
		if (brokers[i] != ' ' && brokers[i] != '\t')
			*d++ = brokers[i];
	}
	*d = '\0';
	return s;
}

static const char *
kafka_mechanism(enum sasl_mechanism m)
{
	switch (m) {
	case SASL_SCRAM_SHA_256:
		return "SCRAM-SHA-256";
	case SASL_SCRAM_SHA_512:
		return "SCRAM-SHA-512";
	default:
		return "PLAIN";
	}
}

/* The producer's settings; -1 with err. */
static int
kafka_conf(rd_kafka_conf_t *kc, const struct conf_output *c, char *err,
    size_t errlen)
{
	static const char *const fixed[][2] = {
		{ "client.id", "alertrelayd" },
		{ "acks", "all" },
		{ "enable.idempotence", "true" },
		{ "message.timeout.ms", KAFKA_TIMEOUT_MS },
		{ "queue.buffering.max.messages", "100000" },
		{ "linger.ms", "5" },
		{ "socket.keepalive.enable", "true" },
		{ "log.queue", "true" },
		{ "enable.ssl.certificate.verification", "true" },
		{ "ssl.endpoint.identification.algorithm", "https" },
	};
	static const char *const proto[] = { "plaintext", "ssl",
		"sasl_ssl" };
	char	*servers = kafka_servers(c->brokers);
	size_t	 i;
	int	 r = 0;

	for (i = 0; i < nitems(fixed) && r == 0; i++)
		r = kafka_set(kc, fixed[i][0], fixed[i][1], c, err, errlen);
	if (r == 0)
		r = kafka_set(kc, "bootstrap.servers", servers, c, err, errlen);
	free(servers);
	if (r == 0)
		r = kafka_set(kc, "security.protocol",
		    proto[c->kafka_security], c, err, errlen);
	if (r == 0 && c->kafka_security != KAFKA_PLAINTEXT &&
	    (kafka_set(kc, "ssl.ca.location", c->ca_file, c, err, errlen) ||
	    kafka_set(kc, "ssl.certificate.location", c->cert_file, c, err,
	    errlen) || kafka_set(kc, "ssl.key.location", c->key_file, c, err,
	    errlen)))
		r = -1;
	if (r == 0 && c->kafka_security == KAFKA_SASL_SSL &&
	    (kafka_set(kc, "sasl.mechanism", kafka_mechanism(
	    c->sasl_mechanism), c, err, errlen) || kafka_set(kc,
	    "sasl.username", c->sasl_username, c, err, errlen) ||
	    kafka_set(kc, "sasl.password", c->sasl_password, c, err, errlen)))
		r = -1;
	return r;
}

/* Create the producer and hook its main queue to the pipe. */
static int
kafka_open(struct kafka *k, char *err, size_t errlen)
{
	rd_kafka_conf_t		*kc = rd_kafka_conf_new();
	rd_kafka_queue_t	*q;
	char			 e[512];

	if (kafka_conf(kc, &k->conf, err, errlen) == -1) {
		rd_kafka_conf_destroy(kc);
		return -1;
	}
	rd_kafka_conf_set_dr_msg_cb(kc, kafka_dr_cb);
	rd_kafka_conf_set_error_cb(kc, kafka_error_cb);
	rd_kafka_conf_set_log_cb(kc, kafka_log_cb);
	rd_kafka_conf_set_opaque(kc, k);
	/* rd_kafka_new takes kc on success only. */
	if ((k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof e)) ==
	    NULL) {
		rd_kafka_conf_destroy(kc);
		snprintf(err, errlen, "output %s: cannot create the kafka "
		    "producer: %s", k->conf.name, e);
		return -1;
	}
	rd_kafka_set_log_queue(k->rk, NULL);
	q = rd_kafka_queue_get_main(k->rk);
	rd_kafka_queue_io_event_enable(q, k->pipe[1], "1", 1);
	rd_kafka_queue_destroy(q);
	k->fatal = false;
	return 0;
}

/* Drop the producer: purge, never flush (the spool keeps the records). */
static void
kafka_close(struct kafka *k)
{
	if (k->rk == NULL)
		return;
	rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE |
	    RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
	/* Reports of the purged records are not wanted any more. */
	k->head = k->next;
	rd_kafka_destroy(k->rk);
	k->rk = NULL;
}

/* Release the acknowledged head of the window to the sink. */
static void
kafka_release(struct kafka *k)
{
	struct kafka_slot	*sl, *last = NULL;
	uint64_t		 n = 0;

	while (k->head < k->next) {
		sl = &k->slots[k->head % KAFKA_WINDOW];
		if (sl->state != KAFKA_SLOT_OK)
			break;
		last = sl;
		k->bytes -= sl->bytes;
		k->reported--;
		k->head++;
		n++;
	}
	if (last != NULL)
		k->cbs.acked(k->cbs.arg, &last->end, n);
}

/* Serve the main queue, then report progress or failure. */
static void
kafka_serve(struct kafka *k)
{
	if (k->rk == NULL)
		return;
	rd_kafka_poll(k->rk, 0);
	kafka_release(k);
	if (k->failed && k->reported == k->next - k->head)
		k->cbs.failed(k->cbs.arg, k->reason);
}

static void
kafka_pipe_cb(evutil_socket_t fd, short what, void *arg)
{
	char	 b[256];

	while (read(fd, b, sizeof b) > 0)
		;
	kafka_serve(arg);
}

static void
kafka_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kafka	*k = arg;
	struct timeval	 tv = { KAFKA_TICK_MS / 1000, 0 };

	kafka_serve(k);
	evtimer_add(k->tick, &tv);
}

struct kafka *
kafka_new(struct event_base *base, const struct conf_output *c,
    const struct kafka_cbs *cbs, char *err, size_t errlen)
{
	struct kafka	*k = xcalloc(1, sizeof *k);
	struct timeval	 tv = { KAFKA_TICK_MS / 1000, 0 };

	k->base = base;
	k->conf = *c;
	k->cbs = *cbs;
	if (pipe2(k->pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
		snprintf(err, errlen, "output %s: pipe: %s", c->name,
		    strerror(errno));
		free(k);
		return NULL;
	}
	if (kafka_open(k, err, errlen) == -1) {
		close(k->pipe[0]);
		close(k->pipe[1]);
		free(k);
		return NULL;
	}
	k->ev = event_new(base, k->pipe[0], EV_READ | EV_PERSIST,
	    kafka_pipe_cb, k);
	k->tick = evtimer_new(base, kafka_tick_cb, k);
	if (k->ev == NULL || k->tick == NULL)
		fatalx("event_new");
	event_add(k->ev, NULL);
	evtimer_add(k->tick, &tv);
	return k;
}

void
kafka_free(struct kafka *k)
{
	if (k == NULL)
		return;
	kafka_close(k);
	event_free(k->ev);
	event_free(k->tick);
	close(k->pipe[0]);
	close(k->pipe[1]);
	free(k);
}

bool
kafka_room(const struct kafka *k)
{
	return k->rk != NULL && !k->failed && !k->fatal &&
	    k->next - k->head < KAFKA_WINDOW && k->bytes < KAFKA_WINDOW_BYTES;
}

int
kafka_send(struct kafka *k, const char *rec, size_t len,
    const struct spool_pos *end, char *reason, size_t rlen)
{
	struct kafka_slot	*sl;
	const char		*key, *msg;
	size_t			 keylen, msglen;
	rd_kafka_resp_err_t	 e;

	kafka_record_split(rec, len, &key, &keylen, &msg, &msglen);
	e = rd_kafka_producev(k->rk, RD_KAFKA_V_TOPIC(k->conf.topic),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_KEY(key, keylen),
	    RD_KAFKA_V_VALUE((void *)(uintptr_t)msg, msglen),
	    RD_KAFKA_V_OPAQUE((void *)(uintptr_t)k->next), RD_KAFKA_V_END);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(reason, rlen, "cannot produce: %s",
		    rd_kafka_err2str(e));
		return -1;
	}
	sl = &k->slots[k->next % KAFKA_WINDOW];
	sl->end = *end;
	sl->bytes = len;
	sl->state = KAFKA_SLOT_SENT;
	k->bytes += len;
	k->next++;
	return 0;
}

uint64_t
kafka_reset(struct kafka *k)
{
	uint64_t	 n = k->next - k->head;
	char		 err[512];

	/* Records not produced yet go; those on the wire are ignored. */
	if (k->rk != NULL && k->reported < n)
		rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE |
		    RD_KAFKA_PURGE_F_NON_BLOCKING);

	k->head = k->next;
	k->reported = 0;
	k->bytes = 0;
	k->failed = false;
	if (k->fatal || k->rk == NULL) {
		kafka_close(k);
		if (kafka_open(k, err, sizeof err) == -1) {
			/* Validated at start: not expected; retried later. */
			log_output(LOG_WARNING, k->conf.name, "%s", err);
			k->failed = true;
		}
	}
	return n;
}

bool
kafka_connected(const struct kafka *k)
{
	return k->up;
}

uint64_t
kafka_inflight(const struct kafka *k)
{
	return k->next - k->head;
}

void
kafka_record_build(struct buf *b, const char *tenant, const char *id,
    size_t idlen, const char *msg, size_t len)
{
	size_t	 tlen = strlen(tenant), klen;

	if (tlen > 0xff00)
		tlen = 0xff00;			/* names are short */
	if (tlen + 1 + idlen > 0xffff)
		idlen = 0xffff - 1 - tlen;	/* not for real alert IDs */
	klen = tlen + 1 + idlen;
	buf_reserve(b, 4 + klen + len);
	buf_addc(b, '\0');
	buf_addc(b, 'K');
	buf_addc(b, (char)(klen >> 8));
	buf_addc(b, (char)(klen & 0xff));
	buf_add(b, tenant, tlen);
	buf_addc(b, '/');
	buf_add(b, id, idlen);
	buf_add(b, msg, len);
}

void
kafka_record_split(const char *rec, size_t len, const char **key,
    size_t *keylen, const char **msg, size_t *msglen)
{
	const unsigned char	*p = (const unsigned char *)rec;
	size_t			 klen;

	*key = NULL;
	*keylen = 0;
	*msg = rec;
	*msglen = len;
	if (len < 4 || p[0] != '\0' || p[1] != 'K')
		return;
	klen = (size_t)p[2] << 8 | p[3];
	if (klen > len - 4)
		return;
	*key = rec + 4;
	*keylen = klen;
	*msg = rec + 4 + klen;
	*msglen = len - 4 - klen;
}
