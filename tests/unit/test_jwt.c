/*
 * Unit tests: client-assertion JWTs (RS256 + x5t, PS256 + x5t#S256), checked
 * by verifying the signature with the certificate's public key, and the
 * errors an operator sees for wrong, missing or unusable key files.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "b64.h"
#include "jwt.h"
#include "util.h"

struct fixture {
	char		 dir[64];
	char		 cert[128], key[128];		/* a matching pair */
	char		 other_key[128];		/* another RSA key */
	char		 ec_key[128], ec_cert[128];
	char		 enc_key[128];		/* passphrase-protected */
	X509		*x509;
	int64_t		 not_after;
};

static void
write_key(const char *path, EVP_PKEY *k, const char *pass)
{
	FILE	*f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, pass ? EVP_aes_128_cbc() :
	    NULL, (unsigned char *)pass, pass ? (int)strlen(pass) : 0, NULL,
	    NULL), 1);
	fclose(f);
	chmod(path, 0600);
}

static X509 *
make_cert(EVP_PKEY *k, long days)
{
	X509		*x = X509_new();
	X509_NAME	*n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
	X509_set_pubkey(x, k);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"alertrelay test app", -1, -1, 0);
	X509_set_issuer_name(x, n);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	return x;
}

static void
write_cert(const char *path, X509 *x)
{
	FILE	*f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
}

static int
setup(void **state)
{
	struct fixture	*fx = calloc(1, sizeof(*fx));
	EVP_PKEY	*k, *k2, *ec;
	X509		*ecx;
	struct tm	 tm;

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_jwt.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->cert, sizeof(fx->cert), "%s/app.pem", fx->dir);
	snprintf(fx->key, sizeof(fx->key), "%s/app.key", fx->dir);
	snprintf(fx->other_key, sizeof(fx->other_key), "%s/other.key",
	    fx->dir);
	snprintf(fx->ec_key, sizeof(fx->ec_key), "%s/ec.key", fx->dir);
	snprintf(fx->ec_cert, sizeof(fx->ec_cert), "%s/ec.pem", fx->dir);
	snprintf(fx->enc_key, sizeof(fx->enc_key), "%s/enc.key", fx->dir);
	k = EVP_RSA_gen(2048);
	k2 = EVP_RSA_gen(2048);
	ec = EVP_EC_gen("P-256");
	assert_non_null(k);
	assert_non_null(k2);
	assert_non_null(ec);
	fx->x509 = make_cert(k, 20);
	write_cert(fx->cert, fx->x509);
	write_key(fx->key, k, NULL);
	write_key(fx->other_key, k2, NULL);
	write_key(fx->enc_key, k, "hunter2");
	write_key(fx->ec_key, ec, NULL);
	ecx = make_cert(ec, 20);
	write_cert(fx->ec_cert, ecx);
	memset(&tm, 0, sizeof(tm));
	assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(fx->x509), &tm),
	    1);
	fx->not_after = (int64_t)timegm(&tm);
	X509_free(ecx);
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(ec);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture	*fx = *state;
	const char	*files[] = { fx->cert, fx->key, fx->other_key,
	    fx->ec_key, fx->ec_cert, fx->enc_key };
	size_t		 i;

	for (i = 0; i < nitems(files); i++)
		unlink(files[i]);
	rmdir(fx->dir);
	X509_free(fx->x509);
	free(fx);
	return 0;
}

/* An independent base64url decoder (no padding). */
static void
b64url_dec(const char *s, size_t n, struct buf *out)
{
	static const char	 tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t		 v = 0;
	int			 bits = 0;
	const char		*p;
	size_t			 i;

	for (i = 0; i < n; i++) {
		p = strchr(tab, s[i]);
		assert_non_null(p);
		assert_true(s[i] != '\0');
		v = v << 6 | (uint32_t)(p - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_addc(out, (char)(v >> bits & 0xff));
		}
	}
}

struct jwt_parts {
	json_t		*hdr;
	json_t		*claims;
	struct buf	 sig;
	size_t		 signed_len;	/* header.claims */
};

