/*
 * notify: e-mail notifications.  Each [notify] section keeps a durable
 * spool of compact alert records under state_dir/notify/NAME; the sender
 * mails them one at a time while the hourly budget of single mails lasts,
 * then batches them into digests, and acknowledges a record only once the
 * SMTP server has accepted its mail, so a restart sends nothing twice.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "internal.h"
#include "mime.h"
#include "smtp.h"

#define NOTIFY_SPOOL_MAX	(64ULL * 1024 * 1024)
#define TITLE_MAX		300		/* bytes, in records */
#define DESC_MAX		2000
#define FIELD_MAX		512
#define SUBJECT_TITLE_MAX	160
#define DIGEST_MAX		200		/* alerts per digest mail */
#define SMTP_TIMEOUT_MS		(2 * 60 * 1000)
#define HOUR_S			3600
#define PORTAL			"https://security.microsoft.com/alerts/"
#define PORTAL_INCIDENTS	"https://security.microsoft.com/incidents/"

struct notifier {
	struct relay		*relay;
	const struct conf_notify *conf;		/* borrowed from relay->conf */
	char			*name;
	char			*budget_path;
	struct spool		*spool;
	struct event		*timer;
	struct smtp_job		*req;		/* SMTP transfer in flight */
	struct spool_pos	 inflight_end;	/* ack up to here on success */
	unsigned		 inflight_n;
	bool			 inflight_digest;
	int64_t			*sent;		/* epoch s of single mails */
	size_t			 nsent;
	struct disk_work	*budget_work;	/* their save in flight */
	struct disk_work	*budget_loading; /* the file, being read */
	bool			 budget_dirty;	/* changed since it began */
	int64_t			 digest_due;	/* mono ms; 0 none pending */
	int64_t			 retry_at;	/* mono ms; 0 not backing off */
	unsigned		 failures;
	bool			 spool_full_warned;
	uint64_t		 mails;
};

static const char *sev_display[] = {
	"Unspecified", "Informational", "Low", "Medium", "High"
};

static void	notifier_run_cb(evutil_socket_t, short, void *);

const struct conf_notify *
notifier_conf(const struct notifier *n)
{
	return n->conf;
}

static void
notifier_schedule(struct notifier *n, int64_t ms)
{
	struct timeval	 tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(n->timer, &tv);
}

/* Drop single-mail times that left the sliding hour. */
static void
budget_prune(struct notifier *n, int64_t now)
{
	size_t	 i, j = 0;

	for (i = 0; i < n->nsent; i++)
		if (n->sent[i] > now - HOUR_S && n->sent[i] <= now + HOUR_S)
			n->sent[j++] = n->sent[i];
	n->nsent = j;
}

/*
 * The file's times, read on the disk thread (budget_load): in order after
 * every save queued before, so a notifier that a reload removed and added
 * back reads what its predecessor saved last.  No single mail goes out
 * before (notifier_run_cb waits for it).
 */
static void
budget_loaded_cb(void *arg, int error, const struct buf *b)
{
	struct notifier	*n = arg;
	char		*p, *end;
	long long	 v;

	n->budget_loading = NULL;
	if (error != 0 && error != ENOENT)
		log_warnx("notify %s: cannot read %s: %s (single mails of the "
		    "last hour are not counted; check the state directory's "
		    "disk)", n->name, n->budget_path, strerror(error));
	if (error == 0 && b->data != NULL) {
		for (p = b->data; *p != '\0'; p = end) {
			v = strtoll(p, &end, 10);
			if (end == p)
				break;
			n->sent = xreallocarray(n->sent, n->nsent + 1,
			    sizeof(*n->sent));
			n->sent[n->nsent++] = v;
			while (*end == '\n')
				end++;
		}
	}
	budget_prune(n, ts_now() / TICKS_PER_SEC);
	if (spool_records(n->spool) > 0)
		notifier_schedule(n, 0);
}

static void
budget_load(struct notifier *n)
{
	n->budget_loading = disk_load(n->relay->disk, n->budget_path,
	    1024 * 1024, budget_loaded_cb, n);
}

static void	budget_saved_cb(void *, int);

