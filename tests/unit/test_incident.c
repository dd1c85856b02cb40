/* Unit tests for the incident reader and the incident CEF/LEEF/JSON events. */

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
#include "incident.h"
#include "pagesplit.h"

#define SAMPLE	"tests/data/incident-sample.json"
#define GOLDEN	"tests/data/golden/incident-sample"
#define FFFD	"\xef\xbf\xbd"

static struct buf sample_raw;

static int64_t
ticks(const char *s)
{
	int64_t	 t;

	assert_int_equal(ts_parse(s, strlen(s), &t), 0);
	return (t);
}

static void
meta_sample(struct event_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->tenant_name = "contoso";
	m->tenant_label = "Contoso Ltd";
	m->tenant_id = "contoso.onmicrosoft.com";
	m->forwarded_at = ticks("2021-05-02T14:20:00.1234567Z");
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

static void
assert_astr(const struct astr *s, const char *want)
{
	if (want == NULL) {
		assert_null(s->p);
		return;
	}
	assert_non_null(s->p);
	assert_int_equal(s->len, strlen(want));
	assert_memory_equal(s->p, want, s->len);
}

static void
parse_ok(struct incident *inc, const char *json, size_t len)
{
	char	 err[128] = "";

	if (incident_parse(inc, json, len, err, sizeof(err)) != 0)
		fail_msg("incident_parse: %s", err);
}

static void
parse_str(struct incident *inc, const char *json)
{
	parse_ok(inc, json, strlen(json));
}

/* The body alone, into b (emptied first). */
static void
encode(struct buf *b, void (*enc)(struct buf *, const struct incident *,
    const struct event_meta *, size_t), const struct incident *inc,
    const struct event_meta *m, size_t max)
{
	buf_reset(b);
	enc(b, inc, m, max);
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

/* Every field of the sample, read as documented. */
static void
test_parse_sample(void **state)
{
	struct incident	 inc;

	incident_init(&inc);
	parse_ok(&inc, sample_raw.data, sample_raw.len);
	assert_astr(&inc.id, "28282");
	assert_astr(&inc.display_name, "Multi-stage incident involving "
	    "Defense evasion & Credential access on one endpoint");
	assert_astr(&inc.severity_text, "medium");
	assert_int_equal(inc.severity, SEV_MEDIUM);
	assert_astr(&inc.status, "active");
	assert_astr(&inc.classification, "truePositive");
	assert_astr(&inc.determination, "multiStagedAttack");
	assert_astr(&inc.assigned_to, "KaiC@contoso.onmicrosoft.com");
	assert_astr(&inc.web_url, "https://security.microsoft.com/incidents/"
	    "28282?tid=b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c");
	assert_astr(&inc.redirect_id, NULL);
	assert_astr(&inc.tenant_id, "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c");
	assert_true(inc.created == ticks("2021-04-27T12:19:27.7211305Z"));
	assert_true(inc.last_update == ticks("2021-05-02T14:19:01.3266667Z"));
	assert_true(inc.alerts_known);
	assert_int_equal(inc.alert_count, 2);
	assert_int_equal(inc.alert_ids_n, 2);
	assert_string_equal(inc.alert_ids.data, "da637551227677560813_"
	    "-961444813,aad1e6b3a0-5a6c-4e8b-9f1f-2c1f4e6b7d10");
	/* The alerts' own descriptions and ids do not leak upwards. */
	assert_true(inc.description.len > 100);
	assert_memory_equal(inc.description.p, "A hidden file was launched", 26);
	assert_ptr_equal(inc.raw, sample_raw.data);
	incident_clear(&inc);
}

static void
check_golden(void (*enc)(struct buf *, const struct incident *,
    const struct event_meta *, size_t), const char *path)
{
	struct incident	 inc;
	struct event_meta m;
	struct buf	 got, want;

	incident_init(&inc);
	parse_ok(&inc, sample_raw.data, sample_raw.len);
	meta_sample(&m);
	buf_init(&got);
	read_golden(path, &want);
	enc(&got, &inc, &m, 65536);
	if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0)
		fail_msg("%s: got\n%s\nwant\n%s", path, got.data, want.data);
	buf_clear(&got);
	buf_clear(&want);
	incident_clear(&inc);
}

static void
test_golden_cef(void **state)
{
	check_golden(cef_encode_incident, GOLDEN ".cef");
}

static void
test_golden_leef(void **state)
{
	check_golden(leef_encode_incident, GOLDEN ".leef");
}

static void
test_golden_json(void **state)
{
	check_golden(json_encode_incident, GOLDEN ".jsonl");
}

/* Only what the object has: no cs5/cn1 without "alerts", cn1=0 with []. */
static void
test_missing_fields(void **state)
{
	struct incident	 inc;
	struct event_meta m;
	struct buf	 b;

	incident_init(&inc);
	buf_init(&b);
	memset(&m, 0, sizeof(m));
	m.tenant_name = "fabrikam";
	m.tenant_id = "fabrikam.example";
	parse_str(&inc, "{\"id\":\"7\",\"lastUpdateDateTime\":"
	    "\"2024-02-03T04:05:06Z\",\"displayName\":null,\"severity\":5,"
	    "\"assignedTo\":\"\",\"alerts\":\"no\"}");
	assert_false(inc.alerts_known);
	assert_int_equal(inc.severity, SEV_UNSPECIFIED);
	encode(&b, cef_encode_incident, &inc, &m, 4096);
	assert_string_equal(b.data, "CEF:0|Microsoft|Microsoft Defender XDR|"
	    "1.0|incident|-|0|rt=1706933106000 externalId=7 act=created "
	    "cs2=fabrikam cs2Label=Customer cs3=fabrikam.example "
	    "cs3Label=TenantId");
	encode(&b, leef_encode_incident, &inc, &m, 4096);
	assert_string_equal(b.data, "LEEF:2.0|Microsoft|Microsoft Defender "
	    "XDR|1.0|incident|^|devTime=1706933106000^sev=1^externalId=7^"
	    "act=created^cs2=fabrikam^cs2Label=Customer^"
	    "cs3=fabrikam.example^cs3Label=TenantId");

	parse_str(&inc, "{\"id\":\"7\",\"lastUpdateDateTime\":"
	    "\"2024-02-03T04:05:06Z\",\"alerts\":[],\"classification\":null,"
	    "\"determination\":\"apt\"}");
	assert_true(inc.alerts_known);
	encode(&b, cef_encode_incident, &inc, &m, 4096);
	assert_non_null(strstr(b.data, " cn1=0 cn1Label=AlertCount "));
	assert_null(strstr(b.data, "cs5"));
	assert_non_null(strstr(b.data, " flexString2=apt flexString2Label="
	    "Classification"));
	buf_clear(&b);
	incident_clear(&inc);
}

/* A merged incident is an update carrying the incident it went into. */
static void
test_merged(void **state)
{
	struct incident	 inc;
	struct event_meta m;
	struct buf	 raw, b;
	json_t		*j;
	char		*text;

	buf_init(&raw);
	buf_init(&b);
	j = json_loadb(sample_raw.data, sample_raw.len, 0, NULL);
	assert_non_null(j);
	json_object_set_new(j, "redirectIncidentId", json_string("28317"));
	json_object_set_new(j, "status", json_string("redirected"));
	text = json_dumps(j, JSON_INDENT(1));
	assert_non_null(text);
	buf_adds(&raw, text);
	free(text);
	json_decref(j);
	incident_init(&inc);
	parse_ok(&inc, raw.data, raw.len);
	assert_astr(&inc.redirect_id, "28317");
	meta_sample(&m);
	assert_int_equal(m.updated, 0);

	encode(&b, cef_encode_incident, &inc, &m, 65536);
	assert_non_null(strstr(b.data, " externalId=28282 act=updated "));
	assert_non_null(strstr(b.data, " cs4=redirected cs4Label=Status "));
	assert_non_null(strstr(b.data, " cs6=28317 cs6Label="
	    "RedirectIncidentId "));
	encode(&b, leef_encode_incident, &inc, &m, 65536);
	assert_non_null(strstr(b.data, "^act=updated^"));
	assert_non_null(strstr(b.data, "^cs6=28317^cs6Label="
	    "RedirectIncidentId^"));
	encode(&b, json_encode_incident, &inc, &m, 65536);
	j = json_body(&b);
	assert_string_equal(json_string_value(json_object_get(j, "event")),
	    "updated");
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    j, "incident"), "redirectIncidentId")), "28317");
	json_decref(j);
	buf_clear(&raw);
	incident_clear(&inc);
	buf_clear(&b);
}

