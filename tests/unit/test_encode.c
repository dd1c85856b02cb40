/* Unit tests for the encoders: sanitising, CEF/LEEF/JSON, syslog framing. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "encode.h"

#define VECTORS	"tests/data/injection-vectors.json"
#define SAMPLE	"tests/data/alert-sample.json"
#define GOLDEN	"tests/data/golden/alert-sample"

#define S(x)	((struct astr){ (x), sizeof(x) - 1 })

static struct buf sample_raw;

/* A zeroed alert with every time stamp absent. */
static void
alert_blank(struct alert *a)
{
	memset(a, 0, sizeof(*a));
	a->last_update = a->creation = TICKS_NONE;
	a->first_event = a->last_event = TICKS_NONE;
}

static int64_t
ticks(const char *s)
{
	int64_t	 t;

	assert_int_equal(ts_parse(s, strlen(s), &t), 0);
	return (t);
}

/* The alert of defender-api.md §2.10, field by field. */
static void
alert_sample(struct alert *a)
{
	alert_blank(a);
	a->id = S("da637472900382838869_1364969609");
	a->incident_id = S("1126093");
	a->severity_text = S("Low");
	a->severity = SEV_LOW;
	a->status = S("New");
	a->detection_source = S("WindowsDefenderAtp");
	a->detector_id = S("17e10bbc-3a68-474a-8aad-faef14d43952");
	a->category = S("Execution");
	a->title = S("Low-reputation arbitrary code executed by signed "
	    "executable");
	a->description = S("Binaries signed by Microsoft can be used to run "
	    "low-reputation arbitrary code. This technique hides the "
	    "execution of malicious code within a trusted process. As a "
	    "result, the trusted process might exhibit suspicious behaviors, "
	    "such as opening a listening port or connecting to a "
	    "command-and-control (C&C) server.");
	a->creation = ticks("2021-01-26T20:33:57.7220239Z");
	a->first_event = ticks("2021-01-26T20:31:32.9562661Z");
	a->last_event = ticks("2021-01-26T20:31:33.0577322Z");
	a->last_update = ticks("2021-01-26T20:33:59.2Z");
	a->machine_id = S("111e6dd8c833c8a052ea231ec1b19adaf497b625");
	a->computer_dns_name = S("temp123.middleeast.corp.microsoft.com");
	a->aad_tenant_id = S("a839b112-1253-6432-9bf6-94542403f21c");
	a->mitre = S("T1064,T1085,T1220");
	a->user_name = S("temp123");
	a->domain_name = S("DOMAIN");
	a->evidence_count = 3;
	a->file_name = S("rundll32.exe");
	a->file_path = S("C:\\Windows\\SysWOW64");
	a->sha1 = S("ff836cfb1af40252bd2a2ea843032e99a5b262ed");
	a->sha256 = S("a4752c71d81afd3d5865d24ddb11a6b0c615062fcc448d24050c2172"
	    "d2cbccd6");
	a->raw = sample_raw.data;
	a->raw_len = sample_raw.len;
}

static void
meta_sample(struct event_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->tenant_name = "contoso";
	m->tenant_label = "Contoso Ltd";
	m->tenant_id = "contoso.onmicrosoft.com";
	m->forwarded_at = ticks("2021-01-26T20:35:00.1234567Z");
}

/* A file's contents without its trailing newline. */
static void
read_golden(const char *path, struct buf *b)
{
	buf_init(b);
	assert_int_equal(file_read_all(path, 1 << 20, b), 0);
	if (b->len > 0 && b->data[b->len - 1] == '\n')
		buf_truncate(b, b->len - 1);
}

static int
valid_utf8(const char *s, size_t len)
{
	size_t	 i = 0, n;
	int	 ok;

	while (i < len) {
		n = utf8_seq((const unsigned char *)s + i, len - i, &ok);
		if (!ok)
			return (0);
		i += n;
	}
	return (1);
}

