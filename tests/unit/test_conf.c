/* Unit tests for lib/conf.c: defaults, keys, errors, includes, secrets. */
#include <sys/stat.h>

#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "util.h"

static char	 tmpdir[] = "/tmp/test_conf.XXXXXX";

/* Where tests write their files. */
static char *
tpath(const char *name)
{
	char	*p;

	xasprintf(&p, "%s/%s", tmpdir, name);
	return p;
}

/* Write a file under tmpdir with the given mode. */
static void
put_file(const char *name, int mode, const char *text)
{
	char	*p = tpath(name);
	int	 fd;

	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, (mode_t)mode), 0);
	close(fd);
	free(p);
}

/* printf into a fresh string. */
static char *
fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *
fmt(const char *f, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, f);
	assert_true(vasprintf(&s, f, ap) != -1);
	va_end(ap);
	return s;
}

static void
dump(const struct conf_errors *e)
{
	size_t	 i;

	for (i = 0; i < e->n; i++)
		print_message("  error: %s\n", e->msg[i]);
}

/* Is exactly this message among the errors? */
static void
assert_error(const struct conf_errors *e, const char *msg)
{
	size_t	 i;

	for (i = 0; i < e->n; i++) {
		if (strcmp(e->msg[i], msg) == 0)
			return;
	}
	print_message("missing error: %s\n", msg);
	dump(e);
	fail();
}

/* Does any error contain s? */
static bool
has_error(const struct conf_errors *e, const char *s)
{
	size_t	 i;

	for (i = 0; i < e->n; i++) {
		if (strstr(e->msg[i], s) != NULL)
			return true;
	}
	return false;
}

static struct config *
parse(const char *text, struct conf_errors *e)
{
	return conf_parse("t.conf", text, strlen(text), e);
}

/* Parse text that must be valid. */
static struct config *
parse_ok(const char *text)
{
	struct conf_errors	 e = { NULL, 0 };
	struct config		*c;

	c = parse(text, &e);
	if (c == NULL)
		dump(&e);
	assert_non_null(c);
	assert_int_equal(e.n, 0);
	return c;
}

/* Parse text that must fail with exactly one error, equal to msg. */
static void
parse_fails(const char *text, const char *msg)
{
	struct conf_errors	 e = { NULL, 0 };

	assert_null(parse(text, &e));
	assert_error(&e, msg);
	if (e.n != 1)
		dump(&e);
	assert_int_equal(e.n, 1);
	conf_errors_clear(&e);
}

#define OUT	"[output \"o\"]\ntransport = stdout\n"
#define CENTURY_MS_TEST	(36525LL * 86400 * 1000)

/* A tenant section using the 0600 secret file written by group setup. */
static char *
tenant_text(const char *name, const char *extra)
{
	return fmt("[tenant \"%s\"]\ntenant_id = t.example\n"
	    "client_id = 11111111-2222-3333-4444-555555555555\n"
	    "client_secret_file = %s/secret\n%s", name, tmpdir, extra);
}

/* OUT followed by a tenant section with extra keys (from line 7). */
static char *
with_tenant(const char *extra)
{
	char	*t = tenant_text("x", extra), *s;

	s = fmt(OUT "%s", t);
	free(t);
	return s;
}

static void
test_defaults(void **state)
{
	char		*t = tenant_text("contoso", "");
	char		*text = fmt("[output \"tcp\"]\naddress = siem:514\n"
	    "[output \"udp\"]\ntransport = udp\naddress = 10.0.0.1:514\n"
	    "[output \"tls\"]\ntransport = tls\naddress = [2001:db8::1]:6514\n"
	    "%s", t);
	struct config	*c = parse_ok(text);
	struct conf_daemon *d = &c->daemon;
	struct conf_output *o;
	struct conf_tenant *tn;

	assert_string_equal(d->state_dir, "/var/lib/alertrelay");
	assert_int_equal(d->poll_interval_ms, 60000);
	assert_int_equal(d->overlap_ms, 15 * 60000);
	assert_int_equal(d->first_fetch_ms, 24 * 3600000);
	assert_int_equal(d->page_size, 1000);
	assert_int_equal(d->max_concurrent_requests, 32);
	assert_int_equal(d->request_timeout_ms, 60000);
	assert_string_equal(d->user_agent,
	    "MdePartner-alertrelay-alertrelayd/" AR_VERSION);
	assert_string_equal(d->control_socket, "/run/alertrelay/control.sock");
	assert_null(d->metrics_listen);
	assert_int_equal(d->lag_warning_ms, 15 * 60000);
	assert_int_equal(d->shard_k, 1);
	assert_int_equal(d->shard_n, 1);
	assert_false(c->cluster.enabled);

	o = conf_output_find(c, "tcp");
	assert_int_equal(o->transport, OUT_TCP);
	assert_string_equal(o->host, "siem");
	assert_string_equal(o->port, "514");
	assert_int_equal(o->format, FMT_CEF);
	assert_int_equal(o->header, HDR_RFC5424);
	assert_int_equal(o->framing, FRAME_NEWLINE);
	assert_int_equal(o->facility, 20);
	assert_int_equal(o->max_message_bytes, 65536);
	assert_true(o->spool_max_bytes == 1024ULL * 1024 * 1024);
	assert_null(o->tls_server_name);
	o = conf_output_find(c, "udp");
	assert_int_equal(o->max_message_bytes, 2048);
	assert_int_equal(o->framing, FRAME_NEWLINE);
	o = conf_output_find(c, "tls");
	assert_int_equal(o->framing, FRAME_OCTET);
	assert_int_equal(o->max_message_bytes, 65536);
	assert_string_equal(o->host, "2001:db8::1");
	assert_string_equal(o->port, "6514");
	assert_string_equal(o->tls_server_name, "2001:db8::1");
	assert_null(o->ca_file);

	tn = conf_tenant_find(c, "contoso");
	assert_non_null(tn);
	assert_string_equal(tn->client_secret, "s3cr3t-value");
	assert_string_equal(tn->label, "contoso");
	assert_int_equal(tn->source, SRC_MDE);
	assert_int_equal(tn->cloud, CLOUD_COMMERCIAL);
	assert_string_equal(tn->api_url, "https://api.security.microsoft.com");
	assert_string_equal(tn->login_url, "https://login.microsoftonline.com");
	assert_string_equal(tn->scope,
	    "https://api.securitycenter.microsoft.com/.default");
	assert_null(tn->outputs);
	assert_int_equal(tn->min_severity, SEV_INFORMATIONAL);
	assert_true(tn->forward_updates);
	assert_true(tn->enabled);
	assert_int_equal(tn->poll_interval_ms, 0);
	assert_int_equal(tn->secret_expires, 0);
	assert_string_equal(tn->file, "t.conf");
	assert_int_equal(tn->line, 9);
	assert_true(conf_tenant_routes(tn, o));
	conf_free(c);
	free(text);
	free(t);
}

