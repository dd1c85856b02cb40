/*
 * Alerts: the streaming page splitter for API responses and the reader that
 * takes the forwarded fields out of one alert object in a single pass.
 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alert.h"
#include "jscan.h"
#include "log.h"

#define IS_WS(c)	((c) == ' ' || (c) == '\n' || (c) == '\r' || \
			 (c) == '\t')

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
	K_STR,		/* string -> struct astr at off */
	K_SEV,		/* string -> severity_text and severity */
	K_NUMSTR,	/* number or string -> its text */
	K_TIME,		/* time string -> int64_t ticks at off */
	K_MITRE,	/* array of strings joined with "," */
	K_USER,		/* MDE relatedUser object */
	K_EVIDENCE,	/* MDE evidence array */
	K_GEVIDENCE,	/* Graph evidence array */
};

struct afield {
	const char	*key;
	enum akind	 kind;
	size_t		 off;
};

#define AO(f)	offsetof(struct alert, f)

static const struct afield mde_fields[] = {
	{ "id", K_STR, AO(id) },
	{ "title", K_STR, AO(title) },
	{ "description", K_STR, AO(description) },
	{ "category", K_STR, AO(category) },
	{ "detectorId", K_STR, AO(detector_id) },
	{ "detectionSource", K_STR, AO(detection_source) },
	{ "computerDnsName", K_STR, AO(computer_dns_name) },
	{ "machineId", K_STR, AO(machine_id) },
	{ "aadTenantId", K_STR, AO(aad_tenant_id) },
	{ "threatName", K_STR, AO(threat_name) },
	{ "status", K_STR, AO(status) },
	{ "classification", K_STR, AO(classification) },
	{ "determination", K_STR, AO(determination) },
	{ "severity", K_SEV, AO(severity_text) },
	{ "relatedUser", K_USER, 0 },
	{ "mitreTechniques", K_MITRE, AO(mitre) },
	{ "incidentId", K_NUMSTR, AO(incident_id) },
	{ "investigationId", K_NUMSTR, AO(investigation_id) },
	{ "lastUpdateTime", K_TIME, AO(last_update) },
	{ "alertCreationTime", K_TIME, AO(creation) },
	{ "firstEventTime", K_TIME, AO(first_event) },
	{ "lastEventTime", K_TIME, AO(last_event) },
	{ "evidence", K_EVIDENCE, 0 },
};

