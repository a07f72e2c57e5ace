/* The dbxauth.multi userdata: a dbx_multi (ldbx_multi owns it until close or __gc), and
 * perform(), which reads and checks every request of a list before any is sent, runs them all in
 * C, then hands back the finished results.
 *
 *   m:perform(list, opts) -> responses, codes, messages
 *     list[i] = { method, url, headers, body, timeout_ms | timeout (s), max_body, no_proxy }
 *     opts    = { concurrency (8; 1 .. 256), timeout_ms | timeout (s): the whole run (none by
 *                 default), ca_file, skip_verify, resolve, max_body (default), no_proxy }
 *     responses[i] = { status, headers, body, reused, time, http_version } or false;
 *     codes[i], messages[i] = false, or why item i failed (core.http's codes and messages).
 *
 * Every table is read raw (no metamethods): no Lua code runs between reading the first item and
 * handing back the results, so the strings the C items point to stay where the list holds them.
 * The items' C memory lives in a box userdata whose __gc frees it, so an error while reading
 * the list or building the results leaks nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ldbx.h"

#include "dbx_multi.h"
#include "dbx_xfer.h"

#define LDBX_MULTI_MT "dbxauth.multi"
#define LDBX_BOX_MT "dbxauth.multi.box"
#define DEFAULT_CONCURRENCY 8

typedef struct ldbx_multi {
  dbx_multi *m;   /* NULL == closed */
} ldbx_multi;

typedef struct box {
  dbx_mitem *items;
  size_t     n;
  size_t    *offs;    /* item i's header lines: lines.data[offs[2i] .. offs[2i+1]) */
  dbx_buf    lines;   /* every item's header lines, NUL-terminated, back to back */
  dbx_buf    line;
} box;

static ldbx_multi *check_multi(lua_State *L) {
  return (ldbx_multi *)luaL_checkudata(L, 1, LDBX_MULTI_MT);
}

static dbx_multi *check_open(lua_State *L) {
  ldbx_multi *u = check_multi(L);
  if (u->m == NULL) luaL_error(L, "attempt to use a closed dbxauth.multi handle");
  return u->m;
}

/* close, __gc and __close: idempotent. */
static int multi_release(lua_State *L) {
  ldbx_multi *u = check_multi(L);
  if (u->m != NULL) {
    dbx_multi_free(u->m);
    u->m = NULL;
  }
  return 0;
}

static int multi_tostring(lua_State *L) {
  ldbx_multi *u = check_multi(L);
  lua_pushstring(L, u->m ? "dbxauth.multi (open)" : "dbxauth.multi (closed)");
  return 1;
}

/* core.multi() -> a handle with its own connections (HTTP/2 where offered) */
int ldbx_core_multi(lua_State *L) {
  ldbx_multi *u = (ldbx_multi *)lua_newuserdatauv(L, sizeof *u, 0);
  u->m = NULL;                     /* closed until acquired */
  luaL_setmetatable(L, LDBX_MULTI_MT);
  u->m = dbx_multi_new();
  if (u->m == NULL) return luaL_error(L, "dbxauth.multi: cannot create a curl multi handle");
  return 1;
}

/* ---- the box: the run's C memory ---- */

static int box_release(lua_State *L) {
  box *b = (box *)luaL_checkudata(L, 1, LDBX_BOX_MT);
  size_t i;
  if (b->items != NULL) {
    for (i = 0; i < b->n; i++) dbx_mitem_free(&b->items[i]);
    free(b->items);
    b->items = NULL;
  }
  free(b->offs);
  b->offs = NULL;
  b->n = 0;
  dbx_buf_free(&b->lines);
  dbx_buf_free(&b->line);
  return 0;
}

static box *new_box(lua_State *L, size_t n) {
  box *b = (box *)lua_newuserdatauv(L, sizeof *b, 0);
  size_t i;
  memset(b, 0, sizeof *b);
  dbx_buf_init(&b->lines);
  dbx_buf_init(&b->line);
  luaL_setmetatable(L, LDBX_BOX_MT);
  if (n > 0) {
    b->items = calloc(n, sizeof *b->items);
    b->offs = calloc(2 * n, sizeof *b->offs);
    if (b->items == NULL || b->offs == NULL) luaL_error(L, "not enough memory");
    for (i = 0; i < n; i++) dbx_mitem_init(&b->items[i]);
    b->n = n;                              /* only now: box_release frees n initialised items */
  }
  return b;
}

