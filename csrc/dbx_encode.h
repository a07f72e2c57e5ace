/* Encodings used by OAuth flows: base64 / base64url (RFC 4648), percent-encoding
 * (RFC 3986 and application/x-www-form-urlencoded), query-string splitting.
 * Pure functions over caller-owned memory: no allocation, no Lua, no globals.
 * Every decoder treats its input as hostile. */
#ifndef DBX_ENCODE_H
#define DBX_ENCODE_H

#include <stddef.h>

/* ---- base64 ---- */

/* Encoded length of n bytes (url: no padding). 0 with *ok = 0 on size_t overflow. */
size_t dbx_b64_encoded_len(size_t n, int url, int *ok);
/* Writes exactly dbx_b64_encoded_len(n, url) bytes; url selects the base64url
 * alphabet without padding, otherwise standard alphabet with '=' padding. */
size_t dbx_b64_encode(char *dst, const unsigned char *src, size_t n, int url);

/* Upper bound of the decoded size of an n-character input. */
size_t dbx_b64_decoded_max(size_t n);
/* Standard: length must be a multiple of 4, '=' only as 1-2 trailing pad chars.
 * url: padding optional, but if present it must be correct. Unused low bits of
 * the last symbol are ignored (as Go's and Python's decoders do).
 * Returns 0 and sets *outlen, or -1 on any invalid input. dst may equal src. */
int dbx_b64_decode(unsigned char *dst, const char *src, size_t n, int url, size_t *outlen);

/* ---- percent-encoding ---- */

/* Everything but A-Z a-z 0-9 - . _ ~ becomes %XX (uppercase hex); with form,
 * space becomes '+'. Returns the exact output length (0 with *ok = 0 on overflow). */
size_t dbx_pct_encoded_len(const unsigned char *src, size_t n, int form, int *ok);
size_t dbx_pct_encode(char *dst, const unsigned char *src, size_t n, int form);

/* Decodes %XX (either case); with plus_is_space, '+' becomes ' '. Other bytes pass
 * through unchanged. dst needs n bytes and may equal src. 0 or -1 on a '%' not
 * followed by two hex digits. */
int dbx_pct_decode(char *dst, const char *src, size_t n, int plus_is_space, size_t *outlen);

/* ---- query strings ---- */

typedef struct dbx_query_iter {
  const char *p;
  const char *end;
} dbx_query_iter;

void dbx_query_init(dbx_query_iter *it, const char *s, size_t n);
/* Next non-empty '&'-separated pair, still encoded. A pair without '=' yields an
 * empty value. Returns 1 for a pair, 0 at the end. */
int dbx_query_next(dbx_query_iter *it, const char **key, size_t *klen,
                   const char **val, size_t *vlen);

#endif