/* Invalid UTF-8, NUL and lone surrogates are replaced, never rejected. */
static void
test_hostile(void **state)
{
	static const char raw[] = "{\"id\":\"9\\u0000x\","
	    "\"lastUpdateDateTime\":\"2024-02-03T04:05:06.1234567Z\","
	    "\"displayName\":\"a|b\\nc\\ud800d\xff\","
	    "\"description\":\"x=y\\r\\nCEF:0|evil|\\u001b[31m\","
	    "\"assignedTo\":\"\xc0\xaf" "bob cs2=spoof\","
	    "\"alerts\":[{\"id\":\"a\\u0000b\"},{\"id\":\"c\\udc00\"},7,"
	    "{\"id\":5},{\"id\":\"y\"}]}";
	struct incident	 inc;
	struct event_meta m;
	struct buf	 b;
	json_t		*j;

	incident_init(&inc);
	buf_init(&b);
	parse_ok(&inc, raw, sizeof(raw) - 1);
	assert_int_equal(inc.id.len, 3);
	assert_int_equal(inc.alert_count, 5);
	assert_int_equal(inc.alert_ids_n, 3);
	assert_memory_equal(inc.alert_ids.data, "a\0b,c" FFFD ",y", 10);
	meta_sample(&m);

	encode(&b, cef_encode_incident, &inc, &m, 65536);
	assert_int_equal(strlen(b.data), b.len);	/* no NUL */
	assert_null(strchr(b.data, '\n'));
	assert_null(strchr(b.data, '\r'));
	assert_memory_equal(b.data, "CEF:0|Microsoft|Microsoft Defender XDR|"
	    "1.0|incident|a\\|b c" FFFD "d" FFFD "|5|", 60);
	assert_non_null(strstr(b.data, " externalId=9" FFFD "x "));
	assert_non_null(strstr(b.data, " msg=x\\=y\\r\\nCEF:0|evil|" FFFD
	    "[31m cs1=" FFFD FFFD "bob cs2\\=spoof cs1Label=AssignedTo "));
	assert_non_null(strstr(b.data, " cs5=a" FFFD "b,c" FFFD ",y "
	    "cs5Label=AlertIds "));
	assert_non_null(strstr(b.data, " cn1=5 cn1Label=AlertCount"));

	encode(&b, leef_encode_incident, &inc, &m, 65536);
	assert_int_equal(strlen(b.data), b.len);
	assert_null(strchr(b.data, '\n'));
	assert_non_null(strstr(b.data, "^name=a|b c" FFFD "d" FFFD "^"));

	encode(&b, json_encode_incident, &inc, &m, 65536);
	j = json_body(&b);
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    j, "incident"), "id")), "9" FFFD "x");
	assert_string_equal(json_string_value(json_object_get(j, "schema")),
	    "alertrelay.incident.v1");
	json_decref(j);
	buf_clear(&b);
	incident_clear(&inc);
}

