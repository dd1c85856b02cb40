/* alertrelayd internals shared by the files in daemon/, one section each. */
#ifndef ALERTRELAYD_H
#define ALERTRELAYD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "alert.h"
#include "backoff.h"
#include "conf.h"
#include "encode.h"
#include "log.h"
#include "spool.h"
#include "state.h"
#include "util.h"

struct relay;
struct catchup;
struct cluster;
struct ctl;
struct metrics;

/*
 * disk.c: file syncs off the loop, on one worker thread (see disk.c).
 * disk_new after the base, disk_free after every sink, notifier and
 * tenant is freed.
 */
struct disk;
struct disk_work;
typedef void	(*disk_done_cb)(void *arg, int error);

struct disk	*disk_new(struct event_base *);
void		 disk_free(struct disk *);
/* Run this spool's syncs on the worker (NULL: inline, waiting). */
void		 disk_attach_spool(struct disk *, struct spool *);
/*
 * Replace path atomically with data (taken; temp file, fsync, rename,
 * directory fsync) on the worker; cb(arg, 0 or errno) from the loop.
 * Saves run in order, so the last one submitted is the one that stays.
 */
struct disk_work *disk_save(struct disk *, const char *path, struct buf *,
		    disk_done_cb, void *);
/* The owner goes away: the save still happens, cb is never called. */
void		 disk_cancel(struct disk_work *);
/* Items submitted and not yet completed. */
uint64_t	 disk_pending(const struct disk *);

/* http.c: every outbound HTTP request, one curl multi handle on the base. */
struct http;
struct http_req;

struct http_result {
	int		 status;	/* HTTP status, 0 if none */
	int		 failed;	/* transport error or aborted */
	const char	*error;		/* what failed, for logs */
	struct buf	*body;		/* buffered body (non-2xx, or no data_cb) */
	int64_t		 retry_after_ms; /* from Retry-After, -1 if absent */
	const char	*location;	/* Location of a 3xx, never followed */
	int64_t		 elapsed_ms;
};

/* Streaming body chunk of a 2xx response; non-zero aborts the transfer. */
typedef int (*http_data_cb)(const char *, size_t, void *);
typedef void (*http_done_cb)(const struct http_result *, void *);

struct http_opts {
	const char	*method;	/* "GET" or "POST" */
	const char	*url;
	const char	*body;		/* POST body (form encoded) */
	size_t		 body_len;
	const char	*bearer;	/* access token, or NULL */
	const char	*user_agent;
	const char	*ca_file;	/* NULL = system CAs */
	const char	*cert_file;	/* client certificate (mTLS), or NULL */
	const char	*key_file;
	int64_t		 timeout_ms;
	size_t		 max_body;	/* abort past this many bytes */
	http_data_cb	 data_cb;	/* NULL: buffer the body */
	http_done_cb	 done_cb;	/* called once, from the loop */
	void		*arg;
};

struct http	*http_new(struct event_base *, unsigned max_concurrent);
void		 http_free(struct http *);
/* Queue a request; done_cb is always called later, never from here. */
struct http_req	*http_request(struct http *, const struct http_opts *);
/* Cancel: done_cb is not called.  Safe on a finished request? No. */
void		 http_cancel(struct http *, struct http_req *);
unsigned	 http_active(const struct http *);
/* Refuse to run with a blocking resolver. */
int		 http_check_async_dns(char *, size_t);
/* URL-encode s for a form body or query. */
void		 http_urlencode(struct buf *, const char *);

/* One mail submission over SMTP (notify.c), on the same multi handle. */
struct http_smtp_opts {
	const char	*url;		/* smtp[s]://HOST:PORT[/EHLO-NAME] */
	const char	*mail_from;	/* bare address */
	const char *const *rcpt;	/* bare addresses */
	size_t		 nrcpt;
	const char	*username;	/* NULL: no AUTH */
	const char	*password;
	const char	*ca_file;	/* NULL = system CAs */
	const char	*body;		/* the whole message, CRLF lines */
	size_t		 body_len;
	int64_t		 timeout_ms;
	http_done_cb	 done_cb;	/* status: the last SMTP reply code */
	void		*arg;
};

