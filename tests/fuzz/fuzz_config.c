/* libFuzzer: the configuration parser on arbitrary text. */
#include <stdint.h>
#include <stdlib.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_errors errs = { NULL, 0 };
	struct config	*c;

	c = conf_parse("fuzz.conf", (const char *)data, size, &errs);
	conf_free(c);
	conf_errors_clear(&errs);
	return 0;
}
