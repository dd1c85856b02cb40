/* Configuration: reading, checking and printing alertrelay.conf (SPEC §3). */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "graph.h"
#include "log.h"
#include "util.h"

#define CONF_MAX_DEPTH		8	/* include nesting below the main one */
#define CONF_MAX_ERRORS		100
#define CONF_MAX_FILE		(64 * 1024 * 1024)
#define CONF_MAX_SECRET		8192
#define CONF_MAX_KEYS		32	/* keys per section table */
#define CONF_MAX_NAME		64

#define SEC_MS			1000LL
#define NO_MAX			INT64_MAX
/* SPEC §5: no duration or date beyond 100 (Julian) years. */
#define CENTURY_DAYS		36525LL
#define CENTURY_MS		(CENTURY_DAYS * 86400 * SEC_MS)
#define NAME_CHARS		"ABCDEFGHIJKLMNOPQRSTUVWXYZ" \
				"abcdefghijklmnopqrstuvwxyz0123456789._-"
#define FIELD(obj, off, type)	((type *)(void *)((char *)(obj) + (off)))

_Static_assert(sizeof(enum out_transport) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_notify_events) == sizeof(int), "enum size");

struct parser;
struct keydef;

/* Set one key of the current section from its (unquoted) value. */
typedef void (*key_fn)(struct parser *, const struct keydef *, void *,
    const char *);
/* Check one list item; returns what is wrong with it, or NULL. */
typedef const char *(*item_fn)(const char *);

struct nameval {
	const char	*name;
	int		 value;
};

struct keydef {
	const char	*key;
	key_fn		 fn;
	size_t		 off;		/* field in the section's struct */
	size_t		 off2;		/* list count, or the loaded secret */
	int64_t		 min, max;
	const struct nameval *names;	/* enum values, NULL-terminated */
	item_fn		 check;		/* list items */
};

struct sectdef {
	const char	*kind;
	bool		 named;
	const struct keydef *keys;
	size_t		 nkeys;
	void		*(*open)(struct parser *, const char *);
	void		 (*close)(struct parser *, void *);
};

/* A list of names to check once every section has been read. */
enum ref_kind { REF_OUTPUT, REF_TENANT };

struct ref {
	enum ref_kind	 kind;
	void		*obj;		/* conf_tenant or conf_notify */
	const char	*file;
	int		 line;
};

struct parser {
	struct config	*conf;
	struct conf_errors *errs;
	size_t		 nerrs;
	char		**stack;	/* real paths of the files being read */
	size_t		 depth;
	const char	*file;		/* current file, interned in conf */
	int		 line;

	const struct sectdef *sect;	/* NULL outside any section */
	bool		 skip;		/* ignore keys: header was wrong */
	void		*obj;
	int		 sect_line;
	char		 desc[CONF_MAX_NAME + 32];	/* [tenant "x"] */
	int		 key_line[CONF_MAX_KEYS];	/* 0 = not set */

	const char	*daemon_file, *cluster_file;
	int		 daemon_line, cluster_line;
	bool		 saw_output;	/* an [output] header, even a bad one */
	struct ref	*refs;
	size_t		 nrefs;
};

static const struct nameval transports[] = {
	{ "udp", OUT_UDP }, { "tcp", OUT_TCP }, { "tls", OUT_TLS },
	{ "file", OUT_FILE }, { "stdout", OUT_STDOUT }, { "relp", OUT_RELP },
	{ "kafka", OUT_KAFKA }, { NULL, 0 }
};
static const struct nameval kafka_securities[] = {
	{ "plaintext", KAFKA_PLAINTEXT }, { "ssl", KAFKA_SSL },
	{ "sasl_ssl", KAFKA_SASL_SSL }, { NULL, 0 }
};
static const struct nameval sasl_mechanisms[] = {
	{ "plain", SASL_PLAIN }, { "scram-sha-256", SASL_SCRAM_SHA_256 },
	{ "scram-sha-512", SASL_SCRAM_SHA_512 }, { NULL, 0 }
};
static const struct nameval formats[] = {
	{ "cef", FMT_CEF }, { "leef", FMT_LEEF }, { "json", FMT_JSON },
	{ NULL, 0 }
};
static const struct nameval headers[] = {
	{ "rfc5424", HDR_RFC5424 }, { "rfc3164", HDR_RFC3164 },
	{ "none", HDR_NONE }, { NULL, 0 }
};
static const struct nameval framings[] = {
	{ "newline", FRAME_NEWLINE }, { "octet-counting", FRAME_OCTET },
	{ NULL, 0 }
};
static const struct nameval facilities[] = {
	{ "kern", 0 }, { "user", 1 }, { "mail", 2 }, { "daemon", 3 },
	{ "auth", 4 }, { "syslog", 5 }, { "lpr", 6 }, { "news", 7 },
	{ "uucp", 8 }, { "cron", 9 }, { "authpriv", 10 }, { "ftp", 11 },
	{ "ntp", 12 }, { "audit", 13 }, { "alert", 14 }, { "clock", 15 },
	{ "local0", 16 }, { "local1", 17 }, { "local2", 18 },
	{ "local3", 19 }, { "local4", 20 }, { "local5", 21 },
	{ "local6", 22 }, { "local7", 23 }, { NULL, 0 }
};
static const struct nameval sources[] = {
	{ "mde", SRC_MDE }, { "graph", SRC_GRAPH }, { NULL, 0 }
};
static const struct nameval thumbprints[] = {
	{ "sha1", THUMB_SHA1 }, { "sha256", THUMB_SHA256 }, { NULL, 0 }
};
static const struct nameval clouds[] = {
	{ "commercial", CLOUD_COMMERCIAL }, { "gcc", CLOUD_GCC },
	{ "gcc-high", CLOUD_GCC_HIGH }, { "dod", CLOUD_DOD }, { NULL, 0 }
};
static const struct nameval min_severities[] = {
	{ "informational", SEV_INFORMATIONAL }, { "low", SEV_LOW },
	{ "medium", SEV_MEDIUM }, { "high", SEV_HIGH }, { NULL, 0 }
};
static const struct nameval notify_events[] = {
	{ "alerts", NOTIFY_ALERTS }, { "incidents", NOTIFY_INCIDENTS },
	{ "both", NOTIFY_BOTH }, { NULL, 0 }
};
static const struct nameval severities[] = {
	{ "unspecified", SEV_UNSPECIFIED },
	{ "informational", SEV_INFORMATIONAL }, { "low", SEV_LOW },
	{ "medium", SEV_MEDIUM }, { "high", SEV_HIGH }, { NULL, 0 }
};
static const struct nameval booleans[] = {
	{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 },
	{ "on", 1 }, { "off", 0 }, { "1", 1 }, { "0", 0 }, { NULL, 0 }
};

/*
 * Login host, Defender API host and scope, and Graph host per cloud.  The
 * GCC Defender host is taken from Microsoft's documentation but has not
 * been verified against a live GCC tenant.
 */
static const struct cloud_def {
	const char	*login;
	const char	*api;
	const char	*scope;
	const char	*graph;
} cloud_defs[] = {
	[CLOUD_COMMERCIAL] = { "https://login.microsoftonline.com",
	    "https://api.security.microsoft.com",
	    "https://api.securitycenter.microsoft.com/.default",
	    "https://graph.microsoft.com" },
	[CLOUD_GCC] = { "https://login.microsoftonline.com",
	    "https://api-gcc.securitycenter.microsoft.us",
	    "https://api-gcc.securitycenter.microsoft.us/.default",
	    "https://graph.microsoft.com" },
	[CLOUD_GCC_HIGH] = { "https://login.microsoftonline.us",
	    "https://api-gov.securitycenter.microsoft.us",
	    "https://api-gov.securitycenter.microsoft.us/.default",
	    "https://graph.microsoft.us" },
	[CLOUD_DOD] = { "https://login.microsoftonline.us",
	    "https://api-gov.securitycenter.microsoft.us",
	    "https://api-gov.securitycenter.microsoft.us/.default",
	    "https://dod-graph.microsoft.us" },
};

/* ---- errors ---- */

/* Append one message to the caller's error list; takes ownership. */
static void
errors_add(struct conf_errors *errs, char *msg)
{
	errs->msg = xreallocarray(errs->msg, errs->n + 1, sizeof(char *));
	errs->msg[errs->n++] = msg;
}

/* Record "FILE:LINE: message" (or "FILE: message" for line 0). */
static void __attribute__((format(printf, 4, 0)))
perr_v(struct parser *p, const char *file, int line, const char *fmt,
    va_list ap)
{
	struct buf	 b;

	if (p->nerrs++ > CONF_MAX_ERRORS)
		return;
	buf_init(&b);
	if (line > 0)
		buf_addf(&b, "%s:%d: ", file, line);
	else
		buf_addf(&b, "%s: ", file);
	if (p->nerrs > CONF_MAX_ERRORS)
		buf_addf(&b, "too many errors, giving up");
	else
		buf_vaddf(&b, fmt, ap);
	errors_add(p->errs, b.data);
}

/* Report an error at a given place. */
static void __attribute__((format(printf, 4, 5)))
perr_loc(struct parser *p, const char *file, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	perr_v(p, file, line, fmt, ap);
	va_end(ap);
}

