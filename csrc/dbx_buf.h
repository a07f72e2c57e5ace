/* Growable byte buffer. No Lua here: the owner of a dbx_buf is whatever struct
 * embeds it, and that owner calls dbx_buf_free exactly once. */
#ifndef DBX_BUF_H
#define DBX_BUF_H

#include <stddef.h>

typedef struct dbx_buf {
  char  *data;   /* NULL until the first append */
  size_t len;
  size_t cap;
} dbx_buf;

void dbx_buf_init(dbx_buf *b);
void dbx_buf_free(dbx_buf *b);

/* Make room for `extra` more bytes. 0 on success, -1 on overflow or ENOMEM
 * (the buffer is left unchanged). */
int dbx_buf_reserve(dbx_buf *b, size_t extra);
int dbx_buf_append(dbx_buf *b, const void *p, size_t n);

/* Forget the contents. A buffer that grew beyond `keep_max` bytes is freed so
 * that one large response does not pin its peak memory for the handle's life. */
void dbx_buf_reset(dbx_buf *b, size_t keep_max);

#endif
