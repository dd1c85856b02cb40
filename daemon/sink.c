/* Outputs: each output's spool, drained to its SIEM or file. */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "internal.h"
#include "backoff.h"
#include "kafka.h"
#include "sink_int.h"

/* Framed bytes kept outside the kernel, and batch sizes per loop pass. */
#define SINK_HIWAT		(256 * 1024)
#define SINK_TLS_CHUNK		16384
#define SINK_ROUNDS		2
#define SINK_UDP_BATCH		256

/* Timing: connect plus TLS handshake; backoff; when a link is stable. */
#define SINK_CONNECT_MS		15000
#define SINK_RESOLVE_MS		10000	/* name resolution */
#define SINK_BACKOFF_MIN_MS	1000
#define SINK_BACKOFF_MAX_MS	60000
#define SINK_STABLE_MS		10000
#define SINK_UDP_NOTE_MS	600000

/*
 * Delivery confirmation on stream transports (see sink_delivered): how
 * often the kernel's send queue is looked at while records are out, and
 * how long (time, and bytes of later acknowledged data) a record stays in
 * the spool after the peer's TCP stack took it.  Unacknowledged data older
 * than a minute breaks the link (SINKNET_USER_TIMEOUT_MS in sinknet.c).
 */
#define SINK_ACK_POLL_MS	20
#define SINK_ACK_HOLD_MS	250
#define SINK_ACK_HOLD_BYTES	(256 * 1024)
#define SINK_ACK_FLUSH_MS	150	/* saving the ack after the last one */
#define SINK_CLOSE_WAIT_MS	2000	/* for the SIEM's close (finishing) */

enum sink_state {
	SINK_IDLE,		/* closed: waiting for the timer */
	SINK_RESOLVING,		/* host name at the resolver (evdns) */
	SINK_CONNECTING,	/* non-blocking TCP connect */
	SINK_HANDSHAKE,		/* TLS handshake */
	SINK_UP,		/* sending */
};

struct sink {
	struct event_base	*base;
	struct conf_output	 conf;		/* conf_output_dup: ours */
	struct spool		*spool;
	SSL_CTX			*ssl_ctx;

	enum sink_state		 state;
	int			 fd;
	SSL			*ssl;
	struct evdns_base	*dns;		/* the relay's, not ours */
	struct evdns_getaddrinfo_request *resolving; /* in flight, or NULL */
	struct addrinfo		*ai;		/* resolved addresses */
	struct addrinfo		*ai_cur;	/* the one being tried */
	struct event		*ev_read;
	struct event		*ev_write;
	struct event		*timer;		/* reconnect or timeout */
	struct event		*kick;		/* send on a later pass */
	struct event		*ackpoll;	/* look at the send queue */
	struct event		*ackflush;	/* save the spool's ack file */

	/*
	 * Stream transports: framed records on their way to the SIEM.
	 * queued counts bytes put into out since the connection started,
	 * written the bytes that left it (plaintext, for TLS), peer_acked
	 * those the peer's TCP stack has acknowledged.  recs.v[recs.first..
	 * recs.n) are the records not yet acknowledged in the spool, each
	 * with its cumulative end offset; those before recs.tcp are known
	 * to be in the peer's hands (acked_at set).  marks.v[marks.first..
	 * marks.n) map plaintext to socket bytes for TLS.
	 */
	struct evbuffer		*out;
	uint64_t		 queued;
	uint64_t		 written;
	uint64_t		 peer_acked;
	struct sink_recs	 recs;
	struct sinktls_marks	 marks;
	size_t			 tls_retry;	/* SSL_write to repeat */
	bool			 tls_wants_read; /* ... once readable */
	struct spool_pos	 sendpos;	/* next record to read */
	struct buf		 rec;
	struct buf		 frame;

	bool			 ever_up;
	bool			 progressed;	/* the peer took data */
	bool			 down;		/* outage announced */
	int64_t			 backoff_ms;
	int64_t			 up_since;	/* mono_ms */
	int64_t			 udp_noted;	/* mono_ms of last note */

	uint64_t		 sent;
	uint64_t		 reconnects;
	char			 last_error[512]; /* why it is down (status) */
	uint64_t		 resends;	/* records sent again */
	bool			 finishing;	/* see sink_finish */
	bool			 half_closed;	/* our side shut (finishing) */
	void			(*drained_cb)(void *);
	void			*drained_arg;
	struct kafka		*kafka;		/* kafka outputs: producer */
	struct sinkrelp		 relp;		/* relp: the session */
};

static void	sink_connect(struct sink *);
static void	sink_pump(struct sink *);
static void	sink_io_cb(evutil_socket_t, short, void *);
static void	sink_relp_open(struct sink *);
static void	sink_relp_release(struct sink *);

/* RELP's records are acknowledged by its responses (see sink_relp_input). */
#define SINK_RELP_WINDOW	1024
#define SINK_RELP_TIMEOUT_MS	60000

static bool
sink_is_relp(const struct sink *s)
{
	return s->conf.transport == OUT_RELP;
}

/* Does the connection speak TLS (tls, or relp with tls = yes)? */
static bool
sink_uses_tls(const struct sink *s)
{
	return s->conf.transport == OUT_TLS || (sink_is_relp(s) &&
	    s->conf.tls);
}

static bool
sink_is_local(const struct sink *s)
{
	return s->conf.transport == OUT_FILE ||
	    s->conf.transport == OUT_STDOUT;
}

/* What the output writes to, for messages. */
static const char *
sink_target(const struct sink *s)
{
	if (s->conf.transport == OUT_STDOUT)
		return "standard output";
	if (s->conf.transport == OUT_KAFKA)
		return s->conf.brokers;
	return s->conf.address != NULL ? s->conf.address : "(none)";
}

