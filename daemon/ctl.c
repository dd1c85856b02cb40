/*
 * ctl: the control socket that alertrelayctl talks to, its protocol and
 * the dispatch to the commands (status, reload, cursor, backfill here;
 * status text in ctlstatus.c, check-tenant in check.c).
 *
 * Protocol.  A client connects to the AF_UNIX stream socket at
 * control_socket and sends one request line (at most 4 KiB, LF-ended) of
 * words separated by blanks:
 *
 *	status [--json]
 *	reload
 *	check-tenant NAME
 *	cursor show NAME
 *	cursor set NAME TIME
 *	backfill NAME FROM TO
 *
 * (lib/ctlproto.c parses the line.)  TIME, FROM and TO are ISO 8601
 * UTC ("2026-11-01T00:00:00Z", fractions allowed) or a bare date
 * ("2026-11-01", midnight UTC).  The daemon answers with lines
 * "TAG TEXT", where TAG is
 *
 *	o	a line for the client's standard output
 *	e	a line for its standard error
 *	p	a progress line (a terminal shows only the latest one)
 *	x	the last line: TEXT is the exit status (0 ok, 1 failed,
 *		64 usage)
 *
 * and then closes the connection.  The client keeps its end open until
 * it has read the "x" line: end of file from the client cancels the
 * command (a running backfill stops).  The request must arrive within
 * CTL_REQUEST_S seconds (an idle client is dropped then); a client that
 * stops reading for CTL_WRITE_S
 * seconds is dropped.  Secrets are never part of any answer.
 *
 * Access.  The socket is created mode 0600, so only the daemon's own
 * user (and root) can connect; in addition the peer's credentials
 * (SO_PEERCRED) must be uid 0 or the daemon's uid.  A stale socket file
 * left by a dead daemon is replaced; a live one is refused.
 *
 * Limits.  At most CTL_MAX_CLIENTS clients at once (more are told "busy"
 * and closed, logged once per busy spell); the request timeout drops idle
 * ones.  When accept() runs out of descriptors the listener pauses for
 * CTL_PAUSE_MS instead of spinning, and a spare descriptor takes the
 * waiting connection off the queue (as metrics.c does).
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <jansson.h>

#include "internal.h"
#include "ctlproto.h"

#define CTL_REQUEST_S	10
#define CTL_WRITE_S	30
#define CTL_MAX_CLIENTS	32		/* at once; more are refused */
#define CTL_PAUSE_MS	1000		/* accept paused when out of fds */

#define CTL_EXIT_OK	0
#define CTL_EXIT_FAIL	1
#define CTL_EXIT_USAGE	64

enum ctl_state {
	CTL_READ,		/* waiting for the request line */
	CTL_BUSY,		/* check-tenant or backfill running */
	CTL_CLOSING,		/* answer complete, flushing */
};

struct ctl_client {
	struct ctl		*ctl;		/* NULL once detached */
	struct relay		*relay;
	struct bufferevent	*bev;
	enum ctl_state		 state;
	struct check		*check;		/* check-tenant */
	/*
	 * The tenant whose backfill this client runs.  Every end of a
	 * backfill (done, failed, tenant stopped, reconfigured or freed)
	 * calls ctl_backfill_cb, which clears it: never a dangling pointer.
	 */
	struct tenant		*bf_tenant;
	char			*tname;		/* backfill's or cursor set's */
	/* cursor set: the tenant saving it, cleared by ctl_cursor_cb. */
	struct tenant		*cs_tenant;
	int64_t			 cs_ticks;
	TAILQ_ENTRY(ctl_client)	 entry;
};

TAILQ_HEAD(ctl_clients, ctl_client);

struct ctl {
	struct relay		*relay;
	char			*path;
	dev_t			 dev;
	ino_t			 ino;
	struct evconnlistener	*listener;
	struct ctl_clients	 clients;
	unsigned		 nclients;
	bool			 full_logged;	/* since it was last not full */
	struct event		*pause;		/* accept paused (EMFILE) */
	bool			 paused_logged;
	int			 spare_fd;	/* for EMFILE */
};

/* The client whose command is running (reload may stop the socket). */
static struct ctl_client *ctl_current;

static void	ctl_client_free(struct ctl_client *);
static void	ctl_close(struct relay *, const char *);

/* Client I/O. */

