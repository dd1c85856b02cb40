/*
 * Alerts: the reader that takes the forwarded fields out of one alert object
 * in a single pass.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alert.h"
#include "jscan.h"
#include "log.h"


/*
 * Key lookup: a small open-addressed hash table per object kind, filled on
 * first use.  Keys are compared after decoding, so "t\u0069tle" is "title".
 */
static unsigned
key_hash(const char *k, size_t len)
{
	return (len * 7 + (unsigned char)k[0] * 3 +
	    (unsigned char)k[len - 1]) % KT_SLOTS;
}

void
keytab_add(struct keytab *kt, const char *name, unsigned idx)
{
	size_t		 len = strlen(name);
	unsigned	 h = key_hash(name, len);

	while (kt->name[h] != NULL)
		h = (h + 1) % KT_SLOTS;
	kt->name[h] = name;
	kt->len[h] = (uint8_t)len;
	kt->idx[h] = (uint8_t)idx;
}

void
keytab_fill(struct keytab *kt, const void *table, size_t n, size_t stride)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		keytab_add(kt, *(const char *const *)(const void *)
		    ((const char *)table + i * stride), i);
}

static int
keytab_find(const struct keytab *kt, const char *k, size_t len)
{
	unsigned	 h;

	if (len == 0 || len > 255)
		return -1;
	for (h = key_hash(k, len); kt->name[h] != NULL;
	    h = (h + 1) % KT_SLOTS) {
		if (kt->len[h] == len && memcmp(kt->name[h], k, len) == 0)
			return kt->idx[h];
	}
	return -1;
}

int
keytab_key(const struct keytab *kt, const struct jstr *key)
{
	char	 tmp[64];

	if (!key->esc)
		return keytab_find(kt, key->p, key->len);
	if (key->len > sizeof tmp)
		return -1;
	return keytab_find(kt, tmp, jscan_unescape(key->p, key->len, tmp));
}

/* How a top-level member is read into struct alert. */
enum akind {
	AK_STR,		/* string -> struct astr at off */
	AK_SEV,		/* string -> severity_text and severity */
	AK_NUMSTR,	/* number or string -> its text */
	AK_TIME,		/* time string -> int64_t ticks at off */
	AK_MITRE,	/* array of strings joined with "," */
	AK_USER,		/* MDE relatedUser object */
	AK_EVIDENCE,	/* MDE evidence array */
	AK_GEVIDENCE,	/* Graph evidence array */
};

/* Which source's alerts carry a member. */
#define AF_MDE		0x1
#define AF_GRAPH	0x2
#define AF_BOTH		(AF_MDE | AF_GRAPH)

struct afield {
	const char	*key;
	enum akind	 kind;
	size_t		 off;
	int		 src;		/* AF_MDE, AF_GRAPH or both */
};

#define AO(f)	offsetof(struct alert, f)

