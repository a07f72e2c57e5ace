/* The libcurl client: one HTTP exchange at a time over a reused easy handle, its
 * request header and resolve lists, the transfer callbacks and the mapping of curl's
 * errors onto dbx_http_code. The header block parser it feeds is dbx_headers.c. */
#include "dbx_http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/err.h>

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
  CURL              *curl;
  dbx_buf            body;
  dbx_headers        hdrs;
  dbx_buf            merged;
  dbx_buf            line;         /* scratch for building "Name: value" */
  dbx_buf            url;          /* NUL-terminated copy of the request URL */
  struct curl_slist *req_headers;
  struct curl_slist *res_add;      /* this request's --resolve entries */
  struct curl_slist *res_undo;     /* "-host:port" for each of them */
  struct curl_slist *res_owed;     /* undo entries from the previous perform */
  struct curl_slist *res_list;     /* what CURLOPT_RESOLVE points at */
  size_t             max_body;
  int                nobody;
  dbx_http_code      cb_err;       /* why a callback aborted the transfer */
  char               errbuf[CURL_ERROR_SIZE];
  char               msg[CURL_ERROR_SIZE + 64];
};

static void free_request_state(dbx_http *h) {
  curl_slist_free_all(h->req_headers);
  curl_slist_free_all(h->res_add);
  curl_slist_free_all(h->res_undo);
  curl_slist_free_all(h->res_list);
  h->req_headers = h->res_add = h->res_undo = h->res_list = NULL;
  dbx_buf_reset(&h->body, DBX_HTTP_KEEP_BUFFER);
  dbx_buf_reset(&h->merged, DBX_HTTP_KEEP_BUFFER);
  dbx_buf_reset(&h->line, DBX_HTTP_KEEP_BUFFER);
  dbx_buf_reset(&h->url, DBX_HTTP_KEEP_BUFFER);
  dbx_headers_reset(&h->hdrs, DBX_HTTP_KEEP_BUFFER);
  h->cb_err = DBX_HTTP_OK;
  h->nobody = 0;
}

dbx_http *dbx_http_new(void) {
  dbx_http *h = calloc(1, sizeof *h);
  if (h == NULL) return NULL;
  dbx_buf_init(&h->body);
  dbx_buf_init(&h->merged);
  dbx_buf_init(&h->line);
  dbx_buf_init(&h->url);
  dbx_headers_init(&h->hdrs);
  h->curl = curl_easy_init();
  ERR_clear_error();
  if (h->curl == NULL) { free(h); return NULL; }
  return h;
}

void dbx_http_free(dbx_http *h) {
  if (h == NULL) return;
  curl_easy_cleanup(h->curl);
  ERR_clear_error();
  free_request_state(h);
  curl_slist_free_all(h->res_owed);
  dbx_buf_free(&h->body);
  dbx_buf_free(&h->merged);
  dbx_buf_free(&h->line);
  dbx_buf_free(&h->url);
  dbx_headers_free(&h->hdrs);
  free(h);
}

const char *dbx_http_message(const dbx_http *h) {
  return h->msg;
}

/* Unsets every option (so nothing leaks from the previous request) and forgets
 * the pointers into caller memory; the connection cache survives. */
void dbx_http_begin(dbx_http *h) {
  curl_easy_reset(h->curl);
  free_request_state(h);
  h->msg[0] = '\0';
}

/* After a request the handle must not point at memory that is about to go: the header and
 * resolve lists are freed here and the body belongs to a Lua string. Clearing those three is
 * enough; the full reset happens once, in dbx_http_begin. */
void dbx_http_end(dbx_http *h) {
  curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
  curl_easy_setopt(h->curl, CURLOPT_RESOLVE, (struct curl_slist *)NULL);
  curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, (char *)NULL);
  free_request_state(h);
  h->msg[0] = '\0';
}

static int append_line(struct curl_slist **list, const char *s) {
  struct curl_slist *n = curl_slist_append(*list, s);
  if (n == NULL) return -1;
  *list = n;
  return 0;
}

static int name_for_msg(size_t nlen) {
  return (int)(nlen > 64 ? 64 : nlen);
}