/* Send one "TAG TEXT" line; control characters become blanks. */
static void
ctl_vsend(struct ctl_client *c, char tag, const char *fmt, va_list ap)
{
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	buf_addc(&b, tag);
	buf_addc(&b, ' ');
	buf_vaddf(&b, fmt, ap);
	for (i = 2; i < b.len; i++)
		if ((unsigned char)b.data[i] < 0x20 || b.data[i] == 0x7f)
			b.data[i] = ' ';
	buf_addc(&b, '\n');
	bufferevent_write(c->bev, b.data, b.len);
	buf_clear(&b);
}

static void __attribute__((format(printf, 3, 4)))
ctl_send(struct ctl_client *c, char tag, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	ctl_vsend(c, tag, fmt, ap);
	va_end(ap);
}

/* Send multi-line text, one tagged line per line. */
static void
ctl_send_text(struct ctl_client *c, char tag, const char *text)
{
	const char	*p = text, *nl;

	while (*p != '\0') {
		if ((nl = strchr(p, '\n')) == NULL)
			nl = p + strlen(p);
		ctl_send(c, tag, "%.*s", (int)(nl - p), p);
		p = *nl == '\n' ? nl + 1 : nl;
	}
}

/* End the answer with the exit status; the connection closes once sent. */
static void
ctl_finish(struct ctl_client *c, int status)
{
	if (c->state == CTL_CLOSING)
		return;
	ctl_send(c, 'x', "%d", status);
	c->state = CTL_CLOSING;
}

static void
ctl_fail(struct ctl_client *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
ctl_fail(struct ctl_client *c, int status, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	ctl_vsend(c, 'e', fmt, ap);
	va_end(ap);
	ctl_finish(c, status);
}

static struct tenant *
ctl_tenant(struct ctl_client *c, const char *name)
{
	struct tenant	*t;

	if ((t = relay_tenant_find(c->relay, name)) == NULL)
		ctl_fail(c, CTL_EXIT_FAIL, "no tenant %s is polled by this "
		    "daemon (check the name, enabled and shard)", name);
	return t;
}

/* Commands. */

static void
cmd_status(struct ctl_client *c, int argc, char **argv)
{
	struct buf	 b;
	char		*s;

	if (argc == 2 && strcmp(argv[1], "--json") == 0) {
		s = ctl_status_json(c->relay, ts_now());
		ctl_send_text(c, 'o', s);
		free(s);
		ctl_finish(c, CTL_EXIT_OK);
		return;
	}
	if (argc != 1) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: status [--json]");
		return;
	}
	buf_init(&b);
	ctl_status_text(c->relay, ts_now(), &b);
	ctl_send_text(c, 'o', b.data);
	buf_clear(&b);
	ctl_finish(c, CTL_EXIT_OK);
}

static void
cmd_reload(struct ctl_client *c, int argc, char **argv)
{
	if (argc != 1) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: reload");
		return;
	}
	log_info("reload requested over the control socket");
	if (relay_reload(c->relay) == -1) {
		char	*line, *save = NULL, *copy;

		copy = xstrdup(c->relay->reload_errors.data != NULL ?
		    c->relay->reload_errors.data : "");
		for (line = strtok_r(copy, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			ctl_send(c, 'e', "%s", line);
		free(copy);
		ctl_fail(c, CTL_EXIT_FAIL, "reload rejected; the running "
		    "configuration stays in force");
		return;
	}
	ctl_send(c, 'o', "reload applied");
	ctl_finish(c, CTL_EXIT_OK);
}

/*
 * cursor set's save ended (ECANCELED: the tenant was removed).  A stop
 * answers before the tenants go (ctl_close_answer).
 */
static void
ctl_cursor_cb(void *arg, int error)
{
	struct ctl_client	*c = arg;
	char			 ts[40];

	c->cs_tenant = NULL;
	if (error == ECANCELED) {
		ctl_fail(c, CTL_EXIT_FAIL, "cursor set: tenant %s was removed "
		    "from the configuration while its state file was saved",
		    c->tname);
		return;
	}
	if (error != 0) {
		ctl_fail(c, CTL_EXIT_FAIL, "cursor set: cannot save the state "
		    "file of %s: %s; the cursor is unchanged (check the state "
		    "directory's disk, then try again)", c->tname,
		    strerror(error));
		return;
	}
	ts_format(c->cs_ticks, ts, sizeof(ts));
	ctl_send(c, 'o', "cursor of %s set to %s", c->tname, ts);
	ctl_finish(c, CTL_EXIT_OK);
}

static void
cmd_cursor(struct ctl_client *c, int argc, char **argv)
{
	struct tenant	*t;
	struct tenant_stats st;
	int64_t		 ticks;
	char		 err[256], ts[40];

	if (!((argc == 3 && strcmp(argv[1], "show") == 0) ||
	    (argc == 4 && strcmp(argv[1], "set") == 0))) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: cursor show NAME | "
		    "cursor set NAME TIME");
		return;
	}
	if ((t = ctl_tenant(c, argv[2])) == NULL)
		return;
	if (argc == 3) {
		tenant_stats(t, &st);
		if (st.cursor == TICKS_NONE)
			ctl_send(c, 'o', "none");
		else {
			ts_format(st.cursor, ts, sizeof(ts));
			ctl_send(c, 'o', "%s", ts);
		}
		ctl_finish(c, CTL_EXIT_OK);
		return;
	}
	if (ctlproto_time(argv[3], &ticks) == -1) {
		ctl_fail(c, CTL_EXIT_USAGE, "cursor set: \"%s\" is not a time; "
		    "use ISO 8601 UTC such as 2026-11-01T00:00:00Z", argv[3]);
		return;
	}
	if (ticks > ts_now() + 60 * TICKS_PER_SEC) {
		ctl_fail(c, CTL_EXIT_FAIL, "cursor set: %s is in the future",
		    argv[3]);
		return;
	}
	free(c->tname);
	c->tname = xstrdup(t->name);
	c->cs_ticks = ticks;
	if (tenant_cursor_set(t, ticks, ctl_cursor_cb, c, err,
	    sizeof(err)) == -1) {
		ctl_fail(c, CTL_EXIT_FAIL, "cursor set: %s", err);
		return;
	}
	c->cs_tenant = t;
	c->state = CTL_BUSY;
}

