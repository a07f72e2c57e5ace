/* libFuzzer target: what dbx_http accepts into a request from its caller, who passes on
 * header values and resolve entries that may come from a server, a config file or the
 * environment (tokens, workspace ids, app URLs' hosts). dbx_http.c is compiled into this
 * file so that the lists handed to libcurl can be inspected.
 *
 * The input is split at the first two 0xFF bytes into name, value and resolve entry (absent
 * parts are empty). Properties: a header is accepted exactly when its name is an RFC 9110
 * token and its value has no CR, LF or NUL; an accepted header becomes exactly one line
 * "Name: value" ("Name;" when empty) - except Content-Length, which is dropped - so nothing
 * can be smuggled into the request head; the same headers again keep the list libcurl has
 * (the handle persists across inputs, so lists of earlier inputs are compared against too);
 * a rejected one leaves the list untouched and a
 * message that names at most 64 bytes of the name and never the value. A resolve entry is
 * accepted exactly when it reads [+]host:digits:addresses with no CR, LF or NUL, and then
 * adds itself and "-host:port". */
#include "../csrc/dbx_http.c"
#include "../csrc/dbx_easy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static size_t count(const struct curl_slist *l) {
  size_t n = 0;
  for (; l != NULL; l = l->next) n++;
  return n;
}

static const struct curl_slist *last(const struct curl_slist *l) {
  while (l != NULL && l->next != NULL) l = l->next;
  return l;
}

static int has_ctl(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 1;
  return 0;
}

static size_t count_fresh(const dbx_hlist *l) {
  return count(l->fresh);
}

/* Adds the header; a rejected one changes nothing libcurl would see, and its message is one
 * of two fixed texts around at most 64 bytes of the name: never the value. */
static int add_header(dbx_http *h, const char *name, size_t nlen, const char *val, size_t vlen) {
  const struct curl_slist *list = h->e.hdrs.list;
  size_t fresh = count_fresh(&h->e.hdrs), i;
  int valid = dbx_http_is_token(name, nlen) && !has_ctl(val, vlen);
  dbx_http_code rc = dbx_http_add_header(h, name, nlen, val, vlen);
  CHECK(rc == DBX_HTTP_OK || rc == DBX_HTTP_INVALID_HEADER);
  CHECK((rc == DBX_HTTP_OK) == valid);
  if (rc != DBX_HTTP_OK) {
    char want[sizeof h->e.x.msg];
    CHECK(h->e.hdrs.list == list && count_fresh(&h->e.hdrs) == fresh);
    if (!dbx_http_is_token(name, nlen)) {
      snprintf(want, sizeof want, "invalid header name");
    } else {
      for (i = 0; i < vlen && val[i] != '\r' && val[i] != '\n' && val[i] != '\0'; i++) {}
      snprintf(want, sizeof want, "header \"%.*s\" contains %s", (int)(nlen > 64 ? 64 : nlen), name,
               val[i] == '\0' ? "NUL" : "CR or LF");
    }
    CHECK(strcmp(h->e.x.msg, want) == 0);
  }
  return rc == DBX_HTTP_OK;
}

/* An accepted header becomes exactly one line "Name: value" ("Name;" when empty), except
 * Content-Length, which is dropped; "Expect:" always ends the list. */
static void check_list(const struct curl_slist *l, const char *name, size_t nlen, const char *val, size_t vlen,
                       size_t times) {
  size_t i, k;
  size_t lines = dbx_http_ieq(name, nlen, "content-length") ? 0 : times;
  CHECK(count(l) == lines + 1);
  for (k = 0; k < lines; k++, l = l->next) {
    CHECK(strlen(l->data) == nlen + (vlen ? 2 + vlen : 1));
    CHECK(memcmp(l->data, name, nlen) == 0);
    if (vlen) {
      CHECK(memcmp(l->data + nlen, ": ", 2) == 0 && memcmp(l->data + nlen + 2, val, vlen) == 0);
    } else {
      CHECK(l->data[nlen] == ';');
    }
    for (i = 0; l->data[i]; i++) CHECK(l->data[i] != '\r' && l->data[i] != '\n');
  }
  CHECK(strcmp(l->data, "Expect:") == 0 && l->next == NULL);
}

