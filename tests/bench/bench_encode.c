/*
 * Throughput of the whole alert path (page splitter, alert_parse, CEF,
 * LEEF and JSON encoding, syslog header) against jansson decoding the
 * same alert bytes, on a page of varied ~4 KB alerts with evidence built
 * from tests/data/alert-sample.json.
 * Times are this process's CPU time (the machine may be shared; the wall
 * time of the best round is printed for comparison).
 * Usage: bench_encode [-s] [-n alerts] [-r rounds] [sample.json]
 *   -s	short (CI) mode: 2,000 alerts, 3 rounds.
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "alert.h"
#include "pagesplit.h"
#include "conf.h"
#include "encode.h"
#include "util.h"

#define PIECE		16384	/* a typical libcurl write size */
#define TARGET_RATIO	0.6
#define TARGET_RATE	50000.0

enum stage {
	STAGE_SPLIT,		/* splitter alone */
	STAGE_PARSE,		/* + alert_parse */
	STAGE_CEF,		/* + cef_encode (body only) */
	STAGE_EVENT_CEF,	/* + event_encode: rfc5424 header, CEF */
	STAGE_EVENT_LEEF,
	STAGE_EVENT_JSON,
	STAGE_COUNT
};

static const char *stage_names[STAGE_COUNT] = {
	"splitter alone",
	"splitter + alert_parse",
	"splitter + parse + cef_encode",
	"full path: event_encode CEF 5424",
	"full path: event_encode LEEF 5424",
	"full path: event_encode JSON 5424",
};

struct run {
	enum stage		 stage;
	struct alert		 a;
	struct buf		 out;
	struct conf_output	 co;
	struct event_meta	 m;
	size_t			 n, bad, out_bytes;
	const char		*page;
	size_t			*off, *len;	/* element positions */
	int			 record;
};

static double	wall_spent;	/* wall time of the last measurement */

