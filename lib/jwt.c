/* jwt: Entra client-assertion JWTs signed with a certificate's RSA key. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "b64.h"
#include "jwt.h"
#include "log.h"

struct jwt_signer {
	X509		*cert;
	EVP_PKEY	*key;
	int64_t		 not_after;
	char		 x5t[32];	/* 20 bytes -> 27 characters */
	char		 x5t_s256[48];	/* 32 bytes -> 43 characters */
};

void
jwt_uuid(char out[37])
{
	unsigned char	 r[16];

	if (RAND_bytes(r, sizeof(r)) != 1)
		fatalx("RAND_bytes failed");
	r[6] = (r[6] & 0x0f) | 0x40;	/* version 4 */
	r[8] = (r[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5],
	    r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
}

/* The reason OpenSSL gave last, or fallback; clears its error queue. */
static const char *
ssl_reason(char *buf, size_t len, const char *fallback)
{
	unsigned long	 e = ERR_peek_last_error();
	const char	*r = e != 0 ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, len, "%s", r != NULL ? r : fallback);
	ERR_clear_error();
	return buf;
}

/* Never prompt on a terminal for an encrypted key's passphrase. */
static int
no_passphrase_cb(char *buf, int size, int rwflag, void *arg)
{
	return -1;
}

static X509 *
cert_read(const char *path, char *err, size_t errlen)
{
	BIO	*bio;
	X509	*x = NULL;
	char	 why[128];

	if ((bio = BIO_new_file(path, "r")) == NULL) {
		snprintf(err, errlen, "certificate_file %s: cannot open: %s",
		    path, ssl_reason(why, sizeof(why), "error"));
		return NULL;
	}
	x = PEM_read_bio_X509(bio, NULL, no_passphrase_cb, NULL);
	BIO_free(bio);
	if (x == NULL)
		snprintf(err, errlen, "certificate_file %s: no PEM "
		    "certificate (%s)", path, ssl_reason(why, sizeof(why),
		    "unreadable"));
	return x;
}

static int
asn1_epoch(const ASN1_TIME *t, int64_t *out)
{
	struct tm	 tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	*out = (int64_t)timegm(&tm);
	return 0;
}

int
jwt_cert_info(const char *path, struct jwt_cert_info *ci, char *err,
    size_t errlen)
{
	X509		*x;
	unsigned char	 d[EVP_MAX_MD_SIZE];
	unsigned int	 n = 0, i;
	int		 rc;

	memset(ci, 0, sizeof(*ci));
	if ((x = cert_read(path, err, errlen)) == NULL)
		return -1;
	rc = asn1_epoch(X509_get0_notAfter(x), &ci->not_after);
	if (rc == 0 && X509_digest(x, EVP_sha1(), d, &n) == 1 && n == 20)
		for (i = 0; i < n; i++)
			snprintf(ci->sha1_hex + 2 * i, 3, "%02X", d[i]);
	else
		rc = -1;
	if (rc == -1) {
		ERR_clear_error();
		snprintf(err, errlen, "certificate_file %s: cannot read its "
		    "expiry or thumbprint", path);
	}
	X509_free(x);
	return rc;
}

static EVP_PKEY *
key_read(const char *path, char *err, size_t errlen)
{
	BIO		*bio;
	EVP_PKEY	*k;
	char		 why[128];

	if ((bio = BIO_new_file(path, "r")) == NULL) {
		snprintf(err, errlen, "private_key_file %s: cannot open: %s",
		    path, ssl_reason(why, sizeof(why), "error"));
		return NULL;
	}
	k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, NULL);
	BIO_free(bio);
	if (k == NULL) {
		snprintf(err, errlen, "private_key_file %s: no unencrypted "
		    "PEM private key (%s)", path, ssl_reason(why, sizeof(why),
		    "unreadable"));
		return NULL;
	}
	if (EVP_PKEY_base_id(k) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "private_key_file %s: the key is not "
		    "RSA; Entra ID client assertions need an RSA key", path);
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

/* base64url of the digest of the certificate's DER into out. */
static int
thumbprint(X509 *x, const EVP_MD *md, char *out, size_t len)
{
	unsigned char	 d[EVP_MAX_MD_SIZE];
	unsigned int	 n = 0;
	struct buf	 b;

	if (X509_digest(x, md, d, &n) != 1)
		return -1;
	buf_init(&b);
	b64_encode(&b, d, n, B64_URL);
	snprintf(out, len, "%s", b.data);
	buf_clear(&b);
	return 0;
}

