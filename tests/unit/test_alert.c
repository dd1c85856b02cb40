/* Unit tests for the page splitter, alert_parse and the JSON scanner. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "alert.h"
#include "pagesplit.h"
#include "jscan.h"
#include "util.h"

#define LUT	"\"lastUpdateTime\":\"2021-01-26T20:33:59.2Z\""

/* Assert that s holds exactly the C string want (NULL: absent). */
static void
check_astr(const struct astr *s, const char *want, const char *what)
{
	if (want == NULL) {
		if (s->p != NULL)
			fail_msg("%s: want absent, got \"%.*s\"", what,
			    (int)s->len, s->p);
		return;
	}
	if (s->p == NULL)
		fail_msg("%s: want \"%s\", got absent", what, want);
	if (s->len != strlen(want) || memcmp(s->p, want, s->len) != 0)
		fail_msg("%s: want \"%s\", got \"%.*s\"", what, want,
		    (int)s->len, s->p);
	assert_int_equal(s->p[s->len], '\0');
}
#define CHECK(a, f, want)	check_astr(&(a)->f, (want), #f)

static void
load(const char *path, struct buf *b)
{
	buf_init(b);
	if (file_read_all(path, 1 << 20, b) != 0)
		fail_msg("cannot read %s", path);
}

/* Splitter callback: keep every element, each NUL-separated in a buf. */
struct elems {
	struct buf	 all;
	size_t		 off[64];
	size_t		 len[64];
	size_t		 n;
	int		 fail_at;	/* return an error for this index */
};

static int
keep_cb(const char *obj, size_t len, void *arg)
{
	struct elems	*e = arg;

	if ((int)e->n == e->fail_at)
		return 7;
	if (e->n < nitems(e->off)) {
		e->off[e->n] = e->all.len;
		e->len[e->n] = len;
	}
	buf_add(&e->all, obj, len);
	e->n++;
	return 0;
}

static void
elems_init(struct elems *e)
{
	memset(e, 0, sizeof *e);
	buf_init(&e->all);
	e->fail_at = -1;
}

/* Split body fed in pieces of the given sizes (cycled); 0 or -1. */
static int
split(const char *body, size_t len, const size_t *sizes, size_t nsizes,
    size_t max, struct elems *e, char *err, size_t errlen, char **link)
{
	struct pagesplit	*ps;
	size_t			 off = 0, k = 0, n;
	int			 r = 0;

	ps = pagesplit_new(max, keep_cb, e);
	while (off < len) {
		n = sizes[k++ % nsizes];
		if (n > len - off)
			n = len - off;
		if ((r = pagesplit_feed(ps, body + off, n)) != 0)
			break;
		off += n;
	}
	if (r == 0)
		r = pagesplit_finish(ps);
	if (r != 0)
		snprintf(err, errlen, "%s", pagesplit_error(ps));
	else {
		assert_null(pagesplit_error(ps));
		assert_int_equal(pagesplit_count(ps), e->n);
	}
	if (link != NULL)
		*link = pagesplit_next_link(ps) == NULL ? NULL :
		    xstrdup(pagesplit_next_link(ps));
	pagesplit_free(ps);
	return r;
}

/* Split a whole C string in one piece; returns the error text or "". */
static const char *
split_err(const char *body, size_t max)
{
	static char	 err[256];
	struct elems	 e;
	size_t		 len = strlen(body);

	elems_init(&e);
	err[0] = '\0';
	split(body, len, &len, 1, max, &e, err, sizeof err, NULL);
	buf_clear(&e.all);
	return err;
}

static int
parse(struct alert *a, enum tenant_source src, const char *json, char *err)
{
	return alert_parse(a, src, json, strlen(json), err, 256);
}

/* §2.10, verbatim: every field alertrelay forwards. */
static void
test_mde_sample(void **state)
{
	struct alert	 a;
	struct buf	 b;
	char		 err[256];

	load("tests/data/alert-sample.json", &b);
	alert_init(&a);
	assert_int_equal(alert_parse(&a, SRC_MDE, b.data, b.len, err,
	    sizeof err), 0);
	assert_ptr_equal(a.raw, b.data);
	assert_int_equal(a.raw_len, b.len);
	CHECK(&a, id, "da637472900382838869_1364969609");
	CHECK(&a, title, "Low-reputation arbitrary code executed by signed "
	    "executable");
	CHECK(&a, description, "Binaries signed by Microsoft can be used to "
	    "run low-reputation arbitrary code. This technique hides the "
	    "execution of malicious code within a trusted process. As a "
	    "result, the trusted process might exhibit suspicious behaviors, "
	    "such as opening a listening port or connecting to a "
	    "command-and-control (C&C) server.");
	CHECK(&a, category, "Execution");
	CHECK(&a, detector_id, "17e10bbc-3a68-474a-8aad-faef14d43952");
	CHECK(&a, detection_source, "WindowsDefenderAtp");
	CHECK(&a, computer_dns_name, "temp123.middleeast.corp.microsoft.com");
	CHECK(&a, machine_id, "111e6dd8c833c8a052ea231ec1b19adaf497b625");
	CHECK(&a, aad_tenant_id, "a839b112-1253-6432-9bf6-94542403f21c");
	CHECK(&a, threat_name, NULL);
	CHECK(&a, status, "New");
	CHECK(&a, classification, NULL);
	CHECK(&a, determination, NULL);
	CHECK(&a, severity_text, "Low");
	assert_int_equal(a.severity, SEV_LOW);
	CHECK(&a, user_name, "temp123");
	CHECK(&a, domain_name, "DOMAIN");
	CHECK(&a, mitre, "T1064,T1085,T1220");
	CHECK(&a, incident_id, "1126093");
	CHECK(&a, investigation_id, NULL);
	assert_int_equal(a.last_update, 16116932392000000LL);
	assert_int_equal(a.creation, 16116932377220239LL);
	assert_int_equal(a.first_event, 16116930929562661LL);
	assert_int_equal(a.last_event, 16116930930577322LL);
	assert_int_equal(a.evidence_count, 3);
	/* The Process entry comes before the File one. */
	CHECK(&a, file_name, "rundll32.exe");
	CHECK(&a, file_path, "C:\\Windows\\SysWOW64");
	CHECK(&a, sha1, "ff836cfb1af40252bd2a2ea843032e99a5b262ed");
	CHECK(&a, sha256, "a4752c71d81afd3d5865d24ddb11a6b0c615062fcc448d24"
	    "050c2172d2cbccd6");
	CHECK(&a, ip_address, NULL);
	CHECK(&a, url, NULL);

	/* Parsing again into the same alert reuses it cleanly. */
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"x\"," LUT "}", err), 0);
	CHECK(&a, id, "x");
	CHECK(&a, title, NULL);
	assert_int_equal(a.evidence_count, 0);
	assert_int_equal(a.creation, TICKS_NONE);
	alert_clear(&a);
	buf_clear(&b);
}

