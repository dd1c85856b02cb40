/* libFuzzer: one alert object through normalisation and every encoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct alert	 a;
	struct buf	 out;
	char		 err[128];
	struct event_meta m = { "t", "T", "tid", 1, 0 };
	enum tenant_source src = size > 0 && data[0] & 1 ? SRC_GRAPH : SRC_MDE;
	size_t		 max = 300 + (size > 1 ? data[1] * 8 : 0);

	alert_init(&a);
	buf_init(&out);
	if (alert_parse(&a, src, (const char *)data, size, err,
	    sizeof(err)) == 0) {
		cef_encode(&out, &a, &m, max);
		if (out.len > max)
			abort();
		buf_reset(&out);
		leef_encode(&out, &a, &m, max);
		buf_reset(&out);
		json_encode(&out, &a, &m, max);
	}
	buf_clear(&out);
	alert_clear(&a);
	return 0;
}