static void
jwt_split(const char *jwt, struct jwt_parts *p)
{
	const char	*d1 = strchr(jwt, '.'), *d2;
	struct buf	 b;

	assert_non_null(d1);
	d2 = strchr(d1 + 1, '.');
	assert_non_null(d2);
	assert_null(strchr(d2 + 1, '.'));
	assert_null(strchr(jwt, '='));		/* no padding */
	buf_init(&b);
	b64url_dec(jwt, (size_t)(d1 - jwt), &b);
	p->hdr = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
	buf_reset(&b);
	b64url_dec(d1 + 1, (size_t)(d2 - d1 - 1), &b);
	p->claims = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
	buf_clear(&b);
	buf_init(&p->sig);
	b64url_dec(d2 + 1, strlen(d2 + 1), &p->sig);
	p->signed_len = (size_t)(d2 - jwt);
	assert_non_null(p->hdr);
	assert_non_null(p->claims);
}

static void
jwt_parts_clear(struct jwt_parts *p)
{
	json_decref(p->hdr);
	json_decref(p->claims);
	buf_clear(&p->sig);
}

/* Does the certificate's public key verify the signature (pss or not)? */
static int
verify(X509 *x, const char *jwt, const struct jwt_parts *p, int pss)
{
	EVP_MD_CTX	*ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX	*pctx = NULL;
	EVP_PKEY	*pub = X509_get0_pubkey(x);
	int		 ok;

	assert_int_equal(EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL,
	    pub), 1);
	if (pss) {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
	}
	ok = EVP_DigestVerify(ctx, (const unsigned char *)p->sig.data,
	    p->sig.len, (const unsigned char *)jwt, p->signed_len);
	EVP_MD_CTX_free(ctx);
	return ok == 1;
}

/* base64url of a digest of the DER, computed without X509_digest. */
static void
der_thumb(X509 *x, const EVP_MD *md, struct buf *out)
{
	unsigned char	*der = NULL, d[EVP_MAX_MD_SIZE];
	unsigned int	 n = 0;
	int		 len = i2d_X509(x, &der);

	assert_true(len > 0);
	assert_int_equal(EVP_Digest(der, (size_t)len, d, &n, md, NULL), 1);
	OPENSSL_free(der);
	b64_encode(out, d, n, B64_URL);
}

static const char *
jstr(json_t *o, const char *k)
{
	const char	*s = json_string_value(json_object_get(o, k));

	assert_non_null(s);
	return s;
}

static void
check_claims(json_t *c, const char *aud, const char *client, int64_t now)
{
	const char	*jti = jstr(c, "jti");
	size_t		 i;

	assert_string_equal(jstr(c, "aud"), aud);
	assert_string_equal(jstr(c, "iss"), client);
	assert_string_equal(jstr(c, "sub"), client);
	assert_int_equal(json_integer_value(json_object_get(c, "nbf")), now);
	assert_int_equal(json_integer_value(json_object_get(c, "iat")), now);
	assert_int_equal(json_integer_value(json_object_get(c, "exp")),
	    now + 600);
	/* A UUID: 8-4-4-4-12 lower-case hex. */
	assert_int_equal(strlen(jti), 36);
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			assert_int_equal(jti[i], '-');
		else
			assert_non_null(strchr("0123456789abcdef", jti[i]));
	}
	assert_int_equal(jti[14], '4');
}

#define AUD	"https://login.microsoftonline.com/contoso.onmicrosoft.com/" \
		"oauth2/v2.0/token"
#define CLIENT	"97e0a5b7-d745-40b6-94fe-5f77d35c6e05"