/* §2.11 (without the doc's "..." line) through the splitter. */
static void
test_mde_page_sample(void **state)
{
	struct alert	 a;
	struct elems	 e;
	struct buf	 b;
	char		 err[256], *link;
	size_t		 whole;

	load("tests/data/page-sample.json", &b);
	elems_init(&e);
	whole = b.len;
	assert_int_equal(split(b.data, b.len, &whole, 1, 0, &e, err,
	    sizeof err, &link), 0);
	assert_int_equal(e.n, 1);
	assert_null(link);
	alert_init(&a);
	assert_int_equal(alert_parse(&a, SRC_MDE, e.all.data, e.all.len,
	    err, sizeof err), 0);
	assert_int_equal(a.raw[0], '{');
	assert_int_equal(a.raw[a.raw_len - 1], '}');
	CHECK(&a, id, "da637308392288907382_-880718168");
	CHECK(&a, incident_id, "7587");
	CHECK(&a, investigation_id, "723156");
	CHECK(&a, severity_text, "Low");
	assert_int_equal(a.severity, SEV_LOW);
	CHECK(&a, status, "New");
	CHECK(&a, classification, "TruePositive");
	CHECK(&a, determination, NULL);
	CHECK(&a, detection_source, "WindowsDefenderAv");
	CHECK(&a, detector_id, NULL);
	CHECK(&a, category, "SuspiciousActivity");
	CHECK(&a, threat_name, NULL);
	CHECK(&a, title, "Suspicious 'Meterpreter' behavior was detected");
	assert_non_null(strstr(a.description.p, "from one machine to another."
	    " Others"));
	assert_non_null(strstr(a.description.p, "cyber attacks.\n\nA malware "
	    "is considered active"));
	assert_null(strchr(a.description.p, '\\'));
	assert_int_equal(a.description.len, 629);
	CHECK(&a, machine_id, "12ee6dd8c833c8a052ea231ec1b19adaf497b625");
	CHECK(&a, computer_dns_name, "temp123.middleeast.corp.microsoft.com");
	CHECK(&a, aad_tenant_id, "a839b112-1253-6432-9bf6-94542403f21c");
	CHECK(&a, user_name, "temp123");
	CHECK(&a, domain_name, "DOMAIN");
	CHECK(&a, mitre, "T1064,T1085,T1220");
	assert_int_equal(a.last_update, 15952424301900000LL);
	assert_int_equal(a.creation, 15952424287657932LL);
	assert_int_equal(a.first_event, 15952423376654369LL);
	assert_int_equal(a.last_event, 15952423381362905LL);
	assert_int_equal(a.evidence_count, 0);
	CHECK(&a, file_name, NULL);
	CHECK(&a, sha256, NULL);
	alert_clear(&a);
	buf_clear(&e.all);
	buf_clear(&b);
}

/* §5.4 Graph alerts_v2 sample, verbatim (U+FFFD and all). */
static void
test_graph_sample(void **state)
{
	struct alert	 a;
	struct elems	 e;
	struct buf	 b;
	char		 err[256];
	size_t		 one = 1;

	load("tests/data/graph-page-sample.json", &b);
	elems_init(&e);
	assert_int_equal(split(b.data, b.len, &one, 1, 0, &e, err,
	    sizeof err, NULL), 0);
	assert_int_equal(e.n, 1);
	alert_init(&a);
	assert_int_equal(alert_parse(&a, SRC_GRAPH, e.all.data, e.all.len,
	    err, sizeof err), 0);
	CHECK(&a, id, "da637551227677560813_-961444813");
	CHECK(&a, incident_id, "28282");
	CHECK(&a, status, "new");
	CHECK(&a, severity_text, "low");
	assert_int_equal(a.severity, SEV_LOW);
	CHECK(&a, classification, "unknown");
	CHECK(&a, determination, "unknown");
	CHECK(&a, detection_source, "antivirus");
	CHECK(&a, detector_id, "e0da400f-affd-43ef-b1d5-afc2eb6f2756");
	CHECK(&a, aad_tenant_id, "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c");
	CHECK(&a, title, "Suspicious execution of hidden file");
	CHECK(&a, description, "A hidden file has been launched. This "
	    "activity could indicate a compromised host. Attackers often hide "
	    "files associated with malicious tools to evade file system "
	    "inspection and defenses.");
	CHECK(&a, category, "DefenseEvasion");
	CHECK(&a, threat_name, NULL);
	CHECK(&a, mitre, "T1564.001");
	assert_int_equal(a.creation, 16195259677211305LL);
	assert_int_equal(a.last_update, 16199651413266667LL);
	assert_int_equal(a.first_event, 16194231501160000LL);
	assert_int_equal(a.last_event, 16199422182220000LL);
	assert_int_equal(a.evidence_count, 4);
	CHECK(&a, computer_dns_name, "tempDns");
	CHECK(&a, machine_id, "73e7e2de709dff64ef64b1d0c30e67fab63279db");
	CHECK(&a, file_name, "MsSense.exe");
	CHECK(&a, file_path, "C:\\Program Files\\temp");
	CHECK(&a, sha1, "5f1e8acedc065031aad553b710838eb366cfee9a");
	CHECK(&a, sha256, "8963a19fb992ad9a76576c5638fd68292cffb9aaac29eb82"
	    "85f9abf6196a7dec");
	CHECK(&a, ip_address, NULL);
	CHECK(&a, url, NULL);
	CHECK(&a, user_name, NULL);	/* no userEvidence in the sample */
	CHECK(&a, investigation_id, NULL);

	/* The MDE reading of the same bytes finds no lastUpdateTime. */
	assert_int_equal(alert_parse(&a, SRC_MDE, e.all.data, e.all.len,
	    err, sizeof err), -1);
	assert_string_equal(err,
	    "\"lastUpdateTime\" is missing or not a valid time");
	alert_clear(&a);
	buf_clear(&e.all);
	buf_clear(&b);
}

