/* Configuration key handlers: one setter per kind of value. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "conf_int.h"
#include "graph.h"
#include "log.h"
#include "util.h"

static const struct nameval booleans[] = {
	{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 },
	{ "on", 1 }, { "off", 0 }, { "1", 1 }, { "0", 0 }, { NULL, 0 }
};

/* ---- key handlers ---- */

/* Report a value outside [min, max]; dur says how to print bounds. */
static void
range_error(struct parser *p, const struct keydef *kd, const char *val)
{
	if (kd->max == NO_MAX)
		perr(p, "%s: \"%s\" is out of range; accepted: at least %lld",
		    kd->key, val, (long long)kd->min);
	else
		perr(p, "%s: \"%s\" is out of range; accepted: %lld..%lld",
		    kd->key, val, (long long)kd->min, (long long)kd->max);
}

/* A string. */
void
key_str(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char	**sp = FIELD(obj, kd->off, char *);

	free(*sp);
	*sp = xstrdup(val);
}

/*
 * service_sources: a comma-separated list of Graph serviceSource values.
 * A value Graph does not document is a warning, not an error: Graph adds
 * products, and such a value is forwarded only if Graph sends it.
 */
void
key_service_sources(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char	**sp = FIELD(obj, kd->off, char *);
	char	*list, *item, *s;
	size_t	 n;

	list = xstrdup(val);
	for (s = list; (item = strsep(&s, ",")) != NULL;) {
		item += strspn(item, " \t");
		for (n = strlen(item); n > 0 && (item[n - 1] == ' ' ||
		    item[n - 1] == '\t'); n--)
			item[n - 1] = '\0';
		if (*item == '\0') {
			perr(p, "%s: an empty item in \"%s\"; accepted: "
			    "serviceSource values separated by commas, e.g. "
			    "microsoftDefenderForEndpoint", kd->key, val);
			break;
		} else if (!graph_source_known(item))
			log_warnx("%s:%d: %s: \"%s\" is not a serviceSource "
			    "value Graph documents; alerts are forwarded for "
			    "it only if Graph sends exactly this value",
			    p->file, p->line, kd->key, item);
	}
	free(list);
	free(*sp);
	*sp = xstrdup(val);
}

/* A GUID or domain name. */
void
key_id(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	const char	*why;

	if ((why = id_why(val)) != NULL) {
		perr(p, "%s: \"%s\" %s", kd->key, val, why);
		return;
	}
	key_str(p, kd, obj, val);
}

/* A name like a section's (member_name). */
void
key_name(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	const char	*why;

	if ((why = name_why(val)) != NULL) {
		perr(p, "%s: \"%s\" %s", kd->key, val, why);
		return;
	}
	key_str(p, kd, obj, val);
}

/*
 * A duration in milliseconds within [min, max], and never beyond 100
 * years (nothing downstream has to fear an overflow).
 */
void
key_dur(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	int64_t	 v = 0, max = kd->max < CENTURY_MS ? kd->max : CENTURY_MS;
	char	 lo[32], hi[32];
	int	 rc;

	if ((rc = parse_duration_ms(val, &v)) != 0 && errno != ERANGE) {
		perr(p, "%s: \"%s\" is not a duration; accepted: a number "
		    "with ms, s, m, h or d, e.g. 30s", kd->key, val);
		return;
	}
	if (rc != 0 || v < kd->min || v > max) {
		perr(p, "%s: \"%s\" is out of range; accepted: %s..%s%s",
		    kd->key, val, dur_fmt(kd->min, lo, sizeof(lo)),
		    dur_fmt(max, hi, sizeof(hi)),
		    max == CENTURY_MS ? " (100 years)" : "");
		return;
	}
	*FIELD(obj, kd->off, int64_t) = v;
}

/* A plain non-negative integer within [min, max]. */
static int
uint_parse(struct parser *p, const struct keydef *kd, const char *val,
    uint64_t *out)
{
	long	 v = number_parse(val, strlen(val));

	if (v < 0) {
		perr(p, "%s: \"%s\" is not a number; accepted: %lld..%lld",
		    kd->key, val, (long long)kd->min, (long long)kd->max);
		return -1;
	}
	if (v < kd->min || v > kd->max) {
		range_error(p, kd, val);
		return -1;
	}
	*out = (uint64_t)v;
	return 0;
}