/* Report an error on a given line of the current file. */
static void __attribute__((format(printf, 3, 4)))
perr_at(struct parser *p, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	perr_v(p, p->file, line, fmt, ap);
	va_end(ap);
}

/* Report an error on the current line. */
static void __attribute__((format(printf, 2, 3)))
perr(struct parser *p, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	perr_v(p, p->file, p->line, fmt, ap);
	va_end(ap);
}

void
conf_errors_clear(struct conf_errors *errs)
{
	size_t	 i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->msg[i]);
	free(errs->msg);
	errs->msg = NULL;
	errs->n = 0;
}

/* ---- small helpers ---- */

/* Look a name up in a value table, ignoring case. */
static const struct nameval *
nv_find(const struct nameval *nv, const char *s, size_t len)
{
	for (; nv->name != NULL; nv++) {
		if (strlen(nv->name) == len &&
		    strncasecmp(nv->name, s, len) == 0)
			return nv;
	}
	return NULL;
}

/* The name of a value in a table ("?" if absent). */
static const char *
nv_name(const struct nameval *nv, int value)
{
	for (; nv->name != NULL; nv++) {
		if (nv->value == value)
			return nv->name;
	}
	return "?";
}

/* "a, b, c" from a value table, into b. */
static void
nv_join(struct buf *b, const struct nameval *nv)
{
	const struct nameval	*first = nv;

	for (; nv->name != NULL; nv++)
		buf_addf(b, "%s%s", nv == first ? "" : ", ", nv->name);
}

