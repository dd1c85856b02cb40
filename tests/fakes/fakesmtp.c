/*
 * fakesmtp: a small SMTP server for tests that stores every accepted mail
 * as a file (EHLO, AUTH PLAIN/LOGIN, MAIL/RCPT/DATA; no STARTTLS).
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include "b64.h"
#include "log.h"
#include "util.h"

#define MAX_LINE	4096
#define MAX_MAIL	(10 * 1024 * 1024)

enum state {
	S_CMD,			/* waiting for a command */
	S_AUTH_PLAIN,		/* waiting for the PLAIN response */
	S_AUTH_USER,		/* LOGIN: waiting for the user name */
	S_AUTH_PASS,		/* LOGIN: waiting for the password */
	S_DATA,			/* reading the message */
};

struct conn {
	struct bufferevent	*bev;
	enum state		 state;
	bool			 authed;
	bool			 closing;
	char			*login_user;
	char			*from;
	struct buf		 rcpt;		/* "a, b" */
	struct buf		 data;
	bool			 too_big;
	bool			 held;		/* DATA ended, reply held */
	TAILQ_ENTRY(conn)	 entry;
};

static struct {
	struct event_base	*base;
	struct evconnlistener	*listener;
	struct event		*sigterm, *sigint, *sigusr1;
	const char		*dir;
	const char		*auth;		/* "user:pass" or NULL */
	const char		*fail_file;	/* exists: DATA gets 451 */
	const char		*hold_file;	/* exists: DATA waits */
	const char		*port_file;
	int			 port;
	int			 verbose;
	unsigned		 seq;
	TAILQ_HEAD(, conn)	 conns;
} S;

