/*
 * http: all outbound HTTP of alertrelayd on one curl multi handle driven by
 * the libevent base (the socket/timer callback pattern of curl's multi
 * examples), with a queue so at most max_concurrent requests run at once.
 *
 * Streamed bodies (data_cb) share HTTP_TURN_BYTES per loop turn: curl
 * reads up to 100 buffers per socket event, and with twenty tenants'
 * pages arriving at once one turn would parse and spool megabytes (loop
 * lag of 250-500 ms in the commit bench).  Past the budget the write
 * callback pauses its transfer (CURL_WRITEFUNC_PAUSE: curl keeps the
 * chunk) and queues it; on the next turn, after whatever else was due, a
 * zero timer resumes the oldest queued transfer, which reads on until the
 * new turn's budget is spent.
 *
 * Oldest first, not in turn: a transfer also waits while an older one is
 * queued, so pages that arrive together end one after another, in the
 * order they were asked for, and each tenant asks for its next page as
 * soon as its own is committed, while the others are still being read.
 * Taking turns, every page ended at the same moment, all tenants asked
 * again together, and the API's time to answer was never overlapped with
 * parsing (the commit bench: 1.07-1.24x the old code, 1.6-1.8x oldest
 * first; tests/bench/RESULTS.md).  A newer transfer still reads whenever
 * the older ones have nothing to read, and HTTP_HEAD_BYTES bounds how far
 * one answer can keep the others waiting.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "internal.h"

/* Streamed body bytes handed on per loop turn, all transfers together. */
#define HTTP_TURN_BYTES		(64 * 1024)

/*
 * Bytes a transfer takes ahead of newer ones before it goes behind them:
 * a page of 10,000 alerts is about 37 MB, so pages end in order, while an
 * answer that never ends (a broken API) cannot hold the other tenants'
 * pages back for more than this at a time.
 */
#ifndef HTTP_HEAD_BYTES
#define HTTP_HEAD_BYTES		((size_t)64 * 1024 * 1024)
#endif

struct http_req {
	struct http		*http;
	CURL			*easy;
	struct curl_slist	*headers;
	char			*url;
	char			*post;
	size_t			 post_len;
	struct http_opts	 opts;
	char			*strings[4];	/* owned copies */
	char			*location;	/* Location: of a redirect */
	char			*deprecation;	/* Deprecation: */
	char			*sunset;	/* Sunset: */
	struct buf		 body;
	size_t			 received;
	bool			 yielded;	/* paused, in http->yielded */
	TAILQ_ENTRY(http_req)	 yentry;
	int64_t			 retry_after_ms;
	int64_t			 started_ms;
	uint64_t		 seq;		/* place in line (start order) */
	size_t			 ahead;		/* bytes taken in that place */
	char			 errbuf[CURL_ERROR_SIZE];
	char			 abort_reason[256];
	int			 aborted;
	TAILQ_ENTRY(http_req)	 entry;
};

TAILQ_HEAD(http_queue, http_req);

struct http {
	struct event_base	*base;
	CURLM			*multi;
	struct event		*timer;
	struct event		*done_ev;
	struct http_queue	 queued;
	struct http_queue	 done;
	unsigned		 active;
	unsigned		 max_active;
	uint64_t		 places;	/* places in line handed out */
	size_t			 turn_bytes;	/* handed on this turn */
	struct event		*turn_ev;	/* the next turn's budget */
	TAILQ_HEAD(http_yq, http_req) yielded;	/* paused, by seq */
};

/* The libevent event curl asked us to watch for one socket. */
struct http_sock {
	struct http		*http;
	struct event		*ev;
};

static void	http_pump(struct http *);

static void
http_check_multi(struct http *h)
{
	CURLMsg		*msg;
	int		 left;
	struct http_req	*r;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
		    (char **)&r);
		if (msg->data.result != CURLE_OK && !r->aborted) {
			r->aborted = 1;
			snprintf(r->abort_reason, sizeof(r->abort_reason),
			    "%s", r->errbuf[0] != '\0' ? r->errbuf :
			    curl_easy_strerror(msg->data.result));
		}
		TAILQ_INSERT_TAIL(&h->done, r, entry);
	}
	if (!TAILQ_EMPTY(&h->done))
		event_active(h->done_ev, 0, 0);
}

static void
http_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	int		 running, flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(h->multi, fd, flags, &running);
	http_check_multi(h);
}

static void
http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	int		 running;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	http_check_multi(h);
}

/* CURLMOPT_TIMERFUNCTION: keep exactly one timer; never call curl here. */
static int
http_timer_set_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct http	*h = arg;
	struct timeval	 tv;

	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	tv = tv_from_ms(timeout_ms);
	evtimer_add(h->timer, &tv);
	return 0;
}