/* Graph evidence of each type, in an order that tests "first wins". */
static void
test_graph_evidence(void **state)
{
	struct alert	 a;
	char		 err[256];
	const char	*j =
	    "{\"evidence\":[7,"
	    "{\"@odata.type\":\"#microsoft.graph.security.ipEvidence\","
	    "\"ipAddress\":\"2001:db8::1\"},"
	    "{\"@odata.type\":\"#microsoft.graph.security.userEvidence\","
	    "\"userAccount\":{\"accountName\":\"alice\",\"domainName\":"
	    "\"CONTOSO\",\"userSid\":\"S-1\"}},"
	    "{\"imageFile\":{\"fileName\":\"p.exe\",\"filePath\":\"C:\\\\p\","
	    "\"sha1\":\"s1\",\"sha256\":null},"
	    "\"@odata.type\":\"#microsoft.graph.security.processEvidence\"},"
	    "{\"@odata.type\":\"#microsoft.graph.security.fileEvidence\","
	    "\"fileDetails\":{\"fileName\":\"f.dll\",\"sha256\":\"s256\"}},"
	    "{\"@odata.type\":\"#microsoft.graph.security.urlEvidence\","
	    "\"url\":\"http://x.test/\"},"
	    "{\"@odata.type\":\"#microsoft.graph.security.ipEvidence\","
	    "\"ipAddress\":\"10.0.0.1\"},"
	    "{\"@odata.type\":\"#microsoft.graph.security.userEvidence\","
	    "\"userAccount\":{\"accountName\":\"bob\"}},"
	    "{\"@odata.type\":\"#microsoft.graph.security.deviceEvidence\","
	    "\"deviceDnsName\":5,\"mdeDeviceId\":\"dev\"}],"
	    "\"id\":\"g1\",\"severity\":\"unknown\",\"incidentId\":42,"
	    "\"threatFamilyName\":\"Meterpreter\","
	    "\"lastUpdateDateTime\":\"2021-05-02T14:19:01Z\"}";

	alert_init(&a);
	assert_int_equal(parse(&a, SRC_GRAPH, j, err), 0);
	assert_int_equal(a.evidence_count, 9);
	CHECK(&a, ip_address, "2001:db8::1");
	CHECK(&a, user_name, "alice");
	CHECK(&a, domain_name, "CONTOSO");
	CHECK(&a, file_name, "p.exe");
	CHECK(&a, file_path, "C:\\p");
	CHECK(&a, sha1, "s1");
	CHECK(&a, sha256, "s256");
	CHECK(&a, url, "http://x.test/");
	CHECK(&a, computer_dns_name, NULL);
	CHECK(&a, machine_id, "dev");
	CHECK(&a, severity_text, "unknown");
	assert_int_equal(a.severity, SEV_UNSPECIFIED);
	CHECK(&a, incident_id, "42");
	CHECK(&a, threat_name, "Meterpreter");
	assert_int_equal(a.last_update, 16199651410000000LL);

	assert_int_equal(parse(&a, SRC_GRAPH, "{\"id\":\"g\"," LUT "}", err),
	    -1);
	assert_string_equal(err,
	    "\"lastUpdateDateTime\" is missing or not a valid time");
	alert_clear(&a);
}