/*
 * Queue an SMTP transfer; everything is copied.  smtp:// uses STARTTLS,
 * required unless the host is loopback (then only when offered); smtps://
 * is TLS from the start.  Certificates are always verified.  done_cb is
 * called later, never from here; http_cancel works as for requests.
 */
struct http_req	*http_smtp(struct http *, const struct http_smtp_opts *);

/* sink.c: one output's spool and its connection to the SIEM. */
struct sink;

struct sink_stats {
	bool		 connected;
	uint64_t	 spool_bytes;
	uint64_t	 spool_records;
	uint64_t	 sent;
	uint64_t	 reconnects;
};

/* Open the output's spool under state_dir/spool/NAME and start sending. */
struct sink	*sink_new(struct event_base *, const struct conf_output *,
		    const char *state_dir, char *err, size_t errlen);
/*
 * Reload, in two steps.  sink_build makes everything the output needs
 * (TLS context; its spool unless from, the running output of that name,
 * will hand its own over) without touching what runs; NULL with err if
 * that fails.  sink_commit cannot fail: it puts the built output in
 * service, taking over from's spool when the settings changed, or keeps
 * from (connection and spool) when they did not; it frees whichever of
 * the two is not returned.
 */
struct sink	*sink_build(struct event_base *, const struct conf_output *,
		    const char *state_dir, const struct sink *from, char *err,
		    size_t errlen);
struct sink	*sink_commit(struct sink *built, struct sink *from);
void		 sink_free(struct sink *);
const struct conf_output *sink_conf(const struct sink *);
/* Queue one encoded syslog message (no framing). 0 or -1 (errno). */
int		 sink_enqueue(struct sink *, const char *, size_t);
/* Make queued messages durable and hand them to the sender. 0 or -1. */
int		 sink_sync(struct sink *);
/*
 * The same without waiting: the spool's sync runs on disk's thread.
 * 0: durable already; -1 (errno): could not start; 1: cb(arg, error) is
 * called from the loop once it is durable (error 0) or failed (an errno
 * value; ECANCELED when the output is freed meanwhile), and *ticket
 * cancels it (sink_sync_cancel) when arg goes away first.
 */
int		 sink_sync_async(struct sink *, struct disk *, spool_synced_cb,
		    void *, uint64_t *ticket);
void		 sink_sync_cancel(struct sink *, uint64_t ticket);
bool		 sink_full(const struct sink *);
/* Nothing undelivered: every durable record sent and acknowledged. */
bool		 sink_drained(const struct sink *);
void		 sink_stats(const struct sink *, struct sink_stats *);
/* Spool positions: first undelivered record, end of durable records. */
void		 sink_positions(const struct sink *, struct spool_pos *head,
		    struct spool_pos *tail);
/* Called (from the loop) whenever the sink becomes drained. */
void		 sink_set_drained_cb(struct sink *, void (*)(void *), void *);

/* token.c: per-tenant OAuth2 client-credentials token cache. */
struct token {
	char		*access;	/* secret: cleared on free */
	int64_t		 expires_ms;	/* monotonic */
	int64_t		 wall_expires;	/* ticks, for status */
	struct http_req	*req;		/* refresh in flight */
	void		(*waiter)(void *, int);	/* one waiter: the poller */
	void		*waiter_arg;
	int64_t		 cred_expires;	/* epoch s: certificate notAfter or
					   secret_expires, earliest; 0 unknown */
};

struct tenant;
/* A token valid for at least the refresh margin, or NULL. */
const char	*token_current(struct tenant *);
/*
 * Ensure a fresh token; cb(arg, 0) once one is there, cb(arg, -1) on
 * failure (already logged, tenant's error set).  At most one refresh in
 * flight per tenant.
 */
void		 token_refresh(struct tenant *, void (*)(void *, int), void *);
void		 token_invalidate(struct tenant *);
/* The token request (URL and form) for a tenant's credentials. */
int		 token_request_build(const struct conf_tenant *, struct buf *,
		    struct buf *, char *, size_t);
void		 token_clear(struct token *);
/*
 * Warn (journal, TENANT=) when the certificate or the secret_expires date
 * is less than 30 days away or past; sets token.cred_expires for status.
 * Call at start and daily.
 */
void		 token_check_expiry(struct tenant *);