/* CURLMOPT_SOCKETFUNCTION: one libevent event per curl socket. */
static int
http_sock_cb(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct http	 *h = arg;
	struct http_sock *hs = sockp;
	short		  kind;

	if (what == CURL_POLL_REMOVE) {
		if (hs != NULL) {
			event_free(hs->ev);
			free(hs);
			curl_multi_assign(h->multi, s, NULL);
		}
		return 0;
	}
	kind = EV_PERSIST;
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (hs == NULL) {
		hs = xcalloc(1, sizeof(*hs));
		hs->http = h;
		curl_multi_assign(h->multi, s, hs);
	} else
		event_free(hs->ev);
	hs->ev = event_new(h->base, s, kind, http_event_cb, h);
	event_add(hs->ev, NULL);
	return 0;
}

static void
http_req_free(struct http_req *r)
{
	struct curl_slist *l;

	if (r->easy != NULL)
		curl_easy_cleanup(r->easy);
	if (r->yielded)
		TAILQ_REMOVE(&r->http->yielded, r, yentry);
	for (l = r->headers; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(r->headers);
	free(r->strings[0]);
	free(r->strings[1]);
	free(r->strings[2]);
	free(r->strings[3]);
	free(r->location);
	free(r->deprecation);
	free(r->sunset);
	free(r->url);
	if (r->post != NULL) {
		explicit_bzero(r->post, r->post_len);
		free(r->post);
	}
	buf_clear(&r->body);
	free(r);
}

/* Deliver finished requests from the loop, after curl returned. */
static void
http_finished_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http		*h = arg;
	struct http_req		*r;
	struct http_result	 res;
	long			 code = 0;

	while ((r = TAILQ_FIRST(&h->done)) != NULL) {
		TAILQ_REMOVE(&h->done, r, entry);
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
		curl_multi_remove_handle(h->multi, r->easy);
		h->active--;
		memset(&res, 0, sizeof(res));
		res.status = (int)code;
		res.failed = r->aborted;
		res.error = r->aborted ? r->abort_reason : NULL;
		res.body = &r->body;
		res.retry_after_ms = r->retry_after_ms;
		res.location = r->location;
		res.deprecation = r->deprecation;
		res.sunset = r->sunset;
		res.elapsed_ms = mono_ms() - r->started_ms;
		r->opts.done_cb(&res, r->opts.arg);
		http_req_free(r);
	}
	http_pump(h);
}

/*
 * A new loop turn, a new budget: resume the oldest paused transfer (curl
 * hands its kept chunk to the write callback from within curl_easy_pause),
 * and the next oldest only if that chunk spent the budget already.
 */
static void
http_turn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	struct http_req	*r;
	struct timeval	 tv = { 0, 0 };

	h->turn_bytes = 0;
	while (h->turn_bytes < HTTP_TURN_BYTES &&
	    (r = TAILQ_FIRST(&h->yielded)) != NULL) {
		TAILQ_REMOVE(&h->yielded, r, yentry);
		r->yielded = false;
		curl_easy_pause(r->easy, CURLPAUSE_CONT);
		/*
		 * It took its kept chunk and reads on (curl runs it again
		 * from a zero timeout): the rest of the budget is its.
		 */
		if (!r->yielded)
			break;
	}
	if (h->turn_bytes > 0 || !TAILQ_EMPTY(&h->yielded))
		evtimer_add(h->turn_ev, &tv);
	http_check_multi(h);
}

/* Queue a paused transfer by its place in line, not by when it paused. */
static void
http_yield(struct http *h, struct http_req *r)
{
	struct http_req	*q;

	r->yielded = true;
	TAILQ_FOREACH_REVERSE(q, &h->yielded, http_yq, yentry)
		if (q->seq < r->seq)
			break;
	if (q == NULL)
		TAILQ_INSERT_HEAD(&h->yielded, r, yentry);
	else
		TAILQ_INSERT_AFTER(&h->yielded, q, r, yentry);
}

/* Count streamed bytes against this turn; false: pause, wait a turn. */
static bool
http_turn_take(struct http_req *r, size_t len)
{
	struct http	*h = r->http;
	struct http_req	*first = TAILQ_FIRST(&h->yielded);
	struct timeval	 tv = { 0, 0 };

	if (!evtimer_pending(h->turn_ev, NULL))
		evtimer_add(h->turn_ev, &tv);
	/* Spent, or an older transfer waits for its turn: wait behind it. */
	if (h->turn_bytes >= HTTP_TURN_BYTES ||
	    (first != NULL && first->seq < r->seq)) {
		if (!r->yielded)
			http_yield(h, r);
		return false;
	}
	h->turn_bytes += len;
	if ((r->ahead += len) >= HTTP_HEAD_BYTES) {
		r->seq = ++h->places;		/* to the back of the line */
		r->ahead = 0;
	}
	return true;
}

