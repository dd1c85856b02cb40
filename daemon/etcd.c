/* etcd: a v3 client over the JSON gateway: transactions, one lease. */

/*
 * The gateway takes POST /v3/... with JSON bodies whose keys and values
 * are base64 (lib/b64.h) and 64-bit integers written as strings.  This
 * file knows that encoding, the endpoints and their failover, and keeps
 * one lease alive; what the keys mean is cluster.c's.  Every result goes
 * to the callback given with the call, from the loop, never from inside
 * the call: nothing here calls up into its user.
 *
 * The lease: granted with the TTL asked for, renewed every ttl/3.  It is
 * "confirmed" until ttl - max(ttl/5, 100 ms) after the last successful
 * keepalive was *sent* (before etcd renewed it), so the user stops
 * relying on it before etcd can expire it.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"
#include "b64.h"

#define RETRY_MS	250	/* after a failed lease request */
#define MAX_REPLY	(64 * 1024 * 1024)

struct etcd_req {
	struct etcd	*e;
	struct http_req	*h;
	char		*what;		/* for logs: "read", "keepalive" */
	char		*endpoint;	/* the one it went to */
	etcd_txn_cb	 cb;
	void		*arg;
};

struct etcd_txn {
	json_t		*compare;
	json_t		*branch[2];	/* ETCD_THEN, ETCD_ELSE */
};

struct etcd {
	/*
	 * A multi handle of our own: keepalives must never queue behind
	 * hundreds of tenant polls limited by max_concurrent_requests, or a
	 * busy collector would lose its lease.
	 */
	struct http	*http;
	const struct conf_cluster *conf; /* borrowed: endpoints, TLS */
	size_t		 cur;		/* endpoint in use */
	char		 user_agent[64];

	int64_t		 ttl_ms;
	etcd_lease_cb	 lease_cb;
	void		*lease_arg;
	int64_t		 lease;		/* 0: none */
	bool		 lease_ok;	/* confirmed, deadline not passed */
	int64_t		 lease_sent;	/* mono ms: last good keepalive sent */
	struct etcd_req	*lreq;
	int64_t		 lreq_sent;
	struct event	*ltimer;
	struct event	*deadline;

	bool		 down;		/* announced as unreachable */
	unsigned	 fails;		/* consecutive failed requests */
	char		 last_error[256];
	int64_t		 last_ok;	/* ticks */
	uint64_t	 requests;
	uint64_t	 failures;
};

/* A finished request, parsed. */
struct ereply {
	json_t		*root;		/* NULL on failure */
	const char	*error;		/* what failed */
	bool		 lease_gone;	/* etcd: requested lease not found */
	char		 msg[256];
};

static void	etcd_keepalive(struct etcd *);

/* ---- encoding ---- */

static json_t *
b64_json(const char *s)
{
	struct buf	 b;
	json_t		*j;

	buf_init(&b);
	b64_encode(&b, s, strlen(s), B64_STD);
	j = json_string(b.len ? b.data : "");
	buf_clear(&b);
	return j;
}

/* Decode a base64 JSON string into a NUL-terminated copy, or NULL. */
static char *
json_b64(json_t *j)
{
	const char	*s = json_string_value(j);
	struct buf	 b;

	if (s == NULL)
		return NULL;
	buf_init(&b);
	if (b64_decode(&b, s, strlen(s), B64_STD) == -1) {
		buf_clear(&b);
		return NULL;
	}
	if (b.data == NULL)
		return xstrdup("");
	return b.data;	/* buf keeps data NUL-terminated */
}

/* The gateway writes 64-bit integers as strings. */
static int64_t
json_i64(json_t *j)
{
	if (json_is_integer(j))
		return (int64_t)json_integer_value(j);
	if (json_is_string(j))
		return strtoll(json_string_value(j), NULL, 10);
	return 0;
}

static json_t *
json_s64(int64_t v)
{
	char	 s[32];

	snprintf(s, sizeof(s), "%" PRId64, v);
	return json_string(s);
}