/* backfill */

static void
ctl_backfill_end(struct ctl_client *c)
{
	c->bf_tenant = NULL;
}

static void
ctl_backfill_cb(void *arg, int done, int ok, uint64_t pages, uint64_t seen,
    uint64_t forwarded, const char *error)
{
	struct ctl_client	*c = arg;
	const char		*name = c->tname;

	if (!done) {
		ctl_send(c, 'p', "backfill %s: %llu page%s, %llu alerts seen, "
		    "%llu forwarded", name, (unsigned long long)pages,
		    pages == 1 ? "" : "s", (unsigned long long)seen,
		    (unsigned long long)forwarded);
		return;
	}
	ctl_backfill_end(c);
	if (ok) {
		ctl_send(c, 'o', "backfill %s done: %llu page%s, %llu alerts "
		    "seen, %llu forwarded", name, (unsigned long long)pages,
		    pages == 1 ? "" : "s", (unsigned long long)seen,
		    (unsigned long long)forwarded);
		ctl_finish(c, CTL_EXIT_OK);
	} else
		ctl_fail(c, CTL_EXIT_FAIL, "backfill %s failed after %llu "
		    "page%s (%llu alerts seen, %llu forwarded): %s", name,
		    (unsigned long long)pages, pages == 1 ? "" : "s",
		    (unsigned long long)seen, (unsigned long long)forwarded,
		    error != NULL ? error : "unknown error");
}

static void
cmd_backfill(struct ctl_client *c, int argc, char **argv)
{
	struct tenant	*t;
	int64_t		 from, to;
	char		 err[256], f[40], e[40];

	if (argc != 4) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: backfill NAME FROM TO");
		return;
	}
	if (ctlproto_time(argv[2], &from) == -1 ||
	    ctlproto_time(argv[3], &to) == -1) {
		ctl_fail(c, CTL_EXIT_USAGE, "backfill: FROM and TO must be "
		    "ISO 8601 UTC times such as 2026-11-01T00:00:00Z");
		return;
	}
	if (from >= to) {
		ctl_fail(c, CTL_EXIT_USAGE, "backfill: FROM must be before TO");
		return;
	}
	if ((t = ctl_tenant(c, argv[1])) == NULL)
		return;
	free(c->tname);
	c->tname = xstrdup(t->name);
	c->bf_tenant = t;
	c->state = CTL_BUSY;
	if (tenant_backfill(t, from, to, ctl_backfill_cb, c, err,
	    sizeof(err)) == -1) {
		c->bf_tenant = NULL;
		ctl_fail(c, CTL_EXIT_FAIL, "backfill %s: %s", t->name, err);
		return;
	}
	if (c->bf_tenant == NULL)
		return;		/* finished at once */
	ts_format(from, f, sizeof(f));
	ts_format(to, e, sizeof(e));
	ctl_send(c, 'p', "backfill %s: reading %s to %s", t->name, f, e);
}

