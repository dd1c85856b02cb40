/*
 * libFuzzer: one Graph incident object through the reader and the three
 * incident events (syslog header + CEF, LEEF, JSON) keeps what a SIEM
 * parser relies on: one line, the size limit, no key an attacker can add
 * or repeat, the incident's identity while the limit allows.
 *
 * Input: 8 control bytes, a NUL-terminated tenant label, then the incident
 * object (layout below).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "conf.h"
#include "encode.h"
#include "incident.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define CTL	8
#define NKEYS	(sizeof(keys) / sizeof(keys[0]))

/* Every key the incident CEF and LEEF encoders may emit. */
static const char *keys[] = {
	"rt", "devTime", "sev", "name", "start", "externalId", "act", "msg",
	"cs1", "cs1Label", "cs2", "cs2Label", "cs3", "cs3Label", "cs4",
	"cs4Label", "cs5", "cs5Label", "cs6", "cs6Label", "cn1", "cn1Label",
	"flexString1", "flexString1Label", "flexString2", "flexString2Label",
};

static const char cef_pfx[] =
    "CEF:0|Microsoft|Microsoft Defender XDR|1.0|incident|";
static const char leef_pfx[] =
    "LEEF:2.0|Microsoft|Microsoft Defender XDR|1.0|incident|^|";

/* Count the key k[0..n) in seen; abort on an unknown or repeated key. */
static size_t
key_seen(unsigned char *seen, const char *k, size_t n)
{
	size_t	 i;

	for (i = 0; i < NKEYS; i++) {
		if (strlen(keys[i]) == n && memcmp(keys[i], k, n) == 0) {
			if (seen[i]++)
				abort();
			return i;
		}
	}
	abort();
}

static int
has_key(const unsigned char *seen, const char *k)
{
	size_t	 i;

	for (i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i], k) == 0)
			return seen[i];
	}
	abort();
}

/*
 * CEF: seven unescaped '|' end the header; in the extension every
 * unescaped '=' follows " key" (or the start) with a known key, once.
 */
static int
check_cef(const char *s, size_t len)
{
	unsigned char	 seen[NKEYS];
	size_t		 i, pipes = 0, ks;

	if (len < sizeof(cef_pfx) - 1 ||
	    memcmp(s, cef_pfx, sizeof(cef_pfx) - 1) != 0)
		abort();
	for (i = 0; i < len && pipes < 7; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '|')
			pipes++;
	}
	if (pipes != 7)
		abort();
	memset(seen, 0, sizeof(seen));
	for (ks = i; i < len; i++) {
		if (s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == ' ')
			ks = i + 1;
		else if (s[i] == '=') {
			if (ks >= i)
				abort();
			key_seen(seen, s + ks, i - ks);
			ks = len;	/* the value starts: no key until ' ' */
		}
	}
	return has_key(seen, "externalId");
}

/* LEEF 2.0 with "^": attributes split on '^', each a known key once. */
static int
check_leef(const char *s, size_t len)
{
	unsigned char	 seen[NKEYS];
	const char	*p, *end = s + len, *q, *eq;

	if (len < sizeof(leef_pfx) - 1 ||
	    memcmp(s, leef_pfx, sizeof(leef_pfx) - 1) != 0)
		abort();
	memset(seen, 0, sizeof(seen));
	for (p = s + sizeof(leef_pfx) - 1; p < end; p = q + 1) {
		q = memchr(p, '^', (size_t)(end - p));
		if (q == NULL)
			q = end;
		eq = memchr(p, '=', (size_t)(q - p));
		if (eq == NULL || eq == p)
			abort();
		key_seen(seen, p, (size_t)(eq - p));
	}
	return has_key(seen, "externalId");
}

/* JSON: one object with schema and incident (big numbers pass through). */
static void
check_json(const char *s, size_t len)
{
	json_error_t	 je;
	json_t		*j;

	j = json_loadb(s, len, JSON_DECODE_INT_AS_REAL, &je);
	if (j == NULL && strstr(je.text, "real number overflow") != NULL)
		return;
	if (j == NULL || !json_is_object(j) ||
	    !json_is_string(json_object_get(j, "schema")) ||
	    strcmp(json_string_value(json_object_get(j, "schema")),
	    "alertrelay.incident.v1") != 0 ||
	    json_object_get(j, "incident") == NULL)
		abort();
	json_decref(j);
}

