/* Lua 5.1 (LuaJIT 2.1) <-> 5.4 shims: only what the ldbx_*.c files call.
 * Included by ldbx.h, after lua.h and lauxlib.h. OpenResty's LuaJIT 2.1 already
 * declares luaL_setfuncs, luaL_setmetatable and luaL_newlib; redefining them breaks
 * the build, so the fallbacks are for PUC-Rio 5.1 only (static inline: a file that
 * does not call one of them must not warn). */
#ifndef DBX_COMPAT_H
#define DBX_COMPAT_H

#if LUA_VERSION_NUM < 502
#  define lua_rawlen(L, i) lua_objlen((L), (i))
#  ifndef luaL_newlib
static inline void ldbx_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
static inline void ldbx_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#    define luaL_setfuncs(L, l, n) ldbx_setfuncs((L), (l), (n))
#    define luaL_setmetatable(L, t) ldbx_setmetatable((L), (t))
#    define luaL_newlibtable(L, l) lua_createtable((L), 0, sizeof(l) / sizeof((l)[0]) - 1)
#    define luaL_newlib(L, l) (luaL_newlibtable((L), (l)), luaL_setfuncs((L), (l), 0))
#  endif
#endif

#if LUA_VERSION_NUM < 504
/* 5.1 has no user values; we never ask for any. */
#  define lua_newuserdatauv(L, sz, nuv) lua_newuserdata((L), (sz))
#endif

#endif
