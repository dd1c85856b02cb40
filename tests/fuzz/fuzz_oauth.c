/* libFuzzer: token responses and Entra error bodies. */
#include <stdint.h>
#include <stdlib.h>

#include "oauth.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oauth_token tk;
	struct oauth_error e;
	struct api_error ae;
	char		 err[256];

	if (oauth_token_parse((const char *)data, size, &tk, err,
	    sizeof(err)) == 0)
		secret_free(tk.access_token);
	oauth_error_parse((const char *)data, size, &e);
	api_error_parse((const char *)data, size, &ae);
	return 0;
}