/* The first key after every key starting with prefix. */
static json_t *
b64_range_end(const char *prefix)
{
	char	*e = xstrdup(prefix);
	size_t	 n = strlen(e);
	json_t	*j;

	while (n > 0 && (unsigned char)e[n - 1] == 0xff)
		e[--n] = '\0';
	if (n > 0)
		e[n - 1]++;
	j = b64_json(e);
	free(e);
	return j;
}

/* ---- transactions ---- */

struct etcd_txn *
etcd_txn_new(void)
{
	struct etcd_txn	*t = xcalloc(1, sizeof(*t));

	t->compare = json_array();
	t->branch[ETCD_THEN] = json_array();
	t->branch[ETCD_ELSE] = json_array();
	return t;
}

void
etcd_txn_free(struct etcd_txn *t)
{
	if (t == NULL)
		return;
	json_decref(t->compare);
	json_decref(t->branch[ETCD_THEN]);
	json_decref(t->branch[ETCD_ELSE]);
	free(t);
}

/* Compare: key does not exist (create_revision 0). */
void
etcd_txn_cmp_absent(struct etcd_txn *t, const char *key)
{
	json_array_append_new(t->compare, json_pack("{s:o,s:s,s:s,s:s}",
	    "key", b64_json(key), "target", "CREATE", "result", "EQUAL",
	    "create_revision", "0"));
}

/* Compare: key exists and is bound to lease. */
void
etcd_txn_cmp_lease(struct etcd_txn *t, const char *key, int64_t lease)
{
	json_array_append_new(t->compare, json_pack("{s:o,s:s,s:s,s:o}",
	    "key", b64_json(key), "target", "LEASE", "result", "EQUAL",
	    "lease", json_s64(lease)));
}

void
etcd_txn_put(struct etcd_txn *t, enum etcd_branch br, const char *key,
    const char *value, int64_t lease)
{
	json_t	*p;

	p = json_object();
	json_object_set_new(p, "key", b64_json(key));
	json_object_set_new(p, "value", b64_json(value));
	if (lease != 0)
		json_object_set_new(p, "lease", json_s64(lease));
	json_array_append_new(t->branch[br], json_pack("{s:o}", "request_put",
	    p));
}

void
etcd_txn_range(struct etcd_txn *t, enum etcd_branch br, const char *key,
    bool prefix)
{
	json_t	*p;

	p = json_object();
	json_object_set_new(p, "key", b64_json(key));
	if (prefix)
		json_object_set_new(p, "range_end", b64_range_end(key));
	json_array_append_new(t->branch[br], json_pack("{s:o}",
	    "request_range", p));
}

void
etcd_txn_delete(struct etcd_txn *t, enum etcd_branch br, const char *key)
{
	json_array_append_new(t->branch[br], json_pack("{s:{s:o}}",
	    "request_delete_range", "key", b64_json(key)));
}

size_t
etcd_txn_nops(const struct etcd_txn *t, enum etcd_branch br)
{
	return json_array_size(t->branch[br]);
}

/* The JSON body of a transaction (frees t). */
static json_t *
etcd_txn_json(struct etcd_txn *t)
{
	json_t	*j;

	j = json_pack("{s:o,s:o,s:o}", "compare", t->compare, "success",
	    t->branch[ETCD_THEN], "failure", t->branch[ETCD_ELSE]);
	free(t);
	return j;
}

/* The key-values of one response of a txn reply (a range). */
static void
etcd_range_parse(json_t *resp, struct etcd_range *rg)
{
	json_t	*kvs, *kv;
	size_t	 i;
	char	*k;

	kvs = json_object_get(json_object_get(resp, "response_range"), "kvs");
	rg->kvs = xcalloc(json_array_size(kvs) + 1, sizeof(*rg->kvs));
	json_array_foreach(kvs, i, kv) {
		if ((k = json_b64(json_object_get(kv, "key"))) == NULL)
			continue;
		rg->kvs[rg->nkvs].key = k;
		rg->kvs[rg->nkvs].value = json_b64(json_object_get(kv,
		    "value"));
		rg->kvs[rg->nkvs++].lease = json_i64(json_object_get(kv,
		    "lease"));
	}
}

