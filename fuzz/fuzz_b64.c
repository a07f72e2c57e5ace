/* libFuzzer target: base64 / base64url decoding of hostile input.
 * Properties: no out-of-bounds access, decoded size within dbx_b64_decoded_max,
 * decode(encode(x)) == x for whatever decodes, and decoding in place agrees. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dbx_encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, int url) {
  size_t max = dbx_b64_decoded_max(size), len = 0, len2 = 0, elen;
  unsigned char *out = malloc(max ? max : 1), *back;
  char *enc, *inplace = malloc(size ? size : 1);
  int ok;
  if (out == NULL || inplace == NULL) abort();
  memcpy(inplace, data, size);
  if (dbx_b64_decode(out, (const char *)data, size, url, &len) == 0) {
    if (len > max) abort();
    /* in place: the output never overtakes the input */
    if (dbx_b64_decode((unsigned char *)inplace, inplace, size, url, &len2) != 0) abort();
    if (len2 != len || memcmp(inplace, out, len) != 0) abort();
    elen = dbx_b64_encoded_len(len, url, &ok);
    if (!ok) abort();
    enc = malloc(elen ? elen : 1);
    back = malloc(dbx_b64_decoded_max(elen));
    if (enc == NULL || back == NULL) abort();
    if (dbx_b64_encode(enc, out, len, url) != elen) abort();
    if (dbx_b64_decode(back, enc, elen, url, &len2) != 0 || len2 != len || memcmp(back, out, len) != 0)
      abort();
    /* canonical input re-encodes to itself (url: modulo the optional padding) */
    if (!url && elen == size && memcmp(enc, data, size) != 0) {
      /* only the unused low bits of the last symbol may differ */
      size_t i = 0;
      while (i < size && enc[i] == (char)data[i]) i++;
      if (data[size - 1] != '=' && i != size - 1) abort();
    }
    free(enc);
    free(back);
  } else if (dbx_b64_decode((unsigned char *)inplace, inplace, size, url, &len2) == 0) {
    abort();   /* in-place and out-of-place must agree on validity */
  }
  free(out);
  free(inplace);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check(data, size, 0);
  check(data, size, 1);
  return 0;
}