/* MDE evidence rules and wrong types that must read as absent. */
static void
test_mde_types(void **state)
{
	struct alert	 a;
	char		 err[256];
	const char	*j =
	    "{\"id\":\"a1\"," LUT ",\"title\":5,\"status\":true,"
	    "\"category\":{\"x\":1},\"description\":[\"d\"],"
	    "\"relatedUser\":\"someone\",\"mitreTechniques\":\"T1,T2\","
	    "\"incidentId\":\"INC-9\",\"investigationId\":-42,"
	    "\"severity\":\"HIGH\",\"alertCreationTime\":\"yesterday\","
	    "\"firstEventTime\":17,\"lastEventTime\":\"2021-01-26T20:31:33Z\","
	    "\"evidence\":[null,"
	    "{\"entityType\":\"User\",\"fileName\":\"u\",\"sha256\":null},"
	    "{\"sha256\":null,\"fileName\":\"a.txt\",\"entityType\":\"File\","
	    "\"sha1\":7},"
	    "{\"entityType\":\"Process\",\"fileName\":\"p.exe\","
	    "\"sha256\":\"S256\"},"
	    "{\"entityType\":\"Ip\",\"ipAddress\":\"192.0.2.1\"},"
	    "{\"entityType\":\"Url\",\"url\":\"http://u.test/\","
	    "\"ipAddress\":\"192.0.2.99\"}]}";

	alert_init(&a);
	assert_int_equal(parse(&a, SRC_MDE, j, err), 0);
	CHECK(&a, title, NULL);
	CHECK(&a, status, NULL);
	CHECK(&a, category, NULL);
	CHECK(&a, description, NULL);
	CHECK(&a, user_name, NULL);
	CHECK(&a, mitre, "T1,T2");
	CHECK(&a, incident_id, "INC-9");
	CHECK(&a, investigation_id, "-42");
	assert_int_equal(a.severity, SEV_HIGH);
	assert_int_equal(a.creation, TICKS_NONE);
	assert_int_equal(a.first_event, TICKS_NONE);
	assert_int_equal(a.last_event, 16116930930000000LL);
	assert_int_equal(a.evidence_count, 6);
	CHECK(&a, file_name, "a.txt");		/* first File/Process */
	CHECK(&a, sha1, NULL);
	CHECK(&a, file_path, NULL);
	CHECK(&a, sha256, "S256");		/* first non-null */
	CHECK(&a, ip_address, "192.0.2.1");
	CHECK(&a, url, "http://u.test/");

	/* Severity names are case-insensitive; others are unspecified. */
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\"," LUT
	    ",\"severity\":\"informational\"}", err), 0);
	assert_int_equal(a.severity, SEV_INFORMATIONAL);
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\"," LUT
	    ",\"severity\":\"Critical\"}", err), 0);
	assert_int_equal(a.severity, SEV_UNSPECIFIED);
	CHECK(&a, severity_text, "Critical");
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\"," LUT
	    ",\"severity\":\"Medium\",\"severity\":null}", err), 0);
	assert_int_equal(a.severity, SEV_UNSPECIFIED);

	/* Duplicates: the last one wins, null included. */
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\"," LUT
	    ",\"title\":\"one\",\"title\":\"two\",\"status\":\"s\","
	    "\"status\":null,\"evidence\":[{}],\"evidence\":[{},{}]}", err),
	    0);
	CHECK(&a, title, "two");
	CHECK(&a, status, NULL);
	assert_int_equal(a.evidence_count, 2);

	/* relatedUser null or an object; escaped key names match. */
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\"," LUT
	    ",\"relatedUser\":null,\"t\\u0069tle\":\"T\","
	    "\"mitreTechniques\":[1,\"T9\",null,\"T8\"]}", err), 0);
	CHECK(&a, user_name, NULL);
	CHECK(&a, title, "T");
	CHECK(&a, mitre, "T9,T8");
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\"," LUT
	    ",\"relatedUser\":{\"domainName\":\"D\"},\"mitreTechniques\":[]}",
	    err), 0);
	CHECK(&a, user_name, NULL);
	CHECK(&a, domain_name, "D");
	CHECK(&a, mitre, NULL);
	alert_clear(&a);
}

/* Errors name the field, or the byte for malformed JSON. */
static void
test_parse_errors(void **state)
{
	static const struct {
		const char	*json;
		const char	*err;
	} t[] = {
		{ "", "alert is not a JSON object" },
		{ "  [1]", "alert is not a JSON object" },
		{ "\"id\"", "alert is not a JSON object" },
		{ "{\"id\":\"a\"," LUT ",}",
		  "invalid JSON at byte 52: expected a string key" },
		{ "{\"id\":\"a\"," LUT "} x",
		  "invalid JSON at byte 53: unexpected bytes after the value" },
		{ "{\"id\":\"a\"," LUT,
		  "invalid JSON at byte 51: unexpected end" },
		{ "{\"id\":\"a\" " LUT "}",
		  "invalid JSON at byte 10: expected ',' or '}'" },
		{ "{\"id\":\"a\",\"x\":[1,]," LUT "}",
		  "invalid JSON at byte 17: expected a value" },
		{ "{\"id\":\"a\",\"x\":tru," LUT "}",
		  "invalid JSON at byte 14: invalid literal" },
		{ "{\"id\":\"a\",\"x\":01," LUT "}",
		  "invalid JSON at byte 15: expected ',' or '}'" },
		{ "{\"id\":\"a\",\"x\":-," LUT "}",
		  "invalid JSON at byte 14: invalid number" },
		{ "{\"id\":\"a\",\"x\":\"\\x\"," LUT "}",
		  "invalid JSON at byte 15: invalid escape" },
		{ "{\"id\":\"a\",\"title\":\"\\u12G4\"," LUT "}",
		  "invalid JSON at byte 19: invalid \\u escape" },
		{ "{\"id\":\"a\",\"title\":\"abc",
		  "invalid JSON at byte 18: unterminated string" },
		{ "{\"id\":\"a\",\"x\":{\"a\" 1}," LUT "}",
		  "invalid JSON at byte 19: expected ':'" },
		{ "{\"id\":\"a\",\"x\":[}," LUT "}",
		  "invalid JSON at byte 15: unexpected character" },
		{ "{" LUT "}", "\"id\" is missing, empty or not a string" },
		{ "{\"id\":17," LUT "}",
		  "\"id\" is missing, empty or not a string" },
		{ "{\"id\":\"\"," LUT "}",
		  "\"id\" is missing, empty or not a string" },
		{ "{\"id\":null," LUT "}",
		  "\"id\" is missing, empty or not a string" },
		{ "{\"id\":\"a\"}",
		  "\"lastUpdateTime\" is missing or not a valid time" },
		{ "{\"id\":\"a\",\"lastUpdateTime\":\"2021-13-01T00:00:00Z\"}",
		  "\"lastUpdateTime\" is missing or not a valid time" },
		{ "{\"id\":\"a\",\"lastUpdateTime\":1611693239}",
		  "\"lastUpdateTime\" is missing or not a valid time" },
	};
	struct alert	 a;
	char		 err[256];
	size_t		 i;

	alert_init(&a);
	for (i = 0; i < nitems(t); i++) {
		snprintf(err, sizeof err, "unset");
		if (parse(&a, SRC_MDE, t[i].json, err) != -1)
			fail_msg("accepted: %s", t[i].json);
		if (strcmp(err, t[i].err) != 0)
			fail_msg("%s: want '%s', got '%s'", t[i].json,
			    t[i].err, err);
		assert_null(a.id.p);
	}
	/* Time stamps: 0 to 7 fractional digits, and escaped. */
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\",\"lastUpdateTime\":"
	    "\"2021-01-26T20:33:59Z\"}", err), 0);
	assert_int_equal(a.last_update, 16116932390000000LL);
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\",\"lastUpdateTime\":"
	    "\"2021-01-26T20:33:59.1234567Z\"}", err), 0);
	assert_int_equal(a.last_update, 16116932391234567LL);
	assert_int_equal(parse(&a, SRC_MDE, "{\"id\":\"a\",\"lastUpdateTime\":"
	    "\"2021-01-26T20:33:59\\u002e5Z\"}", err), 0);
	assert_int_equal(a.last_update, 16116932395000000LL);
	alert_clear(&a);
}

