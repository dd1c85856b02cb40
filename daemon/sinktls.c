/* Outputs over TLS: client context, session, handshake, errors, marks. */

#include <sys/types.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "internal.h"
#include "sink_int.h"

/* The short reason of the first queued OpenSSL error, or NULL. */
static const char *
sinktls_reason(void)
{
	unsigned long	 e;
	const char	*r;

	if ((e = ERR_peek_error()) == 0)
		return NULL;
	if ((r = ERR_reason_error_string(e)) == NULL)
		r = "unknown TLS error";
	return r;
}

/* Build the TLS client context: TLS >= 1.2, peer always verified. */
SSL_CTX *
sinktls_ctx(const struct conf_output *c, char *err, size_t errlen)
{
	SSL_CTX		*ctx;
	const char	*key;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "output %s: cannot create TLS context",
		    c->name);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (c->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, c->ca_file,
		    NULL) != 1) {
			snprintf(err, errlen, "output %s: cannot load ca_file "
			    "%s: %s", c->name, c->ca_file, sinktls_reason());
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "output %s: cannot load the system "
		    "CA certificates: %s", c->name, sinktls_reason());
		goto fail;
	}
	if (c->cert_file == NULL)
		return ctx;
	key = c->key_file != NULL ? c->key_file : c->cert_file;
	if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1) {
		snprintf(err, errlen, "output %s: cannot load cert_file %s: %s",
		    c->name, c->cert_file, sinktls_reason());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "output %s: cannot load key_file %s: %s",
		    c->name, key, sinktls_reason());
		goto fail;
	}
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * A TLS session on the connected socket fd, checking the peer against
 * name (tls_server_name, or the host), or NULL with err set.
 */
SSL *
sinktls_session(SSL_CTX *ctx, int fd, const char *name, char *err,
    size_t errlen)
{
	SSL		*ssl;
	unsigned char	 addr[sizeof(struct in6_addr)];
	int		 isip;

	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
		snprintf(err, errlen, "cannot create TLS session");
		goto fail;
	}
	isip = inet_pton(AF_INET, name, addr) == 1 ||
	    inet_pton(AF_INET6, name, addr) == 1;
	if (isip) {
		/* IP addresses are matched against IP SANs; no SNI. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    name) != 1) {
			snprintf(err, errlen, "bad IP address %s", name);
			goto fail;
		}
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, name) != 1 ||
		    SSL_set_tlsext_host_name(ssl, name) != 1) {
			snprintf(err, errlen, "bad server name %s", name);
			goto fail;
		}
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

/* Advance the handshake: what to wait for next, or why it failed. */
enum sinktls_step
sinktls_handshake(SSL *ssl, char *reason, size_t len)
{
	int	 r;

	ERR_clear_error();
	errno = 0;
	if ((r = SSL_connect(ssl)) == 1)
		return SINKTLS_DONE;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return SINKTLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return SINKTLS_WANT_WRITE;
	}
	sinktls_explain(ssl, r, true, reason, len);
	return SINKTLS_FAILED;
}

/* A hint for the operator next to a certificate verification error. */
static const char *
sinktls_verify_hint(long v)
{
	switch (v) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_UNTRUSTED:
		return " (check ca_file)";
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return " (check tls_server_name)";
	default:
		return "";
	}
}

/*
 * Describe a failed SSL_* call (ret its result) for the outage message;
 * during the handshake, a failed certificate check comes first.
 */
void
sinktls_explain(SSL *ssl, int ret, bool handshake, char *out, size_t len)
{
	long		 v;
	int		 e, saved = errno;
	const char	*r;

	e = SSL_get_error(ssl, ret);
	v = SSL_get_verify_result(ssl);
	if (handshake && v != X509_V_OK)
		snprintf(out, len, "certificate verify failed: %s%s",
		    X509_verify_cert_error_string(v), sinktls_verify_hint(v));
	else if (e == SSL_ERROR_ZERO_RETURN)
		snprintf(out, len, "connection closed by the peer");
	else if ((r = sinktls_reason()) != NULL)
		snprintf(out, len, "TLS error: %s", r);
	else if (e == SSL_ERROR_SYSCALL && saved != 0)
		snprintf(out, len, "%s", strerror(saved));
	else
		snprintf(out, len, "connection closed by the peer");
	ERR_clear_error();
}

/*
 * Did SSL_read fail because the peer closed: close_notify, or a TCP FIN
 * without one?  (Looked at before sinktls_explain clears the errors.)
 */
bool
sinktls_eof(SSL *ssl, int ret)
{
	unsigned long	 e;

	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_ZERO_RETURN:
		return true;
	case SSL_ERROR_SYSCALL:
		return ERR_peek_error() == 0 && errno == 0;
	case SSL_ERROR_SSL:
		e = ERR_peek_error();
		return ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
	}
	return false;
}

/* Remember where a successful SSL_write left both byte streams. */
void
sinktls_mark(struct sinktls_marks *m, SSL *ssl, uint64_t plain)
{
	if (m->first > 0 && m->n == m->cap) {
		memmove(m->v, m->v + m->first,
		    (m->n - m->first) * sizeof *m->v);
		m->n -= m->first;
		m->first = 0;
	}
	if (m->n == m->cap) {
		m->cap = m->cap == 0 ? 64 : m->cap * 2;
		m->v = xreallocarray(m->v, m->cap, sizeof *m->v);
	}
	m->v[m->n].plain = plain;
	m->v[m->n].cipher = BIO_number_written(SSL_get_wbio(ssl));
	m->n++;
}

/*
 * The plaintext the peer's TCP stack holds (never less than peer_acked),
 * outq bytes of ciphertext being still in the kernel's send queue: the
 * ciphertext acknowledged is the socket BIO's count now minus outq, and
 * the plaintext of a mark is acknowledged once its count is (see
 * sink_delivered in sink.c).
 */
uint64_t
sinktls_acked(struct sinktls_marks *m, SSL *ssl, int outq,
    uint64_t peer_acked)
{
	uint64_t	 cipher, acked;

	cipher = BIO_number_written(SSL_get_wbio(ssl));
	acked = cipher >= (uint64_t)outq ? cipher - (uint64_t)outq : 0;
	while (m->first < m->n && m->v[m->first].cipher <= acked)
		peer_acked = m->v[m->first++].plain;
	if (m->first == m->n)
		m->first = m->n = 0;
	return peer_acked;
}
