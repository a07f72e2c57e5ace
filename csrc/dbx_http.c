/* The sequential libcurl client: one HTTP exchange at a time over one dbx_easy (an easy handle
 * that sets only the options that changed since its previous request, and keeps its header
 * list while the headers stay the same), plus the request's resolve entries, which apply to
 * that request only. The transfer callbacks and the outcome are dbx_xfer.c's; the header block
 * parser they feed is dbx_headers.c. Always HTTP/1.1, also where h2 is offered by ALPN: one
 * request at a time gains nothing from multiplexing, and over one keep-alive connection h2
 * measured slower (raw libcurl 0.89x, cfg:request 0.84x of HTTP/1.1; see the commit that made
 * this choice). Batches use h2 (dbx_multi.c). */
#include "dbx_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/err.h>

#include "dbx_easy.h"
#include "dbx_xfer.h"

static const char *const CODE_NAMES[] = {
#define DBX_HTTP_AS_NAME(id, name) name,
  DBX_HTTP_CODES(DBX_HTTP_AS_NAME)
#undef DBX_HTTP_AS_NAME
};

const char *dbx_http_code_name(dbx_http_code c) {
  if ((int)c < 0 || c >= DBX_HTTP_NCODES) return "network";
  return CODE_NAMES[c];
}

/* ---- client ---- */

struct dbx_http {
  dbx_easy           e;
  dbx_buf            line;         /* scratch for building resolve entries */
  struct curl_slist *res_add;      /* this request's --resolve entries */
  struct curl_slist *res_undo;     /* "-host:port" for each of them */
  struct curl_slist *res_owed;     /* undo entries from the previous perform */
  struct curl_slist *res_list;     /* what CURLOPT_RESOLVE points at during perform */
};

static void free_resolve_state(dbx_http *h) {
  curl_slist_free_all(h->res_add);
  curl_slist_free_all(h->res_undo);
  curl_slist_free_all(h->res_list);
  h->res_add = h->res_undo = h->res_list = NULL;
  dbx_buf_reset(&h->line, DBX_HTTP_KEEP_BUFFER);
}

dbx_http *dbx_http_new(void) {
  dbx_http *h = calloc(1, sizeof *h);
  if (h == NULL) return NULL;
  dbx_buf_init(&h->line);
  if (dbx_easy_init(&h->e, CURL_HTTP_VERSION_1_1) != 0) {
    dbx_easy_free(&h->e);
    free(h);
    return NULL;
  }
  return h;
}

void dbx_http_free(dbx_http *h) {
  if (h == NULL) return;
  dbx_easy_free(&h->e);
  free_resolve_state(h);
  curl_slist_free_all(h->res_owed);
  dbx_buf_free(&h->line);
  free(h);
}

const char *dbx_http_message(const dbx_http *h) {
  return h->e.x.msg;
}

/* Forgets the previous request's state; the handle's options and connections stay. */
void dbx_http_begin(dbx_http *h) {
  free_resolve_state(h);
  dbx_xfer_clear(&h->e.x);
  dbx_hlist_begin(&h->e.hdrs);
}

/* After a request the handle must not point at memory that is about to go: the resolve list is
 * freed here and the body belongs to a Lua string. Buffers that grew large are let go. */
void dbx_http_end(dbx_http *h) {
  dbx_easy_end(&h->e);
  if (h->res_list != NULL) curl_easy_setopt(h->e.curl, CURLOPT_RESOLVE, (struct curl_slist *)NULL);
  free_resolve_state(h);
  dbx_xfer_clear(&h->e.x);
}

static int append_line(struct curl_slist **list, const char *s) {
  struct curl_slist *n = curl_slist_append(*list, s);
  if (n == NULL) return -1;
  *list = n;
  return 0;
}

dbx_http_code dbx_http_add_header(dbx_http *h, const char *name, size_t nlen,
                                  const char *value, size_t vlen) {
  return dbx_hlist_add(&h->e.hdrs, name, nlen, value, vlen, h->e.x.msg, sizeof h->e.x.msg);
}

int dbx_http_add_resolve(dbx_http *h, const char *entry, size_t len) {
  const char *key;
  size_t klen;
  if (dbx_http_resolve_key(entry, len, &key, &klen) != 0) return -1;
  h->line.len = 0;
  if (dbx_buf_append(&h->line, entry, len) != 0 || dbx_buf_append(&h->line, "", 1) != 0 ||
      append_line(&h->res_add, h->line.data) != 0)
    return -1;
  h->line.len = 0;
  if (dbx_buf_append(&h->line, "-", 1) != 0 || dbx_buf_append(&h->line, key, klen) != 0 ||
      dbx_buf_append(&h->line, "", 1) != 0 || append_line(&h->res_undo, h->line.data) != 0)
    return -1;
  return 0;
}

/* Copies src's entries onto the end of *dst. */
static int append_all(struct curl_slist **dst, const struct curl_slist *src) {
  for (; src != NULL; src = src->next)
    if (append_line(dst, src->data) != 0) return -1;
  return 0;
}

static dbx_http_code fail(dbx_http *h, dbx_http_code code, const char *msg) {
  snprintf(h->e.x.msg, sizeof h->e.x.msg, "%s", msg);
  return code;
}

/* The previous request's entries come out of libcurl's DNS cache, this one's go in. */
static dbx_http_code set_resolve(dbx_http *h) {
  if (h->res_owed == NULL && h->res_add == NULL) return DBX_HTTP_OK;
  if (append_all(&h->res_list, h->res_owed) != 0 || append_all(&h->res_list, h->res_add) != 0)
    return fail(h, DBX_HTTP_NOMEM, "out of memory");
  if (curl_easy_setopt(h->e.curl, CURLOPT_RESOLVE, h->res_list) != CURLE_OK)
    return fail(h, DBX_HTTP_NOMEM, "out of memory");
  return DBX_HTTP_OK;
}

dbx_http_code dbx_http_perform(dbx_http *h, const dbx_http_req *r, dbx_http_resp *out) {
  char method[33];
  CURLcode rc;
  dbx_http_code code = dbx_http_check_request(r, method, h->e.x.msg, sizeof h->e.x.msg);
  if (code != DBX_HTTP_OK) return code;
  code = dbx_easy_prepare(&h->e, r, method);     /* may reset the handle: resolve comes after */
  if (code == DBX_HTTP_OK) code = set_resolve(h);
  if (code != DBX_HTTP_OK) return code;

  rc = curl_easy_perform(h->e.curl);
  ERR_clear_error();   /* libcurl's OpenSSL calls may leave entries in this thread's queue */

  /* libcurl has loaded the resolve list into its DNS cache by now; what this
   * request added must be taken out again by the next one. */
  if (h->res_list != NULL) {
    curl_slist_free_all(h->res_owed);
    h->res_owed = h->res_undo;
    h->res_undo = NULL;
  }
  return dbx_xfer_done(&h->e.x, h->e.curl, rc, out);
}
