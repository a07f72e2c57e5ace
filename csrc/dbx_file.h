/* Files for the token cache shared with the Databricks CLI, other processes and
 * nginx workers: create a private directory, replace a file atomically, read a
 * file with a size limit, and an exclusive advisory lock. No Lua here.
 *
 * Every function takes NUL-terminated paths and, on failure, writes a message
 * naming the operation, the path and strerror into msg. */
#ifndef DBX_FILE_H
#define DBX_FILE_H

#include <stddef.h>

#include "dbx_buf.h"

/* Failure classes; the string is what Lua sees as the error code. */
#define DBX_FILE_CODES(X)                 \
  X(DBX_FILE_OK,        "ok")             \
  X(DBX_FILE_NOT_FOUND, "not_found")      \
  X(DBX_FILE_EXISTS,    "exists")         \
  X(DBX_FILE_TOO_LARGE, "too_large")      \
  X(DBX_FILE_TIMEOUT,   "timeout")        \
  X(DBX_FILE_INSECURE,  "insecure")       \
  X(DBX_FILE_IO,        "io")             \
  X(DBX_FILE_NOMEM,     "nomem")

#define DBX_FILE_AS_ENUM(id, name) id,
typedef enum dbx_file_code { DBX_FILE_CODES(DBX_FILE_AS_ENUM) DBX_FILE_NCODES } dbx_file_code;
#undef DBX_FILE_AS_ENUM

const char *dbx_file_code_name(dbx_file_code c);

/* One directory level. A new directory gets exactly `mode` (umask does not narrow
 * it); an existing directory (or a symlink to one) is success and keeps its mode;
 * an existing non-directory is DBX_FILE_EXISTS; a missing parent DBX_FILE_NOT_FOUND. */
dbx_file_code dbx_mkdir(const char *path, unsigned mode, char *msg, size_t msglen);

/* The private directory of the token cache. Missing: created with exactly 0700. Existing
 * (a symlink to a directory is followed) with another mode: set to 0700 when this user
 * owns it. One that stays open to others is DBX_FILE_INSECURE when group or others may
 * write into it (they could plant or swap files there), and accepted when they may only
 * read it (the files in it are 0600). An existing non-directory is DBX_FILE_EXISTS, a
 * missing parent DBX_FILE_NOT_FOUND. */
dbx_file_code dbx_private_dir(const char *path, char *msg, size_t msglen);

/* Replaces path with data: a temp file `.<basename>-XXXXXX.tmp` in the same
 * directory (O_CLOEXEC), fchmod(mode) before the first byte, write all, fsync,
 * close, rename over path, then fsync the directory (best effort). Readers see the
 * old or the new content, never a mix; the temp file is removed on every failure.
 * The directory missing is DBX_FILE_NOT_FOUND, anything else DBX_FILE_IO. */
dbx_file_code dbx_write_atomic(const char *path, const char *data, size_t len, unsigned mode,
                               char *msg, size_t msglen);

/* Removes what a dbx_write_atomic of path leaves behind when its process dies between
 * creating and renaming the temp file: entries `.<basename>-XXXXXX.tmp` (XXXXXX letters
 * and digits) of path's directory that are regular files (not followed if symlinks) of
 * this user, last modified at least max_age seconds ago. *removed counts them. Entries
 * that vanish meanwhile or cannot be removed are skipped. The directory missing is
 * DBX_FILE_NOT_FOUND, unreadable DBX_FILE_IO. */
dbx_file_code dbx_clean_temps(const char *path, double max_age, int *removed, char *msg, size_t msglen);

/* Appends the whole file to out (which the caller owns and frees, also on
 * failure). DBX_FILE_NOT_FOUND, DBX_FILE_TOO_LARGE when it holds more than max
 * bytes, DBX_FILE_NOMEM, DBX_FILE_IO. */
dbx_file_code dbx_read_file(const char *path, size_t max, dbx_buf *out, char *msg, size_t msglen);

/* Exclusive flock on path (created 0600 if missing; the file is never removed; a
 * symlink or anything but a regular file there is refused, DBX_FILE_IO),
 * trying LOCK_NB and sleeping 1 ms, doubling up to 50 ms, until timeout_ms has
 * passed (0: one try). On DBX_FILE_OK *fd holds the lock until dbx_unlock(*fd).
 * flock locks belong to the open file description: two dbx_lock calls exclude
 * each other even inside one process; across fork() a child shares its parent's
 * lock. This blocks the calling thread: inside nginx use timeout 0 and retry
 * with ngx.sleep. DBX_FILE_TIMEOUT, or DBX_FILE_IO for every other failure. */
dbx_file_code dbx_lock(const char *path, long timeout_ms, int *fd, char *msg, size_t msglen);
void dbx_unlock(int fd);

typedef struct dbx_stat {
  int       type;      /* 'f' regular file, 'd' directory, 'o' other */
  unsigned  mode;      /* permission bits (st_mode & 07777) */
  long long size;
  long long uid;
  double    mtime;     /* seconds since the epoch */
} dbx_stat;

/* stat(2), following symlinks. DBX_FILE_NOT_FOUND or DBX_FILE_IO. */
dbx_file_code dbx_stat_path(const char *path, dbx_stat *st, char *msg, size_t msglen);

long dbx_getpid(void);

#endif