/*
 * Persist the single-mail times so a restart keeps to max_per_hour: on the
 * disk thread, never in the loop (with a slow disk every tenant would wait
 * for each mail's fsync).  One save is in flight at a time; times noted
 * meanwhile go in the next one, started when it ends (saves run in order,
 * so the file always ends with the latest times).  cb NULL: nobody waits.
 */
static void
budget_save(struct notifier *n, disk_done_cb cb)
{
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	for (i = 0; i < n->nsent; i++)
		buf_addf(&b, "%lld\n", (long long)n->sent[i]);
	n->budget_dirty = false;
	n->budget_work = disk_save(n->relay->disk, n->budget_path, &b, cb, n);
}

static void
budget_saved_cb(void *arg, int error)
{
	struct notifier	*n = arg;

	n->budget_work = NULL;
	if (error != 0)
		log_warnx("notify %s: cannot save %s: %s (after a restart "
		    "within the hour, up to max_per_hour more single mails "
		    "may be sent; check the state directory's disk)", n->name,
		    n->budget_path, strerror(error));
	if (n->budget_dirty)
		budget_save(n, budget_saved_cb);
}

static void
budget_note(struct notifier *n, int64_t now)
{
	budget_prune(n, now);
	n->sent = xreallocarray(n->sent, n->nsent + 1, sizeof(*n->sent));
	n->sent[n->nsent++] = now;
	if (n->budget_work != NULL)
		n->budget_dirty = true;
	else
		budget_save(n, budget_saved_cb);
}

/* Add k: sanitised, shortened v (omitted when absent). */
static void
rec_set(json_t *o, const char *k, const char *p, size_t len, size_t max)
{
	struct buf	 b;
	size_t		 cut;

	if (p == NULL)
		return;
	buf_init(&b);
	sanitize_utf8(&b, p, len);
	if (b.len > max) {
		cut = utf8_prefix(b.data, b.len, max - 3);
		buf_truncate(&b, cut);
		buf_adds(&b, "\xe2\x80\xa6");	/* U+2026 */
	}
	if (b.data != NULL)
		json_object_set_new(o, k, json_stringn(b.data, b.len));
	buf_clear(&b);
}

static void
rec_astr(json_t *o, const char *k, const struct astr *v, size_t max)
{
	rec_set(o, k, v->p, v->len, max);
}

static void
rec_str(json_t *o, const char *k, const char *s)
{
	if (s != NULL)
		rec_set(o, k, s, strlen(s), FIELD_MAX);
}

static void
rec_time(json_t *o, const char *k, int64_t t)
{
	char	 ts[40];

	if (t == TICKS_NONE)
		return;
	ts_format(t, ts, sizeof(ts));
	json_object_set_new(o, k, json_string(ts));
}

/* Does n mail events of this kind, tenant and severity? */
static bool
notifier_wants_event(const struct notifier *n, enum conf_notify_events kind,
    const char *tenant, enum severity sev)
{
	const struct conf_notify *c = n->conf;
	size_t		 i;

	if ((c->events & kind) == 0)
		return false;
	if (c->min_severity > SEV_INFORMATIONAL && sev < c->min_severity)
		return false;
	if (c->tenants == NULL)
		return true;
	for (i = 0; i < c->ntenants; i++)
		if (strcmp(c->tenants[i], tenant) == 0)
			return true;
	return false;
}

bool
notifier_wants(const struct notifier *n, const char *tenant,
    const struct alert *a)
{
	return notifier_wants_event(n, NOTIFY_ALERTS, tenant, a->severity);
}

/* Append record o (consumed) to the spool; dropped while it is full. */
static int
record_append(struct notifier *n, json_t *o)
{
	char		*s;
	int		 rc;

	if (spool_full(n->spool)) {
		if (!n->spool_full_warned)
			log_warnx("notify %s: %llu mails are waiting for the "
			    "SMTP server; new notifications are dropped until "
			    "it takes them", n->name, (unsigned long long)
			    spool_records(n->spool));
		n->spool_full_warned = true;
		json_decref(o);
		return 0;
	}
	n->spool_full_warned = false;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s == NULL) {
		errno = ENOMEM;
		return -1;
	}
	rc = spool_append(n->spool, s, strlen(s));
	free(s);
	return rc;
}

