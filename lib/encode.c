/*
 * Event bodies: one alert or incident as a CEF, LEEF or JSON message
 * shortened to a size limit, and event_encode and incident_encode, which
 * put the syslog header in front.
 */

#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "log.h"

#define VENDOR_HDR	"Microsoft|Microsoft Defender for Endpoint|1.0|"
#define CEF_PREFIX	"CEF:0|" VENDOR_HDR
#define LEEF_PREFIX	"LEEF:2.0|" VENDOR_HDR
/* Incidents: the class is fixed, so it is part of the prefix. */
#define XDR_HDR		"Microsoft|Microsoft Defender XDR|1.0|incident|"
#define CEF_XDR_PREFIX	"CEF:0|" XDR_HDR
#define LEEF_XDR_PREFIX	"LEEF:2.0|" XDR_HDR "^|"
#define LEEF_DELIM	'^'
#define ALERT_LINK	"https://security.microsoft.com/alerts/"
#define JSON_SCHEMA	"alertrelay.alert.v1"
#define JSON_SCHEMA_INC	"alertrelay.incident.v1"
#define MAX_FIELDS	48

static const char replacement[] = "\xef\xbf\xbd";	/* U+FFFD */

/*
 * CEF and LEEF share one record: the values of an alert sanitised into one
 * scratch buffer, each with how much of it survives shortening.  Sizes are
 * measured escaped, values are cut unescaped (so never mid-escape) and on a
 * code point, and only then escaped into the output.
 */
enum esc {
	ESC_CEF_HDR,
	ESC_CEF_EXT,
	ESC_LEEF_HDR,
	ESC_LEEF,
};

#define F_HDR	0x01	/* a header field, not a key=value pair */
#define F_ATOM	0x02	/* number, address, hash, id: dropped, never cut */
#define F_MSG	0x04	/* the description: shortened first */
#define F_NAME	0x08	/* the title: cut after other text */
#define F_CLASS	0x10	/* the event class: header, "alert" when empty */
#define F_KEY	0x20	/* with F_ATOM: identifies the event, dropped last */
#define F_TEXT	0x40	/* a step: plain text, name and class together */
#define F_LIST	0x80	/* items joined with ",": loses whole items */

struct field {
	const char	*key;
	const char	*lkey;		/* label key ("cs1Label") or NULL */
	const char	*label;
	int		 flags;
	size_t		 extra;		/* "key=", separator, label pair */
	size_t		 off, len;	/* sanitised value in san */
	size_t		 cut;		/* bytes of it kept */
	size_t		 esc;		/* escaped size of those */
};

struct rec {
	int		 leef;
	const char	*prefix;	/* up to the first header field */
	struct buf	 san;
	struct field	 f[MAX_FIELDS];
	size_t		 n;
	size_t		 fixed;		/* bytes outside the fields */
};

static struct rec	 scratch_rec;	/* reused: the daemon is one thread */
static struct buf	 scratch_tmp;

void
encode_cleanup(void)
{
	buf_clear(&scratch_rec.san);
	buf_clear(&scratch_tmp);
}

static enum esc
field_esc(const struct rec *r, const struct field *f)
{
	if (r->leef)
		return (f->flags & F_HDR ? ESC_LEEF_HDR : ESC_LEEF);
	return (f->flags & F_HDR ? ESC_CEF_HDR : ESC_CEF_EXT);
}

/* Bytes each byte takes once escaped, per escaping (built on first use). */
static unsigned char	 esc_widths[ESC_LEEF + 1][256];

static void
esc_init(void)
{
	size_t	 e, c;

	if (esc_widths[0][0] != 0)
		return;
	for (e = 0; e <= ESC_LEEF; e++) {
		for (c = 0; c < 256; c++)
			esc_widths[e][c] = 1;
	}
	esc_widths[ESC_CEF_HDR]['\\'] = esc_widths[ESC_CEF_HDR]['|'] = 2;
	esc_widths[ESC_CEF_EXT]['\\'] = esc_widths[ESC_CEF_EXT]['='] = 2;
	esc_widths[ESC_CEF_EXT]['\n'] = esc_widths[ESC_CEF_EXT]['\r'] = 2;
}

/*
 * Longest prefix of the sanitised s that escapes to at most budget bytes.
 * Escapes are ASCII, so the cut can only be inside a multibyte character.
 */
static size_t
esc_cut(enum esc e, const char *s, size_t len, size_t budget, size_t *used)
{
	const unsigned char	*w8 = esc_widths[e];
	size_t			 i, cost = 0, w;

	if (e >= ESC_LEEF_HDR) {		/* one byte per byte */
		i = budget >= len ? len : utf8_prefix(s, len, budget);
		*used = i;
		return (i);
	}
	for (i = 0; i < len; i++) {
		w = w8[(unsigned char)s[i]];
		if (cost + w > budget)
			break;
		cost += w;
	}
	if (i < len) {
		i = utf8_prefix(s, len, i);
		for (cost = 0, w = 0; w < i; w++)
			cost += w8[(unsigned char)s[w]];
	}
	*used = cost;
	return (i);
}

/*
 * LEEF defines no escapes at all, so (our policy, wire-formats.md §2.1)
 * the delimiter "^", CR, LF and TAB in a value, and "|" in the header,
 * become spaces.  "=" and backslashes stay: parsers split on "^" first.
 */
