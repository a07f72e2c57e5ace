/* The loopback listener's request-head parser: request line and header syntax, the
 * query's percent-encoding. Pure: no sockets, no allocation, no Lua; fuzzed on its
 * own (fuzz_reqline). */
#include "dbx_req.h"

#include <string.h>

static int is_tchar(unsigned char c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* Same acceptance as dbx_pct_decode: every '%' starts a %XX. */
static int pct_valid(const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] == '%') {
      if (n - i < 3 || !is_hex((unsigned char)s[i + 1]) || !is_hex((unsigned char)s[i + 2])) return 0;
      i += 3;
    } else {
      i++;
    }
  }
  return 1;
}

/* The next complete line starting at p: [p, *end) without its line ending, *next
 * after the LF. 0 when no LF yet; -1 on a CR that is not right before the LF. */
static int next_line(const char *buf, size_t n, size_t p, size_t *end, size_t *next) {
  const char *lf = memchr(buf + p, '\n', n - p);
  size_t e;
  if (lf == NULL) return 0;
  e = (size_t)(lf - buf);
  *next = e + 1;
  if (e > p && buf[e - 1] == '\r') e--;
  if (memchr(buf + p, '\r', e - p) != NULL) return -1;
  *end = e;
  return 1;
}

static dbx_req_status bad(const char **why, const char *msg) {
  *why = msg;
  return DBX_REQ_BAD;
}

static dbx_req_status parse_request_line(const char *s, size_t n, dbx_req *req, const char **why) {
  size_t i = 0, t0, q;
  while (i < n && is_tchar((unsigned char)s[i])) i++;
  if (i == 0 || i == n || s[i] != ' ') return bad(why, "malformed request line");
  req->method = s;
  req->method_len = i;
  t0 = ++i;
  while (i < n && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7F) i++;
  if (i == t0 || i == n || s[i] != ' ') return bad(why, "malformed request line");
  if (s[t0] != '/') return bad(why, "request target must start with '/'");
  req->target = s + t0;
  req->target_len = i - t0;
  i++;
  if (n - i != 8 || memcmp(s + i, "HTTP/1.", 7) != 0 || s[i + 7] < '0' || s[i + 7] > '9')
    return bad(why, "not an HTTP/1.x request");
  req->minor = s[i + 7] - '0';
  q = 0;
  while (q < req->target_len && req->target[q] != '?') q++;
  req->path = req->target;
  req->path_len = q;
  req->has_query = q < req->target_len;
  req->query = req->has_query ? req->target + q + 1 : req->target + q;
  req->query_len = req->has_query ? req->target_len - q - 1 : 0;
  if (!pct_valid(req->query, req->query_len)) return bad(why, "invalid percent-encoding in the query");
  return DBX_REQ_DONE;
}

static int header_line_ok(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)s[i])) i++;
  if (i == 0 || i == n || s[i] != ':') return 0;
  for (i++; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7F) return 0;
  }
  return 1;
}

dbx_req_status dbx_req_parse(const char *buf, size_t n, dbx_req *req, const char **why) {
  size_t p = 0, end = 0, next = 0;
  int r;
  *why = NULL;
  memset(req, 0, sizeof *req);
  /* RFC 9112 2.2: ignore empty lines before the request line */
  for (;;) {
    if (p == n) return DBX_REQ_MORE;
    if (buf[p] == '\n') { p++; continue; }
    if (buf[p] != '\r') break;
    if (p + 1 == n) return DBX_REQ_MORE;
    if (buf[p + 1] != '\n') return bad(why, "bare CR in the request head");
    p += 2;
  }
  r = next_line(buf, n, p, &end, &next);
  if (r == 0) return DBX_REQ_MORE;
  if (r < 0) return bad(why, "bare CR in the request head");
  if (memchr(buf + p, '\0', end - p) != NULL) return bad(why, "NUL in the request line");
  if (parse_request_line(buf + p, end - p, req, why) != DBX_REQ_DONE) return DBX_REQ_BAD;
  for (;;) {
    p = next;
    r = next_line(buf, n, p, &end, &next);
    if (r == 0) return DBX_REQ_MORE;
    if (r < 0) return bad(why, "bare CR in the request head");
    if (end == p) break;
    if (!header_line_ok(buf + p, end - p)) return bad(why, "malformed header line");
  }
  req->head_len = next;
  return DBX_REQ_DONE;
}
