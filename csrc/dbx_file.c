/* flock, mkostemps and O_CLOEXEC/O_DIRECTORY/O_NOFOLLOW need more than the
 * build's _POSIX_C_SOURCE. */
#define _GNU_SOURCE
#include "dbx_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define CODE_AS_NAME(id, name) name,
static const char *const CODE_NAMES[] = { DBX_FILE_CODES(CODE_AS_NAME) };
#undef CODE_AS_NAME

#define READ_CHUNK ((size_t)64 * 1024)

const char *dbx_file_code_name(dbx_file_code c) {
  return (unsigned)c < DBX_FILE_NCODES ? CODE_NAMES[c] : "io";
}

/* Formats "<op> <path>: <strerror(err)>" and classifies err. */
static dbx_file_code fail(char *msg, size_t msglen, const char *op, const char *path, int err) {
  snprintf(msg, msglen, "%s %s: %s", op, path, strerror(err));
  if (err == ENOENT) return DBX_FILE_NOT_FOUND;
  if (err == ENOMEM) return DBX_FILE_NOMEM;
  return DBX_FILE_IO;
}

static int close_keep_errno(int fd) {
  int saved = errno, rc = close(fd);
  errno = saved;
  return rc;
}

/* ---- mkdir ---- */

/* umask may have narrowed the mode of a directory we just made; set it exactly
 * (O_NOFOLLOW: not on whatever a symlink swapped in meanwhile points to) */
static dbx_file_code set_new_dir_mode(const char *path, unsigned mode, char *msg, size_t msglen) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return fail(msg, msglen, "mkdir", path, errno);
  if (fchmod(fd, (mode_t)mode) != 0) {
    int err = errno;
    close(fd);
    return fail(msg, msglen, "chmod", path, err);
  }
  close(fd);
  return DBX_FILE_OK;
}

dbx_file_code dbx_mkdir(const char *path, unsigned mode, char *msg, size_t msglen) {
  struct stat st;
  if (mkdir(path, (mode_t)mode) != 0) {
    int err = errno;
    if (err == EEXIST) {
      if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return DBX_FILE_OK;
      snprintf(msg, msglen, "mkdir %s: exists and is not a directory", path);
      return DBX_FILE_EXISTS;
    }
    return fail(msg, msglen, "mkdir", path, err);
  }
  return set_new_dir_mode(path, mode, msg, msglen);
}

/* ---- private_dir ---- */

dbx_file_code dbx_private_dir(const char *path, char *msg, size_t msglen) {
  struct stat st;
  int fd, err;
  if (mkdir(path, 0700) == 0) return set_new_dir_mode(path, 0700, msg, msglen);
  if (errno != EEXIST) return fail(msg, msglen, "mkdir", path, errno);
  /* follows a symlink to a directory (a dotfiles checkout); checks what it points to */
  fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOTDIR) {
      snprintf(msg, msglen, "mkdir %s: exists and is not a directory", path);
      return DBX_FILE_EXISTS;
    }
    return fail(msg, msglen, "open", path, errno);
  }
  if (fstat(fd, &st) != 0) {
    err = errno;
    close(fd);
    return fail(msg, msglen, "stat", path, err);
  }
  err = 0;
  if ((st.st_mode & 07777) != 0700) {
    if (st.st_uid != geteuid()) err = EPERM;       /* not ours to change */
    else if (fchmod(fd, 0700) != 0) err = errno;
  }
  close(fd);
  if (err != 0 && (st.st_mode & 022) != 0) {
    const char *who = (st.st_mode & 022) == 022 ? "its group and others" : (st.st_mode & 020) ? "its group" : "others";
    snprintf(msg, msglen, "%s is writable by %s (mode %04o) and cannot be made private: %s", path, who,
             (unsigned)(st.st_mode & 07777), err == EPERM ? "it belongs to another user" : strerror(err));
    return DBX_FILE_INSECURE;
  }
  return DBX_FILE_OK;
}

