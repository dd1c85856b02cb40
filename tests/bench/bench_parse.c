/*
 * Throughput of the page splitter and alert_parse against jansson decoding
 * the same alert bytes: a generated page of 10,000 copies of the
 * defender-api.md §2.10 sample (about 4.9 KB each) with varied ids and
 * times.  Usage: bench_parse [sample.json [alerts [rounds]]]
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "alert.h"
#include "pagesplit.h"
#include "util.h"

#define PIECE	16384		/* a typical libcurl write callback size */

struct run {
	struct alert	 a;
	size_t		 n, bad, bytes;
	size_t		*off, *len;	/* element positions */
	const char	*page;
	int		 record, parse;
};

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
elem_cb(const char *obj, size_t len, void *arg)
{
	struct run	*r = arg;
	char		 err[256];

	if (r->record) {
		r->off[r->n] = obj - r->page;	/* whole page in one piece */
		r->len[r->n] = len;
	}
	if (r->parse && alert_parse(&r->a, SRC_MDE, obj, len, err,
	    sizeof err) != 0)
		r->bad++;
	r->bytes += len;
	r->n++;
	return 0;
}

/* Replace the first occurrence of from (which must exist) with to. */
static void
add_replaced(struct buf *out, const char *s, size_t len, const char *from,
    const char *to)
{
	const char	*p = memmem(s, len, from, strlen(from));

	if (p == NULL) {
		fprintf(stderr, "sample lacks %s\n", from);
		exit(1);
	}
	buf_add(out, s, p - s);
	buf_adds(out, to);
	buf_add(out, p + strlen(from), len - (p - s) - strlen(from));
}

static void
build_page(struct buf *page, const struct buf *sample, size_t n)
{
	struct buf	 t;
	char		 id[64], ts[40], lut[64];
	int64_t		 base = 16116932392000000LL;
	size_t		 i;

	buf_init(&t);
	buf_adds(page, "{\"@odata.context\": \"https://api.securitycenter."
	    "microsoft.com/api/$metadata#Alerts\",\"value\": [");
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof id, "\"da6374729%011zu_%zu\"", i, i * 7919);
		ts_format(base + (int64_t)i * 1234567, ts, sizeof ts);
		snprintf(lut, sizeof lut, "\"lastUpdateTime\": \"%s\"", ts);
		buf_reset(&t);
		add_replaced(&t, sample->data, sample->len,
		    "\"da637472900382838869_1364969609\"", id);
		if (i > 0)
			buf_addc(page, ',');
		add_replaced(page, t.data, t.len,
		    "\"lastUpdateTime\": \"2021-01-26T20:33:59.2Z\"", lut);
	}
	buf_adds(page, "],\"@odata.nextLink\": \"https://api.securitycenter."
	    "microsoft.com/api/alerts?$skip=10000\"}");
	buf_clear(&t);
}

/* Split (and parse, if asked) the page; returns seconds taken. */
static double
split_page(struct run *r, const struct buf *page, size_t piece)
{
	struct pagesplit	*ps;
	double			 t0;
	size_t			 off, k;

	r->n = r->bad = r->bytes = 0;
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
jansson_all(const struct run *r, const char *page)
{
	json_error_t	 err;
	json_t		*j;
	double		 t0 = now();
	size_t		 i;

	for (i = 0; i < r->n; i++) {
		j = json_loadb(page + r->off[i], r->len[i], 0, &err);
		if (j == NULL) {
			fprintf(stderr, "jansson: %s\n", err.text);
			exit(1);
		}
		json_decref(j);
	}
	return now() - t0;
}

static double
parse_all(struct run *r, const char *page)
{
	char	 err[256];
	double	 t0 = now();
	size_t	 i;

	for (i = 0; i < r->n; i++) {
		if (alert_parse(&r->a, SRC_MDE, page + r->off[i], r->len[i],
		    err, sizeof err) != 0)
			r->bad++;
	}
	return now() - t0;
}

static void
report(const char *what, size_t n, size_t bytes, double secs)
{
	printf("%-34s %10.0f alerts/s %8.1f MB/s\n", what, n / secs,
	    bytes / secs / 1e6);
}

int
main(int argc, char **argv)
{
	const char	*path = "tests/data/alert-sample.json";
	struct buf	 sample, page;
	struct run	 r;
	size_t		 n = 10000, rounds = 5, i;
	double		 best[4] = { 1e9, 1e9, 1e9, 1e9 }, t;

	if (argc > 1)
		path = argv[1];
	if (argc > 2)
		n = strtoul(argv[2], NULL, 10);
	if (argc > 3)
		rounds = strtoul(argv[3], NULL, 10);
	buf_init(&sample);
	buf_init(&page);
	if (file_read_all(path, 1 << 20, &sample) != 0) {
		perror(path);
		return 1;
	}
	build_page(&page, &sample, n);

	memset(&r, 0, sizeof r);
	alert_init(&r.a);
	r.page = page.data;
	r.off = xcalloc(n, sizeof *r.off);
	r.len = xcalloc(n, sizeof *r.len);
	r.record = 1;
	split_page(&r, &page, page.len);	/* one piece: positions */
	r.record = 0;
	if (r.n != n) {
		fprintf(stderr, "split found %zu of %zu alerts\n", r.n, n);
		return 1;
	}
	printf("page: %zu alerts, %.1f MB, %.0f bytes per alert, "
	    "%d-byte pieces\n", n, page.len / 1e6, (double)r.bytes / n, PIECE);

	for (i = 0; i < rounds; i++) {
		r.parse = 1;
		if ((t = split_page(&r, &page, PIECE)) < best[0])
			best[0] = t;
		if (r.bad != 0 || r.n != n) {
			fprintf(stderr, "%zu alerts failed to parse\n", r.bad);
			return 1;
		}
		r.parse = 0;
		if ((t = split_page(&r, &page, PIECE)) < best[1])
			best[1] = t;
		if ((t = parse_all(&r, page.data)) < best[2])
			best[2] = t;
		if ((t = jansson_all(&r, page.data)) < best[3])
			best[3] = t;
	}
	report("splitter + alert_parse", n, page.len, best[0]);
	report("splitter alone", n, page.len, best[1]);
	report("alert_parse alone", n, r.bytes, best[2]);
	report("jansson json_loadb (same bytes)", n, r.bytes, best[3]);
	printf("ratio (splitter + alert_parse) / jansson: %.1fx\n",
	    best[3] / best[0]);

	alert_clear(&r.a);
	free(r.off);
	free(r.len);
	buf_clear(&page);
	buf_clear(&sample);
	return 0;
}
