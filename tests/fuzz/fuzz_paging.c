/*
 * libFuzzer: the paging state machine against a model of the API whose
 * versions, $top, page length and paging style come from the input.  A
 * catch-up must end, and must have read every version at or after its
 * start, within a bounded number of requests.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "paging.h"
#include "../paging_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define MAXN	4096

static int64_t	 ts[MAXN];
static unsigned	 seen[MAXN];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model	 m;
	struct drive_result r;
	unsigned	 top, i, n;

	if (size < 4)
		return 0;
	m.kind = (enum model_kind)(data[0] % 3);
	m.page = 1 + data[1];
	top = 1 + data[2] * 4;
	n = 0;
	/* Each byte: the step to the next version's time (0 = a tie). */
	for (i = 4; i < size && n < MAXN; i++, n++)
		ts[n] = (n == 0 ? 0 : ts[n - 1]) + (data[i] % 4 == 0 ?
		    data[i] / 4 : 0);
	m.ts = ts;
	m.n = n;
	r = drive(&m, n > 0 ? ts[data[3] % n] : 0, top, seen,
	    4 * (n + 2) + 16);
	if (!r.done || r.missed != 0)
		abort();
	return 0;
}