/* Free a vector of n strings. */
static void
strv_free(char **v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* What is wrong with a section or item name, or NULL. */
static const char *
name_why(const char *s)
{
	if (*s == '\0')
		return "is empty";
	if (strlen(s) > CONF_MAX_NAME)
		return "is too long (at most 64 characters)";
	if (s[strspn(s, NAME_CHARS)] != '\0')
		return "is not a valid name (only A-Z a-z 0-9 . _ -)";
	return NULL;
}

/* Tenant and client IDs are GUIDs or domain names. */
static const char *
id_why(const char *s)
{
	if (s[strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789.-")] != '\0')
		return "is not a GUID or domain name";
	return NULL;
}

/* A mail address: something@something, no spaces or brackets. */
static const char *
email_why(const char *s)
{
	const char	*at = strchr(s, '@');

	if (at == NULL || at == s || at[1] == '\0' ||
	    strpbrk(s, " \t<>,;\"") != NULL)
		return "is not a mail address (user@example.com)";
	return NULL;
}

/* A decimal number of 1 to 9 digits in s[0..n), or -1. */
static long
number_parse(const char *s, size_t n)
{
	long	 v = 0;
	size_t	 i;

	if (n == 0 || n > 9)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Parse a port number 1..65535. */
static int
port_ok(const char *s)
{
	long	 v = number_parse(s, strlen(s));

	return v >= 1 && v <= 65535;
}

/* Split HOST:PORT or [V6]:PORT; host and port may be NULL. */
static const char *
hostport_parse(const char *s, char **host, char **port)
{
	const char	*colon, *h = s, *he;

	if (*s == '[') {
		h = s + 1;
		if ((he = strchr(h, ']')) == NULL || he[1] != ':')
			return "is not [ADDRESS]:PORT";
		colon = he + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return "is not HOST:PORT";
		he = colon;
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return "has an IPv6 address without brackets; "
			    "write [ADDRESS]:PORT";
	}
	if (he == h || strcspn(h, " \t/[]") < (size_t)(he - h))
		return "has no valid host before the port";
	if (!port_ok(colon + 1))
		return "has no port number 1..65535 after the host";
	if (host != NULL)
		*host = xstrndup(h, (size_t)(he - h));
	if (port != NULL)
		*port = xstrdup(colon + 1);
	return NULL;
}

/* Scheme and host of an absolute URL. */
struct url {
	char		 scheme[16];
	char		 host[256];
};

/* Take a URL apart far enough to check it; returns why it is wrong. */
static const char *
url_parse(const char *s, struct url *u)
{
	const char	*p, *auth, *end, *he;
	size_t		 n;

	if ((p = strstr(s, "://")) == NULL || p == s ||
	    (size_t)(p - s) >= sizeof(u->scheme))
		return "is not an absolute URL (scheme://host...)";
	memcpy(u->scheme, s, (size_t)(p - s));
	u->scheme[p - s] = '\0';
	auth = p + 3;
	end = auth + strcspn(auth, "/?#");
	if (*auth == '[') {
		if ((he = memchr(auth, ']', (size_t)(end - auth))) == NULL)
			return "has an unterminated [IPv6] host";
		auth++;
	} else if ((he = memchr(auth, ':', (size_t)(end - auth))) == NULL)
		he = end;
	n = (size_t)(he - auth);
	if (n == 0 || n >= sizeof(u->host) || strcspn(auth, " \t") < n)
		return "has no valid host";
	memcpy(u->host, auth, n);
	u->host[n] = '\0';
	return NULL;
}

/* Parse a URL for key, reporting errors; never prints credentials. */
static int
url_check(struct parser *p, const char *key, const char *val,
    struct url *u)
{
	const char	*why, *auth = strstr(val, "://");

	if (auth != NULL && memchr(auth, '@', strcspn(auth + 3, "/?#") + 3)) {
		perr(p, "%s: credentials in the URL are not accepted%s", key,
		    strcmp(key, "smtp_url") == 0 ?
		    "; use username and password_file" : "");
		return -1;
	}
	if ((why = url_parse(val, u)) != NULL) {
		perr(p, "%s: \"%s\" %s", key, val, why);
		return -1;
	}
	return 0;
}

/* The directory part of path ("" for none), with glob characters escaped. */
static void
dir_escaped(struct buf *b, const char *path)
{
	const char	*slash = strrchr(path, '/'), *s;

	if (slash == NULL)
		return;
	for (s = path; s <= slash; s++) {
		if (strchr("*?[\\", *s) != NULL)
			buf_addc(b, '\\');
		buf_addc(b, *s);
	}
}

/* A path relative to the directory of the current file (or absolute). */
static char *
path_resolve(struct parser *p, const char *path)
{
	const char	*slash;
	char		*out;

	if (*path == '/' || (slash = strrchr(p->file, '/')) == NULL)
		return xstrdup(path);
	xasprintf(&out, "%.*s/%s", (int)(slash - p->file), p->file, path);
	return out;
}

/*
 * Format milliseconds in the largest exact unit, stepping down one unit
 * from a count of 1 so defaults read as in SPEC: 60s, 15m, 24h, 500ms.
 */
static const char *
dur_fmt(int64_t ms, char *out, size_t len)
{
	static const struct { const char *u; int64_t ms; } units[] = {
		{ "d", 86400000 }, { "h", 3600000 }, { "m", 60000 },
		{ "s", 1000 }, { "ms", 1 }
	};
	size_t	 i;

	for (i = 0; i < nitems(units) - 1; i++) {
		if (ms % units[i].ms == 0 &&
		    (ms / units[i].ms > 1 || units[i].ms == 1000))
			break;
	}
	snprintf(out, len, "%lld%s", (long long)(ms / units[i].ms),
	    units[i].u);
	return out;
}

/* Format a byte count with the largest exact suffix: 1073741824 -> "1G". */
static const char *
size_fmt(uint64_t n, char *out, size_t len)
{
	if (n != 0 && n % (1ULL << 30) == 0)
		snprintf(out, len, "%lluG", (unsigned long long)(n >> 30));
	else if (n != 0 && n % (1ULL << 20) == 0)
		snprintf(out, len, "%lluM", (unsigned long long)(n >> 20));
	else if (n != 0 && n % (1ULL << 10) == 0)
		snprintf(out, len, "%lluK", (unsigned long long)(n >> 10));
	else
		snprintf(out, len, "%llu", (unsigned long long)n);
	return out;
}

/* ---- files the configuration refers to ---- */

/*
 * Open a file named by key.  A private file (secret or key) must not be
 * accessible by group or others.  Returns the descriptor or -1 (reported).
 */
static int
file_open_checked(struct parser *p, const char *key, const char *path,
    bool private)
{
	struct stat	 st;
	int		 fd, mode;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		perr(p, "%s: cannot open %s: %s", key, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		perr(p, "%s: %s is not a regular file", key, path);
		close(fd);
		return -1;
	}
	mode = (int)(st.st_mode & 07777);
	if (private && (mode & 077) != 0) {
		perr(p, "%s %s is %s by group or others (mode %04o); "
		    "run chmod 600 %s", key, path, (mode & 044) ?
		    "readable" : "accessible", mode, path);
		close(fd);
		return -1;
	}
	return fd;
}

/* Read a whole small file into out (at most CONF_MAX_SECRET bytes). */
static ssize_t
secret_read_fd(int fd, char *out, size_t max)
{
	size_t	 len = 0;
	ssize_t	 n;

	while (len <= max) {
		n = read(fd, out + len, max + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	return (ssize_t)len;
}

/* Load a secret file: one line, one trailing newline ignored. */
static char *
secret_load(struct parser *p, const char *key, const char *path)
{
	char	 tmp[CONF_MAX_SECRET + 1];
	char	*s = NULL;
	ssize_t	 n;
	int	 fd;

	if ((fd = file_open_checked(p, key, path, true)) == -1)
		return NULL;
	n = secret_read_fd(fd, tmp, CONF_MAX_SECRET);
	close(fd);
	if (n > 0 && tmp[n - 1] == '\n')
		n -= n > 1 && tmp[n - 2] == '\r' ? 2 : 1;
	if (n >= 0 && n <= CONF_MAX_SECRET)
		tmp[n] = '\0';
	if (n == -1)
		perr(p, "%s: cannot read %s: %s", key, path, strerror(errno));
	else if (n > CONF_MAX_SECRET)
		perr(p, "%s %s is too large (more than %d bytes)", key, path,
		    CONF_MAX_SECRET);
	else if (n == 0)
		perr(p, "%s %s is empty", key, path);
	else if (memchr(tmp, '\0', (size_t)n) != NULL ||
	    strcspn(tmp, "\r\n") < (size_t)n)
		perr(p, "%s %s must hold the secret on one line", key, path);
	else
		s = xstrndup(tmp, (size_t)n);
	explicit_bzero(tmp, sizeof(tmp));
	return s;
}

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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
key_size64(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	uint64_t	 v;

	if (size_parse(p, kd, val, &v) == 0)
		*FIELD(obj, kd->off, uint64_t) = v;
}

/* A size into a size_t. */
static void
key_sizet(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	uint64_t	 v;

	if (size_parse(p, kd, val, &v) == 0)
		*FIELD(obj, kd->off, size_t) = (size_t)v;
}

/* yes/no, true/false, on/off, 1/0. */
static void
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
static void
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
static void
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
static void
key_outputs(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	key_list(p, kd, obj, val);
	ref_add(p, REF_OUTPUT, obj);
}

/* tenants = NAME, ...: checked against the [tenant] sections later. */
static void
key_tenants(struct parser *p, const struct keydef *kd, void *obj,
    const char *val)
{
	key_list(p, kd, obj, val);
	ref_add(p, REF_TENANT, obj);
}

/* A file that must exist and be readable (certificates, CA bundles). */
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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
static void
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

/* ---- key tables ---- */

#define KEY(k, f, o)		{ k, f, o, 0, 0, 0, NULL, NULL }
#define KEY2(k, f, o, o2)	{ k, f, o, o2, 0, 0, NULL, NULL }
#define KRANGE(k, f, o, lo, hi)	{ k, f, o, 0, lo, hi, NULL, NULL }
#define KENUM(k, o, nv)		{ k, key_enum, o, 0, 0, 0, nv, NULL }
#define KLIST(k, f, o, o2, c)	{ k, f, o, o2, 0, 0, NULL, c }

#define D(f)	offsetof(struct conf_daemon, f)
static const struct keydef daemon_keys[] = {
	KEY("state_dir", key_str, D(state_dir)),
	KRANGE("poll_interval", key_dur, D(poll_interval_ms), SEC_MS, NO_MAX),
	KRANGE("overlap", key_dur, D(overlap_ms), 0, NO_MAX),
	KRANGE("first_fetch", key_dur, D(first_fetch_ms), 0, NO_MAX),
	KRANGE("page_size", key_uint, D(page_size), 1, 10000),
	KRANGE("max_concurrent_requests", key_uint,
	    D(max_concurrent_requests), 1, 10000),
	KRANGE("request_timeout", key_dur, D(request_timeout_ms), SEC_MS,
	    NO_MAX),
	KEY("user_agent", key_str, D(user_agent)),
	KEY("control_socket", key_str, D(control_socket)),
	KEY("metrics_listen", key_hostport, D(metrics_listen)),
	KEY("shard", key_shard, 0),
	KRANGE("lag_warning", key_dur, D(lag_warning_ms), SEC_MS, NO_MAX),
};
#undef D

#define O(f)	offsetof(struct conf_output, f)
static const struct keydef output_keys[] = {
	KENUM("transport", O(transport), transports),
	KEY("address", key_str, O(address)),
	KENUM("format", O(format), formats),
	KENUM("syslog_header", O(header), headers),
	KENUM("framing", O(framing), framings),
	KENUM("facility", O(facility), facilities),
	KEY("ca_file", key_file, O(ca_file)),
	KEY("cert_file", key_file, O(cert_file)),
	KEY("key_file", key_keyfile, O(key_file)),
	KEY("tls_server_name", key_str, O(tls_server_name)),
	KRANGE("max_message_bytes", key_sizet, O(max_message_bytes), 480,
	    16 * 1024 * 1024),
	KRANGE("spool_max_bytes", key_size64, O(spool_max_bytes), 1024 * 1024,
	    NO_MAX),
	KEY("tls", key_bool, O(tls)),
	KEY("brokers", key_brokers, O(brokers)),
	KEY("topic", key_topic, O(topic)),
	KENUM("kafka_security", O(kafka_security), kafka_securities),
	KENUM("sasl_mechanism", O(sasl_mechanism), sasl_mechanisms),
	KEY("sasl_username", key_str, O(sasl_username)),
	KEY2("sasl_password_file", key_secretfile, O(sasl_password_file),
	    O(sasl_password)),
};
#undef O

#define T(f)	offsetof(struct conf_tenant, f)
static const struct keydef tenant_keys[] = {
	KEY("tenant_id", key_id, T(tenant_id)),
	KEY("client_id", key_id, T(client_id)),
	KEY2("client_secret_file", key_secretfile, T(client_secret_file),
	    T(client_secret)),
	KEY("client_secret", key_inline_secret, T(client_secret)),
	KEY("certificate_file", key_file, T(certificate_file)),
	KEY("private_key_file", key_keyfile, T(private_key_file)),
	KEY("secret_expires", key_date, T(secret_expires)),
	KENUM("source", T(source), sources),
	KENUM("cloud", T(cloud), clouds),
	KEY("api_url", key_url, T(api_url)),
	KEY("login_url", key_url, T(login_url)),
	KEY("scope", key_str, T(scope)),
	KEY("ca_file", key_file, T(ca_file)),
	KEY("label", key_str, T(label)),
	KLIST("outputs", key_outputs, T(outputs), T(noutputs), name_why),
	KENUM("min_severity", T(min_severity), min_severities),
	KEY("forward_updates", key_bool, T(forward_updates)),
	KRANGE("poll_interval", key_dur, T(poll_interval_ms), SEC_MS, NO_MAX),
	KEY("enabled", key_bool, T(enabled)),
	KEY("service_sources", key_service_sources, T(service_sources)),
	KEY("client_assertion_file", key_keyfile, T(client_assertion_file)),
	KENUM("certificate_thumbprint", T(certificate_thumbprint),
	    thumbprints),
	KEY("incidents", key_bool, T(incidents)),
};
#undef T

#define N(f)	offsetof(struct conf_notify, f)
static const struct keydef notify_keys[] = {
	KEY("smtp_url", key_smtp_url, N(smtp_url)),
	KEY("from", key_str, N(from)),
	KLIST("to", key_list, N(to), N(nto), email_why),
	KEY("username", key_str, N(username)),
	KEY2("password_file", key_secretfile, N(password_file), N(password)),
	KENUM("min_severity", N(min_severity), min_severities),
	KLIST("tenants", key_tenants, N(tenants), N(ntenants), name_why),
	KRANGE("max_per_hour", key_uint, N(max_per_hour), 0, 100000),
	KRANGE("digest_interval", key_dur, N(digest_interval_ms), SEC_MS,
	    NO_MAX),
	KENUM("events", N(events), notify_events),
};
#undef N

#define C(f)	offsetof(struct conf_cluster, f)
static const struct keydef cluster_keys[] = {
	KEY2("etcd_endpoints", key_endpoints, C(etcd_endpoints),
	    C(netcd_endpoints)),
	KEY("member_name", key_name, C(member_name)),
	KRANGE("lease_ttl", key_dur, C(lease_ttl_ms), SEC_MS, NO_MAX),
	KEY("prefix", key_prefix, C(prefix)),
	KEY("ca_file", key_file, C(ca_file)),
	KEY("cert_file", key_file, C(cert_file)),
	KEY("key_file", key_keyfile, C(key_file)),
};
#undef C

/* ---- sections ---- */

/* Line where key was set in the current section, 0 if not. */
static int
key_line(struct parser *p, const char *key)
{
	size_t	 i;

	for (i = 0; i < p->sect->nkeys; i++) {
		if (strcmp(p->sect->keys[i].key, key) == 0)
			return p->key_line[i];
	}
	return 0;
}

/* Report that a required key is missing from the current section. */
static bool
require(struct parser *p, const void *v, const char *key)
{
	if (v == NULL && key_line(p, key) == 0)
		perr_at(p, p->sect_line, "%s: %s is required", p->desc, key);
	return v != NULL;
}

/* A second section of the same name: name both places. */
static void
dup_error(struct parser *p, const char *file, int line)
{
	perr(p, "duplicate section %s; first defined at %s:%d", p->desc, file,
	    line);
}

/* [daemon]: the defaults live in the config already. */
static void *
daemon_open(struct parser *p, const char *name)
{
	if (p->daemon_file != NULL) {
		dup_error(p, p->daemon_file, p->daemon_line);
		return NULL;
	}
	p->daemon_file = p->file;
	p->daemon_line = p->line;
	return &p->conf->daemon;
}

/* [output "NAME"]. */
static void *
output_open(struct parser *p, const char *name)
{
	struct config		*c = p->conf;
	struct conf_output	*o;

	if ((o = conf_output_find(c, name)) != NULL) {
		dup_error(p, o->file, o->line);
		return NULL;
	}
	o = xcalloc(1, sizeof(*o));
	o->name = xstrdup(name);
	o->transport = OUT_TCP;
	o->format = FMT_CEF;
	o->header = HDR_RFC5424;
	o->facility = 20;	/* local4 */
	o->spool_max_bytes = 1024ULL * 1024 * 1024;
	o->file = p->file;
	o->line = p->line;
	c->outputs = xreallocarray(c->outputs, c->noutputs + 1, sizeof(o));
	c->outputs[c->noutputs++] = o;
	return o;
}

/* Address of a network or file output, per transport. */
static void
output_address(struct parser *p, struct conf_output *o)
{
	const char	*tname = nv_name(transports, (int)o->transport);
	const char	*why;
	int		 line = key_line(p, "address");

	if (o->transport == OUT_STDOUT || o->transport == OUT_KAFKA) {
		if (line != 0)
			perr_at(p, line, "address: not used with transport "
			    "%s%s", tname, o->transport == OUT_KAFKA ?
			    " (brokers = HOST:PORT, ...)" : "");
		return;
	}
	if (line == 0) {
		perr_at(p, p->sect_line, "%s: address is required for "
		    "transport %s (%s)", p->desc, tname,
		    o->transport == OUT_FILE ? "a path" : "HOST:PORT");
		return;
	}
	if (o->transport == OUT_FILE || o->address == NULL)
		return;
	why = hostport_parse(o->address, &o->host, &o->port);
	if (why != NULL)
		perr_at(p, line, "address: \"%s\" %s", o->address, why);
}

/* Does this output speak TLS (tls, relp with tls, kafka over SSL)? */
static bool
output_uses_tls(const struct conf_output *o)
{
	return o->transport == OUT_TLS || (o->transport == OUT_RELP &&
	    o->tls) || (o->transport == OUT_KAFKA &&
	    o->kafka_security != KAFKA_PLAINTEXT);
}

/* TLS-only keys on other transports are mistakes worth reporting. */
static void
output_tls(struct parser *p, struct conf_output *o)
{
	static const char *tls_keys[] = {
		"ca_file", "cert_file", "key_file", "tls_server_name"
	};
	size_t	 i;
	int	 line;

	if ((line = key_line(p, "tls")) != 0 && o->transport != OUT_RELP)
		perr_at(p, line, "tls: only used with transport relp (use "
		    "transport tls for syslog over TLS)");
	if (!output_uses_tls(o)) {
		for (i = 0; i < nitems(tls_keys); i++) {
			if ((line = key_line(p, tls_keys[i])) != 0)
				perr_at(p, line, "%s: only used with TLS "
				    "(transport tls, relp with tls = yes, "
				    "kafka_security = ssl or sasl_ssl)",
				    tls_keys[i]);
		}
		return;
	}
	if (o->transport == OUT_KAFKA &&
	    (line = key_line(p, "tls_server_name")) != 0)
		perr_at(p, line, "tls_server_name: not used with transport "
		    "kafka (brokers are verified against their own names)");
	if ((key_line(p, "cert_file") == 0) != (key_line(p, "key_file") == 0))
		perr_at(p, p->sect_line, "%s: cert_file and key_file go "
		    "together (client certificate)", p->desc);
	if (o->tls_server_name == NULL && o->host != NULL)
		o->tls_server_name = xstrdup(o->host);
}

/*
 * Kafka keys: brokers and topic required, SASL with sasl_ssl only; the
 * value is the event without syslog header unless syslog_header is set.
 * Neither kafka nor relp takes framing.
 */
static void
output_kafka(struct parser *p, struct conf_output *o)
{
	static const char *kafka_keys[] = {
		"brokers", "topic", "kafka_security", "sasl_mechanism",
		"sasl_username", "sasl_password_file"
	};
	size_t	 i;
	int	 line;
	bool	 sasl = o->kafka_security == KAFKA_SASL_SSL;

	for (i = 0; i < nitems(kafka_keys); i++) {
		if ((line = key_line(p, kafka_keys[i])) == 0)
			continue;
		if (o->transport != OUT_KAFKA)
			perr_at(p, line, "%s: only used with transport kafka",
			    kafka_keys[i]);
		else if (i >= 3 && !sasl)
			perr_at(p, line, "%s: only used with kafka_security "
			    "= sasl_ssl", kafka_keys[i]);
	}
	if (o->transport == OUT_RELP && (line = key_line(p, "framing")) != 0)
		perr_at(p, line, "framing: not used with transport relp (RELP "
		    "frames every record itself)");
	if (o->transport != OUT_KAFKA)
		return;
	require(p, o->brokers, "brokers");
	require(p, o->topic, "topic");
	if (sasl) {
		require(p, o->sasl_username, "sasl_username");
		require(p, o->sasl_password_file, "sasl_password_file");
	}
	if ((line = key_line(p, "framing")) != 0)
		perr_at(p, line, "framing: not used with transport kafka "
		    "(one message per event)");
	if (key_line(p, "syslog_header") == 0)
		o->header = HDR_NONE;
}

/* Close [output]: address, TLS, and the transport-dependent defaults. */
static void
output_close(struct parser *p, void *obj)
{
	struct conf_output	*o = obj;
	int			 line;

	output_address(p, o);
	output_tls(p, o);
	output_kafka(p, o);
	if (key_line(p, "framing") == 0)
		o->framing = o->transport == OUT_TLS ? FRAME_OCTET :
		    FRAME_NEWLINE;
	if ((line = key_line(p, "max_message_bytes")) == 0)
		o->max_message_bytes = o->transport == OUT_UDP ? 2048 : 65536;
	else if (o->transport == OUT_UDP && o->max_message_bytes > 65507)
		perr_at(p, line, "max_message_bytes: %zu does not fit in a "
		    "UDP datagram; accepted: 480..65507 for udp",
		    o->max_message_bytes);
}

/* Index tenant i by name (thousands of tenants: no linear scans). */
static void
tenant_index_add(struct config *c, size_t i)
{
	size_t	 j, k, cap;

	if ((c->ntenants + 1) * 2 > c->tenant_index_cap) {
		cap = c->tenant_index_cap ? c->tenant_index_cap * 2 : 64;
		free(c->tenant_index);
		c->tenant_index = xcalloc(cap, sizeof(*c->tenant_index));
		c->tenant_index_cap = cap;
		for (k = 0; k + 1 < c->ntenants; k++)
			tenant_index_add(c, k);
		if (i + 1 < c->ntenants)
			return;		/* i was among them */
	}
	j = hash64(c->tenants[i]->name, strlen(c->tenants[i]->name)) &
	    (c->tenant_index_cap - 1);
	while (c->tenant_index[j] != 0)
		j = (j + 1) & (c->tenant_index_cap - 1);
	c->tenant_index[j] = i + 1;
}

/* [tenant "NAME"]. */
static void *
tenant_open(struct parser *p, const char *name)
{
	struct config		*c = p->conf;
	struct conf_tenant	*t;

	if ((t = conf_tenant_find(c, name)) != NULL) {
		dup_error(p, t->file, t->line);
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	t->name = xstrdup(name);
	t->source = SRC_MDE;
	t->cloud = CLOUD_COMMERCIAL;
	t->min_severity = SEV_INFORMATIONAL;
	t->forward_updates = true;
	t->enabled = true;
	t->file = p->file;
	t->line = p->line;
	c->tenants = xreallocarray(c->tenants, c->ntenants + 1, sizeof(t));
	c->tenants[c->ntenants++] = t;
	tenant_index_add(c, c->ntenants - 1);
	return t;
}

/*
 * Exactly one credential: secret file, inline secret, certificate, or a
 * federated assertion file.
 */
static void
tenant_auth(struct parser *p, struct conf_tenant *t)
{
	bool	 file = key_line(p, "client_secret_file") != 0;
	bool	 inl = key_line(p, "client_secret") != 0;
	bool	 cert = key_line(p, "certificate_file") != 0;
	bool	 key = key_line(p, "private_key_file") != 0;
	bool	 fed = key_line(p, "client_assertion_file") != 0;
	int	 thumb = key_line(p, "certificate_thumbprint");

	if (file + inl + (cert || key) + fed == 0)
		perr_at(p, p->sect_line, "%s: no credential; set "
		    "client_secret_file, client_secret, client_assertion_file, "
		    "or certificate_file and private_key_file", p->desc);
	else if (file + inl + (cert || key) + fed > 1)
		perr_at(p, p->sect_line, "%s: more than one credential; use "
		    "exactly one of client_secret_file, client_secret, "
		    "client_assertion_file, or certificate_file and "
		    "private_key_file", p->desc);
	else if (cert != key)
		perr_at(p, p->sect_line, "%s: certificate_file and "
		    "private_key_file go together", p->desc);
	if (thumb != 0 && !cert)
		perr_at(p, thumb, "%s: certificate_thumbprint needs "
		    "certificate_file and private_key_file", p->desc);
}

void
conf_cloud_api(enum tenant_cloud cloud, enum tenant_source src,
    struct buf *api, struct buf *scope)
{
	const struct cloud_def	*cd = &cloud_defs[cloud];

	buf_adds(api, src == SRC_GRAPH ? cd->graph : cd->api);
	if (src == SRC_GRAPH)
		buf_addf(scope, "%s/.default", cd->graph);
	else
		buf_adds(scope, cd->scope);
}

/* Fill api_url, login_url and scope from cloud and source. */
static void
tenant_endpoints(struct conf_tenant *t)
{
	struct buf	 api, scope;

	buf_init(&api);
	buf_init(&scope);
	conf_cloud_api(t->cloud, t->source, &api, &scope);
	if (t->login_url == NULL)
		t->login_url = xstrdup(cloud_defs[t->cloud].login);
	if (t->api_url == NULL)
		t->api_url = xstrdup(api.data);
	if (t->scope == NULL)
		t->scope = xstrdup(scope.data);
	buf_clear(&api);
	buf_clear(&scope);
}

/* Close [tenant]: required keys, credential, derived defaults. */
static void
tenant_close(struct parser *p, void *obj)
{
	struct conf_tenant	*t = obj;

	require(p, t->tenant_id, "tenant_id");
	require(p, t->client_id, "client_id");
	tenant_auth(p, t);
	tenant_endpoints(t);
	if (t->incidents && t->source != SRC_GRAPH)
		perr_at(p, key_line(p, "incidents"), "%s: incidents = yes "
		    "needs source = graph (incidents come from Microsoft Graph; "
		    "permission SecurityIncident.Read.All)", p->desc);
	if (t->service_sources != NULL && t->source != SRC_GRAPH)
		perr_at(p, key_line(p, "service_sources"), "%s: "
		    "service_sources needs source = graph (the MDE alerts API "
		    "has no serviceSource)", p->desc);
	if (t->label == NULL)
		t->label = xstrdup(t->name);
}

/* A [notify] section by name. */
static struct conf_notify *
notify_find(const struct config *c, const char *name)
{
	size_t	 i;

	for (i = 0; i < c->nnotifies; i++) {
		if (strcmp(c->notifies[i]->name, name) == 0)
			return c->notifies[i];
	}
	return NULL;
}

/* [notify "NAME"]. */
static void *
notify_open(struct parser *p, const char *name)
{
	struct config		*c = p->conf;
	struct conf_notify	*n;

	if ((n = notify_find(c, name)) != NULL) {
		dup_error(p, n->file, n->line);
		return NULL;
	}
	n = xcalloc(1, sizeof(*n));
	n->name = xstrdup(name);
	n->min_severity = SEV_HIGH;
	n->max_per_hour = 60;
	n->digest_interval_ms = 60 * SEC_MS;
	n->events = NOTIFY_ALERTS;
	n->file = p->file;
	n->line = p->line;
	c->notifies = xreallocarray(c->notifies, c->nnotifies + 1,
	    sizeof(n));
	c->notifies[c->nnotifies++] = n;
	return n;
}

/* Close [notify]: required keys; SMTP AUTH needs both halves. */
static void
notify_close(struct parser *p, void *obj)
{
	struct conf_notify	*n = obj;

	require(p, n->smtp_url, "smtp_url");
	require(p, n->from, "from");
	require(p, n->to, "to");
	if ((key_line(p, "username") == 0) !=
	    (key_line(p, "password_file") == 0))
		perr_at(p, p->sect_line, "%s: username and password_file go "
		    "together", p->desc);
}

/* [cluster]. */
static void *
cluster_open(struct parser *p, const char *name)
{
	struct conf_cluster	*cl = &p->conf->cluster;

	if (p->cluster_file != NULL) {
		dup_error(p, p->cluster_file, p->cluster_line);
		return NULL;
	}
	p->cluster_file = p->file;
	p->cluster_line = p->line;
	cl->enabled = true;
	cl->lease_ttl_ms = 10 * SEC_MS;
	cl->prefix = xstrdup("/alertrelay/");
	return cl;
}

/* Close [cluster]: endpoints required; member_name from the host name. */
static void
cluster_close(struct parser *p, void *obj)
{
	struct conf_cluster	*cl = obj;
	char			 host[256];

	require(p, cl->etcd_endpoints, "etcd_endpoints");
	if (cl->member_name != NULL)
		return;
	if (gethostname(host, sizeof(host)) == -1 || name_why(host) != NULL) {
		perr_at(p, p->sect_line, "%s: the host name is not usable as "
		    "member_name; set member_name", p->desc);
		return;
	}
	cl->member_name = xstrdup(host);
}

/* Free the strings of a [cluster] section. */
static void
cluster_clear(struct conf_cluster *cl)
{
	strv_free(cl->etcd_endpoints, cl->netcd_endpoints);
	free(cl->member_name);
	free(cl->prefix);
	free(cl->ca_file);
	free(cl->cert_file);
	free(cl->key_file);
}

static char *
xstrdup_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct conf_cluster *
conf_cluster_dup(const struct conf_cluster *cl)
{
	struct conf_cluster	*d;
	size_t			 i;

	d = xcalloc(1, sizeof(*d));
	*d = *cl;
	d->etcd_endpoints = xcalloc(cl->netcd_endpoints + 1,
	    sizeof(*d->etcd_endpoints));
	for (i = 0; i < cl->netcd_endpoints; i++)
		d->etcd_endpoints[i] = xstrdup(cl->etcd_endpoints[i]);
	d->member_name = xstrdup_null(cl->member_name);
	d->prefix = xstrdup_null(cl->prefix);
	d->ca_file = xstrdup_null(cl->ca_file);
	d->cert_file = xstrdup_null(cl->cert_file);
	d->key_file = xstrdup_null(cl->key_file);
	return d;
}

void
conf_cluster_free(struct conf_cluster *cl)
{
	if (cl == NULL)
		return;
	cluster_clear(cl);
	free(cl);
}

static const struct sectdef sections[] = {
	{ "daemon", false, daemon_keys, nitems(daemon_keys), daemon_open,
	    NULL },
	{ "output", true, output_keys, nitems(output_keys), output_open,
	    output_close },
	{ "tenant", true, tenant_keys, nitems(tenant_keys), tenant_open,
	    tenant_close },
	{ "notify", true, notify_keys, nitems(notify_keys), notify_open,
	    notify_close },
	{ "cluster", false, cluster_keys, nitems(cluster_keys), cluster_open,
	    cluster_close },
};

/* Finish the current section, if any. */
static void
sect_close(struct parser *p)
{
	if (p->sect != NULL && !p->skip && p->sect->close != NULL)
		p->sect->close(p, p->obj);
	p->sect = NULL;
	p->obj = NULL;
	p->skip = false;
}

/* "[daemon], [output "NAME"], ..." into b. */
static void
sections_join(struct buf *b)
{
	size_t	 i;

	for (i = 0; i < nitems(sections); i++)
		buf_addf(b, "%s[%s%s]", i == 0 ? "" : ", ", sections[i].kind,
		    sections[i].named ? " \"NAME\"" : "");
}

/* Check a section header's kind and name; the definition or NULL. */
static const struct sectdef *
sect_lookup(struct parser *p, const char *kind, const char *name)
{
	const struct sectdef	*sd = NULL;
	const char		*why;
	struct buf		 b;
	size_t			 i;

	for (i = 0; i < nitems(sections); i++) {
		if (strcmp(sections[i].kind, kind) == 0)
			sd = &sections[i];
	}
	if (sd == NULL) {
		buf_init(&b);
		sections_join(&b);
		perr(p, "unknown section [%s]; accepted: %s", kind, b.data);
		buf_clear(&b);
	} else if (sd->named && name == NULL)
		perr(p, "[%s] needs a name: [%s \"NAME\"]", kind, kind);
	else if (!sd->named && name != NULL)
		perr(p, "[%s] takes no name", kind);
	else if (name != NULL && (why = name_why(name)) != NULL)
		perr(p, "section name \"%s\" %s", name, why);
	else
		return sd;
	return NULL;
}

/* Start a section; keys that follow a bad header are ignored. */
static void
sect_open(struct parser *p, const char *kind, const char *name)
{
	const struct sectdef	*sd;

	sect_close(p);
	p->skip = true;
	if (strcmp(kind, "output") == 0)
		p->saw_output = true;
	if ((sd = sect_lookup(p, kind, name)) == NULL)
		return;
	if (name != NULL)
		snprintf(p->desc, sizeof(p->desc), "[%s \"%s\"]", kind, name);
	else
		snprintf(p->desc, sizeof(p->desc), "[%s]", kind);
	p->sect = sd;
	p->sect_line = p->line;
	memset(p->key_line, 0, sizeof(p->key_line));
	p->obj = sd->open(p, name);
	p->skip = p->obj == NULL;
}

/* ---- lines ---- */

static void	parse_include(struct parser *, const char *);

/* Index of key in the current section's table, or -1. */
static int
key_index(const struct sectdef *sd, const char *key)
{
	size_t	 i;

	for (i = 0; i < sd->nkeys; i++) {
		if (strcmp(sd->keys[i].key, key) == 0)
			return (int)i;
	}
	return -1;
}

/* Unknown key: say which keys the section takes. */
static void
unknown_key(struct parser *p, const char *key)
{
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	for (i = 0; i < p->sect->nkeys; i++)
		buf_addf(&b, "%s%s", i == 0 ? "" : ", ", p->sect->keys[i].key);
	perr(p, "unknown key \"%s\" in %s; accepted: %s", key, p->desc,
	    b.data);
	buf_clear(&b);
}

/* Hand key = value to the include logic or the section's table. */
static void
key_dispatch(struct parser *p, const char *key, const char *val)
{
	const struct keydef	*kd;
	int			 i;

	if (strcmp(key, "include") == 0) {
		parse_include(p, val);
		return;
	}
	if (p->skip)
		return;
	if (p->sect == NULL) {
		perr(p, "key \"%s\" outside any section; put it after a "
		    "section header such as [daemon]", key);
		return;
	}
	if ((i = key_index(p->sect, key)) == -1) {
		unknown_key(p, key);
		return;
	}
	kd = &p->sect->keys[i];
	if (p->key_line[i] != 0) {
		perr(p, "duplicate key \"%s\" in %s; first set at line %d",
		    key, p->desc, p->key_line[i]);
		return;
	}
	p->key_line[i] = p->line;
	kd->fn(p, kd, p->obj, val);
}

/* A double-quoted value: \" and \\ are escapes; unquoted in place. */
static const char *
value_quoted(char *s, char **out)
{
	char	*w = s;

	*out = s;
	for (; *s != '"'; s++) {
		if (*s == '\0')
			return "unterminated quoted value";
		if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
			s++;
		*w++ = *s;
	}
	*w = '\0';
	s++;
	s += strspn(s, " \t");
	if (*s != '\0' && *s != '#')
		return "unexpected text after the closing quote";
	return NULL;
}

/*
 * The value after '=': quoted, or up to a '#' that follows whitespace,
 * with surrounding whitespace removed.  Returns why it is wrong, or NULL.
 */
static const char *
value_parse(char *s, char **out)
{
	char		*e;
	const char	*why;

	for (e = s; *e != '\0'; e++) {
		if (*e == '#' && e > s && (e[-1] == ' ' || e[-1] == '\t'))
			break;
	}
	s += strspn(s, " \t");
	if (*s == '"') {
		if ((why = value_quoted(s + 1, out)) != NULL)
			return why;
	} else {
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		*e = '\0';
		*out = s;
	}
	if (**out == '\0')
		return "empty value; remove the line to use the default";
	return NULL;
}

/* KEY = VALUE. */
static void
parse_assignment(struct parser *p, char *s)
{
	char		*key = s, *val;
	const char	*why;
	size_t		 n;

	n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_-.");
	s += n;
	s += strspn(s, " \t");
	if (n == 0 || *s != '=') {
		perr(p, "expected KEY = VALUE or a [section] header");
		return;
	}
	key[n] = '\0';
	if ((why = value_parse(s + 1, &val)) != NULL) {
		perr(p, "%s: %s", key, why);
		return;
	}
	key_dispatch(p, key, val);
}

/* [KIND] or [KIND "NAME"], optionally followed by a comment. */
static void
parse_header(struct parser *p, char *s)
{
	char	*kind, *kend, *name = NULL;

	s++;
	s += strspn(s, " \t");
	kind = s;
	s += strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_-");
	kend = s;
	s += strspn(s, " \t");
	if (*s == '"') {
		name = ++s;
		if ((s = strchr(s, '"')) == NULL)
			goto bad;
		*s++ = '\0';
		s += strspn(s, " \t");
	}
	if (kend == kind || *s++ != ']')
		goto bad;
	s += strspn(s, " \t");
	if (*s != '\0' && *s != '#')
		goto bad;
	*kend = '\0';
	sect_open(p, kind, name);
	return;
bad:
	sect_close(p);
	p->skip = true;
	perr(p, "malformed section header; expected [KIND] or [KIND \"NAME\"]");
}

/* One line, without its end-of-line characters. */
static void
parse_line(struct parser *p, char *s)
{
	s += strspn(s, " \t");
	if (*s == '\0' || *s == '#')
		return;
	if (*s == '[')
		parse_header(p, s);
	else
		parse_assignment(p, s);
}

/* Parse a whole buffer as the current file. */
static void
parse_text(struct parser *p, const char *text, size_t len)
{
	const char	*s = text, *end = text + len, *nl, *next;
	char		*line;
	size_t		 n;

	for (p->line = 1; s < end; p->line++, s = next) {
		nl = memchr(s, '\n', (size_t)(end - s));
		next = nl != NULL ? nl + 1 : end;
		n = (size_t)((nl != NULL ? nl : end) - s);
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (memchr(s, '\0', n) != NULL) {
			perr(p, "NUL byte in line");
			continue;
		}
		line = xstrndup(s, n);
		parse_line(p, line);
		explicit_bzero(line, n);
		free(line);
	}
	sect_close(p);
}

/* ---- files and includes ---- */

/* Keep a file name for the life of the config; returns the copy. */
static const char *
file_intern(struct parser *p, const char *path)
{
	struct config	*c = p->conf;

	c->files = xreallocarray(c->files, c->nfiles + 1, sizeof(char *));
	c->files[c->nfiles] = xstrdup(path);
	return c->files[c->nfiles++];
}

/* Note that path is being read; its real path is used to find loops. */
static void
stack_push(struct parser *p, const char *path)
{
	char	*real = realpath(path, NULL);

	p->stack = xreallocarray(p->stack, p->depth + 1, sizeof(char *));
	p->stack[p->depth++] = real != NULL ? real : xstrdup(path);
}

/* Done reading the innermost file. */
static void
stack_pop(struct parser *p)
{
	free(p->stack[--p->depth]);
}

/* Read and parse one file; errors are reported against the includer. */
static void
load_file(struct parser *p, const char *path)
{
	const char	*saved_file = p->file;
	int		 saved_line = p->line;
	struct buf	 b;

	buf_init(&b);
	if (file_read_all(path, CONF_MAX_FILE, &b) == -1) {
		if (saved_file == NULL)
			perr_loc(p, path, 0, "cannot read: %s",
			    strerror(errno));
		else
			perr(p, "include %s: cannot read: %s", path,
			    strerror(errno));
	} else {
		p->file = file_intern(p, path);
		parse_text(p, b.data, b.len);
		explicit_bzero(b.data, b.len);
	}
	buf_clear(&b);
	p->file = saved_file;
	p->line = saved_line;
}

/* Include one file matched by a glob, unless that makes a loop. */
static void
include_file(struct parser *p, const char *path)
{
	char	*real = realpath(path, NULL);
	size_t	 i;

	for (i = 0; real != NULL && i < p->depth; i++) {
		if (strcmp(p->stack[i], real) == 0) {
			perr(p, "include %s: include loop (%s is already "
			    "being read)", path, real);
			free(real);
			return;
		}
	}
	free(real);
	if (p->depth > CONF_MAX_DEPTH) {
		perr(p, "include %s: includes nested more than %d deep", path,
		    CONF_MAX_DEPTH);
		return;
	}
	stack_push(p, path);
	load_file(p, path);
	stack_pop(p);
}

/*
 * include = GLOB: every match in sorted order.  A relative pattern is
 * taken from the directory of the including file.  A glob matching
 * nothing is fine; a plain path that does not exist is not.  The include
 * ends the current section.
 */
static void
parse_include(struct parser *p, const char *pattern)
{
	struct buf	 b;
	glob_t		 g;
	size_t		 i;
	int		 rc;

	sect_close(p);
	buf_init(&b);
	if (*pattern != '/')
		dir_escaped(&b, p->file);
	buf_adds(&b, pattern);
	rc = glob(b.data, 0, NULL, &g);
	if (rc == GLOB_NOMATCH && strpbrk(pattern, "*?[") == NULL)
		perr(p, "include %s: no such file", b.data);
	else if (rc != 0 && rc != GLOB_NOMATCH)
		perr(p, "include %s: cannot expand the pattern", pattern);
	for (i = 0; rc == 0 && i < g.gl_pathc; i++)
		include_file(p, g.gl_pathv[i]);
	globfree(&g);
	buf_clear(&b);
}

/* ---- whole configuration ---- */

/* A config with the [daemon] defaults. */
static struct config *
config_new(const char *path)
{
	struct config		*c = xcalloc(1, sizeof(*c));
	struct conf_daemon	*d = &c->daemon;

	c->path = xstrdup(path);
	d->state_dir = xstrdup("/var/lib/alertrelay");
	d->poll_interval_ms = 60 * SEC_MS;
	d->overlap_ms = 15 * 60 * SEC_MS;
	d->first_fetch_ms = 24 * 3600 * SEC_MS;
	d->page_size = 1000;
	d->max_concurrent_requests = 32;
	d->request_timeout_ms = 60 * SEC_MS;
	d->user_agent = xstrdup("MdePartner-alertrelay-alertrelayd/"
	    AR_VERSION);
	d->control_socket = xstrdup("/run/alertrelay/control.sock");
	d->shard_k = d->shard_n = 1;
	d->lag_warning_ms = 15 * 60 * SEC_MS;
	return c;
}

/* "a, b" of the defined output or tenant names ("none" if empty). */
static void
names_join(struct buf *b, const struct config *c, enum ref_kind kind)
{
	size_t	 i, n = kind == REF_OUTPUT ? c->noutputs : c->ntenants;

	for (i = 0; i < n; i++)
		buf_addf(b, "%s%s", i == 0 ? "" : ", ", kind == REF_OUTPUT ?
		    c->outputs[i]->name : c->tenants[i]->name);
	if (n == 0)
		buf_adds(b, "none");
}

/* Every name in one outputs/tenants list must be defined. */
static void
ref_check(struct parser *p, const struct ref *r)
{
	struct conf_tenant	*t = r->obj;
	struct conf_notify	*n = r->obj;
	bool			 out = r->kind == REF_OUTPUT;
	char			**v = out ? t->outputs : n->tenants;
	size_t			 i, nv = out ? t->noutputs : n->ntenants;
	struct buf		 b;

	for (i = 0; i < nv; i++) {
		if (out ? conf_output_find(p->conf, v[i]) != NULL :
		    conf_tenant_find(p->conf, v[i]) != NULL)
			continue;
		buf_init(&b);
		names_join(&b, p->conf, r->kind);
		perr_loc(p, r->file, r->line, "%s: \"%s\" is not a defined "
		    "%s; defined: %s", out ? "outputs" : "tenants", v[i],
		    out ? "output" : "tenant", b.data);
		buf_clear(&b);
	}
}

/* Cross-section checks, then hand over the config or free it. */
static struct config *
parser_finish(struct parser *p)
{
	struct config	*c = p->conf;
	size_t		 i;

	if (!p->saw_output && c->nfiles > 0)
		perr_loc(p, c->path, 0, "no [output] section: define at "
		    "least one");
	for (i = 0; i < p->nrefs; i++)
		ref_check(p, &p->refs[i]);
	free(p->refs);
	while (p->depth > 0)
		stack_pop(p);
	free(p->stack);
	if (p->nerrs == 0)
		return c;
	conf_free(c);
	return NULL;
}

/* Start parsing; errs may be NULL when the caller only wants a verdict. */
static void
parser_init(struct parser *p, const char *path, struct conf_errors *errs,
    struct conf_errors *local)
{
	memset(p, 0, sizeof(*p));
	memset(local, 0, sizeof(*local));
	p->errs = errs != NULL ? errs : local;
	p->conf = config_new(path);
	stack_push(p, path);
}

struct config *
conf_load(const char *path, struct conf_errors *errs)
{
	struct parser		 p;
	struct conf_errors	 local;
	struct config		*c;

	parser_init(&p, path, errs, &local);
	load_file(&p, path);
	c = parser_finish(&p);
	conf_errors_clear(&local);
	return c;
}

struct config *
conf_parse(const char *name, const char *text, size_t len,
    struct conf_errors *errs)
{
	struct parser		 p;
	struct conf_errors	 local;
	struct config		*c;

	parser_init(&p, name, errs, &local);
	p.file = file_intern(&p, name);
	parse_text(&p, text, len);
	c = parser_finish(&p);
	conf_errors_clear(&local);
	return c;
}

/* ---- freeing ---- */

/* An [output]'s strings; not file, which the configuration lends. */
static void
output_clear(struct conf_output *o)
{
	free(o->name);
	free(o->address);
	free(o->host);
	free(o->port);
	free(o->ca_file);
	free(o->cert_file);
	free(o->key_file);
	free(o->tls_server_name);
	free(o->brokers);
	free(o->topic);
	free(o->sasl_username);
	free(o->sasl_password_file);
	secret_free(o->sasl_password);
}

/* Free one [output]. */
static void
output_free(struct conf_output *o)
{
	output_clear(o);
	free(o);
}

static char *
dup_or_null(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

void
conf_output_dup(struct conf_output *dst, const struct conf_output *src)
{
	*dst = *src;
	dst->name = dup_or_null(src->name);
	dst->address = dup_or_null(src->address);
	dst->host = dup_or_null(src->host);
	dst->port = dup_or_null(src->port);
	dst->ca_file = dup_or_null(src->ca_file);
	dst->cert_file = dup_or_null(src->cert_file);
	dst->key_file = dup_or_null(src->key_file);
	dst->tls_server_name = dup_or_null(src->tls_server_name);
	dst->brokers = dup_or_null(src->brokers);
	dst->topic = dup_or_null(src->topic);
	dst->sasl_username = dup_or_null(src->sasl_username);
	dst->sasl_password_file = dup_or_null(src->sasl_password_file);
	dst->sasl_password = dup_or_null(src->sasl_password);
	dst->file = dup_or_null(src->file);	/* a copy owns its own */
}

void
conf_output_dup_free(struct conf_output *c)
{
	output_clear(c);
	free((char *)c->file);
	memset(c, 0, sizeof(*c));
}

/* Free one [tenant]; the secret is wiped first. */
static void
conf_tenant_free(struct conf_tenant *t)
{
	free(t->name);
	free(t->tenant_id);
	free(t->client_id);
	secret_free(t->client_secret);
	free(t->client_secret_file);
	free(t->certificate_file);
	free(t->private_key_file);
	free(t->client_assertion_file);
	free(t->api_url);
	free(t->login_url);
	free(t->scope);
	free(t->ca_file);
	free(t->label);
	free(t->service_sources);
	strv_free(t->outputs, t->noutputs);
	free(t);
}

/* Free one [notify]; the password is wiped first. */
static void
notify_free(struct conf_notify *n)
{
	free(n->name);
	free(n->smtp_url);
	free(n->from);
	strv_free(n->to, n->nto);
	free(n->username);
	secret_free(n->password);
	free(n->password_file);
	strv_free(n->tenants, n->ntenants);
	free(n);
}

/* Free the [daemon] and [cluster] strings. */
static void
daemon_cluster_clear(struct config *c)
{
	struct conf_daemon	*d = &c->daemon;
	struct conf_cluster	*cl = &c->cluster;

	free(d->state_dir);
	free(d->user_agent);
	free(d->control_socket);
	free(d->metrics_listen);
	cluster_clear(cl);
}

void
conf_free(struct config *c)
{
	size_t	 i;

	if (c == NULL)
		return;
	for (i = 0; i < c->noutputs; i++)
		output_free(c->outputs[i]);
	free(c->outputs);
	for (i = 0; i < c->ntenants; i++)
		conf_tenant_free(c->tenants[i]);
	free(c->tenants);
	free(c->tenant_index);
	for (i = 0; i < c->nnotifies; i++)
		notify_free(c->notifies[i]);
	free(c->notifies);
	daemon_cluster_clear(c);
	strv_free(c->files, c->nfiles);
	free(c->path);
	free(c);
}

/* ---- lookups ---- */

struct conf_output *
conf_output_find(const struct config *c, const char *name)
{
	size_t	 i;

	for (i = 0; i < c->noutputs; i++) {
		if (strcmp(c->outputs[i]->name, name) == 0)
			return c->outputs[i];
	}
	return NULL;
}

struct conf_tenant *
conf_tenant_find(const struct config *c, const char *name)
{
	size_t	 i, j;

	if (c->tenant_index_cap > 0) {
		j = hash64(name, strlen(name)) & (c->tenant_index_cap - 1);
		for (; (i = c->tenant_index[j]) != 0;
		    j = (j + 1) & (c->tenant_index_cap - 1))
			if (strcmp(c->tenants[i - 1]->name, name) == 0)
				return c->tenants[i - 1];
		return NULL;
	}
	for (i = 0; i < c->ntenants; i++) {
		if (strcmp(c->tenants[i]->name, name) == 0)
			return c->tenants[i];
	}
	return NULL;
}

bool
conf_tenant_routes(const struct conf_tenant *t, const struct conf_output *o)
{
	size_t	 i;

	if (t->outputs == NULL)
		return true;
	for (i = 0; i < t->noutputs; i++) {
		if (strcmp(t->outputs[i], o->name) == 0)
			return true;
	}
	return false;
}

bool
conf_in_shard(const struct config *c, const char *name)
{
	const struct conf_daemon *d = &c->daemon;

	if (d->shard_n <= 1)
		return true;
	return hash64(name, strlen(name)) % d->shard_n + 1 == d->shard_k;
}

const char *
conf_transport_name(enum out_transport t)
{
	return nv_name(transports, (int)t);
}

const char *
conf_format_name(enum out_format f)
{
	return nv_name(formats, (int)f);
}

const char *
severity_name(enum severity s)
{
	if ((int)s < SEV_UNSPECIFIED || s > SEV_HIGH)
		return "unspecified";
	return nv_name(severities, (int)s);
}

int
severity_parse(const char *s, size_t len)
{
	const struct nameval	*nv;

	if ((nv = nv_find(severities, s, len)) == NULL)
		return -1;
	return nv->value;
}

/* ---- summary ---- */

/* Print " key=value", quoting values with spaces; NULL is "none". */
static void
put_kv(FILE *f, const char *key, const char *val)
{
	if (val == NULL)
		val = "none";
	if (val[strcspn(val, " \t\"")] != '\0')
		fprintf(f, " %s=\"%s\"", key, val);
	else
		fprintf(f, " %s=%s", key, val);
}

/* Print " key=a,b,c" ("all" for a NULL list). */
static void
put_list(FILE *f, const char *key, char **v, size_t n)
{
	size_t	 i;

	fprintf(f, " %s=", key);
	for (i = 0; i < n; i++)
		fprintf(f, "%s%s", i == 0 ? "" : ",", v[i]);
	if (v == NULL)
		fprintf(f, "all");
}

/* Print " key=DURATION". */
static void
put_dur(FILE *f, const char *key, int64_t ms)
{
	char	 tmp[32];

	fprintf(f, " %s=%s", key, dur_fmt(ms, tmp, sizeof(tmp)));
}

/* The [daemon] line. */
static void
summary_daemon(const struct conf_daemon *d, FILE *f, bool all)
{
	fprintf(f, "daemon:");
	put_kv(f, "state_dir", d->state_dir);
	if (!all) {
		put_dur(f, "poll_interval", d->poll_interval_ms);
		fputc('\n', f);
		return;
	}
	put_dur(f, "poll_interval", d->poll_interval_ms);
	put_dur(f, "overlap", d->overlap_ms);
	put_dur(f, "first_fetch", d->first_fetch_ms);
	fprintf(f, " page_size=%u max_concurrent_requests=%u", d->page_size,
	    d->max_concurrent_requests);
	put_dur(f, "request_timeout", d->request_timeout_ms);
	put_kv(f, "user_agent", d->user_agent);
	put_kv(f, "control_socket", d->control_socket);
	put_kv(f, "metrics_listen", d->metrics_listen);
	put_dur(f, "lag_warning", d->lag_warning_ms);
	fprintf(f, " shard=%u/%u\n", d->shard_k, d->shard_n);
}

/* One [output] line. */
static void
summary_output(const struct conf_output *o, FILE *f, bool all)
{
	char	 tmp[32];

	fprintf(f, "output %s: %s", o->name, conf_transport_name(o->transport));
	if (o->address != NULL)
		fprintf(f, " %s", o->address);
	if (!all) {
		fprintf(f, " %s\n", conf_format_name(o->format));
		return;
	}
	fprintf(f, " %s %s %s facility=%s", conf_format_name(o->format),
	    nv_name(headers, (int)o->header), nv_name(framings,
	    (int)o->framing), nv_name(facilities, o->facility));
	fprintf(f, " max_message_bytes=%zu spool_max_bytes=%s",
	    o->max_message_bytes,
	    size_fmt(o->spool_max_bytes, tmp, sizeof(tmp)));
	if (o->transport == OUT_KAFKA) {
		put_kv(f, "brokers", o->brokers);
		put_kv(f, "topic", o->topic);
		put_kv(f, "kafka_security", nv_name(kafka_securities,
		    (int)o->kafka_security));
		if (o->kafka_security == KAFKA_SASL_SSL) {
			put_kv(f, "sasl_mechanism", nv_name(sasl_mechanisms,
			    (int)o->sasl_mechanism));
			put_kv(f, "sasl_username", o->sasl_username);
		}
	}
	if (o->transport == OUT_RELP)
		put_kv(f, "tls", o->tls ? "yes" : "no");
	if (output_uses_tls(o)) {
		put_kv(f, "tls_server_name", o->tls_server_name);
		put_kv(f, "ca_file", o->ca_file != NULL ? o->ca_file :
		    "system");
		put_kv(f, "cert_file", o->cert_file);
	}
	fputc('\n', f);
}

/* How a tenant authenticates, without the secret. */
static const char *
tenant_auth_name(const struct conf_tenant *t)
{
	if (t->certificate_file != NULL)
		return t->certificate_thumbprint == THUMB_SHA256 ?
		    "certificate(sha256)" : "certificate";
	if (t->client_assertion_file != NULL)
		return "federated";
	if (t->client_secret_file != NULL)
		return "secret(file)";
	return "secret(inline)";
}

/* One [tenant] line; how it authenticates, never the secret. */
static void
summary_tenant(const struct conf_tenant *t, FILE *f, bool all)
{
	char	 tmp[32];
	time_t	 when = (time_t)t->secret_expires;
	struct tm tm;

	fprintf(f, "tenant %s:", t->name);
	if (!all) {
		fprintf(f, " source=%s auth=%s enabled=%s\n",
		    nv_name(sources, (int)t->source), tenant_auth_name(t),
		    t->enabled ? "yes" : "no");
		return;
	}
	put_kv(f, "label", t->label);
	put_kv(f, "tenant_id", t->tenant_id);
	put_kv(f, "client_id", t->client_id);
	fprintf(f, " auth=%s", tenant_auth_name(t));
	if (t->secret_expires != 0 && gmtime_r(&when, &tm) != NULL &&
	    strftime(tmp, sizeof(tmp), "%Y-%m-%d", &tm) > 0)
		fprintf(f, " secret_expires=%s", tmp);
	fprintf(f, " source=%s cloud=%s", nv_name(sources, (int)t->source),
	    nv_name(clouds, (int)t->cloud));
	put_kv(f, "api", t->api_url);
	put_kv(f, "login", t->login_url);
	put_kv(f, "scope", t->scope);
	if (t->service_sources != NULL)
		put_kv(f, "service_sources", t->service_sources);
	put_list(f, "outputs", t->outputs, t->noutputs);
	fprintf(f, " min_severity=%s forward_updates=%s",
	    severity_name(t->min_severity), t->forward_updates ? "yes" : "no");
	if (t->incidents)
		fprintf(f, " incidents=yes");
	if (t->poll_interval_ms != 0)
		put_dur(f, "poll_interval", t->poll_interval_ms);
	fprintf(f, " enabled=%s\n", t->enabled ? "yes" : "no");
}

/* One [notify] line; the password shows as <redacted>. */
static void
summary_notify(const struct conf_notify *n, FILE *f, bool all)
{
	fprintf(f, "notify %s:", n->name);
	put_kv(f, "smtp_url", n->smtp_url);
	fprintf(f, " events=%s", nv_name(notify_events, (int)n->events));
	if (!all) {
		fputc('\n', f);
		return;
	}
	put_kv(f, "from", n->from);
	put_list(f, "to", n->to, n->nto);
	if (n->username != NULL) {
		put_kv(f, "username", n->username);
		fprintf(f, " password=<redacted>");
	}
	fprintf(f, " min_severity=%s", severity_name(n->min_severity));
	put_list(f, "tenants", n->tenants, n->ntenants);
	fprintf(f, " max_per_hour=%u", n->max_per_hour);
	put_dur(f, "digest_interval", n->digest_interval_ms);
	fputc('\n', f);
}

/* The [cluster] line. */
static void
summary_cluster(const struct conf_cluster *cl, FILE *f, bool all)
{
	fprintf(f, "cluster:");
	put_list(f, "etcd_endpoints", cl->etcd_endpoints,
	    cl->netcd_endpoints);
	if (!all) {
		fputc('\n', f);
		return;
	}
	put_kv(f, "member_name", cl->member_name);
	put_dur(f, "lease_ttl", cl->lease_ttl_ms);
	put_kv(f, "prefix", cl->prefix);
	put_kv(f, "tls", cl->ca_file != NULL || cl->cert_file != NULL ?
	    "yes" : "no");
	fputc('\n', f);
}

void
conf_summary(const struct config *c, FILE *f, bool all)
{
	size_t	 i;

	summary_daemon(&c->daemon, f, all);
	for (i = 0; i < c->noutputs; i++)
		summary_output(c->outputs[i], f, all);
	for (i = 0; i < c->ntenants; i++)
		summary_tenant(c->tenants[i], f, all);
	for (i = 0; i < c->nnotifies; i++)
		summary_notify(c->notifies[i], f, all);
	if (c->cluster.enabled)
		summary_cluster(&c->cluster, f, all);
}

static bool
str_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
conf_notify_same_delivery(const struct conf_notify *a,
    const struct conf_notify *b)
{
	size_t	 i;

	if (!str_same(a->smtp_url, b->smtp_url) ||
	    !str_same(a->from, b->from) ||
	    !str_same(a->username, b->username) ||
	    !str_same(a->password, b->password) || a->nto != b->nto)
		return false;
	for (i = 0; i < a->nto; i++)
		if (strcmp(a->to[i], b->to[i]) != 0)
			return false;
	return true;
}

bool
conf_output_equal(const struct conf_output *a, const struct conf_output *b)
{
	return str_same(a->name, b->name) && a->transport == b->transport &&
	    str_same(a->address, b->address) && a->format == b->format &&
	    a->header == b->header && a->framing == b->framing &&
	    a->facility == b->facility && str_same(a->ca_file, b->ca_file) &&
	    str_same(a->cert_file, b->cert_file) &&
	    str_same(a->key_file, b->key_file) &&
	    str_same(a->tls_server_name, b->tls_server_name) &&
	    a->max_message_bytes == b->max_message_bytes &&
	    a->spool_max_bytes == b->spool_max_bytes && a->tls == b->tls &&
	    str_same(a->brokers, b->brokers) && str_same(a->topic, b->topic) &&
	    a->kafka_security == b->kafka_security &&
	    a->sasl_mechanism == b->sasl_mechanism &&
	    str_same(a->sasl_username, b->sasl_username) &&
	    str_same(a->sasl_password_file, b->sasl_password_file) &&
	    str_same(a->sasl_password, b->sasl_password);
}

/*
 * Unchanged outputs keep their connection; TLS and file outputs still
 * reload their files (certificate renewal, log rotation).
 */
enum conf_reload_action
conf_output_action(const struct conf_output *old,
    const struct conf_output *nw)
{
	if (old == NULL)
		return RELOAD_ADD;
	if (!conf_output_equal(old, nw))
		return RELOAD_REBUILD;
	if (nw->transport == OUT_TLS || nw->transport == OUT_FILE)
		return RELOAD_REFRESH;
	return RELOAD_KEEP;
}
