#include "dbx_buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DBX_BUF_MIN 256

void dbx_buf_init(dbx_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void dbx_buf_free(dbx_buf *b) {
  free(b->data);
  dbx_buf_init(b);
}

int dbx_buf_reserve(dbx_buf *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra > SIZE_MAX - b->len) return -1;
  need = b->len + extra;
  if (need <= b->cap) return 0;
  /* doubling keeps appends amortised O(1); a big jump (a Content-Length hint)
   * gets exactly what it asked for instead of up to twice that */
  cap = b->cap > SIZE_MAX / 2 ? need : b->cap * 2;
  if (cap < need) cap = need;
  if (cap < DBX_BUF_MIN) cap = DBX_BUF_MIN;
  p = realloc(b->data, cap);
  if (p == NULL) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

int dbx_buf_append(dbx_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (dbx_buf_reserve(b, n) != 0) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void dbx_buf_reset(dbx_buf *b, size_t keep_max) {
  if (b->cap > keep_max) dbx_buf_free(b);
  else b->len = 0;
}