/* Open the output's spool under state_dir/spool/NAME. */
static struct spool *
sink_spool_open(const struct conf_output *c, const char *state_dir,
    char *err, size_t errlen)
{
	struct spool	*sp;
	char		*dir, *path;
	char		 e[512];

	xasprintf(&dir, "%s/spool", state_dir);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "output %s: cannot create %s: %s",
		    c->name, dir, strerror(errno));
		free(dir);
		return NULL;
	}
	xasprintf(&path, "%s/%s", dir, c->name);
	free(dir);
	e[0] = '\0';
	if ((sp = spool_open(path, c->spool_max_bytes, e, sizeof e)) == NULL)
		snprintf(err, errlen, "output %s: cannot open its %s", c->name,
		    e);
	free(path);
	return sp;
}

/* Schedule the sender to run after ms milliseconds (0: next loop pass). */
static void
sink_kick(struct sink *s, int64_t ms)
{
	struct timeval	 tv = tv_from_ms(ms);

	if (!evtimer_pending(s->kick, NULL) || ms == 0)
		evtimer_add(s->kick, &tv);
}

static void
sink_timer_add(struct sink *s, int64_t ms)
{
	struct timeval	 tv = tv_from_ms(ms);

	evtimer_add(s->timer, &tv);
}

/* Forget the connection and everything queued on it; IDLE afterwards. */
static void
sink_close_conn(struct sink *s)
{
	if (s->ev_read != NULL)
		event_free(s->ev_read);
	if (s->ev_write != NULL)
		event_free(s->ev_write);
	s->ev_read = s->ev_write = NULL;
	SSL_free(s->ssl);
	s->ssl = NULL;
	if (s->fd != -1 && s->fd != STDOUT_FILENO)
		close(s->fd);
	s->fd = -1;
	if (s->resolving != NULL) {
		/* Runs sink_resolved_cb at once, with EVUTIL_EAI_CANCEL. */
		evdns_getaddrinfo_cancel(s->resolving);
		s->resolving = NULL;
	}
	if (s->ai != NULL)
		evutil_freeaddrinfo(s->ai);	/* getaddrinfo's or evdns's */
	s->ai = s->ai_cur = NULL;
	evbuffer_drain(s->out, evbuffer_get_length(s->out));
	s->resends += sinkrecs_pending(&s->recs);
	if (s->kafka != NULL)
		s->resends += kafka_reset(s->kafka);
	s->queued = s->written = s->peer_acked = 0;
	sinkrecs_clear(&s->recs);
	s->marks.first = s->marks.n = 0;
	buf_reset(&s->relp.in);
	s->tls_retry = 0;
	s->tls_wants_read = false;
	s->half_closed = false;
	evtimer_del(s->timer);
	evtimer_del(s->ackpoll);
	s->state = SINK_IDLE;
}

/*
 * Next reconnect delay: exponential from 1s to 60s, +-20% jitter.  A link
 * that stayed up a while or delivered records starts again from 1s: a
 * SIEM (or a load balancer) that drops busy connections now and then must
 * not leave a backlog waiting for a minute.
 */
static int64_t
sink_backoff(struct sink *s)
{
	int64_t	 d;

	if (s->ever_up && ((s->up_since != 0 &&
	    mono_ms() - s->up_since >= SINK_STABLE_MS) || s->progressed))
		s->backoff_ms = SINK_BACKOFF_MIN_MS;
	s->up_since = 0;
	s->progressed = false;
	d = jitter_ms(s->backoff_ms, 20, arc4random());
	s->backoff_ms *= 2;
	if (s->backoff_ms > SINK_BACKOFF_MAX_MS)
		s->backoff_ms = SINK_BACKOFF_MAX_MS;
	return d;
}

/*
 * The output failed: close, log once per outage (what failed and what
 * happens next), and retry later.  Records not acknowledged stay in the
 * spool and are sent again from its head on the next connection.
 */
static void
sink_fail(struct sink *s, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sink_fail(struct sink *s, const char *what, const char *fmt, ...)
{
	struct log_ctx	 lc = { .output = s->conf.name,
			    .message_id = MSGID_OUTPUT_DOWN };
	char		 reason[512];
	va_list		 ap;
	int64_t		 delay;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	snprintf(s->last_error, sizeof s->last_error, "%s", reason);
	sink_close_conn(s);
	delay = sink_backoff(s);
	log_ctx(s->down ? LOG_DEBUG : LOG_WARNING, &lc,
	    "output %s: %s %s: %s; retrying in %llds; alerts are kept in "
	    "the spool", s->conf.name, what, sink_target(s), reason,
	    (long long)((delay + 500) / 1000));
	s->down = true;
	sink_timer_add(s, delay);
}

/* The connection works: start sending from the spool head. */
static void
sink_up(struct sink *s)
{
	struct log_ctx	 lc = { .output = s->conf.name,
			    .message_id = MSGID_OUTPUT_RECOVERED };

	evtimer_del(s->timer);
	s->state = SINK_UP;
	s->up_since = mono_ms();
	if (s->down) {
		log_ctx(LOG_INFO, &lc, "output %s: connected to %s",
		    s->conf.name, sink_target(s));
		s->reconnects++;
	} else
		log_debug("output %s: connected to %s", s->conf.name,
		    sink_target(s));
	s->down = false;
	s->ever_up = true;
	s->last_error[0] = '\0';
	spool_head(s->spool, &s->sendpos);
	if (sink_is_relp(s))
		sink_relp_open(s);
	sink_kick(s, 0);
}

/* Start the TLS handshake on the connected socket. */
static void
sink_tls_start(struct sink *s)
{
	char		 reason[512];
	const char	*name;

	name = s->conf.tls_server_name != NULL ? s->conf.tls_server_name :
	    s->conf.host;
	if ((s->ssl = sinktls_session(s->ssl_ctx, s->fd, name, reason,
	    sizeof reason)) == NULL) {
		sink_fail(s, "cannot connect to", "%s", reason);
		return;
	}
	s->state = SINK_HANDSHAKE;
	event_add(s->ev_read, NULL);
	event_add(s->ev_write, NULL);
}

/* Advance the TLS handshake. */
static void
sink_tls_handshake(struct sink *s)
{
	char	 reason[512];

	switch (sinktls_handshake(s->ssl, reason, sizeof reason)) {
	case SINKTLS_DONE:
		event_del(s->ev_write);
		sink_up(s);
		return;
	case SINKTLS_WANT_READ:
		event_del(s->ev_write);
		return;
	case SINKTLS_WANT_WRITE:
		event_add(s->ev_write, NULL);
		return;
	case SINKTLS_FAILED:
		break;
	}
	sink_fail(s, "cannot connect to", "%s", reason);
}

/* The non-blocking connect finished: check it, then TLS or send. */
static void
sink_connected(struct sink *s)
{
	int	 error;

	if ((error = sinknet_connect_error(s->fd)) != 0) {
		if (s->ai_cur != NULL && s->ai_cur->ai_next != NULL) {
			/* Try the host's next address. */
			event_free(s->ev_read);
			event_free(s->ev_write);
			s->ev_read = s->ev_write = NULL;
			close(s->fd);
			s->fd = -1;
			s->ai_cur = s->ai_cur->ai_next;
			sink_connect(s);
			return;
		}
		sink_fail(s, "cannot connect to", "%s", strerror(error));
		return;
	}
	event_del(s->ev_write);
	if (sink_uses_tls(s)) {
		sink_tls_start(s);
		return;
	}
	event_add(s->ev_read, NULL);
	sink_up(s);
}

/* The resolver answered (or failed); not for a cancelled request. */
static void
sink_resolved_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct sink	*s = arg;

	if (result == EVUTIL_EAI_CANCEL)
		return;		/* from sink_close_conn: s may be going */
	s->resolving = NULL;
	evtimer_del(s->timer);
	if (result != 0 || ai == NULL) {
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		sink_fail(s, "cannot connect to", "cannot resolve %s: %s",
		    s->conf.host, result != 0 ? evutil_gai_strerror(result) :
		    "no address");
		return;
	}
	s->ai = s->ai_cur = ai;
	sink_connect(s);
}

