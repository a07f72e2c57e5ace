/* The dbxauth.listener userdata: a dbx_listener (ldbx_listener owns it until close
 * or __gc) for the U2M browser callback, with wait(), respond() and port(). */
#include <string.h>

#include "ldbx.h"

#include "dbx_listen.h"

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

/* core.listen{ ports = {...} } -> listener | nil, code, msg */
int ldbx_core_listen(lua_State *L) {
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
    if (!ldbx_is_int_in(L, -1, 0, 65535, &v)) luaL_argerror(L, 1, ports_what);
    ports[i] = (int)v;
    lua_pop(L, 1);
  }
  u = (ldbx_listener *)lua_newuserdatauv(L, sizeof *u, 0);
  u->l = NULL;                     /* closed until acquired */
  luaL_setmetatable(L, LDBX_LISTENER_MT);
  code = dbx_listen_open(ports, n, &u->l, msg, sizeof msg);
  if (code == DBX_LISTEN_NOMEM) return luaL_error(L, "not enough memory");
  if (code != DBX_LISTEN_OK) return ldbx_push_fail3(L, dbx_listen_code_name(code), msg);
  return 1;
}

static int listener_port(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)dbx_listen_port(check_open_listener(L)));
  return 1;
}

/* l:wait(timeout_ms) -> { method, target, path, query = {..}, raw_query } | nil, code, msg */
static int listener_wait(lua_State *L) {
  dbx_listener *l = check_open_listener(L);
  long ms = ldbx_check_ms(L, 2);
  dbx_req req;
  char line[DBX_LISTEN_MAX_HEAD];
  const char *base;
  size_t len;
  dbx_listen_code code = dbx_listen_wait(l, ms, &req);
  if (code != DBX_LISTEN_OK) return ldbx_push_fail3(L, dbx_listen_code_name(code), dbx_listen_message(l));
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
  lua_pushcfunction(L, ldbx_core_parse_query);
  lua_getfield(L, -2, "raw_query");
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2)) {          /* unreachable: dbx_req_parse checked the encoding */
    ldbx_listener *u = check_listener(L);
    if (u->l != NULL && dbx_listen_pending(u->l))
      (void)dbx_listen_respond(u->l, 400, "text/plain", 10, "Bad request.\n", 13);
    return ldbx_push_fail3(L, "bad_request", "bad request: invalid percent-encoding in the query");
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
  if (code != DBX_LISTEN_OK) return ldbx_push_fail3(L, dbx_listen_code_name(code), dbx_listen_message(l));
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

void ldbx_listen_init(lua_State *L) {
  ldbx_create_meta(L, LDBX_LISTENER_MT, listener_methods, listener_release, listener_tostring);
}
