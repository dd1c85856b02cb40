/* cluster: the share of the tenants this member polls, agreed in etcd. */

/*
 * etcd is spoken to through its v3 JSON gateway (etcd.c: keys and values
 * base64) with libcurl and jansson, the libraries the daemon already
 * has.  Debian ships no maintained C client for the v3 API (etcd's own
 * clients are Go; the C ones are v2-only or unmaintained gRPC wrappers
 * that would pull in protobuf and gRPC for a handful of calls), and the
 * gateway is part of every etcd 3.x server.
 *
 * Keys, under [cluster] prefix:
 *	members/NAME	one per live collector, bound to its lease
 *	owners/TENANT	NAME of the collector polling TENANT, bound to its
 *			lease: created only if absent (transaction)
 *	cursors/TENANT	the tenant's delivered cursor, in ticks (decimal)
 *	incidents/TENANT  with incidents = yes: the incidents' cursor and
 *			the dedupe entries a new owner re-reads, "ICURSOR
 *			HASH:TICKS ..." (hex hash64 of the id, decimal)
 *
 * Invariants:
 * - A tenant is polled only while this member holds owners/TENANT under a
 *   lease that etcd confirmed within lease_ttl; the deadline timer stops
 *   every tenant before etcd can expire the lease and let another member
 *   take the key (the deadline counts from when the last successful
 *   keepalive was *sent*, which is before etcd renewed it).
 * - On handoff the previous owner stops the tenant first and only then
 *   deletes the key (writing the cursors in the same transaction); the
 *   new owner waits until the key is gone, and adopts the incidents'
 *   cursor and dedupe entries (merged with its own) before it polls, so
 *   it neither skips nor re-sends incidents.  The incidents' checkpoint
 *   is what the tenant has spooled, not delivered: the outputs are
 *   drained before a stopping member writes it, but what a member that
 *   dies had spooled waits in its spool until it runs again.
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

#include "internal.h"

#define CURSOR_SYNC_MS	5000	/* how often changed cursors are stored */
#define HANDOFF_READ_MS	300	/* read interval while waiting for a key */
#define RETRY_MS	250	/* after a failed request, next endpoint */
#define FINAL_MS	600	/* shutdown: cursors, then revoke, at most
				   (SIGTERM exits within 1 s, etcd or not) */
#define BATCH_OPS	64	/* puts per transaction (etcd allows 128) */
#define BATCH_BYTES	(256 * 1024)	/* values per transaction (etcd
					   takes 1.5 MB requests) */

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
	uint64_t	 iwritten;	/* hash64 of incidents/ last stored */
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

/* A tenant's checkpoints in a transaction being sent. */
struct kput {
	struct ctenant	*ct;
	int64_t		 cursor;	/* TICKS_NONE: not written */
	uint64_t	 ihash;		/* 0: not written */
};

struct cluster {
	struct relay	*relay;
	/*
	 * Owned copy of [cluster]: member_name, prefix and lease_ttl as at
	 * start (they change only with a restart), endpoints and TLS files
	 * as of the last reload.  etcd borrows it.
	 */
	struct conf_cluster *conf;
	struct etcd	*etcd;
	char		*member_key;
	char		*member_value;

	/* The key-value channel: one request at a time. */
	bool		 registered;	/* members/NAME holds our lease */
	bool		 name_busy;	/* announced: another lease has it */
	struct etcd_req	*kreq;
	enum cop	 kop;
	struct ctenant	*kct;
	struct kput	*kbatch;	/* the checkpoints being stored */
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

	uint64_t	 takeovers;	/* tenants started here */
	uint64_t	 handoffs;	/* tenants handed to others */
	uint64_t	 losses;	/* times every tenant was stopped */
};

static void	cluster_kick(struct cluster *);

/* ---- small helpers ---- */

static char *
ckey(struct cluster *c, const char *kind, const char *name)
{
	char	*k;

	xasprintf(&k, "%s%s/%s", c->conf->prefix, kind, name != NULL ? name :
	    "");
	return k;
}