static void
say(struct conn *c, const char *fmt, ...)
{
	va_list	 ap;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void
conn_reset(struct conn *c)
{
	free(c->from);
	c->from = NULL;
	buf_clear(&c->rcpt);
	buf_clear(&c->data);
	c->too_big = false;
}

static void
conn_free(struct conn *c)
{
	if (c->held)
		log_info("discarded a held message from %s to %s: the client "
		    "went away", c->from, c->rcpt.data);
	conn_reset(c);
	free(c->login_user);
	bufferevent_free(c->bev);
	TAILQ_REMOVE(&S.conns, c, entry);
	free(c);
}

/* Decode base64 into out (NUL-terminated); -1 if empty or not base64. */
static int
decode64(const char *s, struct buf *out)
{
	if (*s == '\0' || b64_decode(out, s, strlen(s), B64_STD) == -1)
		return -1;
	return out->data != NULL ? 0 : -1;
}

static bool
auth_ok(const char *user, const char *pass)
{
	size_t	 ul = strlen(user);

	return S.auth != NULL && strncmp(S.auth, user, ul) == 0 &&
	    S.auth[ul] == ':' && strcmp(S.auth + ul + 1, pass) == 0;
}

static void
auth_result(struct conn *c, bool ok)
{
	c->state = S_CMD;
	c->authed = ok;
	if (ok)
		say(c, "235 2.7.0 Authentication successful");
	else
		say(c, "535 5.7.8 Authentication credentials invalid");
}

/* PLAIN: base64 of "authzid NUL user NUL pass". */
static void
auth_plain(struct conn *c, const char *resp)
{
	struct buf	 b;
	const char	*user = NULL, *pass = NULL, *z;

	buf_init(&b);
	if (strcmp(resp, "*") == 0 || decode64(resp, &b) == -1) {
		buf_clear(&b);
		c->state = S_CMD;
		say(c, "501 5.5.2 Cannot decode response");
		return;
	}
	if ((z = memchr(b.data, '\0', b.len)) != NULL) {
		user = z + 1;
		z = memchr(user, '\0', (size_t)(b.data + b.len - user));
		pass = z != NULL ? z + 1 : NULL;
	}
	auth_result(c, pass != NULL && auth_ok(user, pass));
	buf_clear(&b);
}

static void
auth_login(struct conn *c, const char *resp)
{
	struct buf	 b;

	buf_init(&b);
	if (decode64(resp, &b) == -1) {
		buf_clear(&b);
		c->state = S_CMD;
		say(c, "501 5.5.2 Cannot decode response");
		return;
	}
	if (c->state == S_AUTH_USER) {
		free(c->login_user);
		c->login_user = xstrdup(b.data);
		c->state = S_AUTH_PASS;
		say(c, "334 UGFzc3dvcmQ6");
	} else
		auth_result(c, auth_ok(c->login_user, b.data));
	buf_clear(&b);
}

static void
cmd_auth(struct conn *c, const char *arg)
{
	const char	*sp = strchr(arg, ' ');

	if (S.auth == NULL) {
		say(c, "502 5.5.1 AUTH not available");
		return;
	}
	if (c->authed) {
		say(c, "503 5.5.1 Already authenticated");
		return;
	}
	if (strncasecmp(arg, "PLAIN", 5) == 0 && (arg[5] == '\0' || sp)) {
		if (sp != NULL)
			auth_plain(c, sp + 1);
		else {
			c->state = S_AUTH_PLAIN;
			say(c, "334 ");
		}
	} else if (strncasecmp(arg, "LOGIN", 5) == 0 &&
	    (arg[5] == '\0' || sp)) {
		c->state = S_AUTH_USER;
		if (sp != NULL)
			auth_login(c, sp + 1);
		else
			say(c, "334 VXNlcm5hbWU6");
	} else
		say(c, "504 5.5.4 Unrecognized authentication type");
}

/* The address between < and > after "FROM:" / "TO:". */
static char *
path_arg(const char *arg, const char *prefix)
{
	size_t		 pl = strlen(prefix);
	const char	*lt, *gt;

	if (strncasecmp(arg, prefix, pl) != 0)
		return NULL;
	arg += pl;
	while (*arg == ' ')
		arg++;
	if ((lt = strchr(arg, '<')) != arg || (gt = strchr(lt, '>')) == NULL)
		return NULL;
	return xstrndup(lt + 1, (size_t)(gt - lt - 1));
}

/* Store the message as DIR/NNNNNN.eml with the envelope on top. */
static int
mail_store(struct conn *c)
{
	char	 path[4096], tmp[4200];
	FILE	*f;

	S.seq++;
	snprintf(path, sizeof(path), "%s/%06u.eml", S.dir, S.seq);
	snprintf(tmp, sizeof(tmp), "%s/.%06u.tmp", S.dir, S.seq);
	if ((f = fopen(tmp, "w")) == NULL) {
		log_warn("%s", tmp);
		return -1;
	}
	fprintf(f, "X-Envelope-From: %s\r\nX-Envelope-To: %s\r\n", c->from,
	    c->rcpt.data);
	fwrite(c->data.data, 1, c->data.len, f);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		log_warn("%s", path);
		return -1;
	}
	log_debug("stored %s (%zu bytes) from %s to %s", path, c->data.len,
	    c->from, c->rcpt.data);
	return 0;
}

/* Answer the end of a message's DATA (and store it). */
static void
data_end(struct conn *c)
{
	c->state = S_CMD;
	c->held = false;
	if (c->too_big)
		say(c, "552 5.3.4 Message too big");
	else if (S.fail_file != NULL && access(S.fail_file, F_OK) == 0)
		say(c, "451 4.3.0 Temporary failure, try again later");
	else if (mail_store(c) == -1)
		say(c, "452 4.3.1 Cannot store message");
	else
		say(c, "250 2.0.0 Ok: queued as %06u", S.seq);
	conn_reset(c);
}

static void
data_line(struct conn *c, const char *line, size_t len)
{
	if (len == 1 && line[0] == '.') {
		if (S.hold_file != NULL && access(S.hold_file, F_OK) == 0) {
			c->held = true;
			log_info("held a message from %s to %s", c->from,
			    c->rcpt.data);
			return;
		}
		data_end(c);
		return;
	}
	if (line[0] == '.') {		/* dot-stuffing */
		line++;
		len--;
	}
	if (c->data.len + len + 2 > MAX_MAIL) {
		c->too_big = true;
		return;
	}
	buf_add(&c->data, line, len);
	buf_add(&c->data, "\r\n", 2);
}