static void
leef_escape(struct buf *out, const char *s, size_t len, int hdr)
{
	char	*o;
	size_t	 i;

	buf_reserve(out, len);
	o = out->data + out->len;
	for (i = 0; i < len; i++) {
		if (s[i] == LEEF_DELIM || s[i] == '\r' || s[i] == '\n' ||
		    s[i] == '\t' || (hdr && s[i] == '|'))
			*o++ = ' ';
		else
			*o++ = s[i];
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
}

static void
field_cap(struct rec *r, struct field *f, size_t budget)
{
	const char	*v = r->san.data + f->off, *c;
	size_t		 n;

	f->cut = esc_cut(field_esc(r, f), v, f->len, budget, &f->esc);
	if (!(f->flags & F_LIST) || f->cut == f->len || v[f->cut] == ',')
		return;
	/* A cut list keeps whole items: a cut id would look like another. */
	c = memrchr(v, ',', f->cut);
	n = c == NULL ? 0 : (size_t)(c - v);
	f->cut = esc_cut(field_esc(r, f), v, n, SIZE_MAX, &f->esc);
}

/* Bytes f adds to the message. */
static size_t
field_size(const struct field *f)
{
	if (f->flags & F_HDR) {
		if (f->cut == 0)
			return (f->flags & F_CLASS ? 5 : 1); /* alert, - */
		return (f->esc);
	}
	return (f->cut == 0 ? 0 : f->extra + f->esc);
}

static size_t
rec_size(const struct rec *r)
{
	size_t	 i, n = r->fixed;
	int	 any = 0;

	for (i = 0; i < r->n; i++) {
		n += field_size(&r->f[i]);
		if (!(r->f[i].flags & F_HDR) && r->f[i].cut > 0)
			any = 1;
	}
	return (any ? n - 1 : n);	/* no separator after the last */
}

static struct field *
rec_add(struct rec *r, const char *key, int flags)
{
	struct field	*f;

	if (r->n == MAX_FIELDS)
		fatalx("%s: too many fields", __func__);
	f = &r->f[r->n++];
	memset(f, 0, sizeof(*f));
	f->key = key;
	f->flags = flags;
	f->off = r->san.len;
	if (!(flags & F_HDR))
		f->extra = strlen(key) + 2;	/* "=" and a separator */
	return (f);
}

/* The value of f is complete in san: keep it, or drop it when empty. */
static struct field *
rec_done(struct rec *r, struct field *f)
{
	f->len = r->san.len - f->off;
	if (f->len == 0 && !(f->flags & F_HDR)) {
		r->n--;
		return (NULL);
	}
	field_cap(r, f, SIZE_MAX);
	return (f);
}

static void
field_label(struct field *f, const char *lkey, const char *label)
{
	if (f == NULL)
		return;
	f->lkey = lkey;
	f->label = label;
	f->extra += strlen(lkey) + strlen(label) + 2;
}

static struct field *
rec_str(struct rec *r, const char *key, int flags, const char *p, size_t len)
{
	struct field	*f;

	if ((p == NULL || len == 0) && !(flags & F_HDR))
		return (NULL);
	f = rec_add(r, key, flags);
	if (p != NULL)
		sanitize_utf8(&r->san, p, len);
	return (rec_done(r, f));
}

static struct field *
rec_astr(struct rec *r, const char *key, int flags, const struct astr *s)
{
	return (rec_str(r, key, flags, s->p, s->len));
}

static struct field *
rec_int(struct rec *r, const char *key, int flags, long long v)
{
	struct field	*f;
	char		 tmp[24], *p = tmp + sizeof(tmp);
	unsigned long long u = v < 0 ? 0 - (unsigned long long)v :
			    (unsigned long long)v;

	f = rec_add(r, key, F_ATOM | flags);
	do {
		*--p = (char)('0' + u % 10);
	} while ((u /= 10) != 0);
	if (v < 0)
		*--p = '-';
	buf_add(&r->san, p, (size_t)(tmp + sizeof(tmp) - p));
	return (rec_done(r, f));
}

/* A time stamp as epoch milliseconds, the form CEF and LEEF both take. */
static struct field *
rec_ms(struct rec *r, const char *key, int flags, int64_t ticks)
{
	int64_t	 ms;

	if (ticks == TICKS_NONE)
		return (NULL);
	ms = ticks / TICKS_PER_MS;
	if (ticks % TICKS_PER_MS < 0)
		ms--;
	return (rec_int(r, key, flags, ms));
}

/* A CEF number (cn1..): only when the text is a decimal integer. */
static struct field *
rec_number(struct rec *r, const char *key, const struct astr *s)
{
	size_t	 i;

	if (s->p == NULL || s->len == 0 || s->len > 19)
		return (NULL);
	for (i = 0; i < s->len; i++) {
		if (s->p[i] < '0' || s->p[i] > '9')
			return (NULL);
	}
	return (rec_str(r, key, F_ATOM, s->p, s->len));
}

/* The evidence IP: CEF keeps IPv4 (src) and IPv6 (c6a2) apart. */
static void
rec_ip(struct rec *r, const struct astr *ip)
{
	char		 tmp[INET6_ADDRSTRLEN + 1];
	unsigned char	 bin[16];

	if (ip->p == NULL || ip->len == 0 || ip->len >= sizeof(tmp))
		return;
	memcpy(tmp, ip->p, ip->len);
	tmp[ip->len] = '\0';
	if (strlen(tmp) != ip->len)
		return;
	if (inet_pton(AF_INET, tmp, bin) == 1)
		rec_str(r, "src", F_ATOM, tmp, ip->len);
	else if (inet_pton(AF_INET6, tmp, bin) == 1)
		rec_str(r, r->leef ? "src" : "c6a2", F_ATOM, tmp, ip->len);
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
static void
url_encode(struct buf *out, const char *s, size_t len)
{
	static const char	 hex[] = "0123456789ABCDEF";
	unsigned char		 c;
	size_t			 i;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~')
			buf_addc(out, (char)c);
		else {
			buf_addc(out, '%');
			buf_addc(out, hex[c >> 4]);
			buf_addc(out, hex[c & 15]);
		}
	}
}

/* The tenant id: the event's own (aadTenantId), else the configured one. */
static void
tenant_id(const struct astr *own, const struct event_meta *m,
    const char **p, size_t *len)
{
	*p = NULL;
	*len = 0;
	if (own->p != NULL && own->len > 0) {
		*p = own->p;
		*len = own->len;
	} else if (m->tenant_id != NULL) {
		*p = m->tenant_id;
		*len = strlen(m->tenant_id);
	}
}

/* flexString1: the alert's page in the Defender portal. */
static void
rec_link(struct rec *r, const struct alert *a, const struct event_meta *m)
{
	struct field	*f;
	const char	*tid;
	size_t		 tlen;

	if (a->id.p == NULL || a->id.len == 0)
		return;
	f = rec_add(r, "flexString1", F_ATOM);
	buf_adds(&r->san, ALERT_LINK);
	url_encode(&r->san, a->id.p, a->id.len);
	tenant_id(&a->aad_tenant_id, m, &tid, &tlen);
	if (tlen > 0) {
		buf_adds(&r->san, "?tid=");
		url_encode(&r->san, tid, tlen);
	}
	field_label(rec_done(r, f), "flexString1Label", "AlertLink");
}

/* flexString2: classification and determination joined with "/". */
static void
rec_classification(struct rec *r, const struct astr *c, const struct astr *d)
{
	struct field	*f;

	f = rec_add(r, "flexString2", 0);
	if (c->p != NULL)
		sanitize_utf8(&r->san, c->p, c->len);
	if (c->p != NULL && c->len > 0 && d->p != NULL && d->len > 0)
		buf_addc(&r->san, '/');
	if (d->p != NULL)
		sanitize_utf8(&r->san, d->p, d->len);
	field_label(rec_done(r, f), "flexString2Label", "Classification");
}

/* Start an empty record; hdr: bytes of header separators after prefix. */
static void
rec_begin(struct rec *r, int leef, const char *prefix, size_t hdr)
{
	esc_init();
	r->leef = leef;
	r->prefix = prefix;
	r->n = 0;
	buf_reset(&r->san);
	buf_reserve(&r->san, 1);	/* fields point into it, even empty */
	r->fixed = strlen(prefix) + hdr;
}

/* cs2 (the customer) and cs3 (own tenant id, else the configured one). */
static void
rec_tenant(struct rec *r, const struct astr *own, const struct event_meta *m)
{
	const char	*label, *tid;
	size_t		 tlen;

	label = m->tenant_label != NULL ? m->tenant_label : m->tenant_name;
	field_label(rec_str(r, "cs2", 0, label, label ? strlen(label) : 0),
	    "cs2Label", "Customer");
	tenant_id(own, m, &tid, &tlen);
	field_label(rec_str(r, "cs3", F_ATOM, tid, tlen), "cs3Label",
	    "TenantId");
}

/* The record's fields in SPEC order; LEEF's own keys where it has one. */
static void
rec_build(struct rec *r, const struct alert *a, const struct event_meta *m,
    int leef)
{
	const struct astr	*cls = NULL;
	int			 sev = cef_severity(a->severity);

	if (leef)
		rec_begin(r, 1, LEEF_PREFIX, 3);	/* |^| */
	else
		rec_begin(r, 0, CEF_PREFIX, 4);		/* "|", "|N|" */

	if (a->detector_id.p != NULL && a->detector_id.len > 0)
		cls = &a->detector_id;
	else if (a->category.p != NULL && a->category.len > 0)
		cls = &a->category;
	rec_str(r, "class", F_HDR | F_CLASS, cls ? cls->p : NULL,
	    cls ? cls->len : 0);
	if (!leef)
		rec_astr(r, "name", F_HDR | F_NAME, &a->title);

	rec_ms(r, leef ? "devTime" : "rt", F_KEY, a->last_update);
	if (leef) {
		/* LEEF's sev is 1..10: unspecified maps to the lowest. */
		rec_int(r, "sev", F_KEY, sev > 0 ? sev : 1);
		rec_astr(r, "name", F_NAME, &a->title);
	}
	rec_ms(r, "start", 0, a->first_event);
	rec_ms(r, "end", 0, a->last_event);
	field_label(rec_ms(r, "deviceCustomDate1", 0, a->creation),
	    "deviceCustomDate1Label", "AlertCreationTime");
	rec_astr(r, "externalId", F_ATOM | F_KEY, &a->id);
	rec_str(r, "act", F_ATOM | F_KEY, m->updated ? "updated" : "created",
	    7);
	rec_astr(r, "cat", 0, &a->category);
	rec_astr(r, "sourceServiceName", 0, &a->detection_source);
	rec_astr(r, "msg", F_MSG, &a->description);
	rec_astr(r, leef ? "identHostName" : "shost", 0,
	    &a->computer_dns_name);
	rec_astr(r, "deviceExternalId", F_ATOM, &a->machine_id);
	rec_astr(r, leef ? "usrName" : "suser", 0, &a->user_name);
	rec_astr(r, "sntdom", 0, &a->domain_name);
	rec_astr(r, "fname", 0, &a->file_name);
	rec_astr(r, "filePath", 0, &a->file_path);
	rec_astr(r, "fileHash", F_ATOM, &a->sha1);
	rec_ip(r, &a->ip_address);
	rec_astr(r, "request", 0, &a->url);

	field_label(rec_astr(r, "cs1", 0, &a->threat_name), "cs1Label",
	    "ThreatName");
	rec_tenant(r, &a->aad_tenant_id, m);
	field_label(rec_astr(r, "cs4", 0, &a->status), "cs4Label", "Status");
	field_label(rec_astr(r, "cs5", 0, &a->mitre), "cs5Label",
	    "MitreTechniques");
	field_label(rec_astr(r, "cs6", F_ATOM, &a->sha256), "cs6Label",
	    "Sha256");
	field_label(rec_number(r, "cn1", &a->incident_id), "cn1Label",
	    "IncidentId");
	field_label(rec_number(r, "cn2", &a->investigation_id), "cn2Label",
	    "InvestigationId");
	/*
	 * cn3 is always sent, 0 included: alerts are fetched with
	 * $expand=evidence, so "no evidence" is a fact worth forwarding.
	 */
	field_label(rec_int(r, "cn3", 0, (long long)a->evidence_count),
	    "cn3Label", "EvidenceCount");
	rec_link(r, a, m);
	rec_classification(r, &a->classification, &a->determination);
}

/* Is inc a merged incident (forwarded as updated, with cs6)? */
static int
incident_merged(const struct incident *inc)
{
	return (inc->redirect_id.p != NULL && inc->redirect_id.len > 0);
}

/* An incident's record (SPEC §4 "Incidents"), as rec_build for alerts. */
static void
rec_build_incident(struct rec *r, const struct incident *inc,
    const struct event_meta *m, int leef)
{
	int	 sev = cef_severity(inc->severity), upd;

	upd = m->updated || incident_merged(inc);
	if (leef)
		rec_begin(r, 1, LEEF_XDR_PREFIX, 0);
	else {
		rec_begin(r, 0, CEF_XDR_PREFIX, 3);	/* "|N|" */
		rec_astr(r, "name", F_HDR | F_NAME, &inc->display_name);
	}
	rec_ms(r, leef ? "devTime" : "rt", F_KEY, inc->last_update);
	if (leef) {
		rec_int(r, "sev", F_KEY, sev > 0 ? sev : 1);
		rec_astr(r, "name", F_NAME, &inc->display_name);
	}
	rec_ms(r, "start", 0, inc->created);
	rec_astr(r, "externalId", F_ATOM | F_KEY, &inc->id);
	rec_str(r, "act", F_ATOM | F_KEY, upd ? "updated" : "created", 7);
	rec_astr(r, "msg", F_MSG, &inc->description);
	field_label(rec_astr(r, "cs1", 0, &inc->assigned_to), "cs1Label",
	    "AssignedTo");
	rec_tenant(r, &inc->tenant_id, m);
	field_label(rec_astr(r, "cs4", 0, &inc->status), "cs4Label", "Status");
	if (inc->alerts_known) {
		field_label(rec_str(r, "cs5", F_LIST, inc->alert_ids.data,
		    inc->alert_ids.len), "cs5Label", "AlertIds");
	}
	field_label(rec_astr(r, "cs6", F_ATOM, &inc->redirect_id), "cs6Label",
	    "RedirectIncidentId");
	if (inc->alerts_known) {
		field_label(rec_int(r, "cn1", 0, (long long)inc->alert_count),
		    "cn1Label", "AlertCount");
	}
	field_label(rec_astr(r, "flexString1", F_ATOM, &inc->web_url),
	    "flexString1Label", "IncidentLink");
	rec_classification(r, &inc->classification, &inc->determination);
}

/* Is f shortened in the step that shortens "which" (0: plain text)? */
static int
field_in_step(const struct field *f, int which)
{
	if (which == 0)
		return ((f->flags & (F_HDR | F_ATOM | F_MSG | F_NAME)) == 0);
	if (which == F_TEXT)
		return (field_in_step(f, 0) || (f->flags & (F_NAME | F_CLASS)));
	return ((f->flags & which) != 0);
}

static void
rec_cap(struct rec *r, int which, size_t cap)
{
	size_t	 i;

	for (i = 0; i < r->n; i++) {
		if (field_in_step(&r->f[i], which))
			field_cap(r, &r->f[i], cap);
	}
}

/*
 * Cut the values of one step to the largest common escaped length that
 * lets the record fit, so the longest values lose the most.  The size grows
 * with the cap, hence the bisection.  Returns 1 when the record fits.
 */
static int
rec_level(struct rec *r, int which, size_t max)
{
	size_t	 i, lo = 0, hi = 0, mid;

	rec_cap(r, which, SIZE_MAX);	/* from whole values */
	for (i = 0; i < r->n; i++) {
		if (field_in_step(&r->f[i], which) && r->f[i].esc >= hi)
			hi = r->f[i].esc + 1;	/* cap hi cuts nothing */
	}
	rec_cap(r, which, 0);
	if (rec_size(r) > max)
		return (0);
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		rec_cap(r, which, mid);
		if (rec_size(r) <= max)
			lo = mid;
		else
			hi = mid;
	}
	rec_cap(r, which, lo);
	return (1);
}

