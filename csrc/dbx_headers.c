/* The response header block parser: the lines libcurl hands over become packed
 * records (names lower-cased, values cleaned), then one record per name. No curl and
 * no Lua here, so fuzz_headers builds it on its own. The caller owns the dbx_headers
 * and the merge output. */
#include "dbx_headers.h"

#include <stdint.h>
#include <string.h>

/* ---- character classes ---- */

/* RFC 9110 tchar as a table: every header name of every request and response is checked. */
#define TC(c)                                                                                   \
  (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || ((c) >= '0' && (c) <= '9') ||     \
   (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||          \
   (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||            \
   (c) == '`' || (c) == '|' || (c) == '~')
#define TC4(c) TC(c), TC((c) + 1), TC((c) + 2), TC((c) + 3)
#define TC16(c) TC4(c), TC4((c) + 4), TC4((c) + 8), TC4((c) + 12)
#define TC64(c) TC16(c), TC16((c) + 16), TC16((c) + 32), TC16((c) + 48)
static const unsigned char TCHAR[256] = { TC64(0), TC64(64), TC64(128), TC64(192) };
#undef TC64
#undef TC16
#undef TC4
#undef TC

int dbx_http_is_token(const char *s, size_t n) {
  size_t i;
  if (n == 0) return 0;
  for (i = 0; i < n; i++)
    if (!TCHAR[(unsigned char)s[i]]) return 0;
  return 1;
}

static int is_ows(char c) {
  return c == ' ' || c == '\t';
}

/* RFC 9110 5.5: CR, LF and NUL inside a field value are replaced with SP. */
static int is_blank(char c) {
  return is_ows(c) || c == '\r' || c == '\n' || c == '\0';
}

/* CR, LF and NUL become SP (is_blank without the tab, which stays); one comparison for the
 * common byte, above CR. */
static void copy_value(char *dst, const char *src, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char c = src[i];
    dst[i] = ((unsigned char)c > '\r' || (c != '\r' && c != '\n' && c != '\0')) ? c : ' ';
  }
}

static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

int dbx_http_ieq(const char *a, size_t alen, const char *b) {
  size_t i, blen = strlen(b);
  if (alen != blen) return 0;
  for (i = 0; i < alen; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return 1;
}

/* ---- packed header records ---- */

typedef struct rec {
  const char *name;
  size_t      nlen;
  const char *val;
  size_t      vlen;
  size_t      size;   /* bytes the record occupies */
} rec;

#define REC_HDR (2 * sizeof(uint32_t))

static int rec_read(const char *p, const char *end, rec *r) {
  uint32_t n, v;
  if ((size_t)(end - p) < REC_HDR) return 0;
  memcpy(&n, p, sizeof n);
  memcpy(&v, p + sizeof n, sizeof v);
  if ((size_t)(end - p) - REC_HDR < (size_t)n + v) return 0;
  r->name = p + REC_HDR;
  r->nlen = n;
  r->val = r->name + n;
  r->vlen = v;
  r->size = REC_HDR + n + v;
  return 1;
}

/* Appends a record; clean: the name lower-cased and the value cleaned on the way (a header line
 * as received), else copied as it is (a record's, already clean). Lengths are bounded by
 * DBX_HTTP_MAX_HEADER_BYTES (or by the merge of such records), far below 2^32. */
static int rec_put(dbx_buf *b, const char *name, size_t nlen, const char *val, size_t vlen, int clean) {
  uint32_t n = (uint32_t)nlen, v = (uint32_t)vlen;
  size_t i;
  char *o;
  if (dbx_buf_reserve(b, REC_HDR + nlen + vlen) != 0) return -1;
  o = b->data + b->len;
  memcpy(o, &n, sizeof n);
  memcpy(o + sizeof n, &v, sizeof v);
  o += REC_HDR;
  if (clean) {
    for (i = 0; i < nlen; i++) o[i] = (char)lower((unsigned char)name[i]);
    copy_value(o + nlen, val, vlen);
  } else {
    memcpy(o, name, nlen);
    if (vlen > 0) memcpy(o + nlen, val, vlen);
  }
  b->len += REC_HDR + nlen + vlen;
  return 0;
}

static int rec_append(dbx_buf *b, const char *name, size_t nlen, const char *val, size_t vlen) {
  return rec_put(b, name, nlen, val, vlen, 1);
}

void dbx_hdr_iter_init(dbx_hdr_iter *it, const char *recs, size_t len) {
  it->p = recs;
  it->end = recs ? recs + len : recs;
}

int dbx_hdr_next(dbx_hdr_iter *it, const char **name, size_t *nlen,
                 const char **val, size_t *vlen) {
  rec r;
  if (it->p == NULL || !rec_read(it->p, it->end, &r)) return 0;
  *name = r.name;
  *nlen = r.nlen;
  *val = r.val;
  *vlen = r.vlen;
  it->p += r.size;
  return 1;
}

/* ---- header block parser ---- */

void dbx_headers_init(dbx_headers *h) {
  dbx_buf_init(&h->recs);
  h->count = 0;
  h->bytes = 0;
  h->last = 0;
  h->status = 0;
  h->content_length = -1;
}

void dbx_headers_free(dbx_headers *h) {
  dbx_buf_free(&h->recs);
  dbx_headers_init(h);
}

void dbx_headers_reset(dbx_headers *h, size_t keep_max) {
  dbx_buf_reset(&h->recs, keep_max);
  h->count = 0;
  h->bytes = 0;
  h->last = 0;
  h->status = 0;
  h->content_length = -1;
}

/* "HTTP/1.1 200 OK", "HTTP/2 200": the code is the 3 digits after the first space. */
static long parse_status(const char *s, size_t n) {
  const char *sp = memchr(s, ' ', n);
  size_t i, rest;
  long code = 0;
  if (sp == NULL) return 0;
  rest = n - (size_t)(sp + 1 - s);
  if (rest < 3) return 0;
  for (i = 1; i <= 3; i++) {
    if (sp[i] < '0' || sp[i] > '9') return 0;
    code = code * 10 + (sp[i] - '0');
  }
  if (rest > 3 && sp[4] != ' ') return 0;
  return code;
}

/* Plain decimal only; anything else (signs, lists, overflow) counts as absent,
 * which only disables the early size check, never the streaming one. */
static long long parse_length(const char *s, size_t n) {
  long long v = 0;
  size_t i;
  if (n == 0 || n > 18) return -1;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

static void trim(const char **s, size_t *n) {
  while (*n > 0 && is_blank((*s)[0])) { (*s)++; (*n)--; }
  while (*n > 0 && is_blank((*s)[*n - 1])) (*n)--;
}

static dbx_hdr_status fold_into_last(dbx_headers *h, const char *s, size_t n) {
  uint32_t v;
  size_t sep;
  char *vp;
  trim(&s, &n);
  if (h->count == 0 || n == 0) return DBX_HDR_OK;
  memcpy(&v, h->recs.data + h->last + sizeof(uint32_t), sizeof v);
  sep = v > 0;                     /* "Name:" + fold: the value must not start with a space */
  if (dbx_buf_reserve(&h->recs, n + sep) != 0) return DBX_HDR_NOMEM;
  /* the newest record is the last one in the buffer, so its value can grow in place */
  vp = h->recs.data + h->recs.len;
  if (sep) *vp = ' ';
  copy_value(vp + sep, s, n);
  h->recs.len += n + sep;
  v += (uint32_t)(n + sep);
  memcpy(h->recs.data + h->last + sizeof(uint32_t), &v, sizeof v);
  return DBX_HDR_OK;
}

dbx_hdr_status dbx_headers_feed(dbx_headers *h, const char *line, size_t len) {
  const char *colon, *val;
  size_t nlen, vlen;

  if (len > DBX_HTTP_MAX_HEADER_BYTES - h->bytes) return DBX_HDR_TOO_LARGE;
  h->bytes += len;
  while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;

  if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    dbx_headers_reset(h, SIZE_MAX);
    h->bytes = len;
    h->status = parse_status(line, len);
    return DBX_HDR_OK;
  }
  if (len == 0) return DBX_HDR_OK;                     /* end of the block */
  if (is_ows(line[0])) return fold_into_last(h, line, len);

  colon = memchr(line, ':', len);
  if (colon == NULL) return DBX_HDR_OK;
  nlen = (size_t)(colon - line);
  if (!dbx_http_is_token(line, nlen)) return DBX_HDR_OK;
  if (h->count >= DBX_HTTP_MAX_HEADER_LINES) return DBX_HDR_TOO_LARGE;
  val = colon + 1;
  vlen = len - nlen - 1;
  trim(&val, &vlen);

  h->last = h->recs.len;
  if (rec_append(&h->recs, line, nlen, val, vlen) != 0) return DBX_HDR_NOMEM;
  h->count++;
  if (nlen == 14 && dbx_http_ieq(line, nlen, "content-length")) h->content_length = parse_length(val, vlen);
  return DBX_HDR_OK;
}

static int same_name(const rec *a, const rec *b) {
  return a->nlen == b->nlen && memcmp(a->name, b->name, a->nlen) == 0;
}

/* Quadratic in the number of lines, which DBX_HTTP_MAX_HEADER_LINES bounds. */
int dbx_headers_merge(const dbx_headers *h, dbx_buf *out) {
  const char *base = h->recs.data, *end, *p, *q;
  rec r, e;
  if (base == NULL) return 0;      /* no header yet: NULL + 0 is not valid C */
  end = base + h->recs.len;
  for (p = base; rec_read(p, end, &r); p += r.size) {
    size_t at, vlen = r.vlen;
    uint32_t v;
    int seen = 0;
    for (q = base; q < p && rec_read(q, end, &e); q += e.size)
      if (same_name(&r, &e)) { seen = 1; break; }
    if (seen) continue;
    at = out->len;
    if (rec_put(out, r.name, r.nlen, r.val, r.vlen, 0) != 0) return -1;   /* already clean */
    for (q = p + r.size; rec_read(q, end, &e); q += e.size) {
      /* empty field lines add nothing: joining them would leave a dangling ", " */
      if (!same_name(&r, &e) || e.vlen == 0) continue;
      if ((vlen > 0 && dbx_buf_append(out, ", ", 2) != 0) || dbx_buf_append(out, e.val, e.vlen) != 0)
        return -1;
      vlen += (vlen > 0 ? 2 : 0) + e.vlen;
    }
    v = (uint32_t)vlen;
    memcpy(out->data + at + sizeof(uint32_t), &v, sizeof v);
  }
  return 0;
}