struct jwt_signer *
jwt_signer_load(const char *cert_file, const char *key_file, char *err,
    size_t errlen)
{
	struct jwt_signer	*s;

	s = xcalloc(1, sizeof(*s));
	if ((s->cert = cert_read(cert_file, err, errlen)) == NULL ||
	    (s->key = key_read(key_file, err, errlen)) == NULL)
		goto fail;
	if (X509_check_private_key(s->cert, s->key) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "private_key_file %s does not belong "
		    "to certificate_file %s", key_file, cert_file);
		goto fail;
	}
	if (asn1_epoch(X509_get0_notAfter(s->cert), &s->not_after) == -1 ||
	    thumbprint(s->cert, EVP_sha1(), s->x5t, sizeof(s->x5t)) == -1 ||
	    thumbprint(s->cert, EVP_sha256(), s->x5t_s256,
	    sizeof(s->x5t_s256)) == -1) {
		ERR_clear_error();
		snprintf(err, errlen, "certificate_file %s: cannot read its "
		    "expiry or thumbprint", cert_file);
		goto fail;
	}
	return s;
fail:
	jwt_signer_free(s);
	return NULL;
}

void
jwt_signer_free(struct jwt_signer *s)
{
	if (s == NULL)
		return;
	X509_free(s->cert);
	EVP_PKEY_free(s->key);	/* OpenSSL clears key material on free */
	free(s);
}

int64_t
jwt_signer_not_after(const struct jwt_signer *s)
{
	return s->not_after;
}

const char *
jwt_signer_x5t(const struct jwt_signer *s)
{
	return s->x5t;
}

const char *
jwt_signer_x5t_s256(const struct jwt_signer *s)
{
	return s->x5t_s256;
}

/* Append base64url(compact JSON of j) and drop j. */
static int
b64_json(struct buf *out, json_t *j)
{
	char	*s;

	if (j == NULL)
		return -1;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s == NULL)
		return -1;
	b64_encode(out, s, strlen(s), B64_URL);
	free(s);
	return 0;
}

/* Sign data with SHA-256 and the alg's padding; the signature in sig. */
static int
sign(const struct jwt_signer *s, enum jwt_alg alg, const char *data,
    size_t len, unsigned char **sig, size_t *siglen)
{
	EVP_MD_CTX	*ctx;
	EVP_PKEY_CTX	*pctx = NULL;
	int		 ok;

	*sig = NULL;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		fatalx("EVP_MD_CTX_new failed");
	ok = EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, s->key) == 1;
	if (ok && alg == JWT_PS256)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PSS_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
		    RSA_PSS_SALTLEN_DIGEST) == 1 &&
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1;
	if (ok)
		ok = EVP_DigestSign(ctx, NULL, siglen,
		    (const unsigned char *)data, len) == 1;
	if (ok) {
		*sig = xmalloc(*siglen);
		ok = EVP_DigestSign(ctx, *sig, siglen,
		    (const unsigned char *)data, len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		free(*sig);
		*sig = NULL;
		return -1;
	}
	return 0;
}

int
jwt_assertion(struct buf *out, const struct jwt_signer *s, enum jwt_alg alg,
    const char *aud, const char *client_id, int64_t now, char *err,
    size_t errlen)
{
	json_t		*hdr, *claims;
	char		 jti[37], why[128];
	unsigned char	*sig;
	size_t		 siglen, start = out->len;

	jwt_uuid(jti);
	if (alg == JWT_PS256)
		hdr = json_pack("{s:s, s:s, s:s}", "alg", "PS256", "typ",
		    "JWT", "x5t#S256", s->x5t_s256);
	else
		hdr = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ",
		    "JWT", "x5t", s->x5t);
	claims = json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:s}",
	    "aud", aud, "exp", (json_int_t)(now + JWT_LIFETIME_SEC),
	    "iss", client_id, "jti", jti, "nbf", (json_int_t)now,
	    "iat", (json_int_t)now, "sub", client_id);
	if (b64_json(out, hdr) == -1) {
		json_decref(claims);
		goto fail;
	}
	buf_addc(out, '.');
	if (b64_json(out, claims) == -1)
		goto fail;
	if (sign(s, alg, out->data + start, out->len - start, &sig,
	    &siglen) == -1) {
		snprintf(err, errlen, "cannot sign the client assertion: %s",
		    ssl_reason(why, sizeof(why), "signing failed"));
		buf_truncate(out, start);
		return -1;
	}
	buf_addc(out, '.');
	b64_encode(out, sig, siglen, B64_URL);
	free(sig);
	return 0;
