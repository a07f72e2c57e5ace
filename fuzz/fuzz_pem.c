/* libFuzzer target: PEM key parsing of outside input (a service-account key's private_key,
 * a public key or certificate), through dbx_rs256_sign and dbx_rs256_verify.
 * Properties: no crash or leak; every failure leaves a NUL-terminated reason in err; a
 * signature is never longer than DBX_RSA_SIG_MAX; whatever parses as a public key gives a
 * yes/no answer or a reason; the OpenSSL error queue is left empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "dbx_crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(const char *err, size_t errlen) {
  if (memchr(err, '\0', errlen) == NULL || err[0] == '\0') abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char msg[] = "header.payload";
  unsigned char sig[DBX_RSA_SIG_MAX];
  size_t siglen = 0;
  char err[256];
  int rc;
  memset(err, 'x', sizeof err);
  rc = dbx_rs256_sign((const char *)data, size, msg, sizeof msg - 1, sig, &siglen, err, sizeof err);
  if (rc == 0) {
    if (siglen == 0 || siglen > DBX_RSA_SIG_MAX) abort();
  } else {
    check_err(err, sizeof err);
  }
  if (ERR_peek_error() != 0) abort();
  memset(err, 'x', sizeof err);
  rc = dbx_rs256_verify((const char *)data, size, msg, sizeof msg - 1,
                        rc == 0 ? sig : data, rc == 0 ? siglen : size, err, sizeof err);
  if (rc < 0) check_err(err, sizeof err);
  else if (rc != 0 && rc != 1) abort();
  if (ERR_peek_error() != 0) abort();
  return 0;
}