/* RS256: PKCS#1 v1.5 signature over header.claims, SHA-1 x5t. */
static void
test_rs256(void **state)
{
	struct fixture		*fx = *state;
	struct jwt_signer	*s;
	struct jwt_parts	 p;
	struct buf		 jwt, thumb;
	char			 err[256];

	s = jwt_signer_load(fx->cert, fx->key, err, sizeof(err));
	assert_non_null(s);
	buf_init(&jwt);
	buf_adds(&jwt, "prefix=");	/* appends, does not replace */
	assert_int_equal(jwt_assertion(&jwt, s, JWT_RS256, AUD, CLIENT,
	    1484592741, err, sizeof(err)), 0);
	assert_memory_equal(jwt.data, "prefix=", 7);
	jwt_split(jwt.data + 7, &p);
	assert_string_equal(jstr(p.hdr, "alg"), "RS256");
	assert_string_equal(jstr(p.hdr, "typ"), "JWT");
	assert_null(json_object_get(p.hdr, "x5t#S256"));
	buf_init(&thumb);
	der_thumb(fx->x509, EVP_sha1(), &thumb);
	assert_string_equal(jstr(p.hdr, "x5t"), thumb.data);
	assert_int_equal(strlen(thumb.data), 27);
	assert_string_equal(jwt_signer_x5t(s), thumb.data);
	check_claims(p.claims, AUD, CLIENT, 1484592741);
	assert_int_equal(p.sig.len, 256);
	assert_true(verify(fx->x509, jwt.data + 7, &p, 0));
	/* A changed claim no longer verifies. */
	jwt.data[7 + p.signed_len - 2] ^= 1;
	assert_false(verify(fx->x509, jwt.data + 7, &p, 0));
	jwt_parts_clear(&p);
	buf_clear(&thumb);
	buf_clear(&jwt);
	jwt_signer_free(s);
}

/* PS256: a PSS signature (PKCS#1 v1.5 verification fails), x5t#S256. */
static void
test_ps256(void **state)
{
	struct fixture		*fx = *state;
	struct jwt_signer	*s;
	struct jwt_parts	 p;
	struct buf		 jwt, thumb;
	char			 err[256];

	s = jwt_signer_load(fx->cert, fx->key, err, sizeof(err));
	assert_non_null(s);
	buf_init(&jwt);
	assert_int_equal(jwt_assertion(&jwt, s, JWT_PS256, AUD, CLIENT,
	    1700000000, err, sizeof(err)), 0);
	jwt_split(jwt.data, &p);
	assert_string_equal(jstr(p.hdr, "alg"), "PS256");
	assert_null(json_object_get(p.hdr, "x5t"));
	buf_init(&thumb);
	der_thumb(fx->x509, EVP_sha256(), &thumb);
	assert_string_equal(jstr(p.hdr, "x5t#S256"), thumb.data);
	assert_int_equal(strlen(thumb.data), 43);
	check_claims(p.claims, AUD, CLIENT, 1700000000);
	assert_true(verify(fx->x509, jwt.data, &p, 1));
	assert_false(verify(fx->x509, jwt.data, &p, 0));
	jwt_parts_clear(&p);
	buf_clear(&thumb);
	buf_clear(&jwt);
	jwt_signer_free(s);
}

/* Every assertion carries its own jti (Entra rejects a replayed one). */
static void
test_jti_unique(void **state)
{
	struct fixture		*fx = *state;
	struct jwt_signer	*s;
	struct jwt_parts	 p;
	struct buf		 jwt;
	char			 err[256], seen[50][37];
	size_t			 i, j;

	s = jwt_signer_load(fx->cert, fx->key, err, sizeof(err));
	assert_non_null(s);
	buf_init(&jwt);
	for (i = 0; i < nitems(seen); i++) {
		buf_reset(&jwt);
		assert_int_equal(jwt_assertion(&jwt, s, JWT_RS256, AUD, CLIENT,
		    1700000000, err, sizeof(err)), 0);
		jwt_split(jwt.data, &p);
		snprintf(seen[i], sizeof(seen[i]), "%s", jstr(p.claims, "jti"));
		jwt_parts_clear(&p);
		for (j = 0; j < i; j++)
			assert_string_not_equal(seen[i], seen[j]);
	}
	buf_clear(&jwt);
	jwt_signer_free(s);
}