/* Expand a vector value: string, {"repeat","count"} or {"concat":[...]}. */
static void
expand(json_t *v, struct buf *out)
{
	json_t	*part;
	size_t	 i, n;

	if (json_is_string(v)) {
		buf_add(out, json_string_value(v), json_string_length(v));
		return;
	}
	assert_true(json_is_object(v));
	if ((part = json_object_get(v, "concat")) != NULL) {
		json_array_foreach(json_object_get(v, "concat"), i, part)
			expand(part, out);
		return;
	}
	part = json_object_get(v, "repeat");
	assert_true(json_is_string(part));
	n = (size_t)json_integer_value(json_object_get(v, "count"));
	assert_true(n > 0);
	for (i = 0; i < n; i++)
		expand(part, out);
}

static void
unhex(const char *hex, struct buf *out)
{
	unsigned int	 c;

	for (; hex[0] != '\0' && hex[1] != '\0'; hex += 2) {
		assert_int_equal(sscanf(hex, "%2x", &c), 1);
		buf_addc(out, (char)c);
	}
}

static void
assert_buf_equal(const struct buf *b, const struct buf *want,
    const char *what)
{
	if (b->len != want->len || memcmp(b->data, want->data, b->len) != 0) {
		print_error("%s: got %zu bytes \"%.200s\", "
		    "want %zu \"%.200s\"\n", what, b->len, b->data, want->len,
		    want->data);
		fail();
	}
}

/*
 * Split a CEF line's header on unescaped pipes; returns the offset of the
 * extension and stores where the name field starts and ends.
 */
static size_t
cef_split(const char *line, size_t len, size_t *name, size_t *name_end)
{
	size_t	 i, pipes = 0;

	for (i = 0; i < len && pipes < 7; i++) {
		if (line[i] == '\\') {
			i++;
			continue;
		}
		if (line[i] == '|') {
			pipes++;
			if (pipes == 5)
				*name = i + 1;
			if (pipes == 6)
				*name_end = i;
		}
	}
	assert_int_equal(pipes, 7);
	return (i);
}

/* Every backslash of a CEF line starts one of the legal escapes. */
static void
assert_escapes_whole(const char *line, size_t len, size_t ext)
{
	size_t	 i;

	for (i = 0; i < len; i++) {
		if (line[i] != '\\')
			continue;
		assert_true(i + 1 < len);
		if (i < ext)
			assert_non_null(strchr("\\|", line[i + 1]));
		else
			assert_non_null(strchr("\\=nr", line[i + 1]));
		i++;
	}
}

static void
check_vector(json_t *v)
{
	struct buf	 in, san, got, want, line, needle;
	struct alert	 a;
	struct event_meta m;
	json_t		*input = json_object_get(v, "input");
	const char	*name = json_string_value(json_object_get(v, "name"));
	size_t		 ext, n0 = 0, n1 = 0;

	buf_init(&in);
	buf_init(&san);
	buf_init(&got);
	buf_init(&want);
	buf_init(&line);
	buf_init(&needle);
	if (json_is_null(input))
		unhex(json_string_value(json_object_get(v, "input_hex")), &in);
	else
		expand(input, &in);
	buf_add(&in, "", 0);
	sanitize_utf8(&san, in.data, in.len);
	buf_add(&san, "", 0);

	cef_escape_header(&got, san.data, san.len);
	expand(json_object_get(v, "cef_header_escaped"), &want);
	buf_add(&want, "", 0);
	assert_buf_equal(&got, &want, name);

	buf_reset(&got);
	buf_reset(&want);
	cef_escape_ext(&got, san.data, san.len);
	expand(json_object_get(v, "cef_extension_escaped"), &want);
	assert_buf_equal(&got, &want, name);

	/* The value as title and description of an alert. */
	alert_blank(&a);
	a.id = S("id1");
	a.title.p = in.data;
	a.title.len = in.len;
	a.description = a.title;
	a.computer_dns_name = S("host1");
	memset(&m, 0, sizeof(m));
	m.tenant_name = "t";
	cef_encode(&line, &a, &m, 1 << 22);
	assert_true(line.len > 0);
	assert_null(memchr(line.data, '\n', line.len));
	assert_null(memchr(line.data, '\r', line.len));
	ext = cef_split(line.data, line.len, &n0, &n1);
	assert_escapes_whole(line.data, line.len, ext);
	assert_memory_equal(line.data + ext, "externalId=", 11);
	buf_reset(&want);
	cef_escape_header(&want, san.data, san.len);
	if (want.len == 0)
		buf_adds(&want, "-");
	assert_int_equal(n1 - n0, want.len);
	assert_memory_equal(line.data + n0, want.data, want.len);
	if (san.len > 0) {
		buf_adds(&needle, " msg=");
		cef_escape_ext(&needle, san.data, san.len);
		buf_adds(&needle, " shost=host1 ");
		assert_non_null(memmem(line.data, line.len, needle.data,
		    needle.len));
	} else
		assert_null(strstr(line.data, "msg="));

	buf_clear(&in);
	buf_clear(&san);
	buf_clear(&got);
	buf_clear(&want);
	buf_clear(&line);
	buf_clear(&needle);
}

