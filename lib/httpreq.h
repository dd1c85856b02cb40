/* httpreq: the request head of the metrics endpoint's small HTTP server. */
#ifndef AR_HTTPREQ_H
#define AR_HTTPREQ_H

#include <stdbool.h>
#include <stddef.h>

#define HTTPREQ_MAX_HEAD	16384	/* request line and headers */

enum httpreq_result {
	HTTPREQ_MORE,		/* the head is not complete yet */
	HTTPREQ_OK,
	HTTPREQ_BAD,		/* answer 400 and close */
	HTTPREQ_TOO_LARGE,	/* answer 431 and close */
};

struct httpreq {
	char	 method[8];	/* "GET", "HEAD", ... */
	char	 path[256];	/* origin-form path, query cut off */
};

/*
 * Parse the request head at the start of buf (len bytes so far).  Only
 * the request line is interpreted; header lines are checked for shape
 * and skipped.  A body is never read (the endpoint takes none).
 */
enum httpreq_result httpreq_parse(const char *buf, size_t len,
	    struct httpreq *);

#endif
