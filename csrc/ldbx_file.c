/* Files for the token cache (dbx_file): core.mkdir, private_dir, write_atomic,
 * clean_temps, read_file, stat, getpid, and core.lock with its dbxauth.lock userdata (ldbx_lock owns the locked
 * fd until unlock or __gc). read_file's buffer sits in a dbxauth.buffer userdata
 * so that a Lua error cannot leak it. */
#include <string.h>

#include "ldbx.h"

#include "dbx_file.h"

#define LDBX_LOCK_MT "dbxauth.lock"
#define LDBX_BUFBOX_MT "dbxauth.buffer"
#define LDBX_READ_DEFAULT_MAX (16.0 * 1024 * 1024)

static const char *check_path(lua_State *L, int idx) {
  size_t n;
  const char *s = luaL_checklstring(L, idx, &n);
  luaL_argcheck(L, n > 0 && strlen(s) == n, idx, "path must be a non-empty string without NUL bytes");
  return s;
}

static unsigned check_mode(lua_State *L, int idx) {
  lua_Number v = 0;
  luaL_argcheck(L, ldbx_is_int_in(L, idx, 0, 07777, &v), idx, "mode must be an integer 0-07777");
  return (unsigned)v;
}

static int file_result(lua_State *L, dbx_file_code code, const char *msg) {
  if (code == DBX_FILE_NOMEM) return luaL_error(L, "not enough memory");
  if (code != DBX_FILE_OK) return ldbx_push_fail3(L, dbx_file_code_name(code), msg);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.mkdir(path, mode) -> true | nil, code, msg */
int ldbx_core_mkdir(lua_State *L) {
  const char *path = check_path(L, 1);
  unsigned mode = check_mode(L, 2);
  char msg[512];
  return file_result(L, dbx_mkdir(path, mode, msg, sizeof msg), msg);
}

/* core.private_dir(path) -> true | nil, code, msg */
int ldbx_core_private_dir(lua_State *L) {
  const char *path = check_path(L, 1);
  char msg[512];
  return file_result(L, dbx_private_dir(path, msg, sizeof msg), msg);
}

/* core.clean_temps(path [, max_age_seconds = 0]) -> removed | nil, code, msg */
int ldbx_core_clean_temps(lua_State *L) {
  const char *path = check_path(L, 1);
  lua_Number age = luaL_optnumber(L, 2, 0);
  char msg[512];
  int removed = 0;
  dbx_file_code code;
  luaL_argcheck(L, age >= 0 && age <= 1e9, 2, "must be a number of seconds >= 0");
  code = dbx_clean_temps(path, (double)age, &removed, msg, sizeof msg);
  if (code != DBX_FILE_OK) return file_result(L, code, msg);
  lua_pushinteger(L, (lua_Integer)removed);
  return 1;
}

/* core.write_atomic(path, data, mode) -> true | nil, code, msg */
int ldbx_core_write_atomic(lua_State *L) {
  size_t len;
  const char *path = check_path(L, 1);
  const char *data = luaL_checklstring(L, 2, &len);
  unsigned mode = check_mode(L, 3);
  char msg[512];
  return file_result(L, dbx_write_atomic(path, data, len, mode, msg, sizeof msg), msg);
}

/* The read buffer lives in a userdata box, so a Lua error cannot leak it. */
static int bufbox_gc(lua_State *L) {
  dbx_buf_free((dbx_buf *)luaL_checkudata(L, 1, LDBX_BUFBOX_MT));
  return 0;
}

/* core.read_file(path [, max_bytes = 16 MiB]) -> data | nil, code, msg */
int ldbx_core_read_file(lua_State *L) {
  const char *path = check_path(L, 1);
  lua_Number max = LDBX_READ_DEFAULT_MAX;
  char msg[512];
  dbx_buf *b;
  dbx_file_code code;
  if (!lua_isnoneornil(L, 2))
    luaL_argcheck(L, ldbx_is_int_in(L, 2, 0, 9007199254740992.0, &max), 2,
                  "must be a non-negative integer (bytes)");
  b = (dbx_buf *)lua_newuserdatauv(L, sizeof *b, 0);
  dbx_buf_init(b);
  luaL_setmetatable(L, LDBX_BUFBOX_MT);
  code = dbx_read_file(path, (size_t)max, b, msg, sizeof msg);
  if (code != DBX_FILE_OK) {
    dbx_buf_free(b);
    return file_result(L, code, msg);
  }
  lua_pushlstring(L, b->data != NULL ? b->data : "", b->len);
  dbx_buf_free(b);
  return 1;
}

typedef struct ldbx_lock {
  int fd;   /* -1 == released */
} ldbx_lock;

static ldbx_lock *check_lock(lua_State *L) {
  return (ldbx_lock *)luaL_checkudata(L, 1, LDBX_LOCK_MT);
}

/* unlock, __gc and __close: idempotent. */
static int lock_release(lua_State *L) {
  ldbx_lock *u = check_lock(L);
  if (u->fd >= 0) {
    dbx_unlock(u->fd);
    u->fd = -1;
  }
  return 0;
}

static int lock_unlock(lua_State *L) {
  lock_release(L);
  lua_pushboolean(L, 1);
  return 1;
}

static int lock_tostring(lua_State *L) {
  lua_pushstring(L, check_lock(L)->fd >= 0 ? "dbxauth.lock (held)" : "dbxauth.lock (released)");
  return 1;
}

/* core.lock(path, timeout_ms) -> lock | nil, "timeout"|"io", msg */
int ldbx_core_lock(lua_State *L) {
  const char *path = check_path(L, 1);
  long ms = ldbx_check_ms(L, 2);
  char msg[512];
  dbx_file_code code;
  ldbx_lock *u = (ldbx_lock *)lua_newuserdatauv(L, sizeof *u, 0);
  u->fd = -1;                      /* released until acquired */
  luaL_setmetatable(L, LDBX_LOCK_MT);
  code = dbx_lock(path, ms, &u->fd, msg, sizeof msg);
  if (code != DBX_FILE_OK) return file_result(L, code, msg);
  return 1;
}

static const luaL_Reg lock_methods[] = {
  {"unlock", lock_unlock},
  {NULL, NULL},
};

/* core.stat(path) -> { type, mode, size, uid, mtime } | nil, code, msg */
int ldbx_core_stat(lua_State *L) {
  const char *path = check_path(L, 1);
  char msg[512];
  dbx_stat st;
  dbx_file_code code = dbx_stat_path(path, &st, msg, sizeof msg);
  if (code != DBX_FILE_OK) return file_result(L, code, msg);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, st.type == 'f' ? "file" : st.type == 'd' ? "dir" : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.mode);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)st.size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.uid);
  lua_setfield(L, -2, "uid");
  lua_pushnumber(L, (lua_Number)st.mtime);
  lua_setfield(L, -2, "mtime");
  return 1;
}

int ldbx_core_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)dbx_getpid());
  return 1;
}

void ldbx_file_init(lua_State *L) {
  ldbx_create_meta(L, LDBX_LOCK_MT, lock_methods, lock_release, lock_tostring);
  ldbx_create_meta(L, LDBX_BUFBOX_MT, NULL, bufbox_gc, NULL);
}