static void
test_every_key(void **state)
{
	char		*text = fmt(
	    "[daemon]\n"
	    "state_dir = /srv/ar\n"
	    "poll_interval = 2m\n"
	    "overlap = 30m\n"
	    "first_fetch = 7d\n"
	    "page_size = 500\n"
	    "max_concurrent_requests = 8\n"
	    "request_timeout = 90s\n"
	    "user_agent = \"MSSP relay 1\"\n"
	    "control_socket = /tmp/ar.sock\n"
	    "metrics_listen = [::1]:9469\n"
	    "shard = 2/3\n"
	    "lag_warning = 2h\n"
	    "[output \"siem\"]\n"
	    "transport = TLS\n"
	    "address = siem.example:6514\n"
	    "format = leef\n"
	    "syslog_header = rfc3164\n"
	    "framing = newline\n"
	    "facility = local7\n"
	    "ca_file = %1$s/cert\n"
	    "cert_file = cert\n"
	    "key_file = %1$s/key\n"
	    "tls_server_name = 192.0.2.7\n"
	    "max_message_bytes = 8K\n"
	    "spool_max_bytes = 512M\n"
	    "[output \"other\"]\ntransport = stdout\n"
	    "[tenant \"contoso\"]\n"
	    "tenant_id = 0f0e0d0c-0000-1111-2222-333344445555\n"
	    "client_id = 11111111-2222-3333-4444-555555555555\n"
	    "certificate_file = %1$s/cert\n"
	    "private_key_file = %1$s/key\n"
	    "secret_expires = 2027-06-30\n"
	    "source = graph\n"
	    "cloud = dod\n"
	    "api_url = http://127.0.0.1:8080/\n"
	    "login_url = https://login.example//\n"
	    "scope = api://x/.default\n"
	    "ca_file = %1$s/cert\n"
	    "label = \"  Contoso # Ltd\"   # trailing comment\n"
	    "outputs = siem\n"
	    "min_severity = Medium\n"
	    "forward_updates = off\n"
	    "poll_interval = 5m\n"
	    "enabled = 0\n"
	    "[notify \"soc\"]\n"
	    "smtp_url = smtps://mail.example:465\n"
	    "from = relay@example.net\n"
	    "to = a@example.net, b@example.net\n"
	    "username = relay\n"
	    "password_file = %1$s/secret\n"
	    "min_severity = low\n"
	    "tenants = contoso\n"
	    "max_per_hour = 0\n"
	    "digest_interval = 5m\n"
	    "[cluster]\n"
	    "etcd_endpoints = http://10.0.0.1:2379,https://[fd00::1]:2379\n"
	    "member_name = node-1\n"
	    "lease_ttl = 30s\n"
	    "prefix = /x/\n"
	    "ca_file = %1$s/cert\n"
	    "cert_file = %1$s/cert\n"
	    "key_file = %1$s/key\n", tmpdir);
	struct conf_errors e = { NULL, 0 };
	struct config	*c;
	struct conf_output *o;
	struct conf_tenant *t;
	struct conf_notify *n;
	struct conf_cluster *cl;
	char		*main_path = tpath("every.conf"), *cert = tpath("cert");

	put_file("every.conf", 0644, text);
	c = conf_load(main_path, &e);
	if (c == NULL)
		dump(&e);
	assert_non_null(c);
	assert_string_equal(c->daemon.state_dir, "/srv/ar");
	assert_int_equal(c->daemon.poll_interval_ms, 120000);
	assert_int_equal(c->daemon.overlap_ms, 1800000);
	assert_int_equal(c->daemon.first_fetch_ms, 7 * 86400000LL);
	assert_int_equal(c->daemon.page_size, 500);
	assert_int_equal(c->daemon.max_concurrent_requests, 8);
	assert_int_equal(c->daemon.request_timeout_ms, 90000);
	assert_string_equal(c->daemon.user_agent, "MSSP relay 1");
	assert_string_equal(c->daemon.control_socket, "/tmp/ar.sock");
	assert_string_equal(c->daemon.metrics_listen, "[::1]:9469");
	assert_int_equal(c->daemon.lag_warning_ms, 2 * 3600000);
	assert_int_equal(c->daemon.shard_k, 2);
	assert_int_equal(c->daemon.shard_n, 3);

	o = conf_output_find(c, "siem");
	assert_int_equal(o->transport, OUT_TLS);
	assert_string_equal(o->host, "siem.example");
	assert_int_equal(o->format, FMT_LEEF);
	assert_int_equal(o->header, HDR_RFC3164);
	assert_int_equal(o->framing, FRAME_NEWLINE);
	assert_int_equal(o->facility, 23);
	assert_string_equal(o->ca_file, cert);
	/* Relative to the directory of the config file. */
	assert_string_equal(o->cert_file, cert);
	assert_string_equal(o->tls_server_name, "192.0.2.7");
	assert_int_equal(o->max_message_bytes, 8192);
	assert_true(o->spool_max_bytes == 512ULL * 1024 * 1024);

	t = conf_tenant_find(c, "contoso");
	assert_null(t->client_secret);
	assert_string_equal(t->certificate_file, cert);
	assert_int_equal(t->secret_expires, 1814313600);
	assert_int_equal(t->source, SRC_GRAPH);
	assert_int_equal(t->cloud, CLOUD_DOD);
	assert_string_equal(t->api_url, "http://127.0.0.1:8080");
	assert_string_equal(t->login_url, "https://login.example");
	assert_string_equal(t->scope, "api://x/.default");
	assert_string_equal(t->ca_file, cert);
	assert_string_equal(t->label, "  Contoso # Ltd");
	assert_int_equal(t->noutputs, 1);
	assert_true(conf_tenant_routes(t, o));
	assert_false(conf_tenant_routes(t, conf_output_find(c, "other")));
	assert_int_equal(t->min_severity, SEV_MEDIUM);
	assert_false(t->forward_updates);
	assert_int_equal(t->poll_interval_ms, 300000);
	assert_false(t->enabled);
	assert_string_equal(t->file, main_path);
	assert_int_equal(t->line, 29);

	n = c->notifies[0];
	assert_string_equal(n->smtp_url, "smtps://mail.example:465");
	assert_string_equal(n->from, "relay@example.net");
	assert_int_equal(n->nto, 2);
	assert_string_equal(n->to[1], "b@example.net");
	assert_string_equal(n->username, "relay");
	assert_string_equal(n->password, "s3cr3t-value");
	assert_int_equal(n->min_severity, SEV_LOW);
	assert_int_equal(n->ntenants, 1);
	assert_int_equal(n->max_per_hour, 0);
	assert_int_equal(n->digest_interval_ms, 300000);

	cl = &c->cluster;
	assert_true(cl->enabled);
	assert_int_equal(cl->netcd_endpoints, 2);
	assert_string_equal(cl->etcd_endpoints[1], "https://[fd00::1]:2379");
	assert_string_equal(cl->member_name, "node-1");
	assert_int_equal(cl->lease_ttl_ms, 30000);
	assert_string_equal(cl->prefix, "/x/");
	assert_non_null(cl->key_file);
	conf_free(c);
	free(text);
	free(main_path);
	free(cert);
}

/* Every class of error, each on a known line, all reported at once. */
static void
test_errors_collected(void **state)
{
	const char	*text =
	    "page_size = 5\n"				/* 1 */
	    "[daemon]\n"				/* 2 */
	    "page_size = 0\n"				/* 3 */
	    "poll_interval = 500ms\n"			/* 4 */
	    "overlap = soon\n"				/* 5 */
	    "shard = 4/3\n"				/* 6 */
	    "page_size = 7\n"				/* 7 */
	    "[output \"o\"]\n"				/* 8 */
	    "transport = pigeon\n"			/* 9 */
	    "syslog_header = none\n"			/* 10 */
	    "[output \"o\"]\n"				/* 11 */
	    "[tenant \"x\"]\n"				/* 12 */
	    "foo = bar\n"				/* 13 */
	    "enabled = maybe\n"				/* 14 */
	    "outputs = o, nope\n"			/* 15 */
	    "api_url = http://example.com/\n"		/* 16 */
	    "[bogus]\n"					/* 17 */
	    "[tenant bad]\n"				/* 18 */
	    "[tenant \"a b\"]\n"			/* 19 */
	    "[daemon]\n"				/* 20 */
	    "just some words\n"				/* 21 */
	    "[notify \"n\"]\n"				/* 22 */
	    "smtp_url = http://mail:25\n";		/* 23 */
	struct conf_errors e = { NULL, 0 };

	assert_null(parse(text, &e));
	assert_error(&e, "t.conf:1: key \"page_size\" outside any section; "
	    "put it after a section header such as [daemon]");
	assert_error(&e, "t.conf:3: page_size: \"0\" is out of range; "
	    "accepted: 1..10000");
	assert_error(&e, "t.conf:4: poll_interval: \"500ms\" is out of range; "
	    "accepted: 1s..36525d (100 years)");
	assert_error(&e, "t.conf:5: overlap: \"soon\" is not a duration; "
	    "accepted: a number with ms, s, m, h or d, e.g. 30s");
	assert_error(&e, "t.conf:6: shard: \"4/3\" is not valid; accepted: "
	    "K/N with 1 <= K <= N, e.g. 1/3");
	assert_error(&e, "t.conf:7: duplicate key \"page_size\" in [daemon]; "
	    "first set at line 3");
	assert_error(&e, "t.conf:9: transport: \"pigeon\" is not valid; "
	    "accepted: udp, tcp, tls, file, stdout, relp, kafka");
	assert_error(&e, "t.conf:8: [output \"o\"]: address is required for "
	    "transport tcp (HOST:PORT)");
	assert_error(&e, "t.conf:11: duplicate section [output \"o\"]; first "
	    "defined at t.conf:8");
	assert_error(&e, "t.conf:13: unknown key \"foo\" in [tenant \"x\"]; "
	    "accepted: tenant_id, client_id, client_secret_file, "
	    "client_secret, certificate_file, private_key_file, "
	    "secret_expires, source, cloud, api_url, login_url, scope, "
	    "ca_file, label, outputs, min_severity, forward_updates, "
	    "poll_interval, enabled, service_sources, client_assertion_file, "
	    "certificate_thumbprint, incidents");
	assert_error(&e, "t.conf:14: enabled: \"maybe\" is not a boolean; "
	    "accepted: yes, no, true, false, on, off, 1, 0");
	assert_error(&e, "t.conf:15: outputs: \"nope\" is not a defined "
	    "output; defined: o");
	assert_error(&e, "t.conf:16: api_url: \"http://example.com/\" must "
	    "use https://; http:// is accepted only for loopback hosts "
	    "(127.0.0.0/8, [::1], localhost)");
	assert_error(&e, "t.conf:12: [tenant \"x\"]: tenant_id is required");
	assert_error(&e, "t.conf:12: [tenant \"x\"]: client_id is required");
	assert_error(&e, "t.conf:12: [tenant \"x\"]: no credential; set "
	    "client_secret_file, client_secret, client_assertion_file, or "
	    "certificate_file and private_key_file");
	assert_error(&e, "t.conf:17: unknown section [bogus]; accepted: "
	    "[daemon], [output \"NAME\"], [tenant \"NAME\"], "
	    "[notify \"NAME\"], [cluster]");
	assert_error(&e, "t.conf:18: malformed section header; expected "
	    "[KIND] or [KIND \"NAME\"]");
	assert_error(&e, "t.conf:19: section name \"a b\" is not a valid name "
	    "(only A-Z a-z 0-9 . _ -)");
	assert_error(&e, "t.conf:20: duplicate section [daemon]; first "
	    "defined at t.conf:2");
	assert_error(&e, "t.conf:21: expected KEY = VALUE or a [section] "
	    "header");
	assert_error(&e, "t.conf:23: smtp_url: \"http://mail:25\" is not "
	    "valid; accepted: smtp://HOST:PORT or smtps://HOST:PORT");
	assert_error(&e, "t.conf:22: [notify \"n\"]: from is required");
	assert_error(&e, "t.conf:22: [notify \"n\"]: to is required");
	if (e.n != 24)
		dump(&e);
	assert_int_equal(e.n, 24);
	conf_errors_clear(&e);
	assert_int_equal(e.n, 0);
}

