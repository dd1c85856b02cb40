/*
 * alertrelayd internals shared by the files in daemon/, one section each
 * (named internal.h, not after any one .c file: it belongs to no room).
 *
 * The ownership rule every file here follows is at the top of
 * alertrelayd.h.
 */
#ifndef AR_INTERNAL_H
#define AR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "alert.h"
#include "pagesplit.h"
#include "backoff.h"
#include "conf.h"
#include "encode.h"
#include "log.h"
#include "spool.h"
#include "state.h"
#include "util.h"

struct relay;
struct catchup;
struct ireader;
struct evdns_base;
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
typedef void	(*cursor_set_cb)(void *arg, int error);	/* tenant.c */

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
/*
 * Read path (at most max bytes) on the worker, after every item submitted
 * before (so after the saves of that file already queued); cb(arg, 0 or
 * errno, the contents) from the loop.  A missing file is ENOENT.
 */
typedef void	(*disk_loaded_cb)(void *arg, int error, const struct buf *);
struct disk_work *disk_load(struct disk *, const char *path, size_t max,
		    disk_loaded_cb, void *);
/* The owner goes away: a save still happens; cb is never called. */
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
	const char	*deprecation;	/* Deprecation header, or NULL */
	const char	*sunset;	/* Sunset header, or NULL */
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
	const char *const *headers;	/* more "Name: value" lines, NULL-
					   terminated (copied), or NULL */
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

/* sink.c: one output's spool and its connection to the SIEM. */
struct sink;

struct sink_stats {
	bool		 connected;
	uint64_t	 spool_bytes;
	uint64_t	 spool_records;
	uint64_t	 sent;		/* acknowledged (see sink_delivered) */
	uint64_t	 reconnects;
	char		 last_error[512]; /* why it is down; "" when up */
	uint64_t	 inflight;	/* sent, acknowledgement pending */
	uint64_t	 resends;	/* sent again after a broken link */
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
/* The same for one alert's event: TENANT/ALERT_ID keys kafka messages. */
int		 sink_enqueue_alert(struct sink *, const char *tenant,
		    const char *id, size_t idlen, const char *, size_t);
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
/*
 * The relay's asynchronous resolver for host names (not owned); without
 * one only numeric addresses work.  Set before the first connection.
 */
void		 sink_set_resolver(struct sink *, struct evdns_base *);
/*
 * The disk thread runs the spool's writes and syncs from now on (a spool
 * handed over by a reload keeps its own).  Set before the first record.
 */
void		 sink_set_disk(struct sink *, struct disk *);
/* cb(arg) from the loop each time the last undelivered record is. */
void		 sink_on_drained(struct sink *, void (*)(void *), void *);
/*
 * Nothing more will be queued (--once done, or stopping): once every
 * record is written, half-close the connection so that the SIEM's own
 * close confirms them instead of the acknowledgement hold.
 */
void		 sink_finish(struct sink *);

/*
 * token.c: per-tenant OAuth2 client-credentials token cache.  The token
 * is embedded in its tenant; the one request in flight is the token's
 * and is cancelled by token_reset and tenant_free.  Its answer goes to
 * done_cb (set by the tenant), which looks up who waits at that moment.
 */
#define TOKEN_FP_LEN	32

struct tenant;

struct token {
	char		*access;	/* secret: cleared on free */
	int64_t		 expires_ms;	/* monotonic */
	int64_t		 wall_expires;	/* ticks, for status */
	struct http_req	*req;		/* refresh in flight */
	/* The answer, an enum token_result; the token never sets tenant
	   state: the tenant acts on the result. */
	void		(*done_cb)(struct tenant *, int);
	unsigned char	 cred_fp[TOKEN_FP_LEN];	/* the tenant's credentials */
	unsigned char	 fp[TOKEN_FP_LEN];	/* what access was issued for */
	unsigned char	 req_fp[TOKEN_FP_LEN];	/* what req was made for */
	int64_t		 cred_expires;	/* epoch s: certificate notAfter or
					   secret_expires, earliest; 0 unknown */
};

/* What done_cb hears. */
enum token_result {
	TOKEN_OK = 0,		/* a token is there */
	TOKEN_FAILED = -1,	/* failed (logged); retrying may help */
	TOKEN_REJECTED = -2,	/* the credentials were refused (logged):
				   retrying cannot help */
};

/*
 * A token valid for at least the refresh margin and issued for the
 * tenant's current credentials, or NULL.
 */
const char	*token_current(struct tenant *);
/*
 * Start a refresh unless one is in flight; done_cb(t, TOKEN_OK) once a
 * token is there, TOKEN_FAILED or TOKEN_REJECTED on failure (already
 * logged, tenant's error set), possibly before this returns.
 */
void		 token_refresh(struct tenant *);
/* Drop the cached token (a 401); a refresh in flight carries on. */
void		 token_invalidate(struct tenant *);
/* Credentials changed: drop the token and cancel the request (no cb). */
void		 token_reset(struct tenant *);
/* SHA-256 over everything that identifies the credentials. */
void		 token_fingerprint(const struct conf_tenant *, unsigned char *);
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

/*
 * What a tenant tells its owner (the relay), given at tenant_new: the
 * tenant never calls up into relay.c.
 */
struct tenant_ops {
	/* --once: the tenant caught up (ok) or gave up. */
	void	(*done)(struct relay *, struct tenant *, bool ok);
};

struct tenant {
	struct relay	*relay;
	const struct tenant_ops *ops;
	struct conf_tenant *conf;	/* borrowed from relay->conf */
	char		*name;
	char		*state_path;
	struct tenant_state state;
	bool		 state_unsaved;	/* a save failed: retry */
	bool		 state_bad;	/* state file unusable: failed until
					   alertrelayctl cursor set */
	bool		 spool_failing;	/* a spool write failed (logged) */
	/* cursor set: its state-file save in flight, on the disk thread. */
	struct disk_work *cursor_work;
	int64_t		 cursor_ticks;
	bool		 cursor_renew;	/* a fresh file for a bad one */
	bool		 cursor_missed;	/* a poll fell due meanwhile */
	cursor_set_cb	 cursor_cb;
	void		*cursor_arg;
	struct commit	*commits;	/* page commits in flight (commit.c) */
	unsigned	 ncommits;
	bool		 unsynced;	/* queued records no commit covers */
	struct token	 token;
	enum tenant_phase phase;
	struct event	*timer;
	struct sink	**sinks;	/* routed outputs */
	size_t		 nsinks;