/* Escapes decode to the right bytes; hostile bytes pass through. */
static void
test_hostile_strings(void **state)
{
	static const struct {
		const char	*in;
		const char	*out;
		size_t		 outlen;
	} t[] = {
		{ "adm\\u0000in", "adm\0in", 6 },
		{ "\\ud800", "\xef\xbf\xbd", 3 },
		{ "\\udc00", "\xef\xbf\xbd", 3 },
		{ "x\\ud800y", "x\xef\xbf\xbdy", 5 },
		{ "\\ud800\\u0041", "\xef\xbf\xbd" "A", 4 },
		{ "\\ud800\\ud800", "\xef\xbf\xbd\xef\xbf\xbd", 6 },
		{ "\\udbff\\udfff", "\xf4\x8f\xbf\xbf", 4 },
		{ "\\ud83d\\ude00", "\xf0\x9f\x98\x80", 4 },
		{ "\\ud83D\\uDE00!", "\xf0\x9f\x98\x80!", 5 },
		{ "\\u00e9\\u20AC\\u007f", "\xc3\xa9\xe2\x82\xac\x7f", 6 },
		{ "\\\"\\\\\\/\\b\\f\\n\\r\\t", "\"\\/\b\f\n\r\t", 8 },
		{ "\xff\xfe\xc0\xaf \xed\xa0\x80",
		  "\xff\xfe\xc0\xaf \xed\xa0\x80", 8 },
		{ "raw\x01\x1f", "raw\x01\x1f", 5 },
		{ "", "", 0 },
	};
	struct alert	 a;
	struct buf	 j;
	char		 err[256];
	size_t		 i;

	alert_init(&a);
	buf_init(&j);
	for (i = 0; i < nitems(t); i++) {
		buf_reset(&j);
		buf_addf(&j, "{\"id\":\"a\"," LUT ",\"title\":\"%s\","
		    "\"x\":\"%s\"}", t[i].in, t[i].in);
		if (alert_parse(&a, SRC_MDE, j.data, j.len, err,
		    sizeof err) != 0)
			fail_msg("%s: %s", t[i].in, err);
		assert_int_equal(a.title.len, t[i].outlen);
		assert_memory_equal(a.title.p, t[i].out, t[i].outlen);
		assert_int_equal(a.title.p[a.title.len], '\0');
	}
	buf_clear(&j);
	alert_clear(&a);
}

/* 1000 levels of nesting, and 1 MB strings (one of 512K escapes). */
static void
test_hostile_sizes(void **state)
{
	struct alert	 a;
	struct buf	 j;
	char		 err[256];
	size_t		 i;

	alert_init(&a);
	buf_init(&j);
	buf_adds(&j, "{\"id\":\"a\"," LUT ",\"deep\":");
	for (i = 0; i < 1000; i++)
		buf_adds(&j, i % 2 ? "{\"k\":" : "[");
	assert_int_equal(alert_parse(&a, SRC_MDE, j.data, j.len, err,
	    sizeof err), -1);
	assert_non_null(strstr(err, "nested too deeply"));

	/* 63 levels below the alert itself are fine. */
	buf_reset(&j);
	buf_adds(&j, "{\"id\":\"a\"," LUT ",\"deep\":");
	for (i = 0; i < 63; i++)
		buf_addc(&j, '[');
	for (i = 0; i < 63; i++)
		buf_addc(&j, ']');
	buf_addc(&j, '}');
	assert_int_equal(alert_parse(&a, SRC_MDE, j.data, j.len, err,
	    sizeof err), 0);
	buf_truncate(&j, j.len - 64);
	buf_adds(&j, "[[]]}");
	assert_int_equal(alert_parse(&a, SRC_MDE, j.data, j.len, err,
	    sizeof err), -1);

	buf_reset(&j);
	buf_adds(&j, "{\"id\":\"a\"," LUT ",\"title\":\"");
	for (i = 0; i < (1 << 20); i++)
		buf_addc(&j, 'a' + i % 26);
	buf_adds(&j, "\",\"skipped\":\"");
	for (i = 0; i < (1 << 19); i++)
		buf_adds(&j, "\\\\");
	buf_adds(&j, "\",\"description\":\"");
	for (i = 0; i < (1 << 19); i++)
		buf_adds(&j, "\\\"");
	buf_adds(&j, "\"}");
	assert_int_equal(alert_parse(&a, SRC_MDE, j.data, j.len, err,
	    sizeof err), 0);
	assert_int_equal(a.title.len, 1 << 20);
	assert_int_equal(a.title.p[(1 << 20) - 1], 'a' + ((1 << 20) - 1) % 26);
	assert_int_equal(a.description.len, 1 << 19);
	assert_int_equal(a.description.p[12345], '"');
	buf_clear(&j);
	alert_clear(&a);
}