static void
test_more_errors(void **state)
{
	parse_fails("[daemon]\n", "t.conf: no [output] section: define at "
	    "least one");
	parse_fails(OUT "[daemon]\npage_size = 10001\n", "t.conf:4: "
	    "page_size: \"10001\" is out of range; accepted: 1..10000");
	parse_fails(OUT "[daemon]\npage_size = -1\n", "t.conf:4: "
	    "page_size: \"-1\" is not a number; accepted: 1..10000");
	parse_fails(OUT "[output]\n", "t.conf:3: [output] needs a name: "
	    "[output \"NAME\"]");
	parse_fails(OUT "[daemon \"x\"]\n", "t.conf:3: [daemon] takes no name");
	parse_fails(OUT "[output \"s\"]\naddress = 2001:db8::1:514\n",
	    "t.conf:4: address: \"2001:db8::1:514\" has an IPv6 address "
	    "without brackets; write [ADDRESS]:PORT");
	parse_fails(OUT "[output \"s\"]\naddress = host:0\n", "t.conf:4: "
	    "address: \"host:0\" has no port number 1..65535 after the host");
	parse_fails(OUT "[output \"s\"]\naddress = host\n", "t.conf:4: "
	    "address: \"host\" is not HOST:PORT");
	parse_fails(OUT "[output \"s\"]\ntransport = stdout\naddress = x:1\n",
	    "t.conf:5: address: not used with transport stdout");
	parse_fails(OUT "[output \"f\"]\ntransport = file\n", "t.conf:3: "
	    "[output \"f\"]: address is required for transport file (a path)");
	parse_fails(OUT "[output \"s\"]\naddress = h:1\ntls_server_name = h\n",
	    "t.conf:5: tls_server_name: only used with TLS (transport tls, "
	    "relp with tls = yes, kafka_security = ssl or sasl_ssl)");
	parse_fails(OUT "[output \"s\"]\ntransport = udp\naddress = h:1\n"
	    "max_message_bytes = 65536\n", "t.conf:6: max_message_bytes: "
	    "65536 does not fit in a UDP datagram; accepted: 480..65507 for "
	    "udp");
	parse_fails(OUT "[output \"s\"]\naddress = h:1\n"
	    "max_message_bytes = 100\n", "t.conf:5: max_message_bytes: \"100\" "
	    "is out of range; accepted: 480..16777216");
	parse_fails(OUT "[output \"s\"]\naddress = h:1\nfacility = local8\n",
	    "t.conf:5: facility: \"local8\" is not valid; accepted: kern, "
	    "user, mail, daemon, auth, syslog, lpr, news, uucp, cron, "
	    "authpriv, ftp, ntp, audit, alert, clock, local0, local1, local2, "
	    "local3, local4, local5, local6, local7");
	parse_fails(OUT "[daemon]\nstate_dir =\n", "t.conf:4: state_dir: "
	    "empty value; remove the line to use the default");
	parse_fails(OUT "[daemon]\nstate_dir = \"/x\n", "t.conf:4: state_dir: "
	    "unterminated quoted value");
	parse_fails(OUT "[daemon]\nstate_dir = \"/x\" y\n", "t.conf:4: "
	    "state_dir: unexpected text after the closing quote");
	parse_fails(OUT "[daemon]\nshard = 0/3\n", "t.conf:4: shard: \"0/3\" "
	    "is not valid; accepted: K/N with 1 <= K <= N, e.g. 1/3");
	parse_fails(OUT "[daemon]\nmetrics_listen = 9469\n", "t.conf:4: "
	    "metrics_listen: \"9469\" is not HOST:PORT");
	parse_fails(OUT "[cluster]\n", "t.conf:3: [cluster]: etcd_endpoints "
	    "is required");
	parse_fails(OUT "[cluster]\netcd_endpoints = http://e:2379, e2:2379\n",
	    "t.conf:4: etcd_endpoints: \"e2:2379\" is not an absolute URL "
	    "(scheme://host...)");
	parse_fails(OUT "[cluster]\netcd_endpoints = http://e:2379,\n",
	    "t.conf:4: etcd_endpoints: empty item in list \"http://e:2379,\"");
	parse_fails(OUT "[notify \"n\"]\nsmtp_url = smtp://u:pw@mail:25\n"
	    "from = a@b\nto = c@d\n", "t.conf:4: smtp_url: credentials in "
	    "the URL are not accepted; use username and password_file");
	parse_fails(OUT "[notify \"n\"]\nsmtp_url = smtp://mail:25\n"
	    "from = a@b\nto = c@d\ntenants = ghost\n", "t.conf:7: tenants: "
	    "\"ghost\" is not a defined tenant; defined: none");
	parse_fails(OUT "[notify \"n\"]\nsmtp_url = smtp://mail\n"
	    "from = a@b\nto = c@d, nobody\n", "t.conf:6: to: \"nobody\" is "
	    "not a mail address (user@example.com)");
	parse_fails(OUT "[notify \"n\"]\nsmtp_url = smtp://mail\n"
	    "from = a@b\nto = c@d\nusername = u\n", "t.conf:3: "
	    "[notify \"n\"]: username and password_file go together");
	parse_fails("include = /nonexistent/alertrelay.conf\n" OUT,
	    "t.conf:1: include /nonexistent/alertrelay.conf: no such file");
}

static void
test_nul_byte(void **state)
{
	static const char text[] = OUT "x\0y = 1\n[daemon]\n";
	struct conf_errors e = { NULL, 0 };

	assert_null(conf_parse("t.conf", text, sizeof(text) - 1, &e));
	assert_error(&e, "t.conf:3: NUL byte in line");
	assert_int_equal(e.n, 1);
	conf_errors_clear(&e);
}

static void
test_tenant_values(void **state)
{
	char	*t;

	t = with_tenant("secret_expires = 2027-02-30\n");
	parse_fails(t, "t.conf:7: secret_expires: \"2027-02-30\" is not a "
	    "date; accepted: YYYY-MM-DD");
	free(t);
	t = with_tenant("cloud = azure\n");
	parse_fails(t, "t.conf:7: cloud: \"azure\" is not valid; accepted: "
	    "commercial, gcc, gcc-high, dod");
	free(t);
	t = with_tenant("min_severity = unspecified\n");
	parse_fails(t, "t.conf:7: min_severity: \"unspecified\" is not valid; "
	    "accepted: informational, low, medium, high");
	free(t);
	t = with_tenant("login_url = ftp://login\n");
	parse_fails(t, "t.conf:7: login_url: \"ftp://login\" must start with "
	    "https://");
	free(t);
	t = with_tenant("tenant_id = a/b\n");
	parse_fails(t, "t.conf:7: duplicate key \"tenant_id\" in "
	    "[tenant \"x\"]; first set at line 4");
	free(t);
	parse_fails(OUT "[tenant \"x\"]\ntenant_id = ../evil\nclient_id = c\n"
	    "client_secret = s\n", "t.conf:4: tenant_id: \"../evil\" is not "
	    "a GUID or domain name");
}

