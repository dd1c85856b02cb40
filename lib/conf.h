/* Configuration: the parsed, validated form of alertrelay.conf (SPEC §3). */
#ifndef AR_CONF_H
#define AR_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum out_transport { OUT_UDP, OUT_TCP, OUT_TLS, OUT_FILE, OUT_STDOUT,
    OUT_RELP, OUT_KAFKA };
enum kafka_security { KAFKA_PLAINTEXT, KAFKA_SSL, KAFKA_SASL_SSL };
enum sasl_mechanism { SASL_PLAIN, SASL_SCRAM_SHA_256, SASL_SCRAM_SHA_512 };
enum out_format { FMT_CEF, FMT_LEEF, FMT_JSON };
enum out_header { HDR_RFC5424, HDR_RFC3164, HDR_NONE };
enum out_framing { FRAME_NEWLINE, FRAME_OCTET };
enum tenant_source { SRC_MDE, SRC_GRAPH };
enum tenant_cloud { CLOUD_COMMERCIAL, CLOUD_GCC, CLOUD_GCC_HIGH, CLOUD_DOD };
/* certificate_thumbprint: RS256 + "x5t", or PS256 + "x5t#S256". */
enum tenant_thumbprint { THUMB_SHA1, THUMB_SHA256 };

/* Alert severities in increasing order; SEV_UNSPECIFIED sorts lowest. */
enum severity {
	SEV_UNSPECIFIED = 0,
	SEV_INFORMATIONAL,
	SEV_LOW,
	SEV_MEDIUM,
	SEV_HIGH,
};

struct conf_daemon {
	char		*state_dir;
	int64_t		 poll_interval_ms;
	int64_t		 overlap_ms;
	int64_t		 first_fetch_ms;
	unsigned	 page_size;
	unsigned	 max_concurrent_requests;
	int64_t		 request_timeout_ms;
	char		*user_agent;
	char		*control_socket;
	char		*metrics_listen;	/* NULL when unset */
	unsigned	 shard_k, shard_n;	/* 1/1 */
	int64_t		 lag_warning_ms;	/* no catch-up for this long */
};

struct conf_output {
	char		*name;
	enum out_transport transport;
	char		*address;	/* as written; path for file */
	char		*host;		/* parsed from address (no brackets) */
	char		*port;
	enum out_format	 format;
	enum out_header	 header;
	enum out_framing framing;
	int		 facility;	/* 0..23 */
	char		*ca_file, *cert_file, *key_file;
	char		*tls_server_name;	/* defaults to host */
	size_t		 max_message_bytes;
	uint64_t	 spool_max_bytes;
	bool		 tls;		/* relp: RELP over TLS */
	char		*brokers;	/* kafka: "host:port,..." */
	char		*topic;		/* kafka */
	enum kafka_security kafka_security;
	enum sasl_mechanism sasl_mechanism;
	char		*sasl_username;
	char		*sasl_password_file;
	char		*sasl_password;	/* secret: loaded from the file */
	const char	*file;		/* where it was defined */
	int		 line;
};

struct conf_tenant {
	char		*name;
	char		*tenant_id;
	char		*client_id;
	char		*client_secret;		/* loaded from file or inline */
	char		*client_secret_file;
	char		*certificate_file, *private_key_file;
	enum tenant_thumbprint certificate_thumbprint;
	char		*client_assertion_file;	/* federated: re-read per
						   token request */
	int64_t		 secret_expires;	/* epoch seconds, 0 unset */
	enum tenant_source source;
	char		*service_sources;	/* Graph: comma list; NULL all */
	bool		 incidents;		/* also poll Graph incidents */
	enum tenant_cloud cloud;
	char		*api_url;		/* no trailing slash */
	char		*login_url;		/* no trailing slash */
	char		*scope;
	char		*ca_file;
	char		*label;
	char		**outputs;		/* names; NULL = all outputs */
	size_t		 noutputs;
	enum severity	 min_severity;
	bool		 forward_updates;
	int64_t		 poll_interval_ms;	/* 0 = daemon's */
	bool		 enabled;
	const char	*file;
	int		 line;
};

/* What a [notify] section mails (events =): a bit set. */
enum conf_notify_events {
	NOTIFY_ALERTS = 1,
	NOTIFY_INCIDENTS = 2,
	NOTIFY_BOTH = NOTIFY_ALERTS | NOTIFY_INCIDENTS,
};