static void
test_injection_vectors(void **state)
{
	json_error_t	 err;
	json_t		*root, *v;
	size_t		 i;

	root = json_load_file(VECTORS, JSON_ALLOW_NUL, &err);
	if (root == NULL)
		fail_msg("%s:%d: %s", VECTORS, err.line, err.text);
	assert_int_equal(json_array_size(root), 35);
	json_array_foreach(root, i, v)
		check_vector(v);
	json_decref(root);
}

/* Sanitising matches CPython's errors="replace" on the awkward cases. */
static void
test_sanitize(void **state)
{
	static const struct {
		const char	*in, *out;
	} t[] = {
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },
		{ "a\xe2\x82", "a\xef\xbf\xbd" },
		{ "\xe2\x82z", "\xef\xbf\xbdz" },
		{ "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
		    "\xef\xbf\xbd" },
		{ "\xf0\x9f\x99", "\xef\xbf\xbd" },
		{ "\xf0\x9f\x99\x82", "\xf0\x9f\x99\x82" },
		{ "\xc2\x85\xc2\x9f\xc2\xa0", "\xef\xbf\xbd\xef\xbf\xbd"
		    "\xc2\xa0" },
		{ "\x01\x7f\t\n\r", "\xef\xbf\xbd\xef\xbf\xbd\t\n\r" },
		{ "\xf8\x88\x80\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd"
		    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
	};
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	for (i = 0; i < nitems(t); i++) {
		buf_reset(&b);
		sanitize_utf8(&b, t[i].in, strlen(t[i].in));
		assert_string_equal(b.data, t[i].out);
	}
	buf_reset(&b);
	sanitize_utf8(&b, "a\0b", 3);
	assert_string_equal(b.data, "a\xef\xbf\xbd" "b");
	buf_clear(&b);

	assert_int_equal(utf8_prefix("a\xc3\xa9", 3, 2), 1);
	assert_int_equal(utf8_prefix("a\xc3\xa9", 3, 3), 3);
	assert_int_equal(utf8_prefix("\xf0\x9f\x99\x82z", 5, 3), 0);
	assert_int_equal(utf8_prefix("\xf0\x9f\x99\x82z", 5, 4), 4);
}

static void
check_golden(void (*enc)(struct buf *, const struct alert *,
    const struct event_meta *, size_t), const char *path)
{
	struct alert	 a;
	struct event_meta m;
	struct buf	 got, want;

	alert_sample(&a);
	meta_sample(&m);
	buf_init(&got);
	read_golden(path, &want);
	enc(&got, &a, &m, 65536);
	assert_buf_equal(&got, &want, path);
	buf_clear(&got);
	buf_clear(&want);
}

static void
test_golden_cef(void **state)
{
	check_golden(cef_encode, GOLDEN ".cef");
}

