/* libFuzzer target: the loopback listener's request-head parser (dbx_req_parse)
 * and the query decoding the binding does after it.
 * Properties: no out-of-bounds access; a DONE head lies inside the input, its
 * fields partition the request line as documented and its query decodes; the
 * verdict is stable under truncation and extension (a prefix is never BAD unless
 * the whole is, and every prefix shorter than a DONE head is MORE); parsing only
 * the head gives the same result. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dbx_encode.h"
#include "dbx_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_done(const char *s, size_t n, const dbx_req *r) {
  size_t i, len;
  char *buf;
  dbx_query_iter it;
  const char *k, *v;
  size_t klen, vlen;
  CHECK(r->head_len >= 14 && r->head_len <= n);  /* "G / HTTP/1.1\n\n" is the shortest */
  CHECK(r->method >= s && r->method + r->method_len <= s + r->head_len && r->method_len > 0);
  CHECK(r->target == r->method + r->method_len + 1);
  CHECK(r->target + r->target_len <= s + r->head_len && r->target_len > 0);
  CHECK(r->target[0] == '/');
  for (i = 0; i < r->target_len; i++)
    CHECK((unsigned char)r->target[i] > 0x20 && (unsigned char)r->target[i] < 0x7F);
  CHECK(r->path == r->target && r->path_len <= r->target_len);
  CHECK(memchr(r->path, '?', r->path_len) == NULL);
  if (r->has_query) {
    CHECK(r->path[r->path_len] == '?');
    CHECK(r->query == r->path + r->path_len + 1);
    CHECK(r->path_len + 1 + r->query_len == r->target_len);
  } else {
    CHECK(r->path_len == r->target_len && r->query_len == 0);
  }
  CHECK(r->minor >= 0 && r->minor <= 9);
  CHECK(s[r->head_len - 1] == '\n');
  /* what core.parse_query does with raw_query must succeed */
  buf = malloc(r->query_len + 1);
  CHECK(buf != NULL);
  CHECK(dbx_pct_decode(buf, r->query, r->query_len, 1, &len) == 0);
  dbx_query_init(&it, r->query, r->query_len);
  while (dbx_query_next(&it, &k, &klen, &v, &vlen)) {
    CHECK(dbx_pct_decode(buf, k, klen, 1, &len) == 0);
    CHECK(dbx_pct_decode(buf, v, vlen, 1, &len) == 0);
  }
  free(buf);
}

static void same(const dbx_req *a, const dbx_req *b) {
  CHECK(a->method == b->method && a->method_len == b->method_len);
  CHECK(a->target == b->target && a->target_len == b->target_len);
  CHECK(a->query == b->query && a->query_len == b->query_len && a->has_query == b->has_query);
  CHECK(a->minor == b->minor && a->head_len == b->head_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* a private copy, so that ASan sees any read past the end */
  char *s = malloc(size ? size : 1);
  const char *why;
  dbx_req r, p;
  dbx_req_status st, pst;
  size_t cut[3], i;
  CHECK(s != NULL);
  memcpy(s, data, size);
  st = dbx_req_parse(s, size, &r, &why);
  CHECK(st == DBX_REQ_BAD || st == DBX_REQ_MORE || st == DBX_REQ_DONE);
  CHECK((st == DBX_REQ_BAD) == (why != NULL));
  if (st == DBX_REQ_DONE) {
    check_done(s, size, &r);
    /* exactly the head: same answer; anything shorter: not decided yet */
    pst = dbx_req_parse(s, r.head_len, &p, &why);
    CHECK(pst == DBX_REQ_DONE);
    same(&r, &p);
    cut[0] = r.head_len - 1;
    cut[1] = r.head_len / 2;
    cut[2] = 0;
    for (i = 0; i < 3; i++) CHECK(dbx_req_parse(s, cut[i], &p, &why) == DBX_REQ_MORE);
  } else {
    /* a prefix never decides more than the whole */
    cut[0] = size ? size - 1 : 0;
    cut[1] = size / 2;
    cut[2] = size / 3;
    for (i = 0; i < 3; i++) {
      pst = dbx_req_parse(s, cut[i], &p, &why);
      CHECK(pst != DBX_REQ_DONE);
      if (pst == DBX_REQ_BAD) CHECK(st == DBX_REQ_BAD);
    }
  }
  free(s);
  return 0;
}