static size_t
http_write_cb(char *p, size_t sz, size_t n, void *arg)
{
	struct http_req	*r = arg;
	size_t		 len = sz * n;
	long		 code = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	if (r->opts.data_cb != NULL && code >= 200 && code < 300 &&
	    !http_turn_take(r, len))
		return CURL_WRITEFUNC_PAUSE;
	r->received += len;
	if (r->opts.max_body != 0 && r->received > r->opts.max_body) {
		r->aborted = 1;
		snprintf(r->abort_reason, sizeof(r->abort_reason),
		    "response body larger than %zu bytes", r->opts.max_body);
		return 0;
	}
	if (r->opts.data_cb != NULL && code >= 200 && code < 300) {
		if (r->opts.data_cb(p, len, r->opts.arg) != 0) {
			r->aborted = 1;
			snprintf(r->abort_reason, sizeof(r->abort_reason),
			    "response rejected");
			return 0;
		}
		return len;
	}
	if (r->body.len + len > 65536 && r->opts.data_cb != NULL)
		return len;	/* error bodies: the first 64 KiB suffice */
	buf_add(&r->body, p, len);
	return len;
}

/* A header's value, trimmed, at most 100 printable bytes. */
static char *
header_value(const char *p, size_t len, size_t skip)
{
	const char	*v = p + skip, *end = p + len;
	char		*out;
	size_t		 i, n;

	while (v < end && isspace((unsigned char)*v))
		v++;
	while (end > v && isspace((unsigned char)end[-1]))
		end--;
	n = (size_t)(end - v) < 100 ? (size_t)(end - v) : 100;
	out = xstrndup(v, n);
	for (i = 0; out[i] != '\0'; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = '?';
	return out;
}

static size_t
http_header_cb(char *p, size_t sz, size_t n, void *arg)
{
	struct http_req	*r = arg;
	size_t		 len = sz * n;
	const char	*v;
	char		*end;
	long long	 secs;

	if (len > 9 && strncasecmp(p, "Location:", 9) == 0 &&
	    r->location == NULL) {
		for (v = p + 9; v < p + len && isspace((unsigned char)*v);)
			v++;
		r->location = xstrndup(v, (size_t)(p + len - v));
		r->location[strcspn(r->location, "\r\n")] = '\0';
		return len;
	}
	if (len > 12 && strncasecmp(p, "Deprecation:", 12) == 0 &&
	    r->deprecation == NULL) {
		r->deprecation = header_value(p, len, 12);
		return len;
	}
	if (len > 7 && strncasecmp(p, "Sunset:", 7) == 0 &&
	    r->sunset == NULL) {
		r->sunset = header_value(p, len, 7);
		return len;
	}
	if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		for (v = p + 12; v < p + len && isspace((unsigned char)*v);)
			v++;
		secs = strtoll(v, &end, 10);
		if (end != v && secs >= 0 && secs < 86400)
			r->retry_after_ms = secs * 1000;
		else
			r->retry_after_ms = 60000;	/* HTTP-date form */
	}
	return len;
}

static void
http_setup(struct http_req *r)
{
	CURL		*e = r->easy;

	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->opts.timeout_ms);
	/* A peer trickling under 1 KiB/s for 30 s is given up on. */
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(r->opts.timeout_ms < 15000 ? r->opts.timeout_ms : 15000));
	if (r->opts.ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, r->opts.ca_file);
	if (r->opts.cert_file != NULL) {
		curl_easy_setopt(e, CURLOPT_SSLCERT, r->opts.cert_file);
		curl_easy_setopt(e, CURLOPT_SSLKEY, r->opts.key_file);
	}
	if (r->opts.user_agent != NULL)
		curl_easy_setopt(e, CURLOPT_USERAGENT, r->opts.user_agent);
	r->headers = curl_slist_append(r->headers, "Accept: application/json");
	if (r->post != NULL) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->post);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->post_len);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
}

/* Start queued requests while there is room. */
static void
http_pump(struct http *h)
{
	struct http_req	*r;

	while (h->active < h->max_active &&
	    (r = TAILQ_FIRST(&h->queued)) != NULL) {
		TAILQ_REMOVE(&h->queued, r, entry);
		if ((r->easy = curl_easy_init()) == NULL)
			fatalx("curl_easy_init failed");
		http_setup(r);
		r->started_ms = mono_ms();
		r->seq = ++h->places;
		h->active++;
		curl_multi_add_handle(h->multi, r->easy);
	}
}

