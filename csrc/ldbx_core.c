/* dbxauth.core: the module. luaopen_dbxauth_core, the function table, and the
 * functions that need no object: encodings, crypto, time, versions. The userdata
 * live in ldbx_http.c, ldbx_listen.c and ldbx_file.c; shared helpers in
 * ldbx_util.c. The ldbx_*.c files are the only ones that know Lua; the mechanism
 * lives in the dbx_*.c files, which are plain C.
 *
 * Errors follow liolib: caller mistakes (wrong types, closed handle) raise;
 * failures of the environment or of the peer return nil, code, message. */
#include <curl/curl.h>
#include <openssl/err.h>

#include "ldbx.h"

#include "dbx_crypto.h"
#include "dbx_encode.h"
#include "dbx_time.h"

#define LDBX_VERSION "0.1.0"
#define LDBX_RANDOM_MAX 4096
#define LDBX_LOCAL_BUF 512

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

/* Also what the listener decodes a callback's query with. */
int ldbx_core_parse_query(lua_State *L) {
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

/* core.rs256_sign(pem, data) -> signature | nil, msg. The message never quotes the key. */
static int l_rs256_sign(lua_State *L) {
  size_t klen, n, siglen = 0;
  const char *pem = luaL_checklstring(L, 1, &klen);
  const char *data = luaL_checklstring(L, 2, &n);
  unsigned char sig[DBX_RSA_SIG_MAX];
  char err[256];
  if (dbx_rs256_sign(pem, klen, data, n, sig, &siglen, err, sizeof err) != 0) return push_fail(L, err);
  lua_pushlstring(L, (const char *)sig, siglen);
  return 1;
}

/* core.rs256_verify(pem public key or certificate, data, sig) -> true | false | nil, msg. */
static int l_rs256_verify(lua_State *L) {
  size_t klen, n, slen;
  const char *pem = luaL_checklstring(L, 1, &klen);
  const char *data = luaL_checklstring(L, 2, &n);
  const char *sig = luaL_checklstring(L, 3, &slen);
  char err[256];
  int rc = dbx_rs256_verify(pem, klen, data, n, (const unsigned char *)sig, slen, err, sizeof err);
  if (rc < 0) return push_fail(L, err);
  lua_pushboolean(L, rc);
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

/* ---- module ---- */

static const luaL_Reg core_funcs[] = {
  {"random", l_random},
  {"sha256", l_sha256},
  {"rs256_sign", l_rs256_sign},
  {"rs256_verify", l_rs256_verify},
  {"b64_encode", l_b64_encode},
  {"b64_decode", l_b64_decode},
  {"b64url_encode", l_b64url_encode},
  {"b64url_decode", l_b64url_decode},
  {"url_encode", l_url_encode},
  {"form_encode", l_form_encode},
  {"url_decode", l_url_decode},
  {"parse_query", ldbx_core_parse_query},
  {"versions", l_versions},
  {"now", l_now},
  {"sleep", l_sleep},
  {"http", ldbx_core_http},
  {"multi", ldbx_core_multi},
  {"listen", ldbx_core_listen},
  {"mkdir", ldbx_core_mkdir},
  {"private_dir", ldbx_core_private_dir},
  {"clean_temps", ldbx_core_clean_temps},
  {"write_atomic", ldbx_core_write_atomic},
  {"read_file", ldbx_core_read_file},
  {"lock", ldbx_core_lock},
  {"stat", ldbx_core_stat},
  {"getpid", ldbx_core_getpid},
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
  ldbx_http_init(L);
  ldbx_multi_init(L);
  ldbx_listen_init(L);
  ldbx_file_init(L);
  luaL_newlib(L, core_funcs);
  return 1;
}