/*
 * Resolve host and port, then connect.  A numeric address is converted
 * at once (AI_NUMERICHOST never blocks).  A name goes to the relay's
 * asynchronous resolver (evdns: /etc/hosts, then the name servers of
 * /etc/resolv.conf) and the loop carries on; sink_resolved_cb connects,
 * or the timer gives up after SINK_RESOLVE_MS.  Never a blocking
 * getaddrinfo: a silent name server would freeze every tenant, status,
 * metrics and the watchdog for as long as it stays silent.
 */
static void
sink_resolve(struct sink *s)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	int		 r;

	if (s->conf.host == NULL || s->conf.port == NULL) {
		sink_fail(s, "cannot connect to", "no address configured");
		return;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = s->conf.transport == OUT_UDP ? SOCK_DGRAM :
	    SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	r = getaddrinfo(s->conf.host, s->conf.port, &hints, &s->ai);
	if (r == 0) {
		s->ai_cur = s->ai;
		sink_connect(s);
		return;
	}
	s->ai = NULL;
	if (r != EAI_NONAME || s->dns == NULL) {
		sink_fail(s, "cannot connect to", "cannot resolve %s: %s",
		    s->conf.host, r != EAI_NONAME ? gai_strerror(r) :
		    "no resolver");
		return;
	}
	hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
	s->state = SINK_RESOLVING;
	sink_timer_add(s, SINK_RESOLVE_MS);
	/* NULL when the callback already ran (e.g. from /etc/hosts). */
	req = evdns_getaddrinfo(s->dns, s->conf.host, s->conf.port, &hints,
	    sink_resolved_cb, s);
	if (req != NULL)
		s->resolving = req;
}

/* Open the file or standard output. */
static void
sink_open_local(struct sink *s)
{
	if (s->conf.transport == OUT_STDOUT) {
		s->fd = STDOUT_FILENO;
		sink_up(s);
		return;
	}
	s->fd = open(s->conf.address, O_WRONLY | O_APPEND | O_CREAT |
	    O_CLOEXEC, 0600);
	if (s->fd == -1) {
		sink_fail(s, "cannot open", "%s", strerror(errno));
		return;
	}
	sink_up(s);
}

/* Start a connection attempt to s->ai_cur (resolving first if needed). */
static void
sink_connect(struct sink *s)
{
	int	 error = 0;

	if (sink_is_local(s)) {
		sink_open_local(s);
		return;
	}
	if (s->kafka != NULL) {
		/* librdkafka connects on its own: produce from the head. */
		sink_up(s);
		return;
	}
	if (s->ai == NULL) {
		sink_resolve(s);	/* comes back here once resolved */
		return;
	}
	if ((s->fd = sinknet_connect(&s->ai_cur, &error)) == -1) {
		sink_fail(s, "cannot connect to", "%s", strerror(error));
		return;
	}
	s->ev_read = event_new(s->base, s->fd, EV_READ | EV_PERSIST,
	    sink_io_cb, s);
	s->ev_write = event_new(s->base, s->fd, EV_WRITE | EV_PERSIST,
	    sink_io_cb, s);
	if (s->ev_read == NULL || s->ev_write == NULL)
		fatalx("event_new");
	if (s->conf.transport == OUT_UDP) {
		/* Connected UDP: ICMP errors come back on later sends. */
		sink_up(s);
		return;
	}
	sinknet_tcp_opts(s->fd);
	s->state = SINK_CONNECTING;
	event_add(s->ev_write, NULL);
	sink_timer_add(s, SINK_CONNECT_MS);
}

/* Reconnect timer, or connect/handshake timeout. */
static void
sink_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink	*s = arg;

	if (s->state == SINK_IDLE)
		sink_connect(s);
	else if (s->state == SINK_RESOLVING)
		sink_fail(s, "cannot connect to", "cannot resolve %s: no "
		    "answer from the name servers in /etc/resolv.conf within "
		    "%ds", s->conf.host, SINK_RESOLVE_MS / 1000);
	else if (s->state == SINK_CONNECTING || s->state == SINK_HANDSHAKE)
		sink_fail(s, "cannot connect to", "timed out after %ds",
		    SINK_CONNECT_MS / 1000);
}

