/* Reading a request table (core.http's request, core.multi's items) into a dbx_http_req: every
 * field is type-checked before anything is sent, and a wrong one raises, naming the field (and
 * the item). Declared in ldbx.h.
 *
 * Two modes. The sequential client reads with lua_getfield (so __index may supply fields) and
 * leaves each value on the stack, which keeps the strings it points to alive. The concurrent
 * client reads dozens of items before it sends any, so it reads raw: no Lua code can run while
 * it reads, the item tables cannot change, and the strings they hold stay alive without
 * taking stack slots. */
#include <stdint.h>
#include <string.h>

#include "ldbx.h"

#include "dbx_headers.h"
#include "dbx_http.h"

#define MS_WHAT "must be a positive integer (milliseconds, < 2^31)"
#define BYTES_WHAT "must be a non-negative integer (bytes)"
#define MAX_BYTES 9007199254740992.0

static int field_error(lua_State *L, const ldbx_reqsrc *src, const char *field, const char *what) {
  if (src->item > 0)
    return luaL_argerror(L, src->arg, lua_pushfstring(L, "item %d: field '%s' %s", src->item, field, what));
  return luaL_argerror(L, src->arg, lua_pushfstring(L, "field '%s' %s", field, what));
}

/* Pushes t[field]. */
static int get(lua_State *L, const ldbx_reqsrc *src, int t, const char *field) {
  if (!src->raw) {
    lua_getfield(L, t, field);
  } else {
    lua_pushstring(L, field);
    lua_rawget(L, t);
  }
  return lua_type(L, -1);
}

/* A string field, or NULL. Read with getfield the value stays on the stack (the pointer lives
 * as long as the caller's frame); read raw it is popped (the table holds it). */
static const char *opt_string(lua_State *L, const ldbx_reqsrc *src, int t, const char *field, size_t *len) {
  const char *s = NULL;
  int type = get(L, src, t, field);
  if (type == LUA_TSTRING) s = lua_tolstring(L, -1, len);
  else if (type != LUA_TNIL) field_error(L, src, field, "must be a string");
  if (src->raw) lua_pop(L, 1);
  return s;
}

static const char *opt_path(lua_State *L, const ldbx_reqsrc *src, int t, const char *field) {
  size_t len = 0;
  const char *s = opt_string(L, src, t, field, &len);
  if (s != NULL && strlen(s) != len) field_error(L, src, field, "contains a NUL byte");
  return s;
}

/* 1 and *v when the field is set, 0 when it is nil. */
static int opt_number(lua_State *L, const ldbx_reqsrc *src, int t, const char *field, lua_Number min,
                      lua_Number max, const char *what, lua_Number *v) {
  int set = get(L, src, t, field) != LUA_TNIL;
  if (set && !ldbx_is_int_in(L, -1, min, max, v)) field_error(L, src, field, what);
  lua_pop(L, 1);
  return set;
}

static int opt_boolean(lua_State *L, const ldbx_reqsrc *src, int t, const char *field) {
  int v, type = get(L, src, t, field);
  if (type != LUA_TNIL && type != LUA_TBOOLEAN) field_error(L, src, field, "must be a boolean");
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* timeout_ms, else timeout (seconds, as the transports' requests carry it), else the default. */
static long read_timeout(lua_State *L, const ldbx_reqsrc *src) {
  lua_Number ms = (lua_Number)DBX_HTTP_DEFAULT_TIMEOUT_MS, s;
  if (opt_number(L, src, src->req, "timeout_ms", 1, (lua_Number)INT32_MAX, MS_WHAT, &ms)) return (long)ms;
  if (get(L, src, src->req, "timeout") != LUA_TNIL) {
    s = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(s > 0 && s * 1000 + 0.5 < (lua_Number)INT32_MAX))
      field_error(L, src, "timeout", "must be a positive number of seconds (< 2^31 ms)");
    ms = (lua_Number)(long)(s * 1000 + 0.5);
    if (ms < 1) ms = 1;
  }
  lua_pop(L, 1);
  return (long)ms;
}

/* Types only: the headers go to dbx_http in a second pass that cannot raise. Returns the stack
 * index of the headers table (left on the stack), or 0. */
static int check_headers(lua_State *L, const ldbx_reqsrc *src) {
  int idx, type = get(L, src, src->req, "headers");
  idx = lua_gettop(L);
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (type != LUA_TTABLE) field_error(L, src, "headers", "must be a table");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) field_error(L, src, "headers", "must map names (strings) to values");
    if (lua_type(L, -1) != LUA_TSTRING) {
      /* the name only, and only if it is a token: names are not secrets, values may be */
      size_t nlen;
      const char *name = lua_tolstring(L, -2, &nlen);
      if (dbx_http_is_token(name, nlen) && nlen <= 64)
        field_error(L, src, "headers", lua_pushfstring(L, "has a non-string value for \"%s\"", name));
      field_error(L, src, "headers", "has a non-string value");
    }
    lua_pop(L, 1);
  }
  return idx;
}