/* What is not an incident is refused with a reason; types may be wrong. */
static void
test_parse_errors(void **state)
{
	static const struct {
		const char	*json, *err;
	} t[] = {
		{ "[]", "incident is not a JSON object" },
		{ "{\"id\":\"1\"", "invalid JSON at byte 9" },
		{ "{\"lastUpdateDateTime\":\"2024-01-01T00:00:00Z\"}",
		    "\"id\" is missing" },
		{ "{\"id\":\"\",\"lastUpdateDateTime\":\"2024-01-01T00:00:00Z\"}",
		    "\"id\" is missing" },
		{ "{\"id\":\"1\"}", "\"lastUpdateDateTime\" is missing" },
		{ "{\"id\":\"1\",\"lastUpdateDateTime\":\"yesterday\"}",
		    "\"lastUpdateDateTime\" is missing" },
		{ "{\"id\":\"1\",\"lastUpdateDateTime\":\"2024-01-01T00:00:00Z\","
		    "\"alerts\":[{\"id\":}]}", "invalid JSON" },
	};
	struct incident	 inc;
	char		 err[128];
	size_t		 i;

	incident_init(&inc);
	for (i = 0; i < nitems(t); i++) {
		err[0] = '\0';
		assert_int_equal(incident_parse(&inc, t[i].json,
		    strlen(t[i].json), err, sizeof(err)), -1);
		if (strstr(err, t[i].err) == NULL)
			fail_msg("%s: got \"%s\", want \"%s\"", t[i].json, err,
			    t[i].err);
		assert_null(inc.id.p);
		assert_int_equal(inc.alert_count, 0);
	}
	/* A number id is taken as its text; later duplicates replace. */
	parse_str(&inc, "{\"id\":42,\"lastUpdateDateTime\":"
	    "\"2024-01-01T00:00:00Z\",\"alerts\":[{\"id\":\"a\"}],"
	    "\"alerts\":[{\"id\":\"x\",\"id\":\"b\"},{\"id\":\"c\"}]}");
	assert_astr(&inc.id, "42");
	assert_string_equal(inc.alert_ids.data, "b,c");
	assert_int_equal(inc.alert_count, 2);
	/*
	 * A string id replaced by a later non-string one leaves the alert
	 * counted without an id (the fuzzer found the old length kept
	 * with a NULL pointer).
	 */
	parse_str(&inc, "{\"id\":\"i\",\"lastUpdateDateTime\":"
	    "\"2024-01-01T00:00:00Z\",\"alerts\":[{\"id\":\"abc\",\"id\":5},"
	    "{\"id\":\"d\"}]}");
	assert_int_equal(inc.alert_count, 2);
	assert_int_equal(inc.alert_ids_n, 1);
	assert_string_equal(inc.alert_ids.data, "d");
	incident_clear(&inc);
}