/*
 * When is a record delivered?  UDP: once sent (no confirmation exists).
 * Files and standard output: once written.  TCP and TLS: once the peer's
 * TCP stack has acknowledged every byte of it, so that a connection that
 * breaks (reset, timeout, peer close) loses nothing that sat in our
 * kernel's send queue or on the wire: the next connection starts again at
 * the spool head, the first record not acknowledged.
 *
 * TCP.  Bytes acknowledged by the peer = bytes we wrote to the socket -
 * SIOCOUTQ (Linux: the bytes in the send queue, unsent or unacknowledged).
 *
 * TLS.  The kernel counts ciphertext, not the plaintext our offsets are in.
 * After every successful SSL_write of plaintext up to offset P, OpenSSL has
 * handed all the TLS records carrying it to the socket BIO, so a mark
 * (P, C) is kept with C = BIO_number_written() of that BIO: every byte
 * written to the socket goes through it (handshake, alerts, our records),
 * in stream order.  With C' the count now, the ciphertext acknowledged is
 * C' - SIOCOUTQ, and plaintext up to P is in the peer's hands once C <=
 * C' - SIOCOUTQ.  The granularity is one SSL_write (at most 16 KiB), and
 * only a later mark moves forward: never an early acknowledgement.  A
 * constant offset in the counter (handshake bytes) cancels out.
 *
 * The peer's TCP acknowledgement means the SIEM host's kernel has the
 * bytes, not that the SIEM read them: a SIEM that dies or closes with
 * unread data discards it and answers with a reset.  So an acknowledged
 * record stays in the spool until SINK_ACK_HOLD_MS have passed or
 * SINK_ACK_HOLD_BYTES more bytes were acknowledged after it, whichever
 * comes first (the bytes bound keeps links that break often making
 * progress); when the connection fails meanwhile, it is sent again.  When
 * the peer closes cleanly (FIN, which it only sends after reading all it
 * acknowledged) or we close on shutdown, everything acknowledged counts as
 * delivered at once.  At the end (--once, a stop) we half-close and wait
 * for that FIN rather than the hold (sink_half_close).  Duplicates after a
 * failure are thus limited to the last SINK_ACK_HOLD_BYTES the peer
 * acknowledged, plus records whose acknowledgement we had not seen yet.
 * Without SIOCOUTQ (not Linux), bytes handed to the kernel count as
 * delivered.
 */
static uint64_t
sink_delivered(struct sink *s)
{
	int		 outq;

	if (sink_is_local(s) || s->fd == -1)
		return s->written;
	if (sinknet_outq(s->fd, &outq) == -1)
		return s->peer_acked;
	if (!sink_uses_tls(s)) {
		if ((uint64_t)outq <= s->written &&
		    s->written - (uint64_t)outq > s->peer_acked)
			s->peer_acked = s->written - (uint64_t)outq;
		return s->peer_acked;
	}
	s->peer_acked = sinktls_acked(&s->marks, s->ssl, outq, s->peer_acked);
	return s->peer_acked;
}

/*
 * Everything before pos is delivered: n more messages sent.  The spool
 * saves its ack file at most every 100 ms while acks come in; the flush
 * timer saves the last one once they stop, so that a crash when the
 * backlog is gone does not send the end of it again.
 */
static void
sink_spool_ack(struct sink *s, const struct spool_pos *pos, uint64_t n)
{
	struct timeval	 tv = { 0, SINK_ACK_FLUSH_MS * 1000 };

	if (spool_ack(s->spool, pos) == -1)
		log_output(LOG_WARNING, s->conf.name, "output %s: cannot "
		    "acknowledge in the spool: %s", s->conf.name,
		    strerror(errno));
	evtimer_add(s->ackflush, &tv);
	s->sent += n;
	if (s->drained_cb != NULL && spool_records(s->spool) == 0)
		s->drained_cb(s->drained_arg);
}

/* No ack for a while: let the spool write its ack file (see above). */
static void
sink_ackflush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink	*s = arg;

	/* A failure is logged by the spool; never a data sync here. */
	spool_save_ack(s->spool);
}

/*
 * Note the records the peer now holds and acknowledge in the spool those
 * held long enough (all of them with all: clean close or shutdown).
 */
static void
sink_ack(struct sink *s, bool all)
{
	struct spool_pos end;
	uint64_t	 done, n, hold_bytes = SINK_ACK_HOLD_BYTES;
	int64_t		 now = mono_ms(), hold_ms = SINK_ACK_HOLD_MS;

	if (sink_is_relp(s)) {
		sink_relp_release(s);
		return;
	}
	done = sink_delivered(s);
	if (sink_is_local(s))
		all = true;
	if (sinkrecs_reach(&s->recs, done, now))
		s->progressed = true;
	if (all)
		hold_ms = 0, hold_bytes = 0;
	else if (s->half_closed)	/* the SIEM's close will tell */
		hold_ms = SINK_CLOSE_WAIT_MS, hold_bytes = UINT64_MAX;
	n = sinkrecs_release(&s->recs, done, now, hold_ms, hold_bytes, &end);
	if (n > 0)
		sink_spool_ack(s, &end, n);
}

/* Look at the send queue again soon while records are outstanding. */
static void
sink_ackpoll_arm(struct sink *s)
{
	struct timeval	 tv = { 0, SINK_ACK_POLL_MS * 1000 };

	if (sink_is_relp(s))
		tv.tv_usec = 0, tv.tv_sec = 1;	/* response timeout only */
	if (s->state != SINK_UP || sink_is_local(s) ||
	    s->conf.transport == OUT_UDP) {
		evtimer_del(s->ackpoll);
		return;
	}
	if (sinkrecs_pending(&s->recs) > 0 &&
	    !evtimer_pending(s->ackpoll, NULL))
		evtimer_add(s->ackpoll, &tv);
}