/* A page with every kind of envelope member around three elements. */
static void
build_page(struct buf *page, const struct buf *sample)
{
	buf_init(page);
	buf_adds(page, " \r\n{ \"@odata.context\" :\"https://api.security"
	    "center.microsoft.com/api/$metadata#Alerts\",\t\"@odata.count\""
	    ":3, \"n\":-1.5e+3,\"t\":true,\"f\":false,\"z\":null,"
	    "\"x\\\"y\":{\"a\":[1,2,{\"b\":\"]}\\\"[\\\\\"}],\"c\":null},"
	    "\"e\":[] ,\"o\":{} ,\n\"value\"\n:\n[\n");
	buf_add(page, sample->data, sample->len);
	buf_adds(page, ",{\"id\":\"b\\\"}]\\\\\",\"lastUpdateTime\":"
	    "\"2021-01-26T20:33:59Z\",\"n\":[{},[[]],\"\\u0041\"]}"
	    " ,  {\"id\":\"c\",\"lastUpdateTime\":\"2021-01-26T20:33:59Z\"}"
	    "],\"@odata.nextLink\" : \"https://api.security.microsoft.com/api"
	    "/alerts?$skip=3\\u0026$filter=a\\/b\\\\c\" }\n\n");
}

/* Any split of the body gives the same elements as one piece. */
static void
test_split_chunks(void **state)
{
	struct buf	 sample, page;
	struct elems	 ref, e;
	char		 err[256], *link;
	size_t		 n, sizes[16], i, k;
	uint64_t	 seed = 0x5eed1234abcdULL;

	load("tests/data/alert-sample.json", &sample);
	build_page(&page, &sample);
	elems_init(&ref);
	n = page.len;
	assert_int_equal(split(page.data, page.len, &n, 1, 0, &ref, err,
	    sizeof err, &link), 0);
	assert_int_equal(ref.n, 3);
	assert_int_equal(ref.len[0], sample.len - 1);	/* no newline */
	assert_memory_equal(ref.all.data, sample.data, sample.len - 1);
	assert_memory_equal(ref.all.data + ref.off[2],
	    "{\"id\":\"c\",", 10);
	assert_string_equal(link, "https://api.security.microsoft.com/api/"
	    "alerts?$skip=3&$filter=a/b\\c");
	free(link);

	for (n = 1; n <= 64 + 16; n++) {
		elems_init(&e);
		if (n > 64) {	/* random piece sizes */
			for (k = 0; k < nitems(sizes); k++) {
				seed = seed * 6364136223846793005ULL +
				    1442695040888963407ULL;
				sizes[k] = 1 + (seed >> 33) % 300;
			}
			i = split(page.data, page.len, sizes, nitems(sizes),
			    0, &e, err, sizeof err, &link);
		} else
			i = split(page.data, page.len, &n, 1, 0, &e, err,
			    sizeof err, &link);
		if (i != 0)
			fail_msg("pieces of %zu: %s", n, err);
		assert_int_equal(e.n, ref.n);
		for (k = 0; k < ref.n; k++)
			assert_int_equal(e.len[k], ref.len[k]);
		assert_int_equal(e.all.len, ref.all.len);
		assert_memory_equal(e.all.data, ref.all.data, ref.all.len);
		assert_string_equal(link, "https://api.security.microsoft.com"
		    "/api/alerts?$skip=3&$filter=a/b\\c");
		free(link);
		buf_clear(&e.all);
	}

	/* Every proper prefix of the body is an error, never a crash. */
	for (n = 0; n < page.len - 3; n++) {
		elems_init(&e);
		if (split(page.data, n, &n, 1, 0, &e, err, sizeof err,
		    NULL) == 0)
			fail_msg("prefix of %zu bytes accepted", n);
		assert_true(e.n <= 3);
		buf_clear(&e.all);
	}
	buf_clear(&ref.all);
	buf_clear(&page);
	buf_clear(&sample);
}