/* The header twice in one request (the scratch line buffer is reused), then the same request
 * again, which must keep the list libcurl already has rather than build another. */
static void check_header(dbx_http *h, const char *name, size_t nlen, const char *val, size_t vlen) {
  const struct curl_slist *kept;
  if (!add_header(h, name, nlen, val, vlen)) return;
  CHECK(add_header(h, name, nlen, val, vlen));
  CHECK(dbx_hlist_finish(&h->e.hdrs) >= 0);
  check_list(h->e.hdrs.list, name, nlen, val, vlen, 2);
  kept = h->e.hdrs.list;
  dbx_http_end(h);
  dbx_http_begin(h);
  CHECK(add_header(h, name, nlen, val, vlen) && add_header(h, name, nlen, val, vlen));
  CHECK(dbx_hlist_finish(&h->e.hdrs) == 0 && h->e.hdrs.list == kept);
  /* once only: a list of one line */
  dbx_http_end(h);
  dbx_http_begin(h);
  CHECK(add_header(h, name, nlen, val, vlen));
  CHECK(dbx_hlist_finish(&h->e.hdrs) >= 0);
  check_list(h->e.hdrs.list, name, nlen, val, vlen, 1);
}

static int valid_resolve(const char *e, size_t n) {
  const char *s = e, *end = e + n, *c1, *c2, *p;
  if (has_ctl(e, n)) return 0;
  if (n > 0 && s[0] == '+') s++;
  c1 = memchr(s, ':', (size_t)(end - s));
  if (c1 == NULL || c1 == s) return 0;
  c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
  if (c2 == NULL || c2 == c1 + 1 || c2 + 1 == end) return 0;
  for (p = c1 + 1; p < c2; p++)
    if (*p < '0' || *p > '9') return 0;
  return 1;
}

static void check_resolve(dbx_http *h, const char *e, size_t n) {
  size_t before = count(h->res_add), ubefore = count(h->res_undo);
  int rc = dbx_http_add_resolve(h, e, n);
  const char *s = (n > 0 && e[0] == '+') ? e + 1 : e, *c2;
  CHECK((rc == 0) == valid_resolve(e, n));
  if (rc != 0) {
    CHECK(count(h->res_add) == before && count(h->res_undo) == ubefore);
    return;
  }
  CHECK(count(h->res_add) == before + 1 && count(h->res_undo) == ubefore + 1);
  CHECK(strlen(last(h->res_add)->data) == n && memcmp(last(h->res_add)->data, e, n) == 0);
  c2 = memchr(memchr(s, ':', (size_t)(e + n - s)) + 1, ':', (size_t)(e + n - s));
  CHECK(last(h->res_undo)->data[0] == '-');
  CHECK(strlen(last(h->res_undo)->data) == 1 + (size_t)(c2 - s));
  CHECK(memcmp(last(h->res_undo)->data + 1, s, (size_t)(c2 - s)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static dbx_http *h;
  const char *p = (const char *)data, *end = p + size, *s1, *s2;
  char *name, *val, *res;
  size_t nlen, vlen, rlen;
  if (h == NULL) {
    h = dbx_http_new();
    CHECK(h != NULL);
  }
  s1 = memchr(p, 0xFF, size);
  s2 = s1 ? memchr(s1 + 1, 0xFF, (size_t)(end - s1 - 1)) : NULL;
  nlen = s1 ? (size_t)(s1 - p) : size;
  vlen = s1 ? (size_t)((s2 ? s2 : end) - s1 - 1) : 0;
  rlen = s2 ? (size_t)(end - s2 - 1) : 0;
  /* private copies: ASan sees a read past any part */
  name = malloc(nlen ? nlen : 1);
  val = malloc(vlen ? vlen : 1);
  res = malloc(rlen ? rlen : 1);
  CHECK(name && val && res);
  memcpy(name, p, nlen);
  if (vlen) memcpy(val, s1 + 1, vlen);
  if (rlen) memcpy(res, s2 + 1, rlen);

  dbx_http_begin(h);
  check_header(h, name, nlen, val, vlen);
  check_resolve(h, res, rlen);
  dbx_http_end(h);
  free(name);
  free(val);
  free(res);
  return 0;
}