/* Drop whole atoms, longest first, until the record fits; 1 when it does. */
static int
rec_drop(struct rec *r, int key, size_t max)
{
	struct field	*f, *big;
	size_t		 i;

	while (rec_size(r) > max) {
		big = NULL;
		for (i = 0; i < r->n; i++) {
			f = &r->f[i];
			if ((f->flags & F_ATOM) && (f->flags & F_KEY) == key &&
			    f->cut > 0 && (big == NULL || f->esc > big->esc))
				big = f;
		}
		if (big == NULL)
			return (0);
		big->cut = big->esc = 0;
	}
	return (1);
}

/*
 * Shorten the record to max bytes: the description first, then the other
 * text values (longest first); when the name and class alone are too long,
 * all text together, so that a huge title cannot erase the short values
 * (the customer, host, user).  When atoms leave no room even for that,
 * drop numbers, hashes and links, and only then the time, id and action,
 * which identify the event, and level the text into what is left.  0 when
 * it fits.
 */
static int
rec_fit(struct rec *r, size_t max)
{
	struct field	*f;
	size_t		 i, total, excess;

	if ((total = rec_size(r)) <= max)
		return (0);
	for (i = 0; i < r->n; i++) {
		f = &r->f[i];
		if (!(f->flags & F_MSG))
			continue;
		excess = total - max;
		field_cap(r, f, f->esc > excess ? f->esc - excess : 0);
		if (rec_size(r) <= max)
			return (0);
	}
	if (rec_level(r, 0, max) || rec_level(r, F_TEXT, max))
		return (0);
	/*
	 * Even without text it is too long: drop atoms, then keys, until it
	 * fits, and level the text into the room left.
	 */
	if (rec_drop(r, 0, max) || rec_drop(r, F_KEY, max))
		return (rec_level(r, F_TEXT, max) ? 0 : -1);
	return (-1);
}