/* Each error says what is wrong and where. */
static void
test_split_errors(void **state)
{
	assert_string_equal(split_err("", 0), "not JSON: empty body");
	assert_string_equal(split_err("  \n", 0), "not JSON: empty body");
	assert_string_equal(split_err("<html>", 0),
	    "not JSON: expected '{' at byte 0");
	assert_string_equal(split_err(" [{}]", 0),
	    "not JSON: expected '{' at byte 1");
	assert_string_equal(split_err("{}", 0),
	    "no \"value\" array in response");
	assert_string_equal(split_err("{\"@odata.context\":\"x\","
	    "\"error\":{\"code\":\"x\"}}", 0),
	    "no \"value\" array in response");
	assert_string_equal(split_err("{\"value\":{}}", 0),
	    "\"value\" is not an array (byte 9)");
	assert_string_equal(split_err("{\"value\":null}", 0),
	    "\"value\" is not an array (byte 9)");
	assert_string_equal(split_err("{\"value\":[1]}", 0),
	    "value[0] is not an object (byte 10)");
	assert_string_equal(split_err("{\"value\":[{\"id\":\"a\"},{},{},"
	    "\"x\"]}", 0), "value[3] is not an object (byte 27)");
	assert_string_equal(split_err("{\"value\":[{},{},{\"a\":[[",
	    0), "body ended inside value[2]");
	assert_string_equal(split_err("{\"value\":[{},{},{\"a\":\"\\",
	    0), "body ended inside value[2]");
	assert_string_equal(split_err("{\"value\":[{},{}", 0),
	    "body ended inside the \"value\" array after 2 elements");
	assert_string_equal(split_err("{\"value\":[{}]", 0),
	    "body ended inside the envelope at byte 13");
	assert_string_equal(split_err("{\"value\":[]} x", 0),
	    "trailing garbage after the envelope at byte 13");
	assert_string_equal(split_err("{\"value\":[]}{}", 0),
	    "trailing garbage after the envelope at byte 12");
	assert_string_equal(split_err("{\"value\":[],\"value\":[]}", 0),
	    "second \"value\" member at byte 20");
	assert_string_equal(split_err("{\"value\" [", 0),
	    "invalid JSON at byte 9: expected ':'");
	assert_string_equal(split_err("{value:[]}", 0),
	    "invalid JSON at byte 1: expected a member name");
	assert_string_equal(split_err("{\"value\":[{\"a\":1]}]}", 0),
	    "invalid JSON at byte 16: unexpected ']'");
	assert_string_equal(split_err("{\"value\":[{}}]}", 0),
	    "invalid JSON at byte 12: expected ',' or ']' after value[0]");
	assert_string_equal(split_err("{\"x\":tru,\"value\":[]}", 0),
	    "invalid JSON at byte 5: invalid literal");
	assert_string_equal(split_err("{\"x\":1.,\"value\":[]}", 0),
	    "invalid JSON at byte 5: invalid number");
	assert_string_equal(split_err("{\"x\":[1}", 0),
	    "invalid JSON at byte 7: unexpected '}'");
	assert_string_equal(split_err("{\"x\":1 \"value\":[]}", 0),
	    "invalid JSON at byte 7: expected ',' or '}'");
	assert_string_equal(split_err("{\"x\":1,}", 0),
	    "invalid JSON at byte 7: expected a member name");
	assert_string_equal(split_err("{\"a\\q\":1}", 0),
	    "invalid JSON at byte 3: invalid escape");
	assert_string_equal(split_err("{\"value\":[],\"@odata.nextLink\":5}",
	    0), "\"@odata.nextLink\" is not a string (byte 30)");
	assert_string_equal(split_err("{\"value\":[],\"@odata.nextLink\":"
	    "\"a\\u0000\"}", 0), "\"@odata.nextLink\" holds a NUL");
	assert_string_equal(split_err("{\"value\":[],\"@odata.nextLink\":"
	    "null}", 0), "");
	/* Escaped names are still recognised. */
	assert_string_equal(split_err("{\"v\\u0061lue\":[{}]}", 0), "");

	/* max_element (22 and 23-byte elements), in one piece. */
	assert_string_equal(split_err("{\"value\":[{\"a\":\"xxxxxxxxxxxxxx\"},"
	    "{\"a\":\"xxxxxxxxxxxxxxx\"}]}", 22),
	    "value[1] is larger than 22 bytes");
	assert_string_equal(split_err("{\"value\":[{\"a\":\"xxxxxxxxxxxxxx\"},"
	    "{\"a\":\"xxxxxxxxxxxxxxx\"}]}", 23), "");
	assert_string_equal(split_err("{\"value\":[{\"a\":\"xxxxxxxxxxxxxx\"}]"
	    "}", 21), "value[0] is larger than 21 bytes");
}

/* Pieces too: an element over max_element, a callback error, no reuse. */
static void
test_split_pieces(void **state)
{
	struct pagesplit	*ps;
	struct elems		 e;
	const char		*body = "{\"value\":[{\"id\":\"a\"},"
	    "{\"id\":\"b\"},{\"id\":\"c\"}]}";
	struct buf		 skip;
	size_t			 i;

	/* An element over the cap is refused before it is all buffered. */
	elems_init(&e);
	ps = pagesplit_new(1000, keep_cb, &e);
	assert_int_equal(pagesplit_feed(ps, "{\"value\":[{\"a\":\"", 16), 0);
	for (i = 0; i < 100; i++) {
		if (pagesplit_feed(ps, "0123456789", 10) != 0)
			break;
	}
	assert_int_equal(i, 99);	/* 6 + 100 * 10 > 1000 */
	assert_string_equal(pagesplit_error(ps),
	    "value[0] is larger than 1000 bytes");
	assert_int_equal(pagesplit_feed(ps, "\"}]}", 4), -1);
	assert_int_equal(pagesplit_finish(ps), -1);
	pagesplit_free(ps);

	/* A callback error stops the split. */
	elems_init(&e);
	e.fail_at = 1;
	ps = pagesplit_new(0, keep_cb, &e);
	assert_int_equal(pagesplit_feed(ps, body, strlen(body)), -1);
	assert_string_equal(pagesplit_error(ps),
	    "value[1] rejected (error 7)");
	assert_int_equal(pagesplit_count(ps), 1);
	assert_int_equal(e.n, 1);
	pagesplit_free(ps);
	buf_clear(&e.all);

	/* Skipped members are not buffered: no cap applies to them. */
	buf_init(&skip);
	buf_adds(&skip, "{\"junk\":[\"");
	for (i = 0; i < (1 << 20) / 8; i++)
		buf_adds(&skip, "\\\\\\\"x}]{");
	buf_adds(&skip, "\"],\"value\":[{\"id\":\"a\"}]}");
	elems_init(&e);
	ps = pagesplit_new(64, keep_cb, &e);
	for (i = 0; i < skip.len; i += 4096)
		assert_int_equal(pagesplit_feed(ps, skip.data + i,
		    skip.len - i < 4096 ? skip.len - i : 4096), 0);
	assert_int_equal(pagesplit_finish(ps), 0);
	assert_int_equal(e.n, 1);
	assert_null(pagesplit_next_link(ps));
	pagesplit_free(ps);
	buf_clear(&e.all);
	buf_clear(&skip);

	/* Deep nesting in a skipped member and in an element. */
	buf_init(&skip);
	buf_adds(&skip, "{\"deep\":");
	for (i = 0; i < 1000; i++)
		buf_addc(&skip, '[');
	assert_string_equal(split_err(skip.data, 0),
	    "invalid JSON at byte 72: nested deeper than 64");
	buf_reset(&skip);
	buf_adds(&skip, "{\"value\":[{\"a\":");
	for (i = 0; i < 1000; i++)
		buf_adds(&skip, "{\"a\":");
	assert_string_equal(split_err(skip.data, 0),
	    "invalid JSON at byte 330: nested deeper than 64");
	buf_clear(&skip);
	pagesplit_free(NULL);
}

