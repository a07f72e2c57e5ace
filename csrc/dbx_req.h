/* Request-head parser for the loopback listener (dbx_listen). No sockets, no
 * allocation, no Lua; fuzzed on its own (fuzz_reqline). A dbx_req only points into
 * the caller's buffer. */
#ifndef DBX_REQ_H
#define DBX_REQ_H

#include <stddef.h>

typedef enum dbx_req_status {
  DBX_REQ_BAD  = -1,   /* *why says what; a longer input cannot make it good */
  DBX_REQ_MORE = 0,    /* no complete head yet */
  DBX_REQ_DONE = 1     /* req is filled in */
} dbx_req_status;

/* Pointers into the parsed buffer. */
typedef struct dbx_req {
  const char *method;   size_t method_len;   /* an RFC 9110 token: any method, policy is the caller's */
  const char *target;   size_t target_len;   /* origin-form: starts with '/', bytes 0x21-0x7E */
  const char *path;     size_t path_len;     /* target up to the first '?' */
  const char *query;    size_t query_len;    /* after the first '?'; "" (len 0) when there is none */
  int         has_query;                     /* the target contains '?' */
  int         minor;                         /* x in HTTP/1.x */
  size_t      head_len;                      /* bytes up to and including the empty line */
} dbx_req;

/* Parses buf[0..n), the bytes received so far. Leading empty lines are skipped;
 * lines end in CRLF or a bare LF; the request line is METHOD SP target SP HTTP/1.x
 * with single spaces; header lines must be `token ":" value` with no control bytes
 * but HTAB in the value (headers are checked, then ignored). The query must be
 * well-formed percent-encoding (every '%' followed by two hex digits), so that
 * decoding it cannot fail. Every decision is taken on complete lines only: a
 * prefix of an input is never BAD unless the input is, and never DONE unless the
 * input is DONE with the same head. */
dbx_req_status dbx_req_parse(const char *buf, size_t n, dbx_req *req, const char **why);

#endif