struct page_ctx {
	struct incident	 inc;
	struct buf	 ids;		/* incident:alerts, ... */
};

static int
page_cb(const char *obj, size_t len, void *arg)
{
	struct page_ctx	*pc = arg;
	char		 err[128];

	if (incident_parse(&pc->inc, obj, len, err, sizeof(err)) != 0)
		return (1);
	buf_addf(&pc->ids, "%.*s:%u ", (int)pc->inc.id.len, pc->inc.id.p,
	    pc->inc.alert_count);
	return (0);
}

/* The alerts' page splitter cuts a page of incidents, in any pieces. */
static void
test_page(void **state)
{
	struct page_ctx	 pc;
	struct pagesplit *ps;
	struct buf	 page;
	size_t		 i, step;

	buf_init(&page);
	buf_adds(&page, "{\"@odata.context\":\"https://graph.microsoft.com/"
	    "v1.0/$metadata#security/incidents\",\"value\":[");
	buf_add(&page, sample_raw.data, sample_raw.len);
	buf_adds(&page, ",{\"id\":\"28283\",\"lastUpdateDateTime\":"
	    "\"2021-05-02T14:20:00Z\",\"alerts\":[{\"id\":\"x]}\"}]}],"
	    "\"@odata.nextLink\":\"https://graph.microsoft.com/v1.0/security/"
	    "incidents?$skiptoken=abc\"}");
	for (step = 1; step <= page.len; step = step * 3 + 1) {
		incident_init(&pc.inc);
		buf_init(&pc.ids);
		ps = pagesplit_new(1 << 16, page_cb, &pc);
		for (i = 0; i < page.len; i += step) {
			assert_int_equal(pagesplit_feed(ps, page.data + i,
			    i + step > page.len ? page.len - i : step), 0);
		}
		assert_int_equal(pagesplit_finish(ps), 0);
		assert_string_equal(pc.ids.data, "28282:2 28283:1 ");
		assert_string_equal(pagesplit_next_link(ps), "https://graph."
		    "microsoft.com/v1.0/security/incidents?$skiptoken=abc");
		pagesplit_free(ps);
		buf_clear(&pc.ids);
		incident_clear(&pc.inc);
	}
	buf_clear(&page);
}