/* The members of MDE and of Graph alerts_v2 alerts, one table. */
static const struct afield fields[] = {
	{ "id", AK_STR, AO(id), AF_BOTH },
	{ "title", AK_STR, AO(title), AF_BOTH },
	{ "description", AK_STR, AO(description), AF_BOTH },
	{ "category", AK_STR, AO(category), AF_BOTH },
	{ "detectorId", AK_STR, AO(detector_id), AF_BOTH },
	{ "detectionSource", AK_STR, AO(detection_source), AF_BOTH },
	{ "status", AK_STR, AO(status), AF_BOTH },
	{ "classification", AK_STR, AO(classification), AF_BOTH },
	{ "determination", AK_STR, AO(determination), AF_BOTH },
	{ "severity", AK_SEV, AO(severity_text), AF_BOTH },
	{ "mitreTechniques", AK_MITRE, AO(mitre), AF_BOTH },
	{ "incidentId", AK_NUMSTR, AO(incident_id), AF_BOTH },
	/* MDE only */
	{ "computerDnsName", AK_STR, AO(computer_dns_name), AF_MDE },
	{ "machineId", AK_STR, AO(machine_id), AF_MDE },
	{ "aadTenantId", AK_STR, AO(aad_tenant_id), AF_MDE },
	{ "threatName", AK_STR, AO(threat_name), AF_MDE },
	{ "relatedUser", AK_USER, 0, AF_MDE },
	{ "investigationId", AK_NUMSTR, AO(investigation_id), AF_MDE },
	{ "lastUpdateTime", AK_TIME, AO(last_update), AF_MDE },
	{ "alertCreationTime", AK_TIME, AO(creation), AF_MDE },
	{ "firstEventTime", AK_TIME, AO(first_event), AF_MDE },
	{ "lastEventTime", AK_TIME, AO(last_event), AF_MDE },
	{ "evidence", AK_EVIDENCE, 0, AF_MDE },
	/* Graph only */
	{ "serviceSource", AK_STR, AO(service_source), AF_GRAPH },
	{ "tenantId", AK_STR, AO(aad_tenant_id), AF_GRAPH },
	{ "threatFamilyName", AK_STR, AO(threat_name), AF_GRAPH },
	{ "lastUpdateDateTime", AK_TIME, AO(last_update), AF_GRAPH },
	{ "createdDateTime", AK_TIME, AO(creation), AF_GRAPH },
	{ "firstActivityDateTime", AK_TIME, AO(first_event), AF_GRAPH },
	{ "lastActivityDateTime", AK_TIME, AO(last_event), AF_GRAPH },
	{ "evidence", AK_GEVIDENCE, 0, AF_GRAPH },
};

/* Members of nested objects, read as raw strings into arrays. */
enum { U_NAME, U_DOMAIN, U_N };
static const char *const user_keys[] = { "userName", "domainName" };

enum { EV_TYPE, EV_SHA1, EV_SHA256, EV_FNAME, EV_FPATH, EV_IP, EV_URL, EV_N };
static const char *const ev_keys[] = {
	"entityType", "sha1", "sha256", "fileName", "filePath", "ipAddress",
	"url"
};

/* Graph evidence: string members first, then the object-valued ones. */
enum { GE_TYPE, GE_DNS, GE_DEVID, GE_IP, GE_URL, GE_N,
    GE_FILE = GE_N, GE_IMAGE, GE_ACCT };
static const char *const gev_keys[] = {
	"@odata.type", "deviceDnsName", "mdeDeviceId", "ipAddress", "url",
	"fileDetails", "imageFile", "userAccount"
};

enum { GF_NAME, GF_PATH, GF_SHA1, GF_SHA256, GF_N };
static const char *const gfile_keys[] = {
	"fileName", "filePath", "sha1", "sha256"
};

enum { GA_NAME, GA_DOMAIN, GA_N };
static const char *const gacct_keys[] = { "accountName", "domainName" };

#define GTYPE(t)	"#microsoft.graph.security." t

static struct keytab kt_mde, kt_graph, kt_user, kt_ev, kt_gev, kt_gfile,
    kt_gacct;

static void
tables_init(void)
{
	static int	 done;
	size_t		 i;

	if (done)
		return;
	done = 1;
	for (i = 0; i < nitems(fields); i++) {
		if (fields[i].src & AF_MDE)
			keytab_add(&kt_mde, fields[i].key, i);
		if (fields[i].src & AF_GRAPH)
			keytab_add(&kt_graph, fields[i].key, i);
	}
	keytab_fill(&kt_user, user_keys, nitems(user_keys),
	    sizeof(user_keys[0]));
	keytab_fill(&kt_ev, ev_keys, nitems(ev_keys), sizeof(ev_keys[0]));
	keytab_fill(&kt_gev, gev_keys, nitems(gev_keys), sizeof(gev_keys[0]));
	keytab_fill(&kt_gfile, gfile_keys, nitems(gfile_keys),
	    sizeof(gfile_keys[0]));
	keytab_fill(&kt_gacct, gacct_keys, nitems(gacct_keys),
	    sizeof(gacct_keys[0]));
}

