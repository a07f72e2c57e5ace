/* dbxauth.core: the Lua binding. The only file that knows Lua; the mechanism
 * lives in dbx_encode / dbx_crypto / dbx_http, which are plain C.
 *
 * Errors follow liolib: caller mistakes (wrong types, closed handle) raise;
 * failures of the environment or of the peer return nil, code, message. */
#include <stdint.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/err.h>

#include <lua.h>
#include <lauxlib.h>

#include "dbx_compat.h"
#include "dbx_crypto.h"
#include "dbx_encode.h"
#include "dbx_file.h"
#include "dbx_http.h"
#include "dbx_listen.h"
#include "dbx_time.h"

#define LDBX_VERSION "0.1.0"
#define LDBX_HTTP_MT "dbxauth.http"
#define LDBX_RANDOM_MAX 4096
#define LDBX_LOCAL_BUF 512

int luaopen_dbxauth_core(lua_State *L);

/* ---- scratch memory ----
 * Small results are built in a C array on the stack; large ones in a userdata
 * "box" on the Lua stack, so a Lua error raised in between cannot leak them. */

static char *scratch(lua_State *L, char *local, size_t need) {
  if (need <= LDBX_LOCAL_BUF) return local;
  return (char *)lua_newuserdatauv(L, need, 0);
}

/* Pushes the result, then drops the box (if one was made) from under it. */
static void push_scratch(lua_State *L, const char *local, const char *p, size_t len) {
  lua_pushlstring(L, p, len);
  if (p != local) lua_remove(L, -2);
}

static int push_fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

/* ---- encodings ---- */

static int b64_encode_impl(lua_State *L, int url) {
  size_t n, len;
  int ok;
  const char *s = luaL_checklstring(L, 1, &n);
  char local[LDBX_LOCAL_BUF], *out;
  len = dbx_b64_encoded_len(n, url, &ok);
  if (!ok) return luaL_error(L, "string too large to encode");
  out = scratch(L, local, len);
  dbx_b64_encode(out, (const unsigned char *)s, n, url);
  push_scratch(L, local, out, len);
  return 1;
}

static int b64_decode_impl(lua_State *L, int url) {
  size_t n, len = 0;
  const char *s = luaL_checklstring(L, 1, &n);
  char local[LDBX_LOCAL_BUF], *out = scratch(L, local, dbx_b64_decoded_max(n));
  if (dbx_b64_decode((unsigned char *)out, s, n, url, &len) != 0)
    return push_fail(L, url ? "invalid base64url" : "invalid base64");
  push_scratch(L, local, out, len);
  return 1;
}

static int l_b64_encode(lua_State *L) { return b64_encode_impl(L, 0); }
static int l_b64url_encode(lua_State *L) { return b64_encode_impl(L, 1); }
static int l_b64_decode(lua_State *L) { return b64_decode_impl(L, 0); }
static int l_b64url_decode(lua_State *L) { return b64_decode_impl(L, 1); }

static int pct_encode_impl(lua_State *L, int form) {
  size_t n, len;
  int ok;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  char local[LDBX_LOCAL_BUF], *out;
  len = dbx_pct_encoded_len(s, n, form, &ok);
  if (!ok) return luaL_error(L, "string too large to encode");
  out = scratch(L, local, len);
  dbx_pct_encode(out, s, n, form);
  push_scratch(L, local, out, len);
  return 1;
}

static int l_url_encode(lua_State *L) { return pct_encode_impl(L, 0); }
static int l_form_encode(lua_State *L) { return pct_encode_impl(L, 1); }

static int l_url_decode(lua_State *L) {
  size_t n, len = 0;
  const char *s = luaL_checklstring(L, 1, &n);
  int plus = lua_toboolean(L, 2);
  char local[LDBX_LOCAL_BUF], *out = scratch(L, local, n);
  if (dbx_pct_decode(out, s, n, plus, &len) != 0) return push_fail(L, "invalid percent-encoding");
  push_scratch(L, local, out, len);
  return 1;
}