/* What every mailed event has: whose it is, and what. */
struct record_head {
	const char		*kind;		/* NULL for alerts */
	const struct astr	*tid;		/* from the event, or empty */
	const struct astr	*id;
	const struct astr	*title;
	enum severity		 sev;
	const struct astr	*status;
	int64_t			 last_update, created;
};

static json_t *
record_new(const struct record_head *h, const struct event_meta *m)
{
	json_t		*o = json_object();

	if (h->kind != NULL)
		json_object_set_new(o, "kind", json_string(h->kind));
	rec_str(o, "tenant", m->tenant_name);
	rec_str(o, "label", m->tenant_label);
	if (h->tid->p != NULL && h->tid->len > 0)
		rec_astr(o, "tid", h->tid, FIELD_MAX);
	else
		rec_str(o, "tid", m->tenant_id);
	rec_astr(o, "id", h->id, FIELD_MAX);
	rec_astr(o, "title", h->title, TITLE_MAX);
	json_object_set_new(o, "sev", json_integer(h->sev));
	rec_astr(o, "status", h->status, FIELD_MAX);
	rec_time(o, "lut", h->last_update);
	rec_time(o, "created", h->created);
	return o;
}

/*
 * Queue the record of one alert.  Only the first version of an alert
 * (created) is mailed; later versions are status changes the SIEM carries.
 */
int
notifier_enqueue(struct notifier *n, const struct alert *a,
    const struct event_meta *m)
{
	json_t		*o;

	if (m->updated)
		return 0;
	o = record_new(&(struct record_head){ NULL, &a->aad_tenant_id,
	    &a->id, &a->title, a->severity, &a->status, a->last_update,
	    a->creation }, m);
	rec_astr(o, "category", &a->category, FIELD_MAX);
	rec_astr(o, "host", &a->computer_dns_name, FIELD_MAX);
	rec_astr(o, "user", &a->user_name, FIELD_MAX);
	rec_astr(o, "desc", &a->description, DESC_MAX);
	return record_append(n, o);
}

/* Queue the record of one incident version (created ones only). */
static int
notifier_enqueue_incident(struct notifier *n, const struct incident *in,
    const struct event_meta *m)
{
	json_t		*o;

	if (m->updated)
		return 0;
	o = record_new(&(struct record_head){ "incident", &in->tenant_id,
	    &in->id, &in->display_name, in->severity, &in->status,
	    in->last_update, in->created }, m);
	rec_astr(o, "url", &in->web_url, FIELD_MAX);
	if (in->alerts_known)
		json_object_set_new(o, "alerts",
		    json_integer(in->alert_count));
	rec_astr(o, "desc", &in->description, DESC_MAX);
	return record_append(n, o);
}

void
notifiers_incident(struct notifier **ns, size_t nn,
    const struct incident *in, const struct event_meta *m)
{
	size_t		 i;

	for (i = 0; i < nn; i++) {
		if (!notifier_wants_event(ns[i], NOTIFY_INCIDENTS,
		    m->tenant_name, in->severity))
			continue;
		/* Made durable by the incident page's commit. */
		if (notifier_enqueue_incident(ns[i], in, m) == -1)
			log_tenant(LOG_WARNING, m->tenant_name, "notify %s: "
			    "cannot queue the incident's mail: %s",
			    ns[i]->name, strerror(errno));
	}
}

int
notifier_sync(struct notifier *n)
{
	if (spool_sync(n->spool) == -1)
		return -1;
	if (n->req == NULL && spool_records(n->spool) > 0)
		notifier_schedule(n, 0);
	return 0;
}

int
notifier_sync_async(struct notifier *n, struct disk *d, spool_synced_cb cb,
    void *arg, uint64_t *ticket)
{
	disk_attach_spool(d, n->spool);
	return spool_sync_async(n->spool, cb, arg, ticket);
}

void
notifier_sync_cancel(struct notifier *n, uint64_t ticket)
{
	spool_sync_cancel(n->spool, ticket);
}

/* Mails became durable (an asynchronous sync): send them. */
static void
notifier_ready_cb(void *arg)
{
	struct notifier	*n = arg;

	if (n->req == NULL)
		notifier_schedule(n, 0);
}

/*
 * Give the mail in flight up; it stays first in the spool.  A server that
 * had already taken it but not said so yet will get it again: SMTP has no
 * way around that.
 */