fail:
	snprintf(err, errlen, "cannot build the client assertion: aud or "
	    "client_id is not valid UTF-8");
	buf_truncate(out, start);
	return -1;
}

/* Is every byte of [p, p + n) in the base64url alphabet? */
static bool
b64url_ok(const char *p, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' &&
		    p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
		    p[i] == '-' || p[i] == '_'))
			return false;
	return n > 0;
}

/* Three base64url parts separated by dots. */
static bool
jwt_shaped(const char *s, size_t n)
{
	const char	*d1, *d2;

	if ((d1 = memchr(s, '.', n)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - s))) == NULL)
		return false;
	return b64url_ok(s, (size_t)(d1 - s)) &&
	    b64url_ok(d1 + 1, (size_t)(d2 - d1 - 1)) &&
	    b64url_ok(d2 + 1, n - (size_t)(d2 + 1 - s));
}

/* Read at most max + 1 bytes of fd into p; the count, or -1. */
static ssize_t
read_all(int fd, char *p, size_t max)
{
	size_t	 n = 0;
	ssize_t	 r;

	while (n <= max && (r = read(fd, p + n, max + 1 - n)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		n += (size_t)r;
	}
	return (ssize_t)n;
}

int
jwt_assertion_load(const char *path, struct buf *out, char *err,
    size_t errlen)
{
	struct stat	 st;
	char		*tmp;
	ssize_t		 n;
	int		 fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(err, errlen, "client_assertion_file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "client_assertion_file %s is not a "
		    "regular file", path);
		close(fd);
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, errlen, "client_assertion_file %s is readable "
		    "by group or others (mode %04o); run chmod 600 %s", path,
		    (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return -1;
	}
	tmp = xmalloc(JWT_ASSERTION_MAX + 1);
	n = read_all(fd, tmp, JWT_ASSERTION_MAX);
	close(fd);
	while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r' ||
	    tmp[n - 1] == ' ' || tmp[n - 1] == '\t'))
		n--;
	if (n == -1)
		snprintf(err, errlen, "client_assertion_file %s: %s", path,
		    strerror(errno));
	else if (n > JWT_ASSERTION_MAX)
		snprintf(err, errlen, "client_assertion_file %s is larger "
		    "than %d bytes", path, JWT_ASSERTION_MAX);
	else if (!jwt_shaped(tmp, (size_t)n))
		snprintf(err, errlen, "client_assertion_file %s does not hold "
		    "a JWT (three base64url parts separated by dots)", path);
	else {
		buf_add(out, tmp, (size_t)n);
		rc = 0;
	}
	explicit_bzero(tmp, JWT_ASSERTION_MAX + 1);
	free(tmp);
	return rc;
}

json_t *
jwt_payload(const char *jwt)
{
	const char	*d1, *d2;
	struct buf	 b;
	json_t		*o;

	if ((d1 = strchr(jwt, '.')) == NULL ||
	    (d2 = strchr(d1 + 1, '.')) == NULL)
		return NULL;
	buf_init(&b);
	if (b64_decode(&b, d1 + 1, (size_t)(d2 - d1 - 1), B64_URL) == -1) {
		buf_clear(&b);
		return NULL;
	}
	o = json_loadb(b.data != NULL ? b.data : "", b.len,
	    JSON_REJECT_DUPLICATES, NULL);
	buf_clear(&b);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int64_t
jwt_exp(const char *jwt)
{
	json_t		*j, *e;
	int64_t		 exp = -1;

	if ((j = jwt_payload(jwt)) == NULL)
		return -1;
	if (json_is_integer(e = json_object_get(j, "exp")))
		exp = json_integer_value(e);
	json_decref(j);
	return exp;
}