void
alert_init(struct alert *a)
{
	memset(a, 0, sizeof *a);
	buf_init(&a->arena);
	a->last_update = a->creation = TICKS_NONE;
	a->first_event = a->last_event = TICKS_NONE;
}

void
alert_clear(struct alert *a)
{
	buf_clear(&a->arena);
	alert_init(a);
}

/* Forget every field but keep the arena's memory. */
static void
alert_reset(struct alert *a)
{
	struct buf	 arena = a->arena;

	alert_init(a);
	a->arena = arena;
	buf_reset(&a->arena);
}

/*
 * Decode s into the arena, NUL-terminated.  alert_parse (and
 * incident_parse) reserve room for the whole object once and each raw value
 * is decoded at most once into no more than its own bytes plus the one
 * before it (its quotes or the ':'), so the arena never moves while
 * pointers into it are handed out.
 */
struct astr
astr_put(struct buf *b, const struct jstr *s)
{
	struct astr	 r = { NULL, 0 };
	char		*o;

	if (s->p == NULL)
		return r;
	if (b->cap - b->len < s->len + 2)
		fatalx("%s: arena overflow", __func__);
	o = b->data + b->len;
	if (s->esc)
		r.len = jscan_unescape(s->p, s->len, o);
	else {
		memcpy(o, s->p, s->len);
		r.len = s->len;
	}
	o[r.len] = '\0';
	b->len += r.len + 1;
	b->data[b->len] = '\0';
	r.p = o;
	return r;
}

static struct astr
arena_put(struct alert *a, const struct jstr *s)
{
	return astr_put(&a->arena, s);
}

/* Set *dst from src unless an earlier evidence entry already did. */
static void
take_first(struct alert *a, struct astr *dst, const struct jstr *src)
{
	if (dst->p == NULL && src->p != NULL)
		*dst = arena_put(a, src);
}

enum severity
severity_of(const struct astr *s)
{
	static const char *const names[] = {
		[SEV_UNSPECIFIED] = "unspecified",
		[SEV_INFORMATIONAL] = "informational",
		[SEV_LOW] = "low",
		[SEV_MEDIUM] = "medium",
		[SEV_HIGH] = "high",
	};
	size_t	 i;

	for (i = 0; s->p != NULL && i < nitems(names); i++) {
		if (strlen(names[i]) == s->len &&
		    strncasecmp(s->p, names[i], s->len) == 0)
			return (enum severity)i;
	}
	return SEV_UNSPECIFIED;
}

int
ticks_read(struct jscan *js, int64_t *t)
{
	struct jstr	 s;
	char		 tmp[64];
	size_t		 n;

	*t = TICKS_NONE;
	if (jscan_peek(js) != '"')
		return jscan_skip(js);
	if (jscan_string(js, &s) != 0)
		return -1;
	if (!s.esc) {
		if (ts_parse(s.p, s.len, t) != 0)
			*t = TICKS_NONE;
	} else if (s.len <= sizeof tmp) {
		n = jscan_unescape(s.p, s.len, tmp);
		if (ts_parse(tmp, n, t) != 0)
			*t = TICKS_NONE;
	}
	return 0;
}

int
astr_read(struct buf *arena, struct jscan *js, struct astr *out,
    int numbers)
{
	struct jstr	 s;
	int		 c;

	out->p = NULL;
	out->len = 0;
	c = jscan_peek(js);
	if (c == '"') {
		if (jscan_string(js, &s) != 0)
			return -1;
	} else if (numbers && (c == '-' || (c >= '0' && c <= '9'))) {
		if (jscan_number(js, &s) != 0)
			return -1;
	} else
		return jscan_skip(js);
	*out = astr_put(arena, &s);
	return 0;
}

static int
read_str(struct alert *a, struct jscan *js, struct astr *out, int numbers)
{
	return astr_read(&a->arena, js, out, numbers);
}