/* tenant.c: per-tenant poller. */
enum tenant_phase {
	TENANT_IDLE,		/* waiting for the next poll */
	TENANT_TOKEN,		/* waiting for a token */
	TENANT_FETCH,		/* page request in flight */
	TENANT_BACKOFF,		/* waiting after an error */
	TENANT_PAUSED,		/* an output's spool is full */
	TENANT_FAILED,		/* given up (--once) or disabled */
};

struct tenant {
	struct relay	*relay;
	struct conf_tenant *conf;	/* borrowed from relay->conf */
	char		*name;
	char		*state_path;
	struct tenant_state state;
	bool		 state_unsaved;	/* a save failed: retry */
	bool		 spool_failing;	/* a spool write failed (logged) */
	struct token	 token;
	enum tenant_phase phase;
	struct event	*timer;
	struct sink	**sinks;	/* routed outputs */
	size_t		 nsinks;

	struct catchup	*live;		/* the poller's catch-up */
	struct catchup	*backfill;	/* running backfill, or NULL */

	/*
	 * Delivery checkpoints (cluster mode): after each commit, the
	 * cursor and every routed sink's spool tail.  A checkpoint is
	 * delivered once every sink's head has passed its tail.
	 */
	struct checkpoint *ckpt;
	size_t		 nckpt;
	int64_t		 delivered;	/* newest delivered cursor */
	bool		 owned;		/* polled by this member */

	struct rate	 rate;		/* API calls per minute and hour */

	unsigned	 failures;	/* consecutive */
	bool		 failing;	/* announced as failing */
	bool		 auth_failed;
	char		 last_error[512];
	int64_t		 last_success;	/* ticks */
	uint64_t	 forwarded;
	uint64_t	 polls;
	uint64_t	 polls_ok;	/* catch-ups completed */
	uint64_t	 polls_failed;	/* attempts ended by an error */
	uint64_t	 http_status[6]; /* [0] transport error, [n] nxx */
};

/* Progress of a backfill: after each page, and once with done = 1. */
typedef void (*backfill_cb)(void *arg, int done, int ok, uint64_t pages,
		    uint64_t seen, uint64_t forwarded, const char *error);

struct tenant	*tenant_new(struct relay *, struct conf_tenant *,
		    char *, size_t);
/* Adopt a new configuration (reload); conf must outlive the tenant. */
void		 tenant_reconcile(struct tenant *, struct conf_tenant *);
/* Set the live cursor (ticks) and save it; -1 with err while busy. */
int		 tenant_cursor_set(struct tenant *, int64_t, char *, size_t);
/*
 * Replay lastUpdateTime in [from, to) through the same dedupe and
 * outputs without moving the live cursor.  One backfill per tenant at a
 * time.  cb reports progress; it is not called after tenant_backfill_
 * cancel().  0, or -1 with err.
 */
int		 tenant_backfill(struct tenant *, int64_t from, int64_t to,
		    backfill_cb, void *, char *, size_t);
void		 tenant_backfill_cancel(struct tenant *);
const char	*tenant_phase_name(enum tenant_phase);
void		 tenant_free(struct tenant *);
/* Stop polling: cancel requests, keep what was read (SIGTERM). */
void		 tenant_stop(struct tenant *);
/*
 * Cluster hooks.  tenant_own(t, true) starts polling a tenant this
 * member now owns, from the shared delivered cursor (TICKS_NONE: the
 * local state); tenant_own(t, false) stops it (like tenant_stop).
 * tenant_delivered_cursor: the newest cursor whose alerts every routed
 * output has delivered (not merely spooled), or TICKS_NONE.
 */
void		 tenant_own(struct tenant *, bool, int64_t delivered);
int64_t		 tenant_delivered_cursor(struct tenant *);
bool		 tenant_owned(const struct tenant *);
void		 tenant_start(struct tenant *);
/* Set the tenant's last error (and log it once, with fields). */
void		 tenant_error(struct tenant *, int prio, const struct log_ctx *,
		    const char *, ...) __attribute__((format(printf, 4, 5)));

/*
 * notify.c: e-mail notifications ([notify] sections).  Each notifier has
 * its own durable spool of pending mails under state_dir/notify/NAME, fed
 * like an output (enqueue while a page is read, sync before the cursor
 * moves), and sends through SMTP with libcurl on the relay's loop.
 */
