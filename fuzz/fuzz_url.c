/* libFuzzer target: percent-decoding and query-string splitting of hostile input.
 * Properties: no out-of-bounds access, decoded size <= input size, encode/decode
 * round trip, every query pair lies inside the input and pairs cover it in order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dbx_encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const uint8_t *data, size_t size, int form) {
  int ok;
  size_t elen = dbx_pct_encoded_len(data, size, form, &ok), dlen = 0;
  char *enc, *dec;
  if (!ok) abort();
  enc = malloc(elen ? elen : 1);
  dec = malloc(elen ? elen : 1);
  if (enc == NULL || dec == NULL) abort();
  if (dbx_pct_encode(enc, data, size, form) != elen) abort();
  if (dbx_pct_decode(dec, enc, elen, form, &dlen) != 0) abort();
  if (dlen != size || memcmp(dec, data, size) != 0) abort();
  free(enc);
  free(dec);
}

static void decode(const uint8_t *data, size_t size, int plus) {
  char *out = malloc(size ? size : 1), *inplace = malloc(size ? size : 1);
  size_t len = 0, len2 = 0;
  int rc, rc2;
  if (out == NULL || inplace == NULL) abort();
  memcpy(inplace, data, size);
  rc = dbx_pct_decode(out, (const char *)data, size, plus, &len);
  rc2 = dbx_pct_decode(inplace, inplace, size, plus, &len2);
  if (rc != rc2) abort();
  if (rc == 0 && (len > size || len != len2 || memcmp(out, inplace, len) != 0)) abort();
  free(out);
  free(inplace);
}

static void query(const uint8_t *data, size_t size) {
  const char *s = (const char *)data, *k, *v, *prev_end = s;
  size_t klen, vlen, len;
  char *buf = malloc(size ? size : 1);
  dbx_query_iter it;
  if (buf == NULL) abort();
  dbx_query_init(&it, s, size);
  while (dbx_query_next(&it, &k, &klen, &v, &vlen)) {
    if (k < prev_end || k + klen > s + size || v < k + klen || v + vlen > s + size) abort();
    if (klen + vlen == 0 && v == k) abort();   /* empty pairs are skipped */
    if (memchr(k, '&', klen) || memchr(v, '&', vlen) || memchr(k, '=', klen)) abort();
    prev_end = v + vlen;
    (void)dbx_pct_decode(buf, k, klen, 1, &len);
    (void)dbx_pct_decode(buf, v, vlen, 1, &len);
  }
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  decode(data, size, 0);
  decode(data, size, 1);
  roundtrip(data, size, 0);
  roundtrip(data, size, 1);
  query(data, size);
  return 0;
}