static int l_parse_query(lua_State *L) {
  size_t n, klen, vlen, len;
  const char *s = luaL_checklstring(L, 1, &n), *k, *v;
  char local[LDBX_LOCAL_BUF], *buf;
  dbx_query_iter it;
  int t;
  lua_settop(L, 1);
  buf = scratch(L, local, n);   /* any decoded key or value fits in n bytes */
  lua_newtable(L);
  t = lua_gettop(L);
  dbx_query_init(&it, s, n);
  while (dbx_query_next(&it, &k, &klen, &v, &vlen)) {
    if (dbx_pct_decode(buf, k, klen, 1, &len) != 0) return push_fail(L, "invalid percent-encoding");
    lua_pushlstring(L, buf, len);
    lua_pushvalue(L, -1);
    lua_rawget(L, t);
    if (!lua_isnil(L, -1)) {          /* first occurrence wins */
      lua_pop(L, 2);
      /* a later duplicate must still be well-formed */
      if (dbx_pct_decode(buf, v, vlen, 1, &len) != 0) return push_fail(L, "invalid percent-encoding");
      continue;
    }
    lua_pop(L, 1);
    if (dbx_pct_decode(buf, v, vlen, 1, &len) != 0) return push_fail(L, "invalid percent-encoding");
    lua_pushlstring(L, buf, len);
    lua_rawset(L, t);
  }
  return 1;
}

/* ---- crypto ---- */

static int l_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char buf[LDBX_RANDOM_MAX];
  char err[256];
  luaL_argcheck(L, n >= 1 && n <= LDBX_RANDOM_MAX, 1, "out of range (1-4096)");
  if (dbx_random(buf, (size_t)n, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "random: %s", err);
    return 2;
  }
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}

static int l_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char md[DBX_SHA256_LEN];
  char err[256];
  if (dbx_sha256(s, n, md, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "sha256: %s", err);
    return 2;
  }
  lua_pushlstring(L, (const char *)md, sizeof md);
  return 1;
}

/* core.now() -> seconds since the epoch, sub-second precision. */
static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)dbx_now());
  return 1;
}

/* core.sleep(seconds): blocks the thread; never call it inside nginx. */
static int l_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && s <= 86400, 1, "seconds out of range");
  dbx_sleep((double)s);
  return 0;
}

static int l_versions(lua_State *L) {
  const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, v->version);
  lua_setfield(L, -2, "curl");
  lua_pushstring(L, v->ssl_version ? v->ssl_version : "none");
  lua_setfield(L, -2, "ssl");
  lua_pushstring(L, LDBX_VERSION);
  lua_setfield(L, -2, "core");
  return 1;
}

/* ---- HTTP client userdata ---- */

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

static int l_http(lua_State *L) {
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
  lua_Number v;
  lua_getfield(L, REQ, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  if (lua_type(L, -1) != LUA_TNUMBER) field_error(L, field, what);
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= min && v <= max) || v != (lua_Number)(long long)v) field_error(L, field, what);
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

/* ---- shared by the listener and file functions ---- */

static int push_fail3(lua_State *L, const char *code, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, code);
  lua_pushstring(L, msg);
  return 3;
}

/* A Lua number that is an integer in [lo, hi]. */
static int is_int_in(lua_State *L, int idx, lua_Number lo, lua_Number hi, lua_Number *out) {
  lua_Number v;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  v = lua_tonumber(L, idx);
  if (!(v >= lo && v <= hi) || v != (lua_Number)(long long)v) return 0;
  *out = v;
  return 1;
}

static long check_ms(lua_State *L, int idx) {
  lua_Number v = 0;
  luaL_argcheck(L, is_int_in(L, idx, 0, (lua_Number)INT32_MAX, &v), idx,
                "must be a non-negative integer (milliseconds, < 2^31)");
  return (long)v;
}

