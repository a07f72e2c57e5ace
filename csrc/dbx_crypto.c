#include "dbx_crypto.h"

#include <limits.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
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

/* ---- RS256 ---- */

/* Never prompt (OpenSSL's default callback reads the terminal): an encrypted key fails. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf; (void)size; (void)rwflag; (void)u;
  return -1;
}

static BIO *pem_bio(const char *pem, size_t pemlen, char *err, size_t errlen) {
  BIO *bio;
  if (pemlen == 0 || pemlen > INT_MAX) {
    snprintf(err, errlen, "%s", pemlen == 0 ? "the key is empty" : "the key is too large");
    return NULL;
  }
  bio = BIO_new_mem_buf(pem, (int)pemlen);   /* read-only, over the caller's bytes */
  if (bio == NULL) take_error(err, errlen, "BIO_new_mem_buf failed");
  return bio;
}

/* An RSA key of an accepted size, or a reason. */
static const char *rsa_key_problem(const EVP_PKEY *pkey, int private_key) {
  int bits;
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) return "the key is not an RSA key";
  bits = EVP_PKEY_get_bits(pkey);
  if (private_key && bits < DBX_RSA_MIN_BITS) return "the RSA key is shorter than 2048 bits";
  if (bits > DBX_RSA_MAX_BITS) return "the RSA key is longer than 16384 bits";
  return NULL;
}

int dbx_rs256_sign(const char *pem, size_t pemlen, const void *data, size_t n,
                   unsigned char *sig, size_t *siglen, char *err, size_t errlen) {
  EVP_PKEY *pkey = NULL;
  EVP_MD_CTX *md = NULL;
  const char *why;
  size_t len = DBX_RSA_SIG_MAX;
  int rc = -1;
  BIO *bio = pem_bio(pem, pemlen, err, errlen);
  if (bio == NULL) return -1;
  pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
  BIO_free(bio);
  if (pkey == NULL) {
    ERR_clear_error();   /* OpenSSL's reason names PEM internals: ours says what to fix */
    snprintf(err, errlen, "the private key is not a PEM RSA private key without a passphrase");
    return -1;
  }
  why = rsa_key_problem(pkey, 1);
  if (why != NULL) {
    snprintf(err, errlen, "%s", why);
    goto done;
  }
  md = EVP_MD_CTX_new();
  if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
      EVP_DigestSign(md, sig, &len, data, n) != 1) {
    take_error(err, errlen, "signing failed");
    goto done;
  }
  *siglen = len;
  rc = 0;
done:
  EVP_MD_CTX_free(md);   /* clears the digest state */
  EVP_PKEY_free(pkey);   /* clears the private numbers */
  ERR_clear_error();
  return rc;
}

static EVP_PKEY *read_public(const char *pem, size_t pemlen, char *err, size_t errlen) {
  EVP_PKEY *pkey;
  X509 *cert;
  BIO *bio = pem_bio(pem, pemlen, err, errlen);
  if (bio == NULL) return NULL;
  pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
  if (pkey == NULL) {
    ERR_clear_error();
    (void)BIO_reset(bio);
    cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    if (cert != NULL) {
      pkey = X509_get_pubkey(cert);
      X509_free(cert);
    }
  }
  BIO_free(bio);
  ERR_clear_error();
  if (pkey == NULL) snprintf(err, errlen, "not a PEM public key or certificate");
  return pkey;
}

int dbx_rs256_verify(const char *pem, size_t pemlen, const void *data, size_t n,
                     const unsigned char *sig, size_t siglen, char *err, size_t errlen) {
  EVP_MD_CTX *md = NULL;
  const char *why;
  int rc = -1, v;
  EVP_PKEY *pkey = read_public(pem, pemlen, err, errlen);
  if (pkey == NULL) return -1;
  why = rsa_key_problem(pkey, 0);
  if (why != NULL) {
    snprintf(err, errlen, "%s", why);
    goto done;
  }
  md = EVP_MD_CTX_new();
  if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1) {
    take_error(err, errlen, "verification failed");
    goto done;
  }
  v = EVP_DigestVerify(md, sig, siglen, data, n);
  rc = v == 1 ? 1 : 0;   /* a malformed signature is a wrong one */
done:
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(pkey);
  ERR_clear_error();
  return rc;
}
