/* Unit tests for daemon/sink.c: delivery over TCP, UDP, TLS and to files. */

#include "../../daemon/sink.c"
#include "../../daemon/sinknet.c"
#include "../../daemon/sinkrecs.c"
#include "../../daemon/sinkrelp.c"
#include "../../daemon/sinktls.c"
#include "../../daemon/disk.c"

#include <sys/syscall.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <signal.h>
#include <stddef.h>

#include <cmocka.h>

#define T_MAXCONN	8
#define T_MAXDGRAM	16

/* A tiny SIEM: TCP or TLS listener, or a UDP socket, on 127.0.0.1. */
struct tconn {
	struct tsrv	*srv;
	int		 fd;
	SSL		*ssl;
	bool		 handshaken;
	struct event	*ev;
};

struct tsrv {
	struct event_base *base;
	SSL_CTX		*ctx;		/* NULL: plain TCP */
	int		 lfd;
	struct event	*lev;
	int		 port;
	struct tconn	*conns[T_MAXCONN];
	int		 nconns;
	int		 accepted;
	int		 tls_failed;	/* handshakes the server saw fail */
	bool		 paused;	/* accept, but do not read yet */
	struct buf	 data;		/* every byte received, in order */

	int		 ufd;
	struct event	*uev;
	char		*dgram[T_MAXDGRAM];
	int		 ndgram;
};

struct tstate {
	struct event_base *base;
	struct event	*tick;
	char		 dir[64];
	char		*cert_dir;
};

static struct tstate	 ts;

static void
conn_close(struct tconn *c)
{
	struct tsrv	*srv = c->srv;
	int		 i;

	for (i = 0; i < srv->nconns; i++) {
		if (srv->conns[i] == c) {
			srv->conns[i] = srv->conns[--srv->nconns];
			break;
		}
	}
	event_free(c->ev);
	SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

/* Read what a client sends (completing a TLS handshake first). */
static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tconn	*c = arg;
	char		 b[8192];
	ssize_t		 n;
	int		 r;

	if (c->ssl != NULL && !c->handshaken) {
		if ((r = SSL_accept(c->ssl)) != 1) {
			r = SSL_get_error(c->ssl, r);
			if (r == SSL_ERROR_WANT_READ ||
			    r == SSL_ERROR_WANT_WRITE)
				return;
			ERR_clear_error();
			c->srv->tls_failed++;
			conn_close(c);
			return;
		}
		c->handshaken = true;
	}
	for (;;) {
		if (c->ssl != NULL) {
			if ((r = SSL_read(c->ssl, b, sizeof b)) > 0) {
				buf_add(&c->srv->data, b, r);
				continue;
			}
			r = SSL_get_error(c->ssl, r);
			ERR_clear_error();
			if (r != SSL_ERROR_WANT_READ)
				conn_close(c);
			return;
		}
		if ((n = read(c->fd, b, sizeof b)) > 0) {
			buf_add(&c->srv->data, b, n);
			continue;
		}
		if (n == 0 || errno != EAGAIN)
			conn_close(c);
		return;
	}
}

static void
srv_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tsrv	*srv = arg;
	struct tconn	*c;
	int		 cfd;

	if ((cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK)) == -1)
		return;
	assert_true(srv->nconns < T_MAXCONN);
	c = xcalloc(1, sizeof *c);
	c->srv = srv;
	c->fd = cfd;
	if (srv->ctx != NULL) {
		c->ssl = SSL_new(srv->ctx);
		SSL_set_fd(c->ssl, cfd);
		SSL_set_accept_state(c->ssl);
	}
	c->ev = event_new(srv->base, cfd, EV_READ | EV_PERSIST,
	    conn_read_cb, c);
	if (!srv->paused)
		event_add(c->ev, NULL);
	srv->conns[srv->nconns++] = c;
	srv->accepted++;
}

