/* One transfer's receiving side (the callbacks, their limits, reading the outcome) and the
 * checks every request passes before it is sent. See dbx_xfer.h. */
#include "dbx_xfer.h"

#include <stdio.h>
#include <string.h>


void dbx_xfer_init(dbx_xfer *x) {
  dbx_buf_init(&x->body);
  dbx_buf_init(&x->merged);
  dbx_headers_init(&x->hdrs);
  x->max_body = DBX_HTTP_DEFAULT_MAX_BODY;
  x->nobody = 0;
  x->cb_err = DBX_HTTP_OK;
  x->errbuf[0] = '\0';
  x->msg[0] = '\0';
}

void dbx_xfer_free(dbx_xfer *x) {
  dbx_buf_free(&x->body);
  dbx_buf_free(&x->merged);
  dbx_headers_free(&x->hdrs);
}

void dbx_xfer_clear(dbx_xfer *x) {
  dbx_buf_reset(&x->body, DBX_HTTP_KEEP_BUFFER);
  dbx_buf_reset(&x->merged, DBX_HTTP_KEEP_BUFFER);
  dbx_headers_reset(&x->hdrs, DBX_HTTP_KEEP_BUFFER);
  x->cb_err = DBX_HTTP_OK;
  x->errbuf[0] = '\0';
  x->msg[0] = '\0';
}

void dbx_xfer_take(dbx_xfer *x, dbx_buf *body, dbx_buf *merged) {
  *body = x->body;
  *merged = x->merged;
  dbx_buf_init(&x->body);
  dbx_buf_init(&x->merged);
}

/* ---- transfer callbacks: plain C only, never Lua ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  dbx_xfer *x = ud;
  size_t len = size * n;
  if (len > x->max_body - x->body.len) {
    x->cb_err = DBX_HTTP_TOO_LARGE;
    snprintf(x->msg, sizeof x->msg, "response body exceeds %zu bytes", x->max_body);
    return 0;
  }
  if (dbx_buf_append(&x->body, p, len) != 0) {
    x->cb_err = DBX_HTTP_NOMEM;
    snprintf(x->msg, sizeof x->msg, "out of memory");
    return 0;
  }
  return len;
}

static int has_no_body(long status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  dbx_xfer *x = ud;
  size_t len = size * n;
  long long cl;
  dbx_hdr_status e = dbx_headers_feed(&x->hdrs, p, len);
  if (e == DBX_HDR_TOO_LARGE) {
    x->cb_err = DBX_HTTP_TOO_LARGE;
    snprintf(x->msg, sizeof x->msg, "response headers exceed %zu bytes or %d lines",
             (size_t)DBX_HTTP_MAX_HEADER_BYTES, DBX_HTTP_MAX_HEADER_LINES);
    return 0;
  }
  if (e != DBX_HDR_OK) {
    x->cb_err = DBX_HTTP_NOMEM;
    snprintf(x->msg, sizeof x->msg, "out of memory");
    return 0;
  }
  cl = x->hdrs.content_length;
  if (cl >= 0 && !x->nobody && !has_no_body(x->hdrs.status)) {
    if ((unsigned long long)cl > (unsigned long long)x->max_body) {
      x->cb_err = DBX_HTTP_TOO_LARGE;
      snprintf(x->msg, sizeof x->msg, "response body exceeds %zu bytes", x->max_body);
      return 0;
    }
    /* a size hint only: failure here is caught by on_body if it matters */
    if ((size_t)cl > x->body.len) (void)dbx_buf_reserve(&x->body, (size_t)cl - x->body.len);
  }
  return len;
}

#define SET(opt, val)                                               \
  do {                                                              \
    if (rc == CURLE_OK) rc = curl_easy_setopt(c, (opt), (val));     \
  } while (0)

CURLcode dbx_xfer_setup(dbx_xfer *x, CURL *c, long http_version) {
  CURLcode rc = CURLE_OK;
  SET(CURLOPT_ERRORBUFFER, x->errbuf);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, x);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, x);
  SET(CURLOPT_HTTP_VERSION, http_version);
  return rc;
}

#undef SET

/* ---- the outcome ---- */

static dbx_http_code fail(dbx_xfer *x, dbx_http_code code, const char *msg) {
  snprintf(x->msg, sizeof x->msg, "%s", msg);
  return code;
}

