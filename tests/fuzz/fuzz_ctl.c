/*
 * libFuzzer: the control socket's request line parser, on the whole input
 * and on a prefix.  What it accepts has 1..CTLPROTO_MAX_WORDS non-empty
 * words without blanks or NUL, a known command first, argv NULL-ended and
 * every word inside the request's own buffer; a refusal always says why.
 * Every word is also given to the time parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(const struct ctlproto_req *r, size_t len)
{
	const char	*p;
	int64_t		 t;
	int		 i;

	if (r->argc < 1 || r->argc > CTLPROTO_MAX_WORDS ||
	    r->argv[r->argc] != NULL || (unsigned)r->cmd > CTLPROTO_BACKFILL)
		abort();
	for (i = 0; i < r->argc; i++) {
		p = r->argv[i];
		if (p < r->buf || p >= r->buf + len || *p == '\0')
			abort();
		for (; *p != '\0'; p++)
			if (*p == ' ' || *p == '\t' || *p == '\r')
				abort();
		(void)ctlproto_time(r->argv[i], &t);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ctlproto_req r;
	size_t		 cut = size > 0 ? data[0] % (size + 1) : 0;
	char		*copy = malloc(size + 1);
	char		 err[128];

	/* A copy exactly as long as the input: no reads past it. */
	memcpy(copy, data, size);
	err[0] = '\0';
	if (ctlproto_parse(copy, cut, &r, err, sizeof(err)) == 0)
		check(&r, cut);
	else if (err[0] == '\0')
		abort();
	err[0] = '\0';
	if (ctlproto_parse(copy, size, &r, err, sizeof(err)) == 0)
		check(&r, size);
	else if (err[0] == '\0')
		abort();
	free(copy);
	return 0;
}
