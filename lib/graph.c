/*
 * Graph security API policy: per-endpoint $top maxima and the serviceSource
 * filter applied to alerts after dedupe.
 */

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "graph.h"
#include "util.h"

/*
 * $top maxima.  alerts_v2: 1000, the limit Graph documents for security
 * alerts ("$top limit 1000", G-errcodes; Elastic clamps alerts_v2 there,
 * elastic/integrations #20234), defender-api.md §5.5.  incidents: 50, a
 * larger $top is answered with HTTP 400 (wazuh/wazuh #27579, Elastic's
 * m365_defender incident manifest), defender-api.md §5.8.
 */
static const struct {
	const char	*path;
	unsigned	 top_max;
} endpoints[] = {
	[GRAPH_ALERTS_V2] = { "/v1.0/security/alerts_v2", 1000 },
	[GRAPH_INCIDENTS] = { "/v1.0/security/incidents", 50 },
};

/* serviceSource values of the Graph alert resource (defender-api.md §5.2). */
static const char *const sources[] = {
	"unknown", "microsoftDefenderForEndpoint",
	"microsoftDefenderForIdentity", "microsoftDefenderForCloudApps",
	"microsoftDefenderForOffice365", "microsoft365Defender",
	"azureAdIdentityProtection", "microsoftAppGovernance",
	"dataLossPrevention", "unknownFutureValue",
	"microsoftDefenderForCloud",
};

const char *
graph_path(enum graph_endpoint ep)
{
	return endpoints[ep].path;
}

void
graph_alerts_url(struct buf *url, const char *api_url, bool graph)
{
	buf_addf(url, "%s%s", api_url, graph ? graph_path(GRAPH_ALERTS_V2) :
	    "/api/alerts");
}

unsigned
graph_top_max(enum graph_endpoint ep)
{
	return endpoints[ep].top_max;
}

unsigned
graph_top_clamp(enum graph_endpoint ep, unsigned page_size)
{
	unsigned	 max = endpoints[ep].top_max;

	return page_size == 0 || page_size > max ? max : page_size;
}

/* Does the item [s, s + n) equal the len bytes of v, ignoring case? */
static bool
item_eq(const char *s, size_t n, const char *v, size_t len)
{
	size_t	 i;

	if (n != len)
		return false;
	for (i = 0; i < n; i++) {
		if (tolower((unsigned char)s[i]) !=
		    tolower((unsigned char)v[i]))
			return false;
	}
	return true;
}

bool
graph_source_pass(const char *list, const char *ss, size_t len)
{
	const char	*s, *e;
	size_t		 n;

	if (list == NULL || list[strspn(list, " \t,")] == '\0')
		return true;
	if (ss == NULL || len == 0) {
		ss = "unknown";
		len = 7;
	}
	for (s = list;; s = e + 1) {
		s += strspn(s, " \t");
		e = s + strcspn(s, ",");
		for (n = (size_t)(e - s); n > 0 &&
		    (s[n - 1] == ' ' || s[n - 1] == '\t'); n--)
			;
		if (item_eq(s, n, ss, len))
			return true;
		if (*e == '\0')
			return false;
	}
}

bool
graph_source_known(const char *name)
{
	size_t	 i;

	for (i = 0; i < nitems(sources); i++) {
		if (strcasecmp(name, sources[i]) == 0)
			return true;
	}
	return false;
}