static void
etcd_txn_result_clear(struct etcd_txn_result *tr)
{
	size_t	 i, j;

	for (i = 0; i < tr->nranges; i++) {
		for (j = 0; j < tr->ranges[i].nkvs; j++) {
			free(tr->ranges[i].kvs[j].key);
			free(tr->ranges[i].kvs[j].value);
		}
		free(tr->ranges[i].kvs);
	}
	free(tr->ranges);
}

/* ---- requests ---- */

/* "http://h:p/" and "http://h:p" alike: the length without the '/'. */
static int
ep_len(const char *ep)
{
	size_t	 n = strlen(ep);

	return (int)(n > 0 && ep[n - 1] == '/' ? n - 1 : n);
}

/* Record a failure: log the first of a series, move to the next endpoint. */
static void
etcd_failed(struct etcd *e, const char *ep, const char *what,
    const char *error)
{
	const struct conf_cluster *cc = e->conf;

	e->failures++;
	snprintf(e->last_error, sizeof(e->last_error), "%s: %s: %s", ep, what,
	    error);
	if (++e->fails == 1 || (!e->down && e->fails == 3)) {
		e->down = e->fails >= 3;
		log_warnx("cluster: etcd %s: %s failed: %s%s", ep, what,
		    error, cc->netcd_endpoints > 1 ? "; trying the next "
		    "endpoint" : "");
	} else
		log_debug("cluster: etcd %s: %s failed: %s", ep, what, error);
	e->cur = (e->cur + 1) % cc->netcd_endpoints;
}

static void
etcd_succeeded(struct etcd *e)
{
	if (e->down)
		log_info("cluster: etcd reachable again at %.*s",
		    ep_len(e->conf->etcd_endpoints[e->cur]),
		    e->conf->etcd_endpoints[e->cur]);
	e->down = false;
	e->fails = 0;
	e->last_ok = ts_now();
}

/* Parse a gateway reply; on failure fill error (not logged). */
static void
ereply_parse(const struct http_result *res, struct ereply *er)
{
	json_error_t	 je;
	json_t		*x;
	const char	*m;

	memset(er, 0, sizeof(*er));
	if (res->failed) {
		snprintf(er->msg, sizeof(er->msg), "%s", res->error != NULL ?
		    res->error : "transfer failed");
		er->error = er->msg;
		return;
	}
	if (res->body != NULL && res->body->len > 0)
		er->root = json_loadb(res->body->data, res->body->len, 0, &je);
	if (res->status == 200 && json_is_object(er->root)) {
		/* A streaming RPC wraps its message in "result". */
		if ((x = json_object_get(er->root, "error")) == NULL)
			return;
	}
	x = json_object_get(er->root, "error");
	if (json_is_object(x))
		m = json_string_value(json_object_get(x, "message"));
	else if ((m = json_string_value(json_object_get(er->root,
	    "message"))) == NULL)
		m = json_string_value(x);
	if (m != NULL && strstr(m, "lease not found") != NULL)
		er->lease_gone = true;
	snprintf(er->msg, sizeof(er->msg), "HTTP %d%s%s", res->status,
	    m != NULL ? ": " : "", m != NULL ? m : "");
	er->error = er->msg;
	json_decref(er->root);
	er->root = NULL;
}

static void
etcd_http_opts(struct etcd *e, struct http_opts *o, const char *url,
    const char *body, int64_t timeout_ms)
{
	memset(o, 0, sizeof(*o));
	o->method = "POST";
	o->url = url;
	o->body = body;
	o->body_len = strlen(body);
	o->user_agent = e->user_agent;
	o->ca_file = e->conf->ca_file;
	o->cert_file = e->conf->cert_file;
	o->key_file = e->conf->key_file;
	o->timeout_ms = timeout_ms;
	o->max_body = MAX_REPLY;
}

/* POST body (stolen) to path on the current endpoint, on http. */
static struct etcd_req *
etcd_post(struct etcd *e, struct http *http, const char *path, json_t *body,
    const char *what, int64_t timeout_ms, http_done_cb cb)
{
	struct etcd_req	*rq;
	struct http_opts o;
	const char	*ep = e->conf->etcd_endpoints[e->cur];
	char		*url, *text;

	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL)
		fatalx("cluster: json_dumps failed");
	rq = xcalloc(1, sizeof(*rq));
	rq->e = e;
	rq->what = xstrdup(what);
	xasprintf(&rq->endpoint, "%.*s", ep_len(ep), ep);
	xasprintf(&url, "%s%s", rq->endpoint, path);
	etcd_http_opts(e, &o, url, text, timeout_ms);
	o.done_cb = cb;
	o.arg = rq;
	e->requests++;
	rq->h = http_request(http, &o);
	free(url);
	free(text);
	return rq;
}

