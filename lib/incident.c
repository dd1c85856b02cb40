/*
 * Incidents: the reader that takes the forwarded fields out of one Graph
 * incident object in a single pass, with the alert reader's parts.
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "incident.h"
#include "jscan.h"
#include "log.h"

/* How a top-level member is read into struct incident. */
enum ikind {
	I_STR,		/* string (or number) -> struct astr at off */
	I_SEV,		/* string -> severity_text and severity */
	I_TIME,		/* time string -> int64_t ticks at off */
	I_ALERTS,	/* the $expand=alerts array */
};

struct ifield {
	const char	*key;
	enum ikind	 kind;
	size_t		 off;
};

#define IO(f)	offsetof(struct incident, f)

static const struct ifield fields[] = {
	{ "id", I_STR, IO(id) },
	{ "displayName", I_STR, IO(display_name) },
	{ "description", I_STR, IO(description) },
	{ "severity", I_SEV, IO(severity_text) },
	{ "status", I_STR, IO(status) },
	{ "classification", I_STR, IO(classification) },
	{ "determination", I_STR, IO(determination) },
	{ "assignedTo", I_STR, IO(assigned_to) },
	{ "incidentWebUrl", I_STR, IO(web_url) },
	{ "redirectIncidentId", I_STR, IO(redirect_id) },
	{ "tenantId", I_STR, IO(tenant_id) },
	{ "createdDateTime", I_TIME, IO(created) },
	{ "lastUpdateDateTime", I_TIME, IO(last_update) },
	{ "alerts", I_ALERTS, 0 },
};

static struct keytab	 kt_incident;
static struct keytab	 kt_alert;	/* an alert of "alerts": its "id" */

static void
tables_init(void)
{
	static int	 done;

	if (done)
		return;
	done = 1;
	keytab_fill(&kt_incident, fields, nitems(fields), sizeof(fields[0]));
	keytab_add(&kt_alert, "id", 0);
}

void
incident_init(struct incident *inc)
{
	memset(inc, 0, sizeof *inc);
	buf_init(&inc->arena);
	buf_init(&inc->alert_ids);
	inc->created = inc->last_update = TICKS_NONE;
}

void
incident_clear(struct incident *inc)
{
	buf_clear(&inc->arena);
	buf_clear(&inc->alert_ids);
	incident_init(inc);
}

/* Forget every field but keep the buffers' memory. */
static void
incident_reset(struct incident *inc)
{
	struct buf	 arena = inc->arena, ids = inc->alert_ids;

	incident_init(inc);
	inc->arena = arena;
	inc->alert_ids = ids;
	buf_reset(&inc->arena);
	buf_reset(&inc->alert_ids);
}

void
incident_add_alert(struct incident *inc, const char *id, size_t len)
{
	struct buf	*b = &inc->alert_ids;

	inc->alerts_known = true;
	if (inc->alert_count < UINT_MAX)
		inc->alert_count++;
	if (id == NULL || len == 0 ||
	    inc->alert_ids_n >= INCIDENT_MAX_ALERT_IDS)
		return;
	if (b->len > 0)
		buf_addc(b, ',');
	buf_add(b, id, len);
	inc->alert_ids_n++;
}

static int
alert_cb(void *arg, struct jscan *js)
{
	struct incident	*inc = arg;
	struct jstr	 id;
	size_t		 dlen;
	char		*tmp;

	memset(&id, 0, sizeof id);
	if (js != NULL && keytab_strings(js, &kt_alert, &id, 1) != 0)
		return -1;
	if (id.p == NULL || !id.esc) {
		incident_add_alert(inc, id.p, id.len);
		return 0;
	}
	tmp = xmalloc(id.len + 1);
	dlen = jscan_unescape(id.p, id.len, tmp);
	incident_add_alert(inc, tmp, dlen);
	free(tmp);
	return 0;
}

/*
 * The alerts array: every element is counted, the ids of alert objects
 * listed.  Another type is absent (count unknown); a later "alerts" member
 * replaces an earlier one.
 */
static int
read_alerts(struct incident *inc, struct jscan *js)
{
	inc->alert_count = inc->alert_ids_n = 0;
	buf_reset(&inc->alert_ids);
	inc->alerts_known = jscan_peek(js) == '[';
	return alert_array_walk(js, alert_cb, inc);
}

static int
read_field(struct incident *inc, struct jscan *js, const struct ifield *f)
{
	void	*at = (char *)inc + f->off;
	int	 r;

	switch (f->kind) {
	case I_STR:
		return astr_read(&inc->arena, js, at, 1);
	case I_SEV:
		r = astr_read(&inc->arena, js, &inc->severity_text, 0);
		inc->severity = severity_of(&inc->severity_text);
		return r;
	case I_TIME:
		return ticks_read(js, at);
	case I_ALERTS:
		return read_alerts(inc, js);
	}
	return jscan_skip(js);
}

/* The members incident_parse requires. */
static int
incident_walk_cb(void *arg, struct jscan *js, int i)
{
	return read_field(arg, js, &fields[i]);
}

/*
 * One pass over the object, as alert_parse: members not forwarded are
 * skipped (their syntax still checked), a duplicate replaces the earlier.
 */
int
incident_parse(struct incident *inc, const char *json, size_t len,
    char *err, size_t errlen)
{
	tables_init();
	incident_reset(inc);
	inc->raw = json;
	inc->raw_len = len;
	buf_reserve(&inc->arena, len + 2);
	if (alert_object_walk(&kt_incident, json, len, "incident",
	    incident_walk_cb, inc, err, errlen) == 0 &&
	    alert_object_check(&inc->id, inc->last_update,
	    "lastUpdateDateTime", err, errlen) == 0)
		return 0;
	incident_reset(inc);
	return -1;
}