/* mitreTechniques: an array of strings joined with ",", or one string. */
static int
read_mitre(struct alert *a, struct jscan *js)
{
	struct buf	*b = &a->arena;
	struct jstr	 s;
	unsigned	 n = 0;
	size_t		 start;
	int		 r;

	if (jscan_peek(js) != '[')
		return read_str(a, js, &a->mitre, 0);
	a->mitre.p = NULL;
	a->mitre.len = 0;
	if (jscan_open(js, '[') != 0)
		return -1;
	start = b->len;
	while ((r = jscan_element(js, &n)) == 1) {
		if (jscan_peek(js) != '"') {
			if (jscan_skip(js) != 0)
				return -1;
			continue;
		}
		if (jscan_string(js, &s) != 0)
			return -1;
		if (b->len > start)
			b->data[b->len - 1] = ',';	/* was the last NUL */
		arena_put(a, &s);
	}
	if (r == 0 && b->len > start) {
		a->mitre.p = b->data + start;
		a->mitre.len = b->len - start - 1;
	}
	return r;
}

int
keytab_strings(struct jscan *js, const struct keytab *kt, struct jstr *out,
    size_t nout)
{
	struct jstr	 key;
	unsigned	 n = 0;
	int		 i, r;

	memset(out, 0, nout * sizeof *out);
	if (jscan_open(js, '{') != 0)
		return -1;
	while ((r = jscan_member(js, &n, &key)) == 1) {
		i = keytab_key(kt, &key);
		if (i >= 0 && (size_t)i < nout) {
			out[i].p = NULL;
			if (jscan_peek(js) == '"') {
				if (jscan_string(js, &out[i]) != 0)
					return -1;
				continue;
			}
		}
		if (jscan_skip(js) != 0)
			return -1;
	}
	return r;
}

int
alert_array_walk(struct jscan *js, int (*each)(void *, struct jscan *),
    void *arg)
{
	unsigned	 n = 0;
	int		 r;

	if (jscan_peek(js) != '[')
		return jscan_skip(js);
	if (jscan_open(js, '[') != 0)
		return -1;
	while ((r = jscan_element(js, &n)) == 1) {
		if (jscan_peek(js) != '{')
			r = jscan_skip(js) != 0 ? -1 : each(arg, NULL);
		else
			r = each(arg, js);
		if (r != 0)
			return -1;
	}
	return r;
}

static int
read_user(struct alert *a, struct jscan *js)
{
	struct jstr	 v[U_N];

	a->user_name.p = a->domain_name.p = NULL;
	a->user_name.len = a->domain_name.len = 0;
	if (jscan_peek(js) != '{')
		return jscan_skip(js);
	if (keytab_strings(js, &kt_user, v, U_N) != 0)
		return -1;
	a->user_name = arena_put(a, &v[U_NAME]);
	a->domain_name = arena_put(a, &v[U_DOMAIN]);
	return 0;
}

/* Forget what an earlier "evidence" member gave (the last one wins). */
static void
evidence_reset(struct alert *a, enum tenant_source src)
{
	static const struct astr none;

	a->evidence_count = 0;
	a->file_name = a->file_path = a->sha1 = a->sha256 = none;
	a->ip_address = a->url = none;
	if (src == SRC_GRAPH) {
		a->computer_dns_name = a->machine_id = none;
		a->user_name = a->domain_name = none;
	}
}

struct mde_walk {
	struct alert	*a;
	int		 got_file;
};

static int
mde_evidence_cb(void *arg, struct jscan *js)
{
	struct mde_walk	*w = arg;
	struct alert	*a = w->a;
	struct jstr	 v[EV_N];

	a->evidence_count++;
	if (js == NULL)
		return 0;
	if (keytab_strings(js, &kt_ev, v, EV_N) != 0)
		return -1;
	if (!w->got_file && (jstr_eq(&v[EV_TYPE], "File", 4) ||
	    jstr_eq(&v[EV_TYPE], "Process", 7))) {
		w->got_file = 1;
		a->file_name = arena_put(a, &v[EV_FNAME]);
		a->file_path = arena_put(a, &v[EV_FPATH]);
		a->sha1 = arena_put(a, &v[EV_SHA1]);
	}
	take_first(a, &a->sha256, &v[EV_SHA256]);
	take_first(a, &a->ip_address, &v[EV_IP]);
	take_first(a, &a->url, &v[EV_URL]);
	return 0;
}