/* The first key-value of the nth response of a transaction, or NULL. */
static const struct etcd_kv *
txn_kv(const struct etcd_txn_result *tr, size_t n)
{
	if (n >= tr->nranges || tr->ranges[n].nkvs == 0)
		return NULL;
	return &tr->ranges[n].kvs[0];
}

/* ---- checkpoints ---- */

/*
 * The incidents' checkpoint of t, or NULL (no incidents, none read):
 * "ICURSOR HASH:TICKS ...", the dedupe entries a new owner's first read
 * (from ICURSOR - overlap) can meet.
 */
static char *
ckpt_incidents(struct cluster *c, struct tenant *t)
{
	const struct dedupe *seen;
	int64_t		 icursor, from;
	struct buf	 b;
	size_t		 i;

	if (!tenant_incidents_get(t, &icursor, &seen) || icursor == TICKS_NONE)
		return NULL;
	from = icursor - c->relay->conf->daemon.overlap_ms * TICKS_PER_MS;
	buf_init(&b);
	buf_addf(&b, "%" PRId64, icursor);
	for (i = 0; i < seen->cap; i++)
		if (seen->tab[i].last_update != 0 &&
		    seen->tab[i].last_update >= from)
			buf_addf(&b, " %016" PRIx64 ":%" PRId64,
			    seen->tab[i].idhash, seen->tab[i].last_update);
	return b.data;	/* NUL-terminated */
}

/* Parse an incidents' checkpoint into seen; its cursor or TICKS_NONE. */
static int64_t
ckpt_incidents_parse(const char *v, struct dedupe *seen)
{
	char		*end;
	int64_t		 icursor, lu;
	uint64_t	 h;

	icursor = strtoll(v, &end, 10);
	if (end == v)
		return TICKS_NONE;
	for (v = end; *v == ' '; v = end) {
		h = strtoull(v + 1, &end, 16);
		if (*end != ':')
			return TICKS_NONE;
		lu = strtoll(end + 1, &end, 10);
		dedupe_put_hash(seen, h, lu);
	}
	return *v == '\0' ? icursor : TICKS_NONE;
}

/*
 * A tenant taken over: adopt the incidents' cursor of the last owner,
 * with its dedupe entries and this member's own (everything in either
 * was forwarded).  Without a checkpoint the local state stands.
 */
static void
ckpt_incidents_adopt(struct ctenant *ct, const char *v)
{
	const struct dedupe *local;
	struct dedupe	 seen;
	int64_t		 icursor, mine;
	size_t		 i;

	if (v == NULL || !tenant_incidents_get(ct->t, &mine, &local))
		return;
	dedupe_init(&seen);
	if ((icursor = ckpt_incidents_parse(v, &seen)) == TICKS_NONE) {
		log_warnx("cluster: tenant %s: unreadable incidents "
		    "checkpoint in etcd; using this member's", ct->name);
		dedupe_clear(&seen);
		return;
	}
	for (i = 0; i < local->cap; i++)
		if (local->tab[i].last_update != 0)
			dedupe_put_hash(&seen, local->tab[i].idhash,
			    local->tab[i].last_update);
	tenant_incidents_set(ct->t, icursor, &seen);
	dedupe_clear(&seen);
}

/*
 * Add ct's changed checkpoints (delivered cursor, incidents) to t; what
 * was added goes to k, its size is added to *bytes.  False when nothing
 * changed.
 */
static bool
ckpt_put(struct cluster *c, struct etcd_txn *t, struct ctenant *ct,
    struct kput *k, size_t *bytes)
{
	char	*key, *ik, v[32];