/* Claims with characters JSON must escape stay intact. */
static void
test_claims_escaped(void **state)
{
	struct fixture		*fx = *state;
	struct jwt_signer	*s;
	struct jwt_parts	 p;
	struct buf		 jwt;
	char			 err[256];
	const char		*aud = "http://127.0.0.1:8080/ten\"ant\\x/"
	    "oauth2/v2.0/token";

	s = jwt_signer_load(fx->cert, fx->key, err, sizeof(err));
	assert_non_null(s);
	buf_init(&jwt);
	assert_int_equal(jwt_assertion(&jwt, s, JWT_RS256, aud, CLIENT, 5,
	    err, sizeof(err)), 0);
	jwt_split(jwt.data, &p);
	assert_string_equal(jstr(p.claims, "aud"), aud);
	jwt_parts_clear(&p);
	buf_clear(&jwt);
	jwt_signer_free(s);
}

/* The expiry an operator is warned about is the certificate's notAfter. */
static void
test_not_after(void **state)
{
	struct fixture		*fx = *state;
	struct jwt_signer	*s;
	char			 err[256];
	struct jwt_cert_info	 ci;
	unsigned char		 d[20];
	unsigned int		 n = 0;
	char			 hex[41];
	size_t			 i;

	s = jwt_signer_load(fx->cert, fx->key, err, sizeof(err));
	assert_non_null(s);
	assert_int_equal(jwt_signer_not_after(s), fx->not_after);
	assert_true(fx->not_after > time(NULL) + 19 * 86400);
	jwt_signer_free(s);
	assert_int_equal(jwt_cert_info(fx->cert, &ci, err, sizeof(err)), 0);
	assert_int_equal(ci.not_after, fx->not_after);
	/* The thumbprint in the portal's form: upper-case hex SHA-1. */
	assert_int_equal(X509_digest(fx->x509, EVP_sha1(), d, &n), 1);
	for (i = 0; i < 20; i++)
		snprintf(hex + 2 * i, 3, "%02X", d[i]);
	assert_string_equal(ci.sha1_hex, hex);
	assert_int_equal(jwt_cert_info(fx->key, &ci, err, sizeof(err)), -1);
	assert_non_null(strstr(err, fx->key));
}

static void
expect_load_error(const char *cert, const char *key, const char *what,
    const char *path)
{
	struct jwt_signer	*s;
	char			 err[256];

	err[0] = '\0';
	s = jwt_signer_load(cert, key, err, sizeof(err));
	assert_null(s);
	if (strstr(err, what) == NULL || strstr(err, path) == NULL)
		fail_msg("error \"%s\" does not say \"%s\" about %s", err,
		    what, path);
}

/* Problems name the file and say what is wrong; nothing prompts. */
static void
test_load_errors(void **state)
{
	struct fixture	*fx = *state;
	char		 missing[160];

	snprintf(missing, sizeof(missing), "%s/missing.pem", fx->dir);
	expect_load_error(fx->cert, fx->other_key, "does not belong",
	    fx->other_key);
	expect_load_error(fx->ec_cert, fx->ec_key, "not RSA", fx->ec_key);
	expect_load_error(fx->cert, fx->enc_key, "no unencrypted",
	    fx->enc_key);
	expect_load_error(missing, fx->key, "cannot open", missing);
	expect_load_error(fx->cert, missing, "cannot open", missing);
	expect_load_error(fx->key, fx->key, "no PEM certificate", fx->key);
}

/* RFC 4648 §10 vectors in the URL alphabet without padding, and §3.4's
 * SHA-1 thumbprint example of the reference. */
static void
test_b64url(void **state)
{
	static const struct {
		const char	*in, *out;
	} v[] = {
		{ "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy" }, { "\xfb\xff\xbf", "-_-_" },
	};
	static const unsigned char sha1[20] = {
		0x84, 0xE0, 0x5C, 0x1D, 0x98, 0xBC, 0xE3, 0xA5, 0x42, 0x1D,
		0x22, 0x5B, 0x14, 0x0B, 0x36, 0xE8, 0x6A, 0x3D, 0x55, 0x34,
	};
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	for (i = 0; i < nitems(v); i++) {
		buf_reset(&b);
		buf_adds(&b, "");
		b64_encode(&b, v[i].in, strlen(v[i].in), B64_URL);
		assert_string_equal(b.data, v[i].out);
	}
	buf_reset(&b);
	b64_encode(&b, sha1, sizeof(sha1), B64_URL);
	assert_string_equal(b.data, "hOBcHZi846VCHSJbFAs26Go9VTQ");
	buf_clear(&b);
}