static void
etcd_req_free(struct etcd_req *rq)
{
	free(rq->what);
	free(rq->endpoint);
	free(rq);
}

/*
 * Parse a reply: on failure record it (logged, next endpoint).  Returns
 * the JSON root (new reference) or NULL with er->error.
 */
static json_t *
etcd_reply(struct etcd_req *rq, const struct http_result *res,
    struct ereply *er)
{
	struct etcd	*e = rq->e;

	ereply_parse(res, er);
	if (er->root == NULL) {
		etcd_failed(e, rq->endpoint, rq->what, er->error);
		return NULL;
	}
	etcd_succeeded(e);
	return er->root;
}

static void
etcd_txn_done_cb(const struct http_result *res, void *arg)
{
	struct etcd_req	*rq = arg;
	struct etcd_txn_result tr;
	struct ereply	 er;
	json_t		*resps, *r;
	size_t		 i;

	memset(&tr, 0, sizeof(tr));
	if (etcd_reply(rq, res, &er) == NULL) {
		tr.error = er.error;
		/* etcd no longer knows our lease: the keepalive decides. */
		if (er.lease_gone && rq->e->lease_cb != NULL &&
		    rq->e->lreq == NULL)
			event_active(rq->e->ltimer, EV_TIMEOUT, 0);
	} else {
		tr.succeeded = json_is_true(json_object_get(er.root,
		    "succeeded"));
		tr.revision = json_i64(json_object_get(json_object_get(
		    er.root, "header"), "revision"));
		resps = json_object_get(er.root, "responses");
		tr.ranges = xcalloc(json_array_size(resps) + 1,
		    sizeof(*tr.ranges));
		json_array_foreach(resps, i, r)
			etcd_range_parse(r, &tr.ranges[tr.nranges++]);
	}
	rq->cb(&tr, rq->arg);
	etcd_txn_result_clear(&tr);
	json_decref(er.root);
	etcd_req_free(rq);
}

struct etcd_req *
etcd_txn_send(struct etcd *e, struct etcd_txn *t, const char *what,
    int64_t timeout_ms, etcd_txn_cb cb, void *arg)
{
	struct etcd_req	*rq;

	rq = etcd_post(e, e->http, "/v3/kv/txn", etcd_txn_json(t), what,
	    timeout_ms, etcd_txn_done_cb);
	rq->cb = cb;
	rq->arg = arg;
	return rq;
}

void
etcd_cancel(struct etcd *e, struct etcd_req *rq)
{
	if (rq == NULL)
		return;
	http_cancel(e->http, rq->h);
	etcd_req_free(rq);
}

/* ---- the lease ---- */

static void
etcd_lease_event(struct etcd *e, enum etcd_lease_event ev, const char *why)
{
	e->lease_cb(ev, why, e->lease_arg);
}

/* The deadline passed: the lease can no longer be trusted. */
static void
etcd_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct etcd	*e = arg;
	char		 why[128];

	snprintf(why, sizeof(why), "lease not renewed for %lld ms",
	    (long long)(mono_ms() - e->lease_sent));
	e->lease_ok = false;
	etcd_lease_event(e, ETCD_LEASE_LOST, why);
}

/* The lease was confirmed by a keepalive sent at sent (mono ms). */
static void
etcd_lease_confirmed(struct etcd *e, int64_t sent)
{
	int64_t	 margin = e->ttl_ms / 5;
	bool	 was = e->lease_ok;

	if (margin < 100)
		margin = 100;
	e->lease_ok = true;
	e->lease_sent = sent;
	timer_in(e->deadline, sent + e->ttl_ms - margin - mono_ms());
	etcd_lease_event(e, was ? ETCD_LEASE_RENEWED : ETCD_LEASE_UP, NULL);
}

