/*
 * Unit tests for daemon/ctl.c (the control socket and its commands), its
 * ctlstatus.c and check.c, and
 * daemon/metrics.c (the Prometheus exposition), on a relay built by hand
 * with stubs for the tenant, sink and http functions they call.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../daemon/ctl.c"
#include "../../daemon/ctlstatus.c"
#include "../../daemon/check.c"
#include "../../daemon/metrics.c"

#define SECRET	"S3cr3t-never-shown"

/* Stubs: sink.c, tenant.c, http.c and alertrelayd.c are not linked. */
struct sink {
	struct conf_output	*co;
	struct sink_stats	 st;
};

void
sink_stats(const struct sink *s, struct sink_stats *st)
{
	*st = s->st;
}

const struct conf_output *
sink_conf(const struct sink *s)
{
	return s->co;
}

const char *
tenant_phase_name(enum tenant_phase p)
{
	static const char *names[] = { "idle", "token", "fetching",
	    "backoff", "paused", "stopped" };

	return names[p];
}

static int	 stub_reload_rc;
static char	*stub_reload_path;	/* reload moves the socket */
static int	 stub_cursor_rc;
static int64_t	 stub_cursor;
static backfill_cb stub_bf_cb;
static void	*stub_bf_arg;
static int	 stub_bf_cancelled;

bool
tenant_owned(const struct tenant *t)
{
	return t->owned;
}

/* The real one is in tenant.c (metrics.c reads tenants through it). */
void
tenant_stats(const struct tenant *t, struct tenant_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->name = t->name;
	st->label = t->conf->label;
	st->enabled = t->conf->enabled;
	st->state_bad = t->state_bad;
	st->lagging = t->lagging;
	st->backfilling = t->backfill != NULL;
	st->owned = t->owned;
	st->failing = t->failing;
	st->auth_failed = t->auth_failed;
	st->phase = t->phase;
	st->polls = t->polls;
	st->polls_ok = t->polls_ok;
	st->polls_failed = t->polls_failed;
	st->forwarded = t->forwarded;
	memcpy(st->http_status, t->http_status, sizeof(st->http_status));
	st->cursor = t->state.cursor;
	st->last_success = t->last_success;
	st->token_expires = t->token.access != NULL ? t->token.wall_expires :
	    0;
	st->cred_expires = t->token.cred_expires;
	st->credential = t->conf->certificate_file != NULL ? "certificate" :
	    "secret";
	snprintf(st->last_error, sizeof(st->last_error), "%s",
	    t->last_error);
}

/* The real one is in token.c (covered by the integration cases). */
int
token_request_build(const struct conf_tenant *ct, struct buf *url,
    struct buf *form, char *err, size_t errlen)
{
	if (ct->certificate_file != NULL) {
		snprintf(err, errlen, "certificate auth not in this test");
		return -1;
	}
	buf_addf(url, "%s/%s/oauth2/v2.0/token", ct->login_url,
	    ct->tenant_id);
	buf_addf(form, "grant_type=client_credentials&client_id=%s&scope=",
	    ct->client_id);
	http_urlencode(form, ct->scope);
	buf_adds(form, "&client_secret=");
	http_urlencode(form, ct->client_secret);
	return 0;
}

void
cluster_status(struct relay *r, struct buf *b, bool json)
{
	buf_adds(b, json ? "{}" : "cluster: none\n");
}

int
relay_reload(struct relay *r)
{
	char	 err[256];

	if (stub_reload_rc == 0)
		r->reloads++;
	else {
		buf_reset(&r->reload_errors);
		buf_adds(&r->reload_errors, "x.conf:3: unknown key \"bogus\"\n");
	}
	if (stub_reload_path != NULL) {
		/* What reload_services does when control_socket changes. */
		r->conf->daemon.control_socket = stub_reload_path;
		assert_int_equal(ctl_start(r, err, sizeof(err)), 0);
	}
	return stub_reload_rc;
}

struct tenant *
relay_tenant_find(struct relay *r, const char *name)
{
	size_t	 i;

	for (i = 0; i < r->ntenants; i++)
		if (strcmp(r->tenants[i]->name, name) == 0)
			return r->tenants[i];
	return NULL;
}

/* cursor set's save: answered from the loop, or held (stub_cs_hold). */
static cursor_set_cb	 stub_cs_cb;
static void		*stub_cs_arg;
static int		 stub_cs_hold, stub_cs_err, stub_cs_detached;

static void
stub_cs_end(evutil_socket_t fd, short what, void *arg)
{
	cursor_set_cb	 cb = stub_cs_cb;

	stub_cs_cb = NULL;
	if (cb != NULL)
		cb(stub_cs_arg, stub_cs_err);
}

int
tenant_cursor_set(struct tenant *t, int64_t ticks, cursor_set_cb cb,
    void *arg, char *err, size_t elen)
{
	if (stub_cursor_rc == -1) {
		snprintf(err, elen, "tenant %s is busy", t->name);
		return -1;
	}
	stub_cursor = ticks;
	t->state.cursor = ticks;
	stub_cs_cb = cb;
	stub_cs_arg = arg;
	if (!stub_cs_hold)
		event_base_once(t->relay->base, -1, EV_TIMEOUT, stub_cs_end,
		    NULL, NULL);
	return 0;
}