/* Stack index of the resolve list (left on the stack), or 0. */
int ldbx_check_resolve(lua_State *L, const ldbx_reqsrc *src, int t) {
  int idx, i, n, type = get(L, src, t, "resolve");
  idx = lua_gettop(L);
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (type != LUA_TTABLE) field_error(L, src, "resolve", "must be a list of strings");
  n = (int)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING) field_error(L, src, "resolve", "must be a list of strings");
    lua_pop(L, 1);
  }
  return idx;
}

void ldbx_read_options(lua_State *L, const ldbx_reqsrc *src, int t, dbx_http_req *r) {
  lua_Number max = (lua_Number)DBX_HTTP_DEFAULT_MAX_BODY;
  opt_number(L, src, t, "max_body", 0, MAX_BYTES, BYTES_WHAT, &max);
  r->max_body = (size_t)max;
  r->ca_file = opt_path(L, src, t, "ca_file");
  r->skip_verify = opt_boolean(L, src, t, "skip_verify");
  r->no_proxy = opt_boolean(L, src, t, "no_proxy");
}

void ldbx_read_request(lua_State *L, const ldbx_reqsrc *src, dbx_http_req *r, int *headers) {
  dbx_http_req o;
  lua_Number max;
  if (src->defaults != NULL) {
    o = *src->defaults;
  } else {
    /* the transport's options: from opts (its errors name that argument), else from the request */
    ldbx_reqsrc osrc = *src;
    memset(&o, 0, sizeof o);
    if (src->opts) {
      osrc.arg = src->opts;
      osrc.item = 0;
    }
    ldbx_read_options(L, &osrc, src->opts ? src->opts : src->req, &o);
  }
  memset(r, 0, sizeof *r);
  r->method = opt_string(L, src, src->req, "method", &r->method_len);
  r->url = opt_string(L, src, src->req, "url", &r->url_len);
  if (r->url == NULL) field_error(L, src, "url", "is required");
  r->body = opt_string(L, src, src->req, "body", &r->body_len);
  r->timeout_ms = read_timeout(L, src);
  r->max_body = o.max_body;
  if (src->opts || src->defaults) {
    if (opt_number(L, src, src->req, "max_body", 0, MAX_BYTES, BYTES_WHAT, &max)) r->max_body = (size_t)max;
  }
  r->ca_file = o.ca_file;
  r->skip_verify = o.skip_verify;
  r->no_proxy = o.no_proxy || ((src->opts || src->defaults) && opt_boolean(L, src, src->req, "no_proxy"));
  *headers = check_headers(L, src);
}

dbx_http_code ldbx_each_header(lua_State *L, int idx, ldbx_header_fn fn, void *ud) {
  dbx_http_code code = DBX_HTTP_OK;
  if (idx == 0) return code;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t nlen, vlen;
    const char *name = lua_tolstring(L, -2, &nlen);
    const char *value = lua_tolstring(L, -1, &vlen);
    code = fn(ud, name, nlen, value, vlen);
    lua_pop(L, 1);
    if (code != DBX_HTTP_OK) {
      lua_pop(L, 1);
      break;
    }
  }
  return code;
}