static void
field_emit(const struct rec *r, const struct field *f, struct buf *out)
{
	const char	*v = r->san.data + f->off;

	if (f->cut == 0) {
		buf_adds(out, f->flags & F_CLASS ? "alert" : "-");
		return;
	}
	switch (field_esc(r, f)) {
	case ESC_CEF_HDR:
		cef_escape_header(out, v, f->cut);
		break;
	case ESC_CEF_EXT:
		cef_escape_ext(out, v, f->cut);
		break;
	case ESC_LEEF_HDR:
		leef_escape(out, v, f->cut, 1);
		break;
	case ESC_LEEF:
		leef_escape(out, v, f->cut, 0);
		break;
	}
}

static void
rec_emit(const struct rec *r, struct buf *out, int sev)
{
	const struct field	*f;
	size_t			 i;
	char			 sep = r->leef ? LEEF_DELIM : ' ';
	int			 first = 1;

	buf_reserve(out, rec_size(r));
	buf_adds(out, r->prefix);
	for (i = 0; i < r->n; i++) {
		f = &r->f[i];
		if (f->flags & F_HDR) {
			field_emit(r, f, out);
			buf_addc(out, '|');
			if ((f->flags & F_NAME) && !r->leef) {
				buf_addc(out, (char)('0' + sev));
				buf_addc(out, '|');
			} else if (r->leef) {
				buf_addc(out, LEEF_DELIM);
				buf_addc(out, '|');
			}
			continue;
		}
		if (f->cut == 0)
			continue;
		if (!first)
			buf_addc(out, sep);
		first = 0;
		buf_adds(out, f->key);
		buf_addc(out, '=');
		field_emit(r, f, out);
		if (f->lkey != NULL) {
			buf_addc(out, sep);
			buf_adds(out, f->lkey);
			buf_addc(out, '=');
			buf_adds(out, f->label);
		}
	}
}

