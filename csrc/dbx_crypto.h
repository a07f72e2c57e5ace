/* The few OpenSSL primitives the flows need (PKCE verifier/challenge, state, nonce;
 * RS256 for Google service-account assertions). No Lua. Every function leaves the OpenSSL error queue empty, because nginx
 * shares it and reports stale entries as alerts. */
#ifndef DBX_CRYPTO_H
#define DBX_CRYPTO_H

#include <stddef.h>

#define DBX_SHA256_LEN 32

/* On failure both return -1 and put OpenSSL's reason in err (NUL-terminated). */
int dbx_random(unsigned char *out, size_t n, char *err, size_t errlen);
int dbx_sha256(const void *data, size_t n, unsigned char out[DBX_SHA256_LEN],
               char *err, size_t errlen);

/* RS256 (RSASSA-PKCS1-v1_5 over SHA-256, RFC 7518 3.3).
 * The key is read from the caller's PEM bytes in place (no copy of ours to wipe; OpenSSL
 * decodes PEM into its secure, cleared heap and clears the key's numbers when it frees it).
 * A PEM that asks for a passphrase is refused, never prompted for. err carries OpenSSL's
 * reason or ours, never a byte of the key. */
#define DBX_RSA_MIN_BITS 2048
#define DBX_RSA_MAX_BITS 16384
#define DBX_RSA_SIG_MAX (DBX_RSA_MAX_BITS / 8)

/* Signs data with an RSA private key ("PRIVATE KEY" PKCS#8 or "RSA PRIVATE KEY" PEM) of
 * DBX_RSA_MIN_BITS..DBX_RSA_MAX_BITS bits. sig holds DBX_RSA_SIG_MAX bytes; *siglen is set.
 * 0, or -1 and err. */
int dbx_rs256_sign(const char *pem, size_t pemlen, const void *data, size_t n,
                   unsigned char *sig, size_t *siglen, char *err, size_t errlen);
/* Checks sig over data against an RSA public key: a "PUBLIC KEY" PEM or a certificate.
 * 1 valid, 0 not valid, -1 and err when the key is unusable. */
int dbx_rs256_verify(const char *pem, size_t pemlen, const void *data, size_t n,
                     const unsigned char *sig, size_t siglen, char *err, size_t errlen);

#endif
