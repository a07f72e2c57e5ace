/* A libcurl easy handle that remembers what its options are set to, so that a request sets
 * only what differs from the previous one on the same handle: the constant options once, the
 * URL, method/body, timeouts and no_proxy when they change, the CA bundle (a full reset) only
 * when it changes, and the request header list only when the headers are not the previous
 * request's (compared line by line; the list is kept otherwise). No Lua here.
 *
 * Used by the sequential client (dbx_http.c: one dbx_easy) and the concurrent one
 * (dbx_multi.c: one per request slot). A dbx_easy owns its CURL handle, its transfer state
 * (dbx_xfer), its header list and the copies of the CA path and URL; dbx_easy_free releases
 * all of it. A request on it is:
 *   dbx_hlist_begin(&e->hdrs); dbx_hlist_add(...) for each header;
 *   dbx_easy_prepare(e, req, method); perform; dbx_xfer_done(&e->x, ...); dbx_easy_end(e). */
#ifndef DBX_EASY_H
#define DBX_EASY_H

#include <curl/curl.h>

#include "dbx_buf.h"
#include "dbx_http.h"
#include "dbx_xfer.h"

/* The request header list, rebuilt only when the headers change. */
typedef struct dbx_hlist {
  struct curl_slist *list;     /* what CURLOPT_HTTPHEADER points at: the lines, "Expect:" last */
  struct curl_slist *expect;   /* list's last node */
  struct curl_slist *cmp;      /* while adding: the next line of list to compare */
  struct curl_slist *fresh;    /* once a line differed: this request's own lines */
  size_t             same;     /* lines of list matched before the first difference */
  int                differs;
  dbx_buf            line;     /* scratch for building "Name: value" */
} dbx_hlist;

void dbx_hlist_init(dbx_hlist *l);
void dbx_hlist_free(dbx_hlist *l);
void dbx_hlist_begin(dbx_hlist *l);
/* A header of the coming request, checked (dbx_http_check_header; msg written on failure).
 * DBX_HTTP_OK, DBX_HTTP_INVALID_HEADER or DBX_HTTP_NOMEM. */
dbx_http_code dbx_hlist_add(dbx_hlist *l, const char *name, size_t nlen, const char *value, size_t vlen,
                            char *msg, size_t msgsz);
/* The same from a line built by dbx_http_header_line (len without the NUL). */
dbx_http_code dbx_hlist_add_line(dbx_hlist *l, const char *line, size_t len);
/* After the last add: 1 when the list was replaced, 0 when the previous one still holds,
 * -1 on ENOMEM (the previous list is kept). */
int dbx_hlist_finish(dbx_hlist *l);

typedef struct dbx_easy {
  CURL     *curl;
  dbx_xfer  x;
  dbx_hlist hdrs;
  long      http_version;   /* CURL_HTTP_VERSION_* for every request on this handle */
  int       pipewait;       /* in a multi: wait for a connection that can multiplex (h2) */
  /* what the handle's options are set to; `ready` 0 forces a full reset next time */
  int       ready;
  int       pristine;       /* no option set since curl_easy_init: no reset needed */
  char     *ca_file;        /* copy of CURLOPT_CAINFO's value; NULL: libcurl's default bundle */
  int       skip_verify, no_proxy, hdrs_set, nobody, body_set;
  long      timeout_ms;
  char      custom[33];     /* CURLOPT_CUSTOMREQUEST, "" when unset */
  dbx_buf   url;            /* CURLOPT_URL's value, NUL included */
} dbx_easy;

/* 0, or -1 when libcurl cannot create a handle (e is then freed). */
int dbx_easy_init(dbx_easy *e, long http_version);
void dbx_easy_free(dbx_easy *e);
/* Sets the options for r (checked by dbx_http_check_request; method as it filled it in) and
 * finishes the header list. DBX_HTTP_OK, or DBX_HTTP_NOMEM / DBX_HTTP_NETWORK with e->x.msg
 * written. r->body must stay valid until dbx_easy_end. */
dbx_http_code dbx_easy_prepare(dbx_easy *e, const dbx_http_req *r, const char *method);
/* After the transfer: the handle stops pointing at the caller's body. */
void dbx_easy_end(dbx_easy *e);

#endif