static void
test_golden_leef(void **state)
{
	check_golden(leef_encode, GOLDEN ".leef");
}

static void
test_golden_json(void **state)
{
	check_golden(json_encode, GOLDEN ".jsonl");
}

/* Optional values: IPv6, updated, classification, labels only with values. */
static void
test_cef_fields(void **state)
{
	struct alert	 a;
	struct event_meta m;
	struct buf	 b;

	alert_blank(&a);
	a.id = S("x/1");
	a.ip_address = S("2001:db8::1");
	a.classification = S("TruePositive");
	a.threat_name = S("Meterpreter");
	a.incident_id = S("12a");
	memset(&m, 0, sizeof(m));
	m.tenant_label = "Fab|rikam=";
	m.tenant_id = "fabrikam.example";
	m.updated = 1;
	buf_init(&b);
	cef_encode(&b, &a, &m, 65536);
	assert_string_equal(b.data, "CEF:0|Microsoft|Microsoft Defender for "
	    "Endpoint|1.0|alert|-|0|externalId=x/1 act=updated "
	    "c6a2=2001:db8::1 cs1=Meterpreter cs1Label=ThreatName "
	    "cs2=Fab|rikam\\= cs2Label=Customer cs3=fabrikam.example "
	    "cs3Label=TenantId cn3=0 cn3Label=EvidenceCount "
	    "flexString1=https://security.microsoft.com/alerts/x%2F1?tid\\="
	    "fabrikam.example flexString1Label=AlertLink "
	    "flexString2=TruePositive flexString2Label=Classification");

	buf_reset(&b);
	a.ip_address = S("10.1.2.3");
	a.determination = S("Malware");
	a.category = S("Exec|ution");
	cef_encode(&b, &a, &m, 65536);
	assert_non_null(strstr(b.data, "|1.0|Exec\\|ution|-|0|"));
	assert_non_null(strstr(b.data, " src=10.1.2.3 "));
	assert_null(strstr(b.data, "c6a2"));
	assert_non_null(strstr(b.data, "flexString2=TruePositive/Malware "));

	buf_reset(&b);
	a.ip_address = S("10.1.2.3 x");
	a.classification = S("");
	cef_encode(&b, &a, &m, 65536);
	assert_null(strstr(b.data, "src="));
	assert_non_null(strstr(b.data, "flexString2=Malware "));
	buf_clear(&b);
}

/* A 100 KB description of backslashes and multibyte characters. */
static void
long_description(struct buf *b)
{
	static const char unit[] =
	    "\\\xc3\xa9\\\\\xe6\x97\xa5\xf0\x9f\x99\x82=";

	buf_init(b);
	while (b->len < 100 * 1024)
		buf_add(b, unit, sizeof(unit) - 1);
}

static void
check_cef_shortened(const struct buf *line, size_t max)
{
	size_t	 ext, n0, n1;

	assert_true(line->len > 0);
	assert_true(line->len <= max);
	assert_true(valid_utf8(line->data, line->len));
	ext = cef_split(line->data, line->len, &n0, &n1);
	assert_escapes_whole(line->data, line->len, ext);
	assert_null(memchr(line->data, '\n', line->len));
}