static struct sockaddr_in
loopback(int port)
{
	struct sockaddr_in	 sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

/* Listen on 127.0.0.1:port (0: any free port). */
static void
srv_listen(struct tsrv *srv, int port)
{
	struct sockaddr_in	 sin = loopback(port);
	socklen_t		 len = sizeof sin;
	int			 one = 1;

	srv->base = ts.base;
	srv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(srv->lfd != -1);
	setsockopt(srv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	assert_int_equal(bind(srv->lfd, (struct sockaddr *)&sin, len), 0);
	assert_int_equal(listen(srv->lfd, 8), 0);
	getsockname(srv->lfd, (struct sockaddr *)&sin, &len);
	srv->port = ntohs(sin.sin_port);
	srv->lev = event_new(ts.base, srv->lfd, EV_READ | EV_PERSIST,
	    srv_accept_cb, srv);
	event_add(srv->lev, NULL);
}

/* Stop listening and drop every connection. */
static void
srv_shut(struct tsrv *srv)
{
	while (srv->nconns > 0)
		conn_close(srv->conns[0]);
	if (srv->lev != NULL) {
		event_free(srv->lev);
		close(srv->lfd);
	}
	srv->lev = NULL;
}

static void
srv_udp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tsrv	*srv = arg;
	char		 b[70000];
	ssize_t		 n;

	while ((n = recv(fd, b, sizeof b, 0)) >= 0) {
		assert_true(srv->ndgram < T_MAXDGRAM);
		srv->dgram[srv->ndgram++] = xstrndup(b, n);
	}
}

static void
srv_udp(struct tsrv *srv)
{
	struct sockaddr_in	 sin = loopback(0);
	socklen_t		 len = sizeof sin;

	srv->ufd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_int_equal(bind(srv->ufd, (struct sockaddr *)&sin, len), 0);
	getsockname(srv->ufd, (struct sockaddr *)&sin, &len);
	srv->port = ntohs(sin.sin_port);
	srv->uev = event_new(ts.base, srv->ufd, EV_READ | EV_PERSIST,
	    srv_udp_cb, srv);
	event_add(srv->uev, NULL);
}

static void
srv_free(struct tsrv *srv)
{
	int	 i;

	srv_shut(srv);
	if (srv->uev != NULL) {
		event_free(srv->uev);
		close(srv->ufd);
	}
	for (i = 0; i < srv->ndgram; i++)
		free(srv->dgram[i]);
	SSL_CTX_free(srv->ctx);
	buf_clear(&srv->data);
}

/* An output as the config parser would build it. */
static void
out_init(struct conf_output *o, const char *name, enum out_transport t,
    int port, enum out_framing framing)
{
	memset(o, 0, sizeof *o);
	o->name = xstrdup(name);
	o->transport = t;
	o->host = xstrdup("127.0.0.1");
	xasprintf(&o->port, "%d", port);
	xasprintf(&o->address, "127.0.0.1:%d", port);
	o->framing = framing;
	o->max_message_bytes = 65536;
	o->spool_max_bytes = 1 << 20;
}

static void
out_clear(struct conf_output *o)
{
	free(o->name);
	free(o->host);
	free(o->port);
	free(o->address);
	free(o->ca_file);
	free(o->tls_server_name);
}

/* A fresh state directory for one sink. */
static char *
state_dir(const char *name)
{
	char	*d;

	xasprintf(&d, "%s/%s", ts.dir, name);
	assert_int_equal(mkdir(d, 0700), 0);
	return d;
}

static struct sink *
sink_open(const struct conf_output *o, const char *dir)
{
	struct sink	*s;
	char		 err[512] = "";

	s = sink_new(ts.base, o, dir, err, sizeof err);
	if (s == NULL)
		fail_msg("sink_new: %s", err);
	return s;
}

static void
enqueue(struct sink *s, const char **msgs, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		assert_int_equal(sink_enqueue(s, msgs[i], strlen(msgs[i])), 0);
	assert_int_equal(sink_sync(s), 0);
}

/* Run the loop until pred(arg) holds or ms pass; returns pred(arg). */
static bool
run_until(bool (*pred)(void *), void *arg, int64_t ms)
{
	struct timeval	 tv = { 0, 20000 };
	int64_t		 end = mono_ms() + ms;

	while (!pred(arg) && mono_ms() < end) {
		evtimer_add(ts.tick, &tv);
		event_base_loop(ts.base, EVLOOP_ONCE);
	}
	evtimer_del(ts.tick);
	return pred(arg);
}

static bool
never(void *arg)
{
	return false;
}

struct want {
	struct tsrv	*srv;
	struct sink	*sink;
	size_t		 bytes;
	int		 dgrams;
};

/* The server has the bytes (or datagrams) and the sink is drained. */
static bool
delivered(void *arg)
{
	struct want	*w = arg;

	if (w->srv != NULL && (w->srv->data.len < w->bytes ||
	    w->srv->ndgram < w->dgrams))
		return false;
	return sink_drained(w->sink);
}

static bool
disconnected(void *arg)
{
	struct sink_stats st;

	sink_stats(arg, &st);
	return !st.connected;
}

static bool
half_closed(void *arg)
{
	return ((struct sink *)arg)->half_closed;
}

static bool
tls_refused(void *arg)
{
	return ((struct tsrv *)arg)->tls_failed > 0;
}

/* Log capture: stderr into a file while a test step runs. */
static int	 cap_saved = -1;

static void
cap_start(void)
{
	char	*p;
	int	 fd;

	xasprintf(&p, "%s/stderr.log", ts.dir);
	fflush(stderr);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
	cap_saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	free(p);
}

static void
cap_stop(struct buf *out)
{
	char	*p;

	fflush(stderr);
	dup2(cap_saved, STDERR_FILENO);
	close(cap_saved);
	xasprintf(&p, "%s/stderr.log", ts.dir);
	assert_int_equal(file_read_all(p, 1 << 20, out), 0);
	free(p);
	/* Show what was logged, for whoever reads the test output. */
	fputs(out->data, stderr);
}

static int
count_lines(const char *text, const char *needle)
{
	const char	*p;
	int		 n = 0;

	for (p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static const char *msgs3[] = {
	"<166>1 2024-01-01T00:00:00Z h alertrelayd 1 - - CEF:0|a|b|1|c|one|8|",
	"second message with spaces",
	"x=3",
};

/* Three messages over TCP, framed as asked; delivered exactly once. */
static void
tcp_three(enum out_framing framing, const char *expect)
{
	struct tsrv		 srv = { 0 };
	struct conf_output	 o;
	struct sink		*s;
	struct sink_stats	 st;
	struct want		 w = { .srv = &srv };
	char			*dir;

	srv_listen(&srv, 0);
	out_init(&o, framing == FRAME_OCTET ? "tcpoctet" : "tcpnl", OUT_TCP,
	    srv.port, framing);
	dir = state_dir(o.name);
	s = sink_open(&o, dir);
	enqueue(s, msgs3, 3);
	w.sink = s;
	w.bytes = strlen(expect);
	assert_true(run_until(delivered, &w, 5000));
	/* Nothing more trickles in afterwards. */
	run_until(never, NULL, 100);
	assert_int_equal(srv.data.len, strlen(expect));
	assert_memory_equal(srv.data.data, expect, strlen(expect));
	sink_stats(s, &st);
	assert_true(st.connected);
	assert_int_equal(st.sent, 3);
	assert_int_equal(st.spool_records, 0);
	assert_true(sink_drained(s));
	assert_int_equal(srv.accepted, 1);
	sink_free(s);
	srv_free(&srv);
	out_clear(&o);
	free(dir);
}

static void
test_tcp_newline(void **state)
{
	tcp_three(FRAME_NEWLINE,
	    "<166>1 2024-01-01T00:00:00Z h alertrelayd 1 - - "
	    "CEF:0|a|b|1|c|one|8|\n"
	    "second message with spaces\n"
	    "x=3\n");
}

static void
test_tcp_octet(void **state)
{
	tcp_three(FRAME_OCTET,
	    "68 <166>1 2024-01-01T00:00:00Z h alertrelayd 1 - - "
	    "CEF:0|a|b|1|c|one|8|"
	    "26 second message with spaces"
	    "3 x=3");
}

/* The SIEM goes away; alerts queued meanwhile arrive after it is back. */
static void
test_tcp_reconnect(void **state)
{
	static const char *first[] = { "m1", "m2" };
	static const char *later[] = { "m3", "m4", "m5" };
	struct tsrv		 srv = { 0 };
	struct conf_output	 o;
	struct sink		*s;
	struct sink_stats	 st;
	struct want		 w = { .srv = &srv };
	struct buf		 log;
	char			*dir, *lost;
	int			 port;

	srv_listen(&srv, 0);
	port = srv.port;
	out_init(&o, "tcpre", OUT_TCP, port, FRAME_NEWLINE);
	dir = state_dir(o.name);
	s = sink_open(&o, dir);
	w.sink = s;
	enqueue(s, first, 2);
	w.bytes = 6;
	assert_true(run_until(delivered, &w, 5000));

	cap_start();
	srv_shut(&srv);
	assert_true(run_until(disconnected, s, 5000));
	enqueue(s, later, 3);
	/* The first retry (after about 1s) finds nobody listening. */
	run_until(never, NULL, 1500);
	sink_stats(s, &st);
	assert_false(st.connected);
	assert_int_equal(st.spool_records, 3);
	assert_int_equal(srv.data.len, 6);
	srv_listen(&srv, port);
	w.bytes = 15;
	assert_true(run_until(delivered, &w, 8000));
	buf_init(&log);
	cap_stop(&log);

	run_until(never, NULL, 100);
	assert_int_equal(srv.data.len, 15);
	assert_memory_equal(srv.data.data, "m1\nm2\nm3\nm4\nm5\n", 15);
	sink_stats(s, &st);
	assert_true(st.connected);
	assert_int_equal(st.sent, 5);
	assert_int_equal(st.reconnects, 1);
	/* One warning for the whole outage, one notice when it ends. */
	xasprintf(&lost, "warning: output tcpre: lost connection to "
	    "127.0.0.1:%d: closed by the peer; retrying in 1s; alerts are "
	    "kept in the spool", port);
	assert_non_null(strstr(log.data, lost));
	assert_int_equal(count_lines(log.data, "warning:"), 1);
	assert_int_equal(count_lines(log.data, "output tcpre: connected to "
	    "127.0.0.1:"), 1);
	free(lost);
	buf_clear(&log);
	sink_free(s);
	srv_free(&srv);
	out_clear(&o);
	free(dir);
}

/* One datagram per message, no framing; refusals do not stop sending. */
static void
test_udp(void **state)
{
	static const char *more[] = { "r1", "r2", "r3", "r4", "r5" };
	struct tsrv		 srv = { 0 };
	struct conf_output	 o;
	struct sink		*s;
	struct sink_stats	 st;
	struct want		 w = { .srv = &srv, .dgrams = 3 };
	struct buf		 log;
	char			*dir;
	int			 i;

	srv_udp(&srv);
	out_init(&o, "udp", OUT_UDP, srv.port, FRAME_OCTET);
	dir = state_dir(o.name);
	s = sink_open(&o, dir);
	w.sink = s;
	enqueue(s, msgs3, 3);
	assert_true(run_until(delivered, &w, 5000));
	assert_int_equal(srv.ndgram, 3);
	for (i = 0; i < 3; i++)
		assert_string_equal(srv.dgram[i], msgs3[i]);

	/* Nobody listens any more: ICMP refusals are noted, not fatal. */
	event_free(srv.uev);
	srv.uev = NULL;
	close(srv.ufd);
	cap_start();
	enqueue(s, more, 5);
	w.srv = NULL;
	assert_true(run_until(delivered, &w, 5000));
	buf_init(&log);
	cap_stop(&log);
	assert_non_null(strstr(log.data, "refuses datagrams (ICMP port "
	    "unreachable); sending continues, but UDP has no delivery "
	    "guarantee"));
	sink_stats(s, &st);
	assert_true(st.connected);
	assert_int_equal(st.spool_records, 0);
	buf_clear(&log);
	sink_free(s);
	srv_free(&srv);
	out_clear(&o);
	free(dir);
}

/* A file gets one message per line, mode 0600, and nothing twice. */
static void
test_file(void **state)
{
	struct conf_output	 o;
	struct sink		*s;
	struct sink_stats	 st;
	struct want		 w = { 0 };
	struct stat		 sb;
	struct buf		 b;
	const char		*expect;
	char			*dir;

	memset(&o, 0, sizeof o);
	o.name = xstrdup("file");
	o.transport = OUT_FILE;
	xasprintf(&o.address, "%s/alerts.log", ts.dir);
	o.framing = FRAME_OCTET;	/* files are always one per line */
	o.max_message_bytes = 65536;
	o.spool_max_bytes = 1 << 20;
	dir = state_dir(o.name);
	s = sink_open(&o, dir);
	w.sink = s;
	enqueue(s, msgs3, 3);
	assert_true(run_until(delivered, &w, 5000));
	run_until(never, NULL, 50);
	assert_true(sink_drained(s));
	sink_stats(s, &st);
	assert_int_equal(st.sent, 3);
	sink_free(s);

	/* A restart has nothing left to send. */
	s = sink_open(&o, dir);
	run_until(never, NULL, 200);
	sink_free(s);

	expect = "<166>1 2024-01-01T00:00:00Z h alertrelayd 1 - - "
	    "CEF:0|a|b|1|c|one|8|\nsecond message with spaces\nx=3\n";
	buf_init(&b);
	assert_int_equal(file_read_all(o.address, 1 << 20, &b), 0);
	assert_string_equal(b.data, expect);
	assert_int_equal(stat(o.address, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	buf_clear(&b);
	out_clear(&o);
	free(dir);
}

/* A file output for the reload tests. */
static void
file_out(struct conf_output *o, const char *file)
{
	memset(o, 0, sizeof *o);
	o->name = xstrdup("rel");
	o->transport = OUT_FILE;
	xasprintf(&o->address, "%s/%s", ts.dir, file);
	o->max_message_bytes = 65536;
	o->spool_max_bytes = 1 << 20;
}

static void
file_is(const char *path, const char *want)
{
	struct buf	 b;

	buf_init(&b);
	assert_int_equal(file_read_all(path, 1 << 20, &b), 0);
	assert_string_equal(b.data != NULL ? b.data : "", want);
	buf_clear(&b);
}

/*
 * Reload, changed settings: the built sink opens no spool of its own; on
 * commit it takes the running one's, with what was appended and not yet
 * synced, and nothing is written twice.
 */
static void
test_reload_handover(void **state)
{
	struct conf_output	 o, o2;
	struct sink		*s, *b, *r;
	struct want		 w = { 0 };
	char			 err[512] = "", *dir;
	const char		*one[] = { "first" }, *two[] = { "second" };

	file_out(&o, "handover.log");
	dir = state_dir("handover");
	s = sink_open(&o, dir);
	enqueue(s, one, 1);
	w.sink = s;
	assert_true(run_until(delivered, &w, 5000));
	assert_int_equal(sink_enqueue(s, "pending", 7), 0);	/* not synced */
	file_out(&o2, "handover.log");
	o2.max_message_bytes = 4096;		/* a change: rebuilt */
	b = sink_build(ts.base, &o2, dir, s, err, sizeof err);
	assert_non_null(b);
	assert_null(b->spool);
	r = sink_commit(b, s);
	assert_ptr_equal(r, b);
	assert_int_equal(sink_conf(r)->max_message_bytes, 4096);
	enqueue(r, two, 1);
	w.sink = r;
	assert_true(run_until(delivered, &w, 5000));
	file_is(o.address, "first\npending\nsecond\n");
	sink_free(r);
	out_clear(&o);
	out_clear(&o2);
	free(dir);
}

/*
 * Reload, same settings: a file output stays the same sink with the same
 * spool and reopens its file (log rotation); a failed build (the spool
 * of a new name cannot be made) changes nothing.
 */
static void
test_reload_refresh(void **state)
{
	struct conf_output	 o, bad;
	struct sink		*s, *b;
	struct spool		*sp;
	struct want		 w = { 0 };
	char			 err[512] = "", *dir, *rotated, *block;
	const char		*one[] = { "before" }, *two[] = { "after" };

	file_out(&o, "rotate.log");
	dir = state_dir("refresh");
	s = sink_open(&o, dir);
	sp = s->spool;
	enqueue(s, one, 1);
	w.sink = s;
	assert_true(run_until(delivered, &w, 5000));
	xasprintf(&rotated, "%s.1", o.address);
	assert_int_equal(rename(o.address, rotated), 0);
	b = sink_build(ts.base, &o, dir, s, err, sizeof err);
	assert_non_null(b);
	assert_ptr_equal(sink_commit(b, s), s);
	assert_ptr_equal(s->spool, sp);
	enqueue(s, two, 1);
	assert_true(run_until(delivered, &w, 5000));
	file_is(rotated, "before\n");
	file_is(o.address, "after\n");

	file_out(&bad, "never.log");
	free(bad.name);
	bad.name = xstrdup("blocked");
	xasprintf(&block, "%s/spool/blocked", dir);
	assert_int_equal(file_write_atomic(block, "x", 1, 0600), 0);
	assert_null(sink_build(ts.base, &bad, dir, NULL, err, sizeof err));
	assert_non_null(strstr(err, "output blocked: cannot open its spool"));
	sink_free(s);
	out_clear(&o);
	out_clear(&bad);
	free(block);
	free(rotated);
	free(dir);
}

/* Make a CA, a second unrelated CA and a server certificate. */
static int
make_certs(void)
{
	char	*cmd;
	int	 r;

	xasprintf(&cmd, "cd %s && (set -e; "
	    "for ca in ca other; do openssl req -x509 -newkey ec "
	    "-pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $ca.key "
	    "-out $ca.pem -subj /CN=test-$ca -days 2 "
	    "-addext basicConstraints=critical,CA:TRUE "
	    "-addext keyUsage=keyCertSign,cRLSign; done; "
	    "openssl req -new -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -keyout srv.key "
	    "-out srv.csr -subj /CN=localhost; "
	    "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n"
	    "basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' "
	    "> ext.cnf; "
	    "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
	    "-CAcreateserial -out srv.pem -days 2 -extfile ext.cnf"
	    ") >openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }",
	    ts.dir);
	r = system(cmd);
	free(cmd);
	if (r != 0)
		fprintf(stderr, "openssl could not make test certificates\n");
	return r == 0 ? 0 : -1;
}

static char *
cert_path(const char *name)
{
	char	*p;

	xasprintf(&p, "%s/%s", ts.dir, name);
	return p;
}

/* A TLS SIEM with the server certificate signed by "ca". */
static void
srv_tls(struct tsrv *srv)
{
	char	*crt = cert_path("srv.pem"), *key = cert_path("srv.key");

	srv->ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(srv->ctx);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(srv->ctx, crt),
	    1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(srv->ctx, key,
	    SSL_FILETYPE_PEM), 1);
	free(crt);
	free(key);
	srv_listen(srv, 0);
}

/* Deliver three messages over TLS checking the name (or IP) given. */
static void
tls_three(const char *name, const char *server_name)
{
	struct tsrv		 srv = { 0 };
	struct conf_output	 o;
	struct sink		*s;
	struct sink_stats	 st;
	struct want		 w = { .srv = &srv };
	const char		*expect;
	char			*dir;

	srv_tls(&srv);
	out_init(&o, name, OUT_TLS, srv.port, FRAME_OCTET);
	o.ca_file = cert_path("ca.pem");
	o.tls_server_name = server_name ? xstrdup(server_name) : NULL;
	dir = state_dir(o.name);
	s = sink_open(&o, dir);
	w.sink = s;
	enqueue(s, msgs3, 3);
	expect = "68 <166>1 2024-01-01T00:00:00Z h alertrelayd 1 - - "
	    "CEF:0|a|b|1|c|one|8|26 second message with spaces3 x=3";
	w.bytes = strlen(expect);
	assert_true(run_until(delivered, &w, 5000));
	run_until(never, NULL, 100);
	assert_int_equal(srv.data.len, strlen(expect));
	assert_memory_equal(srv.data.data, expect, strlen(expect));
	sink_stats(s, &st);
	assert_true(st.connected);
	assert_int_equal(st.sent, 3);
	assert_int_equal(srv.tls_failed, 0);
	sink_free(s);
	srv_free(&srv);
	out_clear(&o);
	free(dir);
}

static void
test_tls_ok(void **state)
{
	tls_three("tlsip", NULL);		/* IP SAN 127.0.0.1 */
	tls_three("tlsname", "localhost");	/* DNS SAN, with SNI */
}

/* Stop reading (the kernel still acknowledges what arrives). */
static void
srv_pause(struct tsrv *srv)
{
	int	 i;

	srv->paused = true;
	for (i = 0; i < srv->nconns; i++)
		event_del(srv->conns[i]->ev);
}

/* Read what the paused server's connections hold, and from now on. */
static void
srv_resume(struct tsrv *srv)
{
	int	 i;

	srv->paused = false;
	for (i = 0; i < srv->nconns; i++)
		event_add(srv->conns[i]->ev, NULL);
}

static void
count_cb(void *arg)
{
	(*(int *)arg)++;
}

/*
 * The end of --once or a stop (sink_finish): once everything is written
 * the sink half-closes; a SIEM that has the bytes in its kernel but has
 * not read them keeps them undelivered past the ordinary 250 ms hold,
 * and its close after reading everything confirms them, without a
 * warning.  Over TCP and TLS.
 */
static void
finish_case(enum out_transport t)
{
	struct tsrv		 srv = { 0 };
	struct conf_output	 o;
	struct sink		*s;
	struct sink_stats	 st;
	struct want		 w = { .srv = &srv };
	struct buf		 log;
	char			*dir;
	int			 drained = 0;

	if (t == OUT_TLS)
		srv_tls(&srv);
	else
		srv_listen(&srv, 0);
	srv.paused = true;
	out_init(&o, t == OUT_TLS ? "fintls" : "fintcp", t, srv.port,
	    FRAME_NEWLINE);
	if (t == OUT_TLS)
		o.ca_file = cert_path("ca.pem");
	dir = state_dir(o.name);
	cap_start();
	s = sink_open(&o, dir);
	sink_on_drained(s, count_cb, &drained);
	sink_finish(s);
	enqueue(s, msgs3, 3);
	/* TLS: the handshake needs the server to read. */
	if (t == OUT_TLS)
		srv_resume(&srv);
	assert_true(run_until(half_closed, s, 5000));
	/*
	 * Acknowledged by the server's TCP, unread: not delivered.  (The
	 * server could not have read yet: the bytes were written in the
	 * loop pass that half-closed.)
	 */
	srv_pause(&srv);
	run_until(never, NULL, 3 * SINK_ACK_HOLD_MS);
	sink_stats(s, &st);
	assert_true(st.connected);
	assert_int_equal(st.spool_records, 3);
	assert_int_equal(drained, 0);
	srv_resume(&srv);
	w.sink = s;
	w.bytes = 3;
	assert_true(run_until(delivered, &w, 5000));
	buf_init(&log);
	cap_stop(&log);
	sink_stats(s, &st);
	assert_false(st.connected);	/* the server closed after reading */
	assert_int_equal(st.sent, 3);
	assert_int_equal(st.resends, 0);
	assert_int_equal(drained, 1);
	assert_int_equal(count_lines(log.data, "warning:"), 0);
	assert_int_equal(srv.accepted, 1);
	buf_clear(&log);
	sink_free(s);
	srv_free(&srv);
	out_clear(&o);
	free(dir);
}

static void
test_finish_half_close(void **state)
{
	finish_case(OUT_TCP);
	finish_case(OUT_TLS);
}

/*
 * A certificate that does not verify: nothing is sent, the warning says
 * why, and the alerts wait in the spool for a restart with a good CA.
 */
static void
tls_refused_case(const char *ca, const char *server_name,
    const char *why)
{
	struct tsrv		 srv = { 0 };
	struct conf_output	 o;
	struct sink		*s;
	struct sink_stats	 st;
	struct want		 w = { .srv = &srv };
	struct buf		 log;
	char			*dir, *expect;

	srv_tls(&srv);
	out_init(&o, "tlsbad", OUT_TLS, srv.port, FRAME_OCTET);
	o.ca_file = cert_path(ca);
	o.tls_server_name = server_name ? xstrdup(server_name) : NULL;
	dir = state_dir(server_name ? "tlsbadname" : "tlsbadca");
	cap_start();
	s = sink_open(&o, dir);
	enqueue(s, msgs3, 3);
	assert_true(run_until(tls_refused, &srv, 5000));
	run_until(never, NULL, 200);
	buf_init(&log);
	cap_stop(&log);
	assert_int_equal(srv.data.len, 0);
	sink_stats(s, &st);
	assert_false(st.connected);
	assert_int_equal(st.sent, 0);
	assert_int_equal(st.spool_records, 3);
	xasprintf(&expect, "warning: output tlsbad: cannot connect to "
	    "127.0.0.1:%d: certificate verify failed: %s; retrying in 1s; "
	    "alerts are kept in the spool", srv.port, why);
	assert_non_null(strstr(log.data, expect));
	assert_int_equal(count_lines(log.data, "warning:"), 1);
	free(expect);
	buf_clear(&log);
	sink_free(s);

	/* Fixed configuration, next start: the spooled alerts go out. */
	free(o.ca_file);
	o.ca_file = cert_path("ca.pem");
	free(o.tls_server_name);
	o.tls_server_name = NULL;
	s = sink_open(&o, dir);
	w.sink = s;
	w.bytes = 105;
	assert_true(run_until(delivered, &w, 5000));
	assert_int_equal(srv.data.len, 105);
	sink_free(s);
	srv_free(&srv);
	out_clear(&o);
	free(dir);
}

static void
test_tls_refused(void **state)
{
	tls_refused_case("other.pem", NULL,
	    "unable to get local issuer certificate (check ca_file)");
	tls_refused_case("ca.pem", "wrong.example",
	    "hostname mismatch (check tls_server_name)");
}

/* A TLS output whose ca_file cannot be loaded is refused at once. */
static void
test_tls_bad_ca_file(void **state)
{
	struct conf_output	 o;
	char			 err[512] = "";
	char			*dir;

	out_init(&o, "tlsnoca", OUT_TLS, 6514, FRAME_OCTET);
	o.ca_file = cert_path("missing.pem");
	dir = state_dir(o.name);
	assert_null(sink_new(ts.base, &o, dir, err, sizeof err));
	assert_non_null(strstr(err, "output tlsnoca: cannot load ca_file "));
	assert_non_null(strstr(err, "missing.pem"));
	out_clear(&o);
	free(dir);
}

/*
 * A slow disk, in process: this fdatasync (the spool's, through symbol
 * interposition) sleeps slow_ms first, on whatever thread calls it.
 */
static volatile int	 slow_ms;
static volatile int	 syncs_on_loop;
static pthread_t	 loop_thread;

int	fdatasync(int);

int
fdatasync(int fd)
{
	struct timespec	 ts_ = { slow_ms / 1000, (slow_ms % 1000) * 1000000L };

	if (pthread_equal(pthread_self(), loop_thread))
		syncs_on_loop++;
	if (slow_ms > 0)
		nanosleep(&ts_, NULL);
	return (int)syscall(SYS_fdatasync, fd);
}

struct waited {
	int		 calls;
	int		 error;
	int64_t		 at;		/* mono_ms of the call */
	int64_t		 max_gap;	/* between loop ticks while waiting */
	int64_t		 last_tick;
	size_t		 file_len_at_cb;
	const char	*file;
};

static void
waited_cb(void *arg, int error)
{
	struct waited	*w = arg;
	struct stat	 sb;

	w->calls++;
	w->error = error;
	w->at = mono_ms();
	if (w->file != NULL)
		w->file_len_at_cb = stat(w->file, &sb) == 0 ?
		    (size_t)sb.st_size : 0;
}

static bool
waited_done(void *arg)
{
	struct waited	*w = arg;
	int64_t		 now = mono_ms();

	if (w->last_tick != 0 && now - w->last_tick > w->max_gap)
		w->max_gap = now - w->last_tick;
	w->last_tick = now;
	return w->calls > 0;
}

/*
 * A slow disk (each fdatasync 400 ms): the sync runs on the disk thread,
 * the loop keeps turning (timers every 20 ms), the records reach the
 * output only after the callback said they are durable.
 */
static void
test_async_slow_disk(void **state)
{
	struct conf_output	 o;
	struct sink		*s;
	struct disk		*d;
	struct want		 w = { 0 };
	struct waited		 wt = { 0 };
	uint64_t		 ticket;
	int64_t			 t0;
	char			*dir;
	size_t			 i;

	file_out(&o, "slow.log");
	dir = state_dir("slow");
	s = sink_open(&o, dir);
	d = disk_new(ts.base);
	wt.file = o.address;
	for (i = 0; i < 3; i++)
		assert_int_equal(sink_enqueue(s, msgs3[i], strlen(msgs3[i])),
		    0);
	loop_thread = pthread_self();
	syncs_on_loop = 0;
	slow_ms = 400;
	t0 = mono_ms();
	assert_int_equal(sink_sync_async(s, d, waited_cb, &wt, &ticket), 1);
	assert_true(mono_ms() - t0 < 100);	/* did not wait */
	assert_true(run_until(waited_done, &wt, 5000));
	assert_int_equal(wt.error, 0);
	assert_true(wt.at - t0 >= 400);
	assert_true(wt.max_gap < 150);		/* the loop kept turning */
	assert_int_equal(wt.file_len_at_cb, 0);	/* nothing sent before */
	assert_int_equal(syncs_on_loop, 0);
	w.sink = s;
	assert_true(run_until(delivered, &w, 5000));
	slow_ms = 0;
	/* Nothing appended: durable already, no callback. */
	assert_int_equal(sink_sync_async(s, d, waited_cb, &wt, &ticket), 0);
	sink_free(s);
	disk_free(d);
	out_clear(&o);
	free(dir);
}

/*
 * Owners going away: a cancelled waiter is never called; freeing the
 * output with a sync in flight calls the others with ECANCELED, and the
 * detached job finishes on the thread without touching the freed sink.
 */
static void
test_async_cancel_on_free(void **state)
{
	struct conf_output	 o;
	struct sink		*s;
	struct disk		*d;
	struct waited		 a = { 0 }, b = { 0 };
	uint64_t		 ta, tb;
	char			*dir;

	file_out(&o, "cancel.log");
	dir = state_dir("cancel");
	s = sink_open(&o, dir);
	d = disk_new(ts.base);
	slow_ms = 200;
	assert_int_equal(sink_enqueue(s, "one", 3), 0);
	assert_int_equal(sink_sync_async(s, d, waited_cb, &a, &ta), 1);
	assert_int_equal(sink_sync_async(s, d, waited_cb, &b, &tb), 1);
	sink_sync_cancel(s, ta);
	sink_free(s);			/* the job is still on the thread */
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.error, ECANCELED);
	run_until(never, NULL, 400);	/* its completion comes and goes */
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 1);
	assert_int_equal(disk_pending(d), 0);
	slow_ms = 0;
	disk_free(d);
	/* The record it wrote was durable: a restart sends it. */
	s = sink_open(&o, dir);
	run_until(never, NULL, 300);
	sink_free(s);
	file_is(o.address, "one\n");
	out_clear(&o);
	free(dir);
}

/* A state-file save on the thread; a cancelled one still writes. */
static void
test_disk_save(void **state)
{
	struct disk	*d;
	struct waited	 a = { 0 }, b = { 0 };
	struct buf	 x, y;
	struct disk_work *wa;
	char		*p1, *p2;

	d = disk_new(ts.base);
	xasprintf(&p1, "%s/one.state", ts.dir);
	xasprintf(&p2, "%s/two.state", ts.dir);
	buf_init(&x);
	buf_init(&y);
	buf_adds(&x, "first\n");
	buf_adds(&y, "second\n");
	wa = disk_save(d, p1, &x, waited_cb, &a);
	assert_null(x.data);			/* taken */
	disk_save(d, p2, &y, waited_cb, &b);
	disk_cancel(wa);
	assert_true(run_until(waited_done, &b, 5000));
	assert_int_equal(b.error, 0);
	assert_int_equal(a.calls, 0);
	file_is(p1, "first\n");
	file_is(p2, "second\n");
	disk_free(d);
	free(p1);
	free(p2);
}

/* Only there to wake the loop up regularly. */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static int
setup(void **state)
{
	snprintf(ts.dir, sizeof ts.dir, "/tmp/test_sink.XXXXXX");
	if (mkdtemp(ts.dir) == NULL)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	log_init(LOG_TARGET_STDERR, 0, "test_sink");
	ts.base = event_base_new();
	ts.tick = evtimer_new(ts.base, tick_cb, NULL);
	return make_certs();
}

static int
teardown(void **state)
{
	char	*cmd;

	event_free(ts.tick);
	event_base_free(ts.base);
	xasprintf(&cmd, "rm -rf %s", ts.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", ts.dir);
	free(cmd);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_newline),
		cmocka_unit_test(test_tcp_octet),
		cmocka_unit_test(test_tcp_reconnect),
		cmocka_unit_test(test_udp),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_reload_handover),
		cmocka_unit_test(test_reload_refresh),
		cmocka_unit_test(test_tls_ok),
		cmocka_unit_test(test_finish_half_close),
		cmocka_unit_test(test_tls_refused),
		cmocka_unit_test(test_tls_bad_ca_file),
		cmocka_unit_test(test_async_slow_disk),
		cmocka_unit_test(test_async_cancel_on_free),
		cmocka_unit_test(test_disk_save),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
