/*
 * Microsoft Graph security API policy that needs no network: the $top
 * maximum of each endpoint and the service_sources filter on alerts.
 */
#ifndef AR_GRAPH_H
#define AR_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

enum graph_endpoint {
	GRAPH_ALERTS_V2,	/* /v1.0/security/alerts_v2 */
	GRAPH_INCIDENTS,	/* /v1.0/security/incidents */
};

/* The endpoint's path below api_url, e.g. "/v1.0/security/incidents". */
const char	*graph_path(enum graph_endpoint);
/*
 * Append the alerts list URL below api_url, without a query: Graph's
 * alerts_v2 (graph) or the Defender for Endpoint API's /api/alerts.  The
 * poller and check-tenant both start from it.
 */
void		 graph_alerts_url(struct buf *url, const char *api_url,
		    bool graph);
/* The largest $top the endpoint accepts. */
unsigned	 graph_top_max(enum graph_endpoint);
/*
 * page_size clamped to the endpoint's maximum (0 becomes the maximum).
 * A result other than page_size is what the daemon reports at start.
 */
unsigned	 graph_top_clamp(enum graph_endpoint, unsigned page_size);

/*
 * service_sources: does an alert whose serviceSource is ss (len bytes, not
 * NUL-terminated, NULL when absent) pass the comma-separated list?  A NULL
 * or empty list passes everything.  Items are compared case-insensitively,
 * white space around them ignored; an absent or empty serviceSource counts
 * as "unknown".
 */
bool		 graph_source_pass(const char *list, const char *ss,
		    size_t len);
/* Is name a serviceSource value Graph documents (any case)? */
bool		 graph_source_known(const char *name);

#endif