struct http_req *
http_request(struct http *h, const struct http_opts *o)
{
	struct http_req	*r;
	size_t		 i;

	r = xcalloc(1, sizeof(*r));
	r->http = h;
	r->opts = *o;
	r->url = xstrdup(o->url);
	r->opts.url = r->url;
	/* A queued request may start after a reload freed the config. */
	r->opts.ca_file = r->strings[0] = o->ca_file ? xstrdup(o->ca_file) :
	    NULL;
	r->opts.cert_file = r->strings[1] = o->cert_file ?
	    xstrdup(o->cert_file) : NULL;
	r->opts.key_file = r->strings[2] = o->key_file ? xstrdup(o->key_file) :
	    NULL;
	r->opts.user_agent = r->strings[3] = o->user_agent ?
	    xstrdup(o->user_agent) : NULL;
	r->retry_after_ms = -1;
	buf_init(&r->body);
	if (o->body != NULL) {
		r->post = xmalloc(o->body_len + 1);
		memcpy(r->post, o->body, o->body_len);
		r->post[o->body_len] = '\0';
		r->post_len = o->body_len;
	}
	r->opts.body = NULL;
	for (i = 0; o->headers != NULL && o->headers[i] != NULL; i++)
		r->headers = curl_slist_append(r->headers, o->headers[i]);
	r->opts.headers = NULL;	/* copied into the list above */
	r->opts.bearer = NULL;	/* copied into headers at setup */
	if (o->bearer != NULL) {
		/* Keep the token only inside curl's header list. */
		char *hdr;

		xasprintf(&hdr, "Authorization: Bearer %s", o->bearer);
		r->headers = curl_slist_append(r->headers, hdr);
		explicit_bzero(hdr, strlen(hdr));
		free(hdr);
	}
	TAILQ_INSERT_TAIL(&h->queued, r, entry);
	http_pump(h);
	return r;
}

void
http_cancel(struct http *h, struct http_req *r)
{
	struct http_req	*q;

	TAILQ_FOREACH(q, &h->queued, entry) {
		if (q == r) {
			TAILQ_REMOVE(&h->queued, r, entry);
			http_req_free(r);
			return;
		}
	}
	TAILQ_FOREACH(q, &h->done, entry) {
		if (q == r) {
			TAILQ_REMOVE(&h->done, r, entry);
			curl_multi_remove_handle(h->multi, r->easy);
			h->active--;
			http_req_free(r);
			return;
		}
	}
	curl_multi_remove_handle(h->multi, r->easy);
	h->active--;
	http_req_free(r);
	event_active(h->done_ev, 0, 0);		/* pump from the loop */
}

unsigned
http_active(const struct http *h)
{
	return h->active;
}

struct http *
http_new(struct event_base *base, unsigned max_concurrent)
{
	struct http	*h;

	h = xcalloc(1, sizeof(*h));
	h->base = base;
	h->max_active = max_concurrent == 0 ? 1 : max_concurrent;
	TAILQ_INIT(&h->queued);
	TAILQ_INIT(&h->done);
	TAILQ_INIT(&h->yielded);
	h->turn_ev = evtimer_new(base, http_turn_cb, h);
	if ((h->multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	h->timer = evtimer_new(base, http_timer_cb, h);
	h->done_ev = event_new(base, -1, 0, http_finished_cb, h);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_sock_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_set_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	    (long)h->max_active);
	return h;
}

static void
http_drop_queue(struct http *h, struct http_queue *q, int added)
{
	struct http_req	*r;

	while ((r = TAILQ_FIRST(q)) != NULL) {
		TAILQ_REMOVE(q, r, entry);
		if (added)
			curl_multi_remove_handle(h->multi, r->easy);
		http_req_free(r);
	}
}

void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	http_drop_queue(h, &h->queued, 0);
	http_drop_queue(h, &h->done, 1);
	/* Requests still running are owned by their callers' cancel. */
	curl_multi_cleanup(h->multi);
	event_free(h->timer);
	event_free(h->done_ev);
	event_free(h->turn_ev);
	free(h);
}

int
http_check_async_dns(char *err, size_t errlen)
{
	curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

	if (!(v->features & CURL_VERSION_ASYNCHDNS)) {
		snprintf(err, errlen, "libcurl %s resolves names with a "
		    "blocking resolver, which would stall every tenant; "
		    "install a libcurl built with the threaded resolver "
		    "or c-ares", v->version);
		return -1;
	}
	return 0;
}

void
http_urlencode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char	 c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~')
			buf_addc(b, (char)c);
		else {
			buf_addc(b, '%');
			buf_addc(b, hex[c >> 4]);
			buf_addc(b, hex[c & 15]);
		}
	}
}