/* check-tenant's report: its lines to standard output, its end. */
static void
ctl_check_line_cb(void *arg, const char *line)
{
	ctl_send(arg, 'o', "%s", line);
}

static void
ctl_check_done_cb(void *arg, int status, const char *msg)
{
	struct ctl_client	*c = arg;

	c->check = NULL;
	if (msg != NULL)
		ctl_fail(c, status ? CTL_EXIT_FAIL : CTL_EXIT_OK, "%s", msg);
	else
		ctl_finish(c, status ? CTL_EXIT_FAIL : CTL_EXIT_OK);
}

static void
cmd_check_tenant(struct ctl_client *c, int argc, char **argv)
{
	const struct check_report rep = { ctl_check_line_cb,
	    ctl_check_done_cb, c };

	if (argc != 2) {
		ctl_fail(c, CTL_EXIT_USAGE, "usage: check-tenant NAME");
		return;
	}
	c->state = CTL_BUSY;
	c->check = check_start(c->relay, argv[1], &rep);
}

/* Run the request line (len bytes, without its LF). */
static void
ctl_dispatch(struct ctl_client *c, const char *line, size_t len)
{
	static void (*const cmds[])(struct ctl_client *, int, char **) = {
		[CTLPROTO_STATUS] = cmd_status,
		[CTLPROTO_RELOAD] = cmd_reload,
		[CTLPROTO_CHECK_TENANT] = cmd_check_tenant,
		[CTLPROTO_CURSOR] = cmd_cursor,
		[CTLPROTO_BACKFILL] = cmd_backfill,
	};
	struct ctlproto_req	*req;
	char			 err[128];

	req = xmalloc(sizeof(*req));
	if (ctlproto_parse(line, len, req, err, sizeof(err)) == -1)
		ctl_fail(c, CTL_EXIT_USAGE, "%s", err);
	else {
		log_debug("control socket: %s", req->argv[0]);
		ctl_current = c;
		cmds[req->cmd](c, req->argc, req->argv);
		ctl_current = NULL;
	}
	free(req);
}

/* Connection handling. */

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 len;

	if (c->state != CTL_READ) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CTLPROTO_MAX_REQUEST)
			ctl_fail(c, CTL_EXIT_USAGE, "request longer than %d "
			    "bytes", CTLPROTO_MAX_REQUEST);
		return;
	}
	/* Now only end of file matters (it cancels the command). */
	bufferevent_set_timeouts(bev, NULL, NULL);
	ctl_dispatch(c, line, len);
	free(line);
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client	*c = arg;

	if (c->state == CTL_CLOSING &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		ctl_client_free(c);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client	*c = arg;

	if (what & BEV_EVENT_TIMEOUT)
		log_debug("control socket: client timed out");
	ctl_client_free(c);
}

static bool
ctl_peer_allowed(int fd, uid_t *uid)
{
	struct ucred	 cr;
	socklen_t	 len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1) {
		log_warn("control socket: SO_PEERCRED");
		return false;
	}
	*uid = cr.uid;
	return cr.uid == 0 || cr.uid == geteuid();
}

/*
 * CTL_MAX_CLIENTS are connected: tell the new client why (a best-effort
 * write to a fresh socket) and close it.  Logged once per busy spell.
 */
static void
ctl_refuse(struct ctl *ctl, int fd)
{
	static const char msg[] = "e control socket busy: too many clients "
	    "connected, try again\nx 1\n";

	if (!ctl->full_logged)
		log_warnx("control socket %s: refusing connections: %d "
		    "clients already connected (the most allowed); idle "
		    "ones are dropped after %ds", ctl->path, CTL_MAX_CLIENTS,
		    CTL_REQUEST_S);
	ctl->full_logged = true;
	(void)send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

static void
ctl_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl	*ctl = arg;

	if (ctl->spare_fd == -1)
		ctl->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	evconnlistener_enable(ctl->listener);
}

/*
 * accept() failed.  Out of descriptors: take the waiting connection off
 * the queue with the spare one (so the listener is not woken for it
 * again), and pause accepting for a moment instead of spinning.
 */