void
tenant_cursor_detach(struct tenant *t)
{
	stub_cs_detached++;
	stub_cs_cb = NULL;
}

int
tenant_backfill(struct tenant *t, int64_t from, int64_t to, backfill_cb cb,
    void *arg, char *err, size_t elen)
{
	stub_bf_cb = cb;
	stub_bf_arg = arg;
	t->backfill = (void *)t;	/* any non-NULL marker */
	return 0;
}

void
tenant_backfill_cancel(struct tenant *t)
{
	stub_bf_cancelled++;
	t->backfill = NULL;
}

struct http_req {
	int	 n;
};
static struct http_req	 stub_req;
static struct http_opts	 stub_opts;
static char		 stub_body[4096];
static char		 stub_url[512];
static int		 stub_cancelled;

struct http_req *
http_request(struct http *h, const struct http_opts *o)
{
	stub_opts = *o;
	snprintf(stub_url, sizeof(stub_url), "%s", o->url);
	stub_opts.url = stub_url;
	snprintf(stub_body, sizeof(stub_body), "%.*s", (int)o->body_len,
	    o->body != NULL ? o->body : "");
	stub_req.n++;
	return &stub_req;
}

void
http_cancel(struct http *h, struct http_req *r)
{
	stub_cancelled++;
}

void
http_urlencode(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (isalnum((unsigned char)*s) || strchr("-._~", *s) != NULL)
			buf_addc(b, *s);
		else
			buf_addf(b, "%%%02X", (unsigned char)*s);
	}
}

/* A relay with two tenants and one output. */
struct fixture {
	char			 dir[64];
	char			 path[96];
	struct event_base	*base;
	struct relay		 r;
	struct config		 conf;
	struct conf_tenant	 ct[2], *ctp[2];
	struct conf_output	 co;
	struct tenant		 t[2], *tp[2];
	struct sink		 s, *sp[1];
	char			 token[64];
};

