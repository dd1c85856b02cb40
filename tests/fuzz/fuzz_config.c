/* libFuzzer: the configuration parser on arbitrary text. */
#include <stdint.h>
#include <stdlib.h>

#include "conf.h"
#include "emptydir.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int LLVMFuzzerInitialize(int *, char ***);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	emptydir_make();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_errors errs = { NULL, 0 };
	struct config	*c;
	char		 path[64];

	c = conf_parse(emptydir_file(path, sizeof(path), "fuzz.conf"),
	    (const char *)data, size, &errs);
	conf_free(c);
	conf_errors_clear(&errs);
	return 0;
}