/* Releases with `release`, shows with `tostring`; methods in __index. */
static void create_meta(lua_State *L, const char *name, const luaL_Reg *methods,
                        lua_CFunction release, lua_CFunction tostring) {
  if (luaL_newmetatable(L, name)) {
    if (methods != NULL) {
      lua_newtable(L);
      luaL_setfuncs(L, methods, 0);
      lua_setfield(L, -2, "__index");
    }
    lua_pushcfunction(L, release);
    lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
    lua_pushcfunction(L, release);
    lua_setfield(L, -2, "__close");
#endif
    if (tostring != NULL) {
      lua_pushcfunction(L, tostring);
      lua_setfield(L, -2, "__tostring");
    }
    lua_pushstring(L, name);          /* 5.4 sets it too; LuaJIT does not */
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}

/* ---- loopback listener (dbx_listen): core.listen{ ports = {...} } ---- */

#define LDBX_LISTENER_MT "dbxauth.listener"
#define LDBX_LISTEN_MAX_PORTS 1024

typedef struct ldbx_listener {
  dbx_listener *l;   /* NULL == closed */
} ldbx_listener;

static ldbx_listener *check_listener(lua_State *L) {
  return (ldbx_listener *)luaL_checkudata(L, 1, LDBX_LISTENER_MT);
}

static dbx_listener *check_open_listener(lua_State *L) {
  ldbx_listener *u = check_listener(L);
  if (u->l == NULL) luaL_error(L, "attempt to use a closed dbxauth.listener");
  return u->l;
}

/* close, __gc and __close: idempotent. A request still owed a response gets a 500. */
static int listener_release(lua_State *L) {
  ldbx_listener *u = check_listener(L);
  if (u->l != NULL) {
    dbx_listen_free(u->l);
    u->l = NULL;
  }
  return 0;
}

static int listener_tostring(lua_State *L) {
  ldbx_listener *u = check_listener(L);
  if (u->l == NULL) {
    lua_pushstring(L, "dbxauth.listener (closed)");
  } else {
    int port = dbx_listen_port(u->l);
    if (dbx_listen_has_ipv6(u->l))
      lua_pushfstring(L, "dbxauth.listener (127.0.0.1:%d, [::1]:%d)", port, port);
    else
      lua_pushfstring(L, "dbxauth.listener (127.0.0.1:%d)", port);
  }
  return 1;
}

static int l_listen(lua_State *L) {
  static const char ports_what[] = "field 'ports' must be a list of 1-1024 port numbers (integers 0-65535)";
  int ports[LDBX_LISTEN_MAX_PORTS];
  size_t n, i;
  char msg[256];
  ldbx_listener *u;
  dbx_listen_code code;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "ports");
  if (!lua_istable(L, -1)) luaL_argerror(L, 1, ports_what);
  n = (size_t)lua_rawlen(L, -1);
  if (n == 0 || n > LDBX_LISTEN_MAX_PORTS) luaL_argerror(L, 1, ports_what);
  for (i = 0; i < n; i++) {
    lua_Number v = 0;
    lua_rawgeti(L, -1, (int)i + 1);
    if (!is_int_in(L, -1, 0, 65535, &v)) luaL_argerror(L, 1, ports_what);
    ports[i] = (int)v;
    lua_pop(L, 1);
  }
  u = (ldbx_listener *)lua_newuserdatauv(L, sizeof *u, 0);
  u->l = NULL;                     /* closed until acquired */
  luaL_setmetatable(L, LDBX_LISTENER_MT);
  code = dbx_listen_open(ports, n, &u->l, msg, sizeof msg);
  if (code == DBX_LISTEN_NOMEM) return luaL_error(L, "not enough memory");
  if (code != DBX_LISTEN_OK) return push_fail3(L, dbx_listen_code_name(code), msg);
  return 1;
}

static int listener_port(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)dbx_listen_port(check_open_listener(L)));
  return 1;
}

/* l:wait(timeout_ms) -> { method, target, path, query = {..}, raw_query } | nil, code, msg */
static int listener_wait(lua_State *L) {
  dbx_listener *l = check_open_listener(L);
  long ms = check_ms(L, 2);
  dbx_req req;
  char line[DBX_LISTEN_MAX_HEAD];
  const char *base;
  size_t len;
  dbx_listen_code code = dbx_listen_wait(l, ms, &req);
  if (code != DBX_LISTEN_OK) return push_fail3(L, dbx_listen_code_name(code), dbx_listen_message(l));
  /* Copy the request line before anything allocates: an allocation may run a
   * finalizer, and a finalizer may close this listener and free the buffer. */
  base = req.method;
  len = (size_t)(req.target + req.target_len - base);
  memcpy(line, base, len);
  lua_settop(L, 1);
  lua_createtable(L, 0, 5);
  lua_pushlstring(L, line, req.method_len);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, line + (req.target - base), req.target_len);
  lua_setfield(L, -2, "target");
  lua_pushlstring(L, line + (req.path - base), req.path_len);
  lua_setfield(L, -2, "path");
  lua_pushlstring(L, line + (req.query - base), req.query_len);
  lua_setfield(L, -2, "raw_query");
  /* the same decoding as core.parse_query: form rules, first key wins */
  lua_pushcfunction(L, l_parse_query);
  lua_getfield(L, -2, "raw_query");
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2)) {          /* unreachable: dbx_req_parse checked the encoding */
    ldbx_listener *u = check_listener(L);
    if (u->l != NULL && dbx_listen_pending(u->l))
      (void)dbx_listen_respond(u->l, 400, "text/plain", 10, "Bad request.\n", 13);
    return push_fail3(L, "bad_request", "bad request: invalid percent-encoding in the query");
  }
  lua_pop(L, 1);
  lua_setfield(L, -2, "query");
  return 1;
}

