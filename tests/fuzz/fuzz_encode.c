/*
 * libFuzzer: whole events (syslog header, CEF/LEEF/JSON body, framing) for
 * any alert and output settings keep what a SIEM parser relies on: one
 * line, the size limit, no key an attacker can add or repeat.
 *
 * Input: 8 control bytes, a hostname, a tenant label, then one alert
 * object (see layout below).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "alert.h"
#include "conf.h"
#include "encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define CTL	8

/* Every key the CEF and LEEF encoders may emit. */
static const char *keys[] = {
	"rt", "devTime", "sev", "name", "start", "end", "deviceCustomDate1",
	"deviceCustomDate1Label", "externalId", "act", "cat",
	"sourceServiceName", "msg", "shost", "identHostName",
	"deviceExternalId", "suser", "usrName", "sntdom", "fname", "filePath",
	"fileHash", "src", "c6a2", "request", "cs1", "cs1Label", "cs2",
	"cs2Label", "cs3", "cs3Label", "cs4", "cs4Label", "cs5", "cs5Label",
	"cs6", "cs6Label", "cn1", "cn1Label", "cn2", "cn2Label", "cn3",
	"cn3Label", "flexString1", "flexString1Label", "flexString2",
	"flexString2Label",
};

/* Index of the key k[0..n) in keys, or abort: an unknown key is a spoof. */
static size_t
key_index(const char *k, size_t n)
{
	size_t	 i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strlen(keys[i]) == n && memcmp(keys[i], k, n) == 0)
			return i;
	}
	abort();
}

static void
key_seen(unsigned char *seen, const char *k, size_t n)
{
	size_t	 i = key_index(k, n);

	if (seen[i]++)
		abort();	/* a repeated key: the later one may win */
}

/*
 * CEF: seven unescaped '|' end the header; in the extension every
 * unescaped '=' follows " key" (or the start) with a known key, once.
 */
