/* Configuration sections: opening them, checking them when closed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "conf_int.h"
#include "util.h"

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
void *
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
void *
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
	const char	*tname = nv_name(conf_transports, (int)o->transport);
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
bool
output_uses_tls(const struct conf_output *o)
{
	return o->transport == OUT_TLS || (o->transport == OUT_RELP &&
	    o->tls) || (o->transport == OUT_KAFKA &&
	    o->kafka_security != KAFKA_PLAINTEXT);
}

/* TLS-only keys on other conf_transports are mistakes worth reporting. */
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
void
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
void *
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
void
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
void *
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
void
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
void *
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
void
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
