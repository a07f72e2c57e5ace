/* An easy handle that sets only the options that changed since its previous request, and a
 * request header list that is kept while the headers stay the same. See dbx_easy.h. */
#include "dbx_easy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

/* ---- the header list ---- */

void dbx_hlist_init(dbx_hlist *l) {
  l->list = l->expect = l->cmp = l->fresh = NULL;
  l->same = 0;
  l->differs = 0;
  dbx_buf_init(&l->line);
}

void dbx_hlist_free(dbx_hlist *l) {
  curl_slist_free_all(l->list);
  curl_slist_free_all(l->fresh);
  dbx_buf_free(&l->line);
  dbx_hlist_init(l);
}

void dbx_hlist_begin(dbx_hlist *l) {
  curl_slist_free_all(l->fresh);   /* left by a request that was never sent */
  l->fresh = NULL;
  l->cmp = l->list;
  l->same = 0;
  l->differs = 0;
}

static int append_line(struct curl_slist **list, const char *s) {
  struct curl_slist *n = curl_slist_append(*list, s);
  if (n == NULL) return -1;
  *list = n;
  return 0;
}

/* The first `same` lines of the kept list start this request's own. */
static int copy_same(dbx_hlist *l) {
  const struct curl_slist *p = l->list;
  size_t i;
  l->differs = 1;
  for (i = 0; i < l->same; i++, p = p->next)
    if (append_line(&l->fresh, p->data) != 0) return -1;
  return 0;
}

dbx_http_code dbx_hlist_add_line(dbx_hlist *l, const char *line, size_t len) {
  if (!l->differs && l->cmp != NULL && l->cmp != l->expect && strncmp(l->cmp->data, line, len + 1) == 0) {
    l->cmp = l->cmp->next;
    l->same++;
    return DBX_HTTP_OK;
  }
  if (!l->differs && copy_same(l) != 0) return DBX_HTTP_NOMEM;
  return append_line(&l->fresh, line) == 0 ? DBX_HTTP_OK : DBX_HTTP_NOMEM;
}

/* d is "Name: value" (or "Name;" for an empty value), compared without building it. */
static int line_is(const char *d, const char *name, size_t nlen, const char *value, size_t vlen) {
  if (strncmp(d, name, nlen) != 0) return 0;
  d += nlen;
  if (vlen == 0) return d[0] == ';' && d[1] == '\0';
  if (d[0] != ':' || d[1] != ' ') return 0;
  d += 2;
  return strncmp(d, value, vlen) == 0 && d[vlen] == '\0';
}

dbx_http_code dbx_hlist_add(dbx_hlist *l, const char *name, size_t nlen, const char *value, size_t vlen,
                            char *msg, size_t msgsz) {
  dbx_http_code code = dbx_http_check_header(name, nlen, value, vlen, msg, msgsz);
  if (code != DBX_HTTP_OK || dbx_http_header_skipped(name, nlen)) return code;
  /* names are tokens and values have no NUL (both checked): strncmp cannot stop early */
  if (!l->differs && l->cmp != NULL && l->cmp != l->expect && line_is(l->cmp->data, name, nlen, value, vlen)) {
    l->cmp = l->cmp->next;
    l->same++;
    return DBX_HTTP_OK;
  }
  if (dbx_http_header_line(&l->line, name, nlen, value, vlen) != 0) return DBX_HTTP_NOMEM;
  return dbx_hlist_add_line(l, l->line.data, l->line.len - 1);
}

int dbx_hlist_finish(dbx_hlist *l) {
  struct curl_slist *p;
  if (l->list != NULL && !l->differs && l->cmp == l->expect) return 0;
  /* Expect: 100-continue costs a round trip (or a 1 s stall) for every POST. */
  if ((!l->differs && copy_same(l) != 0) || append_line(&l->fresh, "Expect:") != 0) return -1;
  curl_slist_free_all(l->list);
  l->list = l->fresh;
  l->fresh = NULL;
  for (p = l->list; p->next != NULL; p = p->next) {}
  l->expect = p;
  return 1;
}

/* ---- the handle ---- */

static void forget_options(dbx_easy *e) {
  e->ready = 0;
  e->skip_verify = e->no_proxy = e->hdrs_set = e->nobody = e->body_set = 0;
  e->timeout_ms = -1;
  e->custom[0] = '\0';
  e->url.len = 0;
  free(e->ca_file);
  e->ca_file = NULL;
}

int dbx_easy_init(dbx_easy *e, long http_version) {
  memset(e, 0, sizeof *e);
  dbx_xfer_init(&e->x);
  dbx_hlist_init(&e->hdrs);
  dbx_buf_init(&e->url);
  e->http_version = http_version;
  e->pristine = 1;
  forget_options(e);
  e->curl = curl_easy_init();
  ERR_clear_error();
  return e->curl != NULL ? 0 : -1;
}

void dbx_easy_free(dbx_easy *e) {
  if (e->curl != NULL) curl_easy_cleanup(e->curl);
  ERR_clear_error();
  e->curl = NULL;
  forget_options(e);
  dbx_xfer_free(&e->x);
  dbx_hlist_free(&e->hdrs);
  dbx_buf_free(&e->url);
}