static void
sink_ackpoll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink	*s = arg;

	if (s->state != SINK_UP)
		return;
	if (sink_is_relp(s) && sinkrecs_pending(&s->recs) > 0 &&
	    mono_ms() - s->relp.rsp_at > SINK_RELP_TIMEOUT_MS) {
		sink_fail(s, "lost connection to", "no RELP response for "
		    "%ds", SINK_RELP_TIMEOUT_MS / 1000);
		return;
	}
	sink_ack(s, false);
	sink_ackpoll_arm(s);
}

/*
 * Ending (--once done, or stopping) with every record written: shut our
 * direction of the connection.  A SIEM reads up to the end and then
 * closes its side, which confirms every record at once (sink_read)
 * where an ordinary acknowledgement is held SINK_ACK_HOLD_MS; a SIEM
 * that resets instead lost what it had not read, and those records are
 * sent again.  Meanwhile nothing is released by the hold; a SIEM that
 * has not closed SINK_CLOSE_WAIT_MS after it acknowledged a record is
 * taken to hold it, as the hold would have.
 * RELP and Kafka confirm each record themselves; datagrams and files
 * have nothing to confirm.
 */
static void
sink_half_close(struct sink *s)
{
	size_t	 out = sinkrecs_pending(&s->recs);

	if (!s->finishing || s->half_closed || s->state != SINK_UP ||
	    sink_is_local(s) || sink_is_relp(s) || s->kafka != NULL ||
	    s->conf.transport == OUT_UDP)
		return;
	if (out == 0 || out != spool_records(s->spool) ||
	    evbuffer_get_length(s->out) > 0 || s->tls_retry != 0)
		return;
	s->half_closed = true;
	if (s->ssl != NULL) {
		ERR_clear_error();
		/* A close_notify that cannot leave whole ends it there. */
		if (SSL_shutdown(s->ssl) < 0)
			return;
	}
	if (shutdown(s->fd, SHUT_WR) == -1)
		log_debug("output %s: shutdown: %s", s->conf.name,
		    strerror(errno));
	else
		log_debug("output %s: every record sent; waiting for %s to "
		    "read them and close", s->conf.name, sink_target(s));
}

/*
 * The peer closed cleanly: what it acknowledged is delivered.  After our
 * half-close that is the end (true): it read every record.
 */
static bool
sink_peer_closed(struct sink *s)
{
	sink_ack(s, true);
	if (!s->half_closed)
		return false;
	log_debug("output %s: %s read every record and closed",
	    s->conf.name, sink_target(s));
	sink_close_conn(s);
	if (spool_records(s->spool) > 0)
		sink_timer_add(s, 0);
	return true;
}

/*
 * A new RELP session: "open" goes first; records may follow at once.
 * The server took the connection: for the reconnect backoff that is a
 * working link (as the peer's TCP acknowledgement is for tcp), even if
 * it is reset before an answer could be read (a reset discards unread
 * responses).
 */
static void
sink_relp_open(struct sink *s)
{
	s->progressed = true;
	sinkrelp_open(&s->relp, &s->frame);
	if (evbuffer_add(s->out, s->frame.data, s->frame.len) == -1)
		fatalx("evbuffer_add");
	s->queued += s->frame.len;
}

/* Acknowledge in the spool the records answered "200", in order. */
static void
sink_relp_release(struct sink *s)
{
	struct spool_pos end;
	uint64_t	 n;

	if ((n = sinkrecs_answered(&s->recs, &end)) > 0) {
		s->progressed = true;
		sink_spool_ack(s, &end, n);
	}
}

/* Bytes from a RELP server: responses acknowledge records; -1 failed. */
static int
sink_relp_input(struct sink *s, const char *data, size_t len)
{
	char	 why[512];

	switch (sinkrelp_input(&s->relp, &s->recs, data, len, why,
	    sizeof why)) {
	case SINKRELP_OK:
		break;
	case SINKRELP_CLOSED:
		sink_relp_release(s);
		sink_fail(s, "lost connection to", "the RELP server "
		    "closed the session");
		return -1;
	case SINKRELP_FAILED:
		sink_fail(s, "lost connection to", "%s", why);
		return -1;
	}
	sink_relp_release(s);
	return 0;
}

/* Frame spool records into the output buffer up to the watermark. */
static int
sink_fill(struct sink *s)
{
	enum out_framing framing = s->conf.framing;
	const char	*key, *msg;
	size_t		 keylen, len;
	int		 r;

	if (sink_is_local(s))
		framing = FRAME_NEWLINE;
	while (evbuffer_get_length(s->out) < SINK_HIWAT) {
		if (sink_is_relp(s) &&
		    sinkrecs_pending(&s->recs) >= SINK_RELP_WINDOW)
			break;
		if ((r = spool_read(s->spool, &s->sendpos, &s->rec)) == 0)
			break;
		if (r == -1) {
			sink_fail(s, "cannot send to", "cannot read the spool: "
			    "%s", strerror(errno));
			return -1;
		}
		buf_reset(&s->frame);
		kafka_record_split(s->rec.data, s->rec.len, &key, &keylen,
		    &msg, &len);
		if (sink_is_relp(s))
			sinkrelp_frame(&s->relp, &s->frame, msg, len,
			    sinkrecs_pending(&s->recs) == 0);
		else
			frame_message(&s->frame, framing, msg, len);
		if (evbuffer_add(s->out, s->frame.data, s->frame.len) == -1)
			fatalx("evbuffer_add");
		s->queued += s->frame.len;
		sinkrecs_push(&s->recs, &s->sendpos, s->queued, s->relp.txnr);
	}
	return 0;
}