static void
ctl_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct ctl	*ctl = arg;
	int		 e = EVUTIL_SOCKET_ERROR(), fd;
	struct timeval	 tv = { 0, CTL_PAUSE_MS * 1000 };

	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
		log_debug("control socket: accept: %s", strerror(e));
		return;
	}
	if (!ctl->paused_logged)
		log_warnx("control socket %s: cannot accept a connection: %s; "
		    "refusing connections for %d ms at a time (raise "
		    "LimitNOFILE= if this repeats)", ctl->path, strerror(e),
		    CTL_PAUSE_MS);
	ctl->paused_logged = true;
	if (ctl->spare_fd != -1) {
		close(ctl->spare_fd);
		ctl->spare_fd = -1;
		if ((fd = accept(evconnlistener_get_fd(l), NULL, NULL)) != -1)
			close(fd);
	}
	evconnlistener_disable(l);
	evtimer_add(ctl->pause, &tv);
}

static void
ctl_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct ctl		*ctl = arg;
	struct ctl_client	*c;
	struct timeval		 rtv = { CTL_REQUEST_S, 0 };
	struct timeval		 wtv = { CTL_WRITE_S, 0 };
	uid_t			 uid = (uid_t)-1;
	bool			 allowed;

	if (ctl->nclients >= CTL_MAX_CLIENTS) {
		ctl_refuse(ctl, fd);
		return;
	}
	ctl->full_logged = false;
	ctl->paused_logged = false;
	allowed = ctl_peer_allowed(fd, &uid);
	c = xcalloc(1, sizeof(*c));
	c->ctl = ctl;
	c->relay = ctl->relay;
	c->bev = bufferevent_socket_new(ctl->relay->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&ctl->clients, c, entry);
	ctl->nclients++;
	bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CTLPROTO_MAX_REQUEST + 2);
	bufferevent_set_timeouts(c->bev, &rtv, &wtv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (!allowed) {
		log_warnx("control socket: refused a client with uid %ld "
		    "(only root and uid %ld may connect)", (long)uid,
		    (long)geteuid());
		ctl_fail(c, CTL_EXIT_FAIL, "permission denied: only root and "
		    "the daemon's user may use the control socket");
	}
}

static void
ctl_client_free(struct ctl_client *c)
{
	if (c == ctl_current) {
		/* Freed after its command returns, from the write path. */
		c->state = CTL_CLOSING;
		return;
	}
	if (c->bf_tenant != NULL) {
		log_tenant(LOG_INFO, c->tname, "alertrelayctl "
		    "went away, cancelling the backfill");
		tenant_backfill_cancel(c->bf_tenant);
	}
	if (c->cs_tenant != NULL)
		tenant_cursor_detach(c->cs_tenant);	/* it is still saved */
	ctl_backfill_end(c);
	check_free(c->check);
	if (c->ctl != NULL) {
		TAILQ_REMOVE(&c->ctl->clients, c, entry);
		c->ctl->nclients--;
	}
	bufferevent_free(c->bev);
	free(c->tname);
	free(c);
}

/* Listening. */

/* Is a socket at path answered by a live process?  -1 on other errors. */
static int
ctl_socket_live(const char *path, const struct sockaddr_un *sun)
{
	int	 fd, rc;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (rc == 0)
		return 1;
	return errno == ECONNREFUSED ? 0 : -1;
}