/* etcd says the lease is gone: forget it, and ask for another. */
static void
etcd_lease_gone(struct etcd *e)
{
	evtimer_del(e->deadline);
	if (e->lease_ok) {
		e->lease_ok = false;
		etcd_lease_event(e, ETCD_LEASE_LOST,
		    "the lease expired in etcd");
	}
	e->lease = 0;
	etcd_lease_event(e, ETCD_LEASE_NEW, NULL);
	if (e->lreq == NULL)
		timer_in(e->ltimer, 0);
}

static void
etcd_lease_done_cb(const struct http_result *res, void *arg)
{
	struct etcd_req	*rq = arg;
	struct etcd	*e = rq->e;
	struct ereply	 er;
	json_t		*m;
	int64_t		 ttl, id, sent = e->lreq_sent;

	e->lreq = NULL;
	if (etcd_reply(rq, res, &er) == NULL) {
		etcd_req_free(rq);
		if (er.lease_gone)
			etcd_lease_gone(e);
		else
			timer_in(e->ltimer, RETRY_MS);
		return;
	}
	if ((m = json_object_get(er.root, "result")) == NULL)
		m = er.root;	/* lease grant is not a stream */
	id = json_i64(json_object_get(m, "ID"));
	ttl = json_i64(json_object_get(m, "TTL"));
	json_decref(er.root);
	if (e->lease == 0 && id != 0 && ttl > 0) {
		e->lease = id;
		etcd_lease_event(e, ETCD_LEASE_NEW, NULL);
		etcd_lease_confirmed(e, sent);
	} else if (e->lease != 0 && ttl > 0)
		etcd_lease_confirmed(e, sent);
	else if (e->lease != 0) {
		etcd_req_free(rq);
		etcd_lease_gone(e);
		return;
	} else
		etcd_failed(e, rq->endpoint, rq->what,
		    "reply without ID or TTL");
	etcd_req_free(rq);
	timer_in(e->ltimer, e->ttl_ms / 3);
}

/* Grant a lease, or renew the one we have. */
static void
etcd_keepalive(struct etcd *e)
{
	json_t	*body;
	int64_t	 every = e->ttl_ms / 3, secs;

	if (e->lreq != NULL)
		return;
	e->lreq_sent = mono_ms();
	if (e->lease == 0) {
		secs = (e->ttl_ms + 999) / 1000;
		body = json_pack("{s:I}", "TTL", (json_int_t)secs);
		e->lreq = etcd_post(e, e->http, "/v3/lease/grant", body,
		    "lease grant", every, etcd_lease_done_cb);
	} else {
		body = json_pack("{s:o}", "ID", json_s64(e->lease));
		e->lreq = etcd_post(e, e->http, "/v3/lease/keepalive", body,
		    "keepalive", every, etcd_lease_done_cb);
	}
}

static void
etcd_ltimer_cb(evutil_socket_t fd, short what, void *arg)
{
	etcd_keepalive(arg);
}

void
etcd_lease_start(struct etcd *e, int64_t ttl_ms, etcd_lease_cb cb,
    void *arg)
{
	e->ttl_ms = ttl_ms;
	e->lease_cb = cb;
	e->lease_arg = arg;
	etcd_keepalive(e);
}

int64_t
etcd_lease(const struct etcd *e)
{
	return e->lease;
}

bool
etcd_lease_ok(const struct etcd *e)
{
	return e->lease_ok;
}

/* ---- the end ---- */

struct efinal {
	struct etcd	*e;
	struct http	*http;
	struct event_base *base;
	struct etcd_req	*pending;
	int		 rc;
	char		*err;
	size_t		 errlen;
	int64_t		 timeout_ms;
};

static void	etcd_final_revoke(struct efinal *);

static void
etcd_final_revoke_cb(const struct http_result *res, void *arg)
{
	struct etcd_req	*rq = arg;
	struct efinal	*f = rq->arg;

	f->pending = NULL;
	etcd_req_free(rq);
	event_base_loopexit(f->base, NULL);
}

