/* A Lua interpreter linked with ASan and UBSan, for `make check`: the spec suite runs under it
 * against the sanitizer builds of dbxauth.core. Built twice: against liblua5.4
 * (build/asan/lua5.4, modules from build/asan/5.4) and against libluajit (build/asan/luajit,
 * modules from build/asan/jit).
 *
 * Why not LD_PRELOAD=libasan.so lua5.4: the variable is inherited by every process the specs
 * start (curl, nginx, openssl, bash, ...), and with the runtime preloaded into them glibc's
 * setlocale deadlocks at startup (curl --version hangs). Linked into this executable, the
 * runtime covers the interpreter, liblua and every C module it loads, and nothing else.
 *
 *   lua_asan script [args]     like `lua5.4 script [args]`: arg[0] = script, arg[-1] = argv[0] */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef LUA_OK
#define LUA_OK 0   /* Lua 5.1 / LuaJIT */
#endif

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L;
  int i, status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s script [args]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  lua_createtable(L, argc - 2, 2);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[1]) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  for (i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
  status = lua_pcall(L, argc - 2, 0, 1);
  if (status != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