dbx_http_code dbx_http_add_header(dbx_http *h, const char *name, size_t nlen,
                                  const char *value, size_t vlen) {
  size_t i;
  if (!dbx_http_is_token(name, nlen)) {
    snprintf(h->msg, sizeof h->msg, "invalid header name");
    return DBX_HTTP_INVALID_HEADER;
  }
  for (i = 0; i < vlen; i++) {
    if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0') {
      snprintf(h->msg, sizeof h->msg, "header \"%.*s\" contains %s", name_for_msg(nlen), name,
               value[i] == '\0' ? "NUL" : "CR or LF");
      return DBX_HTTP_INVALID_HEADER;
    }
  }
  /* The body is always sent with its exact length; a second opinion can only be wrong. */
  if (dbx_http_ieq(name, nlen, "content-length")) return DBX_HTTP_OK;

  h->line.len = 0;
  /* "Name;" is libcurl's spelling of an empty header ("Name:" would remove it). */
  if (dbx_buf_append(&h->line, name, nlen) != 0 ||
      dbx_buf_append(&h->line, vlen ? ": " : ";", vlen ? 2 : 1) != 0 ||
      dbx_buf_append(&h->line, value, vlen) != 0 ||
      dbx_buf_append(&h->line, "", 1) != 0 ||
      append_line(&h->req_headers, h->line.data) != 0)
    return DBX_HTTP_NOMEM;
  return DBX_HTTP_OK;
}

int dbx_http_add_resolve(dbx_http *h, const char *entry, size_t len) {
  const char *s = entry, *c1, *c2, *end = entry + len;
  size_t i;
  for (i = 0; i < len; i++)
    if (entry[i] == '\0' || entry[i] == '\r' || entry[i] == '\n') return -1;
  if (len > 0 && s[0] == '+') s++;                  /* "+host:..." = a timed entry */
  c1 = memchr(s, ':', (size_t)(end - s));
  if (c1 == NULL || c1 == s) return -1;
  c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
  if (c2 == NULL || c2 == c1 + 1 || c2 + 1 == end) return -1;
  for (i = 1; c1 + i < c2; i++)
    if (c1[i] < '0' || c1[i] > '9') return -1;

  h->line.len = 0;
  if (dbx_buf_append(&h->line, entry, len) != 0 || dbx_buf_append(&h->line, "", 1) != 0 ||
      append_line(&h->res_add, h->line.data) != 0)
    return -1;
  h->line.len = 0;
  if (dbx_buf_append(&h->line, "-", 1) != 0 ||
      dbx_buf_append(&h->line, s, (size_t)(c2 - s)) != 0 ||
      dbx_buf_append(&h->line, "", 1) != 0 ||
      append_line(&h->res_undo, h->line.data) != 0)
    return -1;
  return 0;
}

/* ---- transfer callbacks: plain C only, never Lua ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  dbx_http *h = ud;
  size_t len = size * n;
  if (len > h->max_body - h->body.len) {
    h->cb_err = DBX_HTTP_TOO_LARGE;
    snprintf(h->msg, sizeof h->msg, "response body exceeds %zu bytes", h->max_body);
    return 0;
  }
  if (dbx_buf_append(&h->body, p, len) != 0) {
    h->cb_err = DBX_HTTP_NOMEM;
    snprintf(h->msg, sizeof h->msg, "out of memory");
    return 0;
  }
  return len;
}

static int has_no_body(long status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  dbx_http *h = ud;
  size_t len = size * n;
  long long cl;
  dbx_hdr_status e = dbx_headers_feed(&h->hdrs, p, len);
  if (e == DBX_HDR_TOO_LARGE) {
    h->cb_err = DBX_HTTP_TOO_LARGE;
    snprintf(h->msg, sizeof h->msg, "response headers exceed %zu bytes or %d lines",
             (size_t)DBX_HTTP_MAX_HEADER_BYTES, DBX_HTTP_MAX_HEADER_LINES);
    return 0;
  }
  if (e != DBX_HDR_OK) {
    h->cb_err = DBX_HTTP_NOMEM;
    snprintf(h->msg, sizeof h->msg, "out of memory");
    return 0;
  }
  cl = h->hdrs.content_length;
  if (cl >= 0 && !h->nobody && !has_no_body(h->hdrs.status)) {
    if ((unsigned long long)cl > (unsigned long long)h->max_body) {
      h->cb_err = DBX_HTTP_TOO_LARGE;
      snprintf(h->msg, sizeof h->msg, "response body exceeds %zu bytes", h->max_body);
      return 0;
    }
    /* a size hint only: failure here is caught by on_body if it matters */
    if ((size_t)cl > h->body.len) (void)dbx_buf_reserve(&h->body, (size_t)cl - h->body.len);
  }
  return len;
}

