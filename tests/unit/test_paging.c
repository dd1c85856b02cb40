/* Unit tests: the paging state machine against a model of the API. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "paging.h"
#include "../paging_model.h"

#define MAXN	6000

static int64_t	 ts[MAXN];
static unsigned	 seen[MAXN];

/* n versions, `tie` of them sharing each lastUpdateTime. */
static void
fill(unsigned n, unsigned tie)
{
	unsigned i;

	for (i = 0; i < n; i++)
		ts[i] = 1000 + i / tie;
}

static void
check_caught_up(const struct model *m, int64_t from, unsigned top)
{
	struct drive_result r = drive(m, from, top, seen, 100000);

	assert_true(r.done);
	assert_int_equal(r.missed, 0);
}

/* The Defender API: $top/$skip, no links. */
static void
test_top_skip(void **state)
{
	struct model	 m = { ts, 2345, MODEL_TOP, 0 };
	struct drive_result r;

	fill(2345, 1);
	r = drive(&m, 0, 1000, seen, 1000);
	assert_true(r.done);
	assert_int_equal(r.missed, 0);
	/* 1000, 1000 (from the boundary, skip 1), 345 + the tie. */
	assert_int_equal(r.requests, 3);
}

/*
 * The reported stall: nextLink pages shorter than $top, the chain cut
 * at $top.  The short last page of the chain is not the end.
 */
static void
test_short_link_pages(void **state)
{
	struct model	 m = { ts, 2345, MODEL_CUT, 100 };

	fill(2345, 1);
	check_caught_up(&m, 0, 1000);
	fill(2345, 7);
	check_caught_up(&m, 0, 1000);
}

/* Graph: $top is a page size and the links go to the end. */
static void
test_graph_links(void **state)
{
	struct model	 m = { ts, 2345, MODEL_GRAPH, 50 };
	struct drive_result r;

	fill(2345, 3);
	r = drive(&m, 0, 1000, seen, 1000);
	assert_true(r.done);
	assert_int_equal(r.missed, 0);
	assert_int_equal(seen[0], 1);
}

/* 2,500 versions with one lastUpdateTime, pages of 1000. */
static void
test_tie_larger_than_page(void **state)
{
	struct model	 m = { ts, 2500, MODEL_TOP, 0 };

	fill(2500, 2500);
	check_caught_up(&m, 0, 1000);
	m.kind = MODEL_CUT;
	m.page = 300;
	check_caught_up(&m, 0, 1000);
	m.kind = MODEL_GRAPH;
	check_caught_up(&m, 0, 1000);
}

/* An overlap window holding more versions than a page. */
static void
test_overlap_larger_than_page(void **state)
{
	struct model	 m = { ts, 5000, MODEL_CUT, 250 };

	fill(5000, 2);
	check_caught_up(&m, 1000 + 10, 1000);
	/* Versions before from are not asked for. */
	assert_int_equal(seen[0], 0);
	assert_int_equal(seen[19], 0);
	assert_int_equal(seen[20], 1);
}

/* Exactly $top matches: one more request finds nothing new. */
static void
test_exact_multiple(void **state)
{
	struct model	 m = { ts, 2000, MODEL_TOP, 0 };
	struct drive_result r;

	fill(2000, 1);
	r = drive(&m, 0, 1000, seen, 100);
	assert_true(r.done);
	assert_int_equal(r.missed, 0);
	assert_int_equal(r.requests, 3);
}

static void
test_empty(void **state)
{
	struct model	 m = { ts, 0, MODEL_CUT, 10 };
	struct drive_result r = drive(&m, 0, 1000, seen, 10);

	assert_true(r.done);
	assert_int_equal(r.requests, 1);
}

/* Every shape on random data: nothing is missed, it always ends. */
static void
test_random_models(void **state)
{
	unsigned	 round, i, n;
	struct model	 m;

	srandom(12345);
	for (round = 0; round < 300; round++) {
		n = (unsigned)random() % MAXN;
		ts[0] = random() % 5;
		for (i = 1; i < n; i++)
			ts[i] = ts[i - 1] + (random() % 3 == 0);
		m.ts = ts;
		m.n = n;
		m.kind = (enum model_kind)(random() % 3);
		m.page = 1 + (unsigned)random() % 400;
		check_caught_up(&m, n > 0 ? ts[random() % n] : 0,
		    1 + (unsigned)random() % 1500);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_top_skip),
		cmocka_unit_test(test_short_link_pages),
		cmocka_unit_test(test_graph_links),
		cmocka_unit_test(test_tie_larger_than_page),
		cmocka_unit_test(test_overlap_larger_than_page),
		cmocka_unit_test(test_exact_multiple),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_random_models),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