/*
 * service_sources: Graph only; kept as written for graph_source_pass; an
 * undocumented value is accepted (a warning), an empty item is an error.
 */
static void
test_service_sources(void **state)
{
	struct config	*c;
	char		*t;

	t = with_tenant("source = graph\nservice_sources = "
	    "microsoftDefenderForEndpoint, microsoftDefenderForToasters\n");
	c = parse_ok(t);
	assert_string_equal(c->tenants[0]->service_sources,
	    "microsoftDefenderForEndpoint, microsoftDefenderForToasters");
	conf_free(c);
	free(t);
	t = with_tenant("source = graph\n");
	c = parse_ok(t);
	assert_null(c->tenants[0]->service_sources);
	conf_free(c);
	free(t);
	t = with_tenant("source = graph\nincidents = yes\n");
	c = parse_ok(t);
	assert_true(c->tenants[0]->incidents);
	conf_free(c);
	free(t);
	t = with_tenant("incidents = yes\n");
	parse_fails(t, "t.conf:7: [tenant \"x\"]: incidents = yes needs "
	    "source = graph (incidents come from Microsoft Graph; permission "
	    "SecurityIncident.Read.All)");
	free(t);
	t = with_tenant("service_sources = microsoftDefenderForEndpoint\n");
	parse_fails(t, "t.conf:7: [tenant \"x\"]: service_sources needs "
	    "source = graph (the MDE alerts API has no serviceSource)");
	free(t);
	t = with_tenant("source = graph\nservice_sources = "
	    "microsoftDefenderForEndpoint,,\n");
	parse_fails(t, "t.conf:8: service_sources: an empty item in "
	    "\"microsoftDefenderForEndpoint,,\"; accepted: serviceSource "
	    "values separated by commas, e.g. microsoftDefenderForEndpoint");
	free(t);
}

/* Durations and dates beyond 100 years, and overflowing ones. */
static void
test_century_bound(void **state)
{
	struct config	*c;
	char		*t;

	parse_fails(OUT "[daemon]\nfirst_fetch = 1000000000d\n", "t.conf:4: "
	    "first_fetch: \"1000000000d\" is out of range; accepted: "
	    "0s..36525d (100 years)");
	parse_fails(OUT "[daemon]\nlag_warning = 500ms\n", "t.conf:4: "
	    "lag_warning: \"500ms\" is out of range; accepted: 1s..36525d "
	    "(100 years)");
	parse_fails(OUT "[daemon]\nlag_warning = 36526d\n", "t.conf:4: "
	    "lag_warning: \"36526d\" is out of range; accepted: 1s..36525d "
	    "(100 years)");
	parse_fails(OUT "[daemon]\nlag_warning = later\n", "t.conf:4: "
	    "lag_warning: \"later\" is not a duration; accepted: a number "
	    "with ms, s, m, h or d, e.g. 30s");
	parse_fails(OUT "[daemon]\noverlap = 36526d\n", "t.conf:4: overlap: "
	    "\"36526d\" is out of range; accepted: 0s..36525d (100 years)");
	/* The suffix multiplication itself would overflow int64. */
	parse_fails(OUT "[daemon]\npoll_interval = 9223372036854775807d\n",
	    "t.conf:4: poll_interval: \"9223372036854775807d\" is out of "
	    "range; accepted: 1s..36525d (100 years)");
	parse_fails(OUT "[daemon]\nrequest_timeout = "
	    "99999999999999999999999ms\n", "t.conf:4: request_timeout: "
	    "\"99999999999999999999999ms\" is out of range; accepted: "
	    "1s..36525d (100 years)");
	parse_fails(OUT "[cluster]\netcd_endpoints = http://127.0.0.1:2379\n"
	    "lease_ttl = 3155760000001ms\n", "t.conf:5: lease_ttl: "
	    "\"3155760000001ms\" is out of range; accepted: 1s..36525d "
	    "(100 years)");
	parse_fails(OUT "[notify \"n\"]\nsmtp_url = smtp://mail\nfrom = a@b\n"
	    "to = c@d\ndigest_interval = 876600h1\n", "t.conf:7: "
	    "digest_interval: \"876600h1\" is not a duration; accepted: a "
	    "number with ms, s, m, h or d, e.g. 30s");
	c = parse_ok(OUT "[daemon]\nfirst_fetch = 36525d\noverlap = 876600h\n"
	    "poll_interval = 3155760000000ms\n");
	assert_int_equal(c->daemon.first_fetch_ms, CENTURY_MS_TEST);
	assert_int_equal(c->daemon.overlap_ms, CENTURY_MS_TEST);
	assert_int_equal(c->daemon.poll_interval_ms, CENTURY_MS_TEST);
	conf_free(c);
	t = with_tenant("secret_expires = 2999-01-01\n");
	parse_fails(t, "t.conf:7: secret_expires: \"2999-01-01\" is more than "
	    "100 years ahead; accepted: a date YYYY-MM-DD within 100 years");
	free(t);
	t = with_tenant("secret_expires = 9999-12-31\n");
	parse_fails(t, "t.conf:7: secret_expires: \"9999-12-31\" is more than "
	    "100 years ahead; accepted: a date YYYY-MM-DD within 100 years");
	free(t);
	t = with_tenant("secret_expires = 2099-12-31\n");
	c = parse_ok(t);
	assert_int_equal(c->tenants[0]->secret_expires, 4102358400LL);
	conf_free(c);
	free(t);
}

static void
test_quoting_and_comments(void **state)
{
	struct config	*c = parse_ok(
	    "# comment\r\n"
	    "   # indented comment\n"
	    "\n"
	    "[daemon]   # trailing comment after a header\r\n"
	    "user_agent = a#b   # c\r\n"
	    "state_dir = \"  /spaced dir#1 \\\"q\\\" \\\\ \"\n"
	    "control_socket=/tmp/c.sock\n"
	    "[output \"o\"]\ntransport = stdout\n"
	    "[output \"o2\"]\n"
	    "\ttransport\t=\tstdout\t#tabbed\n");

	assert_string_equal(c->daemon.user_agent, "a#b");
	assert_string_equal(c->daemon.state_dir, "  /spaced dir#1 \"q\" \\ ");
	assert_string_equal(c->daemon.control_socket, "/tmp/c.sock");
	assert_int_equal(c->noutputs, 2);
	conf_free(c);
}

static void
test_include_relative(void **state)
{
	struct conf_errors e = { NULL, 0 };
	struct config	*c;

	c = conf_load("tests/data/conf/include/main.conf", &e);
	if (c == NULL)
		dump(&e);
	assert_non_null(c);
	assert_int_equal(c->ntenants, 2);
	assert_string_equal(c->tenants[0]->name, "alpha");
	assert_string_equal(c->tenants[0]->file,
	    "tests/data/conf/include/tenants.d/10-alpha.conf");
	assert_int_equal(c->tenants[0]->line, 3);
	assert_string_equal(c->tenants[1]->name, "beta");
	assert_int_equal(c->noutputs, 2);
	assert_string_equal(c->outputs[1]->name, "file");
	assert_string_equal(c->outputs[1]->file,
	    "tests/data/conf/include/outputs/file.conf");
	assert_true(conf_tenant_routes(c->tenants[0], c->outputs[1]));
	assert_false(conf_tenant_routes(c->tenants[1], c->outputs[1]));
	assert_int_equal(c->nfiles, 4);
	conf_free(c);
}

static void
test_include_errors(void **state)
{
	struct conf_errors e = { NULL, 0 };
	char		*main_path = tpath("inc/main.conf"), *msg, *sub;
	char		*dir = tpath("inc"), *subdir = tpath("inc/sub");

	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mkdir(subdir, 0700), 0);
	free(dir);
	free(subdir);
	put_file("inc/main.conf", 0644, OUT "[daemon]\n"
	    "include = sub/*.conf\npage_size = 3\n");
	put_file("inc/sub/x.conf", 0644, "[tenant \"t\"]\n\nbogus = 1\n");
	assert_null(conf_load(main_path, &e));
	sub = tpath("inc/sub/x.conf");
	msg = fmt("%s:3: unknown key \"bogus\" in [tenant \"t\"]; accepted: "
	    "tenant_id, client_id, client_secret_file, client_secret, "
	    "certificate_file, private_key_file, secret_expires, source, "
	    "cloud, api_url, login_url, scope, ca_file, label, outputs, "
	    "min_severity, forward_updates, poll_interval, enabled, "
	    "service_sources, client_assertion_file, certificate_thumbprint, "
	    "incidents", sub);
	assert_error(&e, msg);
	free(msg);
	/* The include ended [daemon]: page_size is outside any section. */
	msg = fmt("%s:5: key \"page_size\" outside any section; put it "
	    "after a section header such as [daemon]", main_path);
	assert_error(&e, msg);
	free(msg);
	msg = fmt("%s:1: [tenant \"t\"]: tenant_id is required", sub);
	assert_error(&e, msg);
	free(msg);
	conf_errors_clear(&e);
	free(sub);
	free(main_path);
}