/* The $expand=alerts fallback: alerts added one by one. */
static void
test_add_alert(void **state)
{
	struct incident	 inc;
	struct event_meta m;
	struct buf	 b;

	incident_init(&inc);
	buf_init(&b);
	meta_sample(&m);
	parse_str(&inc, "{\"id\":\"3\",\"lastUpdateDateTime\":"
	    "\"2024-01-01T00:00:00Z\"}");
	encode(&b, cef_encode_incident, &inc, &m, 4096);
	assert_null(strstr(b.data, "cn1="));
	incident_add_alert(&inc, "da1", 3);
	incident_add_alert(&inc, "", 0);
	incident_add_alert(&inc, "da2", 3);
	encode(&b, cef_encode_incident, &inc, &m, 4096);
	assert_non_null(strstr(b.data, " cs5=da1,da2 cs5Label=AlertIds "));
	assert_non_null(strstr(b.data, " cn1=3 cn1Label=AlertCount"));
	/* The next parse starts afresh. */
	parse_str(&inc, "{\"id\":\"4\",\"lastUpdateDateTime\":"
	    "\"2024-01-01T00:00:00Z\"}");
	assert_false(inc.alerts_known);
	assert_int_equal(inc.alert_ids.len, 0);
	buf_clear(&b);
	incident_clear(&inc);
}

/* An incident of n alerts "da000000_-1", ... and a long description. */
static void
many_alerts(struct buf *raw, unsigned n)
{
	unsigned	 i;

	buf_init(raw);
	buf_adds(raw, "{\"id\":\"77\",\"displayName\":\"Big one\","
	    "\"severity\":\"high\",\"lastUpdateDateTime\":"
	    "\"2024-01-01T00:00:00Z\",\"description\":\"");
	for (i = 0; i < 500; i++)
		buf_adds(raw, "long text \\\\ = ");
	buf_adds(raw, "\",\"incidentWebUrl\":\"https://security.microsoft.com"
	    "/incidents/77\",\"alerts\":[");
	for (i = 0; i < n; i++)
		buf_addf(raw, "%s{\"id\":\"da%06u_-1\",\"title\":\"t\"}",
		    i > 0 ? "," : "", i);
	buf_adds(raw, "]}");
}

/* Every id in the cs5 value of line is a whole one, in order from 0. */
static size_t
check_ids(const char *line)
{
	const char	*p = strstr(line, " cs5="), *e;
	char		 want[16];
	size_t		 n = 0;

	assert_non_null(p);
	p += 5;
	e = strstr(p, " cs5Label=AlertIds");
	assert_non_null(e);
	while (p < e) {
		snprintf(want, sizeof(want), "da%06zu_-1", n++);
		assert_memory_equal(p, want, 11);
		p += 11;
		assert_true(p == e || *p == ',');
		p += p < e;
	}
	return (n);
}

static void
test_many_alerts(void **state)
{
	static const size_t maxes[] = { 700, 2048, 8192 };
	struct incident	 inc;
	struct event_meta m;
	struct buf	 raw, b;
	size_t		 i, ids, prev = 0;
	json_t		*j;

	many_alerts(&raw, 3000);
	incident_init(&inc);
	buf_init(&b);
	parse_ok(&inc, raw.data, raw.len);
	assert_int_equal(inc.alert_count, 3000);
	assert_int_equal(inc.alert_ids_n, INCIDENT_MAX_ALERT_IDS);
	meta_sample(&m);
	for (i = 0; i < nitems(maxes); i++) {
		encode(&b, cef_encode_incident, &inc, &m, maxes[i]);
		assert_true(b.len <= maxes[i] && b.len > maxes[i] - 12);
		assert_null(strstr(b.data, " msg="));	/* cut first */
		assert_non_null(strstr(b.data, " externalId=77 act=created "));
		assert_non_null(strstr(b.data, " cn1=3000 cn1Label="
		    "AlertCount "));
		assert_non_null(strstr(b.data, " flexString1=https://"));
		ids = check_ids(b.data);
		assert_true(ids > prev);
		prev = ids;

		encode(&b, leef_encode_incident, &inc, &m, maxes[i]);
		assert_true(b.len <= maxes[i]);
		assert_non_null(strstr(b.data, "^cs5=da000000_-1,"));

		encode(&b, json_encode_incident, &inc, &m, maxes[i]);
			assert_true(b.len <= maxes[i]);
		j = json_body(&b);
		assert_string_equal(json_string_value(json_object_get(
		    json_object_get(j, "incident"), "id")), "77");
		json_decref(j);
	}
	/* With room to spare nothing is cut: all 1000 ids and the text. */
	encode(&b, cef_encode_incident, &inc, &m, 1 << 20);
	assert_int_equal(check_ids(b.data), INCIDENT_MAX_ALERT_IDS);
	assert_non_null(strstr(b.data, " msg=long text \\\\ \\= long"));
	buf_clear(&raw);
	buf_clear(&b);
	incident_clear(&inc);
}