static void
test_cef_shorten(void **state)
{
	static const size_t maxes[] = { 300, 512, 2048 };
	struct alert	 a;
	struct event_meta m;
	struct buf	 desc, full, b;
	size_t		 i;
	char		*msg;

	long_description(&desc);
	alert_sample(&a);
	meta_sample(&m);
	a.description.p = desc.data;
	a.description.len = desc.len;
	buf_init(&b);
	buf_init(&full);
	cef_encode(&full, &a, &m, SIZE_MAX);
	assert_true(full.len > 130 * 1024);
	for (i = 0; i < nitems(maxes); i++) {
		buf_reset(&b);
		cef_encode(&b, &a, &m, maxes[i]);
		check_cef_shortened(&b, maxes[i]);
		assert_non_null(strstr(b.data, "rt=1611693239200 "));
		assert_non_null(strstr(b.data, "externalId="
		    "da637472900382838869_1364969609 "));
	}
	/* At 2048 only msg is cut: the rest is whole, msg a prefix. */
	assert_true(b.len > 2000);
	msg = strstr(b.data, " msg=");
	assert_non_null(msg);
	assert_memory_equal(b.data, full.data, (size_t)(msg - b.data) + 5);
	assert_non_null(strstr(b.data, " shost=temp123.middleeast.corp."
	    "microsoft.com deviceExternalId="));
	assert_non_null(strstr(b.data, " flexString1Label=AlertLink"));
	assert_true(strstr(b.data, " shost=") - msg > 500);
	assert_int_equal(memcmp(msg, strstr(full.data, " msg="),
	    (size_t)(strstr(b.data, " shost=") - msg)), 0);

	/* A long value other than msg is cut after msg is gone. */
	a.file_path = a.description;
	a.description = S("short");
	buf_reset(&b);
	cef_encode(&b, &a, &m, 1024);
	check_cef_shortened(&b, 1024);
	assert_null(strstr(b.data, " msg="));
	assert_non_null(strstr(b.data, " filePath=\\\\"));
	assert_non_null(strstr(b.data, " fileHash=ff836cfb1af40252bd2a2ea843"
	    "032e99a5b262ed "));

	/* Too small for even the header: nothing. */
	buf_reset(&b);
	cef_encode(&b, &a, &m, 40);
	assert_int_equal(b.len, 0);
	buf_clear(&b);
	buf_clear(&full);
	buf_clear(&desc);
}

static void
test_leef_shorten(void **state)
{
	struct alert	 a;
	struct event_meta m;
	struct buf	 desc, b;

	long_description(&desc);
	alert_sample(&a);
	meta_sample(&m);
	a.description.p = desc.data;
	a.description.len = desc.len;
	a.title = S("a^b|c\td");
	buf_init(&b);
	leef_encode(&b, &a, &m, 1200);
	assert_true(b.len <= 1200 && b.len > 1100);
	assert_true(valid_utf8(b.data, b.len));
	assert_memory_equal(b.data, "LEEF:2.0|Microsoft|Microsoft Defender "
	    "for Endpoint|1.0|17e10bbc-3a68-474a-8aad-faef14d43952|^|devTime=",
	    99);
	assert_non_null(strstr(b.data, "^name=a b|c d^"));
	assert_non_null(strstr(b.data, "^msg=\\"));
	assert_non_null(strstr(b.data, "^flexString1Label=AlertLink"));
	buf_clear(&b);
	buf_clear(&desc);
}

static json_t *
json_body(const struct buf *b)
{
	json_error_t	 err;
	json_t		*j;

	assert_null(memchr(b->data, '\n', b->len));
	j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &err);
	if (j == NULL)
		fail_msg("json: %s at %d: %.300s", err.text, err.position,
		    b->data);
	return (j);
}

static void
test_json_hostile(void **state)
{
	static const char raw[] = "{\n  \"id\" : \"a\\u0000b\\ud800c\",\n"
	    "\t\"title\": \"x\xff\x01y\tz\",\n  \"n\": [1, 2.5, true,null],"
	    " \"ok\": \"\\u00e9\\ud83d\\ude42\\n\" }\n";
	struct alert	 a;
	struct event_meta m;
	struct buf	 b;
	json_t		*j, *al;

	alert_blank(&a);
	a.raw = raw;
	a.raw_len = sizeof(raw) - 1;
	meta_sample(&m);
	m.tenant_label = NULL;
	m.updated = 1;
	buf_init(&b);
	json_encode(&b, &a, &m, 65536);
	assert_non_null(strstr(b.data, "\"n\":[1,2.5,true,null],"
	    "\"ok\":\"\\u00e9\\ud83d\\ude42\\n\"}}"));
	j = json_body(&b);
	assert_string_equal(json_string_value(json_object_get(j, "event")),
	    "updated");
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    j, "tenant"), "label")), "contoso");
	al = json_object_get(j, "alert");
	assert_string_equal(json_string_value(json_object_get(al, "id")),
	    "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c");
	assert_string_equal(json_string_value(json_object_get(al, "title")),
	    "x\xef\xbf\xbd\xef\xbf\xbdy\tz");
	json_decref(j);
	buf_clear(&b);
}