/* ---- perform ---- */

static dbx_http_code classify(CURLcode rc) {
  switch (rc) {
  case CURLE_OK:
    return DBX_HTTP_OK;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_USE_SSL_FAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
#if LIBCURL_VERSION_NUM >= 0x074900
  case CURLE_SSL_CLIENTCERT:
#endif
    return DBX_HTTP_TLS;
  case CURLE_OPERATION_TIMEDOUT:
    return DBX_HTTP_TIMEOUT;
  case CURLE_COULDNT_CONNECT:
    return DBX_HTTP_CONNECT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return DBX_HTTP_RESOLVE;
  case CURLE_FILESIZE_EXCEEDED:
    return DBX_HTTP_TOO_LARGE;
  case CURLE_SEND_ERROR:
    return DBX_HTTP_SEND;
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
    return DBX_HTTP_RECV;
  case CURLE_URL_MALFORMAT:
    return DBX_HTTP_INVALID_URL;
  case CURLE_OUT_OF_MEMORY:
    return DBX_HTTP_NOMEM;
  default:
    return DBX_HTTP_NETWORK;
  }
}

static int valid_method(const char *m, size_t n) {
  size_t i;
  if (n == 0 || n > 32) return 0;
  for (i = 0; i < n; i++)
    if (m[i] < 'A' || m[i] > 'Z') return 0;
  return 1;
}

static int valid_url(const char *u, size_t n) {
  if (memchr(u, '\0', n) != NULL) return 0;
  return (n > 7 && dbx_http_ieq(u, 7, "http://")) || (n > 8 && dbx_http_ieq(u, 8, "https://"));
}

static int method_is(const char *m, size_t n, const char *want) {
  return n == strlen(want) && memcmp(m, want, n) == 0;
}

/* Moves src's entries (copies) onto the end of *dst. */
static int append_all(struct curl_slist **dst, const struct curl_slist *src) {
  for (; src != NULL; src = src->next)
    if (append_line(dst, src->data) != 0) return -1;
  return 0;
}

#define SET(opt, val)                                               \
  do {                                                              \
    if (rc == CURLE_OK) rc = curl_easy_setopt(c, (opt), (val));     \
  } while (0)

static CURLcode set_method(dbx_http *h, const dbx_http_req *r, char *method) {
  CURL *c = h->curl;
  CURLcode rc = CURLE_OK;
  size_t n = strlen(method);
  if (method_is(method, n, "HEAD")) {
    h->nobody = 1;
    SET(CURLOPT_NOBODY, 1L);
    return rc;
  }
  if (r->body != NULL) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    SET(CURLOPT_POSTFIELDS, r->body);
  } else if (method_is(method, n, "POST")) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    SET(CURLOPT_POSTFIELDS, "");
  }
  if (!method_is(method, n, "POST") && !(r->body == NULL && method_is(method, n, "GET")))
    SET(CURLOPT_CUSTOMREQUEST, method);
  return rc;
}

static CURLcode set_options(dbx_http *h, const dbx_http_req *r, char *url, char *method) {
  CURL *c = h->curl;
  CURLcode rc = CURLE_OK;
  long connect_ms = r->timeout_ms < DBX_HTTP_MAX_CONNECT_MS ? r->timeout_ms : DBX_HTTP_MAX_CONNECT_MS;
  SET(CURLOPT_ERRORBUFFER, h->errbuf);
  SET(CURLOPT_URL, url);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
  SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, h);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, h);
  SET(CURLOPT_SSL_VERIFYPEER, r->skip_verify ? 0L : 1L);
  SET(CURLOPT_SSL_VERIFYHOST, r->skip_verify ? 0L : 2L);
  if (r->ca_file) SET(CURLOPT_CAINFO, r->ca_file);
  if (r->no_proxy) SET(CURLOPT_NOPROXY, "*");
  SET(CURLOPT_HTTPHEADER, h->req_headers);
  if (h->res_list) SET(CURLOPT_RESOLVE, h->res_list);
  if (rc == CURLE_OK) rc = set_method(h, r, method);
  return rc;
}

