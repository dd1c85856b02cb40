/* Unit tests for daemon/http.c: how streamed bodies share the loop. */

/* A small head start, so that an answer past it is quick to send here. */
#define HTTP_HEAD_BYTES		((size_t)2 * 1024 * 1024)

#include "../../daemon/http.c"

#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include <cmocka.h>

#define T_MAXN		8		/* pages asked for at once */
#define MiB		((size_t)1024 * 1024)

/*
 * A tiny API: answers n requests, each with the number of bytes its URL
 * asks for ("?bytes=N"), but only once all n have arrived, so every page
 * is there to be read at the same moment (as when twenty tenants' pages
 * come back together).  It keeps every socket full, so it is never what
 * the client waits for.  Bound here, served by a thread of
 * this process.
 */
struct tapi {
	int		 n;
	int		 lfd;
	int		 port;
	pthread_t	 thread;
	int		 fds[T_MAXN];
};

static void *
tapi_main(void *arg)
{
	static char	 body[8 * 1024 * 1024];
	struct tapi	*s = arg;
	struct pollfd	 pfd[T_MAXN];
	char		 req[4096], head[128];
	size_t		 sent[T_MAXN], total[T_MAXN];
	int		 i, hlen, left = s->n, one = 1;

	memset(body, 'x', sizeof(body));
	for (i = 0; i < s->n; i++) {
		const char *q;
		size_t	 got = 0;
		ssize_t	 n;

		s->fds[i] = accept(s->lfd, NULL, NULL);
		if (s->fds[i] == -1)
			return NULL;
		/*
		 * Pieces smaller than a loopback segment would wait for the
		 * client's delayed acknowledgement (Nagle): a page would
		 * stall for 40 ms while the loop reads the others.
		 */
		setsockopt(s->fds[i], IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		/* One GET, no body: read to the blank line. */
		while (got < sizeof(req) - 1 && (got < 4 ||
		    memcmp(req + got - 4, "\r\n\r\n", 4) != 0)) {
			if ((n = read(s->fds[i], req + got, 1)) <= 0)
				return NULL;
			got += (size_t)n;
		}
		req[got] = '\0';
		if ((q = strstr(req, "bytes=")) == NULL)
			return NULL;
		total[i] = strtoull(q + 6, NULL, 10);
	}
	for (i = 0; i < s->n; i++) {
		hlen = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n"
		    "Content-Type: application/json\r\n"
		    "Content-Length: %zu\r\n\r\n", total[i]);
		if (write(s->fds[i], head, (size_t)hlen) != hlen)
			return NULL;
		sent[i] = 0;
		pfd[i].fd = s->fds[i];
		pfd[i].events = POLLOUT;
	}
	while (left > 0) {
		if (poll(pfd, (nfds_t)s->n, 10000) <= 0)
			return NULL;
		for (i = 0; i < s->n; i++) {
			size_t	 want;
			ssize_t	 n;

			if (pfd[i].fd == -1 || !(pfd[i].revents & POLLOUT))
				continue;
			/*
			 * At most 256 KiB a call: one send() of everything
			 * goes on for as long as the client reads that page,
			 * and the others would get nothing meanwhile.
			 */
			want = total[i] - sent[i];
			if (want > 256 * 1024)
				want = 256 * 1024;
			if ((n = send(pfd[i].fd, body, want, MSG_DONTWAIT |
			    MSG_NOSIGNAL)) <= 0)
				continue;
			if ((sent[i] += (size_t)n) == total[i]) {
				pfd[i].fd = -1;
				left--;
			}
		}
	}
	return NULL;
}

static void
tapi_start(struct tapi *s, int n)
{
	struct sockaddr_in sin;
	socklen_t	 len = sizeof(sin);

	memset(s, 0, sizeof(*s));
	s->n = n;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->lfd != -1);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)),
	    0);
	assert_int_equal(listen(s->lfd, T_MAXN), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sin, &len),
	    0);
	s->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, tapi_main, s), 0);
}

static void
tapi_stop(struct tapi *s)
{
	int	 i;

	pthread_join(s->thread, NULL);
	for (i = 0; i < s->n; i++)
		close(s->fds[i]);
	close(s->lfd);
}

