/*
 * sink: a fast loopback TCP syslog receiver for the benchmarks that counts
 * newline-framed messages, optionally reports when each alert id arrives,
 * and reports its own CPU use.
 *
 * Usage: sink [-p PORT] [--port-file F] [--ids] [--interval MS]
 *   Listens on 127.0.0.1:PORT (0 picks one) and prints "port=N".
 *   Every MS milliseconds (default 500) and at exit (SIGTERM, SIGINT) it
 *   prints: stats t=MONO msgs=N bytes=B first=MONO last=MONO cpu=SECS
 *   maxrss_kb=K conns=C, with MONO in CLOCK_MONOTONIC seconds.
 *   --ids prints "id MONO EXTERNALID" for each message carrying
 *   "externalId=" (CEF) as it arrives.
 */

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define READ_SIZE	(256 * 1024)
#define LINE_MAX_KEEP	(1024 * 1024)

struct conn {
	struct sink	*s;
	int		 fd;
	struct event	*ev;
	char		*line;		/* --ids: partial message */
	size_t		 len, cap;
};

struct sink {
	struct event_base *base;
	int		 ids;
	unsigned long long msgs, bytes;
	double		 first, last;
	int		 conns;
	char		*rbuf;
};

static double
mono(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sink_stats(struct sink *s)
{
	struct rusage	 ru;

	getrusage(RUSAGE_SELF, &ru);
	printf("stats t=%.6f msgs=%llu bytes=%llu first=%.6f last=%.6f "
	    "cpu=%.3f maxrss_kb=%ld conns=%d\n", mono(), s->msgs, s->bytes,
	    s->first, s->last, ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6, ru.ru_maxrss,
	    s->conns);
	fflush(stdout);
}

/* --ids: print the externalId of one whole message. */
static void
sink_message_id(const char *m, size_t len, double t)
{
	const char	*p, *end = m + len;
	size_t		 k;

	if ((p = memmem(m, len, "externalId=", 11)) == NULL)
		return;
	p += 11;
	for (k = 0; p + k < end && p[k] != ' '; k++)
		;
	printf("id %.6f %.*s\n", t, (int)k, p);
}

static void
conn_ids(struct conn *c, const char *p, size_t n, double t)
{
	const char	*nl, *end = p + n;

	while ((nl = memchr(p, '\n', end - p)) != NULL) {
		if (c->len > 0) {
			if (c->len + (nl - p) <= LINE_MAX_KEEP) {
				memcpy(c->line + c->len, p, nl - p);
				c->len += nl - p;
			}
			sink_message_id(c->line, c->len, t);
			c->len = 0;
		} else
			sink_message_id(p, nl - p, t);
		p = nl + 1;
	}
	if (p < end && c->len + (end - p) <= LINE_MAX_KEEP) {
		if (c->cap < LINE_MAX_KEEP) {
			c->cap = LINE_MAX_KEEP;
			c->line = realloc(c->line, c->cap);
			if (c->line == NULL)
				abort();
		}
		memcpy(c->line + c->len, p, end - p);
		c->len += end - p;
	}
	fflush(stdout);
}

static void
conn_free(struct conn *c)
{
	c->s->conns--;
	event_free(c->ev);
	close(c->fd);
	free(c->line);
	free(c);
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;
	struct sink	*s = c->s;
	const char	*p, *end;
	ssize_t		 n;
	double		 t;
	int		 rounds;

	for (rounds = 0; rounds < 16; rounds++) {
		n = read(fd, s->rbuf, READ_SIZE);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_free(c);
			return;
		}
		t = mono();
		s->bytes += n;
		end = s->rbuf + n;
		for (p = s->rbuf; (p = memchr(p, '\n', end - p)) != NULL; p++)
			s->msgs++;
		if (s->first == 0)
			s->first = t;
		s->last = t;
		if (s->ids)
			conn_ids(c, s->rbuf, n, t);
		if (n < READ_SIZE)
			return;
	}
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct sink	*s = arg;
	struct conn	*c;
	int		 fd, sz = 4 << 20;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) ==
	    -1)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	if ((c = calloc(1, sizeof *c)) == NULL)
		abort();
	c->s = s;
	c->fd = fd;
	c->ev = event_new(s->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	event_add(c->ev, NULL);
	s->conns++;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	sink_stats(arg);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct sink	*s = arg;

	event_base_loopbreak(s->base);
}

static int
listen_on(int port)
{
	struct sockaddr_in	 sin;
	int			 fd, on = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(fd, 128) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static void
usage(void)
{
	fprintf(stderr, "usage: sink [-p PORT] [--port-file F] [--ids] "
	    "[--interval MS]\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "port-file", required_argument, NULL, 'f' },
		{ "ids", no_argument, NULL, 'i' },
		{ "interval", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 }
	};
	struct sink		 s;
	struct sockaddr_in	 sin;
	socklen_t		 slen = sizeof sin;
	struct event		*lev, *tick, *sterm, *sint;
	struct timeval		 tv;
	const char		*port_file = NULL;
	char			 tmp[4096];
	FILE			*f;
	long			 interval = 500;
	int			 ch, lfd, port = 0;

	memset(&s, 0, sizeof s);
	while ((ch = getopt_long(argc, argv, "p:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'f':
			port_file = optarg;
			break;
		case 'i':
			s.ids = 1;
			break;
		case 'n':
			interval = atol(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || interval <= 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if ((lfd = listen_on(port)) == -1) {
		perror("sink: listen");
		return 1;
	}
	getsockname(lfd, (struct sockaddr *)&sin, &slen);
	port = ntohs(sin.sin_port);
	if (port_file != NULL) {
		snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
		if ((f = fopen(tmp, "w")) == NULL) {
			perror(tmp);
			return 1;
		}
		fprintf(f, "%d\n", port);
		fclose(f);
		rename(tmp, port_file);
	}
	printf("port=%d\n", port);
	fflush(stdout);

	if ((s.rbuf = malloc(READ_SIZE)) == NULL)
		abort();
	s.base = event_base_new();
	lev = event_new(s.base, lfd, EV_READ | EV_PERSIST, accept_cb, &s);
	event_add(lev, NULL);
	tick = event_new(s.base, -1, EV_PERSIST, tick_cb, &s);
	tv.tv_sec = interval / 1000;
	tv.tv_usec = interval % 1000 * 1000;
	event_add(tick, &tv);
	sterm = evsignal_new(s.base, SIGTERM, signal_cb, &s);
	sint = evsignal_new(s.base, SIGINT, signal_cb, &s);
	event_add(sterm, NULL);
	event_add(sint, NULL);
	event_base_dispatch(s.base);
	sink_stats(&s);

	event_free(lev);
	event_free(tick);
	event_free(sterm);
	event_free(sint);
	close(lfd);
	event_base_free(s.base);
	free(s.rbuf);
	return 0;
}