static void
notifier_give_up(struct notifier *n, const char *why, const char *then)
{
	uint64_t	 left = spool_records(n->spool);

	smtp_cancel(n->req);
	n->req = NULL;
	log_info("notify %s: the %s in flight to %s is given up: %s; %llu "
	    "alert%s %s", n->name, n->inflight_digest ? "digest mail" :
	    "mail", n->conf->smtp_url, why, (unsigned long long)left,
	    left == 1 ? "" : "s", then);
}

/*
 * A mail in flight when the server, sender, recipients or credentials
 * change is given up and sent again with the new settings: it never goes
 * to recipients the reload removed.
 */
void
notifier_reconcile(struct notifier *n, const struct conf_notify *c)
{
	if (n->req != NULL && !conf_notify_same_delivery(n->conf, c)) {
		notifier_give_up(n, "the reload changed the server, sender, "
		    "recipients or credentials", "waiting; sending it again "
		    "with the new settings");
		n->retry_at = 0;
		n->failures = 0;
	}
	n->conf = c;
	if (n->req == NULL && spool_records(n->spool) > 0)
		notifier_schedule(n, 0);
}

bool
notifier_drained(const struct notifier *n)
{
	return n->req == NULL && spool_records(n->spool) == 0;
}

/*
 * Mail composition.  Everything from an alert is attacker-controlled: it
 * is sanitised, header values lose every control character (no CR/LF
 * injection) and are RFC 2047-encoded when not ASCII, and the body is
 * quoted-printable.
 */

static const char *
rget(json_t *r, const char *k)
{
	const char	*s = json_string_value(json_object_get(r, k));

	return s != NULL && *s != '\0' ? s : NULL;
}

static const char *
rsev(json_t *r)
{
	json_int_t	 v = json_integer_value(json_object_get(r, "sev"));

	return v >= 0 && v < (json_int_t)nitems(sev_display) ?
	    sev_display[v] : sev_display[0];
}

/* Message-ID domain: the sender's, letters, digits, dots, hyphens only. */
static void
msgid_domain(const struct notifier *n, struct buf *out)
{
	char		*a = mime_bare_address(n->conf->from);
	const char	*at = strrchr(a, '@'), *p;
	size_t		 start = out->len;

	for (p = at != NULL ? at + 1 : ""; *p != '\0'; p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '-')
			buf_addc(out, *p);
	if (out->len == start)
		buf_adds(out, "alertrelay.invalid");
	free(a);
}

/* <hex(sha256(key))@domain>: the same alert version, the same ID. */
static void
message_id(const struct notifier *n, const struct buf *key, struct buf *out)
{
	unsigned char	 d[EVP_MAX_MD_SIZE];
	unsigned int	 dl = 0, i;

	if (EVP_Digest(key->data != NULL ? key->data : "", key->len, d, &dl,
	    EVP_sha256(), NULL) != 1)
		fatalx("EVP_Digest failed");
	buf_addc(out, '<');
	for (i = 0; i < 16; i++)
		buf_addf(out, "%02x", d[i]);
	buf_adds(out, ".alertrelay@");
	msgid_domain(n, out);
	buf_addc(out, '>');
}

/* From, To, Date, Message-ID, MIME headers; subject given. */
static void
mail_headers(const struct notifier *n, struct buf *out, const char *subject,
    const struct buf *idkey, const char *tenant)
{
	struct buf	 v;
	size_t		 i;

	buf_init(&v);
	mime_one_line(&v, n->conf->from, FIELD_MAX);
	mime_header(out, "From", v.data);
	buf_reset(&v);
	for (i = 0; i < n->conf->nto; i++) {
		if (i > 0)
			buf_adds(&v, ", ");
		mime_one_line(&v, n->conf->to[i], FIELD_MAX);
	}
	mime_header(out, "To", v.data != NULL ? v.data : "");
	mime_header(out, "Subject", subject);
	buf_reset(&v);
	mime_date(&v, time(NULL));
	mime_header(out, "Date", v.data);
	buf_reset(&v);
	message_id(n, idkey, &v);
	mime_header(out, "Message-ID", v.data);
	mime_header(out, "MIME-Version", "1.0");
	mime_header(out, "Content-Type", "text/plain; charset=UTF-8");
	mime_header(out, "Content-Transfer-Encoding", "quoted-printable");
	mime_header(out, "Auto-Submitted", "auto-generated");
	if (tenant != NULL) {
		buf_reset(&v);
		mime_one_line(&v, tenant, FIELD_MAX);
		mime_header(out, "X-Alertrelay-Tenant", v.data);
	}
	buf_adds(out, "\r\n");
	buf_clear(&v);
}