/* ---- reading the list ---- */

typedef struct lines_ctx {
  box       *b;
  dbx_mitem *it;
} lines_ctx;

/* A rejected header fails its item alone (it is not sent); the others go on. */
static dbx_http_code pack_header(void *ud, const char *name, size_t nlen, const char *value, size_t vlen) {
  lines_ctx *c = ud;
  char msg[DBX_XFER_MSG];
  dbx_http_code code = dbx_http_check_header(name, nlen, value, vlen, msg, sizeof msg);
  if (code != DBX_HTTP_OK) {
    dbx_mitem_fail(c->it, code, "%s", msg);
    return code;
  }
  if (dbx_http_header_skipped(name, nlen)) return DBX_HTTP_OK;
  if (dbx_http_header_line(&c->b->line, name, nlen, value, vlen) != 0 ||
      dbx_buf_append(&c->b->lines, c->b->line.data, c->b->line.len) != 0)
    return DBX_HTTP_NOMEM;
  return DBX_HTTP_OK;
}

static lua_Number raw_number(lua_State *L, int t, const char *field, lua_Number def, lua_Number lo, lua_Number hi,
                             const char *what) {
  lua_Number v = def;
  lua_pushstring(L, field);
  lua_rawget(L, t);
  if (!lua_isnil(L, -1) && !ldbx_is_int_in(L, -1, lo, hi, &v))
    luaL_argerror(L, 3, lua_pushfstring(L, "field '%s' %s", field, what));
  lua_pop(L, 1);
  return v;
}

/* The run's timeout: timeout_ms, else timeout (seconds), else none (0). */
static long run_timeout(lua_State *L) {
  lua_Number ms = raw_number(L, 3, "timeout_ms", 0, 1, (lua_Number)INT32_MAX,
                             "must be a positive integer (milliseconds, < 2^31)");
  lua_Number s;
  if (ms > 0) return (long)ms;
  lua_pushstring(L, "timeout");
  lua_rawget(L, 3);
  if (!lua_isnil(L, -1)) {
    s = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(s > 0 && s * 1000 + 0.5 < (lua_Number)INT32_MAX))
      luaL_argerror(L, 3, "field 'timeout' must be a positive number of seconds (< 2^31 ms)");
    ms = (lua_Number)(long)(s * 1000 + 0.5);
    if (ms < 1) ms = 1;
  }
  lua_pop(L, 1);
  return (long)ms;
}

