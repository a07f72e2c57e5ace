/* The dbxauth.http userdata: a dbx_http handle (ldbx_http owns it until close or __gc), and
 * request(), which checks every field of the request table before anything is sent
 * (ldbx_req.c) and turns the dbx_http response into a table.
 *
 *   h:request(req)         req = { method, url, headers, body, timeout_ms | timeout (s), max_body,
 *                                  ca_file, skip_verify, resolve, no_proxy }
 *   h:request(req, opts)   the same, with the transport's options (ca_file, skip_verify, resolve,
 *                          max_body as the default, no_proxy) in opts, a table the caller keeps:
 *                          a transport passes its requests as they are, no table per call
 * -> { status, headers, body, reused, time, http_version } | nil, code, message */
#include <stdint.h>
#include <string.h>

#include "ldbx.h"

#include "dbx_http.h"

#define LDBX_HTTP_MT "dbxauth.http"

typedef struct ldbx_http {
  dbx_http *h;   /* NULL == closed */
} ldbx_http;

static ldbx_http *check_http(lua_State *L) {
  return (ldbx_http *)luaL_checkudata(L, 1, LDBX_HTTP_MT);
}

static dbx_http *check_open(lua_State *L) {
  ldbx_http *u = check_http(L);
  if (u->h == NULL) luaL_error(L, "attempt to use a closed dbxauth.http handle");
  return u->h;
}

/* close, __gc and __close: idempotent. */
static int http_release(lua_State *L) {
  ldbx_http *u = check_http(L);
  if (u->h != NULL) {
    dbx_http_free(u->h);
    u->h = NULL;
  }
  return 0;
}

static int http_tostring(lua_State *L) {
  ldbx_http *u = check_http(L);
  lua_pushstring(L, u->h ? "dbxauth.http (open)" : "dbxauth.http (closed)");
  return 1;
}

/* core.http() -> a handle with its own connection cache */
int ldbx_core_http(lua_State *L) {
  ldbx_http *u = (ldbx_http *)lua_newuserdatauv(L, sizeof *u, 0);
  u->h = NULL;                     /* closed until acquired: a failure below leaves a valid object */
  luaL_setmetatable(L, LDBX_HTTP_MT);
  u->h = dbx_http_new();
  if (u->h == NULL) return luaL_error(L, "dbxauth.http: cannot create a curl handle");
  return 1;
}

static void add_resolve(lua_State *L, const ldbx_reqsrc *src, dbx_http *h, int idx) {
  int i, n;
  if (idx == 0) return;
  n = (int)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, idx, i);
    s = lua_tolstring(L, -1, &len);
    if (dbx_http_add_resolve(h, s, len) != 0)
      luaL_argerror(L, src->opts ? src->opts : src->req,
                    "field 'resolve' entries must look like \"host:port:address\"");
    lua_pop(L, 1);
  }
}

static dbx_http_code add_header(void *ud, const char *name, size_t nlen, const char *value, size_t vlen) {
  return dbx_http_add_header((dbx_http *)ud, name, nlen, value, vlen);
}

void ldbx_push_response(lua_State *L, const dbx_http_resp *r) {
  dbx_hdr_iter it;
  const char *name, *val;
  size_t nlen, vlen;
  lua_createtable(L, 0, 7);          /* the 6 fields, and room for the `attempts` http.lua adds */
  lua_pushinteger(L, (lua_Integer)r->status);
  lua_setfield(L, -2, "status");
  lua_createtable(L, 0, r->headers_count < 1000 ? (int)r->headers_count : 1000);
  dbx_hdr_iter_init(&it, r->headers, r->headers_len);
  while (dbx_hdr_next(&it, &name, &nlen, &val, &vlen)) {
    lua_pushlstring(L, name, nlen);
    lua_pushlstring(L, val, vlen);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, r->body, r->body_len);
  lua_setfield(L, -2, "body");
  lua_pushboolean(L, r->reused);
  lua_setfield(L, -2, "reused");
  lua_pushnumber(L, (lua_Number)r->total_time);
  lua_setfield(L, -2, "time");
  lua_pushstring(L, r->http_version);
  lua_setfield(L, -2, "http_version");
}

static int http_request(lua_State *L) {
  dbx_http *h;
  dbx_http_req r;
  dbx_http_resp resp;
  dbx_http_code code;
  ldbx_reqsrc src;
  int headers, resolve;

  (void)check_open(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  src.req = 2;
  src.opts = lua_istable(L, 3) ? 3 : 0;
  src.arg = 2;
  src.item = 0;
  src.raw = 0;
  src.defaults = NULL;
  lua_settop(L, 3);
  luaL_checkstack(L, 24, "dbxauth.http request");

  /* lua_getfield may run __index metamethods, i.e. any Lua code */
  ldbx_read_request(L, &src, &r, &headers);
  resolve = ldbx_check_resolve(L, &src, src.opts ? src.opts : src.req);

  /* ...including code that closed this handle: look again, then touch it. */
  h = check_open(L);
  dbx_http_begin(h);
  add_resolve(L, &src, h, resolve);
  /* From here on nothing raises until perform has returned. */
  code = ldbx_each_header(L, headers, add_header, h);
  if (code == DBX_HTTP_OK) code = dbx_http_perform(h, &r, &resp);
  if (code == DBX_HTTP_NOMEM) {
    dbx_http_end(h);
    return luaL_error(L, "not enough memory");
  }
  if (code != DBX_HTTP_OK) {
    lua_pushnil(L);
    lua_pushstring(L, dbx_http_code_name(code));
    lua_pushstring(L, dbx_http_message(h));
    dbx_http_end(h);
    return 3;
  }
  ldbx_push_response(L, &resp);
  dbx_http_end(h);
  return 1;
}

static const luaL_Reg http_methods[] = {
  {"request", http_request},
  {"close", http_release},
  {NULL, NULL},
};

void ldbx_http_init(lua_State *L) {
  ldbx_create_meta(L, LDBX_HTTP_MT, http_methods, http_release, http_tostring);
}