static const struct afield graph_fields[] = {
	{ "id", K_STR, AO(id) },
	{ "title", K_STR, AO(title) },
	{ "description", K_STR, AO(description) },
	{ "category", K_STR, AO(category) },
	{ "detectorId", K_STR, AO(detector_id) },
	{ "detectionSource", K_STR, AO(detection_source) },
	{ "serviceSource", K_STR, AO(service_source) },
	{ "status", K_STR, AO(status) },
	{ "classification", K_STR, AO(classification) },
	{ "determination", K_STR, AO(determination) },
	{ "severity", K_SEV, AO(severity_text) },
	{ "tenantId", K_STR, AO(aad_tenant_id) },
	{ "threatFamilyName", K_STR, AO(threat_name) },
	{ "incidentId", K_NUMSTR, AO(incident_id) },
	{ "mitreTechniques", K_MITRE, AO(mitre) },
	{ "lastUpdateDateTime", K_TIME, AO(last_update) },
	{ "createdDateTime", K_TIME, AO(creation) },
	{ "firstActivityDateTime", K_TIME, AO(first_event) },
	{ "lastActivityDateTime", K_TIME, AO(last_event) },
	{ "evidence", K_GEVIDENCE, 0 },
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
	for (i = 0; i < nitems(mde_fields); i++)
		keytab_add(&kt_mde, mde_fields[i].key, i);
	for (i = 0; i < nitems(graph_fields); i++)
		keytab_add(&kt_graph, graph_fields[i].key, i);
	for (i = 0; i < nitems(user_keys); i++)
		keytab_add(&kt_user, user_keys[i], i);
	for (i = 0; i < nitems(ev_keys); i++)
		keytab_add(&kt_ev, ev_keys[i], i);
	for (i = 0; i < nitems(gev_keys); i++)
		keytab_add(&kt_gev, gev_keys[i], i);
	for (i = 0; i < nitems(gfile_keys); i++)
		keytab_add(&kt_gfile, gfile_keys[i], i);
	for (i = 0; i < nitems(gacct_keys); i++)
		keytab_add(&kt_gacct, gacct_keys[i], i);
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

/*
 * Read the string members of an object named in kt into out[] as raw
 * strings; a later duplicate wins, null or another type is absent.
 */
static int
read_strings(struct jscan *js, const struct keytab *kt, struct jstr *out,
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

static int
read_user(struct alert *a, struct jscan *js)
{
	struct jstr	 v[U_N];

	a->user_name.p = a->domain_name.p = NULL;
	a->user_name.len = a->domain_name.len = 0;
	if (jscan_peek(js) != '{')
		return jscan_skip(js);
	if (read_strings(js, &kt_user, v, U_N) != 0)
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

static int
read_mde_evidence(struct alert *a, struct jscan *js)
{
	struct jstr	 v[EV_N];
	unsigned	 n = 0;
	int		 r, got_file = 0;

	evidence_reset(a, SRC_MDE);
	if (jscan_peek(js) != '[')
		return jscan_skip(js);
	if (jscan_open(js, '[') != 0)
		return -1;
	while ((r = jscan_element(js, &n)) == 1) {
		a->evidence_count++;
		if (jscan_peek(js) != '{') {
			if (jscan_skip(js) != 0)
				return -1;
			continue;
		}
		if (read_strings(js, &kt_ev, v, EV_N) != 0)
			return -1;
		if (!got_file && (jstr_eq(&v[EV_TYPE], "File", 4) ||
		    jstr_eq(&v[EV_TYPE], "Process", 7))) {
			got_file = 1;
			a->file_name = arena_put(a, &v[EV_FNAME]);
			a->file_path = arena_put(a, &v[EV_FPATH]);
			a->sha1 = arena_put(a, &v[EV_SHA1]);
		}
		take_first(a, &a->sha256, &v[EV_SHA256]);
		take_first(a, &a->ip_address, &v[EV_IP]);
		take_first(a, &a->url, &v[EV_URL]);
	}
	return r;
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
			r = read_strings(js, &kt_gacct, e->acct, GA_N);
		else if (f != NULL && jscan_peek(js) == '{')
			r = read_strings(js, &kt_gfile, f, GF_N);
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

static int
read_graph_evidence(struct alert *a, struct jscan *js)
{
	struct gstate	 st = { 0, 0, 0 };
	struct gentry	 e;
	unsigned	 n = 0;
	int		 r;

	evidence_reset(a, SRC_GRAPH);
	if (jscan_peek(js) != '[')
		return jscan_skip(js);
	if (jscan_open(js, '[') != 0)
		return -1;
	while ((r = jscan_element(js, &n)) == 1) {
		a->evidence_count++;
		if (jscan_peek(js) != '{')
			r = jscan_skip(js);
		else if ((r = read_graph_entry(js, &e)) == 0)
			graph_apply(a, &e, &st);
		if (r != 0)
			return -1;
	}
	return r;
}

static int
read_field(struct alert *a, struct jscan *js, const struct afield *f)
{
	void	*at = (char *)a + f->off;
	int	 r;

	switch (f->kind) {
	case K_STR:
		return read_str(a, js, at, 0);
	case K_SEV:
		r = read_str(a, js, &a->severity_text, 0);
		a->severity = severity_of(&a->severity_text);
		return r;
	case K_NUMSTR:
		return read_str(a, js, at, 1);
	case K_TIME:
		return ticks_read(js, at);
	case K_MITRE:
		return read_mitre(a, js);
	case K_USER:
		return read_user(a, js);
	case K_EVIDENCE:
		return read_mde_evidence(a, js);
	case K_GEVIDENCE:
		return read_graph_evidence(a, js);
	}
	return jscan_skip(js);
}

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	 ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
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
	const struct afield	*fields;
	const struct keytab	*kt;
	const char		*lu;
	struct jscan		 js;
	struct jstr		 key;
	unsigned		 n = 0;
	int			 i, r;

	tables_init();
	alert_reset(a);
	a->raw = json;
	a->raw_len = len;
	buf_reserve(&a->arena, len + 2);
	if (src == SRC_GRAPH) {
		fields = graph_fields;
		kt = &kt_graph;
		lu = "lastUpdateDateTime";
	} else {
		fields = mde_fields;
		kt = &kt_mde;
		lu = "lastUpdateTime";
	}

	jscan_init(&js, json, len);
	if (jscan_peek(&js) != '{') {
		set_err(err, errlen, "alert is not a JSON object");
		goto fail;
	}
	jscan_open(&js, '{');
	while ((r = jscan_member(&js, &n, &key)) == 1) {
		if ((i = keytab_key(kt, &key)) < 0)
			r = jscan_skip(&js);
		else
			r = read_field(a, &js, &fields[i]);
		if (r != 0)
			break;
	}
	if (r == 0)
		r = jscan_end(&js);
	if (r != 0) {
		set_err(err, errlen, "invalid JSON at byte %zu: %s",
		    js.err_off, js.err);
		goto fail;
	}
	if (a->id.p == NULL || a->id.len == 0) {
		set_err(err, errlen,
		    "\"id\" is missing, empty or not a string");
		goto fail;
	}
	if (a->last_update == TICKS_NONE) {
		set_err(err, errlen, "\"%s\" is missing or not a valid time",
		    lu);
		goto fail;
	}
	return 0;

fail:
	alert_reset(a);
	return -1;
}

/*
 * The page splitter: a state machine over the envelope that is fed the
 * body in pieces of any size.  Values other than "value" and
 * "@odata.nextLink" are scanned (strings and bracket nesting) but not kept;
 * an element of "value" is kept only while it spans pieces, so memory is
 * O(largest element).  Element contents are checked by alert_parse, not
 * here: the splitter only needs their strings and brackets to find the end.
 */
enum ps_state {
	PS_START,	/* before the envelope's '{' */
	PS_OBJ,		/* after '{': a member name or '}' */
	PS_KEY,		/* after ',': a member name */
	PS_COLON,
	PS_VALUE,	/* a member's value */
	PS_SCALAR,	/* inside a skipped number or literal */
	PS_RAW,		/* inside a string or container (see ps->what) */
	PS_ARRAY,	/* after "value": [ : an element or ']' */
	PS_ELEM,	/* after ',' in "value": an element */
	PS_ARRNEXT,	/* after an element: ',' or ']' */
	PS_NEXT,	/* after a member: ',' or '}' */
	PS_DONE,
	PS_ERROR,
};

/* What a raw value being scanned is. */
enum ps_what { CAP_NONE, CAP_KEY, CAP_LINK, CAP_ELEM };
enum ps_member { M_OTHER, M_VALUE, M_LINK };

struct pagesplit {
	enum ps_state	 state;
	pagesplit_cb	 cb;
	void		*arg;
	size_t		 max;
	size_t		 off;		/* bytes fed before this piece */
	size_t		 count;		/* elements handed to cb */
	int		 seen_value;
	enum ps_member	 member;

	/* The raw value being scanned. */
	enum ps_what	 what;
	unsigned	 depth;
	uint64_t	 arrays;	/* bit d: level d is an array */
	int		 in_str, esc;
	size_t		 cap_start;	/* where it starts in this piece */
	size_t		 cap_off;	/* where it starts in the body */
	struct buf	 cap;		/* its bytes from earlier pieces */

	char		 scalar[32];
	size_t		 nscalar;

	struct buf	 link;
	int		 has_link;
	char		 err[256];
};

struct pagesplit *
pagesplit_new(size_t max_element, pagesplit_cb cb, void *arg)
{
	struct pagesplit	*ps;

	ps = xcalloc(1, sizeof *ps);
	ps->max = max_element == 0 ? SIZE_MAX : max_element;
	ps->cb = cb;
	ps->arg = arg;
	buf_init(&ps->cap);
	buf_init(&ps->link);
	return ps;
}

void
pagesplit_free(struct pagesplit *ps)
{
	if (ps == NULL)
		return;
	buf_clear(&ps->cap);
	buf_clear(&ps->link);
	free(ps);
}

static int __attribute__((format(printf, 2, 3)))
ps_fail(struct pagesplit *ps, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(ps->err, sizeof ps->err, fmt, ap);
	va_end(ap);
	ps->state = PS_ERROR;
	return -1;
}

/* Start scanning a string or container at p[i] (not yet consumed). */
static void
ps_raw_begin(struct pagesplit *ps, enum ps_what what, size_t i)
{
	ps->state = PS_RAW;
	ps->what = what;
	ps->depth = 0;
	ps->in_str = ps->esc = 0;
	ps->cap_start = i;
	ps->cap_off = ps->off + i;
	buf_reset(&ps->cap);
}

static int
ps_too_big(struct pagesplit *ps)
{
	switch (ps->what) {
	case CAP_ELEM:
		return ps_fail(ps, "value[%zu] is larger than %zu bytes",
		    ps->count, ps->max);
	case CAP_LINK:
		return ps_fail(ps, "\"@odata.nextLink\" is longer than %zu "
		    "bytes", ps->max);
	default:
		return ps_fail(ps, "member name at byte %zu is longer than "
		    "%zu bytes", ps->cap_off, ps->max);
	}
}

/* A member name or the next link: one JSON string, checked. */
static int
ps_string(struct pagesplit *ps, const char *p, size_t len, struct jstr *s)
{
	struct jscan	 js;

	jscan_init(&js, p, len);
	if (jscan_string(&js, s) != 0 || jscan_end(&js) != 0)
		return ps_fail(ps, "invalid JSON at byte %zu: %s",
		    ps->cap_off + js.err_off, js.err);
	return 0;
}

/* A raw value is complete: p holds all len of its bytes. */
static int
ps_deliver(struct pagesplit *ps, const char *p, size_t len)
{
	struct jstr	 s;
	int		 r;

	switch (ps->what) {
	case CAP_NONE:
		ps->state = PS_NEXT;
		return 0;
	case CAP_KEY:
		if (ps_string(ps, p, len, &s) != 0)
			return -1;
		if (jstr_eq(&s, "value", 5))
			ps->member = M_VALUE;
		else if (jstr_eq(&s, "@odata.nextLink", 15))
			ps->member = M_LINK;
		else
			ps->member = M_OTHER;
		ps->state = PS_COLON;
		return 0;
	case CAP_LINK:
		if (ps_string(ps, p, len, &s) != 0)
			return -1;
		buf_reset(&ps->link);
		buf_reserve(&ps->link, s.len);
		ps->link.len = jscan_unescape(s.p, s.len, ps->link.data);
		ps->link.data[ps->link.len] = '\0';
		if (memchr(ps->link.data, '\0', ps->link.len) != NULL)
			return ps_fail(ps, "\"@odata.nextLink\" holds a NUL");
		ps->has_link = 1;
		ps->state = PS_NEXT;
		return 0;
	case CAP_ELEM:
		r = ps->cb(p, len, ps->arg);
		if (r != 0)
			return ps_fail(ps, "value[%zu] rejected (error %d)",
			    ps->count, r);
		ps->count++;
		ps->state = PS_ARRNEXT;
		return 0;
	}
	return 0;
}

/* The raw value ended just before p[end]. */
static int
ps_raw_end(struct pagesplit *ps, const char *p, size_t end)
{
	size_t	 len = end - ps->cap_start;
	int	 r;

	if (ps->what == CAP_NONE)
		return ps_deliver(ps, NULL, 0);
	if (ps->cap.len > ps->max || len > ps->max - ps->cap.len)
		return ps_too_big(ps);
	if (ps->cap.len == 0)
		return ps_deliver(ps, p + ps->cap_start, len);
	buf_add(&ps->cap, p + ps->cap_start, len);
	r = ps_deliver(ps, ps->cap.data, ps->cap.len);
	buf_reset(&ps->cap);
	return r;
}

/* Bytes that matter outside strings while scanning a raw value. */
static const unsigned char ps_special[256] = {
	['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1,
};

/*
 * Scan raw value bytes from p[*ip]: strings (escapes included) and bracket
 * nesting, with a type stack so that "{]" is caught.
 */
static int
ps_raw(struct pagesplit *ps, const char *p, size_t *ip, size_t n)
{
	const char	*q = NULL, *x;
	size_t		 i = *ip;
	unsigned	 isarr;
	int		 c;

	while (i < n) {
		if (ps->esc) {
			ps->esc = 0;
			i++;
			continue;
		}
		if (ps->in_str) {
			x = jscan_special(p + i, p + n, &q);
			if ((i = x - p) == n)
				break;
			i++;
			if (*x == '\\') {
				ps->esc = 1;
				continue;
			}
			ps->in_str = 0;
			if (ps->depth > 0)
				continue;
			*ip = i;
			return ps_raw_end(ps, p, i);
		}
		while (i < n && !ps_special[(unsigned char)p[i]])
			i++;
		if (i == n)
			break;
		c = (unsigned char)p[i++];
		if (c == '"')
			ps->in_str = 1;
		else if (c == '{' || c == '[') {
			if (ps->depth == JSCAN_MAXDEPTH)
				return ps_fail(ps, "invalid JSON at byte %zu: "
				    "nested deeper than %d", ps->off + i - 1,
				    JSCAN_MAXDEPTH);
			if (c == '[')
				ps->arrays |= (uint64_t)1 << ps->depth;
			else
				ps->arrays &= ~((uint64_t)1 << ps->depth);
			ps->depth++;
		} else if (c == '}' || c == ']') {
			isarr = (ps->arrays >> (ps->depth - 1)) & 1;
			if (isarr != (c == ']'))
				return ps_fail(ps, "invalid JSON at byte %zu: "
				    "unexpected '%c'", ps->off + i - 1, c);
			if (--ps->depth == 0) {
				*ip = i;
				return ps_raw_end(ps, p, i);
			}
		}
	}
	*ip = n;
	return 0;
}

static int
ps_scalar_char(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || c == '.' || c == '+' || c == '-';
}

/* A skipped number or literal ended before p[i]: check it. */
static int
ps_scalar_end(struct pagesplit *ps, size_t i)
{
	struct jscan	 js;

	jscan_init(&js, ps->scalar, ps->nscalar);
	if (jscan_skip(&js) != 0 || jscan_end(&js) != 0)
		return ps_fail(ps, "invalid JSON at byte %zu: %s",
		    ps->off + i - ps->nscalar + js.err_off, js.err);
	ps->state = PS_NEXT;
	return 0;
}

/* A member's value starts at p[i]. */
static int
ps_value(struct pagesplit *ps, int c, size_t i)
{
	size_t	 at = ps->off + i;

	switch (ps->member) {
	case M_VALUE:
		if (ps->seen_value)
			return ps_fail(ps, "second \"value\" member at byte "
			    "%zu", at);
		if (c != '[')
			return ps_fail(ps, "\"value\" is not an array "
			    "(byte %zu)", at);
		ps->seen_value = 1;
		ps->state = PS_ARRAY;
		return 1;
	case M_LINK:
		if (c == '"') {
			ps_raw_begin(ps, CAP_LINK, i);
			return 0;
		}
		if (c != 'n')
			return ps_fail(ps, "\"@odata.nextLink\" is not a "
			    "string (byte %zu)", at);
		break;
	case M_OTHER:
		if (c == '"' || c == '{' || c == '[') {
			ps_raw_begin(ps, CAP_NONE, i);
			return 0;
		}
		break;
	}
	if (!ps_scalar_char(c))
		return ps_fail(ps, "invalid JSON at byte %zu: unexpected "
		    "character", at);
	ps->nscalar = 0;
	ps->state = PS_SCALAR;
	return 0;
}

/*
 * One envelope byte c at p[i] (never white space): returns 1 if consumed,
 * 0 if a new state reads it, -1 on error.
 */
static int
ps_envelope(struct pagesplit *ps, int c, size_t i)
{
	size_t	 at = ps->off + i;

	switch (ps->state) {
	case PS_START:
		if (c != '{')
			return ps_fail(ps, "not JSON: expected '{' at byte %zu",
			    at);
		ps->state = PS_OBJ;
		return 1;
	case PS_OBJ:
		if (c == '}') {
			ps->state = PS_DONE;
			return 1;
		}
		/* FALLTHROUGH */
	case PS_KEY:
		if (c != '"')
			return ps_fail(ps, "invalid JSON at byte %zu: expected "
			    "a member name", at);
		ps_raw_begin(ps, CAP_KEY, i);
		return 0;
	case PS_COLON:
		if (c != ':')
			return ps_fail(ps, "invalid JSON at byte %zu: expected "
			    "':'", at);
		ps->state = PS_VALUE;
		return 1;
	case PS_VALUE:
		return ps_value(ps, c, i);
	case PS_ARRAY:
		if (c == ']') {
			ps->state = PS_NEXT;
			return 1;
		}
		/* FALLTHROUGH */
	case PS_ELEM:
		if (c != '{')
			return ps_fail(ps, "value[%zu] is not an object "
			    "(byte %zu)", ps->count, at);
		ps_raw_begin(ps, CAP_ELEM, i);
		return 0;
	case PS_ARRNEXT:
		if (c != ',' && c != ']')
			return ps_fail(ps, "invalid JSON at byte %zu: expected "
			    "',' or ']' after value[%zu]", at, ps->count - 1);
		ps->state = c == ',' ? PS_ELEM : PS_NEXT;
		return 1;
	case PS_NEXT:
		if (c != ',' && c != '}')
			return ps_fail(ps, "invalid JSON at byte %zu: expected "
			    "',' or '}'", at);
		ps->state = c == ',' ? PS_KEY : PS_DONE;
		return 1;
	case PS_DONE:
		return ps_fail(ps, "trailing garbage after the envelope at "
		    "byte %zu", at);
	default:
		return ps_fail(ps, "internal error: state %d", ps->state);
	}
}

int
pagesplit_feed(struct pagesplit *ps, const char *p, size_t n)
{
	size_t	 i = 0;
	int	 c, r;

	if (ps->state == PS_ERROR)
		return -1;
	ps->cap_start = 0;
	while (i < n) {
		c = (unsigned char)p[i];
		if (ps->state == PS_RAW) {
			if (ps_raw(ps, p, &i, n) != 0)
				return -1;
		} else if (ps->state == PS_SCALAR) {
			if (!ps_scalar_char(c)) {
				if (ps_scalar_end(ps, i) != 0)
					return -1;
			} else if (ps->nscalar == sizeof ps->scalar) {
				return ps_fail(ps, "invalid JSON at byte %zu: "
				    "number too long", ps->off + i);
			} else {
				ps->scalar[ps->nscalar++] = (char)c;
				i++;
			}
		} else if (IS_WS(c))
			i++;
		else if ((r = ps_envelope(ps, c, i)) < 0)
			return -1;
		else
			i += r;
	}
	if (ps->state == PS_RAW && ps->what != CAP_NONE) {
		if (ps->cap.len > ps->max ||
		    n - ps->cap_start > ps->max - ps->cap.len)
			return ps_too_big(ps);
		buf_add(&ps->cap, p + ps->cap_start, n - ps->cap_start);
	}
	ps->off += n;
	return 0;
}

int
pagesplit_finish(struct pagesplit *ps)
{
	switch (ps->state) {
	case PS_ERROR:
		return -1;
	case PS_DONE:
		if (!ps->seen_value)
			return ps_fail(ps, "no \"value\" array in response");
		return 0;
	case PS_START:
		return ps_fail(ps, "not JSON: empty body");
	case PS_RAW:
		if (ps->what == CAP_ELEM)
			return ps_fail(ps, "body ended inside value[%zu]",
			    ps->count);
		break;
	case PS_ARRAY:
	case PS_ELEM:
	case PS_ARRNEXT:
		return ps_fail(ps, "body ended inside the \"value\" array "
		    "after %zu elements", ps->count);
	default:
		break;
	}
	return ps_fail(ps, "body ended inside the envelope at byte %zu",
	    ps->off);
}

const char *
pagesplit_error(const struct pagesplit *ps)
{
	return ps->state == PS_ERROR ? ps->err : NULL;
}

const char *
pagesplit_next_link(const struct pagesplit *ps)
{
	return ps->has_link ? ps->link.data : NULL;
}

size_t
pagesplit_count(const struct pagesplit *ps)
{
	return ps->count;
}