	k->ct = ct;
	k->cursor = TICKS_NONE;
	k->ihash = 0;
	if (ct->delivered != TICKS_NONE && ct->delivered != ct->written) {
		key = ckey(c, "cursors", ct->name);
		snprintf(v, sizeof(v), "%" PRId64, ct->delivered);
		etcd_txn_put(t, ETCD_THEN, key, v, 0);
		free(key);
		k->cursor = ct->delivered;
		*bytes += strlen(v);
	}
	if (ct->t != NULL && (ik = ckpt_incidents(c, ct->t)) != NULL) {
		k->ihash = hash64(ik, strlen(ik));
		if (k->ihash != ct->iwritten) {
			key = ckey(c, "incidents", ct->name);
			etcd_txn_put(t, ETCD_THEN, key, ik, 0);
			free(key);
			*bytes += strlen(ik);
		} else
			k->ihash = 0;
		free(ik);
	}
	return k->cursor != TICKS_NONE || k->ihash != 0;
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

static struct ctenant *
ct_new(const char *name)
{
	struct ctenant	*ct;

	ct = xcalloc(1, sizeof(*ct));
	ct->name = xstrdup(name);
	ct->written = TICKS_NONE;
	ct->delivered = TICKS_NONE;
	return ct;
}

/*
 * An owner key of ours for a tenant not configured here: an acquire that
 * etcd applied after a reload had removed the tenant (its answer ignored
 * or lost).  Track it so that it is released like any other.
 */
static struct ctenant *
ct_stray(struct cluster *c, const char *name)
{
	struct ctenant	*ct = ct_new(name);

	c->cts = xreallocarray(c->cts, c->ncts + 1, sizeof(*c->cts));
	c->cts[c->ncts++] = ct;
	qsort(c->cts, c->ncts, sizeof(*c->cts), ct_cmp);
	log_info("cluster: tenant %s is not configured here; releasing the "
	    "owner key this member holds", name);
	return ct;
}

/* Forget an entry of a removed tenant once its key is released. */
static void
ct_drop(struct cluster *c, struct ctenant *ct)
{
	size_t	 i;

	for (i = 0; i < c->ncts && c->cts[i] != ct; i++)
		;
	if (i == c->ncts)
		return;
	memmove(&c->cts[i], &c->cts[i + 1], (c->ncts - i - 1) *
	    sizeof(*c->cts));
	c->ncts--;
	ct_free(ct);
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

/* ---- ownership ---- */

/* Stop every tenant: the lease can no longer be trusted. */
static void
cluster_lose_all(struct cluster *c, const char *why)
{
	size_t		 i, n = 0;
	struct ctenant	*ct;

	c->read_done = false;	/* look at the members again first */
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

/* What etcd.c says about our lease. */
static void
cluster_lease_cb(enum etcd_lease_event ev, const char *why, void *arg)
{
	struct cluster	*c = arg;

	switch (ev) {
	case ETCD_LEASE_NEW:
		c->registered = false;
		c->read_done = false;
		break;
	case ETCD_LEASE_UP:
		log_info("cluster: member %s holds lease %" PRIx64,
		    c->conf->member_name, (uint64_t)etcd_lease(c->etcd));
		cluster_kick(c);
		break;
	case ETCD_LEASE_RENEWED:
		cluster_kick(c);
		break;
	case ETCD_LEASE_LOST:
		cluster_lose_all(c, why);
		break;
	}
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
		ct->want = best != NULL && strcmp(best, c->conf->member_name) == 0;
	}
}

/* Start polling a tenant whose owner key we hold. */
static void
cluster_take(struct cluster *c, struct ctenant *ct, int64_t cursor,
    const char *incidents)
{
	ct->state = CT_OWNED;
	ct->written = cursor;
	ct->iwritten = incidents != NULL ? hash64(incidents,
	    strlen(incidents)) : 0;
	ckpt_incidents_adopt(ct, incidents);
	ct_set_owner(ct, c->conf->member_name, etcd_lease(c->etcd));
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
		if (ct->owner_lease != etcd_lease(c->etcd)) {
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
cluster_read_done(struct cluster *c, const struct etcd_txn_result *tr)
{
	const struct etcd_range *rg;
	const struct etcd_kv *kv;
	size_t		 i, plen;
	char		*k;
	struct ctenant	*ct;

	members_clear(c);
	rg = tr->nranges > 0 ? &tr->ranges[0] : NULL;
	plen = strlen(c->member_key) - strlen(c->conf->member_name);
	c->members = xcalloc((rg != NULL ? rg->nkvs : 0) + 1,
	    sizeof(*c->members));
	for (i = 0; rg != NULL && i < rg->nkvs; i++) {
		kv = &rg->kvs[i];
		if (strlen(kv->key) <= plen)
			continue;
		c->members[c->nmembers].name = xstrdup(kv->key + plen);
		c->members[c->nmembers++].info = xstrdup(kv->value != NULL ?
		    kv->value : "");
	}
	for (i = 0; i < c->ncts; i++)
		ct_set_owner(c->cts[i], NULL, 0);
	rg = tr->nranges > 1 ? &tr->ranges[1] : NULL;
	k = ckey(c, "owners", NULL);
	plen = strlen(k);
	free(k);
	for (i = 0; rg != NULL && i < rg->nkvs; i++) {
		kv = &rg->kvs[i];
		if (strlen(kv->key) <= plen)
			continue;
		if ((ct = ct_find(c, kv->key + plen)) == NULL &&
		    kv->lease != 0 && kv->lease == etcd_lease(c->etcd))
			ct = ct_stray(c, kv->key + plen);
		if (ct != NULL)
			ct_set_owner(ct, kv->value != NULL ? kv->value : "?",
			    kv->lease);
	}
	c->revision = tr->revision;
	c->read_done = true;
	cluster_assign(c);
	cluster_rebalance(c);
}

static void
cluster_acquire_done(struct cluster *c, struct ctenant *ct,
    const struct etcd_txn_result *tr)
{
	const struct etcd_kv *kv;
	int64_t		 cursor = TICKS_NONE, lease = 0;
	bool		 ok = tr->succeeded;

	if ((kv = txn_kv(tr, 1)) != NULL && kv->value != NULL &&
	    *kv->value != '\0')
		cursor = strtoll(kv->value, NULL, 10);
	if (!ok) {
		kv = txn_kv(tr, 0);
		lease = kv != NULL ? kv->lease : 0;
		ct_set_owner(ct, kv != NULL ? kv->value : NULL, lease);
		/* Still ours from before a lost contact: adopt it. */
		ok = lease != 0 && lease == etcd_lease(c->etcd);
	}
	if (ok && ct->t != NULL && etcd_lease_ok(c->etcd) && ct->want &&
	    !c->relay->stopping && ct->state == CT_NONE) {
		kv = txn_kv(tr, 2);
		cluster_take(c, ct, cursor, kv != NULL ? kv->value : NULL);
	}
	else if (ok)
		ct_set_owner(ct, c->conf->member_name, etcd_lease(c->etcd));
}

static void
cluster_cursors_done(struct cluster *c, const struct etcd_txn_result *tr)
{
	size_t	 i;

	if (!tr->succeeded) {
		log_warnx("cluster: member key %s is no longer ours; "
		    "registering again", c->member_key);
		c->registered = false;
		return;
	}
	for (i = 0; i < c->nkbatch; i++) {
		if (c->kbatch[i].cursor != TICKS_NONE)
			c->kbatch[i].ct->written = c->kbatch[i].cursor;
		if (c->kbatch[i].ihash != 0)
			c->kbatch[i].ct->iwritten = c->kbatch[i].ihash;
	}
}

static void
cluster_register_done(struct cluster *c, const struct etcd_txn_result *tr)
{
	const struct etcd_kv *kv;

	if (tr->succeeded) {
		c->registered = true;
		c->name_busy = false;
		log_info("cluster: joined as member %s", c->conf->member_name);
		/*
		 * Take nothing before the next read, one interval from now:
		 * collectors started together then see each other first
		 * instead of grabbing everything and handing it back.
		 */
		c->read_done = false;
		c->next_read = mono_ms() + c->conf->lease_ttl_ms / 4;
		return;
	}
	kv = txn_kv(tr, 0);
	if ((kv != NULL ? kv->lease : 0) == etcd_lease(c->etcd)) {
		c->registered = true;
		c->name_busy = false;
		return;
	}
	if (!c->name_busy)
		log_warnx("cluster: member name %s is held by another lease "
		    "(a previous run that is not expired yet, or another "
		    "collector with the same member_name); waiting",
		    c->conf->member_name);
	c->name_busy = true;
	c->kv_retry = mono_ms() + c->conf->lease_ttl_ms / 4;
}

/* The answer to the key-value request in flight. */
static void
cluster_kv_done(struct cluster *c, enum cop op,
    const struct etcd_txn_result *tr)
{
	int64_t	 backoff;

	if (tr->error != NULL) {
		backoff = RETRY_MS * etcd_fails(c->etcd);
		if (backoff > c->conf->lease_ttl_ms / 4)
			backoff = c->conf->lease_ttl_ms / 4;
		c->kv_retry = mono_ms() + backoff;
		if (op == OP_ACQUIRE && c->kct != NULL)
			c->kct->tried = true;
		return;
	}
	switch (op) {
	case OP_REGISTER:
		cluster_register_done(c, tr);
		break;
	case OP_READ:
		cluster_read_done(c, tr);
		break;
	case OP_ACQUIRE:
		if (c->kct != NULL)
			cluster_acquire_done(c, c->kct, tr);
		break;
	case OP_RELEASE:
		if (c->kct != NULL && c->kct->t == NULL) {
			ct_drop(c, c->kct);
			c->kct = NULL;
		} else if (c->kct != NULL) {
			c->kct->state = CT_NONE;
			ct_set_owner(c->kct, NULL, 0);
		}
		break;
	case OP_CURSORS:
		cluster_cursors_done(c, tr);
		break;
	case OP_NONE:
		break;
	}
}

static void
cluster_kv_done_cb(const struct etcd_txn_result *tr, void *arg)
{
	struct cluster	*c = arg;
	enum cop	 op = c->kop;

	c->kreq = NULL;
	c->kop = OP_NONE;
	cluster_kv_done(c, op, tr);
	c->kct = NULL;
	free(c->kbatch);
	c->kbatch = NULL;
	c->nkbatch = 0;
	cluster_kick(c);
}

/* Send t on the key-value channel. */
static void
cluster_kv_send(struct cluster *c, enum cop op, struct etcd_txn *t)
{
	static const char *names[] = { "-", "register", "read", "acquire",
	    "release", "cursor update" };

	c->kop = op;
	c->kreq = etcd_txn_send(c->etcd, t, names[op], c->conf->lease_ttl_ms,
	    cluster_kv_done_cb, c);
}

/* ---- the key-value channel ---- */

static void
cluster_send_register(struct cluster *c)
{
	struct etcd_txn	*t = etcd_txn_new();

	etcd_txn_cmp_absent(t, c->member_key);
	etcd_txn_put(t, ETCD_THEN, c->member_key, c->member_value,
	    etcd_lease(c->etcd));
	etcd_txn_range(t, ETCD_ELSE, c->member_key, false);
	cluster_kv_send(c, OP_REGISTER, t);
}

static void
cluster_send_read(struct cluster *c)
{
	struct etcd_txn	*t = etcd_txn_new();
	char		*m, *o;
	int64_t		 now = mono_ms(), every = c->conf->lease_ttl_ms / 4;
	size_t		 i;

	m = ckey(c, "members", NULL);
	o = ckey(c, "owners", NULL);
	etcd_txn_range(t, ETCD_THEN, m, true);
	etcd_txn_range(t, ETCD_THEN, o, true);
	free(m);
	free(o);
	/* Waiting for a handoff: look again soon. */
	for (i = 0; i < c->ncts; i++)
		if (c->cts[i]->want && c->cts[i]->state == CT_NONE &&
		    every > HANDOFF_READ_MS)
			every = HANDOFF_READ_MS;
	c->next_read = now + every;
	cluster_kv_send(c, OP_READ, t);
}

static void
cluster_send_acquire(struct cluster *c, struct ctenant *ct)
{
	struct etcd_txn	*t = etcd_txn_new();
	char		*ok, *ck, *ik;

	ok = ckey(c, "owners", ct->name);
	ck = ckey(c, "cursors", ct->name);
	ik = ckey(c, "incidents", ct->name);
	etcd_txn_cmp_absent(t, ok);
	etcd_txn_put(t, ETCD_THEN, ok, c->conf->member_name,
	    etcd_lease(c->etcd));
	etcd_txn_range(t, ETCD_THEN, ck, false);
	etcd_txn_range(t, ETCD_THEN, ik, false);
	etcd_txn_range(t, ETCD_ELSE, ok, false);
	etcd_txn_range(t, ETCD_ELSE, ck, false);
	etcd_txn_range(t, ETCD_ELSE, ik, false);
	free(ok);
	free(ck);
	free(ik);
	ct->tried = true;
	c->kct = ct;
	cluster_kv_send(c, OP_ACQUIRE, t);
}

/* Store the cursor and delete the owner key, if it is still ours. */
static void
cluster_send_release(struct cluster *c, struct ctenant *ct)
{
	struct etcd_txn	*t = etcd_txn_new();
	char		*ok, *ck, *ck2, *ik, v[32];

	ok = ckey(c, "owners", ct->name);
	ck = ckey(c, "cursors", ct->name);
	etcd_txn_cmp_lease(t, ok, etcd_lease(c->etcd));
	if (ct->t != NULL)
		ct->delivered = tenant_delivered_cursor(ct->t);
	if (ct->delivered != TICKS_NONE) {
		snprintf(v, sizeof(v), "%" PRId64, ct->delivered);
		etcd_txn_put(t, ETCD_THEN, ck, v, 0);
	}
	if (ct->t != NULL && (ik = ckpt_incidents(c, ct->t)) != NULL) {
		ck2 = ckey(c, "incidents", ct->name);
		etcd_txn_put(t, ETCD_THEN, ck2, ik, 0);
		free(ck2);
		free(ik);
	}
	etcd_txn_delete(t, ETCD_THEN, ok);
	free(ok);
	free(ck);
	c->kct = ct;
	cluster_kv_send(c, OP_RELEASE, t);
}

/*
 * Store changed delivered cursors of the tenants polled here, guarded
 * by our member key: if the lease is gone, nothing is written.  Returns
 * false when nothing changed.
 */
static bool
cluster_send_cursors(struct cluster *c)
{
	struct etcd_txn	*t = etcd_txn_new();
	struct ctenant	*ct;
	struct kput	 k;
	size_t		 i, bytes = 0;

	c->kbatch = xcalloc(BATCH_OPS, sizeof(*c->kbatch));
	etcd_txn_cmp_lease(t, c->member_key, etcd_lease(c->etcd));
	for (i = 0; i < c->ncts && etcd_txn_nops(t, ETCD_THEN) + 2 <=
	    BATCH_OPS && bytes < BATCH_BYTES; i++) {
		ct = c->cts[i];
		if (ct->state != CT_OWNED || ct->t == NULL)
			continue;
		ct->delivered = tenant_delivered_cursor(ct->t);
		if (ckpt_put(c, t, ct, &k, &bytes))
			c->kbatch[c->nkbatch++] = k;
	}
	if (c->nkbatch == 0) {
		etcd_txn_free(t);
		free(c->kbatch);
		c->kbatch = NULL;
		return false;
	}
	cluster_kv_send(c, OP_CURSORS, t);
	return true;
}

static bool
ct_release_due(struct cluster *c, struct ctenant *ct)
{
	if (ct->state == CT_RELEASING)
		return true;
	return ct->state == CT_NONE && etcd_lease(c->etcd) != 0 &&
	    ct->owner_lease == etcd_lease(c->etcd) && !ct->want && !c->relay->stopping;
}

static bool
ct_acquire_due(struct cluster *c, struct ctenant *ct)
{
	return ct->t != NULL && ct->want && ct->state == CT_NONE &&
	    !ct->tried && (ct->owner == NULL ||
	    ct->owner_lease == etcd_lease(c->etcd));
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
	if (etcd_lease_ok(c->etcd) && !c->registered) {
		cluster_send_register(c);
		return;
	}
	if (etcd_lease_ok(c->etcd)) {
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
	if (etcd_lease_ok(c->etcd) && c->registered && c->read_done &&
	    !c->relay->stopping) {
		for (i = 0; i < c->ncts; i++)
			if (ct_acquire_due(c, c->cts[i])) {
				cluster_send_acquire(c, c->cts[i]);
				return;
			}
	}
	if (etcd_lease_ok(c->etcd) && c->registered && now >= c->next_cursors) {
		c->next_cursors = now + CURSOR_SYNC_MS;
		if (cluster_send_cursors(c))
			return;
	}
	at = c->next_read;
	if (etcd_lease_ok(c->etcd) && c->registered && c->next_cursors < at)
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
		if ((ct = ct_find(c, r->tenants[i]->name)) == NULL)
			ct = ct_new(r->tenants[i]->name);
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
		if (ct->state == CT_NONE && (etcd_lease(c->etcd) == 0 ||
		    ct->owner_lease != etcd_lease(c->etcd)))
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
	c->conf = conf_cluster_dup(cc);
	c->etcd = etcd_new(r->base, c->conf);
	c->member_key = ckey(c, "members", c->conf->member_name);
	ts_format(ts_now(), ts, sizeof(ts));
	info = json_pack("{s:s,s:i,s:s,s:s}", "host", r->hostname, "pid",
	    r->pid, "started", ts, "version", AR_VERSION);
	c->member_value = json_dumps(info, JSON_COMPACT);
	json_decref(info);
	c->ktimer = evtimer_new(r->base, cluster_ktimer_cb, c);
	c->next_cursors = mono_ms() + CURSOR_SYNC_MS;
	r->cluster = c;
	cluster_sync_tenants(c);
	log_info("cluster: member %s, %zu etcd endpoint%s, lease %lld ms, "
	    "prefix %s", c->conf->member_name, c->conf->netcd_endpoints,
	    c->conf->netcd_endpoints == 1 ? "" : "s",
	    (long long)c->conf->lease_ttl_ms, c->conf->prefix);
	etcd_lease_start(c->etcd, c->conf->lease_ttl_ms, cluster_lease_cb, c);
	return 0;
}

/*
 * Adopt a reloaded [cluster]: new endpoints and TLS files; the member's
 * identity (member_name, prefix, lease_ttl) stays until a restart.
 */
static void
cluster_conf_adopt(struct cluster *c, const struct conf_cluster *cc)
{
	struct conf_cluster *nc, *old = c->conf;
	char		*tmp;

	nc = conf_cluster_dup(cc);
	tmp = nc->member_name;
	nc->member_name = old->member_name;
	old->member_name = tmp;
	tmp = nc->prefix;
	nc->prefix = old->prefix;
	old->prefix = tmp;
	nc->lease_ttl_ms = old->lease_ttl_ms;
	etcd_set_conf(c->etcd, nc);
	c->conf = nc;
	conf_cluster_free(old);
}

void
cluster_reconcile(struct relay *r)
{
	struct cluster	*c = r->cluster;
	const struct conf_cluster *cc = &r->conf->cluster;

	if (c == NULL)
		return;
	if (!cc->enabled || strcmp(cc->member_name, c->conf->member_name) !=
	    0 || strcmp(cc->prefix, c->conf->prefix) != 0 ||
	    cc->lease_ttl_ms != c->conf->lease_ttl_ms)
		log_warnx("cluster: member_name, prefix, lease_ttl and "
		    "removing [cluster] take effect at the next restart");
	if (cc->enabled)
		cluster_conf_adopt(c, cc);
	cluster_sync_tenants(c);
	c->next_read = mono_ms();
	cluster_kick(c);
}

/* ---- shutdown ---- */

/*
 * At exit (outputs drained or the stop deadline passed): store every
 * delivered cursor, then revoke the lease (every key of ours goes at
 * once, others take over).  Blocks for at most FINAL_MS.
 */
static void
cluster_final(struct cluster *c)
{
	struct etcd_txn	*t = etcd_txn_new();
	struct ctenant	*ct;
	struct kput	 k;
	char		 err[256];
	size_t		 i, bytes = 0;

	etcd_txn_cmp_lease(t, c->member_key, etcd_lease(c->etcd));
	for (i = 0; i < c->ncts && etcd_txn_nops(t, ETCD_THEN) < 120 &&
	    bytes < 4 * BATCH_BYTES; i++) {
		ct = c->cts[i];
		if (ct->state == CT_NONE)
			continue;
		if (ct->t != NULL)
			ct->delivered = tenant_delivered_cursor(ct->t);
		ckpt_put(c, t, ct, &k, &bytes);
	}
	if (etcd_finish(c->etcd, t, FINAL_MS, err, sizeof(err)) == -1)
		log_warnx("cluster: storing cursors at exit: %s; other "
		    "members start from the last stored ones", err);
}

void
cluster_stop(struct relay *r)
{
	struct cluster	*c = r->cluster;
	size_t		 i;

	if (c == NULL)
		return;
	etcd_cancel(c->etcd, c->kreq);
	c->kreq = NULL;
	/* The relay stopped the tenants already (relay_stop). */
	if (etcd_lease(c->etcd) != 0 && etcd_lease_ok(c->etcd))
		cluster_final(c);
	etcd_free(c->etcd);
	event_free(c->ktimer);
	for (i = 0; i < c->ncts; i++)
		ct_free(c->cts[i]);
	free(c->cts);
	members_clear(c);
	free(c->kbatch);
	free(c->member_key);
	free(c->member_value);
	conf_cluster_free(c->conf);
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
	struct etcd_stats st;
	json_t		*o, *ms, *m, *e, *names;
	size_t		 i;
	char		 ts[40], lease[32];

	etcd_stats(c->etcd, &st);
	ms = json_array();
	for (i = 0; i < c->nmembers; i++) {
		names = json_array();
		cluster_owned_by(c, c->members[i].name, names, NULL);
		m = json_pack("{s:s,s:b,s:s,s:o}", "name", c->members[i].name,
		    "self", strcmp(c->members[i].name, c->conf->member_name) ==
		    0, "info", c->members[i].info, "tenants", names);
		json_array_append_new(ms, m);
	}
	names = json_array();
	cluster_owned_by(c, NULL, names, NULL);
	ts_format(st.last_ok, ts, sizeof(ts));
	e = json_pack("{s:s,s:b,s:o,s:o,s:I,s:I,s:I}", "endpoint",
	    st.endpoint, "healthy", st.healthy, "last_ok", st.last_ok != 0 ?
	    json_string(ts) : json_null(), "last_error",
	    st.last_error[0] != '\0' ? json_string(st.last_error) :
	    json_null(), "requests", (json_int_t)st.requests, "failures",
	    (json_int_t)st.failures, "revision", (json_int_t)c->revision);
	snprintf(lease, sizeof(lease), "%" PRId64, st.lease);
	o = json_object();
	json_object_set_new(o, "member", json_string(c->conf->member_name));
	json_object_set_new(o, "lease", st.lease != 0 ? json_string(lease) :
	    json_null());
	json_object_set_new(o, "lease_ok", json_boolean(st.lease_ok));
	json_object_set_new(o, "lease_renewed_ms_ago", st.lease_ok ?
	    json_integer(mono_ms() - st.lease_sent) : json_null());
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
	struct etcd_stats st;
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
	etcd_stats(c->etcd, &st);
	buf_addf(out, "cluster: member %s, lease %s", c->conf->member_name,
	    st.lease_ok ? "held" : st.lease != 0 ? "NOT CONFIRMED" : "none");
	if (st.lease_ok)
		buf_addf(out, " (renewed %lld ms ago)",
		    (long long)(mono_ms() - st.lease_sent));
	buf_addf(out, ", etcd %s %s\n", st.endpoint, st.healthy ? "ok" :
	    "FAILING");
	if (st.last_error[0] != '\0')
		buf_addf(out, "  last etcd error: %s\n", st.last_error);
	buf_init(&names);
	for (i = 0; i < c->nmembers; i++) {
		buf_reset(&names);
		n = cluster_owned_by(c, c->members[i].name, NULL, &names);
		buf_addf(out, "  member %s%s: %zu tenant%s%s%s\n",
		    c->members[i].name, strcmp(c->members[i].name, c->conf->member_name) ==
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