static int
setup(void **state)
{
	struct fixture	*f = xcalloc(1, sizeof(*f));
	int64_t		 now = ts_now();
	size_t		 i;

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_ctl.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/control.sock", f->dir);
	f->base = event_base_new();
	f->conf.daemon.control_socket = f->path;
	f->conf.daemon.request_timeout_ms = 5000;
	f->conf.daemon.user_agent = "test";
	for (i = 0; i < 2; i++) {
		f->ct[i].name = i == 0 ? "contoso" : "fabrikam-long-name";
		f->ct[i].label = i == 0 ? "Contoso \"Ltd\"" : "Fabrikam";
		f->ct[i].tenant_id = i == 0 ? "contoso.example" :
		    "11111111-2222-3333-4444-555555555555";
		f->ct[i].client_id = "app-id";
		f->ct[i].client_secret = SECRET;
		f->ct[i].login_url = "http://127.0.0.1:9";
		f->ct[i].api_url = "http://127.0.0.1:9";
		f->ct[i].scope = "https://api.securitycenter.microsoft.com/"
		    ".default";
		f->ct[i].enabled = true;
		f->ctp[i] = &f->ct[i];
		f->t[i].name = (char *)f->ct[i].name;
		f->t[i].conf = &f->ct[i];
		f->t[i].relay = &f->r;
		f->tp[i] = &f->t[i];
	}
	f->conf.tenants = f->ctp;
	f->conf.ntenants = 2;
	/* contoso: healthy, 95 s behind, a token for 50 more minutes. */
	f->t[0].state.cursor = now - 95 * TICKS_PER_SEC;
	f->t[0].last_success = now - 3 * TICKS_PER_SEC;
	f->t[0].forwarded = 1234;
	f->t[0].polls_ok = 7;
	f->t[0].polls_failed = 1;
	f->t[0].http_status[2] = 8;
	f->t[0].http_status[5] = 1;
	snprintf(f->token, sizeof(f->token), "eyJhbGciOi.secret-token.sig");
	f->t[0].token.access = f->token;
	f->t[0].token.wall_expires = now + 3000 * TICKS_PER_SEC +
	    TICKS_PER_SEC / 2;
	/* fabrikam: failing, never succeeded. */
	f->t[1].state.cursor = TICKS_NONE;
	f->t[1].phase = TENANT_BACKOFF;
	f->t[1].failing = true;
	snprintf(f->t[1].last_error, sizeof(f->t[1].last_error),
	    "tenant fabrikam-long-name: token request failed: AADSTS7000215");
	f->co.name = "siem";
	f->co.transport = OUT_TCP;
	f->co.address = "127.0.0.1:514";
	f->co.spool_max_bytes = 1048576;
	f->t[1].token.cred_expires = 1798761600;
	f->s.co = &f->co;
	f->s.st.connected = true;
	f->s.st.spool_records = 3;
	f->s.st.spool_bytes = 900;
	f->s.st.sent = 1231;
	f->s.st.reconnects = 2;
	f->sp[0] = &f->s;
	f->r.base = f->base;
	f->r.conf = &f->conf;
	f->r.tenants = f->tp;
	f->r.ntenants = 2;
	f->r.sinks = f->sp;
	f->r.nsinks = 1;
	f->r.pid = 4242;
	f->r.started = now - 7200 * TICKS_PER_SEC;
	f->r.forwarded = 1234;
	f->r.reloads = 2;
	stub_reload_rc = 0;
	stub_cursor_rc = 0;
	stub_cs_cb = NULL;
	stub_cs_hold = stub_cs_err = stub_cs_detached = 0;
	stub_bf_cb = NULL;
	stub_bf_cancelled = 0;
	stub_cancelled = 0;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	ctl_stop(&f->r);
	metrics_stop(&f->r);
	buf_clear(&f->r.reload_errors);
	event_base_free(f->base);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Connect a client and send a request line. */
static int
client(struct fixture *f, const char *req)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_not_equal(fd, -1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	if (req != NULL)
		assert_int_equal(write(fd, req, strlen(req)),
		    (ssize_t)strlen(req));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/*
 * Run the loop until the answer holds "stop" (or EOF); returns the
 * answer (caller frees).
 */
static char *
answer_until(struct fixture *f, int fd, const char *stop)
{
	struct buf	 b;
	char		 chunk[4096];
	ssize_t		 n;
	int		 i;

	buf_init(&b);
	buf_adds(&b, "");
	for (i = 0; i < 2000; i++) {
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		n = read(fd, chunk, sizeof(chunk));
		if (n > 0)
			buf_add(&b, chunk, (size_t)n);
		else if (n == 0)
			break;
		if (stop != NULL && strstr(b.data, stop) != NULL)
			break;
		usleep(1000);
	}
	return b.data;
}

/* Run the loop for a while (to let the daemon side notice things). */
static void
spin(struct fixture *f)
{
	int	 i;

	for (i = 0; i < 50; i++) {
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static char *
request(struct fixture *f, const char *req)
{
	int	 fd = client(f, req);
	char	*a = answer_until(f, fd, NULL);

	close(fd);
	return a;
}

static void
test_formatting(void **state)
{
	char	 s[32];
	int64_t	 t;

	fmt_dur(45, s, sizeof(s));
	assert_string_equal(s, "45s");
	fmt_dur(252, s, sizeof(s));
	assert_string_equal(s, "4m12s");
	fmt_dur(3 * 3600 + 5 * 60 + 9, s, sizeof(s));
	assert_string_equal(s, "3h05m");
	fmt_dur(2 * 86400 + 4 * 3600, s, sizeof(s));
	assert_string_equal(s, "2d04h");
	fmt_dur(-5, s, sizeof(s));
	assert_string_equal(s, "0s");
	assert_int_equal(ctlproto_time("2026-11-01", &t), 0);
	fmt_iso(t, s, sizeof(s));
	assert_string_equal(s, "2026-11-01T00:00:00Z");
	assert_int_equal(ctlproto_time("2026-11-01T10:20:30.5Z", &t), 0);
	fmt_iso(t, s, sizeof(s));
	assert_string_equal(s, "2026-11-01T10:20:30Z");
	assert_int_equal(ctlproto_time("yesterday", &t), -1);
	assert_int_equal(ctlproto_time("2026-13-01", &t), -1);
	fmt_iso(TICKS_NONE, s, sizeof(s));
	assert_string_equal(s, "-");
}

/* check-tenant's judgement of a token's claims (decoding: test_jwt). */
static void
test_check_claims(void **state)
{
	/* {"tid":"abc","roles":["Alert.Read.All"]} as base64url. */
	const char	*jwt = "eyJhbGciOiJIUzI1NiJ9."
	    "eyJ0aWQiOiJhYmMiLCJyb2xlcyI6WyJBbGVydC5SZWFkLkFsbCJdfQ.c2ln";
	json_t		*p;

	p = jwt_payload(jwt);
	assert_non_null(p);
	assert_true(roles_can_read(json_object_get(p, "roles"), SRC_MDE));
	assert_false(roles_can_read(json_object_get(p, "roles"), SRC_GRAPH));
	assert_false(roles_can_read(json_object_get(p, "nope"), SRC_MDE));
	json_decref(p);
	assert_true(is_guid("11111111-2222-3333-4444-55555555555a"));
	assert_false(is_guid("contoso.onmicrosoft.com"));
}

static void
test_status_text(void **state)
{
	struct fixture	*f = *state;
	struct buf	 b;
	char		*line, *save, *rows[3];
	int		 n = 0;

	buf_init(&b);
	ctl_status_text(&f->r, ts_now(), &b);
	assert_non_null(strstr(b.data, "alertrelayd " AR_VERSION
	    ", pid 4242, up 2h00m, 2 tenants, 1 output, 2 reloads, 1234 "
	    "alerts forwarded"));
	/* The tenant table: header + 2 rows, all the same width. */
	for (line = strtok_r(strstr(b.data, "TENANT"), "\n", &save);
	    line != NULL && n < 3; line = strtok_r(NULL, "\n", &save))
		rows[n++] = line;
	assert_int_equal(n, 3);
	assert_int_equal(strlen(rows[0]), strlen(rows[1]));
	assert_int_equal(strlen(rows[0]), strlen(rows[2]));
	assert_non_null(strstr(rows[1], "contoso "));
	assert_non_null(strstr(rows[1], " idle "));
	assert_non_null(strstr(rows[1], " 1m35s "));
	assert_non_null(strstr(rows[1], " 3s ago "));
	assert_non_null(strstr(rows[1], " in 50m00s "));
	assert_non_null(strstr(rows[1], " 1234"));
	assert_non_null(strstr(rows[2], "backoff/failing"));
	assert_non_null(strstr(rows[2], " never "));
	buf_clear(&b);
	buf_init(&b);
	ctl_status_text(&f->r, ts_now(), &b);
	assert_non_null(strstr(b.data, "\nsiem    connected        3"));
	assert_non_null(strstr(b.data, "tcp 127.0.0.1:514"));
	assert_non_null(strstr(b.data, "\nLast errors:\n  fabrikam-long-name: "
	    "tenant fabrikam-long-name: token request failed: "
	    "AADSTS7000215\n"));
	assert_null(strstr(b.data, SECRET));
	assert_null(strstr(b.data, "secret-token"));
	buf_clear(&b);
}

static void
test_status_json(void **state)
{
	struct fixture	*f = *state;
	char		*s;
	json_t		*o, *t0, *t1, *out;
	json_error_t	 je;

	s = ctl_status_json(&f->r, ts_now());
	assert_null(strstr(s, SECRET));
	assert_null(strstr(s, "secret-token"));
	o = json_loads(s, 0, &je);
	assert_non_null(o);
	free(s);
	assert_int_equal(json_integer_value(json_object_get(o,
	    "alerts_forwarded")), 1234);
	assert_int_equal(json_integer_value(json_object_get(o, "reloads")), 2);
	t0 = json_array_get(json_object_get(o, "tenants"), 0);
	t1 = json_array_get(json_object_get(o, "tenants"), 1);
	assert_string_equal(json_string_value(json_object_get(t0, "label")),
	    "Contoso \"Ltd\"");
	assert_int_equal(json_integer_value(json_object_get(t0,
	    "lag_seconds")), 95);
	assert_int_equal(json_integer_value(json_object_get(t0,
	    "alerts_forwarded")), 1234);
	assert_true(json_is_string(json_object_get(t0, "token_expires")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    t0, "http_responses"), "5xx")), 1);
	assert_true(json_is_true(json_object_get(t1, "failing")));
	assert_true(json_is_null(json_object_get(t1, "cursor")));
	assert_true(json_is_null(json_object_get(t1, "token_expires")));
	out = json_array_get(json_object_get(o, "outputs"), 0);
	assert_int_equal(json_integer_value(json_object_get(out,
	    "spool_bytes")), 900);
	assert_int_equal(json_integer_value(json_object_get(out,
	    "reconnects")), 2);
	json_decref(o);
}

static void
test_socket(void **state)
{
	struct fixture	*f = *state;
	struct relay	 r2;
	struct stat	 st;
	char		 err[256], *a;
	int		 fd;
	mode_t		 old;

	old = umask(0);
	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), 0);
	umask(old);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* A second owner is refused while the first answers. */
	r2 = f->r;
	r2.ctl = NULL;
	assert_int_equal(ctl_start(&r2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "another alertrelayd owns it"));
	a = request(f, "status\n");
	assert_non_null(strstr(a, "o TENANT "));
	assert_non_null(strstr(a, "\nx 0\n"));
	free(a);
	/* Stopped: the file goes; a stale file is replaced on start. */
	ctl_stop(&f->r);
	assert_int_equal(stat(f->path, &st), -1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->path);
		assert_int_equal(bind(fd, (struct sockaddr *)&sun,
		    sizeof(sun)), 0);
	}
	close(fd);
	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), 0);
	ctl_stop(&f->r);
	ctl_stop(&f->r);		/* idempotent */
	/* Not a socket: refused, left alone. */
	fd = open(f->path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(stat(f->path, &st), 0);
}