static void
test_include_loop(void **state)
{
	struct conf_errors e = { NULL, 0 };
	char		*real = realpath("tests/data/conf/loop/a.conf", NULL), *msg;

	assert_non_null(real);
	assert_null(conf_load("tests/data/conf/loop/a.conf", &e));
	msg = fmt("tests/data/conf/loop/b.conf:3: include "
	    "tests/data/conf/loop/./a.conf: include loop (%s is already being "
	    "read)", real);
	assert_error(&e, msg);
	assert_int_equal(e.n, 1);
	conf_errors_clear(&e);
	free(msg);
	free(real);
}

static void
test_include_depth(void **state)
{
	struct conf_errors e = { NULL, 0 };
	struct config	*c;
	char		 name[32], *text, *p, *msg;
	int		 i;

	/* d0 (the main file) includes d1, ... d8 includes d9. */
	for (i = 0; i <= 9; i++) {
		snprintf(name, sizeof(name), "d%d.conf", i);
		if (i == 9)
			text = fmt("# end\n");
		else
			text = fmt("%sinclude = d%d.conf\n", i == 0 ? OUT : "",
			    i + 1);
		put_file(name, 0644, text);
		free(text);
	}
	p = tpath("d0.conf");
	assert_null(conf_load(p, &e));
	free(p);
	p = tpath("d8.conf");
	msg = fmt("%s:1: include %s/d9.conf: includes nested more than 8 deep",
	    p, tmpdir);
	assert_error(&e, msg);
	assert_int_equal(e.n, 1);
	conf_errors_clear(&e);
	free(msg);
	free(p);

	/* Starting one level lower, the same chain is fine. */
	p = tpath("d1.conf");
	put_file("d1.conf", 0644, OUT "include = d2.conf\n");
	c = conf_load(p, &e);
	assert_non_null(c);
	assert_int_equal(c->nfiles, 9);
	conf_free(c);
	free(p);
}

/*
 * Includes that fan out: main includes 30 files, each of which includes
 * the 30 of the next level, and so on (27,000 reads at the third level).
 * Reading stops at the budget with one error naming the include, and
 * the configuration is refused; a level less is fine.
 */
static void
test_include_budget(void **state)
{
	struct conf_errors e = { NULL, 0 };
	struct config	*c;
	char		 name[64], *p, *text;
	int		 lvl, i;

	for (lvl = 1; lvl <= 3; lvl++) {
		snprintf(name, sizeof(name), "fan%d", lvl);
		p = tpath(name);
		assert_int_equal(mkdir(p, 0700), 0);
		free(p);
		for (i = 0; i < 30; i++) {
			snprintf(name, sizeof(name), "fan%d/f%02d.conf", lvl,
			    i);
			text = lvl < 3 ? fmt("include = ../fan%d/*.conf\n",
			    lvl + 1) : fmt("# leaf\n");
			put_file(name, 0644, text);
			free(text);
		}
	}
	put_file("fanmain.conf", 0644, OUT "include = fan1/*.conf\n");
	p = tpath("fanmain.conf");
	assert_null(conf_load(p, &e));
	assert_int_equal(e.n, 1);
	/* Reported against the fan2 file whose include went over. */
	assert_non_null(strstr(e.msg[0], "/fan2/f"));
	assert_non_null(strstr(e.msg[0], ": include "));
	assert_non_null(strstr(e.msg[0], "/fan3/f"));
	assert_non_null(strstr(e.msg[0], "more than 20000 files or 256 MB "
	    "read for one configuration"));
	assert_non_null(strstr(e.msg[0], "check the include patterns"));
	conf_errors_clear(&e);
	free(p);

	/* Two levels: 1 + 30 + 900 files. */
	put_file("fanmain.conf", 0644, OUT "include = fan2/*.conf\n");
	p = tpath("fanmain.conf");
	c = conf_load(p, &e);
	assert_non_null(c);
	assert_int_equal(c->nfiles, 931);
	conf_free(c);
	free(p);
}

static void
test_load_missing(void **state)
{
	struct conf_errors e = { NULL, 0 };

	assert_null(conf_load("/nonexistent/alertrelay.conf", &e));
	assert_error(&e, "/nonexistent/alertrelay.conf: cannot read: "
	    "No such file or directory");
	assert_int_equal(e.n, 1);
	conf_errors_clear(&e);
	/* errs may be NULL: the verdict alone. */
	assert_null(conf_load("/nonexistent/alertrelay.conf", NULL));
}

static void
test_secret_mode(void **state)
{
	char	*p = tpath("open-secret"), *t, *msg;

	put_file("open-secret", 0644, "hunter2\n");
	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "client_secret_file = %s\n", p);
	msg = fmt("t.conf:6: client_secret_file %s is readable by group or "
	    "others (mode 0644); run chmod 600 %s", p, p);
	parse_fails(t, msg);
	free(t);
	free(msg);

	put_file("open-secret", 0620, "hunter2\n");
	t = fmt(OUT "[notify \"n\"]\nsmtp_url = smtp://m\nfrom = a@b\n"
	    "to = c@d\nusername = u\npassword_file = %s\n", p);
	msg = fmt("t.conf:8: password_file %s is accessible by group or "
	    "others (mode 0620); run chmod 600 %s", p, p);
	parse_fails(t, msg);
	free(t);
	free(msg);

	put_file("open-secret", 0640, "-----BEGIN PRIVATE KEY-----\n");
	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "certificate_file = %s/cert\nprivate_key_file = %s\n", tmpdir, p);
	msg = fmt("t.conf:7: private_key_file %s is readable by group or "
	    "others (mode 0640); run chmod 600 %s", p, p);
	parse_fails(t, msg);
	free(t);
	free(msg);
	free(p);
}

/* Parse a tenant whose secret file holds content; NULL if rejected. */
static char *
secret_from(const char *content, struct conf_errors *e)
{
	struct config	*c;
	char		*p = tpath("s2"), *t, *s = NULL;

	put_file("s2", 0600, content);
	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "client_secret_file = %s\n", p);
	if ((c = parse(t, e)) != NULL) {
		s = xstrdup(c->tenants[0]->client_secret);
		assert_string_equal(c->tenants[0]->client_secret_file, p);
		conf_free(c);
	}
	free(t);
	free(p);
	return s;
}

static void
test_secret_newline(void **state)
{
	struct conf_errors e = { NULL, 0 };
	char		*s, *p = tpath("s2"), *msg;

	s = secret_from("abc~def\n", &e);
	assert_string_equal(s, "abc~def");
	free(s);
	s = secret_from("abc~def\r\n", &e);
	assert_string_equal(s, "abc~def");
	free(s);
	s = secret_from("abc~def", &e);
	assert_string_equal(s, "abc~def");
	free(s);
	assert_int_equal(e.n, 0);

	assert_null(secret_from("\n", &e));
	msg = fmt("t.conf:6: client_secret_file %s is empty", p);
	assert_error(&e, msg);
	free(msg);
	conf_errors_clear(&e);
	assert_null(secret_from("abc\n\n", &e));
	msg = fmt("t.conf:6: client_secret_file %s must hold the secret on "
	    "one line", p);
	assert_error(&e, msg);
	free(msg);
	conf_errors_clear(&e);
	free(p);
}

static void
test_credentials(void **state)
{
	char	*t;

	t = with_tenant("client_secret = inline\n");
	parse_fails(t, "t.conf:3: [tenant \"x\"]: more than one credential; "
	    "use exactly one of client_secret_file, client_secret, "
	    "client_assertion_file, or certificate_file and "
	    "private_key_file");
	free(t);
	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "certificate_file = %s/cert\n", tmpdir);
	parse_fails(t, "t.conf:3: [tenant \"x\"]: certificate_file and "
	    "private_key_file go together");
	free(t);
	/* An inline secret is accepted (with a warning in the log). */
	conf_free(parse_ok(OUT "[tenant \"x\"]\ntenant_id = t\n"
	    "client_id = c\nclient_secret = \"#not-a-comment\"\n"));
}

