/* Configuration parser internals shared by lib/conf*.c only. */
#ifndef CONF_INT_H
#define CONF_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONF_MAX_DEPTH		8	/* include nesting below the main one */
#define CONF_MAX_ERRORS		100
#define CONF_MAX_FILE		(64 * 1024 * 1024)
/*
 * One configuration reads at most this many files and bytes: a file
 * included from several places is read each time, so includes that fan
 * out (every file of a directory including every file of the next) grow
 * as a power of the nesting.  10,000 tenants in a file each fit twice.
 */
#define CONF_MAX_FILES		20000
#define CONF_MAX_TOTAL		(256 * 1024 * 1024)
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

struct buf;
struct conf_errors;
struct conf_output;
struct config;
struct keydef;
struct parser;

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
	size_t		 bytes_read;	/* every file so far (CONF_MAX_TOTAL) */
	bool		 over_budget;	/* CONF_MAX_FILES or _TOTAL reached */

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

/* Scheme and host of an absolute URL. */
struct url {
	char		 scheme[16];
	char		 host[256];
};

/* Value tables shared by the key tables, checks and printer. */
extern const struct nameval conf_transports[];
extern const struct nameval conf_kafka_securities[];
extern const struct nameval conf_sasl_mechanisms[];
extern const struct nameval conf_formats[];
extern const struct nameval conf_headers[];
extern const struct nameval conf_framings[];
extern const struct nameval conf_facilities[];
extern const struct nameval conf_sources[];
extern const struct nameval conf_clouds[];
extern const struct nameval conf_notify_events[];

/* conf.c: errors and small helpers */
void	 perr_at(struct parser *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));
void	 perr(struct parser *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
const struct nameval	*nv_find(const struct nameval *, const char *, size_t);
const char	*nv_name(const struct nameval *, int);
void	 nv_join(struct buf *, const struct nameval *);
void	 strv_free(char **, size_t);
const char	*name_why(const char *);
const char	*id_why(const char *);

/* confvalue.c: values, paths, secret files */
long	 number_parse(const char *, size_t);
const char	*hostport_parse(const char *, char **, char **);
int	 url_check(struct parser *, const char *, const char *, struct url *);
char	*path_resolve(struct parser *, const char *);
const char	*dur_fmt(int64_t, char *, size_t);
const char	*size_fmt(uint64_t, char *, size_t);
int	 file_open_checked(struct parser *, const char *, const char *, bool);
char	*secret_load(struct parser *, const char *, const char *);

/* confkeys.c: key handlers for the key tables */
void	 key_str(struct parser *, const struct keydef *, void *, const char *);
void	 key_service_sources(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_id(struct parser *, const struct keydef *, void *, const char *);
void	 key_name(struct parser *, const struct keydef *, void *, const char *);
void	 key_dur(struct parser *, const struct keydef *, void *, const char *);
void	 key_uint(struct parser *, const struct keydef *, void *, const char *);
void	 key_size64(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_sizet(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_bool(struct parser *, const struct keydef *, void *, const char *);
void	 key_enum(struct parser *, const struct keydef *, void *, const char *);
void	 key_list(struct parser *, const struct keydef *, void *, const char *);
void	 key_outputs(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_tenants(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_file(struct parser *, const struct keydef *, void *, const char *);
void	 key_keyfile(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_secretfile(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_inline_secret(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_date(struct parser *, const struct keydef *, void *, const char *);
void	 key_url(struct parser *, const struct keydef *, void *, const char *);
void	 key_smtp_url(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_endpoints(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_hostport(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_shard(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_prefix(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_brokers(struct parser *, const struct keydef *, void *,
    const char *);
void	 key_topic(struct parser *, const struct keydef *, void *,
    const char *);

/* confsect.c: section open/close for sections[] */
void	*daemon_open(struct parser *, const char *);
void	*output_open(struct parser *, const char *);
bool	 output_uses_tls(const struct conf_output *);
void	 output_close(struct parser *, void *);
void	*tenant_open(struct parser *, const char *);
void	 tenant_close(struct parser *, void *);
void	*notify_open(struct parser *, const char *);
void	 notify_close(struct parser *, void *);
void	*cluster_open(struct parser *, const char *);
void	 cluster_close(struct parser *, void *);

#endif /* CONF_INT_H */