struct notifier;

struct notifier	*notifier_new(struct relay *, const struct conf_notify *,
		    char *, size_t);
void		 notifier_free(struct notifier *);
const struct conf_notify *notifier_conf(const struct notifier *);
/* Does this notifier want this alert version of this tenant? */
bool		 notifier_wants(const struct notifier *, const char *tenant,
		    const struct alert *);
/* Queue a mail for the version (buffered).  0 or -1 (errno). */
int		 notifier_enqueue(struct notifier *, const struct alert *,
		    const struct event_meta *);
/* Make queued mails durable and hand them to the sender.  0 or -1. */
int		 notifier_sync(struct notifier *);
/* Without waiting, as sink_sync_async. */
int		 notifier_sync_async(struct notifier *, struct disk *,
		    spool_synced_cb, void *, uint64_t *ticket);
void		 notifier_sync_cancel(struct notifier *, uint64_t ticket);
/* Nothing left to mail (for --once). */
bool		 notifier_drained(const struct notifier *);
/* Adopt the [notify] section of a reloaded config (same NAME). */
void		 notifier_reconcile(struct notifier *,
		    const struct conf_notify *);

/*
 * cluster.c: several collectors sharing the tenants through etcd
 * ([cluster]).  Membership by leases, tenants spread by rendezvous
 * hashing, exclusive lease-backed owner keys, a shared delivered cursor.
 */
int		 cluster_start(struct relay *, char *, size_t);
void		 cluster_stop(struct relay *);
/* Apply a reloaded configuration (tenants added or removed). */
void		 cluster_reconcile(struct relay *);
/* For alertrelayctl status: members, owned tenants, etcd health. */
void		 cluster_status(struct relay *, struct buf *, bool json);

/* ctl.c: the control socket that alertrelayctl talks to. */
int		 ctl_start(struct relay *, char *, size_t);
void		 ctl_stop(struct relay *);

/* metrics.c: Prometheus text at /metrics on metrics_listen. */
int		 metrics_start(struct relay *, char *, size_t);
void		 metrics_stop(struct relay *);

/* sd.c: the systemd notify protocol and the watchdog. */
void		 sd_ready(struct relay *);
void		 sd_reloading(struct relay *);
void		 sd_stopping(struct relay *);
void		 sd_status(struct relay *);
void		 sd_start(struct relay *);	/* status + watchdog timer */
void		 sd_stop(struct relay *);

/* alertrelayd.c: the relay, owner of everything. */
struct relay {
	struct event_base *base;
	struct config	*conf;
	struct http	*http;
	struct tenant	**tenants;
	size_t		 ntenants;
	struct sink	**sinks;
	size_t		 nsinks;
	char		 hostname[256];
	int		 pid;
	int		 lock_fd;
	bool		 once;
	bool		 stopping;
	unsigned	 once_pending;	/* tenants not yet caught up */
	unsigned	 once_failed;
	uint64_t	 forwarded;
	struct notifier	**notifiers;
	size_t		 nnotifiers;
	struct event	*sig_term, *sig_int, *sig_hup;
	struct event	*once_timer;
	struct event	*stop_timer;
	struct event	*expiry_timer;	/* daily credential expiry check */
	struct cluster	*cluster;	/* cluster.c, NULL when standalone */
	int64_t		 stop_deadline;	/* monotonic ms */
	struct ctl	*ctl;		/* ctl.c */
	struct metrics	*metrics;	/* metrics.c */
	struct event	*sd_timer;	/* sd.c */
	int64_t		 started;	/* ticks */
	uint64_t	 reloads;
	struct buf	 reload_errors;	/* why the last reload was rejected */
	struct alert	 alert;		/* scratch: the alert being read */
	struct disk	*disk;		/* disk.c */
};

struct sink	*relay_sink_find(struct relay *, const char *);
struct tenant	*relay_tenant_find(struct relay *, const char *);
/* Re-read the configuration and apply it; -1 (logged) keeps the old. */
int		 relay_reload(struct relay *);
/* A tenant finished its first catch-up (or gave up) in --once mode. */
void		 relay_tenant_done(struct relay *, struct tenant *, bool ok);

#endif