static bool
is_incident(json_t *r)
{
	const char	*k = rget(r, "kind");

	return k != NULL && strcmp(k, "incident") == 0;
}

/*
 * The event's portal link: an incident's incidentWebUrl when it is an
 * https URL, else the portal's page for the id, percent-encoded.
 */
static void
portal_link(struct buf *out, json_t *r)
{
	const char	*url = rget(r, "url");

	if (is_incident(r) && url != NULL &&
	    strncmp(url, "https://", 8) == 0) {
		mime_one_line(out, url, FIELD_MAX);
		return;
	}
	buf_adds(out, is_incident(r) ? PORTAL_INCIDENTS : PORTAL);
	http_urlencode(out, rget(r, "id") ? rget(r, "id") : "");
	buf_adds(out, "?tid=");
	http_urlencode(out, rget(r, "tid") ? rget(r, "tid") : "");
}

static void
body_field(struct buf *b, const char *name, const char *v)
{
	if (v == NULL)
		return;
	buf_addf(b, "%-13s", name);
	mime_one_line(b, v, FIELD_MAX);
	buf_addc(b, '\n');
}

static void
idkey_add(struct buf *key, json_t *r)
{
	if (is_incident(r))
		buf_adds(key, "incident\n");
	buf_adds(key, rget(r, "tenant") ? rget(r, "tenant") : "");
	buf_addc(key, '\n');
	buf_adds(key, rget(r, "id") ? rget(r, "id") : "");
	buf_addc(key, '\n');
	buf_adds(key, rget(r, "lut") ? rget(r, "lut") : "");
	buf_addc(key, '\n');
}

static const char *
rlabel(json_t *r)
{
	return rget(r, "label") ? rget(r, "label") :
	    rget(r, "tenant") ? rget(r, "tenant") : "-";
}

/* The facts of one alert or incident, one per line. */
static void
body_fields(struct buf *body, json_t *r)
{
	json_t		*na = json_object_get(r, "alerts");
	char		 count[32];

	body_field(body, "Customer:", rlabel(r));
	body_field(body, "Tenant:", rget(r, "tenant"));
	body_field(body, is_incident(r) ? "Incident:" : "Alert:",
	    rget(r, "title"));
	body_field(body, "Severity:", rsev(r));
	body_field(body, "Status:", rget(r, "status"));
	if (json_is_integer(na)) {
		snprintf(count, sizeof(count), "%lld",
		    (long long)json_integer_value(na));
		body_field(body, "Alerts:", count);
	}
	body_field(body, "Category:", rget(r, "category"));
	body_field(body, "Machine:", rget(r, "host"));
	body_field(body, "User:", rget(r, "user"));
	body_field(body, "Created:", rget(r, "created"));
	body_field(body, "Last update:", rget(r, "lut"));
	body_field(body, is_incident(r) ? "Incident ID:" : "Alert ID:",
	    rget(r, "id"));
	body_field(body, "Tenant ID:", rget(r, "tid"));
}

/* Sign the body and append it, quoted-printable, to the mail in out. */
static void
mail_body_end(const struct notifier *n, struct buf *body, struct buf *out)
{
	buf_addf(body, "\n-- \nalertrelayd on %s, [notify \"%s\"]\n",
	    n->relay->hostname, n->name);
	mime_qp(out, body->data, body->len);
}