/* At most CTL_MAX_CLIENTS at once: the next is told why; room comes back. */
static void
test_client_cap(void **state)
{
	struct fixture	*f = *state;
	char		 err[256], *a;
	int		 fds[CTL_MAX_CLIENTS], fd, i;

	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), 0);
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		fds[i] = client(f, NULL);	/* idle: no request */
	spin(f);
	assert_int_equal(f->r.ctl->nclients, CTL_MAX_CLIENTS);
	fd = client(f, "status\n");
	a = answer_until(f, fd, "x ");
	assert_string_equal(a, "e control socket busy: too many clients "
	    "connected, try again\nx 1\n");
	free(a);
	close(fd);
	assert_int_equal(f->r.ctl->nclients, CTL_MAX_CLIENTS);
	/* The idle ones leave: a new client is served again. */
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		close(fds[i]);
	spin(f);
	assert_int_equal(f->r.ctl->nclients, 0);
	a = request(f, "status\n");
	assert_non_null(strstr(a, "\nx 0\n"));
	free(a);
	assert_false(f->r.ctl->full_logged);	/* logged again next time */
}

static void
test_requests(void **state)
{
	struct fixture	*f = *state;
	char		 err[256], big[6000], *a;
	int		 fd;

	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), 0);
	a = request(f, "status --json\n");
	assert_non_null(strstr(a, "o   \"pid\": 4242,\n"));
	free(a);
	a = request(f, "frobnicate\n");
	assert_non_null(strstr(a, "e unknown command \"frobnicate\"\nx 64\n"));
	free(a);
	a = request(f, "cursor show nosuch\n");
	assert_non_null(strstr(a, "e no tenant nosuch"));
	assert_non_null(strstr(a, "x 1\n"));
	free(a);
	a = request(f, "cursor show fabrikam-long-name\n");
	assert_string_equal(a, "o none\nx 0\n");
	free(a);
	a = request(f, "cursor set contoso 2026-11-01\n");
	assert_string_equal(a, "o cursor of contoso set to "
	    "2026-11-01T00:00:00.0000000Z\nx 0\n");
	free(a);
	a = request(f, "cursor show contoso\n");
	assert_string_equal(a, "o 2026-11-01T00:00:00.0000000Z\nx 0\n");
	free(a);
	a = request(f, "cursor set contoso soon\n");
	assert_non_null(strstr(a, "x 64\n"));
	free(a);
	stub_cursor_rc = -1;
	a = request(f, "cursor set contoso 2026-11-01T00:00:00Z\n");
	assert_non_null(strstr(a, "e cursor set: tenant contoso is busy\nx 1"));
	free(a);
	stub_cursor_rc = 0;
	/* The save fails: said, with what to do. */
	stub_cs_err = EIO;
	a = request(f, "cursor set contoso 2026-11-01\n");
	assert_non_null(strstr(a, "e cursor set: cannot save the state file "
	    "of contoso: Input/output error; the cursor is unchanged"));
	assert_non_null(strstr(a, "x 1\n"));
	free(a);
	/* The tenant is removed by a reload while it saves. */
	stub_cs_err = ECANCELED;
	a = request(f, "cursor set contoso 2026-11-01\n");
	assert_non_null(strstr(a, "e cursor set: tenant contoso was removed "
	    "from the configuration"));
	free(a);
	/* The operator goes away while the save is held: detached. */
	stub_cs_err = 0;
	stub_cs_hold = 1;
	fd = client(f, "cursor set contoso 2026-11-01\n");
	spin(f);
	assert_non_null(stub_cs_cb);
	close(fd);
	spin(f);
	assert_int_equal(stub_cs_detached, 1);
	assert_null(stub_cs_cb);
	a = request(f, "reload\n");
	assert_string_equal(a, "o reload applied\nx 0\n");
	free(a);
	assert_int_equal(f->r.reloads, 3);
	/*
	 * The reload moves the socket: the client still gets its answer,
	 * and a cursor set held meanwhile is told why it ends.
	 */
	stub_cs_detached = 0;
	fd = client(f, "cursor set contoso 2026-11-01\n");
	spin(f);
	assert_non_null(stub_cs_cb);
	xasprintf(&stub_reload_path, "%s/moved.sock", f->dir);
	a = request(f, "reload\n");
	assert_string_equal(a, "o reload applied\nx 0\n");
	free(a);
	assert_int_equal(access(f->path, F_OK), -1);
	assert_int_equal(access(stub_reload_path, F_OK), 0);
	a = answer_until(f, fd, NULL);
	assert_string_equal(a, "e cursor set: a reload moved the control "
	    "socket; the state file of contoso with the new cursor is still "
	    "written\nx 1\n");
	free(a);
	close(fd);
	assert_int_equal(stub_cs_detached, 1);
	ctl_stop(&f->r);
	free(stub_reload_path);
	stub_reload_path = NULL;
	f->conf.daemon.control_socket = f->path;
	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), 0);
	/* The daemon stops (the loop is over) during a held cursor set. */
	fd = client(f, "cursor set contoso 2026-11-01\n");
	spin(f);
	assert_non_null(stub_cs_cb);
	ctl_stop(&f->r);
	a = answer_until(f, fd, NULL);
	assert_string_equal(a, "e cursor set: alertrelayd is stopping; the "
	    "state file of contoso with the new cursor is still written\n"
	    "x 1\n");
	free(a);
	close(fd);
	assert_int_equal(stub_cs_detached, 2);
	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), 0);
	stub_reload_rc = -1;
	a = request(f, "reload\n");
	assert_string_equal(a, "e x.conf:3: unknown key \"bogus\"\n"
	    "e reload rejected; the running configuration stays in force\n"
	    "x 1\n");
	free(a);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	a = request(f, big);
	assert_non_null(strstr(a, "longer than 4096 bytes\nx 64\n"));
	free(a);
}

