/* Configuration loader and its data: files, key tables, freeing (SPEC §3). */
#include <errno.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_int.h"
#include "util.h"

_Static_assert(sizeof(enum out_transport) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_notify_events) == sizeof(int), "enum size");

/* ---- value tables ---- */

const struct nameval conf_transports[] = {
	{ "udp", OUT_UDP }, { "tcp", OUT_TCP }, { "tls", OUT_TLS },
	{ "file", OUT_FILE }, { "stdout", OUT_STDOUT }, { "relp", OUT_RELP },
	{ "kafka", OUT_KAFKA }, { NULL, 0 }
};
const struct nameval conf_kafka_securities[] = {
	{ "plaintext", KAFKA_PLAINTEXT }, { "ssl", KAFKA_SSL },
	{ "sasl_ssl", KAFKA_SASL_SSL }, { NULL, 0 }
};
const struct nameval conf_sasl_mechanisms[] = {
	{ "plain", SASL_PLAIN }, { "scram-sha-256", SASL_SCRAM_SHA_256 },
	{ "scram-sha-512", SASL_SCRAM_SHA_512 }, { NULL, 0 }
};
const struct nameval conf_formats[] = {
	{ "cef", FMT_CEF }, { "leef", FMT_LEEF }, { "json", FMT_JSON },
	{ NULL, 0 }
};
const struct nameval conf_headers[] = {
	{ "rfc5424", HDR_RFC5424 }, { "rfc3164", HDR_RFC3164 },
	{ "none", HDR_NONE }, { NULL, 0 }
};
const struct nameval conf_framings[] = {
	{ "newline", FRAME_NEWLINE }, { "octet-counting", FRAME_OCTET },
	{ NULL, 0 }
};
const struct nameval conf_facilities[] = {
	{ "kern", 0 }, { "user", 1 }, { "mail", 2 }, { "daemon", 3 },
	{ "auth", 4 }, { "syslog", 5 }, { "lpr", 6 }, { "news", 7 },
	{ "uucp", 8 }, { "cron", 9 }, { "authpriv", 10 }, { "ftp", 11 },
	{ "ntp", 12 }, { "audit", 13 }, { "alert", 14 }, { "clock", 15 },
	{ "local0", 16 }, { "local1", 17 }, { "local2", 18 },
	{ "local3", 19 }, { "local4", 20 }, { "local5", 21 },
	{ "local6", 22 }, { "local7", 23 }, { NULL, 0 }
};
const struct nameval conf_sources[] = {
	{ "mde", SRC_MDE }, { "graph", SRC_GRAPH }, { NULL, 0 }
};
static const struct nameval thumbprints[] = {
	{ "sha1", THUMB_SHA1 }, { "sha256", THUMB_SHA256 }, { NULL, 0 }
};
const struct nameval conf_clouds[] = {
	{ "commercial", CLOUD_COMMERCIAL }, { "gcc", CLOUD_GCC },
	{ "gcc-high", CLOUD_GCC_HIGH }, { "dod", CLOUD_DOD }, { NULL, 0 }
};
static const struct nameval min_severities[] = {
	{ "informational", SEV_INFORMATIONAL }, { "low", SEV_LOW },
	{ "medium", SEV_MEDIUM }, { "high", SEV_HIGH }, { NULL, 0 }
};
const struct nameval conf_notify_events[] = {
	{ "alerts", NOTIFY_ALERTS }, { "incidents", NOTIFY_INCIDENTS },
	{ "both", NOTIFY_BOTH }, { NULL, 0 }
};

static const struct nameval severities[] = {
	{ "unspecified", SEV_UNSPECIFIED },
	{ "informational", SEV_INFORMATIONAL }, { "low", SEV_LOW },
	{ "medium", SEV_MEDIUM }, { "high", SEV_HIGH }, { NULL, 0 }
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
void __attribute__((format(printf, 3, 4)))
perr_at(struct parser *p, int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	perr_v(p, p->file, line, fmt, ap);
	va_end(ap);
}

/* Report an error on the current line. */
void __attribute__((format(printf, 2, 3)))
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
const struct nameval *
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
const char *
nv_name(const struct nameval *nv, int value)
{
	for (; nv->name != NULL; nv++) {
		if (nv->value == value)
			return nv->name;
	}
	return "?";
}

/* "a, b, c" from a value table, into b. */
void
nv_join(struct buf *b, const struct nameval *nv)
{
	const struct nameval	*first = nv;

	for (; nv->name != NULL; nv++)
		buf_addf(b, "%s%s", nv == first ? "" : ", ", nv->name);
}

/* Free a vector of n strings. */
void
strv_free(char **v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* What is wrong with a section or item name, or NULL. */
const char *
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
const char *
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
	KENUM("transport", O(transport), conf_transports),
	KEY("address", key_str, O(address)),
	KENUM("format", O(format), conf_formats),
	KENUM("syslog_header", O(header), conf_headers),
	KENUM("framing", O(framing), conf_framings),
	KENUM("facility", O(facility), conf_facilities),
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
	KENUM("kafka_security", O(kafka_security), conf_kafka_securities),
	KENUM("sasl_mechanism", O(sasl_mechanism), conf_sasl_mechanisms),
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
	KENUM("source", T(source), conf_sources),
	KENUM("cloud", T(cloud), conf_clouds),
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
	KENUM("events", N(events), conf_notify_events),
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

	if (saved_file != NULL && (p->conf->nfiles >= CONF_MAX_FILES ||
	    p->bytes_read > CONF_MAX_TOTAL)) {
		if (!p->over_budget)
			perr(p, "include %s: more than %d files or %d MB read "
			    "for one configuration (a file included from "
			    "several places is read each time); check the "
			    "include patterns", path, CONF_MAX_FILES,
			    CONF_MAX_TOTAL >> 20);
		p->over_budget = true;
		return;
	}
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
		p->bytes_read += b.len;
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
	if (p->over_budget)
		return;
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
	d->member_name = dup_or_null(cl->member_name);
	d->prefix = dup_or_null(cl->prefix);
	d->ca_file = dup_or_null(cl->ca_file);
	d->cert_file = dup_or_null(cl->cert_file);
	d->key_file = dup_or_null(cl->key_file);
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
	return nv_name(conf_transports, (int)t);
}

const char *
conf_format_name(enum out_format f)
{
	return nv_name(conf_formats, (int)f);
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