void
cef_encode(struct buf *out, const struct alert *a,
    const struct event_meta *m, size_t max)
{
	struct rec	*r = &scratch_rec;

	rec_build(r, a, m, 0);
	if (rec_fit(r, max) == 0)
		rec_emit(r, out, cef_severity(a->severity));
}

void
leef_encode(struct buf *out, const struct alert *a,
    const struct event_meta *m, size_t max)
{
	struct rec	*r = &scratch_rec;

	rec_build(r, a, m, 1);
	if (rec_fit(r, max) == 0)
		rec_emit(r, out, cef_severity(a->severity));
}

void
cef_encode_incident(struct buf *out, const struct incident *inc,
    const struct event_meta *m, size_t max)
{
	struct rec	*r = &scratch_rec;

	rec_build_incident(r, inc, m, 0);
	if (rec_fit(r, max) == 0)
		rec_emit(r, out, cef_severity(inc->severity));
}

void
leef_encode_incident(struct buf *out, const struct incident *inc,
    const struct event_meta *m, size_t max)
{
	struct rec	*r = &scratch_rec;

	rec_build_incident(r, inc, m, 1);
	if (rec_fit(r, max) == 0)
		rec_emit(r, out, cef_severity(inc->severity));
}

/* Append s (sanitised UTF-8) as a JSON string. */
static void
json_quote(struct buf *out, const char *s, size_t len)
{
	size_t	 i;

	buf_reserve(out, len * 2 + 2);
	buf_addc(out, '"');
	for (i = 0; i < len; i++) {
		switch (s[i]) {
		case '"':
		case '\\':
			buf_addc(out, '\\');
			buf_addc(out, s[i]);
			break;
		case '\n':
			buf_add(out, "\\n", 2);
			break;
		case '\r':
			buf_add(out, "\\r", 2);
			break;
		case '\t':
			buf_add(out, "\\t", 2);
			break;
		default:
			buf_addc(out, s[i]);
			break;
		}
	}
	buf_addc(out, '"');
}