/* ---- write_atomic ---- */

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fsync the directory so that the rename itself survives a crash. */
static void sync_dir(const char *path, size_t dirlen) {
  char *dir;
  int fd;
  if (dirlen == 0) {
    fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } else {
    dir = malloc(dirlen + 1);
    if (dir == NULL) return;
    memcpy(dir, path, dirlen);
    dir[dirlen] = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
  }
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

dbx_file_code dbx_write_atomic(const char *path, const char *data, size_t len, unsigned mode,
                               char *msg, size_t msglen) {
  const char *slash = strrchr(path, '/');
  size_t plen = strlen(path), dirlen = slash ? (size_t)(slash - path) + 1 : 0;
  const char *base = path + dirlen;
  char *tmp;
  int fd, err;
  const char *op;
  dbx_file_code code;

  if (*base == '\0') return fail(msg, msglen, "write", path, EISDIR);
  tmp = malloc(plen + sizeof ".-XXXXXX.tmp");
  if (tmp == NULL) return fail(msg, msglen, "write", path, ENOMEM);
  memcpy(tmp, path, dirlen);
  tmp[dirlen] = '.';
  memcpy(tmp + dirlen + 1, base, plen - dirlen);
  memcpy(tmp + plen + 1, "-XXXXXX.tmp", sizeof "-XXXXXX.tmp");

  fd = mkostemps(tmp, 4, O_CLOEXEC);
  if (fd < 0) {
    code = fail(msg, msglen, "create temp file for", path, errno);
    free(tmp);
    return code;
  }
  /* from here on every failure unlinks tmp */
  op = "chmod temp file for";
  if (fchmod(fd, (mode_t)mode) != 0) goto fail_open;
  op = "write";
  if (write_all(fd, data, len) != 0) goto fail_open;
  op = "fsync";
  if (fsync(fd) != 0) goto fail_open;
  op = "close";
  if (close(fd) != 0) goto fail_closed;
  op = "rename temp file onto";
  if (rename(tmp, path) != 0) goto fail_closed;
  free(tmp);
  sync_dir(path, dirlen);
  return DBX_FILE_OK;

fail_open:
  close_keep_errno(fd);
fail_closed:
  err = errno;
  unlink(tmp);
  free(tmp);
  code = fail(msg, msglen, op, path, err);
  return code == DBX_FILE_NOT_FOUND ? DBX_FILE_IO : code;   /* only a missing dir is not_found */
}

/* ---- clean_temps ---- */

/* `.<base>-XXXXXX.tmp` exactly, X being what mkostemps puts there */
static int is_temp_of(const char *name, const char *base, size_t blen) {
  size_t i, n = strlen(name);
  if (n != blen + sizeof ".-XXXXXX.tmp" - 1 || name[0] != '.' || memcmp(name + 1, base, blen) != 0 ||
      name[1 + blen] != '-' || memcmp(name + n - 4, ".tmp", 4) != 0)
    return 0;
  for (i = blen + 2; i < blen + 8; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return 0;
  }
  return 1;
}

dbx_file_code dbx_clean_temps(const char *path, double max_age, int *removed, char *msg, size_t msglen) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t blen = strlen(base);
  char *dir;
  DIR *d;
  struct dirent *e;
  time_t now = time(NULL);
  *removed = 0;
  if (blen == 0) return fail(msg, msglen, "clean temp files of", path, EISDIR);
  if (slash == path) dir = strdup("/");
  else if (slash) dir = strndup(path, (size_t)(slash - path));
  else dir = strdup(".");
  if (dir == NULL) return fail(msg, msglen, "clean temp files of", path, ENOMEM);
  d = opendir(dir);
  free(dir);
  if (d == NULL) return fail(msg, msglen, "clean temp files of", path, errno);
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    if (!is_temp_of(e->d_name, base, blen)) continue;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) continue;
    if ((double)(now - st.st_mtime) < max_age) continue;
    if (unlinkat(dirfd(d), e->d_name, 0) == 0) (*removed)++;
  }
  closedir(d);
  return DBX_FILE_OK;
}

/* ---- read_file ---- */