static void
test_json_shorten(void **state)
{
	static const size_t maxes[] = { 600, 2048, 8192 };
	struct alert	 a;
	struct event_meta m;
	struct buf	 raw, desc, b;
	json_t		*j, *d, *orig;
	size_t		 i;
	char		*text;

	long_description(&desc);
	orig = json_loadb(sample_raw.data, sample_raw.len, 0, NULL);
	assert_non_null(orig);
	json_object_set_new(orig, "description",
	    json_stringn(desc.data, desc.len));
	buf_init(&raw);
	text = json_dumps(orig, JSON_INDENT(2));
	assert_non_null(text);
	buf_adds(&raw, text);
	free(text);
	alert_sample(&a);
	a.raw = raw.data;
	a.raw_len = raw.len;
	meta_sample(&m);
	buf_init(&b);
	for (i = 0; i < nitems(maxes); i++) {
		buf_reset(&b);
		json_encode(&b, &a, &m, maxes[i]);
		assert_true(b.len <= maxes[i]);
		j = json_body(&b);
		d = json_object_get(json_object_get(j, "alert"), "id");
		assert_string_equal(json_string_value(d),
		    "da637472900382838869_1364969609");
		d = json_object_get(json_object_get(j, "alert"),
		    "description");
		assert_true(json_string_length(d) < desc.len);
		if (maxes[i] > 6000) {
			/* Only the description was cut. */
			assert_true(json_string_length(d) > 1000);
			assert_memory_equal(json_string_value(d), desc.data,
			    json_string_length(d));
			assert_int_equal(json_array_size(json_object_get(
			    json_object_get(j, "alert"), "evidence")), 3);
		}
		json_decref(j);
	}
	json_decref(orig);
	buf_clear(&b);
	buf_clear(&raw);
	buf_clear(&desc);
}

static void
test_syslog_header(void **state)
{
	struct buf	 b;
	int64_t		 t = ticks("2021-01-26T20:33:59.2345678Z");

	buf_init(&b);
	syslog_header(&b, HDR_RFC5424, 20, 2, t, "siem-fwd.example", 4242);
	assert_string_equal(b.data, "<162>1 2021-01-26T20:33:59.234567Z "
	    "siem-fwd.example alertrelayd 4242 - - ");
	buf_reset(&b);
	syslog_header(&b, HDR_RFC5424, 0, 0, t, "bad host\n", 1);
	assert_string_equal(b.data, "<0>1 2021-01-26T20:33:59.234567Z "
	    "bad_host_ alertrelayd 1 - - ");
	buf_reset(&b);
	syslog_header(&b, HDR_RFC3164, 16, 6, t, "h", 7);
	assert_string_equal(b.data, "<134>Jan 26 20:33:59 h alertrelayd[7]: ");
	buf_reset(&b);
	syslog_header(&b, HDR_RFC3164, 16, 6,
	    ticks("2021-03-05T01:02:03Z"), NULL, 7);
	assert_string_equal(b.data, "<134>Mar  5 01:02:03 - alertrelayd[7]: ");
	buf_reset(&b);
	syslog_header(&b, HDR_NONE, 16, 6, t, "h", 7);
	assert_int_equal(b.len, 0);
	buf_clear(&b);
}