/* The header is exactly what syslog_header() makes; returns its length. */
static size_t
check_header(const char *s, size_t len, const struct conf_output *o,
    const struct incident *inc, int64_t ts)
{
	struct buf	 h;
	size_t		 hlen;

	buf_init(&h);
	syslog_header(&h, o->header, o->facility,
	    syslog_severity(inc->severity), ts, "h", 4242);
	hlen = h.len;
	if (hlen > len || (hlen > 0 && memcmp(s, h.data, hlen) != 0))
		abort();
	buf_clear(&h);
	return hlen;
}

/* One event in one format: the properties of the file's comment. */
static void
check_event(struct conf_output *o, const struct incident *inc,
    const struct event_meta *m)
{
	struct buf	 out;
	size_t		 i, hlen;
	int		 ided;

	buf_init(&out);
	if (incident_encode(&out, o, inc, m, "h", 4242) == 0) {
		if (o->max_message_bytes != 0 &&
		    out.len > o->max_message_bytes)
			abort();
		for (i = 0; i < out.len; i++) {
			if (out.data[i] == '\n' || out.data[i] == '\r' ||
			    out.data[i] == '\0')
				abort();
		}
		hlen = check_header(out.data, out.len, o, inc,
		    m->forwarded_at);
		/* The id goes only when the limit is tiny or the id huge. */
		ided = (o->max_message_bytes != 0 &&
		    o->max_message_bytes < 480) || inc->id.len > 64;
		if (o->format == FMT_CEF)
			ided |= check_cef(out.data + hlen, out.len - hlen);
		else if (o->format == FMT_LEEF)
			ided |= check_leef(out.data + hlen, out.len - hlen);
		else
			check_json(out.data + hlen, out.len - hlen);
		if (!ided && o->format != FMT_JSON)
			abort();
	}
	buf_clear(&out);
}

/*
 * Layout: [0] b: header b % 3, updated b & 4, add the id as an alert
 * b & 8 (the $expand fallback); [1..2] max_message_bytes (0: unlimited,
 * else 64 + v); [3] facility; [4..7] forwarded_at seconds; then the
 * NUL-terminated label and the incident.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum out_format fmts[] = { FMT_CEF, FMT_LEEF, FMT_JSON };
	struct conf_output o;
	struct event_meta m;
	struct incident	 inc;
	char		 err[128], label[256];
	const char	*p, *end, *nul;
	size_t		 i;
	unsigned	 v;

	if (size < CTL)
		return 0;
	memset(&o, 0, sizeof(o));
	o.header = (enum out_header)(data[0] % 3);
	o.framing = FRAME_OCTET;
	v = (unsigned)data[1] << 8 | data[2];
	o.max_message_bytes = v == 0 ? 0 : 64 + v;
	o.facility = data[3] % 24;
	memset(&m, 0, sizeof(m));
	m.updated = (data[0] >> 2) & 1;
	m.forwarded_at = (int64_t)((uint32_t)data[4] << 24 | data[5] << 16 |
	    data[6] << 8 | data[7]) * TICKS_PER_SEC + 1;
	m.tenant_name = "fuzz";
	m.tenant_id = "00000000-0000-0000-0000-000000000001";

	p = (const char *)data + CTL;
	end = (const char *)data + size;
	nul = memchr(p, '\0', (size_t)(end - p));
	i = nul ? (size_t)(nul - p) : 0;
	if (i >= sizeof(label))
		i = sizeof(label) - 1;
	memcpy(label, p, i);
	label[i] = '\0';
	m.tenant_label = label[0] != '\0' ? label : NULL;
	p = nul ? nul + 1 : p;

	incident_init(&inc);
	if (incident_parse(&inc, p, (size_t)(end - p), err, sizeof(err)) == 0) {
		if (inc.alert_ids_n > INCIDENT_MAX_ALERT_IDS ||
		    inc.alert_ids_n > inc.alert_count)
			abort();
		if ((data[0] >> 3) & 1)
			incident_add_alert(&inc, inc.id.p, inc.id.len);
		for (i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
			o.format = fmts[i];
			check_event(&o, &inc, &m);
		}
	} else if (inc.id.p != NULL || inc.alert_count != 0)
		abort();	/* a failed parse leaves nothing behind */
	incident_clear(&inc);
	return 0;
}