/* An unsigned int. */
void
key_uint(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	uint64_t	 v;

	if (uint_parse(p, kd, val, &v) == 0)
		*FIELD(obj, kd->off, unsigned) = (unsigned)v;
}

/* A size in bytes with an optional K, M or G suffix. */
static int
size_parse(struct parser *p, const struct keydef *kd, const char *val,
    uint64_t *out)
{
	if (parse_size(val, out) != 0) {
		perr(p, "%s: \"%s\" is not a size; accepted: a number with "
		    "an optional K, M or G suffix", kd->key, val);
		return -1;
	}
	if (*out < (uint64_t)kd->min || *out > (uint64_t)kd->max) {
		range_error(p, kd, val);
		return -1;
	}
	return 0;
}

/* A size into a uint64_t. */
void
key_size64(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	uint64_t	 v;

	if (size_parse(p, kd, val, &v) == 0)
		*FIELD(obj, kd->off, uint64_t) = v;
}

/* A size into a size_t. */
void
key_sizet(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	uint64_t	 v;

	if (size_parse(p, kd, val, &v) == 0)
		*FIELD(obj, kd->off, size_t) = (size_t)v;
}

/* yes/no, true/false, on/off, 1/0. */
void
key_bool(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	const struct nameval	*nv;

	if ((nv = nv_find(booleans, val, strlen(val))) == NULL) {
		perr(p, "%s: \"%s\" is not a boolean; accepted: yes, no, "
		    "true, false, on, off, 1, 0", kd->key, val);
		return;
	}
	*FIELD(obj, kd->off, bool) = nv->value;
}

/* One of the names in kd->names, stored as an int (enum). */
void
key_enum(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	const struct nameval	*nv;
	struct buf		 b;

	if ((nv = nv_find(kd->names, val, strlen(val))) != NULL) {
		*FIELD(obj, kd->off, int) = nv->value;
		return;
	}
	buf_init(&b);
	nv_join(&b, kd->names);
	perr(p, "%s: \"%s\" is not valid; accepted: %s", kd->key, val,
	    b.data);
	buf_clear(&b);
}

/* Split a comma-separated list into *out; 0, or -1 after reporting. */
static int
list_split(struct parser *p, const char *key, const char *val,
    char ***out, size_t *n)
{
	const char	*s = val, *e;
	size_t		 len;

	for (;;) {
		s += strspn(s, " \t");
		e = s + strcspn(s, ",");
		for (len = (size_t)(e - s); len > 0 &&
		    (s[len - 1] == ' ' || s[len - 1] == '\t'); len--)
			;
		if (len == 0) {
			perr(p, "%s: empty item in list \"%s\"", key, val);
			strv_free(*out, *n);
			*out = NULL;
			*n = 0;
			return -1;
		}
		*out = xreallocarray(*out, *n + 1, sizeof(char *));
		(*out)[(*n)++] = xstrndup(s, len);
		if (*e == '\0')
			return 0;
		s = e + 1;
	}
}

/* A comma-separated list, each item checked by kd->check. */
void
key_list(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char		***vp = FIELD(obj, kd->off, char **);
	size_t		  *np = FIELD(obj, kd->off2, size_t), i;
	const char	  *why;

	if (list_split(p, kd->key, val, vp, np) != 0)
		return;
	for (i = 0; i < *np; i++) {
		if ((why = kd->check((*vp)[i])) != NULL)
			perr(p, "%s: \"%s\" %s", kd->key, (*vp)[i], why);
	}
}

/* Remember a list of names to resolve after the whole file is read. */
static void
ref_add(struct parser *p, enum ref_kind kind, void *obj)
{
	p->refs = xreallocarray(p->refs, p->nrefs + 1, sizeof(*p->refs));
	p->refs[p->nrefs].kind = kind;
	p->refs[p->nrefs].obj = obj;
	p->refs[p->nrefs].file = p->file;
	p->refs[p->nrefs].line = p->line;
	p->nrefs++;
}