/*
 * Secretless sign-in: a federated assertion file (owner-only, like a
 * secret file; its content is read per token request, not here) and the
 * SHA-256 certificate thumbprint.
 */
static void
test_secretless(void **state)
{
	struct config	*c;
	char		*t, *msg;

	put_file("assertion", 0600, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n");
	put_file("assertion-644", 0644, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n");
	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "client_assertion_file = %s/assertion\n", tmpdir);
	c = parse_ok(t);
	assert_non_null(c->tenants[0]->client_assertion_file);
	assert_null(c->tenants[0]->client_secret);
	conf_free(c);
	free(t);
	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "client_assertion_file = %s/assertion-644\n", tmpdir);
	msg = fmt("t.conf:6: client_assertion_file %1$s/assertion-644 is "
	    "readable by group or others (mode 0644); run chmod 600 "
	    "%1$s/assertion-644", tmpdir);
	parse_fails(t, msg);
	free(msg);
	free(t);
	msg = fmt("client_assertion_file = %s/assertion\n", tmpdir);
	t = with_tenant(msg);
	free(msg);
	parse_fails(t, "t.conf:3: [tenant \"x\"]: more than one credential; "
	    "use exactly one of client_secret_file, client_secret, "
	    "client_assertion_file, or certificate_file and "
	    "private_key_file");
	free(t);
	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "certificate_file = %1$s/cert\nprivate_key_file = %1$s/key\n"
	    "certificate_thumbprint = sha256\n", tmpdir);
	c = parse_ok(t);
	assert_int_equal(c->tenants[0]->certificate_thumbprint, THUMB_SHA256);
	conf_free(c);
	free(t);
	t = with_tenant("certificate_thumbprint = sha256\n");
	parse_fails(t, "t.conf:7: [tenant \"x\"]: certificate_thumbprint "
	    "needs certificate_file and private_key_file");
	free(t);
	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "certificate_file = %1$s/cert\nprivate_key_file = %1$s/key\n"
	    "certificate_thumbprint = md5\n", tmpdir);
	parse_fails(t, "t.conf:8: certificate_thumbprint: \"md5\" is not "
	    "valid; accepted: sha1, sha256");
	free(t);
}

static void
test_missing_certificate(void **state)
{
	char	*t, *msg;

	t = fmt(OUT "[tenant \"x\"]\ntenant_id = t\nclient_id = c\n"
	    "certificate_file = %s/missing.pem\nprivate_key_file = %s/key\n",
	    tmpdir, tmpdir);
	msg = fmt("t.conf:6: certificate_file: cannot open %s/missing.pem: "
	    "No such file or directory", tmpdir);
	parse_fails(t, msg);
	free(t);
	free(msg);
}

/* api_url of a tenant with the given extra keys. */
static void
assert_urls(const char *extra, const char *api, const char *login,
    const char *scope)
{
	char		*t = with_tenant(extra);
	struct config	*c = parse_ok(t);

	assert_string_equal(c->tenants[0]->api_url, api);
	assert_string_equal(c->tenants[0]->login_url, login);
	assert_string_equal(c->tenants[0]->scope, scope);
	conf_free(c);
	free(t);
}

static void
test_urls_loopback(void **state)
{
	const char	*login = "https://login.microsoftonline.com";
	const char	*scope = "https://api.securitycenter.microsoft.com/"
	    ".default";
	struct conf_errors e = { NULL, 0 };
	char		*t;

	assert_urls("api_url = http://127.0.0.1:8080/\n",
	    "http://127.0.0.1:8080", login, scope);
	assert_urls("api_url = http://127.9.8.7\nlogin_url = http://[::1]:9/\n",
	    "http://127.9.8.7", "http://[::1]:9", scope);
	assert_urls("login_url = http://LOCALHOST:1/x/\n",
	    "https://api.security.microsoft.com", "http://LOCALHOST:1/x",
	    scope);
	assert_urls("api_url = https://eu.api.security.microsoft.com/\n",
	    "https://eu.api.security.microsoft.com", login, scope);

	t = with_tenant("login_url = http://10.0.0.1/\n");
	parse_fails(t, "t.conf:7: login_url: \"http://10.0.0.1/\" must use "
	    "https://; http:// is accepted only for loopback hosts "
	    "(127.0.0.0/8, [::1], localhost)");
	free(t);
	t = with_tenant("api_url = http://127.0.0.1.evil.com/\n");
	assert_null(parse(t, &e));
	assert_true(has_error(&e, "must use https://"));
	conf_errors_clear(&e);
	free(t);
	t = with_tenant("api_url = https://user:hunter2@api.example/\n");
	parse_fails(t, "t.conf:7: api_url: credentials in the URL are not "
	    "accepted");
	free(t);
}

static void
test_clouds(void **state)
{
	assert_urls("cloud = gcc\n",
	    "https://api-gcc.securitycenter.microsoft.us",
	    "https://login.microsoftonline.com",
	    "https://api-gcc.securitycenter.microsoft.us/.default");
	assert_urls("cloud = gcc-high\n",
	    "https://api-gov.securitycenter.microsoft.us",
	    "https://login.microsoftonline.us",
	    "https://api-gov.securitycenter.microsoft.us/.default");
	assert_urls("cloud = dod\n",
	    "https://api-gov.securitycenter.microsoft.us",
	    "https://login.microsoftonline.us",
	    "https://api-gov.securitycenter.microsoft.us/.default");
	assert_urls("source = graph\n", "https://graph.microsoft.com",
	    "https://login.microsoftonline.com",
	    "https://graph.microsoft.com/.default");
	assert_urls("source = graph\ncloud = gcc-high\n",
	    "https://graph.microsoft.us", "https://login.microsoftonline.us",
	    "https://graph.microsoft.us/.default");
	assert_urls("source = graph\ncloud = dod\n",
	    "https://dod-graph.microsoft.us", "https://login.microsoftonline.us",
	    "https://dod-graph.microsoft.us/.default");
	assert_urls("cloud = gcc-high\nscope = https://x/.default\n"
	    "api_url = https://api.example\n", "https://api.example",
	    "https://login.microsoftonline.us", "https://x/.default");
}

static void
test_shard_split(void **state)
{
	struct config	*c[3];
	char		 text[128], name[32];
	unsigned	 count[3] = { 0, 0, 0 };
	int		 i, k, hits;

	for (k = 0; k < 3; k++) {
		snprintf(text, sizeof(text), OUT "[daemon]\nshard = %d/3\n",
		    k + 1);
		c[k] = parse_ok(text);
	}
	for (i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "tenant-%d", i);
		for (hits = 0, k = 0; k < 3; k++) {
			if (conf_in_shard(c[k], name)) {
				hits++;
				count[k]++;
			}
		}
		assert_int_equal(hits, 1);
	}
	for (k = 0; k < 3; k++) {
		assert_true(count[k] > 250);
		conf_free(c[k]);
	}
	/* The default 1/1 takes everything. */
	c[0] = parse_ok(OUT);
	assert_true(conf_in_shard(c[0], "anything"));
	conf_free(c[0]);
}

/* [notify] events: alerts (the default), incidents or both. */
static void
test_notify_events(void **state)
{
	static const struct {
		const char		*line;
		enum conf_notify_events	 want;
	} vec[] = {
		{ "", NOTIFY_ALERTS },
		{ "events = alerts\n", NOTIFY_ALERTS },
		{ "events = incidents\n", NOTIFY_INCIDENTS },
		{ "events = both\n", NOTIFY_BOTH },
	};
	struct config	*c;
	char		*t;
	size_t		 i;

	for (i = 0; i < nitems(vec); i++) {
		t = fmt(OUT "[notify \"n\"]\nsmtp_url = smtp://mail\n"
		    "from = a@b\nto = c@d\n%s", vec[i].line);
		c = parse_ok(t);
		assert_int_equal(c->notifies[0]->events, vec[i].want);
		conf_free(c);
		free(t);
	}
	/* What a reload compares to give a mail in flight up. */
	{
		struct config	*a, *b;
		static const char *changed[] = {
			"smtp_url = smtp://other\nfrom = a@b\nto = c@d, e@f\n",
			"smtp_url = smtp://mail\nfrom = x@b\nto = c@d, e@f\n",
			"smtp_url = smtp://mail\nfrom = a@b\nto = c@d\n",
			"smtp_url = smtp://mail\nfrom = a@b\nto = c@d, x@f\n",
		};

		t = fmt(OUT "[notify \"n\"]\nsmtp_url = smtp://mail\n"
		    "from = a@b\nto = c@d, e@f\nevents = both\n"
		    "min_severity = low\n");
		a = parse_ok(t);
		free(t);
		t = fmt(OUT "[notify \"n\"]\nsmtp_url = smtp://mail\n"
		    "from = a@b\nto = c@d, e@f\n");
		b = parse_ok(t);
		free(t);
		assert_true(conf_notify_same_delivery(a->notifies[0],
		    b->notifies[0]));
		conf_free(b);
		for (i = 0; i < nitems(changed); i++) {
			t = fmt(OUT "[notify \"n\"]\n%s", changed[i]);
			b = parse_ok(t);
			free(t);
			assert_false(conf_notify_same_delivery(a->notifies[0],
			    b->notifies[0]));
			conf_free(b);
		}
		conf_free(a);
	}
	parse_fails(OUT "[notify \"n\"]\nsmtp_url = smtp://mail\nfrom = a@b\n"
	    "to = c@d\nevents = all\n", "t.conf:7: events: \"all\" is not "
	    "valid; accepted: alerts, incidents, both");
	parse_fails(OUT "[notify \"n\"]\nsmtp_url = smtp://mail\nfrom = a@b\n"
	    "to = c@d\nevents = alerts,incidents\n", "t.conf:7: events: "
	    "\"alerts,incidents\" is not valid; accepted: alerts, incidents, "
	    "both");
}