static int
read_mde_evidence(struct alert *a, struct jscan *js)
{
	struct mde_walk	 w = { a, 0 };

	evidence_reset(a, SRC_MDE);
	return alert_array_walk(js, mde_evidence_cb, &w);
}

/* What the Graph evidence entries seen so far have given. */
struct gstate {
	int		 device, file, user;
};

/* The members of one Graph evidence entry that alertrelay uses. */
struct gentry {
	struct jstr	 v[GE_N];
	struct jstr	 file[GF_N];	/* fileDetails */
	struct jstr	 image[GF_N];	/* imageFile */
	struct jstr	 acct[GA_N];	/* userAccount */
};

static int
is_gtype(const struct gentry *e, const char *type)
{
	return jstr_eq(&e->v[GE_TYPE], type, strlen(type));
}

/* Take from one entry what its @odata.type gives, first entry wins. */
static void
graph_apply(struct alert *a, const struct gentry *e, struct gstate *st)
{
	const struct jstr	*f = NULL;

	if (is_gtype(e, GTYPE("fileEvidence")))
		f = e->file;
	else if (is_gtype(e, GTYPE("processEvidence")))
		f = e->image;
	else if (is_gtype(e, GTYPE("deviceEvidence")) && !st->device) {
		st->device = 1;
		a->computer_dns_name = arena_put(a, &e->v[GE_DNS]);
		a->machine_id = arena_put(a, &e->v[GE_DEVID]);
	} else if (is_gtype(e, GTYPE("ipEvidence")))
		take_first(a, &a->ip_address, &e->v[GE_IP]);
	else if (is_gtype(e, GTYPE("urlEvidence")))
		take_first(a, &a->url, &e->v[GE_URL]);
	else if (is_gtype(e, GTYPE("userEvidence")) && !st->user) {
		st->user = 1;
		a->user_name = arena_put(a, &e->acct[GA_NAME]);
		a->domain_name = arena_put(a, &e->acct[GA_DOMAIN]);
	}
	if (f == NULL)
		return;
	if (!st->file) {
		st->file = 1;
		a->file_name = arena_put(a, &f[GF_NAME]);
		a->file_path = arena_put(a, &f[GF_PATH]);
		a->sha1 = arena_put(a, &f[GF_SHA1]);
	}
	take_first(a, &a->sha256, &f[GF_SHA256]);
}

/* Read one Graph evidence entry's members (raw, not yet decoded). */
static int
read_graph_entry(struct jscan *js, struct gentry *e)
{
	struct jstr	 key, *f;
	unsigned	 n = 0;
	int		 i, r;

	memset(e, 0, sizeof *e);
	if (jscan_open(js, '{') != 0)
		return -1;
	while ((r = jscan_member(js, &n, &key)) == 1) {
		i = keytab_key(&kt_gev, &key);
		f = i == GE_FILE ? e->file : i == GE_IMAGE ? e->image : NULL;
		if (i == GE_ACCT && jscan_peek(js) == '{')
			r = keytab_strings(js, &kt_gacct, e->acct, GA_N);
		else if (f != NULL && jscan_peek(js) == '{')
			r = keytab_strings(js, &kt_gfile, f, GF_N);
		else if (i >= 0 && i < GE_N && jscan_peek(js) == '"')
			r = jscan_string(js, &e->v[i]);
		else {
			/* null or a wrong type: absent (the last wins) */
			if (i == GE_ACCT)
				memset(e->acct, 0, sizeof e->acct);
			else if (f != NULL)
				memset(f, 0, GF_N * sizeof *f);
			else if (i >= 0)
				e->v[i].p = NULL;
			r = jscan_skip(js);
		}
		if (r != 0)
			return -1;
	}
	return r;
}