static int
check_cef(const char *s, size_t len)
{
	static const char	 pfx[] =
	    "CEF:0|Microsoft|Microsoft Defender for Endpoint|1.0|";
	unsigned char		 seen[sizeof(keys) / sizeof(keys[0])];
	size_t			 i, pipes = 0, ks;

	if (len < sizeof(pfx) - 1 || memcmp(s, pfx, sizeof(pfx) - 1) != 0)
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
	ks = i;
	for (; i < len; i++) {
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
	return seen[key_index("externalId", 10)];
}

/* LEEF 2.0 with "^": attributes split on '^', each a known key once. */
static int
check_leef(const char *s, size_t len)
{
	static const char	 pfx[] =
	    "LEEF:2.0|Microsoft|Microsoft Defender for Endpoint|1.0|";
	unsigned char		 seen[sizeof(keys) / sizeof(keys[0])];
	const char		*p, *end = s + len, *q, *eq;

	if (len < sizeof(pfx) - 1 || memcmp(s, pfx, sizeof(pfx) - 1) != 0)
		abort();
	p = s + sizeof(pfx) - 1;
	q = memchr(p, '|', (size_t)(end - p));
	if (q == NULL || memchr(p, '^', (size_t)(q - p)) != NULL ||
	    end - q < 3 || memcmp(q, "|^|", 3) != 0)
		abort();
	memset(seen, 0, sizeof(seen));
	p = q + 3;
	while (p < end) {
		q = memchr(p, '^', (size_t)(end - p));
		if (q == NULL)
			q = end;
		eq = memchr(p, '=', (size_t)(q - p));
		if (eq == NULL || eq == p)
			abort();
		key_seen(seen, p, (size_t)(eq - p));
		p = q + 1;
	}
	return seen[key_index("externalId", 10)];
}

/*
 * JSON: one valid object (jansson rejects bad UTF-8 and \u0000).  The
 * alert goes out as received (SPEC 4), so a number beyond a double's range
 * ("1e999", a 30-digit integer: valid JSON, RFC 8259 6) is passed through:
 * not an error here.
 */
static void
check_json(const char *s, size_t len)
{
	json_error_t	 je;
	json_t		*j;

	j = json_loadb(s, len, JSON_DECODE_INT_AS_REAL, &je);
	if (j == NULL && strstr(je.text, "real number overflow") != NULL)
		return;
#ifdef FUZZ_DEBUG
	if (j == NULL)
		fprintf(stderr, "json: %s at %d: %.*s\n", je.text, je.position,
		    (int)len, s);
#endif
	if (j == NULL || !json_is_object(j) ||
	    json_object_get(j, "schema") == NULL ||
	    json_object_get(j, "alert") == NULL)
		abort();
	json_decref(j);
}

/*
 * The header is what syslog_header() makes alone, printable ASCII only;
 * the RFC 5424 one has exactly 7 spaces (the hostname cannot add one).
 */
static size_t
check_header(const char *s, size_t len, const struct conf_output *o,
    int sev, int64_t ts, const char *host)
{
	struct buf	 h;
	size_t		 i, sp = 0, hlen;

	buf_init(&h);
	syslog_header(&h, o->header, o->facility, sev, ts, host, 4242);
	hlen = h.len;
	if (hlen > len || (hlen > 0 && memcmp(s, h.data, hlen) != 0))
		abort();
	buf_clear(&h);
	for (i = 0; i < hlen; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			abort();
		sp += s[i] == ' ';
	}
	if (o->header == HDR_RFC5424 && sp != 7)
		abort();
	return hlen;
}

static void
check_framing(const char *msg, size_t len, enum out_framing fr)
{
	struct buf	 f;
	char		 pfx[32];
	int		 n;

	buf_init(&f);
	frame_message(&f, fr, msg, len);
	if (fr == FRAME_OCTET) {
		n = snprintf(pfx, sizeof(pfx), "%zu ", len);
		if (f.len != (size_t)n + len ||
		    memcmp(f.data, pfx, (size_t)n) != 0)
			abort();
	} else if (f.len != len + 1 || f.data[len] != '\n')
		abort();
	buf_clear(&f);
}

/*
 * Layout: [0] b: format b % 3, header (b >> 2) % 3, framing b & 16, Graph
 * b & 32, updated b & 64;
 * [1..2] max_message_bytes (0: unlimited, else 64 + v); [3] facility;
 * [4..7] forwarded_at seconds; then NUL-terminated hostname and label,
 * then the alert.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_output o;
	struct event_meta m;
	struct alert	 a;
	struct buf	 out;
	char		 err[128], host[64], label[256];
	const char	*p, *end, *nul;
	size_t		 i, hlen, mlen;
	unsigned	 v;
	int		 ided;

	if (size < CTL)
		return 0;
	memset(&o, 0, sizeof(o));
	o.format = (enum out_format)(data[0] % 3);
	o.header = (enum out_header)((data[0] >> 2) % 3);
	o.framing = (data[0] >> 4) & 1 ? FRAME_OCTET : FRAME_NEWLINE;
	v = (unsigned)data[1] << 8 | data[2];
	o.max_message_bytes = v == 0 ? 0 : 64 + v;
	o.facility = data[3] % 24;
	memset(&m, 0, sizeof(m));
	m.updated = (data[0] >> 6) & 1;
	m.forwarded_at = (int64_t)((uint32_t)data[4] << 24 | data[5] << 16 |
	    data[6] << 8 | data[7]) * TICKS_PER_SEC + 1;
	m.tenant_name = "fuzz";
	m.tenant_id = "00000000-0000-0000-0000-000000000001";

	p = (const char *)data + CTL;
	end = (const char *)data + size;
	nul = memchr(p, '\0', (size_t)(end - p));
	i = nul ? (size_t)(nul - p) : 0;
	if (i >= sizeof(host))
		i = sizeof(host) - 1;
	memcpy(host, p, i);
	host[i] = '\0';
	p = nul ? nul + 1 : p;
	nul = memchr(p, '\0', (size_t)(end - p));
	i = nul ? (size_t)(nul - p) : 0;
	if (i >= sizeof(label))
		i = sizeof(label) - 1;
	memcpy(label, p, i);
	label[i] = '\0';
	m.tenant_label = label[0] != '\0' ? label : NULL;
	p = nul ? nul + 1 : p;

	alert_init(&a);
	buf_init(&out);
	if (alert_parse(&a, (data[0] >> 5) & 1 ? SRC_GRAPH : SRC_MDE, p,
	    (size_t)(end - p), err, sizeof(err)) == 0 &&
	    event_encode(&out, &o, &a, &m, host, 4242) == 0) {
		mlen = out.len;
		if (o.max_message_bytes != 0 && mlen > o.max_message_bytes)
			abort();
		for (i = 0; i < mlen; i++) {
			if (out.data[i] == '\n' || out.data[i] == '\r' ||
			    out.data[i] == '\0')
				abort();
		}
		hlen = check_header(out.data, mlen, &o,
		    syslog_severity(a.severity), m.forwarded_at, host);
		/*
		 * A message that fits the smallest allowed limit keeps what
		 * identifies the event: the id goes only when it is huge.
		 */
		ided = o.max_message_bytes != 0 &&
		    o.max_message_bytes < 480 ? 1 : a.id.len > 64;
		switch (o.format) {
		case FMT_CEF:
			ided |= check_cef(out.data + hlen, mlen - hlen);
			break;
		case FMT_LEEF:
			ided |= check_leef(out.data + hlen, mlen - hlen);
			break;
		case FMT_JSON:
			check_json(out.data + hlen, mlen - hlen);
			break;
		}
		if (!ided && o.format != FMT_JSON)
			abort();
		check_framing(out.data, mlen, o.framing);
	}
	buf_clear(&out);
	alert_clear(&a);
	return 0;
}
