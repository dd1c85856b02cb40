/*
 * A model of the alerts API for the paging tests (unit and fuzz): a list
 * of versions sorted by lastUpdateTime, answered in one of three ways.
 *   MODEL_TOP:   one page of at most $top (Defender /api/alerts).
 *   MODEL_CUT:   the first $top matches in pages of `page` linked by
 *                nextLink, then no link (a server that caps at $top).
 *   MODEL_GRAPH: every match in pages of min(page, $top) linked by
 *                nextLink ($top as a page size, Graph's reading).
 * drive() runs a catch-up against it and reports what was read.
 */
#ifndef PAGING_MODEL_H
#define PAGING_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "paging.h"

enum model_kind { MODEL_TOP, MODEL_CUT, MODEL_GRAPH };

struct model {
	const int64_t	*ts;		/* sorted ascending */
	unsigned	 n;
	enum model_kind	 kind;
	unsigned	 page;		/* nextLink page length (CUT, GRAPH) */
};

struct drive_result {
	bool		 done;		/* ended with PAGING_DONE */
	unsigned	 requests;	/* HTTP requests, links included */
	unsigned	 missed;	/* versions >= from never read */
};

/* First index with ts >= from. */
static unsigned
model_lower(const struct model *m, int64_t from)
{
	unsigned lo = 0, hi = m->n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (m->ts[mid] < from)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Catch up from `from` with $top = top; seen[i] counts how often version
 * i was read.  Gives up after max_requests.
 */
static struct drive_result
drive(const struct model *m, int64_t from, unsigned top, unsigned *seen,
    unsigned max_requests)
{
	struct drive_result r = { false, 0, 0 };
	struct paging	 p;
	unsigned	 i, start, end, pos, plen;
	enum paging_next nx = PAGING_BOUNDARY;

	memset(seen, 0, sizeof(*seen) * m->n);
	paging_start(&p, from, top);
	while (nx != PAGING_DONE && r.requests < max_requests) {
		/* A boundary request: matches [start, end). */
		start = model_lower(m, p.from) + p.skip;
		if (start > m->n)
			start = m->n;
		end = m->kind == MODEL_GRAPH || start + top > m->n ? m->n :
		    start + top;
		plen = m->kind == MODEL_TOP ? top : m->page;
		if (m->kind == MODEL_GRAPH && plen > top)
			plen = top;
		if (plen == 0)
			plen = 1;
		pos = start;
		do {
			unsigned stop = pos + plen < end ? pos + plen : end;

			r.requests++;
			for (i = pos; i < stop; i++) {
				seen[i]++;
				paging_seen(&p, m->ts[i]);
			}
			pos = stop;
			nx = paging_page_end(&p, m->kind != MODEL_TOP &&
			    pos < end);
		} while (nx == PAGING_LINK && r.requests < max_requests);
	}
	r.done = nx == PAGING_DONE;
	for (i = model_lower(m, from); i < m->n; i++)
		if (seen[i] == 0)
			r.missed++;
	return r;
}

#endif