dbx_file_code dbx_read_file(const char *path, size_t max, dbx_buf *out, char *msg, size_t msglen) {
  struct stat st;
  size_t start = out->len, got = 0;
  /* O_NONBLOCK: opening a FIFO must not hang (no effect on regular files) */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return fail(msg, msglen, "read", path, errno);
  if (fstat(fd, &st) != 0) goto fail;
  if (S_ISDIR(st.st_mode)) { errno = EISDIR; goto fail; }
  if (S_ISREG(st.st_mode) && st.st_size > 0 && (unsigned long long)st.st_size > max) goto too_large;
  /* the size is a hint (the file may change, /proc reports 0): read until EOF, one
   * byte past max at most */
  if (dbx_buf_reserve(out, (S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 0) + 1) != 0) {
    errno = ENOMEM;
    goto fail;
  }
  for (;;) {
    size_t room = out->cap - out->len;
    ssize_t r;
    if (room == 0) {
      if (dbx_buf_reserve(out, READ_CHUNK) != 0) { errno = ENOMEM; goto fail; }
      room = out->cap - out->len;
    }
    if (room > max - got + 1) room = max - got + 1;
    r = read(fd, out->data + out->len, room);
    if (r < 0) {
      if (errno == EINTR) continue;
      goto fail;
    }
    if (r == 0) break;
    out->len += (size_t)r;
    got += (size_t)r;
    if (got > max) goto too_large;
  }
  close(fd);
  return DBX_FILE_OK;
too_large:
  close(fd);
  out->len = start;
  snprintf(msg, msglen, "read %s: larger than %lu bytes", path, (unsigned long)max);
  return DBX_FILE_TOO_LARGE;
fail:
  close_keep_errno(fd);
  out->len = start;
  return fail(msg, msglen, "read", path, errno);
}

/* ---- lock ---- */

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec req, rem;
  req.tv_sec = ms / 1000;
  req.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&req, &rem) != 0 && errno == EINTR) req = rem;
}

dbx_file_code dbx_lock(const char *path, long timeout_ms, int *fd, char *msg, size_t msglen) {
  long long deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  long step = 1;
  struct stat st;
  /* O_RDONLY is enough for flock, and works on a lock file someone else created.
   * O_NOFOLLOW: a symlink planted there must not make us create or lock its target;
   * O_NONBLOCK: nor may a FIFO hang the open. */
  int f = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK, 0600);
  *fd = -1;
  if (f < 0) {
    if (errno == ELOOP)
      snprintf(msg, msglen, "lock %s: is a symbolic link, which dbxauth does not follow; remove it", path);
    else
      fail(msg, msglen, "lock", path, errno);
    return DBX_FILE_IO;               /* "timeout" or "io" only, even for ENOENT */
  }
  if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(f);
    snprintf(msg, msglen, "lock %s: not a regular file; remove it", path);
    return DBX_FILE_IO;
  }
  for (;;) {
    long long left;
    if (flock(f, LOCK_EX | LOCK_NB) == 0) {
      *fd = f;
      return DBX_FILE_OK;
    }
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) {
      int err = errno;
      close(f);
      fail(msg, msglen, "lock", path, err);
      return DBX_FILE_IO;
    }
    left = deadline - mono_ms();
    if (left <= 0) break;
    sleep_ms(step < left ? step : (long)left);
    if (step < 50) step = step * 2 > 50 ? 50 : step * 2;
  }
  close(f);
  snprintf(msg, msglen, "lock %s: still held by someone else after %ld ms", path,
           timeout_ms > 0 ? timeout_ms : 0L);
  return DBX_FILE_TIMEOUT;
}

void dbx_unlock(int fd) {
  if (fd < 0) return;
  (void)flock(fd, LOCK_UN);
  close(fd);
}

/* ---- stat ---- */

dbx_file_code dbx_stat_path(const char *path, dbx_stat *out, char *msg, size_t msglen) {
  struct stat st;
  if (stat(path, &st) != 0) return fail(msg, msglen, "stat", path, errno);
  out->type = S_ISREG(st.st_mode) ? 'f' : S_ISDIR(st.st_mode) ? 'd' : 'o';
  out->mode = (unsigned)(st.st_mode & 07777);
  out->size = (long long)st.st_size;
  out->uid = (long long)st.st_uid;
  out->mtime = (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9;
  return DBX_FILE_OK;
}

long dbx_getpid(void) {
  return (long)getpid();
}
