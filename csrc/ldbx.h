/* Internal to the Lua binding. The ldbx_*.c files are the only ones that include
 * lua.h, always through this header; the dbx_*.c files below them are plain C.
 *
 *   ldbx_core.c    luaopen_dbxauth_core, the function table, encodings, crypto, time
 *   ldbx_http.c    the dbxauth.http userdata (core.http)
 *   ldbx_multi.c   the dbxauth.multi userdata (core.multi)
 *   ldbx_req.c     reading a request table, for both
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
#include "dbx_http.h"

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
/* { status, headers, body, reused, time, http_version } */
void ldbx_push_response(lua_State *L, const dbx_http_resp *r);

/* ---- ldbx_multi.c ---- */

void ldbx_multi_init(lua_State *L);
int ldbx_core_multi(lua_State *L);

/* ---- ldbx_req.c ---- */

/* Where a request table is read from, and how errors name it. */
typedef struct ldbx_reqsrc {
  int req;    /* stack index of the request table */
  int opts;   /* stack index of the transport options (ca_file, skip_verify, resolve, max_body,
               * no_proxy), or 0: they are fields of the request itself */
  int arg;    /* the argument errors name */
  int item;   /* > 0: the request is item #item of a list (errors say so) */
  int raw;    /* read with lua_rawget and pop each value (see ldbx_req.c) */
  const dbx_http_req *defaults;   /* the transport's options already read (ldbx_read_options), or NULL */
} ldbx_reqsrc;

/* The transport's options (ca_file, skip_verify, no_proxy, max_body) of table t into r. */
void ldbx_read_options(lua_State *L, const ldbx_reqsrc *src, int t, dbx_http_req *r);

/* Checks and reads every field but the resolve list; *headers is the stack index of the headers
 * table (left on the stack), or 0. Raises on a wrong field. */
void ldbx_read_request(lua_State *L, const ldbx_reqsrc *src, dbx_http_req *r, int *headers);
/* The `resolve` list of table t, type-checked: its stack index (left on the stack), or 0. */
int ldbx_check_resolve(lua_State *L, const ldbx_reqsrc *src, int t);
/* fn for each header of the (checked) table at idx, until one returns other than DBX_HTTP_OK.
 * Raw iteration with string keys and values only: cannot raise, runs no Lua code. */
typedef dbx_http_code (*ldbx_header_fn)(void *ud, const char *name, size_t nlen, const char *value,
                                        size_t vlen);
dbx_http_code ldbx_each_header(lua_State *L, int idx, ldbx_header_fn fn, void *ud);

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