/* The scanner on its own: decoding never grows, errors stay first. */
static void
test_jscan(void **state)
{
	struct jscan	 js;
	struct jstr	 s;
	struct buf	 b;
	char		 out[32], big[256];
	unsigned	 n = 0;
	size_t		 len, pos, k;

	buf_init(&b);

	/* Malformed escapes in unchecked input are copied raw. */
	assert_int_equal(jscan_unescape("a\\q\\u12", 7, out), 7);
	assert_memory_equal(out, "a\\q\\u12", 7);
	assert_int_equal(jscan_unescape("\\", 1, out), 1);

	jscan_init(&js, "{\"k\\n\":[true , false,null,-0.5E-3]}", 35);
	assert_int_equal(jscan_open(&js, '{'), 0);
	assert_int_equal(jscan_member(&js, &n, &s), 1);
	assert_true(s.esc);
	assert_true(jstr_eq(&s, "k\n", 2));
	assert_false(jstr_eq(&s, "k", 1));
	assert_int_equal(jscan_skip(&js), 0);
	assert_int_equal(jscan_member(&js, &n, &s), 0);
	assert_int_equal(jscan_end(&js), 0);
	assert_int_equal(js.depth, 0);

	/* An escape or quote at every offset, around word boundaries. */
	for (len = 0; len < 140; len++) {
		for (pos = 0; pos <= len; pos++) {
			buf_reset(&b);
			buf_addc(&b, '"');
			for (k = 0; k < len; k++)
				buf_adds(&b, k == pos ? "\\n" : "a");
			buf_adds(&b, "\"\"");
			jscan_init(&js, b.data, b.len);
			assert_int_equal(jscan_string(&js, &s), 0);
			assert_int_equal(s.len, len + (pos < len));
			assert_true(s.esc == (pos < len));
			assert_int_equal(jscan_peek(&js), '"');
			assert_int_equal(jscan_unescape(s.p, s.len, big), len);
			if (pos < len)
				assert_int_equal(big[pos], '\n');
		}
	}
	buf_clear(&b);

	jscan_init(&js, "[1 2]", 5);
	assert_int_equal(jscan_skip(&js), -1);
	assert_string_equal(js.err, "expected ',' or ']'");
	assert_int_equal(js.err_off, 3);
	jscan_fail(&js, "later");
	assert_string_equal(js.err, "expected ',' or ']'");
}

/*
 * 5000 random one-byte edits of the sample: the scanner must call a body
 * valid JSON exactly when jansson does (except for numbers too large for a
 * double, which jansson refuses), and alert_parse must never crash.
 */
static void
test_jscan_vs_jansson(void **state)
{
	struct alert	 a;
	struct buf	 sample, m;
	struct jscan	 js;
	json_error_t	 jerr;
	json_t		*j;
	uint64_t	 seed = 42;
	size_t		 i, pos, valid = 0;
	int		 ours, theirs, op;
	char		 c, err[256];

	load("tests/data/alert-sample.json", &sample);
	buf_init(&m);
	alert_init(&a);
	for (i = 0; i < 5000; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		pos = (seed >> 20) % sample.len;
		op = (seed >> 50) % 3;
		c = "{}[]\",:0-.eEtfnu\" \\x1"[(seed >> 40) % 20];
		buf_reset(&m);
		buf_add(&m, sample.data, pos);
		if (op != 0)	/* 0 deletes, 1 inserts, 2 replaces */
			buf_addc(&m, c);
		buf_add(&m, sample.data + pos + (op != 1),
		    sample.len - pos - (op != 1));
		jscan_init(&js, m.data, m.len);
		ours = jscan_skip(&js) == 0 && jscan_end(&js) == 0;
		j = json_loadb(m.data, m.len, JSON_DECODE_ANY | JSON_ALLOW_NUL,
		    &jerr);
		theirs = j != NULL;
		json_decref(j);
		if (!theirs && strstr(jerr.text, "overflow") != NULL)
			continue;
		if (ours != theirs)
			fail_msg("edit %d of '%c' at %zu: jscan %d, jansson %d "
			    "(%s)", op, c, pos, ours, theirs, jerr.text);
		valid += ours;
		if (alert_parse(&a, SRC_MDE, m.data, m.len, err,
		    sizeof err) == 0)
			assert_int_equal(ours, 1);
	}
	/* Both outcomes were exercised. */
	assert_true(valid > 250 && valid < 4750);
	alert_clear(&a);
	buf_clear(&m);
	buf_clear(&sample);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mde_sample),
		cmocka_unit_test(test_mde_page_sample),
		cmocka_unit_test(test_graph_sample),
		cmocka_unit_test(test_graph_evidence),
		cmocka_unit_test(test_mde_types),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_hostile_strings),
		cmocka_unit_test(test_hostile_sizes),
		cmocka_unit_test(test_split_chunks),
		cmocka_unit_test(test_split_errors),
		cmocka_unit_test(test_split_pieces),
		cmocka_unit_test(test_jscan),
		cmocka_unit_test(test_jscan_vs_jansson),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
