/* Concurrent requests over one libcurl multi handle. No Lua here.
 *
 * dbx_multi_run sends a list of requests with at most `concurrency` in flight: HTTP/2 by ALPN
 * where the server offers it, the transfers multiplexed on one connection (CURLPIPE_MULTIPLEX,
 * CURLOPT_PIPEWAIT), a keep-alive pool of HTTP/1.1 connections otherwise. It waits in
 * curl_multi_poll (no busy waiting) and returns when every request has finished, or when the
 * run's timeout has passed (the unfinished ones then fail with DBX_HTTP_TIMEOUT). Each request
 * gets the sequential client's checks and limits (dbx_xfer.c) on a slot that, like that client,
 * sets only the options that changed since the slot's previous request (dbx_easy.c). Results
 * are gathered in C; nothing calls back into the caller during the run.
 *
 * Ownership: the dbx_multi owns its multi handle, its slots (easy handles, kept across runs
 * with their connections) and the resolve lists. The caller owns the dbx_mitem array; after a
 * run each item owns its response buffers and message, released by dbx_mitem_free. */
#ifndef DBX_MULTI_H
#define DBX_MULTI_H

#include <stddef.h>

#include "dbx_buf.h"
#include "dbx_http.h"

#define DBX_MULTI_MAX_CONCURRENCY 256

typedef struct dbx_multi dbx_multi;

typedef struct dbx_mitem {
  /* in: the request; its pointers must stay valid during the run */
  dbx_http_req  req;
  const char   *lines;       /* its checked header lines, each NUL-terminated (dbx_http_header_line) */
  size_t        lines_len;
  /* in: DBX_HTTP_OK to send it; anything else means it already failed (msg set): not sent.
   * out: the outcome */
  dbx_http_code code;
  /* out, on DBX_HTTP_OK */
  long          status;
  int           reused;
  double        total_time;
  const char   *http_version;
  size_t        headers_count;
  dbx_buf       body;        /* owned by the item */
  dbx_buf       headers;     /* merged packed records (dbx_hdr_iter); owned by the item */
  /* out, otherwise */
  char         *msg;         /* owned by the item; NULL means "out of memory" */
} dbx_mitem;

void dbx_mitem_init(dbx_mitem *it);
void dbx_mitem_free(dbx_mitem *it);
/* msg copied (printf-style); the item fails with code. */
void dbx_mitem_fail(dbx_mitem *it, dbx_http_code code, const char *fmt, ...);
/* The response of a DBX_HTTP_OK item, pointing into it. */
void dbx_mitem_response(const dbx_mitem *it, dbx_http_resp *out);

dbx_multi *dbx_multi_new(void);
void dbx_multi_free(dbx_multi *m);
/* "host:port:address" entries for the next run only (as dbx_http_add_resolve): 0, or -1 when
 * malformed (nothing added) or ENOMEM. */
int dbx_multi_add_resolve(dbx_multi *m, const char *entry, size_t len);
/* Drops the entries added for the next run (a run that will not happen). */
void dbx_multi_forget_resolve(dbx_multi *m);
/* Runs items[0..n). concurrency: 1 .. DBX_MULTI_MAX_CONCURRENCY; timeout_ms: the whole run,
 * 0 for none. DBX_HTTP_OK (each item says how it went), or DBX_HTTP_NOMEM when the run could
 * not start (no item was sent). */
dbx_http_code dbx_multi_run(dbx_multi *m, dbx_mitem *items, size_t n, int concurrency, long timeout_ms);

#endif