static void
test_severity(void **state)
{
	static const struct {
		enum severity	 sev;
		int		 cef, pri;
	} t[] = {
		{ SEV_HIGH, 8, 162 },
		{ SEV_MEDIUM, 5, 163 },
		{ SEV_LOW, 3, 164 },
		{ SEV_INFORMATIONAL, 1, 166 },
		{ SEV_UNSPECIFIED, 0, 165 },
		{ (enum severity)42, 0, 165 },
	};
	struct conf_output o;
	struct alert	 a;
	struct event_meta m;
	struct buf	 b;
	char		 want[32];
	size_t		 i;

	memset(&o, 0, sizeof(o));
	o.format = FMT_CEF;
	o.header = HDR_RFC5424;
	o.facility = 20;	/* local4 */
	o.max_message_bytes = 2048;
	alert_sample(&a);
	meta_sample(&m);
	buf_init(&b);
	for (i = 0; i < nitems(t); i++) {
		a.severity = t[i].sev;
		assert_int_equal(cef_severity(t[i].sev), t[i].cef);
		buf_reset(&b);
		assert_int_equal(event_encode(&b, &o, &a, &m, "h", 9), 0);
		snprintf(want, sizeof(want), "<%d>1 ", t[i].pri);
		assert_memory_equal(b.data, want, strlen(want));
		snprintf(want, sizeof(want), "|%d|rt=", t[i].cef);
		assert_non_null(strstr(b.data, want));
	}
	buf_clear(&b);
}

/* event_encode: header + body within max_message_bytes, all formats. */
static void
test_event_encode(void **state)
{
	static const enum out_format fmts[] = { FMT_CEF, FMT_LEEF, FMT_JSON };
	struct conf_output o;
	struct alert	 a;
	struct event_meta m;
	struct buf	 b, desc, framed;
	size_t		 i;

	long_description(&desc);
	alert_sample(&a);
	meta_sample(&m);
	a.description.p = desc.data;
	a.description.len = desc.len;
	memset(&o, 0, sizeof(o));
	o.header = HDR_RFC3164;
	o.facility = 4;
	o.max_message_bytes = 1024;
	buf_init(&b);
	buf_init(&framed);
	for (i = 0; i < nitems(fmts); i++) {
		o.format = fmts[i];
		buf_reset(&b);
		buf_adds(&b, "keep");
		assert_int_equal(event_encode(&b, &o, &a, &m, "host", 1), 0);
		assert_memory_equal(b.data, "keep<36>Jan 26 ", 15);
		assert_true(b.len - 4 <= 1024 && b.len - 4 > 900);
		assert_true(valid_utf8(b.data, b.len));
	}
	o.max_message_bytes = 20;
	buf_reset(&b);
	assert_int_equal(event_encode(&b, &o, &a, &m, "host", 1), -1);
	assert_int_equal(b.len, 0);

	frame_message(&framed, FRAME_OCTET, "<13>1 - - - - - - x", 19);
	assert_string_equal(framed.data, "19 <13>1 - - - - - - x");
	buf_reset(&framed);
	frame_message(&framed, FRAME_NEWLINE, "msg", 3);
	assert_string_equal(framed.data, "msg\n");
	buf_clear(&framed);
	buf_clear(&b);
	buf_clear(&desc);
}

static int
setup(void **state)
{
	setenv("TZ", "UTC", 1);
	tzset();
	buf_init(&sample_raw);
	return (file_read_all(SAMPLE, 1 << 20, &sample_raw));
}

static int
teardown(void **state)
{
	buf_clear(&sample_raw);
	encode_cleanup();
	return (0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_injection_vectors),
		cmocka_unit_test(test_golden_cef),
		cmocka_unit_test(test_golden_leef),
		cmocka_unit_test(test_golden_json),
		cmocka_unit_test(test_cef_fields),
		cmocka_unit_test(test_cef_shorten),
		cmocka_unit_test(test_leef_shorten),
		cmocka_unit_test(test_json_hostile),
		cmocka_unit_test(test_json_shorten),
		cmocka_unit_test(test_syslog_header),
		cmocka_unit_test(test_severity),
		cmocka_unit_test(test_event_encode),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
