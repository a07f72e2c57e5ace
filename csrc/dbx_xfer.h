/* What every libcurl transfer of ours shares, whichever client runs it (the sequential one in
 * dbx_http.c, the concurrent one in dbx_multi.c). No Lua here.
 *
 *   dbx_xfer   one transfer's receiving side: the body and header buffers libcurl's callbacks
 *              fill, the limits they enforce, the error buffer, and the reading of a finished
 *              transfer into a dbx_http_resp (dbx_xfer_done);
 *   checks     the request line and header checks made before anything is sent, and the one
 *              mapping of CURLcode onto dbx_http_code.
 *
 * A dbx_xfer is embedded in its owner (dbx_easy) and released with dbx_xfer_free. */
#ifndef DBX_XFER_H
#define DBX_XFER_H

#include <curl/curl.h>

#include "dbx_buf.h"
#include "dbx_headers.h"
#include "dbx_http.h"

#define DBX_XFER_MSG (CURL_ERROR_SIZE + 64)

typedef struct dbx_xfer {
  dbx_buf       body;
  dbx_headers   hdrs;
  dbx_buf       merged;            /* one record per header name, after the transfer */
  size_t        max_body;
  int           nobody;            /* a HEAD request: no body is read */
  dbx_http_code cb_err;            /* why a callback aborted the transfer */
  char          errbuf[CURL_ERROR_SIZE];
  char          msg[DBX_XFER_MSG];
} dbx_xfer;

void dbx_xfer_init(dbx_xfer *x);
void dbx_xfer_free(dbx_xfer *x);
/* Forgets the previous transfer; buffers that grew past DBX_HTTP_KEEP_BUFFER are freed. */
void dbx_xfer_clear(dbx_xfer *x);
/* The options that never change for a handle of ours: callbacks into x, the error buffer,
 * no signals, no redirects, http/https only, TCP keep-alive, and the HTTP version
 * (a CURL_HTTP_VERSION_* value). */
CURLcode dbx_xfer_setup(dbx_xfer *x, CURL *c, long http_version);
/* The outcome of a finished transfer (rc from curl_easy_perform or CURLMSG_DONE). On
 * DBX_HTTP_OK out points into x's buffers; otherwise x->msg says why. The caller clears
 * OpenSSL's error queue after libcurl's calls (ERR_clear_error: nginx shares the thread's queue). */
dbx_http_code dbx_xfer_done(dbx_xfer *x, CURL *c, CURLcode rc, dbx_http_resp *out);
/* Takes the body and merged header buffers out of x (the caller frees them with
 * dbx_buf_free); x starts empty for its next transfer. */
void dbx_xfer_take(dbx_xfer *x, dbx_buf *body, dbx_buf *merged);

/* ---- checks before sending ---- */

/* Method and URL of r: DBX_HTTP_OK and the NUL-terminated method in method[33] ("GET" when
 * r->method is NULL), or INVALID_HEADER / INVALID_URL with msg written. */
dbx_http_code dbx_http_check_request(const dbx_http_req *r, char method[33], char *msg, size_t msgsz);
/* A request header: DBX_HTTP_OK, or DBX_HTTP_INVALID_HEADER with msg saying why (naming at
 * most 64 bytes of the name, never the value). */
dbx_http_code dbx_http_check_header(const char *name, size_t nlen, const char *value, size_t vlen,
                                    char *msg, size_t msgsz);
/* libcurl's line for a checked header: "Name: value", or "Name;" when the value is empty
 * ("Name:" would remove the header), NUL-terminated, written over line. 0 or -1 (ENOMEM). */
int dbx_http_header_line(dbx_buf *line, const char *name, size_t nlen, const char *value, size_t vlen);
/* Content-Length is never sent from the caller: the body always goes with its exact length. */
int dbx_http_header_skipped(const char *name, size_t nlen);

/* A resolve entry "[+]host:port:address[,address]" (curl --resolve): 0 and its "host:port" part
 * (*key, *klen), or -1 when malformed (CR, LF or NUL anywhere, an empty host, a port that is not
 * digits, no address). */
int dbx_http_resolve_key(const char *entry, size_t len, const char **key, size_t *klen);

dbx_http_code dbx_http_classify(CURLcode rc);

#endif