/* Every entry is checked before any is added: a raise leaves nothing for the next run. */
static void read_resolve(lua_State *L, dbx_multi *m) {
  ldbx_reqsrc src = { 3, 0, 3, 0, 1, NULL };
  int idx = ldbx_check_resolve(L, &src, 3), i, n, pass, failed = 0;
  if (idx == 0) return;
  n = (int)lua_rawlen(L, idx);
  for (pass = 0; pass < 2 && !failed; pass++) {
    for (i = 1; i <= n && !failed; i++) {
      size_t len, klen;
      const char *s, *key;
      lua_rawgeti(L, idx, i);
      s = lua_tolstring(L, -1, &len);
      failed = pass == 0 ? dbx_http_resolve_key(s, len, &key, &klen) != 0 : dbx_multi_add_resolve(m, s, len) != 0;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (!failed) return;
  dbx_multi_forget_resolve(m);
  if (pass == 1) luaL_argerror(L, 3, "field 'resolve' entries must look like \"host:port:address\"");
  luaL_error(L, "not enough memory");
}

/* What the previous item's headers were: items that share one headers table (a batch's usual
 * case) share its checked lines too. Valid while the list is read: no Lua code runs meanwhile,
 * so a table seen twice has not changed. */
typedef struct last_headers {
  const void *table;
  size_t      from, to;
} last_headers;

/* Item i of the list into b->items[i-1]; its header lines are appended to b->lines (as
 * offsets: the buffer may move while later items are read). */
static void read_item(lua_State *L, box *b, size_t i, const dbx_http_req *defaults, last_headers *last) {
  dbx_mitem *it = &b->items[i - 1];
  ldbx_reqsrc src = { 0, 3, 2, (int)i, 1, defaults };
  lines_ctx c = { b, it };
  int headers;
  lua_rawgeti(L, 2, (lua_Integer)i);
  if (!lua_istable(L, -1))
    luaL_argerror(L, 2, lua_pushfstring(L, "item %d: table expected, got %s", (int)i, luaL_typename(L, -1)));
  src.req = lua_gettop(L);
  ldbx_read_request(L, &src, &it->req, &headers);
  if (headers != 0 && lua_topointer(L, headers) == last->table) {
    b->offs[2 * (i - 1)] = last->from;
    b->offs[2 * (i - 1) + 1] = last->to;
  } else {
    b->offs[2 * (i - 1)] = b->lines.len;
    if (ldbx_each_header(L, headers, pack_header, &c) == DBX_HTTP_NOMEM) luaL_error(L, "not enough memory");
    b->offs[2 * (i - 1) + 1] = b->lines.len;
    /* a table with a rejected header fails every item that holds it: not remembered */
    last->table = headers != 0 && it->code == DBX_HTTP_OK ? lua_topointer(L, headers) : NULL;
    last->from = b->offs[2 * (i - 1)];
    last->to = b->offs[2 * (i - 1) + 1];
  }
  lua_settop(L, src.req - 1);
}

static void read_list(lua_State *L, box *b) {
  ldbx_reqsrc osrc = { 3, 0, 3, 0, 1, NULL };
  dbx_http_req defaults;
  last_headers last = { NULL, 0, 0 };
  size_t i;
  memset(&defaults, 0, sizeof defaults);
  ldbx_read_options(L, &osrc, 3, &defaults);     /* once for every item */
  for (i = 1; i <= b->n; i++) read_item(L, b, i, &defaults, &last);
  for (i = 0; i < b->n; i++) {
    dbx_mitem *it = &b->items[i];
    it->lines_len = b->offs[2 * i + 1] - b->offs[2 * i];
    it->lines = it->lines_len ? b->lines.data + b->offs[2 * i] : NULL;
  }
}

/* ---- the results ---- */

static void push_results(lua_State *L, const box *b) {
  size_t i;
  int n = (int)b->n;
  lua_createtable(L, n, 0);
  lua_createtable(L, n, 0);
  lua_createtable(L, n, 0);
  for (i = 0; i < b->n; i++) {
    const dbx_mitem *it = &b->items[i];
    if (it->code == DBX_HTTP_OK) {
      dbx_http_resp resp;
      dbx_mitem_response(it, &resp);
      ldbx_push_response(L, &resp);
      lua_pushboolean(L, 0);
      lua_pushboolean(L, 0);
    } else {
      lua_pushboolean(L, 0);
      lua_pushstring(L, dbx_http_code_name(it->code));
      lua_pushstring(L, it->msg ? it->msg : "out of memory");
    }
    lua_rawseti(L, -4, (lua_Integer)(i + 1));
    lua_rawseti(L, -4, (lua_Integer)(i + 1));
    lua_rawseti(L, -4, (lua_Integer)(i + 1));
  }
}

static int multi_perform(lua_State *L) {
  dbx_multi *m = check_open(L);
  box *b;
  size_t n;
  int concurrency;
  long timeout_ms;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (lua_isnoneornil(L, 3)) {
    lua_settop(L, 2);
    lua_newtable(L);
  }
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  luaL_checkstack(L, 24, "dbxauth.multi perform");
  n = (size_t)lua_rawlen(L, 2);
  concurrency = (int)raw_number(L, 3, "concurrency", DEFAULT_CONCURRENCY, 1, DBX_MULTI_MAX_CONCURRENCY,
                                "must be an integer from 1 to 256");
  timeout_ms = run_timeout(L);
  b = new_box(L, n);                       /* stack index 4 */
  read_list(L, b);
  read_resolve(L, m);
  /* no Lua from here until the run is over */
  if (dbx_multi_run(m, b->items, b->n, concurrency, timeout_ms) != DBX_HTTP_OK)
    return luaL_error(L, "not enough memory");
  push_results(L, b);
  lua_pushvalue(L, 4);
  lua_pushcfunction(L, box_release);
  lua_insert(L, -2);
  lua_call(L, 1, 0);                       /* free the C side now rather than at the next GC */
  return 3;
}

static const luaL_Reg multi_methods[] = {
  {"perform", multi_perform},
  {"close", multi_release},
  {NULL, NULL},
};

void ldbx_multi_init(lua_State *L) {
  ldbx_create_meta(L, LDBX_MULTI_MT, multi_methods, multi_release, multi_tostring);
  ldbx_create_meta(L, LDBX_BOX_MT, NULL, box_release, NULL);
}