static void
test_backfill(void **state)
{
	struct fixture	*f = *state;
	char		 err[256], *a;
	int		 fd;

	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), 0);
	a = request(f, "backfill contoso 2026-11-02 2026-11-01\n");
	assert_non_null(strstr(a, "FROM must be before TO\nx 64"));
	free(a);
	/* Progress is streamed, the end closes. */
	fd = client(f, "backfill contoso 2026-11-01 2026-11-02\n");
	free(answer_until(f, fd, "reading"));
	assert_non_null(stub_bf_cb);
	stub_bf_cb(stub_bf_arg, 0, 1, 1, 1000, 10, NULL);
	a = answer_until(f, fd, "forwarded\n");
	assert_string_equal(a, "p backfill contoso: 1 page, 1000 alerts seen, "
	    "10 forwarded\n");
	free(a);
	f->t[0].backfill = NULL;
	stub_bf_cb(stub_bf_arg, 1, 1, 2, 1500, 12, NULL);
	a = answer_until(f, fd, NULL);
	assert_string_equal(a, "o backfill contoso done: 2 pages, 1500 alerts "
	    "seen, 12 forwarded\nx 0\n");
	free(a);
	close(fd);
	assert_int_equal(stub_bf_cancelled, 0);
	/* The client goes away: the backfill is cancelled. */
	fd = client(f, "backfill contoso 2026-11-01 2026-11-02\n");
	free(answer_until(f, fd, "reading"));
	close(fd);
	spin(f);
	assert_int_equal(stub_bf_cancelled, 1);
}

