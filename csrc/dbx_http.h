/* One HTTP exchange over a libcurl easy handle. No Lua here: a dbx_http owns
 * its CURL handle, the request's curl_slists and the response buffers, and
 * dbx_http_free releases all of it. Callbacks only copy bytes into those
 * buffers; results are read after dbx_http_perform returns. The response's
 * header block is parsed by dbx_headers (and read with its dbx_hdr_iter). */
#ifndef DBX_HTTP_H
#define DBX_HTTP_H

#include <stddef.h>

#include "dbx_buf.h"
#include "dbx_headers.h"

#define DBX_HTTP_DEFAULT_TIMEOUT_MS   60000L
#define DBX_HTTP_MAX_CONNECT_MS       30000L
#define DBX_HTTP_DEFAULT_MAX_BODY     ((size_t)16 * 1024 * 1024)
/* Buffers that grew past this are freed after each request. */
#define DBX_HTTP_KEEP_BUFFER          ((size_t)1024 * 1024)

/* Failure classes; the string is what Lua sees as the error code. */
#define DBX_HTTP_CODES(X)                          \
  X(DBX_HTTP_OK,             "ok")                 \
  X(DBX_HTTP_TLS,            "tls")                \
  X(DBX_HTTP_TIMEOUT,        "timeout")            \
  X(DBX_HTTP_CONNECT,        "connect")            \
  X(DBX_HTTP_RESOLVE,        "resolve")            \
  X(DBX_HTTP_TOO_LARGE,      "too_large")          \
  X(DBX_HTTP_SEND,           "send")               \
  X(DBX_HTTP_RECV,           "recv")               \
  X(DBX_HTTP_INVALID_URL,    "invalid_url")        \
  X(DBX_HTTP_INVALID_HEADER, "invalid_header")     \
  X(DBX_HTTP_NETWORK,        "network")            \
  X(DBX_HTTP_NOMEM,          "nomem")

#define DBX_HTTP_AS_ENUM(id, name) id,
typedef enum dbx_http_code { DBX_HTTP_CODES(DBX_HTTP_AS_ENUM) DBX_HTTP_NCODES } dbx_http_code;
#undef DBX_HTTP_AS_ENUM

const char *dbx_http_code_name(dbx_http_code c);

/* ---- client ---- */

typedef struct dbx_http dbx_http;

typedef struct dbx_http_req {
  const char *method;       /* NULL: GET. Uppercase A-Z only, not NUL-terminated.
                             * HEAD is sent as a real HEAD (no body read, body ignored). */
  size_t      method_len;
  const char *url;          /* http:// or https:// */
  size_t      url_len;
  const char *body;         /* NULL: no body. Must stay valid during perform. */
  size_t      body_len;
  long        timeout_ms;   /* the whole exchange; connecting gets at most DBX_HTTP_MAX_CONNECT_MS of it */
  size_t      max_body;
  const char *ca_file;      /* NUL-terminated or NULL */
  int         skip_verify;
  int         no_proxy;     /* connect directly whatever http_proxy / HTTPS_PROXY say */
} dbx_http_req;

typedef struct dbx_http_resp {
  long        status;
  int         reused;       /* the request went over an already open connection */
  double      total_time;   /* seconds */
  const char *http_version; /* "1.0", "1.1", "2" (static strings) */
  const char *body;
  size_t      body_len;
  const char *headers;      /* merged packed records, read with dbx_hdr_iter */
  size_t      headers_len;
  size_t      headers_count;/* header lines received: at least the number of records */
} dbx_http_resp;

dbx_http *dbx_http_new(void);
void dbx_http_free(dbx_http *h);

/* A request is begin, add_header / add_resolve as needed, perform, end.
 * Everything a request allocates belongs to the handle until the next begin/end. */
void dbx_http_begin(dbx_http *h);
/* DBX_HTTP_OK, DBX_HTTP_INVALID_HEADER (message says why, never echoing the value)
 * or DBX_HTTP_NOMEM. */
dbx_http_code dbx_http_add_header(dbx_http *h, const char *name, size_t nlen,
                                  const char *value, size_t vlen);
/* "host:port:address[,address]" as in curl --resolve. The entry applies to this
 * request only: the next perform on the handle removes it from the DNS cache.
 * 0, or -1 when malformed (nothing added) or ENOMEM. */
int dbx_http_add_resolve(dbx_http *h, const char *entry, size_t len);
/* On DBX_HTTP_OK fills resp, whose pointers stay valid until dbx_http_end/begin.
 * Otherwise dbx_http_message explains the failure. */
dbx_http_code dbx_http_perform(dbx_http *h, const dbx_http_req *req, dbx_http_resp *resp);
const char *dbx_http_message(const dbx_http *h);
/* Drops per-request state and shrinks buffers that grew past DBX_HTTP_KEEP_BUFFER;
 * open connections stay cached for the next request. */
void dbx_http_end(dbx_http *h);

#endif