	struct catchup	*live;		/* the poller's catch-up */
	struct catchup	*backfill;	/* running backfill, or NULL */
	struct ireader	*incidents;	/* incidents = yes: their reader,
					   run after each live catch-up */
	bool		 incidents_active; /* it is reading (or waiting) */
	bool		 incidents_done; /* read this round */

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
	bool		 lagging;	/* past lag_warning (relay.c) */
	bool		 top_noticed;	/* the Graph $top clamp was logged */
	int64_t		 sunset_day;	/* day (epoch) of the last
					   Deprecation/Sunset warning */
	uint64_t	 forwarded;
	uint64_t	 polls;
	uint64_t	 polls_ok;	/* catch-ups completed */
	uint64_t	 polls_failed;	/* attempts ended by an error */
	uint64_t	 http_status[6]; /* [0] transport error, [n] nxx */
};

/* Progress of a backfill: after each page, and once with done = 1. */
typedef void (*backfill_cb)(void *arg, int done, int ok, uint64_t pages,
		    uint64_t seen, uint64_t forwarded, const char *error);

/*
 * Never NULL: a tenant whose state file cannot be read is created failed
 * (state_bad, logged), and alertrelayctl cursor set recovers it.
 */
struct tenant	*tenant_new(struct relay *, const struct tenant_ops *,
		    struct conf_tenant *, char *, size_t);
/* Adopt a new configuration (reload); conf must outlive the tenant. */
void		 tenant_reconcile(struct tenant *, struct conf_tenant *);
/* Set the live cursor (ticks) and save it; -1 with err while busy. */
/*
 * cursor set: -1 with err when refused; else 0, and the state file is
 * saved on the disk thread: cb(arg, 0 or errno) from the loop once it is
 * (never from this call).  The tenant does not poll meanwhile.  detach:
 * the operator went away; the save still happens, cb is never called.
 * tenant_free calls cb with ECANCELED.
 */
int		 tenant_cursor_set(struct tenant *, int64_t, cursor_set_cb,
		    void *, char *, size_t);
void		 tenant_cursor_detach(struct tenant *);
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

/*
 * A tenant as the services above the relay see it (metrics.c, ctl.c's
 * status; chrony's reports.h pattern): filled by tenant_stats, read
 * without touching struct tenant.  Never holds a secret: of the access
 * token only when it expires.  name is the tenant's, valid while it is.
 */
struct tenant_stats {
	const char	*name;
	const char	*label;
	bool		 enabled;
	bool		 state_bad;	/* its state file cannot be used */
	bool		 lagging;	/* no catch-up for lag_warning */
	bool		 backfilling;	/* a backfill is running */
	bool		 owned;		/* polled by this member (cluster) */
	bool		 failing;	/* announced as failing */
	bool		 auth_failed;
	enum tenant_phase phase;
	uint64_t	 polls, polls_ok, polls_failed;
	uint64_t	 forwarded;
	uint64_t	 http_status[6]; /* [0] transport error, [n] nxx */
	int64_t		 cursor;	/* ticks, TICKS_NONE before the first */
	int64_t		 last_success;	/* ticks, 0 before the first */
	int64_t		 token_expires;	/* ticks; 0: no token cached */
	int64_t		 cred_expires;	/* epoch s; 0 unknown */
	const char	*credential;	/* "certificate" or "secret" */
	char		 last_error[512];
};

void		 tenant_stats(const struct tenant *, struct tenant_stats *);
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
/*
 * Cluster checkpoints of incidents: false unless incidents = yes; their
 * cursor (TICKS_NONE: none yet) and dedupe set (borrowed).  _set adopts
 * another member's (takes seen's entries), before tenant_own.
 */
bool		 tenant_incidents_get(const struct tenant *, int64_t *,
		    const struct dedupe **);
void		 tenant_incidents_set(struct tenant *, int64_t,
		    struct dedupe *);
void		 tenant_start(struct tenant *);
/*
 * An answer carried Deprecation or Sunset: warn, once per tenant per day,
 * with the dates (token.c and tenant.c call it for every answer).
 */
void		 tenant_note_sunset(struct tenant *, const struct http_result *,
		    const char *what);

/*
 * reader.c: what the tenant's two readers share (tenant.c's alerts
 * catch-up, ireader.c's incidents).  Below both: it calls neither.
 */
#define PAUSE_CHECK_MS		1000
#define MAX_ALERT_BYTES		(16 * 1024 * 1024)
/* A page of 10,000 alerts is ~40 MB; far larger bodies are hostile. */
#define MAX_PAGE_BYTES		((size_t)512 * 1024 * 1024)
/* A cursor never moves further ahead of this host's clock. */
#define FUTURE_MAX_TICKS	(5 * 60 * TICKS_PER_SEC)

/* Set the tenant's last error (and log it once, with fields). */
void		 tenant_error(struct tenant *, int prio, const struct log_ctx *,
		    const char *, ...) __attribute__((format(printf, 4, 5)));
/* Set the phase and arm the tenant's timer. */
void		 tenant_schedule(struct tenant *, enum tenant_phase, int64_t);
/* The state file cannot be read: this tenant stops alone (logged). */
void		 tenant_state_failed(struct tenant *, const char *err);
/* Forget what was read but not committed; -1 when the file is bad. */
int		 tenant_state_reread(struct tenant *);
/* Is a routed output's spool full?  Logs the pause (unless quiet). */
bool		 tenant_outputs_full(struct tenant *, bool quiet);
const char *const *tenant_headers(const struct tenant *);
void		 tenant_event_meta(const struct tenant *, int updated,
		    struct event_meta *);
/* A GET to the tenant's API with its token, headers and timeouts. */
struct http_req	*tenant_api_get(const struct tenant *, const char *url,
		    const char *tok, size_t max_body, http_data_cb,
		    http_done_cb, void *arg);
/* Writes one event for an output (event_encode()'s arguments). */
typedef int	(*reader_encode_fn)(struct buf *, const struct conf_output *,
		    const void *ev, const struct event_meta *,
		    const char *hostname, int pid);
/*
 * Encode one version (ev, by enc) for every routed output and queue it;
 * -1 with err set ("output N: cannot queue <what> in spool: ...").
 */
int		 reader_enqueue(struct tenant *, const char *what,
		    const char *id, size_t idlen, reader_encode_fn,
		    const void *ev, const struct event_meta *, char *err,
		    size_t errlen);
/*
 * commit.c: a page's commit off the loop.  Every routed output's and
 * every notifier's spool is synced on the disk thread, then (save) the
 * tenant's state as it is now is saved there; done(arg, 0, NULL) from the
 * loop once all of it is durable, never from commit_start, or done(arg,
 * errno, output) when an output's spool could not be written (nothing
 * saved).  The tenant owns the commit; a reader that goes away detaches
 * it (done is never called; the commit still finishes).
 */
struct commit;
typedef void	(*commit_done_cb)(void *arg, int error, const char *output);
struct commit	*commit_start(struct tenant *, bool save, commit_done_cb,
		    void *);
void		 commit_detach(struct commit *);	/* NULL: no-op */
/* tenant_free: its commits finish without it. */
void		 commit_tenant_gone(struct tenant *);
/* Feed a body piece to a page split; -1 with err set (if still ""). */
int		 reader_feed(struct pagesplit *, const char *, size_t,
		    char *err, size_t errlen);
/* Count an answer's status class in t->http_status. */
void		 tenant_count_status(struct tenant *,
		    const struct http_result *);
/*
 * Does a nextLink stay on api_url's origin (the token goes nowhere
 * else)?  got: the link's origin, or "" when it has none.
 */
bool		 reader_link_home(const struct tenant *, const char *link,
		    char *got, size_t len);

/*
 * ireader.c: the incident reader (incidents = yes).  It reports its two
 * ends to the tenant through the ops given at creation.
 */
struct ireader_ops {
	void	(*done)(struct tenant *);	/* incidents read: poll done */
	void	(*backoff)(struct tenant *, int64_t retry_after_ms,
		    bool counts);		/* an error ended the reading */
};

void		 ireader_free(struct ireader *);
void		 ireader_start(struct ireader *);
void		 ireader_fetch(struct ireader *);
/* The token's answer, if the reader waits for one. */
void		 ireader_token_cb(struct ireader *, int rc);
/* Commit a page cut short by a stop; it finishes on its own. */
void		 ireader_commit_cut(struct ireader *);
/* Cancel its request; true if it had read part of a page. */
bool		 ireader_abandon(struct ireader *);
/* incidents = yes/no on a reload; true if a partial page was dropped. */
bool		 ireader_reconcile(struct tenant *, const struct ireader_ops *);

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
 * Queue and sync the mail of one incident version on every notifier whose
 * events, min_severity and tenants want it (best effort: logged).
 */
void		 notifiers_incident(struct notifier **, size_t,
		    const struct incident *, const struct event_meta *);

/*
 * etcd.c: an etcd v3 client over the JSON gateway: transactions, one
 * lease kept alive, failover between endpoints.  Results go to the
 * callback given with each call, from the loop, never from the call.
 */
struct etcd;
struct etcd_req;
struct etcd_txn;

enum etcd_branch {
	ETCD_THEN,		/* every compare held */
	ETCD_ELSE,
};

struct etcd_kv {
	char		*key;
	char		*value;		/* NULL if not base64 */
	int64_t		 lease;
};

/* What one response of a transaction read (empty unless a range). */
struct etcd_range {
	struct etcd_kv	*kvs;
	size_t		 nkvs;
};

/* A transaction's outcome, valid during the callback only. */
struct etcd_txn_result {
	const char	*error;		/* NULL: it ran (already logged) */
	bool		 succeeded;	/* which branch ran */
	int64_t		 revision;
	struct etcd_range *ranges;	/* one per operation of the branch */
	size_t		 nranges;
};
typedef void	(*etcd_txn_cb)(const struct etcd_txn_result *, void *);

enum etcd_lease_event {
	ETCD_LEASE_NEW,		/* the lease changed: granted, or 0 (gone) */
	ETCD_LEASE_UP,		/* confirmed, after not being confirmed */
	ETCD_LEASE_RENEWED,	/* confirmed again */
	ETCD_LEASE_LOST,	/* no longer confirmed: why */
};
typedef void	(*etcd_lease_cb)(enum etcd_lease_event, const char *why,
		    void *);

struct etcd_stats {
	char		 endpoint[256];	/* in use */
	bool		 healthy;
	int64_t		 last_ok;	/* ticks, 0: never */
	char		 last_error[256];
	uint64_t	 requests;
	uint64_t	 failures;
	int64_t		 lease;		/* 0: none */
	bool		 lease_ok;
	int64_t		 lease_sent;	/* mono ms: last confirmed keepalive */
};

/* cc (endpoints, TLS files) is borrowed until etcd_set_conf/etcd_free. */
struct etcd	*etcd_new(struct event_base *, const struct conf_cluster *);
void		 etcd_set_conf(struct etcd *, const struct conf_cluster *);
void		 etcd_free(struct etcd *);
struct etcd_txn	*etcd_txn_new(void);
void		 etcd_txn_free(struct etcd_txn *);
void		 etcd_txn_cmp_absent(struct etcd_txn *, const char *key);
void		 etcd_txn_cmp_lease(struct etcd_txn *, const char *key,
		    int64_t lease);
void		 etcd_txn_put(struct etcd_txn *, enum etcd_branch,
		    const char *key, const char *value, int64_t lease);
/* Read key, or every key starting with it (prefix). */
void		 etcd_txn_range(struct etcd_txn *, enum etcd_branch,
		    const char *key, bool prefix);
void		 etcd_txn_delete(struct etcd_txn *, enum etcd_branch,
		    const char *key);
size_t		 etcd_txn_nops(const struct etcd_txn *, enum etcd_branch);
/* Send t (takes ownership); cb once, later, unless etcd_cancel. */
struct etcd_req	*etcd_txn_send(struct etcd *, struct etcd_txn *,
		    const char *what, int64_t timeout_ms, etcd_txn_cb, void *);
void		 etcd_cancel(struct etcd *, struct etcd_req *);
/* Grant a lease of ttl_ms and keep it alive; cb tells what happens. */
void		 etcd_lease_start(struct etcd *, int64_t ttl_ms, etcd_lease_cb,
		    void *);
int64_t		 etcd_lease(const struct etcd *);
bool		 etcd_lease_ok(const struct etcd *);
unsigned	 etcd_fails(const struct etcd *);	/* in a row */
void		 etcd_stats(const struct etcd *, struct etcd_stats *);
/*
 * At exit: run t (taken; NULL: none), then revoke the lease, blocking
 * for at most budget_ms.  0, or -1 with err when t did not run.
 */
int		 etcd_finish(struct etcd *, struct etcd_txn *, int64_t budget_ms,
		    char *err, size_t errlen);

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
/* ctlstatus.c: alertrelayctl status, text (appended) or JSON (freed). */
void		 ctl_status_text(struct relay *, int64_t, struct buf *);
char		*ctl_status_json(struct relay *, int64_t);
/* check.c: check-tenant, reporting only through these callbacks. */
struct check;
struct check_report {
	void	(*line_cb)(void *, const char *);	/* for stdout */
	/* The end: exit status and a last line for stderr (or NULL). */
	void	(*done_cb)(void *, int, const char *);
	void	*arg;
};
/* NULL when the check ended at once (done_cb has been called). */
struct check	*check_start(struct relay *, const char *,
		    const struct check_report *);
/* Cancel a running check without calling back; NULL is a no-op. */
void		 check_free(struct check *);

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

/* relay.c: the relay core, owner of tenants, outputs and notifiers. */
/*
 * How the relay tells the services above it (alertrelayd.c's main) of a
 * reload and a stop: given before relay_setup, never NULL.
 */
struct relay_hooks {
	void	(*reloading)(struct relay *);	/* a reload begins */
	/* Applied: r->conf is the new configuration, old still valid. */
	void	(*applied)(struct relay *, const struct config *old);
	void	(*ready)(struct relay *);	/* a reload ended, either way */
	void	(*stopping)(struct relay *);	/* relay_stop began */
};

/* How long a stop keeps delivering to connected outputs. */
#define STOP_DEADLINE_S	10

struct relay {
	const struct relay_hooks *hooks;
	struct event_base *base;
	struct config	*conf;
	struct http	*http;
	struct evdns_base *dns;		/* outputs' host names (sink.c) */
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
	struct event	*once_timer;
	struct event	*stop_timer;
	struct event	*expiry_timer;	/* daily credential expiry check */
	struct event	*lag_timer;	/* lag_warning check */
	int64_t		 tenants_added;	/* ticks: last reload adding one */
	/*
	 * The API rate budgets of tenants a reload removed, by name, for an
	 * hour: removing and adding a tenant back does not reset what the
	 * API counts against us.
	 */
	struct rate_kept *rates_kept;
	size_t		 nrates_kept;
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
	unsigned	 commits;	/* page commits in flight (reader.c) */
};

struct sink	*relay_sink_find(struct relay *, const char *);
struct tenant	*relay_tenant_find(struct relay *, const char *);
/* Re-read the configuration and apply it; -1 (logged) keeps the old. */
int		 relay_reload(struct relay *);
/*
 * Build everything the configuration names (outputs, notifiers, tenants):
 * 0, else an exit code (logged).  relay_free frees what was built.
 */
int		 relay_setup(struct relay *, struct config *, bool once);
/* Start the timers and the tenants (cluster mode: the cluster does). */
void		 relay_start(struct relay *);
/* SIGTERM: stop the tenants, deliver what is queued, then exit. */
void		 relay_stop(struct relay *);
void		 relay_free(struct relay *);

#endif