/* Feed the stubbed http request a result. */
static void
http_reply(int status, const char *body, int64_t retry_after_ms)
{
	struct http_result	 res;
	struct buf		 b;

	buf_init(&b);
	buf_adds(&b, body);
	memset(&res, 0, sizeof(res));
	res.status = status;
	res.body = &b;
	res.retry_after_ms = retry_after_ms;
	stub_opts.done_cb(&res, stub_opts.arg);
	buf_clear(&b);
}

static void
test_check_tenant(void **state)
{
	struct fixture	*f = *state;
	char		 err[256], *a;
	int		 fd;
	/* payload {"tid":"99999999-2222-3333-4444-555555555555"}: no roles */
	const char	*tok = "{\"token_type\":\"Bearer\","
	    "\"expires_in\":3599,"
	    "\"access_token\":\"eyJhbGciOiJub25lIn0.eyJ0aWQiOiI5OTk5OTk5OS0y"
	    "MjIyLTMzMzMtNDQ0NC01NTU1NTU1NTU1NTUifQ.c2ln\"}";

	assert_int_equal(ctl_start(&f->r, err, sizeof(err)), 0);
	/* A bad secret. */
	fd = client(f, "check-tenant contoso\n");
	free(answer_until(f, fd, "credential: client secret\n"));
	assert_string_equal(stub_opts.url,
	    "http://127.0.0.1:9/contoso.example/oauth2/v2.0/token");
	assert_non_null(strstr(stub_body, "grant_type=client_credentials&"
	    "client_id=app-id&scope=https%3A%2F%2Fapi.securitycenter."));
	assert_non_null(strstr(stub_body, "&client_secret=" SECRET));
	http_reply(401, "{\"error\":\"invalid_client\",\"error_codes\":"
	    "[7000215],\"correlation_id\":\"c-1\"}", -1);
	a = answer_until(f, fd, NULL);
	assert_non_null(strstr(a, "o token: FAILED: HTTP 401 invalid_client, "
	    "AADSTS7000215, correlation id c-1\n"));
	assert_non_null(strstr(a, "o   diagnosis: bad client secret\n"));
	assert_non_null(strstr(a, "e check-tenant contoso: 1 problem found\n"
	    "x 1\n"));
	assert_null(strstr(a, SECRET));
	free(a);
	close(fd);
	/* A token without roles for another tenant, then a 429. */
	fd = client(f, "check-tenant fabrikam-long-name\n");
	free(answer_until(f, fd, "credential: client secret\n"));
	http_reply(200, tok, -1);
	assert_string_equal(stub_opts.url, "http://127.0.0.1:9/api/alerts?"
	    "$top=1");
	assert_non_null(stub_opts.bearer);
	http_reply(429, "{}", 7000);
	/* The consent report: a token for Graph, whose alerts say 403. */
	assert_non_null(strstr(stub_body, "scope=https%3A%2F%2Fgraph."
	    "microsoft.com%2F.default"));
	assert_non_null(strstr(stub_body, "&client_secret=" SECRET));
	http_reply(200, tok, -1);
	assert_string_equal(stub_opts.url, "http://127.0.0.1:9/v1.0/security/"
	    "alerts_v2?$top=1");
	http_reply(403, "{}", -1);
	a = answer_until(f, fd, "x ");
	assert_non_null(strstr(a, "o consent: Defender for Endpoint alerts "
	    "(WindowsDefenderATP Alert.Read.All): not known (HTTP 429)\n"));
	assert_non_null(strstr(a, "o consent: Graph alerts (Microsoft Graph "
	    "SecurityAlert.Read.All): NOT granted (HTTP 403)\n"));
	assert_non_null(strstr(a, "o consent: for Graph alerts, ask the "
	    "customer to grant Microsoft Graph SecurityAlert.Read.All"));
	assert_null(strstr(a, "Graph incidents"));
	assert_non_null(strstr(a, "o token: roles: (none)\n"));
	assert_non_null(strstr(a, "o   diagnosis: permission missing\n"));
	assert_non_null(strstr(a, "o   diagnosis: wrong tenant\n"));
	assert_non_null(strstr(a, "o   diagnosis: throttled\n"));
	assert_non_null(strstr(a, "Retry-After 7s"));
	assert_non_null(strstr(a, "3 problems found\nx 1\n"));
	assert_null(strstr(a, "c2ln"));
	free(a);
	close(fd);
	/* The client leaves while the token request runs: it is cancelled. */
	fd = client(f, "check-tenant contoso\n");
	free(answer_until(f, fd, "credential: client secret\n"));
	close(fd);
	spin(f);
	assert_int_equal(stub_cancelled, 1);
}