static void
cmd_ehlo(struct conn *c, bool ehlo)
{
	if (!ehlo) {
		say(c, "250 fakesmtp");
		return;
	}
	say(c, "250-fakesmtp");
	say(c, "250-PIPELINING");
	say(c, "250-8BITMIME");
	if (S.auth != NULL)
		say(c, "250-AUTH PLAIN LOGIN");
	say(c, "250 SIZE %d", MAX_MAIL);
}

static void
command(struct conn *c, char *line)
{
	char	*arg = strchr(line, ' '), *p;

	if (arg != NULL)
		*arg++ = '\0';
	else
		arg = line + strlen(line);
	if (strcasecmp(line, "EHLO") == 0 || strcasecmp(line, "HELO") == 0) {
		conn_reset(c);
		cmd_ehlo(c, strcasecmp(line, "EHLO") == 0);
	} else if (strcasecmp(line, "AUTH") == 0)
		cmd_auth(c, arg);
	else if (strcasecmp(line, "MAIL") == 0) {
		if (S.auth != NULL && !c->authed)
			say(c, "530 5.7.0 Authentication required");
		else if ((p = path_arg(arg, "FROM:")) == NULL)
			say(c, "501 5.5.4 Syntax: MAIL FROM:<address>");
		else {
			conn_reset(c);
			c->from = p;
			say(c, "250 2.1.0 Ok");
		}
	} else if (strcasecmp(line, "RCPT") == 0) {
		if (c->from == NULL)
			say(c, "503 5.5.1 Need MAIL first");
		else if ((p = path_arg(arg, "TO:")) == NULL)
			say(c, "501 5.5.4 Syntax: RCPT TO:<address>");
		else {
			if (c->rcpt.len > 0)
				buf_adds(&c->rcpt, ", ");
			buf_adds(&c->rcpt, p);
			free(p);
			say(c, "250 2.1.5 Ok");
		}
	} else if (strcasecmp(line, "DATA") == 0) {
		if (c->rcpt.len == 0)
			say(c, "503 5.5.1 Need RCPT first");
		else {
			buf_init(&c->data);
			buf_add(&c->data, "", 0);
			c->state = S_DATA;
			say(c, "354 End data with <CR><LF>.<CR><LF>");
		}
	} else if (strcasecmp(line, "RSET") == 0) {
		conn_reset(c);
		say(c, "250 2.0.0 Ok");
	} else if (strcasecmp(line, "NOOP") == 0)
		say(c, "250 2.0.0 Ok");
	else if (strcasecmp(line, "QUIT") == 0) {
		say(c, "221 2.0.0 Bye");
		c->closing = true;
	} else
		say(c, "502 5.5.2 Command not recognized");
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line;
	size_t		 len;

	while (!c->closing && !c->held && (line = evbuffer_readln(in, &len,
	    EVBUFFER_EOL_CRLF)) != NULL) {
		if (S.verbose > 1 || (S.verbose && c->state != S_DATA))
			log_debug("< %s", c->state == S_AUTH_PASS ||
			    c->state == S_AUTH_PLAIN ? "<secret>" : line);
		switch (c->state) {
		case S_DATA:
			data_line(c, line, len);
			break;
		case S_AUTH_PLAIN:
			auth_plain(c, line);
			break;
		case S_AUTH_USER:
		case S_AUTH_PASS:
			auth_login(c, line);
			break;
		default:
			command(c, line);
			break;
		}
		free(line);
	}
	if (!c->closing && evbuffer_get_length(in) > MAX_LINE &&
	    c->state != S_DATA) {
		say(c, "500 5.5.2 Line too long");
		c->closing = true;
	}
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn	*c = arg;

	if (c->closing)
		conn_free(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_free(arg);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct conn	*c = xcalloc(1, sizeof(*c));

	c->bev = bufferevent_socket_new(S.base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb,
	    c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&S.conns, c, entry);
	say(c, "220 fakesmtp ESMTP ready");
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(S.base, NULL);
}

/* SIGUSR1: answer every held message (as if it had just ended). */
static void
release_cb(evutil_socket_t sig, short what, void *arg)
{
	struct conn	*c;
	unsigned	 n = 0;

	TAILQ_FOREACH(c, &S.conns, entry) {
		if (!c->held)
			continue;
		n++;
		data_end(c);
		conn_read_cb(c->bev, c);	/* commands sent meanwhile */
	}
	log_info("released %u held message%s", n, n == 1 ? "" : "s");
}

static void
usage(void)
{
	fprintf(stderr, "usage: fakesmtp -d DIR [-v] [-p PORT] "
	    "[--port-file FILE] [--auth USER:PASS] [--fail-file FILE] "
	    "[--hold-file FILE]\n");
	exit(64);
}

static void
parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "port", required_argument, NULL, 'p' },
		{ "port-file", required_argument, NULL, 'P' },
		{ "auth", required_argument, NULL, 'a' },
		{ "fail-file", required_argument, NULL, 'f' },
		{ "hold-file", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int	 ch;
	char	*end;

	while ((ch = getopt_long(argc, argv, "d:p:v", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'd':
			S.dir = optarg;
			break;
		case 'p':
			S.port = (int)strtol(optarg, &end, 10);
			if (*end != '\0' || S.port < 0 || S.port > 65535)
				usage();
			break;
		case 'P':
			S.port_file = optarg;
			break;
		case 'a':
			if (strchr(optarg, ':') == NULL)
				usage();
			S.auth = optarg;
			break;
		case 'f':
			S.fail_file = optarg;
			break;
		case 'H':
			S.hold_file = optarg;
			break;
		case 'v':
			S.verbose++;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || S.dir == NULL)
		usage();
}

static void
listen_start(void)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	char			 s[32];

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)S.port);
	S.listener = evconnlistener_new_bind(S.base, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
	    (struct sockaddr *)&sin, sizeof(sin));
	if (S.listener == NULL)
		fatal("bind 127.0.0.1:%d", S.port);
	if (getsockname(evconnlistener_get_fd(S.listener),
	    (struct sockaddr *)&sin, &len) == -1)
		fatal("getsockname");
	S.port = ntohs(sin.sin_port);
	printf("port=%d\n", S.port);
	fflush(stdout);
	if (S.port_file != NULL) {
		snprintf(s, sizeof(s), "%d\n", S.port);
		if (file_write_atomic(S.port_file, s, strlen(s), 0644) != 0)
			fatal("%s", S.port_file);
	}
}

int
main(int argc, char **argv)
{
	TAILQ_INIT(&S.conns);
	parse_args(argc, argv);
	log_init(LOG_TARGET_STDERR, S.verbose, "fakesmtp");
	if (mkdir(S.dir, 0700) == -1 && errno != EEXIST)
		fatal("%s", S.dir);
	signal(SIGPIPE, SIG_IGN);
	if ((S.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	listen_start();
	S.sigterm = evsignal_new(S.base, SIGTERM, signal_cb, NULL);
	S.sigint = evsignal_new(S.base, SIGINT, signal_cb, NULL);
	event_add(S.sigterm, NULL);
	S.sigusr1 = evsignal_new(S.base, SIGUSR1, release_cb, NULL);
	event_add(S.sigint, NULL);
	event_add(S.sigusr1, NULL);
	event_base_dispatch(S.base);
	while (!TAILQ_EMPTY(&S.conns))
		conn_free(TAILQ_FIRST(&S.conns));
	evconnlistener_free(S.listener);
	event_free(S.sigterm);
	event_free(S.sigint);
	event_free(S.sigusr1);
	event_base_free(S.base);
	return 0;
}