static void
json_add_str(struct buf *out, const char *s)
{
	if (s == NULL) {
		buf_adds(out, "null");
		return;
	}
	buf_reset(&scratch_tmp);
	sanitize_utf8(&scratch_tmp, s, strlen(s));
	json_quote(out, scratch_tmp.data, scratch_tmp.len);
}

static int
hex4(const unsigned char *s, size_t len, unsigned *cp)
{
	size_t	 i;
	unsigned v = 0;

	if (len < 4)
		return (0);
	for (i = 0; i < 4; i++) {
		v <<= 4;
		if (s[i] >= '0' && s[i] <= '9')
			v |= s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			v |= s[i] - 'a' + 10;
		else if (s[i] >= 'A' && s[i] <= 'F')
			v |= s[i] - 'A' + 10;
		else
			return (0);
	}
	*cp = v;
	return (1);
}

/* Printable ASCII but '"' and '\\': copied as is inside JSON strings. */
static const unsigned char str_plain[256] = {
	[0x20] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* " */
	[0x30] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	[0x40] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	[0x50] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* backslash */
	[0x60] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	[0x70] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,  /* DEL */
};

/* Append U+FFFD at o; returns the new end. */
static inline char *
put_replacement(char *o)
{
	memcpy(o, replacement, 3);
	return (o + 3);
}

/*
 * Copy one escape sequence of a JSON string to *o; returns bytes consumed.
 * Escapes of control characters and lone surrogates become U+FFFD, as the
 * same values do in CEF.
 */
static size_t
json_copy_escape(char **o, const unsigned char *s, size_t len)
{
	unsigned	 cp, lo;
	size_t		 n = 0;

	if (len < 2) {
		*o = put_replacement(*o);
		return (len);
	}
	switch (s[1]) {
	case '"':
	case '\\':
	case '/':
	case 'n':
	case 'r':
	case 't':
		n = 2;
		break;
	case 'b':
	case 'f':
		*o = put_replacement(*o);
		return (2);
	case 'u':
		if (!hex4(s + 2, len - 2, &cp))
			break;
		n = 6;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (len >= 12 && s[6] == '\\' && s[7] == 'u' &&
			    hex4(s + 8, len - 8, &lo) &&
			    lo >= 0xdc00 && lo <= 0xdfff)
				n = 12;
			else {
				*o = put_replacement(*o);
				return (6);
			}
		} else if ((cp >= 0xdc00 && cp <= 0xdfff) || (cp < 0x20 &&
		    cp != '\t' && cp != '\n' && cp != '\r') ||
		    (cp >= 0x7f && cp <= 0x9f)) {
			*o = put_replacement(*o);
			return (6);
		}
		break;
	}
	if (n == 0) {
		/* A malformed escape: replace the backslash, keep the rest. */
		*o = put_replacement(*o);
		return (1);
	}
	memcpy(*o, s, n);
	*o += n;
	return (n);
}

/*
 * Copy the body of a JSON string after its opening quote, closing quote
 * included, to *o; returns bytes consumed.  Valid text is copied as is.
 */
static size_t
json_copy_string(char **o, const unsigned char *s, size_t len)
{
	size_t	 i = 0, j, n;
	int	 ok;

	while (i < len) {
		for (j = i; j < len && str_plain[s[j]]; j++)
			;
		memcpy(*o, s + i, j - i);
		*o += j - i;
		if ((i = j) == len)
			break;
		if (s[i] == '"') {
			*(*o)++ = '"';
			return (i + 1);
		}
		if (s[i] == '\\') {
			i += json_copy_escape(o, s + i, len - i);
			continue;
		}
		if (s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			*(*o)++ = '\\';
			*(*o)++ = s[i] == '\t' ? 't' : s[i] == '\n' ? 'n' : 'r';
			i++;
			continue;
		}
		n = utf8_seq(s + i, len - i, &ok);
		if (!ok || n == 1 || (s[i] == 0xc2 && s[i + 1] < 0xa0))
			*o = put_replacement(*o);
		else {
			memcpy(*o, s + i, n);
			*o += n;
		}
		i += n;
	}
	*(*o)++ = '"';
	return (len);
}

/*
 * Copy the alert object as received, on one line: whitespace between
 * tokens goes (API output may be pretty-printed), strings are sanitised
 * only where they need it.  No input byte yields more than 3 output bytes.
 */
static void
json_copy_alert(struct buf *out, const char *raw, size_t len)
{
	const unsigned char	*s = (const unsigned char *)raw;
	size_t			 i = 0, j;
	char			*o;

	if (len > (SIZE_MAX - 2) / 3)
		fatalx("%s: alert too long", __func__);
	buf_reserve(out, len * 3 + 1);
	o = out->data + out->len;
	while (i < len) {
		if (s[i] == '"') {
			*o++ = '"';
			i++;
			i += json_copy_string(&o, s + i, len - i);
			continue;
		}
		for (j = i; j < len && s[j] > 0x20 && s[j] < 0x7f &&
		    s[j] != '"'; j++)
			;
		memcpy(o, s + i, j - i);
		o += j - i;
		/* Skip whitespace and bytes that cannot be outside a string. */
		for (i = j; i < len && (s[i] <= 0x20 || s[i] >= 0x7f); i++)
			;
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
}

/* Bytes c takes in jansson's output. */
static size_t
json_width(unsigned char c)
{
	if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' ||
	    c == '\b' || c == '\f')
		return (2);
	return (c < 0x20 ? 6 : 1);
}