/* Replace a stale socket file; refuse a live one or a non-socket. */
static int
ctl_clear_path(const char *path, const struct sockaddr_un *sun, char *err,
    size_t elen)
{
	struct stat	 st;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : (snprintf(err, elen, "control "
		    "socket %s: %s", path, strerror(errno)), -1);
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, elen, "control socket %s: exists and is not a "
		    "socket; remove it or set control_socket", path);
		return -1;
	}
	switch (ctl_socket_live(path, sun)) {
	case 1:
		snprintf(err, elen, "control socket %s: another alertrelayd "
		    "owns it (it answers); stop it or set control_socket",
		    path);
		return -1;
	case -1:
		snprintf(err, elen, "control socket %s: %s", path,
		    strerror(errno));
		return -1;
	}
	log_info("removing stale control socket %s", path);
	if (unlink(path) == -1 && errno != ENOENT) {
		snprintf(err, elen, "cannot remove stale control socket %s: "
		    "%s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
ctl_bind(const char *path, struct sockaddr_un *sun, char *err, size_t elen)
{
	int	 fd, rc, saved;
	mode_t	 old;
	char	*dir, *slash;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		snprintf(err, elen, "control socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)sun, sizeof(*sun));
	saved = errno;
	umask(old);
	if (rc == -1) {
		dir = xstrdup(path);
		if ((slash = strrchr(dir, '/')) != NULL)
			*slash = '\0';
		if (saved == ENOENT)
			snprintf(err, elen, "cannot create control socket %s: "
			    "directory %s does not exist (under systemd, "
			    "RuntimeDirectory= creates it)", path,
			    slash != NULL && *dir ? dir : ".");
		else
			snprintf(err, elen, "cannot create control socket %s: "
			    "%s", path, strerror(saved));
		free(dir);
		close(fd);
		return -1;
	}
	if (chmod(path, 0600) == -1 || listen(fd, 64) == -1) {
		snprintf(err, elen, "control socket %s: %s", path,
		    strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

int
ctl_start(struct relay *r, char *err, size_t elen)
{
	struct ctl		*ctl;
	struct sockaddr_un	 sun;
	struct stat		 st;
	const char		*path = r->conf->daemon.control_socket;
	int			 fd;

	if (r->ctl != NULL)
		ctl_close(r, "a reload moved the control socket");
	if (path == NULL || *path == '\0')
		return 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, elen, "control socket %s: path longer than %zu "
		    "bytes", path, sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (ctl_clear_path(path, &sun, err, elen) == -1 ||
	    (fd = ctl_bind(path, &sun, err, elen)) == -1)
		return -1;
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->relay = r;
	ctl->path = xstrdup(path);
	TAILQ_INIT(&ctl->clients);
	if (stat(path, &st) == 0) {
		ctl->dev = st.st_dev;
		ctl->ino = st.st_ino;
	}
	ctl->listener = evconnlistener_new(r->base, ctl_accept_cb, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (ctl->listener == NULL) {
		snprintf(err, elen, "control socket %s: cannot listen", path);
		close(fd);
		unlink(path);
		free(ctl->path);
		free(ctl);
		return -1;
	}
	evconnlistener_set_error_cb(ctl->listener, ctl_accept_error_cb);
	ctl->pause = evtimer_new(r->base, ctl_resume_cb, ctl);
	ctl->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	r->ctl = ctl;
	log_debug("control socket on %s", path);
	return 0;
}

/*
 * The socket closes (why: the daemon stops, or a reload moved it): a
 * command still running gets its last lines now, and what is queued for
 * the client goes to the socket at once (a small write to a local
 * socket), instead of the connection closing without an answer.
 */
static void
ctl_close_answer(struct ctl_client *c, const char *why)
{
	struct evbuffer	*out = bufferevent_get_output(c->bev);

	if (c->cs_tenant != NULL)
		ctl_fail(c, CTL_EXIT_FAIL, "cursor set: %s; the state file of "
		    "%s with the new cursor is still written", why, c->tname);
	else if (c->state == CTL_BUSY)
		ctl_fail(c, CTL_EXIT_FAIL, "%s; the command did not finish "
		    "(run it again)", why);
	/*
	 * The bufferevent keeps its buffer's front frozen (only it writes);
	 * it is freed right after this.
	 */
	if (evbuffer_get_length(out) == 0)
		return;
	evbuffer_unfreeze(out, 1);
	if (evbuffer_write(out, bufferevent_getfd(c->bev)) == -1 ||
	    evbuffer_get_length(out) > 0)
		log_debug("control socket: the last answer to a client was "
		    "cut short (the control socket closed)");
}

static void
ctl_close(struct relay *r, const char *why)
{
	struct ctl		*ctl = r->ctl;
	struct ctl_client	*c;
	struct stat		 st;

	if (ctl == NULL)
		return;
	r->ctl = NULL;
	evconnlistener_free(ctl->listener);
	/* Remove the file only if it is still ours. */
	if (stat(ctl->path, &st) == 0 && st.st_dev == ctl->dev &&
	    st.st_ino == ctl->ino)
		unlink(ctl->path);
	while ((c = TAILQ_FIRST(&ctl->clients)) != NULL) {
		TAILQ_REMOVE(&ctl->clients, c, entry);
		c->ctl = NULL;
		if (c != ctl_current) {
			ctl_close_answer(c, why);
			ctl_client_free(c);
		}
	}
	event_free(ctl->pause);
	if (ctl->spare_fd != -1)
		close(ctl->spare_fd);
	free(ctl->path);
	free(ctl);
}

void
ctl_stop(struct relay *r)
{
	ctl_close(r, "alertrelayd is stopping");
}