/* Hand buffered bytes to a socket or file: 1 all, 0 would block, -1. */
static int
sink_flush_fd(struct sink *s)
{
	ssize_t	 n;

	while (evbuffer_get_length(s->out) > 0) {
		n = sinknet_write(s->fd, sink_is_local(s), s->out);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n == -1) {
			sink_fail(s, sink_is_local(s) ? "cannot write to" :
			    "lost connection to", "%s", strerror(errno));
			return -1;
		}
		evbuffer_drain(s->out, n);
		s->written += n;
	}
	return 1;
}

/* Hand buffered bytes to TLS: 1 all, 0 would block, -1 failed. */
static int
sink_flush_tls(struct sink *s)
{
	char		 reason[512];
	unsigned char	*p;
	size_t		 len;
	int		 r;

	s->tls_wants_read = false;
	while ((len = evbuffer_get_length(s->out)) > 0) {
		/* After WANT_*, OpenSSL wants the same write repeated. */
		if (s->tls_retry != 0)
			len = s->tls_retry;
		else if (len > SINK_TLS_CHUNK)
			len = SINK_TLS_CHUNK;
		if ((p = evbuffer_pullup(s->out, len)) == NULL)
			fatalx("evbuffer_pullup");
		ERR_clear_error();
		errno = 0;
		if ((r = SSL_write(s->ssl, p, (int)len)) > 0) {
			s->tls_retry = 0;
			evbuffer_drain(s->out, r);
			s->written += r;
			sinktls_mark(&s->marks, s->ssl, s->written);
			continue;
		}
		switch (SSL_get_error(s->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			s->tls_wants_read = true;
			/* FALLTHROUGH */
		case SSL_ERROR_WANT_WRITE:
			s->tls_retry = len;
			return 0;
		}
		sinktls_explain(s->ssl, r, false, reason, sizeof reason);
		sink_fail(s, "lost connection to", "%s", reason);
		return -1;
	}
	return 1;
}

/* Send the record in s->rec as one datagram (see sinknet_send_udp). */
static int
sink_send_udp(struct sink *s, int *refused)
{
	const char	*key, *msg;
	size_t		 keylen, len;

	/* A record spooled while the output was kafka: without its key. */
	kafka_record_split(s->rec.data, s->rec.len, &key, &keylen, &msg, &len);
	return sinknet_send_udp(s->fd, msg, len, refused);
}

/* Note refused datagrams, at most once every ten minutes. */
static void
sink_udp_note(struct sink *s)
{
	struct log_ctx	 lc = { .output = s->conf.name,
			    .message_id = MSGID_OUTPUT_DOWN };

	if (s->udp_noted != 0 && mono_ms() - s->udp_noted < SINK_UDP_NOTE_MS)
		return;
	s->udp_noted = mono_ms();
	log_ctx(LOG_WARNING, &lc, "output %s: %s refuses datagrams (ICMP "
	    "port unreachable); sending continues, but UDP has no delivery "
	    "guarantee", s->conf.name, sink_target(s));
}

/* Send datagrams, one per record, acknowledged once sent. */
static void
sink_pump_udp(struct sink *s)
{
	struct spool_pos pos;
	uint64_t	 n = 0;
	int		 i, r, refused = 0;
	bool		 moved = false;

	for (i = 0; i < SINK_UDP_BATCH; i++) {
		pos = s->sendpos;
		if ((r = spool_read(s->spool, &pos, &s->rec)) == 0)
			break;
		if (r == -1) {
			sink_fail(s, "cannot send to", "cannot read the spool: "
			    "%s", strerror(errno));
			return;
		}
		if (sink_send_udp(s, &refused) == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(s->ev_write, NULL);
				break;
			}
			if (errno != EMSGSIZE) {
				sink_fail(s, "cannot send to", "%s",
				    strerror(errno));
				return;
			}
			/* The encoder keeps messages short: not expected. */
			log_output(LOG_WARNING, s->conf.name, "output %s: "
			    "message of %zu bytes too large for a datagram; "
			    "dropped", s->conf.name, s->rec.len);
		} else
			n++;
		s->sendpos = pos;
		moved = true;
	}
	if (refused > 0)
		sink_udp_note(s);
	if (i == SINK_UDP_BATCH)
		sink_kick(s, 0);
	if (moved)
		sink_spool_ack(s, &s->sendpos, n);
}

/*
 * Kafka: produce spool records while the producer's window has room.
 * Acknowledgements come back through sink_kafka_acked_cb.
 */
static void
sink_pump_kafka(struct sink *s)
{
	struct spool_pos pos;
	char		 reason[256];
	int		 i, r;

	for (i = 0; i < SINK_UDP_BATCH && kafka_room(s->kafka); i++) {
		pos = s->sendpos;
		if ((r = spool_read(s->spool, &pos, &s->rec)) == 0)
			return;
		if (r == -1) {
			sink_fail(s, "cannot send to", "cannot read the spool: "
			    "%s", strerror(errno));
			return;
		}
		if (kafka_send(s->kafka, s->rec.data, s->rec.len, &pos, reason,
		    sizeof reason) == -1) {
			sink_fail(s, "cannot send to", "%s", reason);
			return;
		}
		s->sendpos = pos;
	}
	if (i == SINK_UDP_BATCH)
		sink_kick(s, 0);
}

static void
sink_kafka_acked_cb(void *arg, const struct spool_pos *pos, uint64_t n)
{
	struct sink	*s = arg;

	s->progressed = true;
	sink_spool_ack(s, pos, n);
	if (s->state == SINK_UP)
		sink_kick(s, 0);
}

static void
sink_kafka_failed_cb(void *arg, const char *reason)
{
	sink_fail(arg, "cannot deliver to", "%s", reason);
}

