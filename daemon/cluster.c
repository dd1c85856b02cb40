/* cluster: the share of the tenants this member polls, agreed in etcd. */

/*
 * etcd is spoken to through its v3 JSON gateway (POST /v3/..., keys and
 * values base64) with libcurl and jansson, the libraries the daemon
 * already has.  Debian ships no maintained C client for the v3 API
 * (etcd's own clients are Go; the C ones are v2-only or unmaintained
 * gRPC wrappers that would pull in protobuf and gRPC for a handful of
 * calls), and the gateway is part of every etcd 3.x server.
 *
 * Keys, under [cluster] prefix:
 *	members/NAME	one per live collector, bound to its lease
 *	owners/TENANT	NAME of the collector polling TENANT, bound to its
 *			lease: created only if absent (transaction)
 *	cursors/TENANT	the tenant's delivered cursor, in ticks (decimal)
 *
 * Invariants:
 * - A tenant is polled only while this member holds owners/TENANT under a
 *   lease that etcd confirmed within lease_ttl; the deadline timer stops
 *   every tenant before etcd can expire the lease and let another member
 *   take the key (the deadline counts from when the last successful
 *   keepalive was *sent*, which is before etcd renewed it).
 * - On handoff the previous owner stops the tenant first and only then
 *   deletes the key (writing the cursor in the same transaction); the new
 *   owner waits until the key is gone.
 * - Every key-value request of this member is serialised on one channel,
 *   so its own writes land in the order it made them.
 * - Tenants are spread by rendezvous hashing of (tenant, member) over the
 *   members listed under members/, which every member reads every
 *   lease_ttl/4 (polling instead of a watch stream keeps failover on
 *   another endpoint trivial, and bounds reaction time all the same).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "alertrelayd.h"

#define CURSOR_SYNC_MS	5000	/* how often changed cursors are stored */
#define HANDOFF_READ_MS	300	/* read interval while waiting for a key */
#define RETRY_MS	250	/* after a failed request, next endpoint */
#define FINAL_MS	2000	/* shutdown: cursors and revoke, at most */
#define BATCH_OPS	64	/* puts per transaction (etcd allows 128) */
#define MAX_REPLY	(64 * 1024 * 1024)

enum ct_state {
	CT_NONE,		/* not polled here */
	CT_OWNED,		/* owner key held, tenant polled */
	CT_RELEASING,		/* stopped; owner key still to delete */
};

/* This member's view of one tenant. */
struct ctenant {
	char		*name;
	struct tenant	*t;		/* NULL once a reload removed it */
	enum ct_state	 state;
	bool		 want;		/* rendezvous hashing picks us */
	bool		 tried;		/* acquire tried since the last read */
	char		*owner;		/* member in owners/NAME, or NULL */
	int64_t		 owner_lease;
	int64_t		 written;	/* cursor last stored in etcd */
	int64_t		 delivered;	/* last known delivered cursor */
};

struct cmember {
	char		*name;
	char		*info;		/* the member key's value */
};

enum cop {
	OP_NONE,
	OP_REGISTER,
	OP_READ,
	OP_ACQUIRE,
	OP_RELEASE,
	OP_CURSORS,
};

struct cluster {
	struct relay	*relay;
	/*
	 * A multi handle of our own: keepalives must never queue behind
	 * hundreds of tenant polls limited by max_concurrent_requests, or a
	 * busy collector would lose its lease.
	 */
	struct http	*http;
	char		**endpoints;
	size_t		 nendpoints;
	size_t		 cur;		/* endpoint in use */
	char		*name;
	char		*prefix;
	char		*ca_file, *cert_file, *key_file;
	int64_t		 ttl_ms;
	char		*member_key;
	char		*member_value;
	char		 user_agent[64];

	/* The lease channel: grant, then keepalive every ttl/3. */
	int64_t		 lease;		/* 0: none */
	bool		 lease_ok;	/* confirmed, deadline not passed */
	int64_t		 lease_sent;	/* mono ms: last good keepalive sent */
	int64_t		 lease_granted_ttl;	/* seconds, from etcd */
	struct http_req	*lreq;
	int64_t		 lreq_sent;
	struct event	*ltimer;
	struct event	*deadline;

	/* The key-value channel: one request at a time. */
	bool		 registered;	/* members/NAME holds our lease */
	bool		 name_busy;	/* announced: another lease has it */
	struct http_req	*kreq;
	enum cop	 kop;
	struct ctenant	*kct;
	struct ctenant	**kbatch;
	int64_t		*kvals;
	size_t		 nkbatch;
	struct event	*ktimer;
	int64_t		 next_read;	/* mono ms */
	int64_t		 next_cursors;
	int64_t		 kv_retry;	/* mono ms: not before, after errors */
	bool		 read_done;	/* a read since the lease was granted */

	struct ctenant	**cts;		/* sorted by name */
	size_t		 ncts;
	struct cmember	*members;
	size_t		 nmembers;
	int64_t		 revision;

	/* Health, for status and logs. */
	bool		 down;		/* announced as unreachable */
	unsigned	 fails;		/* consecutive failed requests */
	char		 last_error[256];
	int64_t		 last_ok;	/* ticks */
	uint64_t	 requests;
	uint64_t	 failures;
	uint64_t	 takeovers;	/* tenants started here */
	uint64_t	 handoffs;	/* tenants handed to others */
	uint64_t	 losses;	/* times every tenant was stopped */
};

/* A finished request, parsed. */
struct creply {
	json_t		*root;		/* NULL on failure */
	const char	*error;		/* what failed */
	bool		 lease_gone;	/* etcd: requested lease not found */
	char		 msg[256];
};

static void	cluster_kick(struct cluster *);
static void	cluster_keepalive(struct cluster *);

/* ---- small helpers ---- */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *
b64_json(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t		 len = strlen(s), i;
	struct buf	 b;
	uint32_t	 v;
	json_t		*j;

	buf_init(&b);
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		buf_addc(&b, b64chars[v >> 18]);
		buf_addc(&b, b64chars[(v >> 12) & 63]);
		buf_addc(&b, b64chars[(v >> 6) & 63]);
		buf_addc(&b, b64chars[v & 63]);
	}
	if (len - i == 1) {
		v = (uint32_t)p[i] << 16;
		buf_addc(&b, b64chars[v >> 18]);
		buf_addc(&b, b64chars[(v >> 12) & 63]);
		buf_adds(&b, "==");
	} else if (len - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		buf_addc(&b, b64chars[v >> 18]);
		buf_addc(&b, b64chars[(v >> 12) & 63]);
		buf_addc(&b, b64chars[(v >> 6) & 63]);
		buf_addc(&b, '=');
	}
	j = json_string(b.len ? b.data : "");
	buf_clear(&b);
	return j;
}