struct conf_notify {
	char		*name;
	char		*smtp_url;
	char		*from;
	char		**to;
	size_t		 nto;
	char		*username;
	char		*password;		/* loaded from password_file */
	char		*password_file;
	enum severity	 min_severity;
	char		**tenants;		/* NULL = all */
	size_t		 ntenants;
	unsigned	 max_per_hour;
	int64_t		 digest_interval_ms;
	enum conf_notify_events events;		/* default NOTIFY_ALERTS */
	const char	*file;
	int		 line;
};

struct conf_cluster {
	bool		 enabled;		/* section present */
	char		**etcd_endpoints;
	size_t		 netcd_endpoints;
	char		*member_name;
	int64_t		 lease_ttl_ms;
	char		*prefix;
	char		*ca_file, *cert_file, *key_file;
};

struct config {
	char		*path;
	struct conf_daemon daemon;
	struct conf_output **outputs;
	size_t		 noutputs;
	struct conf_tenant **tenants;
	size_t		 ntenants;
	size_t		*tenant_index;	/* hash of names: index + 1, 0 empty */
	size_t		 tenant_index_cap;
	struct conf_notify **notifies;
	size_t		 nnotifies;
	struct conf_cluster cluster;
	char		**files;	/* every file read, for line refs */
	size_t		 nfiles;
};

/* Errors collected while loading: each one "FILE:LINE: message". */
struct conf_errors {
	char		**msg;
	size_t		 n;
};

/*
 * Load and validate path (and its includes, secret files, referenced
 * certificate files).  Returns NULL and fills errs when anything is wrong;
 * every problem found is reported, not just the first.  Warnings (inline
 * secret, ...) go to the log.
 */
struct config	*conf_load(const char *path, struct conf_errors *errs);
/* Same, from a buffer; name is used in messages.  Includes resolve. */
struct config	*conf_parse(const char *name, const char *text, size_t len,
		    struct conf_errors *errs);
void		 conf_free(struct config *);
/* An owned copy of a [cluster] section, to outlive its config. */
struct conf_cluster *conf_cluster_dup(const struct conf_cluster *);
void		 conf_cluster_free(struct conf_cluster *);
void		 conf_errors_clear(struct conf_errors *);

/* Lookups. */
struct conf_output *conf_output_find(const struct config *, const char *);
/*
 * An [output] that outlives its configuration (a reload frees that one):
 * dst owns every string, file included (which a configuration only
 * lends).  Release with conf_output_dup_free, never conf_free.
 */
void		 conf_output_dup(struct conf_output *dst,
		    const struct conf_output *src);
void		 conf_output_dup_free(struct conf_output *);
struct conf_tenant *conf_tenant_find(const struct config *, const char *);
struct buf;
/*
 * Append a cloud's default API base URL and OAuth2 scope for a source
 * (Defender for Endpoint or Graph) to api and scope.
 */
void		 conf_cloud_api(enum tenant_cloud, enum tenant_source,
		    struct buf *api, struct buf *scope);
/* Same settings (a changed output is rebuilt on reload)? */
bool		 conf_output_equal(const struct conf_output *,
		    const struct conf_output *);
/* What a reload does with an output of the new configuration. */
enum conf_reload_action {
	RELOAD_KEEP,		/* unchanged: runs on as it is */
	RELOAD_REFRESH,		/* unchanged: new TLS context, file reopened */
	RELOAD_REBUILD,		/* changed: rebuilt, takes the old spool over */
	RELOAD_ADD,		/* a new name: built with its own spool */
};
/* old: the running output of the same name, or NULL. */
enum conf_reload_action conf_output_action(const struct conf_output *old,
		    const struct conf_output *nw);
/* Same SMTP server, sender, recipients and credentials? */
bool		 conf_notify_same_delivery(const struct conf_notify *,
		    const struct conf_notify *);
/* Does tenant t route to output o? */
bool		 conf_tenant_routes(const struct conf_tenant *,
		    const struct conf_output *);
/* Is the tenant in this daemon's shard (stable hash of NAME)? */
bool		 conf_in_shard(const struct config *, const char *name);

/* One line per section for --check-config; secrets never printed. */
/*
 * One line per section: what it is (all: false, --check-config) or the
 * whole effective configuration, secrets redacted (all: true, -v).
 */
void		 conf_summary(const struct config *, FILE *, bool all);

const char	*conf_transport_name(enum out_transport);
const char	*conf_format_name(enum out_format);
const char	*severity_name(enum severity);
/* "High" / "high" ... -> enum; unknown -> -1. Case-insensitive. */
int		 severity_parse(const char *, size_t);

#endif
