/* libFuzzer: sanitising and CEF escaping keep their promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf	 san, esc;
	size_t		 i;

	buf_init(&san);
	buf_init(&esc);
	sanitize_utf8(&san, (const char *)data, size);
	cef_escape_ext(&esc, san.data ? san.data : "", san.len);
	for (i = 0; i < esc.len; i++)
		if (esc.data[i] == '\n' || esc.data[i] == '\r' ||
		    esc.data[i] == '\0')
			abort();
	buf_reset(&esc);
	cef_escape_header(&esc, san.data ? san.data : "", san.len);
	for (i = 0; i < esc.len; i++)
		if (esc.data[i] == '\n' || esc.data[i] == '\r' ||
		    (esc.data[i] == '|' && (i == 0 || esc.data[i - 1] != '\\')))
			abort();
	buf_clear(&san);
	buf_clear(&esc);
	return 0;
}