/* The mail for one alert or incident. */
static void
mail_single(const struct notifier *n, json_t *r, struct buf *out)
{
	struct buf	 subj, body, key, s;
	const char	*desc = rget(r, "desc");
	const char	*what = is_incident(r) ? "incident" : "alert";

	buf_init(&subj);
	buf_init(&body);
	buf_init(&key);
	buf_init(&s);
	buf_addf(&subj, "[alertrelay] %s%s: ", rsev(r),
	    is_incident(r) ? " incident" : "");
	mime_one_line(&subj, rget(r, "title") ? rget(r, "title") : "-",
	    SUBJECT_TITLE_MAX);
	buf_adds(&subj, " \xe2\x80\x94 ");	/* em dash */
	mime_one_line(&subj, rlabel(r), FIELD_MAX);
	idkey_add(&key, r);
	mail_headers(n, out, subj.data, &key, rget(r, "tenant"));

	buf_addf(&body, "A new %s %s for ", rsev(r), what);
	mime_one_line(&body, rlabel(r), FIELD_MAX);
	buf_adds(&body, ".\n\n");
	body_fields(&body, r);
	buf_adds(&body, "\nOpen in Microsoft Defender:\n");
	portal_link(&body, r);
	buf_adds(&body, "\n");
	if (desc != NULL) {
		buf_adds(&body, "\nDescription:\n");
		sanitize_utf8(&s, desc, strlen(desc));
		buf_add(&body, s.data, s.len);
		buf_adds(&body, "\n");
	}
	mail_body_end(n, &body, out);
	buf_clear(&subj);
	buf_clear(&body);
	buf_clear(&key);
	buf_clear(&s);
}

/* Entry k of a digest: severity, title, customer, machine, status, link. */
static void
digest_item(struct buf *body, size_t k, json_t *r)
{
	buf_addf(body, "\n%zu. [%s] %s", k, rsev(r),
	    is_incident(r) ? "Incident: " : "");
	mime_one_line(body, rget(r, "title") ? rget(r, "title") : "-",
	    SUBJECT_TITLE_MAX);
	buf_adds(body, "\n   Customer: ");
	mime_one_line(body, rlabel(r), FIELD_MAX);
	if (rget(r, "host") != NULL) {
		buf_adds(body, "; machine: ");
		mime_one_line(body, rget(r, "host"), FIELD_MAX);
	}
	if (rget(r, "status") != NULL) {
		buf_adds(body, "; status: ");
		mime_one_line(body, rget(r, "status"), FIELD_MAX);
	}
	buf_adds(body, "\n   ");
	portal_link(body, r);
	buf_addc(body, '\n');
}

/* The digest of the records rs[0..nr). */
static void
mail_digest(const struct notifier *n, json_t **rs, size_t nr,
    struct buf *out)
{
	struct buf	 subj, body, key;
	size_t		 i, j, nlabels = 0, nin = 0;
	const char	*labels[3], *noun;
	bool		 more = false, seen;

	buf_init(&subj);
	buf_init(&body);
	buf_init(&key);
	for (i = 0; i < nr; i++) {
		idkey_add(&key, rs[i]);
		nin += is_incident(rs[i]);
		for (seen = false, j = 0; j < nlabels; j++)
			seen |= strcmp(labels[j], rlabel(rs[i])) == 0;
		if (!seen && nlabels < nitems(labels))
			labels[nlabels++] = rlabel(rs[i]);
		else if (!seen)
			more = true;
	}
	noun = nin == 0 ? "alert" : nin == nr ? "incident" : "event";
	buf_addf(&subj, "[alertrelay] Digest: %zu %s%s \xe2\x80\x94 ", nr,
	    noun, nr == 1 ? "" : "s");
	for (j = 0; j < nlabels; j++) {
		if (j > 0)
			buf_adds(&subj, ", ");
		mime_one_line(&subj, labels[j], 80);
	}
	if (more)
		buf_adds(&subj, ", \xe2\x80\xa6");
	mail_headers(n, out, subj.data, &key, NULL);

	buf_addf(&body, "%zu %s%s arrived after the limit of %u single "
	    "mails per hour was reached:\n", nr, noun, nr == 1 ? "" : "s",
	    n->conf->max_per_hour);
	for (i = 0; i < nr; i++)
		digest_item(&body, i + 1, rs[i]);
	mail_body_end(n, &body, out);
	buf_clear(&subj);
	buf_clear(&body);
	buf_clear(&key);
}

/*
 * Sending.
 */

static void	notifier_sent_cb(const struct smtp_result *, void *);

