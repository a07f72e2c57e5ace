/* Internal to the Lua binding. The ldbx_*.c files are the only ones that include
 * lua.h, always through this header; the dbx_*.c files below them are plain C.
 *
 *   ldbx_core.c    luaopen_dbxauth_core, the function table, encodings, crypto, time
 *   ldbx_http.c    the dbxauth.http userdata (core.http)
 *   ldbx_listen.c  the dbxauth.listener userdata (core.listen)
 *   ldbx_file.c    files, the dbxauth.lock userdata, stat, getpid
 *   ldbx_util.c    the helpers below that more than one of them uses
 *
 * Each userdata file creates its own metatables in its ldbx_*_init, which
 * luaopen_dbxauth_core calls once. The ldbx_core_* functions are the entries of
 * the module table (core.<name>). */
#ifndef LDBX_H
#define LDBX_H

#include <lua.h>
#include <lauxlib.h>

#include "dbx_compat.h"

int luaopen_dbxauth_core(lua_State *L);

/* ---- ldbx_util.c ---- */

/* Pushes nil, code, msg; returns 3. */
int ldbx_push_fail3(lua_State *L, const char *code, const char *msg);
/* A Lua number that is an integer in [lo, hi]: 1 and *out, or 0. */
int ldbx_is_int_in(lua_State *L, int idx, lua_Number lo, lua_Number hi, lua_Number *out);
/* Argument idx as milliseconds (an integer 0 .. 2^31-1), or raises. */
long ldbx_check_ms(lua_State *L, int idx);
/* Registers metatable `name` (once): __gc and __close call `release`, __tostring
 * `tostring` (may be NULL), __index holds `methods` (may be NULL), __name is set. */
void ldbx_create_meta(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction release, lua_CFunction tostring);

/* ---- ldbx_core.c ---- */

int ldbx_core_parse_query(lua_State *L);   /* also decodes the listener's queries */

/* ---- ldbx_http.c ---- */

void ldbx_http_init(lua_State *L);
int ldbx_core_http(lua_State *L);

/* ---- ldbx_listen.c ---- */

void ldbx_listen_init(lua_State *L);
int ldbx_core_listen(lua_State *L);

/* ---- ldbx_file.c ---- */

void ldbx_file_init(lua_State *L);
int ldbx_core_mkdir(lua_State *L);
int ldbx_core_private_dir(lua_State *L);
int ldbx_core_clean_temps(lua_State *L);
int ldbx_core_write_atomic(lua_State *L);
int ldbx_core_read_file(lua_State *L);
int ldbx_core_lock(lua_State *L);
int ldbx_core_stat(lua_State *L);
int ldbx_core_getpid(lua_State *L);

#endif