/* Write text to dir/name with mode; the path in out. */
static void
put(const char *dir, const char *name, int mode, const char *text,
    char *out, size_t len)
{
	FILE	*f;

	snprintf(out, len, "%s/%s", dir, name);
	assert_non_null(f = fopen(out, "w"));
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(out, (mode_t)mode), 0);
}

/* A federated assertion file: owner-only, one JWT; exp read from it. */
static void
test_assertion_file(void **state)
{
	struct fixture	*fx = *state;
	struct buf	 b, claims;
	char		 path[600], err[700];

	/* {"iss":"https://issuer.example","exp":1999999999} */
	buf_init(&claims);
	b64_encode(&claims, "{\"iss\":\"https://issuer.example\","
	    "\"exp\":1999999999}", 49, B64_URL);
	buf_init(&b);
	buf_addf(&b, "eyJhbGciOiJSUzI1NiJ9.%s.c2ln\n", claims.data);
	put(fx->dir, "fed", 0600, b.data, path, sizeof(path));
	buf_reset(&b);
	assert_int_equal(jwt_assertion_load(path, &b, err, sizeof(err)), 0);
	assert_int_equal(strchr(b.data, '\n') == NULL, 1);
	assert_int_equal(jwt_exp(b.data), 1999999999);
	assert_int_equal(jwt_exp("a.b.c"), -1);
	assert_int_equal(jwt_exp("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"), -1);
	/* Readable by others: refused, content not in the message. */
	assert_int_equal(chmod(path, 0644), 0);
	buf_reset(&b);
	assert_int_equal(jwt_assertion_load(path, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "readable by group or others"));
	assert_null(strstr(err, "eyJ"));
	unlink(path);
	put(fx->dir, "fed", 0600, "not a jwt\n", path, sizeof(path));
	assert_int_equal(jwt_assertion_load(path, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not hold a JWT"));
	assert_null(strstr(err, "not a jwt"));
	unlink(path);
	assert_int_equal(jwt_assertion_load(path, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
	buf_clear(&b);
	buf_clear(&claims);
}

/* The claims of a token, read without a signature check. */
static void
test_payload(void **state)
{
	/* {"tid":"abc","roles":["Alert.Read.All"]} as base64url. */
	const char	*jwt = "eyJhbGciOiJIUzI1NiJ9."
	    "eyJ0aWQiOiJhYmMiLCJyb2xlcyI6WyJBbGVydC5SZWFkLkFsbCJdfQ.c2ln";
	json_t		*p;

	(void)state;
	p = jwt_payload(jwt);
	assert_non_null(p);
	assert_string_equal(json_string_value(json_object_get(p, "tid")),
	    "abc");
	assert_string_equal(json_string_value(json_array_get(
	    json_object_get(p, "roles"), 0)), "Alert.Read.All");
	json_decref(p);
	/* Padded form ("e30=" is {}) is accepted too. */
	p = jwt_payload("eyJhbGciOiJub25lIn0.e30=.x");
	assert_non_null(p);
	assert_int_equal(json_object_size(p), 0);
	json_decref(p);
	assert_null(jwt_payload("not-a-jwt"));
	assert_null(jwt_payload("a.!!!.c"));
	assert_null(jwt_payload("a.b.c"));		/* not base64url */
	/* [1] (WzFd) and "x" (Ingi): JSON, but not an object. */
	assert_null(jwt_payload("a.WzFd.c"));
	assert_null(jwt_payload("a.Ingi.c"));
	/* {"a":1,"a":2}: duplicate keys are refused. */
	assert_null(jwt_payload("a.eyJhIjoxLCJhIjoyfQ.c"));
	assert_null(jwt_payload(""));
	assert_null(jwt_payload("a.."));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rs256),
		cmocka_unit_test(test_ps256),
		cmocka_unit_test(test_jti_unique),
		cmocka_unit_test(test_claims_escaped),
		cmocka_unit_test(test_not_after),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_b64url),
		cmocka_unit_test(test_assertion_file),
		cmocka_unit_test(test_payload),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