/* Cut string j to what escapes to at most budget bytes. */
static void
json_cut(json_t *j, size_t budget)
{
	const char	*s = json_string_value(j);
	size_t		 len = json_string_length(j), i, cost = 0;

	for (i = 0; i < len; i++) {
		cost += json_width((unsigned char)s[i]);
		if (cost > budget)
			break;
	}
	if (i == len)
		return;
	i = utf8_prefix(s, len, i);
	buf_reset(&scratch_tmp);
	buf_add(&scratch_tmp, s, i);
	json_string_setn(j, scratch_tmp.data, i);
}

static size_t
json_str_width(json_t *j)
{
	const char	*s = json_string_value(j);
	size_t		 len = json_string_length(j), i, n = 0;

	for (i = 0; i < len; i++)
		n += json_width((unsigned char)s[i]);
	return (n);
}

/*
 * Cut every string in j but the top-level "id" (top set); returns the
 * widest one seen before cutting.
 */
static size_t
json_cap(json_t *j, size_t cap, int top)
{
	const char	*key;
	json_t		*v;
	size_t		 i, w, widest = 0;

	if (json_is_string(j)) {
		widest = json_str_width(j);
		if (widest > cap)
			json_cut(j, cap);
	} else if (json_is_object(j)) {
		json_object_foreach(j, key, v) {
			if (top && strcmp(key, "id") == 0)
				continue;
			if ((w = json_cap(v, cap, 0)) > widest)
				widest = w;
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) {
			if ((w = json_cap(v, cap, 0)) > widest)
				widest = w;
		}
	}
	return (widest);
}

/* Serialise j into res; 0 when it takes at most max bytes. */
static int
json_fits(json_t *j, struct buf *res, size_t max)
{
	char	*s;

	buf_reset(res);
	if ((s = json_dumps(j, JSON_COMPACT)) == NULL)
		return (-1);
	buf_adds(res, s);
	free(s);
	return (res->len <= max ? 0 : -1);
}

/* Every string of root cut to the largest common length that fits. */
static int
json_level(json_t *root, struct buf *res, size_t max)
{
	json_t	*copy;
	size_t	 lo = 0, hi, mid;
	int	 fits;

	copy = json_deep_copy(root);
	hi = json_cap(copy, 0, 1) + 1;		/* cap hi cuts nothing */
	fits = json_fits(copy, res, max);
	json_decref(copy);
	if (fits != 0)
		return (-1);
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		copy = json_deep_copy(root);
		json_cap(copy, mid, 1);
		if (json_fits(copy, res, max) == 0)
			lo = mid;
		else
			hi = mid;
		json_decref(copy);
	}
	json_cap(root, lo, 1);
	return (json_fits(root, res, max));
}

/* Cut the description until root fits or it is empty; 0 when it fits. */
static int
json_cut_description(json_t *root, struct buf *res, size_t max)
{
	json_t	*d = json_object_get(root, "description");
	size_t	 w, excess;
	int	 i;

	for (i = 0; json_fits(root, res, max) != 0; i++) {
		if (i == 4 || res->len == 0 || !json_is_string(d) ||
		    (w = json_str_width(d)) == 0)
			return (-1);
		excess = res->len - max;
		json_cut(d, w > excess ? w - excess : 0);
	}
	return (0);
}