static void
etcd_final_txn_cb(const struct http_result *res, void *arg)
{
	struct etcd_req	*rq = arg;
	struct efinal	*f = rq->arg;
	struct ereply	 er;

	ereply_parse(res, &er);
	if (er.root == NULL)
		snprintf(f->err, f->errlen, "%s", er.error);
	else
		f->rc = 0;
	json_decref(er.root);
	f->pending = NULL;
	etcd_req_free(rq);
	etcd_final_revoke(f);
}

/* Revoke the lease: every key bound to it goes at once. */
static void
etcd_final_revoke(struct efinal *f)
{
	struct etcd_req	*rq;

	rq = etcd_post(f->e, f->http, "/v3/lease/revoke", json_pack("{s:o}",
	    "ID", json_s64(f->e->lease)), "revoke", f->timeout_ms,
	    etcd_final_revoke_cb);
	rq->arg = f;
	f->pending = rq;
}

/*
 * At exit: run t (taken; NULL: none), then revoke the lease, on a private
 * event base so nothing else of the daemon runs meanwhile, within
 * budget_ms.  Returns 0, or -1 with err when t did not run.
 */
int
etcd_finish(struct etcd *e, struct etcd_txn *t, int64_t budget_ms,
    char *err, size_t errlen)
{
	struct efinal	 f;
	struct etcd_req	*rq;
	struct timeval	 tv;

	if (e->lreq != NULL)
		etcd_cancel(e, e->lreq);
	e->lreq = NULL;
	evtimer_del(e->ltimer);
	evtimer_del(e->deadline);
	memset(&f, 0, sizeof(f));
	f.e = e;
	f.base = event_base_new();
	f.http = http_new(f.base, 2);
	f.err = err;
	f.errlen = errlen;
	f.timeout_ms = budget_ms / 2;
	if (t != NULL) {
		rq = etcd_post(e, f.http, "/v3/kv/txn", etcd_txn_json(t),
		    "final", f.timeout_ms, etcd_final_txn_cb);
		rq->arg = &f;
		f.pending = rq;
		f.rc = -1;	/* until it is answered */
		snprintf(err, errlen, "no answer within %lld ms",
		    (long long)budget_ms);
	} else
		etcd_final_revoke(&f);
	tv.tv_sec = budget_ms / 1000;
	tv.tv_usec = (budget_ms % 1000) * 1000;
	event_base_loopexit(f.base, &tv);
	event_base_dispatch(f.base);
	if (f.pending != NULL) {
		http_cancel(f.http, f.pending->h);
		etcd_req_free(f.pending);
	}
	http_free(f.http);
	event_base_free(f.base);
	return f.rc;
}

/* ---- life ---- */

struct etcd *
etcd_new(struct event_base *base, const struct conf_cluster *cc)
{
	struct etcd	*e;

	e = xcalloc(1, sizeof(*e));
	e->http = http_new(base, 4);
	e->conf = cc;
	snprintf(e->user_agent, sizeof(e->user_agent), "alertrelayd/%s "
	    "(cluster)", AR_VERSION);
	e->ltimer = evtimer_new(base, etcd_ltimer_cb, e);
	e->deadline = evtimer_new(base, etcd_deadline_cb, e);
	return e;
}

void
etcd_set_conf(struct etcd *e, const struct conf_cluster *cc)
{
	e->conf = cc;
	e->cur = 0;
}

unsigned
etcd_fails(const struct etcd *e)
{
	return e->fails;
}

void
etcd_stats(const struct etcd *e, struct etcd_stats *st)
{
	const char	*ep = e->conf->etcd_endpoints[e->cur];

	memset(st, 0, sizeof(*st));
	snprintf(st->endpoint, sizeof(st->endpoint), "%.*s", ep_len(ep), ep);
	st->healthy = e->fails == 0 && e->last_ok != 0;
	st->last_ok = e->last_ok;
	snprintf(st->last_error, sizeof(st->last_error), "%s", e->last_error);
	st->requests = e->requests;
	st->failures = e->failures;
	st->lease = e->lease;
	st->lease_ok = e->lease_ok;
	st->lease_sent = e->lease_sent;
}

void
etcd_free(struct etcd *e)
{
	if (e == NULL)
		return;
	if (e->lreq != NULL)
		etcd_cancel(e, e->lreq);
	http_free(e->http);
	event_free(e->ltimer);
	event_free(e->deadline);
	free(e);
}