/* The whole /metrics answer, as a scrape gets it (all slices). */
static void
metrics_render(struct relay *r, int64_t now, struct buf *b)
{
	struct mrender	 mr;

	memset(&mr, 0, sizeof(mr));
	buf_init(&mr.b);
	mrender_begin(&mr, r);
	mr.now = now;
	while (!mrender_step(&mr, r, 1000))
		;
	buf_add(b, mr.b.data, mr.b.len);
	buf_addc(b, '\0');
	b->len--;
	buf_clear(&mr.b);
}

static void
test_metrics(void **state)
{
	struct fixture	*f = *state;
	struct buf	 b;
	char		 err[256], *h, *p;

	buf_init(&b);
	metrics_label(&b, "a\"b\\c\nd");
	assert_string_equal(b.data, "a\\\"b\\\\c\\nd");
	buf_reset(&b);
	metrics_render(&f->r, ts_now(), &b);
	assert_non_null(strstr(b.data, "# TYPE alertrelay_polls_total counter\n"
	    "alertrelay_polls_total{tenant=\"contoso\",result=\"ok\"} 7\n"
	    "alertrelay_polls_total{tenant=\"contoso\",result=\"error\"} 1\n"));
	assert_non_null(strstr(b.data, "alertrelay_http_responses_total{tenant="
	    "\"contoso\",class=\"5xx\"} 1\n"));
	assert_non_null(strstr(b.data, "alertrelay_alerts_forwarded_total{"
	    "tenant=\"contoso\"} 1234\n"));
	assert_non_null(strstr(b.data, "alertrelay_lag_seconds{tenant="
	    "\"contoso\"} 95."));
	assert_null(strstr(b.data, "alertrelay_lag_seconds{tenant="
	    "\"fabrikam"));
	assert_non_null(strstr(b.data, "alertrelay_up{tenant=\"contoso\"} 1\n"
	    "alertrelay_up{tenant=\"fabrikam-long-name\"} 0\n"));
	assert_non_null(strstr(b.data, "alertrelay_output_spool_bytes{output="
	    "\"siem\"} 900\n"));
	assert_non_null(strstr(b.data, "alertrelay_output_reconnects_total{"
	    "output=\"siem\"} 2\n"));
	assert_non_null(strstr(b.data, "alertrelay_reloads_total 2\n"));
	assert_non_null(strstr(b.data, "alertrelay_build_info{version=\""
	    AR_VERSION "\"} 1\n"));
	assert_non_null(strstr(b.data, "alertrelay_tenant_failing{tenant="
	    "\"contoso\"} 0\nalertrelay_tenant_failing{tenant=\"fabrikam-"
	    "long-name\"} 1\n"));
	assert_non_null(strstr(b.data, "alertrelay_tenant_credential_expiry_"
	    "timestamp_seconds{tenant=\"fabrikam-long-name\",credential=\""
	    "secret\"} 1798761600\n"));
	assert_null(strstr(b.data, "credential_expiry_timestamp_seconds{"
	    "tenant=\"contoso\""));
	assert_non_null(strstr(b.data, "alertrelay_output_spool_max_bytes{"
	    "output=\"siem\"} 1048576\n"));
	/* Last success; the daemon's start for one that never succeeded. */
	xasprintf(&h, "alertrelay_tenant_last_success_timestamp_seconds{"
	    "tenant=\"contoso\"} %.3f\n", (double)f->t[0].last_success /
	    TICKS_PER_SEC);
	assert_non_null(strstr(b.data, h));
	free(h);
	xasprintf(&h, "alertrelay_tenant_last_success_timestamp_seconds{"
	    "tenant=\"fabrikam-long-name\"} %.3f\n", (double)f->r.started /
	    TICKS_PER_SEC);
	assert_non_null(strstr(b.data, h));
	free(h);
	assert_null(strstr(b.data, SECRET));
	/* Every sample's family has HELP and TYPE before it. */
	for (p = b.data; *p != '\0'; p = strchr(p, '\n') + 1) {
		if (*p == '#')
			continue;
		xasprintf(&h, "# TYPE %.*s ", (int)strcspn(p, "{ "), p);
		assert_non_null(strstr(b.data, h));
		assert_true(strstr(b.data, h) < p);
		free(h);
	}
	/* In a cluster, only the tenants this member owns have one. */
	f->conf.cluster.enabled = true;
	f->t[1].owned = true;
	buf_reset(&b);
	metrics_render(&f->r, ts_now(), &b);
	assert_null(strstr(b.data, "last_success_timestamp_seconds{tenant="
	    "\"contoso\""));
	assert_non_null(strstr(b.data, "last_success_timestamp_seconds{"
	    "tenant=\"fabrikam-long-name\""));
	f->conf.cluster.enabled = false;
	buf_clear(&b);
	f->conf.daemon.metrics_listen = "127.0.0.1";
	assert_int_equal(metrics_start(&f->r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "expected HOST:PORT"));
	f->conf.daemon.metrics_listen = "[::1]:99999";
	assert_int_equal(metrics_start(&f->r, err, sizeof(err)), -1);
	f->conf.daemon.metrics_listen = "127.0.0.1:0";
	assert_int_equal(metrics_start(&f->r, err, sizeof(err)), -1);
	assert_null(f->r.metrics);
}

