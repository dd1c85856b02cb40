/* libFuzzer: the page splitter fed in two chunks, each alert normalised. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "pagesplit.h"
#include "encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
alert_cb(const char *obj, size_t len, void *arg)
{
	struct alert	*a = arg;
	char		 err[128];
	struct buf	 out;
	struct event_meta m = { "t", "T", "tid", 0, 0 };

	if (alert_parse(a, SRC_MDE, obj, len, err, sizeof(err)) == 0) {
		buf_init(&out);
		cef_encode(&out, a, &m, 2048);
		buf_clear(&out);
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pagesplit *ps;
	struct alert	 a;
	size_t		 cut = size > 0 ? data[0] % (size + 1) : 0;

	alert_init(&a);
	ps = pagesplit_new(1 << 20, alert_cb, &a);
	if (pagesplit_feed(ps, (const char *)data, cut) == 0 &&
	    pagesplit_feed(ps, (const char *)data + cut, size - cut) == 0)
		pagesplit_finish(ps);
	pagesplit_free(ps);
	alert_clear(&a);
	return 0;
}
