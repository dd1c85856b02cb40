/*
 * Graph security incidents (v1.0 security/incidents, with $expand=alerts):
 * the reader that takes the forwarded fields out of one incident object.
 * Pages of incidents are cut into objects by the alerts' page splitter
 * (pagesplit_*, lib/pagesplit.h), which works for any "value" array.
 */
#ifndef AR_INCIDENT_H
#define AR_INCIDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "conf.h"
#include "util.h"

/* Alert ids listed per incident; further alerts are counted, not listed. */
#define INCIDENT_MAX_ALERT_IDS	1000

/*
 * Strings are as in struct alert: decoded, not yet sanitised, p == NULL
 * when absent or null.
 */
struct incident {
	struct astr	 id;
	struct astr	 display_name;
	struct astr	 description;
	struct astr	 severity_text;		/* as received */
	enum severity	 severity;		/* SEV_UNSPECIFIED if unknown */
	struct astr	 status;
	struct astr	 classification;
	struct astr	 determination;
	struct astr	 assigned_to;
	struct astr	 web_url;		/* incidentWebUrl */
	struct astr	 redirect_id;		/* redirectIncidentId: merged */
	struct astr	 tenant_id;
	int64_t		 created;		/* ticks; TICKS_NONE if absent */
	int64_t		 last_update;

	/*
	 * The "alerts" array: ids joined with "," in the order received
	 * (at most INCIDENT_MAX_ALERT_IDS of them, alert_ids_n), and the
	 * number of elements.  alerts_known is false when the object had no
	 * "alerts" array (fetched without $expand=alerts): then the count is
	 * unknown, not 0, and the encoders leave cs5 and cn1 out.
	 */
	struct buf	 alert_ids;
	unsigned	 alert_ids_n;
	unsigned	 alert_count;
	bool		 alerts_known;

	const char	*raw;			/* the object's bytes as received */
	size_t		 raw_len;
	struct buf	 arena;			/* owns decoded strings */
};

void	incident_init(struct incident *);
void	incident_clear(struct incident *);

/*
 * Parse one incident object (one element of "value").  Resets inc first;
 * inc->raw points at json, which must outlive inc.  Returns 0, or -1 with
 * a message in err when the bytes are not a JSON object or "id" or
 * "lastUpdateDateTime" are missing or malformed.  Wrong types in other
 * members are treated as absent; hostile string bytes are kept for the
 * encoders to sanitise.
 */
int	incident_parse(struct incident *, const char *json, size_t len,
	    char *err, size_t errlen);

/*
 * Count one more alert of the incident and list its id (len bytes, may be
 * empty: counted only).  For the fallback when $expand=alerts fails and
 * the alerts come from /security/incidents/{id}/alerts: the first call
 * after incident_parse of an object without "alerts" makes the count
 * known.
 */
void	incident_add_alert(struct incident *, const char *id, size_t len);

#endif