/* incident_encode: header severity from the incident, limit for all. */
static void
test_incident_encode(void **state)
{
	static const enum out_format fmts[] = { FMT_CEF, FMT_LEEF, FMT_JSON };
	static const char *const starts[] = { "CEF:0|", "LEEF:2.0|",
	    "{\"schema\":\"alertrelay.incident.v1\"" };
	struct conf_output o;
	struct incident	 inc;
	struct event_meta m;
	struct buf	 raw, b;
	size_t		 i, h;

	many_alerts(&raw, 50);
	incident_init(&inc);
	parse_ok(&inc, raw.data, raw.len);
	meta_sample(&m);
	memset(&o, 0, sizeof(o));
	o.header = HDR_RFC5424;
	o.facility = 16;
	o.max_message_bytes = 1024;
	buf_init(&b);
	for (i = 0; i < nitems(fmts); i++) {
		o.format = fmts[i];
		buf_reset(&b);
		assert_int_equal(incident_encode(&b, &o, &inc, &m, "h", 7), 0);
		/* high: crit (2) in local0 */
		assert_memory_equal(b.data, "<130>1 2021-05-02T14:20:00.123456Z"
		    " h alertrelayd 7 - - ", 55);
		h = 55;
		assert_memory_equal(b.data + h, starts[i], strlen(starts[i]));
		assert_true(b.len <= 1024 && b.len > 900);
		assert_null(memchr(b.data, '\n', b.len));
	}
	o.format = FMT_CEF;
	o.max_message_bytes = 60;
	buf_reset(&b);
	buf_adds(&b, "keep");
	assert_int_equal(incident_encode(&b, &o, &inc, &m, "h", 7), -1);
	assert_string_equal(b.data, "keep");
	buf_clear(&b);
	buf_clear(&raw);
	incident_clear(&inc);
}

/* The incident PRI follows the incident, alerts_v2 severities. */
static void
test_severity(void **state)
{
	static const struct {
		const char	*sev;
		int		 cef;
	} t[] = {
		{ "informational", 1 }, { "low", 3 }, { "medium", 5 },
		{ "high", 8 }, { "unknown", 0 }, { "unknownFutureValue", 0 },
		{ "High", 8 },
	};
	struct incident	 inc;
	struct event_meta m;
	struct buf	 b, js;
	char		 want[32];
	size_t		 i;

	incident_init(&inc);
	buf_init(&b);
	buf_init(&js);
	meta_sample(&m);
	for (i = 0; i < nitems(t); i++) {
		buf_reset(&js);
		buf_addf(&js, "{\"id\":\"1\",\"lastUpdateDateTime\":"
		    "\"2024-01-01T00:00:00Z\",\"severity\":\"%s\"}", t[i].sev);
		parse_ok(&inc, js.data, js.len);
		encode(&b, cef_encode_incident, &inc, &m, 4096);
		snprintf(want, sizeof(want), "|-|%d|rt=", t[i].cef);
		assert_non_null(strstr(b.data, want));
		encode(&b, leef_encode_incident, &inc, &m, 4096);
		snprintf(want, sizeof(want), "^sev=%d^", t[i].cef > 0 ?
		    t[i].cef : 1);
		assert_non_null(strstr(b.data, want));
	}
	buf_clear(&b);
	buf_clear(&js);
	incident_clear(&inc);
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
		cmocka_unit_test(test_parse_sample),
		cmocka_unit_test(test_golden_cef),
		cmocka_unit_test(test_golden_leef),
		cmocka_unit_test(test_golden_json),
		cmocka_unit_test(test_missing_fields),
		cmocka_unit_test(test_merged),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_page),
		cmocka_unit_test(test_add_alert),
		cmocka_unit_test(test_many_alerts),
		cmocka_unit_test(test_incident_encode),
		cmocka_unit_test(test_severity),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