/* Decode a base64 JSON string into a NUL-terminated copy, or NULL. */
static char *
b64_decode(json_t *j)
{
	const char	*s = json_string_value(j), *q;
	struct buf	 b;
	uint32_t	 v = 0;
	int		 n = 0;

	if (s == NULL)
		return NULL;
	buf_init(&b);
	for (; *s != '\0' && *s != '='; s++) {
		if ((q = strchr(b64chars, *s)) == NULL) {
			buf_clear(&b);
			return NULL;
		}
		v = v << 6 | (uint32_t)(q - b64chars);
		if (++n == 4) {
			buf_addc(&b, (char)(v >> 16));
			buf_addc(&b, (char)(v >> 8));
			buf_addc(&b, (char)v);
			v = 0;
			n = 0;
		}
	}
	if (n == 2)
		buf_addc(&b, (char)(v >> 4));
	else if (n == 3) {
		buf_addc(&b, (char)(v >> 10));
		buf_addc(&b, (char)(v >> 2));
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

static char *
ckey(struct cluster *c, const char *kind, const char *name)
{
	char	*k;

	xasprintf(&k, "%s%s/%s", c->prefix, kind, name != NULL ? name : "");
	return k;
}

static json_t *
op_put(const char *key, const char *value, int64_t lease)
{
	json_t	*p;

	p = json_object();
	json_object_set_new(p, "key", b64_json(key));
	json_object_set_new(p, "value", b64_json(value));
	if (lease != 0)
		json_object_set_new(p, "lease", json_s64(lease));
	return json_pack("{s:o}", "request_put", p);
}

static json_t *
op_range(const char *key, bool prefix)
{
	json_t	*p;

	p = json_object();
	json_object_set_new(p, "key", b64_json(key));
	if (prefix)
		json_object_set_new(p, "range_end", b64_range_end(key));
	return json_pack("{s:o}", "request_range", p);
}

static json_t *
op_delete(const char *key)
{
	return json_pack("{s:{s:o}}", "request_delete_range", "key",
	    b64_json(key));
}

/* Compare: key does not exist (create_revision 0). */
static json_t *
cmp_absent(const char *key)
{
	return json_pack("{s:o,s:s,s:s,s:s}", "key", b64_json(key),
	    "target", "CREATE", "result", "EQUAL", "create_revision", "0");
}

/* Compare: key exists and is bound to lease. */
static json_t *
cmp_lease(const char *key, int64_t lease)
{
	return json_pack("{s:o,s:s,s:s,s:o}", "key", b64_json(key),
	    "target", "LEASE", "result", "EQUAL", "lease", json_s64(lease));
}

static json_t *
txn_new(json_t *compare, json_t *success, json_t *failure)
{
	json_t	*t = json_object();

	json_object_set_new(t, "compare", compare != NULL ? compare :
	    json_array());
	json_object_set_new(t, "success", success != NULL ? success :
	    json_array());
	json_object_set_new(t, "failure", failure != NULL ? failure :
	    json_array());
	return t;
}

/* The kvs of the nth response of a txn reply (a range). */
static json_t *
txn_kvs(json_t *root, size_t n)
{
	json_t	*r = json_array_get(json_object_get(root, "responses"), n);

	return json_object_get(json_object_get(r, "response_range"), "kvs");
}

/* Rendezvous weight of (tenant, member): FNV-1a, then a 64-bit mixer. */
static uint64_t
hrw_weight(const char *tenant, const char *member)
{
	struct buf	 b;
	uint64_t	 h;

	buf_init(&b);
	buf_adds(&b, tenant);
	buf_addc(&b, '\0');
	buf_adds(&b, member);
	h = hash64(b.data, b.len);
	buf_clear(&b);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static int
ct_cmp(const void *a, const void *b)
{
	return strcmp((*(struct ctenant *const *)a)->name,
	    (*(struct ctenant *const *)b)->name);
}

static struct ctenant *
ct_find(struct cluster *c, const char *name)
{
	struct ctenant	 key, *kp = &key, **p;

	if (c->ncts == 0)
		return NULL;
	key.name = (char *)name;
	p = bsearch(&kp, c->cts, c->ncts, sizeof(*c->cts), ct_cmp);
	return p != NULL ? *p : NULL;
}

static void
ct_free(struct ctenant *ct)
{
	free(ct->name);
	free(ct->owner);
	free(ct);
}

static void
ct_set_owner(struct ctenant *ct, const char *owner, int64_t lease)
{
	free(ct->owner);
	ct->owner = owner != NULL ? xstrdup(owner) : NULL;
	ct->owner_lease = owner != NULL ? lease : 0;
}

static void
members_clear(struct cluster *c)
{
	size_t	 i;

	for (i = 0; i < c->nmembers; i++) {
		free(c->members[i].name);
		free(c->members[i].info);
	}
	free(c->members);
	c->members = NULL;
	c->nmembers = 0;
}

static void
timer_in(struct event *ev, int64_t ms)
{
	struct timeval	 tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

/* ---- requests ---- */

/* Record a failure: log the first of a series, move to the next endpoint. */
static void
cluster_failed(struct cluster *c, const char *what, const char *error)
{
	const char	*ep = c->endpoints[c->cur];

	c->failures++;
	snprintf(c->last_error, sizeof(c->last_error), "%s: %s: %s", ep, what,
	    error);
	if (++c->fails == 1 || (!c->down && c->fails == 3)) {
		c->down = c->fails >= 3;
		log_warnx("cluster: etcd %s: %s failed: %s%s", ep, what,
		    error, c->nendpoints > 1 ? "; trying the next endpoint" :
		    "");
	} else
		log_debug("cluster: etcd %s: %s failed: %s", ep, what, error);
	c->cur = (c->cur + 1) % c->nendpoints;
}

static void
cluster_succeeded(struct cluster *c)
{
	if (c->down)
		log_info("cluster: etcd reachable again at %s",
		    c->endpoints[c->cur]);
	c->down = false;
	c->fails = 0;
	c->last_ok = ts_now();
}

/* Parse a gateway reply; on failure fill error (not logged). */
static void
creply_parse(const struct http_result *res, struct creply *cr)
{
	json_error_t	 je;
	json_t		*e;
	const char	*m;

	memset(cr, 0, sizeof(*cr));
	if (res->failed) {
		snprintf(cr->msg, sizeof(cr->msg), "%s", res->error != NULL ?
		    res->error : "transfer failed");
		cr->error = cr->msg;
		return;
	}
	if (res->body != NULL && res->body->len > 0)
		cr->root = json_loadb(res->body->data, res->body->len, 0, &je);
	if (res->status == 200 && json_is_object(cr->root)) {
		/* A streaming RPC wraps its message in "result". */
		if ((e = json_object_get(cr->root, "error")) == NULL)
			return;
	}
	e = json_object_get(cr->root, "error");
	if (json_is_object(e))
		m = json_string_value(json_object_get(e, "message"));
	else if ((m = json_string_value(json_object_get(cr->root,
	    "message"))) == NULL)
		m = json_string_value(e);
	if (m != NULL && strstr(m, "lease not found") != NULL)
		cr->lease_gone = true;
	snprintf(cr->msg, sizeof(cr->msg), "HTTP %d%s%s", res->status,
	    m != NULL ? ": " : "", m != NULL ? m : "");
	cr->error = cr->msg;
	json_decref(cr->root);
	cr->root = NULL;
}

/* POST body (stolen) to path on the current endpoint. */
static struct http_req *
cluster_post(struct cluster *c, const char *path, json_t *body,
    int64_t timeout_ms, http_done_cb cb)
{
	struct http_opts o;
	struct http_req	*req;
	char		*url, *text;

	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL)
		fatalx("cluster: json_dumps failed");
	xasprintf(&url, "%s%s", c->endpoints[c->cur], path);
	memset(&o, 0, sizeof(o));
	o.method = "POST";
	o.url = url;
	o.body = text;
	o.body_len = strlen(text);
	o.user_agent = c->user_agent;
	o.ca_file = c->ca_file;
	o.cert_file = c->cert_file;
	o.key_file = c->key_file;
	o.timeout_ms = timeout_ms;
	o.max_body = MAX_REPLY;
	o.done_cb = cb;
	o.arg = c;
	c->requests++;
	req = http_request(c->http, &o);
	free(url);
	free(text);
	return req;
}

/* ---- ownership ---- */

/* Stop every tenant: the lease can no longer be trusted. */
static void
cluster_lose_all(struct cluster *c, const char *why)
{
	size_t		 i, n = 0;
	struct ctenant	*ct;

	c->lease_ok = false;
	c->read_done = false;	/* look at the members again first */
	evtimer_del(c->deadline);
	for (i = 0; i < c->ncts; i++) {
		ct = c->cts[i];
		if (ct->state == CT_OWNED) {
			if (ct->t != NULL) {
				ct->delivered = tenant_delivered_cursor(ct->t);
				tenant_own(ct->t, false, TICKS_NONE);
			}
			n++;
		}
		if (ct->state != CT_NONE)
			ct->state = CT_NONE;
	}
	c->losses++;
	log_warnx("cluster: %s; stopped polling %zu tenant%s until etcd "
	    "confirms this member again", why, n, n == 1 ? "" : "s");
}

static void
cluster_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cluster	*c = arg;
	char		 why[128];

	snprintf(why, sizeof(why), "lease not renewed for %lld ms",
	    (long long)(mono_ms() - c->lease_sent));
	cluster_lose_all(c, why);
}

/* The lease was confirmed by a keepalive sent at sent (mono ms). */
static void
cluster_lease_confirmed(struct cluster *c, int64_t sent)
{
	int64_t	 margin = c->ttl_ms / 5;

	if (margin < 100)
		margin = 100;
	if (!c->lease_ok)
		log_info("cluster: member %s holds lease %" PRIx64, c->name,
		    (uint64_t)c->lease);
	c->lease_ok = true;
	c->lease_sent = sent;
	timer_in(c->deadline, sent + c->ttl_ms - margin - mono_ms());
	cluster_kick(c);
}

/* etcd says the lease is gone: stop, forget it, and ask for another. */
static void
cluster_lease_gone(struct cluster *c)
{
	if (c->lease_ok)
		cluster_lose_all(c, "the lease expired in etcd");
	c->lease_ok = false;
	c->lease = 0;
	c->registered = false;
	c->read_done = false;
	evtimer_del(c->deadline);
	if (c->lreq == NULL)
		timer_in(c->ltimer, 0);
}

static void
cluster_lease_done_cb(const struct http_result *res, void *arg)
{
	struct cluster	*c = arg;
	struct creply	 cr;
	json_t		*m;
	int64_t		 ttl, id, sent = c->lreq_sent;
	int64_t		 every = c->ttl_ms / 3;

	c->lreq = NULL;
	creply_parse(res, &cr);
	if (cr.root == NULL) {
		cluster_failed(c, c->lease == 0 ? "lease grant" : "keepalive",
		    cr.error);
		if (cr.lease_gone)
			cluster_lease_gone(c);
		else
			timer_in(c->ltimer, RETRY_MS);
		return;
	}
	cluster_succeeded(c);
	m = json_object_get(cr.root, "result");
	if (m == NULL)
		m = cr.root;	/* lease grant is not a stream */
	id = json_i64(json_object_get(m, "ID"));
	ttl = json_i64(json_object_get(m, "TTL"));
	json_decref(cr.root);
	if (c->lease == 0 && id != 0 && ttl > 0) {
		c->lease = id;
		c->lease_granted_ttl = ttl;
		c->registered = false;
		c->read_done = false;
		cluster_lease_confirmed(c, sent);
	} else if (c->lease != 0 && ttl > 0)
		cluster_lease_confirmed(c, sent);
	else if (c->lease != 0) {
		cluster_lease_gone(c);
		return;
	} else
		cluster_failed(c, "lease grant", "reply without ID or TTL");
	timer_in(c->ltimer, every);
}

/* Grant a lease, or renew the one we have. */
static void
cluster_keepalive(struct cluster *c)
{
	json_t	*body;
	int64_t	 every = c->ttl_ms / 3, secs;

	if (c->lreq != NULL)
		return;
	c->lreq_sent = mono_ms();
	if (c->lease == 0) {
		secs = (c->ttl_ms + 999) / 1000;
		body = json_pack("{s:I}", "TTL", (json_int_t)secs);
		c->lreq = cluster_post(c, "/v3/lease/grant", body, every,
		    cluster_lease_done_cb);
	} else {
		body = json_pack("{s:o}", "ID", json_s64(c->lease));
		c->lreq = cluster_post(c, "/v3/lease/keepalive", body, every,
		    cluster_lease_done_cb);
	}
}

static void
cluster_ltimer_cb(evutil_socket_t fd, short what, void *arg)
{
	cluster_keepalive(arg);
}

/* Which tenants rendezvous hashing gives this member. */
static void
cluster_assign(struct cluster *c)
{
	struct ctenant	*ct;
	const char	*best;
	uint64_t	 w, bw;
	size_t		 i, j;

	for (i = 0; i < c->ncts; i++) {
		ct = c->cts[i];
		ct->want = false;
		if (ct->t == NULL || !c->registered)
			continue;
		best = NULL;
		bw = 0;
		for (j = 0; j < c->nmembers; j++) {
			w = hrw_weight(ct->name, c->members[j].name);
			if (best == NULL || w > bw || (w == bw &&
			    strcmp(c->members[j].name, best) < 0)) {
				best = c->members[j].name;
				bw = w;
			}
		}
		ct->want = best != NULL && strcmp(best, c->name) == 0;
	}
}

/* Start polling a tenant whose owner key we hold. */
static void
cluster_take(struct cluster *c, struct ctenant *ct, int64_t cursor)
{
	ct->state = CT_OWNED;
	ct->written = cursor;
	ct_set_owner(ct, c->name, c->lease);
	c->takeovers++;
	log_debug("cluster: tenant %s acquired (shared cursor %s)", ct->name,
	    cursor == TICKS_NONE ? "none" : "set");
	tenant_own(ct->t, true, cursor);
}

/* After a read: stop what is no longer ours (the key goes next). */
static void
cluster_rebalance(struct cluster *c)
{
	struct ctenant	*ct;
	size_t		 i;

	for (i = 0; i < c->ncts; i++) {
		ct = c->cts[i];
		ct->tried = false;
		if (ct->state != CT_OWNED)
			continue;
		if (ct->owner_lease != c->lease) {
			/* Our key vanished: never keep polling without it. */
			log_warnx("cluster: tenant %s: owner key lost; "
			    "stopping", ct->name);
			ct->delivered = tenant_delivered_cursor(ct->t);
			tenant_own(ct->t, false, TICKS_NONE);
			ct->state = CT_NONE;
			continue;
		}
		if (ct->want || c->relay->stopping)
			continue;
		ct->delivered = tenant_delivered_cursor(ct->t);
		tenant_own(ct->t, false, TICKS_NONE);
		ct->state = CT_RELEASING;
		c->handoffs++;
	}
}

static void
cluster_read_done(struct cluster *c, json_t *root)
{
	json_t		*kvs, *kv;
	size_t		 i, plen, n;
	char		*k, *v;
	struct ctenant	*ct;

	members_clear(c);
	kvs = txn_kvs(root, 0);
	plen = strlen(c->member_key) - strlen(c->name);
	c->members = xcalloc(json_array_size(kvs) + 1, sizeof(*c->members));
	json_array_foreach(kvs, i, kv) {
		k = b64_decode(json_object_get(kv, "key"));
		v = b64_decode(json_object_get(kv, "value"));
		if (k == NULL || strlen(k) <= plen) {
			free(k);
			free(v);
			continue;
		}
		c->members[c->nmembers].name = xstrdup(k + plen);
		c->members[c->nmembers++].info = v != NULL ? v : xstrdup("");
		free(k);
	}
	for (i = 0; i < c->ncts; i++)
		ct_set_owner(c->cts[i], NULL, 0);
	kvs = txn_kvs(root, 1);
	k = ckey(c, "owners", NULL);
	plen = strlen(k);
	free(k);
	json_array_foreach(kvs, n, kv) {
		k = b64_decode(json_object_get(kv, "key"));
		v = b64_decode(json_object_get(kv, "value"));
		if (k != NULL && strlen(k) > plen &&
		    (ct = ct_find(c, k + plen)) != NULL)
			ct_set_owner(ct, v != NULL ? v : "?",
			    json_i64(json_object_get(kv, "lease")));
		free(k);
		free(v);
	}
	c->revision = json_i64(json_object_get(json_object_get(root,
	    "header"), "revision"));
	c->read_done = true;
	cluster_assign(c);
	cluster_rebalance(c);
}

static void
cluster_acquire_done(struct cluster *c, struct ctenant *ct, json_t *root)
{
	json_t	*kv, *cur;
	char	*v = NULL, *owner;
	int64_t	 cursor = TICKS_NONE, lease = 0;
	bool	 ok = json_is_true(json_object_get(root, "succeeded"));

	cur = json_array_get(txn_kvs(root, 1), 0);
	if (cur != NULL && (v = b64_decode(json_object_get(cur, "value"))) !=
	    NULL && *v != '\0')
		cursor = strtoll(v, NULL, 10);
	free(v);
	if (!ok) {
		kv = json_array_get(txn_kvs(root, 0), 0);
		owner = kv != NULL ? b64_decode(json_object_get(kv, "value")) :
		    NULL;
		lease = json_i64(json_object_get(kv, "lease"));
		ct_set_owner(ct, owner, lease);
		free(owner);
		/* Still ours from before a lost contact: adopt it. */
		ok = lease != 0 && lease == c->lease;
	}
	if (ok && ct->t != NULL && c->lease_ok && ct->want &&
	    !c->relay->stopping && ct->state == CT_NONE)
		cluster_take(c, ct, cursor);
	else if (ok)
		ct_set_owner(ct, c->name, c->lease);
}

static void
cluster_cursors_done(struct cluster *c, json_t *root)
{
	size_t	 i;

	if (!json_is_true(json_object_get(root, "succeeded"))) {
		log_warnx("cluster: member key %s is no longer ours; "
		    "registering again", c->member_key);
		c->registered = false;
		return;
	}
	for (i = 0; i < c->nkbatch; i++)
		c->kbatch[i]->written = c->kvals[i];
}

static void
cluster_register_done(struct cluster *c, json_t *root)
{
	json_t	*kv;
	int64_t	 lease;

	if (json_is_true(json_object_get(root, "succeeded"))) {
		c->registered = true;
		c->name_busy = false;
		log_info("cluster: joined as member %s", c->name);
		/*
		 * Take nothing before the next read, one interval from now:
		 * collectors started together then see each other first
		 * instead of grabbing everything and handing it back.
		 */
		c->read_done = false;
		c->next_read = mono_ms() + c->ttl_ms / 4;
		return;
	}
	kv = json_array_get(txn_kvs(root, 0), 0);
	lease = json_i64(json_object_get(kv, "lease"));
	if (lease == c->lease) {
		c->registered = true;
		c->name_busy = false;
		return;
	}
	if (!c->name_busy)
		log_warnx("cluster: member name %s is held by another lease "
		    "(a previous run that is not expired yet, or another "
		    "collector with the same member_name); waiting", c->name);
	c->name_busy = true;
	c->kv_retry = mono_ms() + c->ttl_ms / 4;
}

static void
cluster_kv_done_cb(const struct http_result *res, void *arg)
{
	struct cluster	*c = arg;
	struct creply	 cr;
	enum cop	 op = c->kop;
	static const char *names[] = { "-", "register", "read", "acquire",
	    "release", "cursor update" };

	c->kreq = NULL;
	c->kop = OP_NONE;
	creply_parse(res, &cr);
	if (cr.root == NULL) {
		cluster_failed(c, names[op], cr.error);
		c->kv_retry = mono_ms() + (RETRY_MS * c->fails < c->ttl_ms / 4 ?
		    RETRY_MS * c->fails : c->ttl_ms / 4);
		if (op == OP_ACQUIRE && c->kct != NULL)
			c->kct->tried = true;
		if (cr.lease_gone)
			timer_in(c->ltimer, 0);	/* keepalive decides */
	} else {
		cluster_succeeded(c);
		switch (op) {
		case OP_REGISTER:
			cluster_register_done(c, cr.root);
			break;
		case OP_READ:
			cluster_read_done(c, cr.root);
			break;
		case OP_ACQUIRE:
			if (c->kct != NULL)
				cluster_acquire_done(c, c->kct, cr.root);
			break;
		case OP_RELEASE:
			if (c->kct != NULL) {
				c->kct->state = CT_NONE;
				ct_set_owner(c->kct, NULL, 0);
			}
			break;
		case OP_CURSORS:
			cluster_cursors_done(c, cr.root);
			break;
		case OP_NONE:
			break;
		}
		json_decref(cr.root);
	}
	c->kct = NULL;
	free(c->kbatch);
	free(c->kvals);
	c->kbatch = NULL;
	c->kvals = NULL;
	c->nkbatch = 0;
	cluster_kick(c);
}

/* ---- the key-value channel ---- */

static void
cluster_send_register(struct cluster *c)
{
	json_t	*body;

	body = txn_new(json_pack("[o]", cmp_absent(c->member_key)),
	    json_pack("[o]", op_put(c->member_key, c->member_value, c->lease)),
	    json_pack("[o]", op_range(c->member_key, false)));
	c->kop = OP_REGISTER;
	c->kreq = cluster_post(c, "/v3/kv/txn", body, c->ttl_ms,
	    cluster_kv_done_cb);
}

static void
cluster_send_read(struct cluster *c)
{
	json_t	*body;
	char	*m, *o;
	int64_t	 now = mono_ms(), every = c->ttl_ms / 4;
	size_t	 i;

	m = ckey(c, "members", NULL);
	o = ckey(c, "owners", NULL);
	body = txn_new(NULL, json_pack("[o,o]", op_range(m, true),
	    op_range(o, true)), NULL);
	free(m);
	free(o);
	/* Waiting for a handoff: look again soon. */
	for (i = 0; i < c->ncts; i++)
		if (c->cts[i]->want && c->cts[i]->state == CT_NONE &&
		    every > HANDOFF_READ_MS)
			every = HANDOFF_READ_MS;
	c->next_read = now + every;
	c->kop = OP_READ;
	c->kreq = cluster_post(c, "/v3/kv/txn", body, c->ttl_ms,
	    cluster_kv_done_cb);
}

static void
cluster_send_acquire(struct cluster *c, struct ctenant *ct)
{
	json_t	*body;
	char	*ok, *ck;

	ok = ckey(c, "owners", ct->name);
	ck = ckey(c, "cursors", ct->name);
	body = txn_new(json_pack("[o]", cmp_absent(ok)),
	    json_pack("[o,o]", op_put(ok, c->name, c->lease),
	    op_range(ck, false)),
	    json_pack("[o,o]", op_range(ok, false), op_range(ck, false)));
	free(ok);
	free(ck);
	ct->tried = true;
	c->kct = ct;
	c->kop = OP_ACQUIRE;
	c->kreq = cluster_post(c, "/v3/kv/txn", body, c->ttl_ms,
	    cluster_kv_done_cb);
}

/* Store the cursor and delete the owner key, if it is still ours. */
static void
cluster_send_release(struct cluster *c, struct ctenant *ct)
{
	json_t	*body, *ops;
	char	*ok, *ck, v[32];

	ok = ckey(c, "owners", ct->name);
	ck = ckey(c, "cursors", ct->name);
	ops = json_array();
	if (ct->t != NULL)
		ct->delivered = tenant_delivered_cursor(ct->t);
	if (ct->delivered != TICKS_NONE) {
		snprintf(v, sizeof(v), "%" PRId64, ct->delivered);
		json_array_append_new(ops, op_put(ck, v, 0));
	}
	json_array_append_new(ops, op_delete(ok));
	body = txn_new(json_pack("[o]", cmp_lease(ok, c->lease)), ops, NULL);
	free(ok);
	free(ck);
	c->kct = ct;
	c->kop = OP_RELEASE;
	c->kreq = cluster_post(c, "/v3/kv/txn", body, c->ttl_ms,
	    cluster_kv_done_cb);
}

/*
 * Store changed delivered cursors of the tenants polled here, guarded
 * by our member key: if the lease is gone, nothing is written.  Returns
 * false when nothing changed.
 */
static bool
cluster_send_cursors(struct cluster *c)
{
	json_t		*ops;
	struct ctenant	*ct;
	char		*ck, v[32];
	size_t		 i;
	int64_t		 d;

	c->kbatch = xcalloc(BATCH_OPS, sizeof(*c->kbatch));
	c->kvals = xcalloc(BATCH_OPS, sizeof(*c->kvals));
	ops = json_array();
	for (i = 0; i < c->ncts && c->nkbatch < BATCH_OPS; i++) {
		ct = c->cts[i];
		if (ct->state != CT_OWNED || ct->t == NULL)
			continue;
		d = ct->delivered = tenant_delivered_cursor(ct->t);
		if (d == TICKS_NONE || d == ct->written)
			continue;
		ck = ckey(c, "cursors", ct->name);
		snprintf(v, sizeof(v), "%" PRId64, d);
		json_array_append_new(ops, op_put(ck, v, 0));
		free(ck);
		c->kbatch[c->nkbatch] = ct;
		c->kvals[c->nkbatch++] = d;
	}
	if (c->nkbatch == 0) {
		json_decref(ops);
		free(c->kbatch);
		free(c->kvals);
		c->kbatch = NULL;
		c->kvals = NULL;
		return false;
	}
	c->kop = OP_CURSORS;
	c->kreq = cluster_post(c, "/v3/kv/txn", txn_new(json_pack("[o]",
	    cmp_lease(c->member_key, c->lease)), ops, NULL), c->ttl_ms,
	    cluster_kv_done_cb);
	return true;
}

static bool
ct_release_due(struct cluster *c, struct ctenant *ct)
{
	if (ct->state == CT_RELEASING)
		return true;
	return ct->state == CT_NONE && c->lease != 0 &&
	    ct->owner_lease == c->lease && !ct->want && !c->relay->stopping;
}

static bool
ct_acquire_due(struct cluster *c, struct ctenant *ct)
{
	return ct->t != NULL && ct->want && ct->state == CT_NONE &&
	    !ct->tried && (ct->owner == NULL || ct->owner_lease == c->lease);
}

/* Send the next key-value request this member needs, or wait. */
static void
cluster_next(struct cluster *c)
{
	int64_t	 now = mono_ms(), at;
	size_t	 i;

	if (c->kreq != NULL)
		return;
	if (now < c->kv_retry) {
		timer_in(c->ktimer, c->kv_retry - now);
		return;
	}
	if (c->lease_ok && !c->registered) {
		cluster_send_register(c);
		return;
	}
	if (c->lease_ok) {
		for (i = 0; i < c->ncts; i++)
			if (ct_release_due(c, c->cts[i])) {
				cluster_send_release(c, c->cts[i]);
				return;
			}
	}
	if (now >= c->next_read) {
		cluster_send_read(c);
		return;
	}
	if (c->lease_ok && c->registered && c->read_done &&
	    !c->relay->stopping) {
		for (i = 0; i < c->ncts; i++)
			if (ct_acquire_due(c, c->cts[i])) {
				cluster_send_acquire(c, c->cts[i]);
				return;
			}
	}
	if (c->lease_ok && c->registered && now >= c->next_cursors) {
		c->next_cursors = now + CURSOR_SYNC_MS;
		if (cluster_send_cursors(c))
			return;
	}
	at = c->next_read;
	if (c->lease_ok && c->registered && c->next_cursors < at)
		at = c->next_cursors;
	timer_in(c->ktimer, at - now);
}

static void
cluster_ktimer_cb(evutil_socket_t fd, short what, void *arg)
{
	cluster_next(arg);
}

/* Look at the key-value channel again from the loop. */
static void
cluster_kick(struct cluster *c)
{
	if (c->kreq == NULL)
		timer_in(c->ktimer, 0);
}

/* ---- tenants ---- */

/* Match our view to relay->tenants (start, or after a reload). */
static void
cluster_sync_tenants(struct cluster *c)
{
	struct relay	*r = c->relay;
	struct ctenant	**n, *ct;
	size_t		 i, nn = 0;

	for (i = 0; i < c->ncts; i++)
		c->cts[i]->t = NULL;
	n = xcalloc(r->ntenants + c->ncts + 1, sizeof(*n));
	for (i = 0; i < r->ntenants; i++) {
		if ((ct = ct_find(c, r->tenants[i]->name)) == NULL) {
			ct = xcalloc(1, sizeof(*ct));
			ct->name = xstrdup(r->tenants[i]->name);
			ct->written = TICKS_NONE;
			ct->delivered = TICKS_NONE;
		}
		ct->t = r->tenants[i];
		n[nn++] = ct;
	}
	/* Removed tenants: keep until their owner key is released. */
	for (i = 0; i < c->ncts; i++) {
		ct = c->cts[i];
		if (ct->t != NULL)
			continue;
		ct->want = false;
		if (ct->state == CT_OWNED) {
			ct->state = CT_RELEASING;	/* freed, so stopped */
			c->handoffs++;
		}
		if (ct->state == CT_NONE && (c->lease == 0 ||
		    ct->owner_lease != c->lease))
			ct_free(ct);
		else
			n[nn++] = ct;
	}
	free(c->cts);
	c->cts = n;
	c->ncts = nn;
	qsort(c->cts, c->ncts, sizeof(*c->cts), ct_cmp);
	if (c->kct != NULL) {
		for (i = 0; i < c->ncts; i++)
			if (c->cts[i] == c->kct)
				break;
		if (i == c->ncts)
			c->kct = NULL;
	}
	/* A cursor batch in flight names only owned entries: none freed. */
}

static void
cluster_conf_copy(struct cluster *c, const struct conf_cluster *cc)
{
	size_t	 i;

	for (i = 0; i < c->nendpoints; i++)
		free(c->endpoints[i]);
	free(c->endpoints);
	c->endpoints = xcalloc(cc->netcd_endpoints, sizeof(*c->endpoints));
	for (i = 0; i < cc->netcd_endpoints; i++) {
		c->endpoints[i] = xstrdup(cc->etcd_endpoints[i]);
		/* "http://h:p/" and "http://h:p" alike */
		if (c->endpoints[i][strlen(c->endpoints[i]) - 1] == '/')
			c->endpoints[i][strlen(c->endpoints[i]) - 1] = '\0';
	}
	c->nendpoints = cc->netcd_endpoints;
	c->cur = 0;
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	c->ca_file = cc->ca_file != NULL ? xstrdup(cc->ca_file) : NULL;
	c->cert_file = cc->cert_file != NULL ? xstrdup(cc->cert_file) : NULL;
	c->key_file = cc->key_file != NULL ? xstrdup(cc->key_file) : NULL;
}

int
cluster_start(struct relay *r, char *err, size_t errlen)
{
	const struct conf_cluster *cc = &r->conf->cluster;
	struct cluster	*c;
	json_t		*info;
	char		 ts[40];

	if (!cc->enabled)
		return 0;
	if (cc->netcd_endpoints == 0 || cc->member_name == NULL) {
		snprintf(err, errlen, "[cluster] needs etcd_endpoints and a "
		    "member_name");
		return -1;
	}
	c = xcalloc(1, sizeof(*c));
	c->relay = r;
	c->http = http_new(r->base, 4);
	cluster_conf_copy(c, cc);
	c->name = xstrdup(cc->member_name);
	c->prefix = xstrdup(cc->prefix);
	c->ttl_ms = cc->lease_ttl_ms;
	c->member_key = ckey(c, "members", c->name);
	ts_format(ts_now(), ts, sizeof(ts));
	info = json_pack("{s:s,s:i,s:s,s:s}", "host", r->hostname, "pid",
	    r->pid, "started", ts, "version", AR_VERSION);
	c->member_value = json_dumps(info, JSON_COMPACT);
	json_decref(info);
	snprintf(c->user_agent, sizeof(c->user_agent), "alertrelayd/%s "
	    "(cluster)", AR_VERSION);
	c->ltimer = evtimer_new(r->base, cluster_ltimer_cb, c);
	c->ktimer = evtimer_new(r->base, cluster_ktimer_cb, c);
	c->deadline = evtimer_new(r->base, cluster_deadline_cb, c);
	c->next_cursors = mono_ms() + CURSOR_SYNC_MS;
	r->cluster = c;
	cluster_sync_tenants(c);
	log_info("cluster: member %s, %zu etcd endpoint%s, lease %lld ms, "
	    "prefix %s", c->name, c->nendpoints, c->nendpoints == 1 ? "" :
	    "s", (long long)c->ttl_ms, c->prefix);
	cluster_keepalive(c);
	return 0;
}

void
cluster_reconcile(struct relay *r)
{
	struct cluster	*c = r->cluster;
	const struct conf_cluster *cc = &r->conf->cluster;

	if (c == NULL)
		return;
	if (!cc->enabled || strcmp(cc->member_name, c->name) != 0 ||
	    strcmp(cc->prefix, c->prefix) != 0 ||
	    cc->lease_ttl_ms != c->ttl_ms)
		log_warnx("cluster: member_name, prefix, lease_ttl and "
		    "removing [cluster] take effect at the next restart");
	if (cc->enabled)
		cluster_conf_copy(c, cc);
	cluster_sync_tenants(c);
	c->next_read = mono_ms();
	cluster_kick(c);
}

/* ---- shutdown ---- */

struct cfinal {
	struct cluster	*c;
	struct http	*http;
	struct event_base *base;
	int		 step;
};

static void
cluster_final_cb(const struct http_result *res, void *arg)
{
	struct cfinal	*f = arg;
	struct creply	 cr;
	struct http_opts o;
	char		*url, *body;

	creply_parse(res, &cr);
	if (cr.root == NULL)
		log_warnx("cluster: storing cursors at exit: %s; other "
		    "members start from the last stored ones", cr.error);
	json_decref(cr.root);
	if (f->step++ > 0) {
		event_base_loopexit(f->base, NULL);
		return;
	}
	/* Then revoke: every key of ours goes at once, others take over. */
	xasprintf(&url, "%s/v3/lease/revoke", f->c->endpoints[f->c->cur]);
	xasprintf(&body, "{\"ID\":\"%" PRId64 "\"}", f->c->lease);
	memset(&o, 0, sizeof(o));
	o.method = "POST";
	o.url = url;
	o.body = body;
	o.body_len = strlen(body);
	o.user_agent = f->c->user_agent;
	o.ca_file = f->c->ca_file;
	o.cert_file = f->c->cert_file;
	o.key_file = f->c->key_file;
	o.timeout_ms = FINAL_MS / 2;
	o.done_cb = cluster_final_cb;
	o.arg = f;
	http_request(f->http, &o);
	free(url);
	free(body);
}

/*
 * At exit (outputs drained or the stop deadline passed): store every
 * delivered cursor, then revoke the lease.  Runs on a private event base
 * so nothing else of the relay runs meanwhile; bounded by FINAL_MS.
 */
static void
cluster_final(struct cluster *c)
{
	struct cfinal	 f;
	struct http_opts o;
	struct timeval	 tv = { FINAL_MS / 1000, (FINAL_MS % 1000) * 1000 };
	json_t		*ops, *body;
	struct ctenant	*ct;
	char		*ck, *url, *text, v[32];
	size_t		 i;

	memset(&f, 0, sizeof(f));
	f.c = c;
	f.base = event_base_new();
	f.http = http_new(f.base, 2);
	ops = json_array();
	for (i = 0; i < c->ncts && json_array_size(ops) < 120; i++) {
		ct = c->cts[i];
		if (ct->state == CT_NONE)
			continue;
		if (ct->t != NULL)
			ct->delivered = tenant_delivered_cursor(ct->t);
		if (ct->delivered == TICKS_NONE ||
		    ct->delivered == ct->written)
			continue;
		ck = ckey(c, "cursors", ct->name);
		snprintf(v, sizeof(v), "%" PRId64, ct->delivered);
		json_array_append_new(ops, op_put(ck, v, 0));
		free(ck);
	}
	body = txn_new(json_pack("[o]", cmp_lease(c->member_key, c->lease)),
	    ops, NULL);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	xasprintf(&url, "%s/v3/kv/txn", c->endpoints[c->cur]);
	memset(&o, 0, sizeof(o));
	o.method = "POST";
	o.url = url;
	o.body = text;
	o.body_len = strlen(text);
	o.user_agent = c->user_agent;
	o.ca_file = c->ca_file;
	o.cert_file = c->cert_file;
	o.key_file = c->key_file;
	o.timeout_ms = FINAL_MS / 2;
	o.done_cb = cluster_final_cb;
	o.arg = &f;
	http_request(f.http, &o);
	free(url);
	free(text);
	event_base_loopexit(f.base, &tv);
	event_base_dispatch(f.base);
	http_free(f.http);
	event_base_free(f.base);
}

void
cluster_stop(struct relay *r)
{
	struct cluster	*c = r->cluster;
	size_t		 i;

	if (c == NULL)
		return;
	if (c->lreq != NULL)
		http_cancel(c->http, c->lreq);
	if (c->kreq != NULL)
		http_cancel(c->http, c->kreq);
	c->lreq = c->kreq = NULL;
	/* The relay stopped the tenants already (relay_stop). */
	if (c->lease != 0 && c->lease_ok)
		cluster_final(c);
	http_free(c->http);
	event_free(c->ltimer);
	event_free(c->ktimer);
	event_free(c->deadline);
	for (i = 0; i < c->ncts; i++)
		ct_free(c->cts[i]);
	free(c->cts);
	members_clear(c);
	for (i = 0; i < c->nendpoints; i++)
		free(c->endpoints[i]);
	free(c->endpoints);
	free(c->kbatch);
	free(c->kvals);
	free(c->name);
	free(c->prefix);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->member_key);
	free(c->member_value);
	free(c);
	r->cluster = NULL;
}

/* ---- status ---- */

static size_t
cluster_owned_by(struct cluster *c, const char *member, json_t *names,
    struct buf *text)
{
	size_t	 i, n = 0;

	for (i = 0; i < c->ncts; i++) {
		if (c->cts[i]->t == NULL)
			continue;
		if (member == NULL ? c->cts[i]->owner != NULL :
		    (c->cts[i]->owner == NULL ||
		    strcmp(c->cts[i]->owner, member) != 0))
			continue;
		if (names != NULL)
			json_array_append_new(names,
			    json_string(c->cts[i]->name));
		if (text != NULL)
			buf_addf(text, "%s%s", n == 0 ? " " : ", ",
			    c->cts[i]->name);
		n++;
	}
	return n;
}

static json_t *
cluster_status_json(struct cluster *c)
{
	json_t	*o, *ms, *m, *e, *names;
	size_t	 i;
	char	 ts[40];

	ms = json_array();
	for (i = 0; i < c->nmembers; i++) {
		names = json_array();
		cluster_owned_by(c, c->members[i].name, names, NULL);
		m = json_pack("{s:s,s:b,s:s,s:o}", "name", c->members[i].name,
		    "self", strcmp(c->members[i].name, c->name) == 0, "info",
		    c->members[i].info, "tenants", names);
		json_array_append_new(ms, m);
	}
	names = json_array();
	cluster_owned_by(c, NULL, names, NULL);
	e = json_object();
	json_object_set_new(e, "endpoint", json_string(c->endpoints[c->cur]));
	json_object_set_new(e, "healthy", json_boolean(c->fails == 0 &&
	    c->last_ok != 0));
	ts_format(c->last_ok, ts, sizeof(ts));
	json_object_set_new(e, "last_ok", c->last_ok != 0 ? json_string(ts) :
	    json_null());
	json_object_set_new(e, "last_error", c->last_error[0] != '\0' ?
	    json_string(c->last_error) : json_null());
	json_object_set_new(e, "requests", json_integer((json_int_t)
	    c->requests));
	json_object_set_new(e, "failures", json_integer((json_int_t)
	    c->failures));
	json_object_set_new(e, "revision", json_integer(c->revision));
	o = json_object();
	json_object_set_new(o, "member", json_string(c->name));
	json_object_set_new(o, "lease", c->lease != 0 ? json_s64(c->lease) :
	    json_null());
	json_object_set_new(o, "lease_ok", json_boolean(c->lease_ok));
	json_object_set_new(o, "lease_renewed_ms_ago", c->lease_ok ?
	    json_integer(mono_ms() - c->lease_sent) : json_null());
	json_object_set_new(o, "registered", json_boolean(c->registered));
	json_object_set_new(o, "etcd", e);
	json_object_set_new(o, "members", ms);
	json_object_set_new(o, "unowned", names);
	json_object_set_new(o, "takeovers", json_integer((json_int_t)
	    c->takeovers));
	json_object_set_new(o, "handoffs", json_integer((json_int_t)
	    c->handoffs));
	json_object_set_new(o, "losses", json_integer((json_int_t)c->losses));
	return o;
}

/*
 * Members, the tenants each owns (of those configured here), and etcd's
 * health.  json: one JSON object; otherwise lines of text.
 */
void
cluster_status(struct relay *r, struct buf *out, bool json)
{
	struct cluster	*c = r->cluster;
	json_t		*o;
	char		*s;
	struct buf	 names;
	size_t		 i, n;

	if (c == NULL) {
		buf_adds(out, json ? "null" : "cluster: not configured\n");
		return;
	}
	if (json) {
		o = cluster_status_json(c);
		if ((s = json_dumps(o, JSON_COMPACT)) == NULL)
			fatalx("cluster: json_dumps failed");
		buf_adds(out, s);
		free(s);
		json_decref(o);
		return;
	}
	buf_addf(out, "cluster: member %s, lease %s", c->name,
	    c->lease_ok ? "held" : c->lease != 0 ? "NOT CONFIRMED" : "none");
	if (c->lease_ok)
		buf_addf(out, " (renewed %lld ms ago)",
		    (long long)(mono_ms() - c->lease_sent));
	buf_addf(out, ", etcd %s %s\n", c->endpoints[c->cur],
	    c->fails == 0 && c->last_ok != 0 ? "ok" : "FAILING");
	if (c->last_error[0] != '\0')
		buf_addf(out, "  last etcd error: %s\n", c->last_error);
	buf_init(&names);
	for (i = 0; i < c->nmembers; i++) {
		buf_reset(&names);
		n = cluster_owned_by(c, c->members[i].name, NULL, &names);
		buf_addf(out, "  member %s%s: %zu tenant%s%s%s\n",
		    c->members[i].name, strcmp(c->members[i].name, c->name) ==
		    0 ? " (this one)" : "", n, n == 1 ? "" : "s",
		    n > 0 ? ":" : "", n > 0 ? names.data : "");
	}
	buf_reset(&names);
	n = cluster_owned_by(c, NULL, NULL, &names);
	if (n > 0)
		buf_addf(out, "  not polled by anyone: %zu tenant%s:%s\n", n,
		    n == 1 ? "" : "s", names.data);
	buf_clear(&names);
}