struct graph_walk {
	struct alert	*a;
	struct gstate	 st;
};

static int
graph_evidence_cb(void *arg, struct jscan *js)
{
	struct graph_walk *w = arg;
	struct gentry	 e;

	w->a->evidence_count++;
	if (js == NULL)
		return 0;
	if (read_graph_entry(js, &e) != 0)
		return -1;
	graph_apply(w->a, &e, &w->st);
	return 0;
}

static int
read_graph_evidence(struct alert *a, struct jscan *js)
{
	struct graph_walk w = { a, { 0, 0, 0 } };

	evidence_reset(a, SRC_GRAPH);
	return alert_array_walk(js, graph_evidence_cb, &w);
}

static int
read_field(struct alert *a, struct jscan *js, const struct afield *f)
{
	void	*at = (char *)a + f->off;
	int	 r;

	switch (f->kind) {
	case AK_STR:
		return read_str(a, js, at, 0);
	case AK_SEV:
		r = read_str(a, js, &a->severity_text, 0);
		a->severity = severity_of(&a->severity_text);
		return r;
	case AK_NUMSTR:
		return read_str(a, js, at, 1);
	case AK_TIME:
		return ticks_read(js, at);
	case AK_MITRE:
		return read_mitre(a, js);
	case AK_USER:
		return read_user(a, js);
	case AK_EVIDENCE:
		return read_mde_evidence(a, js);
	case AK_GEVIDENCE:
		return read_graph_evidence(a, js);
	}
	return jscan_skip(js);
}

int
alert_object_walk(const struct keytab *kt, const char *json, size_t len,
    const char *what, int (*read)(void *, struct jscan *, int), void *arg,
    char *err, size_t errlen)
{
	struct jscan	 js;
	struct jstr	 key;
	unsigned	 n = 0;
	int		 i, r;

	jscan_init(&js, json, len);
	if (jscan_peek(&js) != '{') {
		err_set(err, errlen, "%s is not a JSON object", what);
		return -1;
	}
	jscan_open(&js, '{');
	while ((r = jscan_member(&js, &n, &key)) == 1) {
		if ((i = keytab_key(kt, &key)) < 0)
			r = jscan_skip(&js);
		else
			r = read(arg, &js, i);
		if (r != 0)
			break;
	}
	if (r == 0)
		r = jscan_end(&js);
	if (r != 0) {
		err_set(err, errlen, "invalid JSON at byte %zu: %s",
		    js.err_off, js.err);
		return -1;
	}
	return 0;
}

int
alert_object_check(const struct astr *id, int64_t last_update,
    const char *lu, char *err, size_t errlen)
{
	if (id->p == NULL || id->len == 0) {
		err_set(err, errlen,
		    "\"id\" is missing, empty or not a string");
		return -1;
	}
	if (last_update == TICKS_NONE) {
		err_set(err, errlen, "\"%s\" is missing or not a valid time",
		    lu);
		return -1;
	}
	return 0;
}

static int
alert_walk_cb(void *arg, struct jscan *js, int i)
{
	return read_field(arg, js, &fields[i]);
}

/*
 * One pass over the object: members alertrelay does not forward are
 * skipped (their syntax still checked), the others decoded into the arena.
 * A duplicate member replaces the earlier one.
 */
int
alert_parse(struct alert *a, enum tenant_source src, const char *json,
    size_t len, char *err, size_t errlen)
{
	const struct keytab	*kt = &kt_mde;
	const char		*lu = "lastUpdateTime";

	tables_init();
	alert_reset(a);
	a->raw = json;
	a->raw_len = len;
	buf_reserve(&a->arena, len + 2);
	if (src == SRC_GRAPH) {
		kt = &kt_graph;
		lu = "lastUpdateDateTime";
	}
	if (alert_object_walk(kt, json, len, "alert", alert_walk_cb, a, err,
	    errlen) == 0 && alert_object_check(&a->id, a->last_update, lu, err,
	    errlen) == 0)
		return 0;
	alert_reset(a);
	return -1;
}