/* outputs = NAME, ...: checked against the [output] sections later. */
void
key_outputs(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	key_list(p, kd, obj, val);
	ref_add(p, REF_OUTPUT, obj);
}

/* tenants = NAME, ...: checked against the [tenant] sections later. */
void
key_tenants(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	key_list(p, kd, obj, val);
	ref_add(p, REF_TENANT, obj);
}

/* A file that must exist and be readable (certificates, CA bundles). */
void
key_file(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char	*path = path_resolve(p, val);
	int	 fd;

	if ((fd = file_open_checked(p, kd->key, path, false)) == -1) {
		free(path);
		return;
	}
	close(fd);
	free(*FIELD(obj, kd->off, char *));
	*FIELD(obj, kd->off, char *) = path;
}

/* A private key file: readable, and by nobody but its owner. */
void
key_keyfile(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char	*path = path_resolve(p, val);
	int	 fd;

	if ((fd = file_open_checked(p, kd->key, path, true)) == -1) {
		free(path);
		return;
	}
	close(fd);
	free(*FIELD(obj, kd->off, char *));
	*FIELD(obj, kd->off, char *) = path;
}

/* A secret file: the path goes to off, its content to off2. */
void
key_secretfile(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char	*path = path_resolve(p, val);
	char	**sp = FIELD(obj, kd->off2, char *);

	free(*FIELD(obj, kd->off, char *));
	*FIELD(obj, kd->off, char *) = path;
	secret_free(*sp);
	*sp = secret_load(p, kd->key, path);
}

/* An inline secret: accepted, but the operator is told to move it. */
void
key_inline_secret(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char	**sp = FIELD(obj, kd->off, char *);

	log_warnx("%s:%d: %s is written inline in the configuration; "
	    "prefer client_secret_file (mode 0600)", p->file, p->line,
	    kd->key);
	secret_free(*sp);
	*sp = xstrdup(val);
}

/* A date YYYY-MM-DD, stored as epoch seconds (UTC midnight). */
void
key_date(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	struct tm	 tm;
	time_t		 t = -1;

	memset(&tm, 0, sizeof(tm));
	if (strlen(val) == 10 && val[4] == '-' && val[7] == '-') {
		tm.tm_year = (int)number_parse(val, 4) - 1900;
		tm.tm_mon = (int)number_parse(val + 5, 2) - 1;
		tm.tm_mday = (int)number_parse(val + 8, 2);
		if (tm.tm_year >= 70 && tm.tm_mon >= 0 && tm.tm_mon < 12 &&
		    tm.tm_mday >= 1)
			t = timegm(&tm);
	}
	/* timegm() normalises Feb 30 to Mar 2: that is not a date. */
	if (t == -1 || tm.tm_mday != (int)number_parse(val + 8, 2)) {
		perr(p, "%s: \"%s\" is not a date; accepted: YYYY-MM-DD",
		    kd->key, val);
		return;
	}
	if ((int64_t)t > (int64_t)time(NULL) + CENTURY_DAYS * 86400) {
		perr(p, "%s: \"%s\" is more than 100 years ahead; accepted: "
		    "a date YYYY-MM-DD within 100 years", kd->key, val);
		return;
	}
	*FIELD(obj, kd->off, int64_t) = (int64_t)t;
}

/* Store a URL without its trailing slashes. */
static void
url_store(void *obj, const struct keydef *kd, const char *val)
{
	size_t	 len = strlen(val);

	while (len > 0 && val[len - 1] == '/')
		len--;
	free(*FIELD(obj, kd->off, char *));
	*FIELD(obj, kd->off, char *) = xstrndup(val, len);
}

/* An https:// URL (http:// only towards loopback hosts). */
void
key_url(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	struct url	 u;

	if (url_check(p, kd->key, val, &u) != 0)
		return;
	if (strcasecmp(u.scheme, "http") == 0 && !host_is_loopback(u.host)) {
		perr(p, "%s: \"%s\" must use https://; http:// is accepted "
		    "only for loopback hosts (127.0.0.0/8, [::1], localhost)",
		    kd->key, val);
		return;
	}
	if (strcasecmp(u.scheme, "https") != 0 &&
	    strcasecmp(u.scheme, "http") != 0) {
		perr(p, "%s: \"%s\" must start with https://", kd->key, val);
		return;
	}
	url_store(obj, kd, val);
}