static const char *version_name(long v) {
  switch (v) {
  case CURL_HTTP_VERSION_1_0: return "1.0";
  case CURL_HTTP_VERSION_2_0: return "2";
#if LIBCURL_VERSION_NUM >= 0x074200
  case CURL_HTTP_VERSION_3: return "3";
#endif
  default: return "1.1";
  }
}

dbx_http_code dbx_xfer_done(dbx_xfer *x, CURL *c, CURLcode rc, dbx_http_resp *out) {
  long status = 0, connects = 1, version = 0;
  curl_off_t total_us = 0;
  if (rc != CURLE_OK) {
    if (x->cb_err != DBX_HTTP_OK) return x->cb_err;   /* msg written by the callback */
    snprintf(x->msg, sizeof x->msg, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    return dbx_http_classify(rc);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  /* libcurl reads a status code leniently ("HTTP/2 20p" gives 20); ours must be exactly three
   * digits, and both must agree on the final status line. */
  if (status < 100 || status > 999 || status != x->hdrs.status)
    return fail(x, DBX_HTTP_NETWORK, "the server sent a malformed HTTP status line");
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &total_us);
  curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &version);
  if (dbx_headers_merge(&x->hdrs, &x->merged) != 0) return fail(x, DBX_HTTP_NOMEM, "out of memory");

  out->status = status;
  out->reused = connects == 0;
  out->total_time = (double)total_us / 1e6;
  out->http_version = version_name(version);
  out->body = x->body.data ? x->body.data : "";
  out->body_len = x->body.len;
  out->headers = x->merged.data;
  out->headers_len = x->merged.len;
  out->headers_count = x->hdrs.count;
  return DBX_HTTP_OK;
}

/* ---- checks before sending ---- */

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

dbx_http_code dbx_http_check_request(const dbx_http_req *r, char method[33], char *msg, size_t msgsz) {
  if (r->method != NULL && !valid_method(r->method, r->method_len)) {
    snprintf(msg, msgsz, "invalid method (expected uppercase letters A-Z)");
    return DBX_HTTP_INVALID_HEADER;
  }
  if (r->url == NULL || !valid_url(r->url, r->url_len)) {
    snprintf(msg, msgsz, "url must start with http:// or https://");
    return DBX_HTTP_INVALID_URL;
  }
  if (r->method) {
    memcpy(method, r->method, r->method_len);
    method[r->method_len] = '\0';
  } else {
    memcpy(method, "GET", 4);
  }
  return DBX_HTTP_OK;
}

static int name_for_msg(size_t nlen) {
  return (int)(nlen > 64 ? 64 : nlen);
}

dbx_http_code dbx_http_check_header(const char *name, size_t nlen, const char *value, size_t vlen,
                                    char *msg, size_t msgsz) {
  size_t i;
  if (!dbx_http_is_token(name, nlen)) {
    snprintf(msg, msgsz, "invalid header name");
    return DBX_HTTP_INVALID_HEADER;
  }
  for (i = 0; i < vlen; i++) {
    if ((unsigned char)value[i] <= '\r' && (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')) {
      snprintf(msg, msgsz, "header \"%.*s\" contains %s", name_for_msg(nlen), name,
               value[i] == '\0' ? "NUL" : "CR or LF");
      return DBX_HTTP_INVALID_HEADER;
    }
  }
  return DBX_HTTP_OK;
}

int dbx_http_header_skipped(const char *name, size_t nlen) {
  return nlen == 14 && dbx_http_ieq(name, nlen, "content-length");
}

int dbx_http_header_line(dbx_buf *line, const char *name, size_t nlen, const char *value, size_t vlen) {
  line->len = 0;
  if (dbx_buf_append(line, name, nlen) != 0 ||
      dbx_buf_append(line, vlen ? ": " : ";", vlen ? 2 : 1) != 0 ||
      dbx_buf_append(line, value, vlen) != 0 ||
      dbx_buf_append(line, "", 1) != 0)
    return -1;
  return 0;
}

int dbx_http_resolve_key(const char *entry, size_t len, const char **key, size_t *klen) {
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
  *key = s;
  *klen = (size_t)(c2 - s);
  return 0;
}

dbx_http_code dbx_http_classify(CURLcode rc) {
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
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return DBX_HTTP_RECV;
  case CURLE_URL_MALFORMAT:
    return DBX_HTTP_INVALID_URL;
  case CURLE_OUT_OF_MEMORY:
    return DBX_HTTP_NOMEM;
  default:
    return DBX_HTTP_NETWORK;
  }
}