/* l:respond(status, content_type, body) -> true | nil, code, msg */
static int listener_respond(lua_State *L) {
  dbx_listener *l;
  size_t ctlen, blen, i;
  lua_Integer status = luaL_checkinteger(L, 2);
  const char *ct = luaL_checklstring(L, 3, &ctlen);
  const char *body = luaL_optlstring(L, 4, "", &blen);
  dbx_listen_code code;
  luaL_argcheck(L, status >= 200 && status <= 599, 2, "status must be 200-599");
  luaL_argcheck(L, ctlen > 0 && ctlen <= DBX_LISTEN_MAX_CTYPE, 3, "content type must be 1-256 bytes");
  for (i = 0; i < ctlen; i++) {
    unsigned char c = (unsigned char)ct[i];
    luaL_argcheck(L, c >= 0x20 && c != 0x7F, 3, "content type must not contain control characters");
  }
  l = check_open_listener(L);
  if (!dbx_listen_pending(l)) return luaL_error(L, "dbxauth.listener: no request to respond to");
  code = dbx_listen_respond(l, (int)status, ct, ctlen, body, blen);
  if (code != DBX_LISTEN_OK) return push_fail3(L, dbx_listen_code_name(code), dbx_listen_message(l));
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg listener_methods[] = {
  {"wait", listener_wait},
  {"respond", listener_respond},
  {"port", listener_port},
  {"close", listener_release},
  {NULL, NULL},
};

/* ---- files (dbx_file): mkdir, write_atomic, read_file, lock, stat, getpid ---- */

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
  luaL_argcheck(L, is_int_in(L, idx, 0, 07777, &v), idx, "mode must be an integer 0-07777");
  return (unsigned)v;
}

static int file_result(lua_State *L, dbx_file_code code, const char *msg) {
  if (code == DBX_FILE_NOMEM) return luaL_error(L, "not enough memory");
  if (code != DBX_FILE_OK) return push_fail3(L, dbx_file_code_name(code), msg);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.mkdir(path, mode) -> true | nil, code, msg */
static int l_mkdir(lua_State *L) {
  const char *path = check_path(L, 1);
  unsigned mode = check_mode(L, 2);
  char msg[512];
  return file_result(L, dbx_mkdir(path, mode, msg, sizeof msg), msg);
}

/* core.write_atomic(path, data, mode) -> true | nil, code, msg */
static int l_write_atomic(lua_State *L) {
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
static int l_read_file(lua_State *L) {
  const char *path = check_path(L, 1);
  lua_Number max = LDBX_READ_DEFAULT_MAX;
  char msg[512];
  dbx_buf *b;
  dbx_file_code code;
  if (!lua_isnoneornil(L, 2))
    luaL_argcheck(L, is_int_in(L, 2, 0, 9007199254740992.0, &max), 2,
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
static int l_lock(lua_State *L) {
  const char *path = check_path(L, 1);
  long ms = check_ms(L, 2);
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
static int l_stat(lua_State *L) {
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

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)dbx_getpid());
  return 1;
}

/* ---- module ---- */

static const luaL_Reg http_methods[] = {
  {"request", http_request},
  {"close", http_release},
  {NULL, NULL},
};

static const luaL_Reg core_funcs[] = {
  {"random", l_random},
  {"sha256", l_sha256},
  {"b64_encode", l_b64_encode},
  {"b64_decode", l_b64_decode},
  {"b64url_encode", l_b64url_encode},
  {"b64url_decode", l_b64url_decode},
  {"url_encode", l_url_encode},
  {"form_encode", l_form_encode},
  {"url_decode", l_url_decode},
  {"parse_query", l_parse_query},
  {"versions", l_versions},
  {"now", l_now},
  {"sleep", l_sleep},
  {"http", l_http},
  {"listen", l_listen},
  {"mkdir", l_mkdir},
  {"write_atomic", l_write_atomic},
  {"read_file", l_read_file},
  {"lock", l_lock},
  {"stat", l_stat},
  {"getpid", l_getpid},
  {NULL, NULL},
};

int luaopen_dbxauth_core(lua_State *L) {
  /* The one piece of global state: libcurl's own, initialised once per process
   * (in nginx, by init_by_lua in the master before fork). */
  static int curl_ready = 0;
  if (!curl_ready) {
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    ERR_clear_error();
    if (rc != CURLE_OK) return luaL_error(L, "curl_global_init failed: %s", curl_easy_strerror(rc));
    curl_ready = 1;
  }
  create_meta(L, LDBX_HTTP_MT, http_methods, http_release, http_tostring);
  create_meta(L, LDBX_LISTENER_MT, listener_methods, listener_release, listener_tostring);
  create_meta(L, LDBX_LOCK_MT, lock_methods, lock_release, lock_tostring);
  create_meta(L, LDBX_BUFBOX_MT, NULL, bufbox_gc, NULL);
  luaL_newlib(L, core_funcs);
  return 1;
}