/* smtp://host[:port] or smtps://host[:port]. */
void
key_smtp_url(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	struct url	 u;

	if (url_check(p, kd->key, val, &u) != 0)
		return;
	if (strcasecmp(u.scheme, "smtp") != 0 &&
	    strcasecmp(u.scheme, "smtps") != 0) {
		perr(p, "%s: \"%s\" is not valid; accepted: smtp://HOST:PORT "
		    "or smtps://HOST:PORT", kd->key, val);
		return;
	}
	url_store(obj, kd, val);
}

/* etcd_endpoints = http(s)://host:port, ... */
void
key_endpoints(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char		***vp = FIELD(obj, kd->off, char **);
	size_t		  *np = FIELD(obj, kd->off2, size_t), i;
	const char	  *s, *e;
	struct url	   u;

	if (list_split(p, kd->key, val, vp, np) != 0)
		return;
	for (i = 0; i < *np; i++) {
		s = (*vp)[i];
		if (url_check(p, kd->key, s, &u) != 0)
			continue;
		e = strstr(s, "://") + 3;
		if ((strcasecmp(u.scheme, "http") != 0 &&
		    strcasecmp(u.scheme, "https") != 0) ||
		    strchr(e, '/') != NULL ||
		    hostport_parse(e, NULL, NULL) != NULL)
			perr(p, "%s: \"%s\" is not valid; accepted: "
			    "http://HOST:PORT or https://HOST:PORT", kd->key,
			    s);
	}
}

/* HOST:PORT (metrics_listen). */
void
key_hostport(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	const char	*why;

	if ((why = hostport_parse(val, NULL, NULL)) != NULL) {
		perr(p, "%s: \"%s\" %s", kd->key, val, why);
		return;
	}
	key_str(p, kd, obj, val);
}

/* shard = K/N with 1 <= K <= N. */
void
key_shard(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	struct conf_daemon	*d = obj;
	const char		*slash = strchr(val, '/');
	long			 k = -1, n = -1;

	if (slash != NULL) {
		k = number_parse(val, (size_t)(slash - val));
		n = number_parse(slash + 1, strlen(slash + 1));
	}
	if (k < 1 || n < 1 || k > n || n > 65535) {
		perr(p, "%s: \"%s\" is not valid; accepted: K/N with "
		    "1 <= K <= N, e.g. 1/3", kd->key, val);
		return;
	}
	d->shard_k = (unsigned)k;
	d->shard_n = (unsigned)n;
}

/* An etcd key prefix: absolute. */
void
key_prefix(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	if (*val != '/') {
		perr(p, "%s: \"%s\" must start with /", kd->key, val);
		return;
	}
	key_str(p, kd, obj, val);
}

/* brokers = HOST:PORT, ... (Kafka bootstrap servers), kept as written. */
void
key_brokers(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	char		**v = NULL;
	const char	 *why;
	size_t		  i, n = 0;
	bool		  ok = true;

	if (list_split(p, kd->key, val, &v, &n) != 0)
		return;
	for (i = 0; i < n; i++) {
		if ((why = hostport_parse(v[i], NULL, NULL)) != NULL) {
			perr(p, "%s: \"%s\" %s", kd->key, v[i], why);
			ok = false;
		}
	}
	strv_free(v, n);
	if (ok)
		key_str(p, kd, obj, val);
}

/* topic = NAME: Kafka's legal topic names, 1..249 of [A-Za-z0-9._-]. */
void
key_topic(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	size_t	 len = strlen(val);

	if (len == 0 || len > 249 || strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789._-") != len ||
	    strcmp(val, ".") == 0 || strcmp(val, "..") == 0) {
		perr(p, "%s: \"%s\" is not a Kafka topic name; accepted: 1 "
		    "to 249 of A-Z a-z 0-9 . _ -", kd->key, val);
		return;
	}
	key_str(p, kd, obj, val);
}