static void
test_summary(void **state)
{
	char		*tn = tenant_text("contoso", "outputs = siem1\n");
	char		*t = fmt(OUT "[output \"siem1\"]\naddress = 127.0.0.1:514\n"
	    "facility = local4\n%s"
	    "[tenant \"inline\"]\ntenant_id = i\nclient_id = c\n"
	    "client_secret = TopSecretInline\nenabled = no\n"
	    "[notify \"n\"]\nsmtp_url = smtp://m:25\nfrom = a@b\nto = c@d\n"
	    "username = u\npassword_file = %s/secret\n"
	    "[cluster]\netcd_endpoints = http://127.0.0.1:2379\n",
	    tn, tmpdir);
	struct config	*c = parse_ok(t);
	char		*out = NULL;
	size_t		 len = 0;
	FILE		*f = open_memstream(&out, &len);

	conf_summary(c, f, true);
	fclose(f);
	assert_null(strstr(out, "s3cr3t"));
	assert_null(strstr(out, "TopSecretInline"));
	assert_non_null(strstr(out, "daemon: state_dir=/var/lib/alertrelay "
	    "poll_interval=60s overlap=15m first_fetch=24h page_size=1000 "
	    "max_concurrent_requests=32 request_timeout=60s "));
	assert_non_null(strstr(out, " lag_warning=15m shard=1/1\n"));
	assert_non_null(strstr(out, "output siem1: tcp 127.0.0.1:514 cef "
	    "rfc5424 newline facility=local4 max_message_bytes=65536 "
	    "spool_max_bytes=1G\n"));
	assert_non_null(strstr(out, "output o: stdout cef"));
	assert_non_null(strstr(out, "tenant contoso: label=contoso "
	    "tenant_id=t.example client_id=11111111-2222-3333-4444-"
	    "555555555555 auth=secret(file) source=mde cloud=commercial "
	    "api=https://api.security.microsoft.com "));
	assert_non_null(strstr(out, " outputs=siem1 min_severity="
	    "informational forward_updates=yes enabled=yes\n"));
	assert_non_null(strstr(out, "tenant inline: "));
	assert_non_null(strstr(out, "auth=secret(inline)"));
	assert_non_null(strstr(out, "outputs=all "));
	assert_non_null(strstr(out, "enabled=no\n"));
	assert_non_null(strstr(out, "password=<redacted>"));
	assert_non_null(strstr(out, "notify n: smtp_url=smtp://m:25"));
	assert_non_null(strstr(out, "cluster: etcd_endpoints="
	    "http://127.0.0.1:2379 member_name="));
	assert_non_null(strstr(out, "lease_ttl=10s prefix=/alertrelay/"));
	free(out);
	/* Without -v: one short line per section, no secrets either. */
	out = NULL;
	f = open_memstream(&out, &len);
	conf_summary(c, f, false);
	fclose(f);
	assert_null(strstr(out, "s3cr3t"));
	assert_null(strstr(out, "TopSecretInline"));
	assert_string_equal(out, "daemon: state_dir=/var/lib/alertrelay "
	    "poll_interval=60s\n"
	    "output o: stdout cef\n"
	    "output siem1: tcp 127.0.0.1:514 cef\n"
	    "tenant contoso: source=mde auth=secret(file) enabled=yes\n"
	    "tenant inline: source=mde auth=secret(inline) enabled=no\n"
	    "notify n: smtp_url=smtp://m:25 events=alerts\n"
	    "cluster: etcd_endpoints=http://127.0.0.1:2379\n");
	free(out);
	conf_free(c);
	free(t);
	free(tn);
}

static void
test_severity(void **state)
{
	assert_int_equal(severity_parse("High", 4), SEV_HIGH);
	assert_int_equal(severity_parse("highest", 4), SEV_HIGH);
	assert_int_equal(severity_parse("MEDIUM", 6), SEV_MEDIUM);
	assert_int_equal(severity_parse("Low", 3), SEV_LOW);
	assert_int_equal(severity_parse("Informational", 13),
	    SEV_INFORMATIONAL);
	assert_int_equal(severity_parse("UnSpecified", 11), SEV_UNSPECIFIED);
	assert_int_equal(severity_parse("severe", 6), -1);
	assert_int_equal(severity_parse("", 0), -1);
	assert_string_equal(severity_name(SEV_HIGH), "high");
	assert_string_equal(severity_name(SEV_INFORMATIONAL), "informational");
	assert_string_equal(severity_name(SEV_UNSPECIFIED), "unspecified");
	assert_string_equal(conf_transport_name(OUT_TLS), "tls");
	assert_string_equal(conf_format_name(FMT_JSON), "json");
}

static void
test_cluster_defaults(void **state)
{
	struct config	*c = parse_ok(OUT "[cluster]\n"
	    "etcd_endpoints = https://e1:2379\n");
	char		 host[256];

	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_true(c->cluster.enabled);
	assert_string_equal(c->cluster.member_name, host);
	assert_int_equal(c->cluster.lease_ttl_ms, 10000);
	assert_string_equal(c->cluster.prefix, "/alertrelay/");
	assert_null(c->cluster.ca_file);
	conf_free(c);
}

static void
test_too_many_errors(void **state)
{
	struct conf_errors e = { NULL, 0 };
	struct buf	 b;
	int		 i;

	buf_init(&b);
	buf_adds(&b, OUT "[daemon]\n");
	for (i = 0; i < 300; i++)
		buf_adds(&b, "nonsense\n");
	assert_null(parse(b.data, &e));
	assert_int_equal(e.n, 101);
	assert_string_equal(e.msg[100], "t.conf:104: too many errors, "
	    "giving up");
	conf_errors_clear(&e);
	buf_clear(&b);
}

/* Uncomment "#key = value" and "#[section]" lines of the example. */
static char *
uncomment(const char *text, const char *from, const char *to)
{
	struct buf	 b;
	const char	*s = text, *nl, *hit;
	size_t		 n;

	buf_init(&b);
	for (; *s != '\0'; s = nl + 1) {
		nl = strchr(s, '\n');
		assert_non_null(nl);
		n = (size_t)(nl - s);
		if (s[0] == '#' && (s[1] == '[' || (s[1] >= 'a' &&
		    s[1] <= 'z' && memchr(s, '=', n) != NULL)))
			s++, n--;
		while ((hit = strstr(s, from)) != NULL && hit < s + n) {
			buf_add(&b, s, (size_t)(hit - s));
			buf_adds(&b, to);
			n -= (size_t)(hit - s) + strlen(from);
			s = hit + strlen(from);
		}
		buf_add(&b, s, n);
		buf_addc(&b, '\n');
	}
	return b.data;
}

/* Create (mode 0600) every file an error says cannot be opened. */
static void
create_missing(const struct conf_errors *e)
{
	const char	*p, *end;
	char		*path, *dir;
	size_t		 i;
	int		 fd;

	for (i = 0; i < e->n; i++) {
		p = strstr(e->msg[i], "cannot open ");
		if (p == NULL) {
			dump(e);
			fail();
		}
		p += strlen("cannot open ");
		end = strstr(p, ": No such file");
		assert_non_null(end);
		path = xstrndup(p, (size_t)(end - p));
		dir = xstrndup(path, (size_t)(strrchr(path, '/') - path));
		mkdir(dir, 0700);
		fd = open(path, O_WRONLY | O_CREAT, 0600);
		assert_true(fd != -1);
		assert_int_equal(write(fd, "x\n", 2), 2);
		close(fd);
		free(dir);
		free(path);
	}
}

