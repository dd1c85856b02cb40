/*
 * libFuzzer: the metrics endpoint's request head parser, on the whole
 * input and on every prefix a slow client could have sent so far.  What
 * it accepts has a method of capital letters and a printable path that
 * starts with '/'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(const struct httpreq *r)
{
	const char	*p;

	if (r->method[0] == '\0' || r->path[0] != '/')
		abort();
	for (p = r->method; *p != '\0'; p++)
		if (*p < 'A' || *p > 'Z')
			abort();
	for (p = r->path; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f ||
		    *p == '?')
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpreq	 r;
	size_t		 cut = size > 0 ? data[0] % (size + 1) : 0;
	char		*copy = malloc(size + 1);

	/* A copy exactly as long as the input: no reads past it. */
	memcpy(copy, data, size);
	if (httpreq_parse(copy, cut, &r) == HTTPREQ_OK)
		check(&r);
	if (httpreq_parse(copy, size, &r) == HTTPREQ_OK)
		check(&r);
	free(copy);
	return 0;
}