/* Remove the largest top-level array or object; 0 when there was one. */
static int
json_drop_largest(json_t *root)
{
	const char	*key, *big = NULL;
	json_t		*v;
	char		*s;
	size_t		 n, most = 0;

	json_object_foreach(root, key, v) {
		if (!json_is_array(v) && !json_is_object(v))
			continue;
		if ((s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
			continue;
		if ((n = strlen(s)) >= most) {
			most = n;
			big = key;
		}
		free(s);
	}
	if (big == NULL)
		return (-1);
	json_object_del(root, big);
	return (0);
}

/*
 * The alert or incident (sanitised JSON text) re-serialised by jansson into
 * res in at most max bytes: the description cut first, then every string
 * but the id; when even that is too long, the same again without the
 * largest nested member (evidence, alerts, comments, ...), and so on.  Last
 * resort an object with only the id, then null.
 */
static int
json_shorten(struct buf *res, const char *text, size_t len, size_t max,
    const struct astr *id)
{
	json_t		*root, *copy;
	json_error_t	 err;
	int		 fits = -1;

	root = json_loadb(text, len, 0, &err);
	while (root != NULL && json_is_object(root)) {
		copy = json_deep_copy(root);
		fits = json_cut_description(copy, res, max);
		if (fits != 0)
			fits = json_level(copy, res, max);
		json_decref(copy);
		if (fits == 0 || json_drop_largest(root) != 0)
			break;
	}
	json_decref(root);
	if (fits == 0)
		return (0);
	buf_reset(&scratch_tmp);
	if (id->p != NULL)
		sanitize_utf8(&scratch_tmp, id->p, id->len);
	root = json_pack("{s:s%}", "id", scratch_tmp.len > 0 ?
	    scratch_tmp.data : "", scratch_tmp.len);
	if (root != NULL && json_fits(root, res, max) == 0) {
		json_decref(root);
		return (0);
	}
	json_decref(root);
	buf_reset(res);
	buf_adds(res, "null");
	return (max >= 4 ? 0 : -1);
}

/* What the JSON envelope carries: the object as received, under member. */
struct json_obj {
	const char		*schema;
	const char		*member;	/* "alert", "incident" */
	int			 updated;
	const char		*raw;
	size_t			 raw_len;
	const struct astr	*id;
};

static void
json_event(struct buf *out, const struct json_obj *j,
    const struct event_meta *m, size_t max)
{
	struct buf	 res;
	size_t		 start = out->len, pre;
	char		 ts[40];
	int64_t		 fwd = m->forwarded_at;

	if (fwd == TICKS_NONE || fwd == 0)
		fwd = ts_now();
	ts_format(fwd, ts, sizeof(ts));
	buf_addf(out, "{\"schema\":\"%s\",\"event\":\"%s\","
	    "\"tenant\":{\"name\":", j->schema,
	    j->updated ? "updated" : "created");
	json_add_str(out, m->tenant_name);
	buf_adds(out, ",\"label\":");
	json_add_str(out, m->tenant_label != NULL ? m->tenant_label :
	    m->tenant_name);
	buf_adds(out, ",\"id\":");
	json_add_str(out, m->tenant_id);
	buf_addf(out, "},\"forwarded_at\":\"%s\",\"%s\":", ts, j->member);
	pre = out->len - start;
	if (j->raw != NULL && j->raw_len > 0)
		json_copy_alert(out, j->raw, j->raw_len);
	else
		buf_adds(out, "null");
	buf_addc(out, '}');
	if (out->len - start <= max)
		return;

	/* Too long: the alert is re-serialised shortened. */
	if (max < pre + 1) {
		buf_truncate(out, start);
		return;
	}
	buf_init(&res);
	if (json_shorten(&res, out->data + start + pre, out->len - start -
	    pre - 1, max - pre - 1, j->id) != 0) {
		buf_truncate(out, start);
		buf_clear(&res);
		return;
	}
	buf_truncate(out, start + pre);
	buf_add(out, res.data, res.len);
	buf_addc(out, '}');
	buf_clear(&res);
}

void
json_encode(struct buf *out, const struct alert *a,
    const struct event_meta *m, size_t max)
{
	struct json_obj	 j = { JSON_SCHEMA, "alert", m->updated, a->raw,
			    a->raw_len, &a->id };

	json_event(out, &j, m, max);
}

void
json_encode_incident(struct buf *out, const struct incident *inc,
    const struct event_meta *m, size_t max)
{
	struct json_obj	 j = { JSON_SCHEMA_INC, "incident", m->updated ||
			    incident_merged(inc), inc->raw, inc->raw_len,
			    &inc->id };

	json_event(out, &j, m, max);
}

/*
 * Put the syslog header for an event of severity sev; *max gets the room
 * left for the body, -1 (nothing appended) when there is none.
 */
static int
event_begin(struct buf *out, const struct conf_output *o, enum severity sev,
    const struct event_meta *m, const char *hostname, int pid, size_t *max)
{
	size_t	 start = out->len, hlen;
	int64_t	 ts = m->forwarded_at;

	if (ts == TICKS_NONE || ts == 0)
		ts = ts_now();
	syslog_header(out, o->header, o->facility, syslog_severity(sev), ts,
	    hostname, pid);
	hlen = out->len - start;
	/* 0 means no limit. */
	*max = o->max_message_bytes == 0 ? SIZE_MAX : o->max_message_bytes;
	if (hlen >= *max) {
		buf_truncate(out, start);
		return (-1);
	}
	*max -= hlen;
	return (0);
}

/* An event whose body (from body on) came out empty is taken back. */
static int
event_end(struct buf *out, size_t start, size_t body)
{
	if (out->len == body) {
		buf_truncate(out, start);
		return (-1);
	}
	return (0);
}

int
event_encode(struct buf *out, const struct conf_output *o,
    const struct alert *a, const struct event_meta *m, const char *hostname,
    int pid)
{
	size_t	 start = out->len, body, max;

	if (event_begin(out, o, a->severity, m, hostname, pid, &max) != 0)
		return (-1);
	body = out->len;
	switch (o->format) {
	case FMT_CEF:
		cef_encode(out, a, m, max);
		break;
	case FMT_LEEF:
		leef_encode(out, a, m, max);
		break;
	case FMT_JSON:
		json_encode(out, a, m, max);
		break;
	}
	return (event_end(out, start, body));
}

int
incident_encode(struct buf *out, const struct conf_output *o,
    const struct incident *inc, const struct event_meta *m,
    const char *hostname, int pid)
{
	size_t	 start = out->len, body, max;

	if (event_begin(out, o, inc->severity, m, hostname, pid, &max) != 0)
		return (-1);
	body = out->len;
	switch (o->format) {
	case FMT_CEF:
		cef_encode_incident(out, inc, m, max);
		break;
	case FMT_LEEF:
		leef_encode_incident(out, inc, m, max);
		break;
	case FMT_JSON:
		json_encode_incident(out, inc, m, max);
		break;
	}
	return (event_end(out, start, body));
}
