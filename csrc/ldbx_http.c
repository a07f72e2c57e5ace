/* The dbxauth.http userdata: a dbx_http handle (ldbx_http owns it until close or
 * __gc), and request(), which checks every field of the request table before
 * anything is sent and turns the dbx_http response into a table. */
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

/* ---- request(req): read and check every field before anything is sent ---- */

#define REQ 2   /* stack index of the request table */
#define MS_WHAT "must be a positive integer (milliseconds, < 2^31)"

static int field_error(lua_State *L, const char *field, const char *what) {
  return luaL_argerror(L, REQ, lua_pushfstring(L, "field '%s' %s", field, what));
}

/* Leaves the field's value on the stack, which keeps any string pointer we take
 * from it alive until request() returns. */
static const char *opt_string(lua_State *L, const char *field, size_t *len) {
  int t;
  lua_getfield(L, REQ, field);
  t = lua_type(L, -1);
  if (t == LUA_TNIL) return NULL;
  if (t != LUA_TSTRING) field_error(L, field, "must be a string");
  return lua_tolstring(L, -1, len);
}

static const char *opt_path(lua_State *L, const char *field) {
  size_t len = 0;
  const char *s = opt_string(L, field, &len);
  if (s != NULL && strlen(s) != len) field_error(L, field, "contains a NUL byte");
  return s;
}

static lua_Number opt_number(lua_State *L, const char *field, lua_Number def,
                             lua_Number min, lua_Number max, const char *what) {
  lua_Number v = def;
  lua_getfield(L, REQ, field);
  if (!lua_isnil(L, -1) && !ldbx_is_int_in(L, -1, min, max, &v)) field_error(L, field, what);
  lua_pop(L, 1);
  return v;
}

static int opt_boolean(lua_State *L, const char *field) {
  int v;
  lua_getfield(L, REQ, field);
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN) field_error(L, field, "must be a boolean");
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Checks types only; the headers are handed to dbx_http in a second pass that
 * cannot raise, after every other field has been checked. Returns the stack
 * index of the headers table, or 0. */
static int check_headers(lua_State *L) {
  int idx;
  lua_getfield(L, REQ, "headers");
  idx = lua_gettop(L);
  if (lua_isnil(L, idx)) return 0;
  if (!lua_istable(L, idx)) field_error(L, "headers", "must be a table");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) field_error(L, "headers", "must map names (strings) to values");
    if (lua_type(L, -1) != LUA_TSTRING) {
      /* the name only, and only if it is a token: names are not secrets, values may be */
      size_t nlen;
      const char *name = lua_tolstring(L, -2, &nlen);
      if (dbx_http_is_token(name, nlen) && nlen <= 64)
        field_error(L, "headers", lua_pushfstring(L, "has a non-string value for \"%s\"", name));
      field_error(L, "headers", "has a non-string value");
    }
    lua_pop(L, 1);
  }
  return idx;
}

static dbx_http_code add_headers(lua_State *L, dbx_http *h, int idx) {
  dbx_http_code code = DBX_HTTP_OK;
  if (idx == 0) return code;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t nlen, vlen;
    const char *name = lua_tolstring(L, -2, &nlen);
    const char *value = lua_tolstring(L, -1, &vlen);
    code = dbx_http_add_header(h, name, nlen, value, vlen);
    lua_pop(L, 1);
    if (code != DBX_HTTP_OK) {
      lua_pop(L, 1);
      break;
    }
  }
  return code;
}

/* Stack index of the resolve list, or 0. Raw access from here on: no Lua code runs. */
static int check_resolve(lua_State *L) {
  int idx, i, n;
  lua_getfield(L, REQ, "resolve");
  idx = lua_gettop(L);
  if (lua_isnil(L, idx)) return 0;
  if (!lua_istable(L, idx)) field_error(L, "resolve", "must be a list of strings");
  n = (int)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING) field_error(L, "resolve", "must be a list of strings");
    lua_pop(L, 1);
  }
  return idx;
}

static void add_resolve(lua_State *L, dbx_http *h, int idx) {
  int i, n;
  if (idx == 0) return;
  n = (int)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, idx, i);
    s = lua_tolstring(L, -1, &len);
    if (dbx_http_add_resolve(h, s, len) != 0)
      field_error(L, "resolve", "entries must look like \"host:port:address\"");
    lua_pop(L, 1);
  }
}

static void push_response(lua_State *L, const dbx_http_resp *r) {
  dbx_hdr_iter it;
  const char *name, *val;
  size_t nlen, vlen;
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)r->status);
  lua_setfield(L, -2, "status");
  lua_newtable(L);
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
}

static int http_request(lua_State *L) {
  dbx_http *h;
  dbx_http_req r;
  dbx_http_resp resp;
  dbx_http_code code;
  int headers, resolve;

  (void)check_open(L);
  luaL_checktype(L, REQ, LUA_TTABLE);
  lua_settop(L, REQ);
  luaL_checkstack(L, 24, "dbxauth.http request");
  memset(&r, 0, sizeof r);

  /* lua_getfield may run __index metamethods, i.e. any Lua code */
  r.method = opt_string(L, "method", &r.method_len);
  r.url = opt_string(L, "url", &r.url_len);
  if (r.url == NULL) field_error(L, "url", "is required");
  r.body = opt_string(L, "body", &r.body_len);
  r.timeout_ms = (long)opt_number(L, "timeout_ms", (lua_Number)DBX_HTTP_DEFAULT_TIMEOUT_MS, 1,
                                  (lua_Number)INT32_MAX, MS_WHAT);
  r.max_body = (size_t)opt_number(L, "max_body", (lua_Number)DBX_HTTP_DEFAULT_MAX_BODY, 0,
                                  9007199254740992.0, "must be a non-negative integer (bytes)");
  r.ca_file = opt_path(L, "ca_file");
  r.skip_verify = opt_boolean(L, "skip_verify");
  r.no_proxy = opt_boolean(L, "no_proxy");
  headers = check_headers(L);
  resolve = check_resolve(L);

  /* ...including code that closed this handle: look again, then touch it. */
  h = check_open(L);
  dbx_http_begin(h);
  add_resolve(L, h, resolve);
  /* From here on nothing raises until perform has returned. */
  code = add_headers(L, h, headers);
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
  push_response(L, &resp);
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
