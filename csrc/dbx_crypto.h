/* The few OpenSSL primitives the flows need (PKCE verifier/challenge, state, nonce).
 * No Lua. Every function leaves the OpenSSL error queue empty, because nginx
 * shares it and reports stale entries as alerts. */
#ifndef DBX_CRYPTO_H
#define DBX_CRYPTO_H

#include <stddef.h>

#define DBX_SHA256_LEN 32

/* On failure both return -1 and put OpenSSL's reason in err (NUL-terminated). */
int dbx_random(unsigned char *out, size_t n, char *err, size_t errlen);
int dbx_sha256(const void *data, size_t n, unsigned char out[DBX_SHA256_LEN],
               char *err, size_t errlen);

#endif