/* Occurrences of needle in haystack. */
static int
count_of(const char *haystack, const char *needle)
{
	int	 n = 0;

	while ((haystack = strstr(haystack, needle)) != NULL) {
		n++;
		haystack++;
	}
	return n;
}

/*
 * /metrics is rendered a slice of tenants per loop turn (10,000 tenants
 * held the loop 100-170 ms in one turn): the slices add up to the answer
 * in one piece, and a reload between two slices starts it over, so no
 * tenant is missing or twice in a family.
 */
static void
test_metrics_slices(void **state)
{
	struct fixture	*f = *state;
	struct mrender	 mr;
	struct buf	 whole;
	int64_t		 now = ts_now();
	int		 steps = 0;

	buf_init(&whole);
	metrics_render(&f->r, now, &whole);
	memset(&mr, 0, sizeof(mr));
	buf_init(&mr.b);
	mrender_begin(&mr, &f->r);
	mr.now = now;
	/* 2 tenants x 9 families, one tenant's samples per call. */
	while (!mrender_step(&mr, &f->r, 1))
		steps++;
	assert_int_equal(steps, 2 * (int)nitems(tfams) - 1);
	assert_int_equal(mr.b.len, whole.len);
	assert_memory_equal(mr.b.data, whole.data, whole.len);

	/* A reload after five slices: begun again, each tenant once. */
	mrender_begin(&mr, &f->r);
	for (steps = 0; steps < 5; steps++)
		assert_false(mrender_step(&mr, &f->r, 1));
	f->r.reloads++;
	while (!mrender_step(&mr, &f->r, 1))
		;
	buf_addc(&mr.b, '\0');
	assert_int_equal(mr.restarts, 1);
	assert_int_equal(count_of(mr.b.data, "# TYPE alertrelay_up "), 1);
	assert_int_equal(count_of(mr.b.data, "alertrelay_up{tenant=\"contoso\"}"),
	    1);
	assert_int_equal(count_of(mr.b.data, "alertrelay_polls_total{tenant="
	    "\"fabrikam-long-name\",result=\"ok\"}"), 1);
	assert_int_equal(count_of(mr.b.data, "alertrelay_reloads_total 3\n"),
	    1);
	buf_clear(&mr.b);
	buf_clear(&whole);
}

/* The loop-lag histogram in the text format: le in seconds, cumulative. */
static void
test_metrics_looplag(void **state)
{
	struct histogram h;
	struct buf	 b;

	histogram_init(&h);
	histogram_add(&h, 300);
	histogram_add(&h, 100000);
	buf_init(&b);
	metrics_looplag(&h, &b);
	assert_non_null(strstr(b.data, "# TYPE alertrelay_loop_lag_seconds "
	    "histogram\n"));
	assert_non_null(strstr(b.data, "alertrelay_loop_lag_seconds_bucket{"
	    "le=\"0.0005\"} 1\n"));
	assert_non_null(strstr(b.data, "alertrelay_loop_lag_seconds_bucket{"
	    "le=\"0.05\"} 1\nalertrelay_loop_lag_seconds_bucket{le=\"0.1\"} "
	    "2\n"));
	assert_non_null(strstr(b.data, "alertrelay_loop_lag_seconds_bucket{"
	    "le=\"10\"} 2\nalertrelay_loop_lag_seconds_bucket{le=\"+Inf\"} "
	    "2\nalertrelay_loop_lag_seconds_sum 0.100300\n"
	    "alertrelay_loop_lag_seconds_count 2\n"));
	buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formatting),
		cmocka_unit_test(test_check_claims),
		cmocka_unit_test_setup_teardown(test_status_text, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_status_json, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_cap, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_requests, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_backfill, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_check_tenant, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_slices, setup,
		    teardown),
		cmocka_unit_test(test_metrics_looplag),
	};

	log_init(LOG_TARGET_STDERR, 0, "test_ctl");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