static void
test_example_config(void **state)
{
	struct conf_errors e = { NULL, 0 };
	struct config	*c;
	struct buf	 b;
	char		*text, *dir = fmt("%s/", tmpdir), *p = tpath("ex.conf");

	c = conf_load("etc/alertrelay.conf", &e);
	if (c == NULL)
		dump(&e);
	assert_non_null(c);
	assert_int_equal(c->noutputs, 1);
	assert_int_equal(c->ntenants, 0);
	conf_free(c);

	/* Every commented setting, uncommented, is accepted. */
	buf_init(&b);
	assert_int_equal(file_read_all("etc/alertrelay.conf", 1 << 20, &b), 0);
	text = uncomment(b.data, "/etc/alertrelay/", dir);
	put_file("ex.conf", 0644, text);
	assert_null(conf_load(p, &e));
	create_missing(&e);
	conf_errors_clear(&e);
	c = conf_load(p, &e);
	if (c == NULL)
		dump(&e);
	assert_non_null(c);
	assert_int_equal(c->noutputs, 6);
	assert_int_equal(c->ntenants, 4);
	assert_int_equal(c->nnotifies, 1);
	assert_true(c->cluster.enabled);
	assert_false(conf_tenant_find(c, "northwind")->enabled);
	assert_string_equal(conf_tenant_find(c, "contoso")->label,
	    "Contoso Ltd");
	conf_free(c);
	buf_clear(&b);
	free(text);
	free(dir);
	free(p);
}

/* nftw callback: remove one entry. */
static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
group_setup(void **state)
{
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	put_file("secret", 0600, "s3cr3t-value\n");
	put_file("key", 0600, "-----BEGIN PRIVATE KEY-----\n");
	put_file("cert", 0644, "-----BEGIN CERTIFICATE-----\n");
	return 0;
}

static int
group_teardown(void **state)
{
	return nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* transport = kafka and relp: their keys, defaults and mistakes. */
static void
test_kafka_relp(void **state)
{
	struct config	*c;
	char		*t, *msg, *p = tpath("kpw");

	c = parse_ok(OUT "[output \"k\"]\ntransport = kafka\n"
	    "brokers = k1:9092, [::1]:9093\ntopic = siem.alerts\n");
	assert_int_equal(c->outputs[1]->transport, OUT_KAFKA);
	assert_string_equal(c->outputs[1]->brokers, "k1:9092, [::1]:9093");
	assert_string_equal(c->outputs[1]->topic, "siem.alerts");
	assert_int_equal(c->outputs[1]->kafka_security, KAFKA_PLAINTEXT);
	assert_int_equal(c->outputs[1]->header, HDR_NONE);
	conf_free(c);
	c = parse_ok(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nsyslog_header = rfc3164\n");
	assert_int_equal(c->outputs[1]->header, HDR_RFC3164);
	conf_free(c);

	put_file("kpw", 0600, "s3cret\n");
	t = fmt(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nkafka_security = sasl_ssl\nsasl_mechanism = "
	    "scram-sha-512\nsasl_username = u\nsasl_password_file = %s\n"
	    "ca_file = %s/cert\n", p, tmpdir);
	c = parse_ok(t);
	assert_int_equal(c->outputs[1]->kafka_security, KAFKA_SASL_SSL);
	assert_int_equal(c->outputs[1]->sasl_mechanism, SASL_SCRAM_SHA_512);
	assert_string_equal(c->outputs[1]->sasl_password, "s3cret");
	conf_free(c);
	free(t);

	put_file("kpw", 0640, "s3cret\n");
	t = fmt(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nkafka_security = sasl_ssl\nsasl_username = u\n"
	    "sasl_password_file = %s\n", p);
	msg = fmt("t.conf:9: sasl_password_file %s is readable by group or "
	    "others (mode 0640); run chmod 600 %s", p, p);
	parse_fails(t, msg);
	free(t);
	free(msg);
	free(p);

	parse_fails(OUT "[output \"k\"]\ntransport = kafka\ntopic = t\n",
	    "t.conf:3: [output \"k\"]: brokers is required");
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n",
	    "t.conf:3: [output \"k\"]: topic is required");
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1, k2\n"
	    "topic = t\n", "t.conf:5: brokers: \"k2\" is not HOST:PORT");
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = a/b\n", "t.conf:6: topic: \"a/b\" is not a Kafka topic "
	    "name; accepted: 1 to 249 of A-Z a-z 0-9 . _ -");
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\naddress = k:1\n", "t.conf:7: address: not used with "
	    "transport kafka (brokers = HOST:PORT, ...)");
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nkafka_security = sasl\n", "t.conf:7: kafka_security: "
	    "\"sasl\" is not valid; accepted: plaintext, ssl, sasl_ssl");
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nsasl_username = u\n", "t.conf:7: sasl_username: only "
	    "used with kafka_security = sasl_ssl");
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nkafka_security = sasl_ssl\nsasl_username = u\n",
	    "t.conf:3: [output \"k\"]: sasl_password_file is required");
	t = fmt(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nkafka_security = sasl_ssl\nsasl_username = u\n"
	    "sasl_password_file = %s/secret\nsasl_mechanism = gssapi\n",
	    tmpdir);
	parse_fails(t, "t.conf:10: sasl_mechanism: \"gssapi\" is not valid; "
	    "accepted: plain, scram-sha-256, scram-sha-512");
	free(t);
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nframing = newline\n", "t.conf:7: framing: not used "
	    "with transport kafka (one message per event)");
	parse_fails(OUT "[output \"k\"]\ntransport = kafka\nbrokers = k:1\n"
	    "topic = t\nkafka_security = ssl\ntls_server_name = k\n",
	    "t.conf:8: tls_server_name: not used with transport kafka "
	    "(brokers are verified against their own names)");
	parse_fails(OUT "[output \"s\"]\naddress = h:1\ntopic = t\n",
	    "t.conf:5: topic: only used with transport kafka");

	c = parse_ok(OUT "[output \"r\"]\ntransport = relp\naddress = r:2514\n"
	    "tls = yes\ntls_server_name = siem.example\n");
	assert_int_equal(c->outputs[1]->transport, OUT_RELP);
	assert_true(c->outputs[1]->tls);
	assert_string_equal(c->outputs[1]->host, "r");
	conf_free(c);
	parse_fails(OUT "[output \"r\"]\ntransport = relp\n", "t.conf:3: "
	    "[output \"r\"]: address is required for transport relp "
	    "(HOST:PORT)");
	parse_fails(OUT "[output \"r\"]\ntransport = relp\naddress = r:1\n"
	    "tls_server_name = x\n", "t.conf:6: tls_server_name: only used "
	    "with TLS (transport tls, relp with tls = yes, kafka_security = "
	    "ssl or sasl_ssl)");
	parse_fails(OUT "[output \"r\"]\ntransport = relp\naddress = r:1\n"
	    "tls = maybe\n", "t.conf:6: tls: \"maybe\" is not a boolean; "
	    "accepted: yes, no, true, false, on, off, 1, 0");
	parse_fails(OUT "[output \"r\"]\ntransport = relp\naddress = r:1\n"
	    "framing = octet-counting\n", "t.conf:6: framing: not used with "
	    "transport relp (RELP frames every record itself)");
	parse_fails(OUT "[output \"s\"]\naddress = h:1\ntls = yes\n",
	    "t.conf:5: tls: only used with transport relp (use transport tls "
	    "for syslog over TLS)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_errors_collected),
		cmocka_unit_test(test_more_errors),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_tenant_values),
		cmocka_unit_test(test_quoting_and_comments),
		cmocka_unit_test(test_include_relative),
		cmocka_unit_test(test_include_errors),
		cmocka_unit_test(test_include_loop),
		cmocka_unit_test(test_include_depth),
		cmocka_unit_test(test_include_budget),
		cmocka_unit_test(test_load_missing),
		cmocka_unit_test(test_secret_mode),
		cmocka_unit_test(test_secret_newline),
		cmocka_unit_test(test_credentials),
		cmocka_unit_test(test_missing_certificate),
		cmocka_unit_test(test_urls_loopback),
		cmocka_unit_test(test_clouds),
		cmocka_unit_test(test_shard_split),
		cmocka_unit_test(test_notify_events),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_severity),
		cmocka_unit_test(test_cluster_defaults),
		cmocka_unit_test(test_too_many_errors),
		cmocka_unit_test(test_century_bound),
		cmocka_unit_test(test_service_sources),
		cmocka_unit_test(test_secretless),
		cmocka_unit_test(test_example_config),
		cmocka_unit_test(test_kafka_relp),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
