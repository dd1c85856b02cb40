/*
 * jwt: the signed client-assertion JWT of Entra ID certificate
 * authentication (RS256 with the SHA-1 "x5t" thumbprint, or PS256 with
 * "x5t#S256"), and the certificate facts around it.
 */
#ifndef AR_JWT_H
#define AR_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util.h"

enum jwt_alg {
	JWT_RS256,	/* PKCS#1 v1.5, "x5t" (SHA-1): accepted everywhere */
	JWT_PS256,	/* RSASSA-PSS, header "x5t#S256" (SHA-256) */
};

/* Lifetime of an assertion: exp = nbf + this. */
#define JWT_LIFETIME_SEC	600

/* A certificate and its RSA private key, loaded from PEM files. */
struct jwt_signer;

/*
 * Load cert_file (PEM, the first certificate) and key_file (PEM, not
 * encrypted, RSA) and check that the key belongs to the certificate.
 * NULL with a message in err naming the file on any problem.
 */
struct jwt_signer *jwt_signer_load(const char *cert_file,
		    const char *key_file, char *err, size_t errlen);
/* Clears the key; NULL is a no-op. */
void		 jwt_signer_free(struct jwt_signer *);
/* The certificate's notAfter, epoch seconds. */
int64_t		 jwt_signer_not_after(const struct jwt_signer *);
/* base64url thumbprints of the certificate's DER: SHA-1, SHA-256. */
const char	*jwt_signer_x5t(const struct jwt_signer *);
const char	*jwt_signer_x5t_s256(const struct jwt_signer *);

/*
 * Append a client assertion to out: header {alg, typ, x5t or x5t#S256},
 * claims aud, iss = sub = client_id, jti (a random UUID), nbf = iat = now,
 * exp = now + JWT_LIFETIME_SEC; signed.  0, or -1 with err.
 */
int		 jwt_assertion(struct buf *out, const struct jwt_signer *,
		    enum jwt_alg, const char *aud, const char *client_id,
		    int64_t now, char *err, size_t errlen);

/* What an operator needs to know about a certificate file. */
struct jwt_cert_info {
	int64_t		 not_after;	/* epoch seconds */
	char		 sha1_hex[41];	/* thumbprint as the portal shows it */
};

/* Read a PEM certificate file's facts.  0 or -1 with err. */
int		 jwt_cert_info(const char *cert_file, struct jwt_cert_info *,
		    char *err, size_t errlen);

/*
 * Federated credentials: read the external JWT an OIDC issuer wrote to
 * path (workload identity federation) into out, trailing white space
 * dropped.  The file must be readable by its owner only and hold one
 * JWT (three base64url parts).  0, or -1 with err, which never holds
 * the content.
 */
#define JWT_ASSERTION_MAX	(64 * 1024)
int		 jwt_assertion_load(const char *path, struct buf *out,
		    char *err, size_t errlen);
/*
 * The claims of a JWT (its second part, base64url JSON) as a new object
 * reference, the signature not verified; NULL when it is not a JWT or the
 * part is not a JSON object.
 */
json_t		*jwt_payload(const char *jwt);
/* The "exp" claim (epoch seconds) of a JWT, not verified; -1 if none. */
int64_t		 jwt_exp(const char *jwt);

/* A random (version 4) UUID, 36 characters and a NUL. */
void		 jwt_uuid(char out[37]);

#endif