/* Hand a composed mail to SMTP. */
static void
notifier_submit(struct notifier *n, const struct buf *mail)
{
	const struct conf_notify *c = n->conf;
	struct smtp_opts	 o;
	char			**rcpt, *from, *url;
	const char		*path;
	size_t			 i;

	path = strstr(c->smtp_url, "://");
	if (path != NULL && strchr(path + 3, '/') == NULL)
		xasprintf(&url, "%s/%s", c->smtp_url, n->relay->hostname);
	else
		url = xstrdup(c->smtp_url);
	from = mime_bare_address(c->from);
	rcpt = xcalloc(c->nto, sizeof(*rcpt));
	for (i = 0; i < c->nto; i++)
		rcpt[i] = mime_bare_address(c->to[i]);
	memset(&o, 0, sizeof(o));
	o.url = url;
	o.mail_from = from;
	o.rcpt = (const char *const *)rcpt;
	o.nrcpt = c->nto;
	o.username = c->username;
	o.password = c->password;
	o.body = mail->data;
	o.body_len = mail->len;
	o.timeout_ms = SMTP_TIMEOUT_MS;
	o.done_cb = notifier_sent_cb;
	o.arg = n;
	n->req = smtp_submit(n->relay->base, &o);
	for (i = 0; i < c->nto; i++)
		free(rcpt[i]);
	free(rcpt);
	free(from);
	free(url);
}

/* Parse a record; a broken one is logged (the caller skips it). */
static json_t *
record_parse(struct notifier *n, const struct buf *b)
{
	json_t		*r;
	json_error_t	 je;

	r = json_loadb(b->data != NULL ? b->data : "", b->len, 0, &je);
	if (!json_is_object(r)) {
		log_warnx("notify %s: skipping an unreadable spool record "
		    "(line %d column %d: %s)", n->name, je.line, je.column,
		    je.text);
		json_decref(r);
		return NULL;
	}
	return r;
}

static void
notifier_send_single(struct notifier *n, struct spool_pos *pos, json_t *r)
{
	struct buf	 mail;

	buf_init(&mail);
	mail_single(n, r, &mail);
	n->inflight_end = *pos;
	n->inflight_n = 1;
	n->inflight_digest = false;
	notifier_submit(n, &mail);
	buf_clear(&mail);
}

/* Read up to DIGEST_MAX records from pos and mail them as one digest. */
static void
notifier_send_digest(struct notifier *n, struct spool_pos *pos, json_t *r)
{
	json_t		*rs[DIGEST_MAX];
	struct spool_pos end = *pos;
	struct buf	 rec, mail;
	size_t		 nr = 0, i;

	rs[nr++] = r;
	buf_init(&rec);
	while (nr < DIGEST_MAX && spool_read(n->spool, pos, &rec) == 1) {
		end = *pos;
		if ((r = record_parse(n, &rec)) != NULL)
			rs[nr++] = r;
	}
	buf_clear(&rec);
	buf_init(&mail);
	mail_digest(n, rs, nr, &mail);
	n->inflight_end = end;
	n->inflight_n = (unsigned)nr;
	n->inflight_digest = true;
	notifier_submit(n, &mail);
	buf_clear(&mail);
	for (i = 0; i < nr; i++)
		json_decref(rs[i]);
}

/* Send what is due: the next single mail, or the digest. */
static void
notifier_run_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notifier	*n = arg;
	struct spool_pos pos;
	struct buf	 rec;
	json_t		*r = NULL;
	int64_t		 mono = mono_ms(), now = ts_now() / TICKS_PER_SEC;

	if (n->req != NULL || n->budget_loading != NULL)
		return;			/* the completion runs us again */
	if (n->retry_at > mono) {
		notifier_schedule(n, n->retry_at - mono);
		return;
	}
	buf_init(&rec);
	spool_head(n->spool, &pos);
	while (r == NULL && spool_read(n->spool, &pos, &rec) == 1)
		if ((r = record_parse(n, &rec)) == NULL)
			spool_ack(n->spool, &pos);
	buf_clear(&rec);
	if (r == NULL) {
		n->digest_due = 0;
		return;
	}
	budget_prune(n, now);
	if (n->nsent < n->conf->max_per_hour) {
		notifier_send_single(n, &pos, r);
		json_decref(r);
		return;
	}
	if (n->digest_due == 0)
		n->digest_due = mono + n->conf->digest_interval_ms;
	if (mono < n->digest_due) {
		notifier_schedule(n, n->digest_due - mono);
		json_decref(r);
		return;
	}
	notifier_send_digest(n, &pos, r);
}

