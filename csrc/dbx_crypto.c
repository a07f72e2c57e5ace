#include "dbx_crypto.h"

#include <limits.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* Drains the queue: the first entry explains the failure, the rest are noise. */
static void take_error(char *err, size_t errlen, const char *fallback) {
  unsigned long e = ERR_get_error();
  if (errlen > 0) {
    if (e != 0) ERR_error_string_n(e, err, errlen);
    else snprintf(err, errlen, "%s", fallback);
  }
  ERR_clear_error();
}

int dbx_random(unsigned char *out, size_t n, char *err, size_t errlen) {
  if (n > INT_MAX) { snprintf(err, errlen, "request too large"); return -1; }
  if (RAND_bytes(out, (int)n) != 1) {
    take_error(err, errlen, "RAND_bytes failed");
    return -1;
  }
  ERR_clear_error();
  return 0;
}

int dbx_sha256(const void *data, size_t n, unsigned char out[DBX_SHA256_LEN],
               char *err, size_t errlen) {
  unsigned int outlen = 0;
  if (EVP_Digest(data, n, out, &outlen, EVP_sha256(), NULL) != 1 || outlen != DBX_SHA256_LEN) {
    take_error(err, errlen, "EVP_Digest failed");
    return -1;
  }
  ERR_clear_error();
  return 0;
}