static double
clock_s(clockid_t id)
{
	struct timespec	 ts;

	clock_gettime(id, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU seconds; a second call returns the CPU time since the first. */
static double
now(void)
{
	static double	 w0;
	double		 w = clock_s(CLOCK_MONOTONIC);

	wall_spent = w - w0;
	w0 = w;
	return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static int
elem_cb(const char *obj, size_t len, void *arg)
{
	struct run	*r = arg;
	char		 err[256];

	if (r->record) {
		r->off[r->n] = obj - r->page;	/* one piece: page */
		r->len[r->n] = len;
	}
	r->n++;
	if (r->stage == STAGE_SPLIT)
		return 0;
	if (alert_parse(&r->a, SRC_MDE, obj, len, err, sizeof err) != 0) {
		r->bad++;
		return 0;
	}
	r->m.updated = r->a.status.p != NULL && r->a.status.len != 3;
	r->m.forwarded_at = ts_now();
	buf_reset(&r->out);
	switch (r->stage) {
	case STAGE_PARSE:
		return 0;
	case STAGE_CEF:
		cef_encode(&r->out, &r->a, &r->m, 65536);
		break;
	default:
		event_encode(&r->out, &r->co, &r->a, &r->m, "collector-01",
		    4242);
		break;
	}
	r->out_bytes += r->out.len;
	return 0;
}

/* Varied field values, the kind the API carries. */
static const char *titles[] = {
	"Low-reputation arbitrary code executed by signed executable",
	"Suspicious PowerShell command line",
	"Ransomware behavior detected in the file system",
	"'Mimikatz' credential theft tool",
	"Suspicious process injection observed",
	"An active 'Emotet' malware was detected",
	"Possible lateral movement using \"PsExec\" | remote service",
	"Credential dumping from LSASS = sensitive",
};
static const char *severities[] = {
	"Informational", "Low", "Medium", "High", "UnSpecified"
};
static const char *statuses[] = { "New", "InProgress", "Resolved" };
static const char *categories[] = {
	"Execution", "CredentialAccess", "LateralMovement", "Ransomware",
	"DefenseEvasion", "Persistence"
};
static const char *cmdlines[] = {
	"rundll32.exe  c:\\temp\\suspicious.dll,RepeatAfterMe",
	"powershell.exe -NoProfile -EncodedCommand "
	    "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMA",
	"cmd.exe /c \"echo %USERPROFILE% > C:\\Users\\Public\\x.txt\"",
	"\"C:\\Program Files\\Süß\\tool.exe\" --target=\\\\srv-01\\c$ "
	    "-p \"a|b=c\"",
};
static const char *users[] = {
	"temp123", "j.doe", "svc_backup", "ädmin", "李雷"
};

static void
set_str(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, json_string(v));
}

/* Alert i: the sample with its values varied. */
static char *
make_alert(const json_t *sample, size_t i)
{
	json_t		*a = json_deep_copy(sample), *ev, *e, *arr;
	char		 buf[2048], ts[40];
	int64_t		 base = 16116932392000000LL;
	size_t		 k, reps;
	char		*s;

	base += (int64_t)i * 1234567;
	snprintf(buf, sizeof buf, "da6374729%011zu_%zu", i, i * 7919 + 13);
	set_str(a, "id", buf);
	json_object_set_new(a, "incidentId", json_integer(1126093 + i));
	if (i % 4 == 0)
		json_object_set_new(a, "investigationId",
		    json_integer(3000 + i));
	set_str(a, "severity", severities[i % 5]);
	set_str(a, "status", statuses[i % 3]);
	set_str(a, "category", categories[i % 6]);
	set_str(a, "title", titles[i % 8]);
	/* Descriptions from ~300 bytes to ~1.3 KB. */
	reps = 1 + i % 4;
	buf[0] = '\0';
	for (k = 0; k < reps; k++)
		strcat(buf, "Binaries signed by Microsoft can be used to run "
		    "low-reputation arbitrary code. This technique hides the "
		    "execution of malicious code within a trusted process, "
		    "e.g. C:\\Windows\\System32 \"quoted\"; résumé. ");
	set_str(a, "description", buf);
	ts_format(base, ts, sizeof ts);
	set_str(a, "lastUpdateTime", ts);
	ts_format(base - 15000000, ts, sizeof ts);
	set_str(a, "alertCreationTime", ts);
	snprintf(buf, sizeof buf, "%s-%04zu.tenant-%03zu.corp.example",
	    i % 3 ? "ws" : "srv", i % 997, i % 100);
	set_str(a, "computerDnsName", buf);
	snprintf(buf, sizeof buf, "%040zx", i * 2654435761u);
	set_str(a, "machineId", buf);
	if (i % 5 == 1)
		set_str(a, "threatName", "Trojan:Win32/Emotet.RPX!MTB");
	json_object_set_new(json_object_get(a, "relatedUser"), "userName",
	    json_string(users[i % 5]));
	arr = json_object_get(a, "mitreTechniques");
	if (i % 2)
		json_array_append_new(arr, json_string("T1059.001"));
	ev = json_object_get(a, "evidence");
	e = json_array_get(ev, 1);
	set_str(e, "processCommandLine", cmdlines[i % 4]);
	snprintf(buf, sizeof buf, "%040zx", i * 40503u + 7);
	set_str(e, "sha1", buf);
	if (i % 7 == 3) {
		e = json_array_get(ev, 2);
		set_str(e, "ipAddress", i % 2 ? "10.1.2.3" : "fe80::1");
		set_str(e, "url", "http://evil.example/p?a=1&b=2");
	}
	s = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(a);
	return s;
}

static void
build_page(struct buf *page, const json_t *sample, size_t n)
{
	size_t	 i;
	char	*s;

	buf_adds(page, "{\"@odata.context\":\"https://api.securitycenter."
	    "microsoft.com/api/$metadata#Alerts\",\"value\":[");
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_addc(page, ',');
		s = make_alert(sample, i);
		buf_adds(page, s);
		free(s);
	}
	buf_adds(page, "]}");
}

/* Split the page, running stage on each element; returns seconds. */
static double
run_page(struct run *r, const struct buf *page, size_t piece)
{
	struct pagesplit	*ps;
	double			 t0;
	size_t			 off, k;

	r->n = r->bad = r->out_bytes = 0;
	t0 = now();
	ps = pagesplit_new(1 << 20, elem_cb, r);
	for (off = 0; off < page->len; off += k) {
		k = page->len - off < piece ? page->len - off : piece;
		if (pagesplit_feed(ps, page->data + off, k) != 0)
			break;
	}
	if (pagesplit_finish(ps) != 0) {
		fprintf(stderr, "split: %s\n", pagesplit_error(ps));
		exit(1);
	}
	pagesplit_free(ps);
	return now() - t0;
}

static double
jansson_all(const struct run *r, const char *page, size_t n)
{
	json_error_t	 err;
	json_t		*j;
	double		 t0 = now();
	size_t		 i;

	for (i = 0; i < n; i++) {
		j = json_loadb(page + r->off[i], r->len[i], 0, &err);
		if (j == NULL) {
			fprintf(stderr, "jansson: %s\n", err.text);
			exit(1);
		}
		json_decref(j);
	}
	return now() - t0;
}

static void
report(const char *what, size_t n, size_t bytes, double secs,
    double jrate)
{
	printf("  %-36s %9.0f alerts/s %7.1f MB/s", what, n / secs,
	    bytes / secs / 1e6);
	if (jrate > 0)
		printf("  %5.2fx jansson", n / secs / jrate);
	printf("\n");
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench_encode [-s] [-n alerts] [-r rounds] "
	    "[sample.json]\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	const char	*path = "tests/data/alert-sample.json";
	struct buf	 page;
	struct run	 r;
	json_t		*sample;
	json_error_t	 je;
	size_t		 n = 10000, rounds = 5, i, elem_bytes = 0;
	double		 best[STAGE_COUNT], bwall[STAGE_COUNT];
	double		 jbest = 1e9;
	double		 jwall = 0, t, jrate, frate;
	int		 ch, s, met;
	enum out_format	 fmts[] = { FMT_CEF, FMT_LEEF, FMT_JSON };

	while ((ch = getopt(argc, argv, "sn:r:")) != -1) {
		switch (ch) {
		case 's':
			n = 2000;
			rounds = 3;
			break;
		case 'n':
			n = strtoul(optarg, NULL, 10);
			break;
		case 'r':
			rounds = strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (optind < argc)
		path = argv[optind++];
	if (optind != argc || n == 0 || rounds == 0)
		usage();
	if ((sample = json_load_file(path, JSON_PRESERVE_ORDER, &je)) ==
	    NULL) {
		fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text);
		return 1;
	}
	buf_init(&page);
	build_page(&page, sample, n);
	json_decref(sample);

	memset(&r, 0, sizeof r);
	alert_init(&r.a);
	buf_init(&r.out);
	r.co.name = "bench";
	r.co.transport = OUT_TCP;
	r.co.header = HDR_RFC5424;
	r.co.framing = FRAME_NEWLINE;
	r.co.facility = 20;
	r.co.max_message_bytes = 65536;
	r.m.tenant_name = "tenant-042";
	r.m.tenant_label = "Contoso Ltd";
	r.m.tenant_id = "a839b112-1253-6432-9bf6-94542403f21c";
	r.page = page.data;
	r.off = xcalloc(n, sizeof *r.off);
	r.len = xcalloc(n, sizeof *r.len);
	r.record = 1;
	r.stage = STAGE_SPLIT;
	run_page(&r, &page, page.len);	/* one piece: positions */
	r.record = 0;
	if (r.n != n) {
		fprintf(stderr, "split found %zu of %zu alerts\n", r.n, n);
		return 1;
	}
	for (i = 0; i < n; i++)
		elem_bytes += r.len[i];
	printf("encode: %zu varied alerts with evidence, %.1f MB page, "
	    "%.0f bytes per alert, %d-byte pieces, best of %zu rounds\n",
	    n, page.len / 1e6, (double)elem_bytes / n, PIECE, rounds);

	for (s = 0; s < STAGE_COUNT; s++)
		best[s] = 1e9;
	for (i = 0; i < rounds; i++) {
		if ((t = jansson_all(&r, page.data, n)) < jbest) {
			jbest = t;
			jwall = wall_spent;
		}
		for (s = 0; s < STAGE_COUNT; s++) {
			r.stage = s;
			if (s >= STAGE_EVENT_CEF)
				r.co.format = fmts[s - STAGE_EVENT_CEF];
			if ((t = run_page(&r, &page, PIECE)) < best[s]) {
				best[s] = t;
				bwall[s] = wall_spent;
			}
			if (r.bad != 0 || r.n != n) {
				fprintf(stderr, "%zu of %zu alerts failed to "
				    "parse\n", r.bad, r.n);
				return 1;
			}
		}
	}
	jrate = n / jbest;
	report("jansson json_loadb (same bytes)", n, elem_bytes, jbest, 0);
	for (s = 0; s < STAGE_COUNT; s++)
		report(stage_names[s], n, page.len, best[s], jrate);

	printf("  (CPU time; the same rounds took %.0f%% (jansson) and %.0f%% "
	    "(full path) of that in wall time)\n", 100 * jwall / jbest,
	    100 * bwall[STAGE_EVENT_CEF] / best[STAGE_EVENT_CEF]);
	frate = n / best[STAGE_EVENT_CEF];
	met = frate >= TARGET_RATIO * jrate && frate >= TARGET_RATE;
	printf("RESULT encode alerts_per_s=%.0f mb_per_s=%.1f "
	    "jansson_alerts_per_s=%.0f ratio=%.2f target_ratio=%.1f "
	    "target_rate=%.0f %s\n", frate, page.len / best[STAGE_EVENT_CEF] /
	    1e6, jrate, frate / jrate, TARGET_RATIO, TARGET_RATE,
	    met ? "met" : "NOT-MET");

	alert_clear(&r.a);
	buf_clear(&r.out);
	encode_cleanup();
	free(r.off);
	free(r.len);
	buf_clear(&page);
	return 0;
}