static void
notifier_sent_cb(const struct smtp_result *res, void *arg)
{
	struct notifier	*n = arg;
	int64_t		 delay;
	bool		 ok = !res->failed && res->status / 100 == 2;
	char		 reply[300];

	n->req = NULL;
	if (!ok) {
		n->failures++;
		delay = backoff_delay(n->failures, -1, arc4random());
		n->retry_at = mono_ms() + delay;
		if (res->status > 0)
			snprintf(reply, sizeof(reply), "SMTP reply %d%s%s",
			    res->status, res->error != NULL ? ", " : "",
			    res->error != NULL ? res->error : "");
		else
			snprintf(reply, sizeof(reply), "%s",
			    res->error != NULL ? res->error : "no reply");
		log_warnx("notify %s: %s to %s failed: %s; %llu alert%s "
		    "waiting, retrying in %llds", n->name,
		    n->inflight_digest ? "digest mail" : "mail",
		    n->conf->smtp_url, reply,
		    (unsigned long long)spool_records(n->spool),
		    spool_records(n->spool) == 1 ? "" : "s",
		    (long long)(delay + 999) / 1000);
		notifier_schedule(n, delay);
		return;
	}
	if (spool_ack(n->spool, &n->inflight_end) == -1)
		log_warn("notify %s: cannot record the sent mail in the "
		    "spool", n->name);
	if (n->failures > 0)
		log_info("notify %s: mail to %s works again", n->name,
		    n->conf->smtp_url);
	n->failures = 0;
	n->retry_at = 0;
	n->mails++;
	if (n->inflight_digest) {
		n->digest_due = 0;
		log_info("notify %s: digest of %u alert%s sent", n->name,
		    n->inflight_n, n->inflight_n == 1 ? "" : "s");
	} else
		budget_note(n, ts_now() / TICKS_PER_SEC);
	notifier_schedule(n, 0);
}

struct notifier *
notifier_new(struct relay *r, const struct conf_notify *c, char *err,
    size_t errlen)
{
	struct notifier	*n;
	char		*dir, *sdir;
	char		 serr[512];

	xasprintf(&dir, "%s/notify", r->conf->daemon.state_dir);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "notify %s: cannot create %s: %s",
		    c->name, dir, strerror(errno));
		free(dir);
		return NULL;
	}
	chmod(dir, 0700);
	xasprintf(&sdir, "%s/%s", dir, c->name);
	n = xcalloc(1, sizeof(*n));
	n->relay = r;
	n->conf = c;
	n->name = xstrdup(c->name);
	xasprintf(&n->budget_path, "%s/%s.sent", dir, c->name);
	free(dir);
	n->spool = spool_open(sdir, NOTIFY_SPOOL_MAX, serr, sizeof(serr));
	free(sdir);
	if (n->spool == NULL) {
		snprintf(err, errlen, "notify %s: cannot open its %s", c->name,
		    serr);
		notifier_free(n);
		return NULL;
	}
	budget_load(n);
	n->timer = evtimer_new(r->base, notifier_run_cb, n);
	spool_set_ready_cb(n->spool, notifier_ready_cb, n);
	disk_attach_spool(r->disk, n->spool);
	if (spool_records(n->spool) > 0)
		notifier_schedule(n, 0);	/* mails left from last run */
	return n;
}

void
notifier_free(struct notifier *n)
{
	if (n == NULL)
		return;
	if (n->req != NULL && n->relay->stopping)
		notifier_give_up(n, "alertrelayd is stopping", "stay queued "
		    "for the next start");
	else if (n->req != NULL)
		notifier_give_up(n, "the reload removed its [notify] section",
		    "stay in its spool");
	if (n->timer != NULL)
		event_free(n->timer);
	disk_cancel(n->budget_loading);
	if (n->budget_work != NULL) {
		/* It still happens; the latest times after it (disk_free). */
		disk_cancel(n->budget_work);
		if (n->budget_dirty)
			budget_save(n, NULL);
	}
	spool_close(n->spool);
	free(n->sent);
	free(n->budget_path);
	free(n->name);
	free(n);
}
