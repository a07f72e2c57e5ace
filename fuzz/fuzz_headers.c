/* libFuzzer target: the response-header parser (dbx_headers), fed line by line as libcurl
 * would (each line ends at '\n'), then merged. Properties: no out-of-bounds
 * access, limits respected, names are distinct lower-case tokens, values carry
 * no CR, LF or NUL and no surrounding whitespace. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dbx_headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_record(const char *name, size_t nlen, const char *val, size_t vlen) {
  size_t i;
  if (!dbx_http_is_token(name, nlen)) abort();
  for (i = 0; i < nlen; i++)
    if (name[i] >= 'A' && name[i] <= 'Z') abort();
  for (i = 0; i < vlen; i++)
    if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0') abort();
  if (vlen > 0 && (val[0] == ' ' || val[0] == '\t' || val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size;
  dbx_headers h;
  dbx_buf merged;
  dbx_hdr_iter it, it2;
  const char *name, *val, *n2, *v2;
  size_t nlen, vlen, n2len, v2len, count = 0;

  dbx_headers_init(&h);
  dbx_buf_init(&merged);
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
    /* libcurl delivers each line in its own malloc'd-size buffer: copy it so ASan
     * catches reads past the line, not just past the whole input */
    char *line = malloc(len ? len : 1);
    dbx_hdr_status rc;
    if (line == NULL) abort();
    memcpy(line, p, len);
    rc = dbx_headers_feed(&h, line, len);
    free(line);
    if (rc == DBX_HDR_TOO_LARGE) break;
    if (rc != DBX_HDR_OK) abort();
    if (h.count > DBX_HTTP_MAX_HEADER_LINES || h.bytes > DBX_HTTP_MAX_HEADER_BYTES) abort();
    p += len;
  }

  dbx_hdr_iter_init(&it, h.recs.data, h.recs.len);
  while (dbx_hdr_next(&it, &name, &nlen, &val, &vlen)) {
    check_record(name, nlen, val, vlen);
    count++;
  }
  if (count != h.count) abort();

  if (dbx_headers_merge(&h, &merged) != 0) abort();
  dbx_hdr_iter_init(&it, merged.data, merged.len);
  while (dbx_hdr_next(&it, &name, &nlen, &val, &vlen)) {
    check_record(name, nlen, val, vlen);   /* joined values keep the same properties */
    it2 = it;
    while (dbx_hdr_next(&it2, &n2, &n2len, &v2, &v2len))
      if (n2len == nlen && memcmp(n2, name, nlen) == 0) abort();   /* names are unique */
  }
  dbx_buf_free(&merged);
  dbx_headers_free(&h);
  return 0;
}