static dbx_http_code fail(dbx_http *h, dbx_http_code code, const char *msg) {
  snprintf(h->msg, sizeof h->msg, "%s", msg);
  return code;
}

dbx_http_code dbx_http_perform(dbx_http *h, const dbx_http_req *r, dbx_http_resp *out) {
  char method[33];
  char *url;
  CURLcode rc;
  dbx_http_code code;
  long status = 0, connects = 1;
  curl_off_t total_us = 0;

  if (r->method != NULL && !valid_method(r->method, r->method_len))
    return fail(h, DBX_HTTP_INVALID_HEADER, "invalid method (expected uppercase letters A-Z)");
  if (r->url == NULL || !valid_url(r->url, r->url_len))
    return fail(h, DBX_HTTP_INVALID_URL, "url must start with http:// or https://");
  if (r->method) {
    memcpy(method, r->method, r->method_len);
    method[r->method_len] = '\0';
  } else {
    memcpy(method, "GET", 4);
  }

  /* libcurl wants a NUL-terminated URL and keeps the pointer: the handle owns the copy. */
  h->url.len = 0;
  if (dbx_buf_append(&h->url, r->url, r->url_len) != 0 || dbx_buf_append(&h->url, "", 1) != 0)
    return fail(h, DBX_HTTP_NOMEM, "out of memory");
  url = h->url.data;

  /* Expect: 100-continue costs a round trip (or a 1 s stall) for every POST. */
  if (append_line(&h->req_headers, "Expect:") != 0 ||
      append_all(&h->res_list, h->res_owed) != 0 || append_all(&h->res_list, h->res_add) != 0)
    return fail(h, DBX_HTTP_NOMEM, "out of memory");

  h->max_body = r->max_body;
  h->errbuf[0] = '\0';
  h->msg[0] = '\0';
  rc = set_options(h, r, url, method);
  if (rc != CURLE_OK) {
    ERR_clear_error();
    snprintf(h->msg, sizeof h->msg, "%s", curl_easy_strerror(rc));
    return classify(rc) == DBX_HTTP_NOMEM ? DBX_HTTP_NOMEM : DBX_HTTP_NETWORK;
  }

  rc = curl_easy_perform(h->curl);
  ERR_clear_error();

  /* libcurl has loaded the resolve list into its DNS cache by now; what this
   * request added must be taken out again by the next one. */
  curl_slist_free_all(h->res_owed);
  h->res_owed = h->res_undo;
  h->res_undo = NULL;

  if (rc != CURLE_OK) {
    if (h->cb_err != DBX_HTTP_OK) return h->cb_err;   /* msg written by the callback */
    code = classify(rc);
    snprintf(h->msg, sizeof h->msg, "%s", h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
    return code;
  }

  curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
  /* libcurl reads a status code leniently ("HTTP/2 20p" gives 20); ours must be exactly three
   * digits, and both must agree on the final status line. */
  if (status < 100 || status > 999 || status != h->hdrs.status)
    return fail(h, DBX_HTTP_NETWORK, "the server sent a malformed HTTP status line");
  curl_easy_getinfo(h->curl, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(h->curl, CURLINFO_TOTAL_TIME_T, &total_us);
  if (dbx_headers_merge(&h->hdrs, &h->merged) != 0)
    return fail(h, DBX_HTTP_NOMEM, "out of memory");

  out->status = status;
  out->reused = connects == 0;
  out->total_time = (double)total_us / 1e6;
  out->body = h->body.data ? h->body.data : "";
  out->body_len = h->body.len;
  out->headers = h->merged.data;
  out->headers_len = h->merged.len;
  return DBX_HTTP_OK;
}