/* Move records from the spool towards the SIEM while it takes them. */
static void
sink_pump(struct sink *s)
{
	int	 i, r = 1;

	/* Half-closed: later records wait for the next connection. */
	if (s->state != SINK_UP || s->half_closed)
		return;
	if (s->conf.transport == OUT_UDP) {
		event_del(s->ev_write);
		sink_pump_udp(s);
		return;
	}
	if (s->kafka != NULL) {
		sink_pump_kafka(s);
		return;
	}
	for (i = 0; i < SINK_ROUNDS; i++) {
		if (sink_fill(s) == -1)
			return;
		if (evbuffer_get_length(s->out) == 0)
			break;
		if (sink_uses_tls(s))
			r = sink_flush_tls(s);
		else
			r = sink_flush_fd(s);
		if (r == -1)
			return;
		sink_ack(s, false);
		if (r == 0)
			break;
	}
	sink_ackpoll_arm(s);
	sink_half_close(s);
	if (sink_is_local(s)) {
		/* Files cannot be polled; a blocked stdout pipe retries. */
		if (r == 0)
			sink_kick(s, 50);
		else if (i == SINK_ROUNDS)
			sink_kick(s, 0);
		return;
	}
	/* A TLS write waiting for input is retried from the read event. */
	if (evbuffer_get_length(s->out) > 0 && !s->tls_wants_read)
		event_add(s->ev_write, NULL);
	else
		event_del(s->ev_write);
	if (i == SINK_ROUNDS && r == 1)
		sink_kick(s, 0);
}

/*
 * Read and discard what the SIEM sends; notice when it goes away.  A
 * clean close (FIN) comes only after the peer read everything: what its
 * TCP stack acknowledged is delivered (see sink_delivered).  Anything
 * else, a reset above all, keeps the recent records for a resend.
 */
static void
sink_read(struct sink *s)
{
	char	 scratch[4096], reason[512];
	ssize_t	 n;
	int	 i, r;

	for (i = 0; i < 16; i++) {
		if (sink_uses_tls(s)) {
			ERR_clear_error();
			errno = 0;
			if ((r = SSL_read(s->ssl, scratch, sizeof scratch)) > 0) {
				if (sink_is_relp(s) &&
				    sink_relp_input(s, scratch, r) == -1)
					return;
				continue;
			}
			switch (SSL_get_error(s->ssl, r)) {
			case SSL_ERROR_WANT_READ:
			case SSL_ERROR_WANT_WRITE:
				return;
			}
			if (sinktls_eof(s->ssl, r) && sink_peer_closed(s))
				return;
			sinktls_explain(s->ssl, r, false, reason,
			    sizeof reason);
			sink_fail(s, "lost connection to", "%s", reason);
			return;
		}
		if ((n = recv(s->fd, scratch, sizeof scratch, 0)) > 0) {
			if (sink_is_relp(s) &&
			    sink_relp_input(s, scratch, n) == -1)
				return;
			continue;
		}
		if (n == 0) {
			if (!sink_peer_closed(s))
				sink_fail(s, "lost connection to",
				    "closed by the peer");
		} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR)
			sink_fail(s, "lost connection to", "%s",
			    strerror(errno));
		return;
	}
}

/* Socket readiness, whatever the state. */
static void
sink_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink	*s = arg;

	switch (s->state) {
	case SINK_CONNECTING:
		sink_connected(s);
		break;
	case SINK_HANDSHAKE:
		sink_tls_handshake(s);
		break;
	case SINK_UP:
		if (what & EV_READ)
			sink_read(s);
		/* A TLS write may have waited for this read. */
		sink_pump(s);
		break;
	case SINK_IDLE:
	case SINK_RESOLVING:
		break;
	}
}

static void
sink_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	sink_pump(arg);
}

/*
 * Build an output without starting it.  Its spool is opened here unless
 * from (the running output of the same name) hands its own over in
 * sink_commit: a spool directory is never open twice.
 */
