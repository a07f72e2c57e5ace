/* The response header block parser: no curl, no Lua, fuzzed on its own
 * (fuzz_headers). A dbx_headers owns its record buffer and dbx_headers_free
 * releases it; dbx_headers_merge writes into a dbx_buf the caller owns. Also the
 * two bits of RFC 9110 grammar the client shares with it. */
#ifndef DBX_HEADERS_H
#define DBX_HEADERS_H

#include <stddef.h>

#include "dbx_buf.h"

/* Limits on one response's header block; the peer is not trusted. */
#define DBX_HTTP_MAX_HEADER_LINES     1000
#define DBX_HTTP_MAX_HEADER_BYTES     ((size_t)256 * 1024)

typedef enum dbx_hdr_status {
  DBX_HDR_OK = 0,
  DBX_HDR_TOO_LARGE,        /* past one of the limits above */
  DBX_HDR_NOMEM
} dbx_hdr_status;

typedef struct dbx_headers {
  dbx_buf   recs;           /* packed records: u32 nlen, u32 vlen, name, value */
  size_t    count;
  size_t    bytes;          /* raw bytes of the current header block */
  size_t    last;           /* offset of the newest record, for obs-fold */
  long      status;         /* from the newest status line, 0 before one */
  long long content_length; /* -1 when absent or not a plain decimal */
} dbx_headers;

void dbx_headers_init(dbx_headers *h);
void dbx_headers_free(dbx_headers *h);
void dbx_headers_reset(dbx_headers *h, size_t keep_max);
/* Feeds one raw line as libcurl delivers it (line ending optional). A status line
 * ("HTTP/...") starts a new block, dropping earlier headers (1xx, proxy CONNECT).
 * Lines without a colon or with a non-token name are ignored; names are lower-cased;
 * values are trimmed, with CR, LF and NUL inside them replaced by SP (RFC 9110 5.5);
 * obs-fold continuation lines are appended with one space. */
dbx_hdr_status dbx_headers_feed(dbx_headers *h, const char *line, size_t len);
/* Writes one record per distinct name into out (same packed format), the non-empty
 * values of repeated names joined with ", " in arrival order. 0 or -1 (ENOMEM). */
int dbx_headers_merge(const dbx_headers *h, dbx_buf *out);

typedef struct dbx_hdr_iter {
  const char *p;
  const char *end;
} dbx_hdr_iter;

void dbx_hdr_iter_init(dbx_hdr_iter *it, const char *recs, size_t len);
int dbx_hdr_next(dbx_hdr_iter *it, const char **name, size_t *nlen,
                 const char **val, size_t *vlen);

/* RFC 9110 token (header names, methods are stricter: see dbx_http_perform). */
int dbx_http_is_token(const char *s, size_t n);
/* a[0..alen) equals the NUL-terminated b, ASCII letters compared case-insensitively. */
int dbx_http_ieq(const char *a, size_t alen, const char *b);

#endif