struct tpages {
	struct event_base *base;
	int		 n;
	size_t		 got[T_MAXN];	/* bytes handed on, per page */
	size_t		 total;		/* all pages together */
	size_t		 total_at_end[T_MAXN]; /* total when page i ended */
	int		 status[T_MAXN];
	int		 ended;
};

struct tpage {
	struct tpages	*all;
	int		 i;
};

static int
tpage_data(const char *p, size_t len, void *arg)
{
	struct tpage	*pg = arg;

	pg->all->got[pg->i] += len;
	pg->all->total += len;
	return 0;
}

static void
tpage_done(const struct http_result *res, void *arg)
{
	struct tpage	*pg = arg;
	struct tpages	*all = pg->all;

	all->status[pg->i] = res->failed ? -1 : res->status;
	all->total_at_end[pg->i] = all->total;
	if (++all->ended == all->n)
		event_base_loopbreak(all->base);
}

/* Ask for n pages of sizes[i] bytes at once, in order; read them all. */
static void
fetch_pages(struct tpages *all, int n, const size_t *sizes)
{
	struct tapi	 s;
	struct tpage	 pg[T_MAXN];
	struct http	*h;
	char		 url[T_MAXN][96];
	int		 i;

	memset(all, 0, sizeof(*all));
	all->n = n;
	tapi_start(&s, n);
	all->base = event_base_new();
	h = http_new(all->base, T_MAXN);
	for (i = 0; i < n; i++) {
		struct http_opts o = {
			.method = "GET", .url = url[i], .timeout_ms = 30000,
			.data_cb = tpage_data, .done_cb = tpage_done,
			.arg = &pg[i],
		};

		snprintf(url[i], sizeof(url[i]), "http://127.0.0.1:%d/api/"
		    "alerts?bytes=%zu", s.port, sizes[i]);
		pg[i].all = all;
		pg[i].i = i;
		assert_non_null(http_request(h, &o));
	}
	event_base_dispatch(all->base);
	tapi_stop(&s);
	http_free(h);
	event_base_free(all->base);
	for (i = 0; i < n; i++) {
		assert_int_equal(all->status[i], 200);
		assert_int_equal(all->got[i], sizes[i]);
		print_message("page %d (%zu KiB) ended after %zu KiB of all "
		    "pages\n", i, sizes[i] / 1024, all->total_at_end[i] / 1024);
	}
}

/*
 * Pages that arrive together end one after another, oldest request first,
 * each as soon as it could: the loop's per-turn budget goes to the oldest
 * transfer first.  Before, paused transfers took turns by when they paused,
 * so every page got 64 KiB in turn and all of them ended together, at the
 * very end: a tenant's next request waited for everyone's page, and the
 * API's time to answer it was never overlapped with parsing
 * (tests/bench/RESULTS.md, the commit shape).
 */
static void
test_pages_end_in_order(void **state)
{
	struct tpages	 all;
	size_t		 sizes[T_MAXN];
	int		 i;

	for (i = 0; i < T_MAXN; i++)
		sizes[i] = MiB;
	fetch_pages(&all, T_MAXN, sizes);
	/*
	 * Page i ends once about i + 1 pages' worth have been read: its own
	 * and those asked for before it, and what newer pages took in turns
	 * where the older ones had nothing to read (allowed: one page
	 * in all).  Taking turns, every page ended after about all 8 MiB.
	 */
	for (i = 0; i < T_MAXN; i++)
		assert_true(all.total_at_end[i] <= (size_t)(i + 2) * MiB);
}

/*
 * An answer that goes on and on (here 8 MiB, past a head start of 2 MiB)
 * does not keep a newer page waiting until it ends: past its head start
 * it goes behind the pages asked for after it.
 */
static void
test_long_answer_yields(void **state)
{
	struct tpages	 all;
	const size_t	 sizes[] = { 8 * MiB, MiB, MiB };

	fetch_pages(&all, 3, sizes);
	/* The short pages end after the long one's head start and their own
	 * (allowed: one more MiB), long before the long one. */
	assert_true(all.total_at_end[1] <= HTTP_HEAD_BYTES + 2 * MiB);
	assert_true(all.total_at_end[2] <= HTTP_HEAD_BYTES + 3 * MiB);
	assert_true(all.total_at_end[0] == 10 * MiB);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages_end_in_order),
		cmocka_unit_test(test_long_answer_yields),
	};

	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