struct sink *
sink_build(struct event_base *base, const struct conf_output *c,
    const char *state_dir, const struct sink *from, char *err, size_t errlen)
{
	struct sink	*s;

	s = xcalloc(1, sizeof *s);
	s->base = base;
	s->fd = -1;
	s->backoff_ms = SINK_BACKOFF_MIN_MS;
	buf_init(&s->rec);
	buf_init(&s->frame);
	buf_init(&s->relp.in);
	conf_output_dup(&s->conf, c);
	if (c->transport == OUT_KAFKA) {
		struct kafka_cbs cbs = { sink_kafka_acked_cb,
		    sink_kafka_failed_cb, s };

		if ((s->kafka = kafka_new(base, &s->conf, &cbs, err,
		    errlen)) == NULL)
			goto fail;
	}
	if ((c->transport == OUT_TLS || (c->transport == OUT_RELP && c->tls)) &&
	    (s->ssl_ctx = sinktls_ctx(c, err, errlen)) == NULL)
		goto fail;
	if (from == NULL && (s->spool = sink_spool_open(c, state_dir, err,
	    errlen)) == NULL)
		goto fail;
	if ((s->out = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	s->timer = evtimer_new(base, sink_timer_cb, s);
	s->kick = evtimer_new(base, sink_kick_cb, s);
	s->ackpoll = evtimer_new(base, sink_ackpoll_cb, s);
	s->ackflush = evtimer_new(base, sink_ackflush_cb, s);
	if (s->timer == NULL || s->kick == NULL || s->ackpoll == NULL ||
	    s->ackflush == NULL)
		fatalx("evtimer_new");
	return s;
fail:
	sink_free(s);
	return NULL;
}

/* Records became durable (an asynchronous sync): send them. */
static void
sink_ready_cb(void *arg)
{
	struct sink	*s = arg;

	if (s->state == SINK_UP)
		sink_kick(s, 0);
	else if (s->state == SINK_IDLE && !evtimer_pending(s->timer, NULL))
		sink_timer_add(s, 0);	/* closed cleanly, now more to send */
}

/* Connect from the loop, like every later attempt. */
static void
sink_start(struct sink *s)
{
	struct timeval	 tv = { 0, 0 };

	/* The spool may come from another sink: its completions are ours. */
	spool_set_ready_cb(s->spool, sink_ready_cb, s);
	evtimer_add(s->timer, &tv);
}

/* Close the connection, acknowledging what the peer already holds. */
static void
sink_hangup(struct sink *s)
{
	if (s->state == SINK_UP)
		sink_ack(s, true);
	sink_close_conn(s);
}

/*
 * The running output from keeps its connection and spool and only takes
 * built's TLS context (for its next connection: renewed certificates) or,
 * for a file, reopens it (log rotation).  Frees built.
 */
static struct sink *
sink_refresh(struct sink *from, struct sink *built)
{
	if (built->ssl_ctx != NULL) {
		/* A live SSL holds its own reference to the old context. */
		SSL_CTX_free(from->ssl_ctx);
		from->ssl_ctx = built->ssl_ctx;
		built->ssl_ctx = NULL;
	}
	if (from->conf.transport == OUT_FILE && from->state != SINK_IDLE) {
		sink_hangup(from);
		sink_start(from);
	}
	sink_free(built);
	return from;
}

/*
 * Put a built output in service.  With from (the running output of the
 * same name): unchanged settings keep from running (sink_refresh);
 * changed ones close from's connection, hand its spool (and what is
 * buffered in it) to built, and free from.  Returns the running output.
 * Cannot fail.
 */
struct sink *
sink_commit(struct sink *built, struct sink *from)
{
	if (from != NULL && conf_output_equal(&from->conf, &built->conf))
		return sink_refresh(from, built);
	if (from != NULL) {
		sink_hangup(from);
		built->spool = from->spool;
		from->spool = NULL;
		spool_set_max(built->spool, built->conf.spool_max_bytes);
		built->sent = from->sent;
		built->reconnects = from->reconnects;
		sink_free(from);
		/* Persist the last acknowledgement (see sink_spool_ack). */
		spool_save_ack(built->spool);
	}
	sink_start(built);
	return built;
}

struct sink *
sink_new(struct event_base *base, const struct conf_output *c,
    const char *state_dir, char *err, size_t errlen)
{
	struct sink	*s;

	if ((s = sink_build(base, c, state_dir, NULL, err, errlen)) != NULL)
		sink_start(s);
	return s;
}

void
sink_free(struct sink *s)
{
	if (s == NULL)
		return;
	/* Shutting down, the peer alive: what it acknowledged is its. */
	if (s->out != NULL)
		sink_hangup(s);
	kafka_free(s->kafka);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->kick != NULL)
		event_free(s->kick);
	if (s->ackpoll != NULL)
		event_free(s->ackpoll);
	if (s->ackflush != NULL)
		event_free(s->ackflush);
	if (s->out != NULL)
		evbuffer_free(s->out);
	SSL_CTX_free(s->ssl_ctx);
	spool_close(s->spool);
	free(s->recs.v);
	free(s->marks.v);
	buf_clear(&s->rec);
	buf_clear(&s->frame);
	buf_clear(&s->relp.in);
	conf_output_dup_free(&s->conf);
	free(s);
}

const struct conf_output *
sink_conf(const struct sink *s)
{
	return &s->conf;
}

/*
 * Queue one event of an alert: kafka outputs keep its message key
 * TENANT/ALERT_ID in the spool record; the others the event alone.
 */
int
sink_enqueue_alert(struct sink *s, const char *tenant, const char *id,
    size_t idlen, const char *msg, size_t len)
{
	if (s->kafka == NULL)
		return sink_enqueue(s, msg, len);
	buf_reset(&s->frame);
	kafka_record_build(&s->frame, tenant, id, idlen, msg, len);
	return sink_enqueue(s, s->frame.data, s->frame.len);
}

int
sink_enqueue(struct sink *s, const char *msg, size_t len)
{
	if (spool_append(s->spool, msg, len) == -1)
		return -1;
	return 0;
}

int
sink_sync(struct sink *s)
{
	if (spool_sync(s->spool) == -1)
		return -1;
	if (s->state == SINK_UP)
		sink_kick(s, 0);
	return 0;
}

int
sink_sync_async(struct sink *s, struct disk *d, spool_synced_cb cb,
    void *arg, uint64_t *ticket)
{
	disk_attach_spool(d, s->spool);
	return spool_sync_async(s->spool, cb, arg, ticket);
}

void
sink_sync_cancel(struct sink *s, uint64_t ticket)
{
	spool_sync_cancel(s->spool, ticket);
}

bool
sink_full(const struct sink *s)
{
	return spool_full(s->spool);
}

bool
sink_drained(const struct sink *s)
{
	return spool_records(s->spool) == 0;
}

void
sink_stats(const struct sink *s, struct sink_stats *st)
{
	st->connected = s->kafka != NULL ? s->state == SINK_UP &&
	    kafka_connected(s->kafka) : s->state == SINK_UP;
	st->spool_bytes = spool_bytes(s->spool);
	st->spool_records = spool_records(s->spool);
	st->sent = s->sent;
	st->reconnects = s->reconnects;
	snprintf(st->last_error, sizeof st->last_error, "%s", s->last_error);
	st->inflight = s->kafka != NULL ? kafka_inflight(s->kafka) :
	    sinkrecs_pending(&s->recs);
	st->resends = s->resends;
}

void
sink_positions(const struct sink *s, struct spool_pos *head,
    struct spool_pos *tail)
{
	spool_head(s->spool, head);
	spool_tail(s->spool, tail);
}

void
sink_set_resolver(struct sink *s, struct evdns_base *dns)
{
	s->dns = dns;
}

void
sink_set_disk(struct sink *s, struct disk *d)
{
	if (s->spool != NULL)
		disk_attach_spool(d, s->spool);
}

/*
 * The relay is ending (--once done, or stopping): nothing more will be
 * queued, so once every record is written the connection is half-closed
 * for the SIEM to confirm them (sink_half_close).
 */
void
sink_finish(struct sink *s)
{
	s->finishing = true;
	sink_half_close(s);
}

void
sink_on_drained(struct sink *s, void (*cb)(void *), void *arg)
{
	s->drained_cb = cb;
	s->drained_arg = arg;
}