static int same_str(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

#define SET(opt, val)                                               \
  do {                                                              \
    if (rc == CURLE_OK) rc = curl_easy_setopt(c, (opt), (val));     \
  } while (0)

/* Everything back to libcurl's defaults (the only way back to its default CA bundle), then
 * the constant options and the CA bundle. The connection cache survives a reset. */
static CURLcode reconfigure(dbx_easy *e, const char *ca_file) {
  CURL *c = e->curl;
  CURLcode rc = CURLE_OK;
  if (!e->pristine) curl_easy_reset(c);
  e->pristine = 0;
  forget_options(e);
  if (ca_file != NULL && (e->ca_file = strdup(ca_file)) == NULL) return CURLE_OUT_OF_MEMORY;
  rc = dbx_xfer_setup(&e->x, c, e->http_version);
  if (e->pipewait) SET(CURLOPT_PIPEWAIT, 1L);
  if (ca_file != NULL) SET(CURLOPT_CAINFO, ca_file);
  return rc;
}

static int method_is(const char *m, const char *want) {
  return strcmp(m, want) == 0;
}

/* HEAD is sent as a real HEAD; POST and a body go as POSTFIELDS (the exact length, any
 * bytes); any other method with or without a body is a CUSTOMREQUEST. */
static CURLcode set_method(dbx_easy *e, const dbx_http_req *r, const char *method) {
  CURL *c = e->curl;
  CURLcode rc = CURLE_OK;
  int head = method_is(method, "HEAD"), post = method_is(method, "POST");
  const char *custom = NULL;
  e->x.nobody = head;
  if (head) {
    if (!e->nobody) SET(CURLOPT_NOBODY, 1L);
    e->nobody = 1;
  } else {
    if (e->nobody) SET(CURLOPT_NOBODY, 0L);
    e->nobody = 0;
    if (r->body != NULL) {
      SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
      SET(CURLOPT_POSTFIELDS, r->body);
      e->body_set = 1;
    } else if (post) {
      SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
      SET(CURLOPT_POSTFIELDS, "");
    } else {
      SET(CURLOPT_HTTPGET, 1L);
    }
    if (!post && !(r->body == NULL && method_is(method, "GET"))) custom = method;
  }
  if (strcmp(e->custom, custom ? custom : "") != 0) {
    SET(CURLOPT_CUSTOMREQUEST, custom);
    snprintf(e->custom, sizeof e->custom, "%s", custom ? custom : "");
  }
  return rc;
}

static CURLcode set_request(dbx_easy *e, const dbx_http_req *r, const char *method) {
  CURL *c = e->curl;
  CURLcode rc = CURLE_OK;
  int skip = r->skip_verify != 0, direct = r->no_proxy != 0;
  if (!e->ready || !same_str(e->ca_file, r->ca_file)) rc = reconfigure(e, r->ca_file);
  if (rc == CURLE_OK) e->ready = 1;
  if (skip != e->skip_verify) {
    SET(CURLOPT_SSL_VERIFYPEER, skip ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, skip ? 0L : 2L);
    e->skip_verify = skip;
  }
  if (direct != e->no_proxy) {
    SET(CURLOPT_NOPROXY, direct ? "*" : (char *)NULL);   /* NULL: the environment's no_proxy again */
    e->no_proxy = direct;
  }
  if (r->timeout_ms != e->timeout_ms) {
    SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS,
        r->timeout_ms < DBX_HTTP_MAX_CONNECT_MS ? r->timeout_ms : DBX_HTTP_MAX_CONNECT_MS);
    e->timeout_ms = r->timeout_ms;
  }
  /* libcurl copies the URL; ours is kept only to see whether the next one is the same */
  if (e->url.len != r->url_len + 1 || memcmp(e->url.data, r->url, r->url_len) != 0) {
    e->url.len = 0;
    if (dbx_buf_append(&e->url, r->url, r->url_len) != 0 || dbx_buf_append(&e->url, "", 1) != 0) {
      e->url.len = 0;
      return CURLE_OUT_OF_MEMORY;
    }
    SET(CURLOPT_URL, e->url.data);
  }
  if (rc == CURLE_OK) rc = set_method(e, r, method);
  return rc;
}

dbx_http_code dbx_easy_prepare(dbx_easy *e, const dbx_http_req *r, const char *method) {
  CURLcode rc;
  int changed;
  e->x.max_body = r->max_body;
  rc = set_request(e, r, method);
  if (rc == CURLE_OK) {
    changed = dbx_hlist_finish(&e->hdrs);
    if (changed < 0) rc = CURLE_OUT_OF_MEMORY;
    else if (changed || !e->hdrs_set) rc = curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, e->hdrs.list);
    if (rc == CURLE_OK) e->hdrs_set = 1;
  }
  if (rc == CURLE_OK) return DBX_HTTP_OK;
  ERR_clear_error();
  e->ready = 0;                   /* whatever was half set: start from a reset next time */
  snprintf(e->x.msg, sizeof e->x.msg, "%s", curl_easy_strerror(rc));
  return dbx_http_classify(rc) == DBX_HTTP_NOMEM ? DBX_HTTP_NOMEM : DBX_HTTP_NETWORK;
}

void dbx_easy_end(dbx_easy *e) {
  if (e->body_set) {
    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, (char *)NULL);
    e->body_set = 0;
  }
}
