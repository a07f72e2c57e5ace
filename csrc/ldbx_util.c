/* Helpers shared by the binding files: error returns, integer arguments, metatables.
 * Declared in ldbx.h. */
#include <stdint.h>

#include "ldbx.h"

int ldbx_push_fail3(lua_State *L, const char *code, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, code);
  lua_pushstring(L, msg);
  return 3;
}

int ldbx_is_int_in(lua_State *L, int idx, lua_Number lo, lua_Number hi, lua_Number *out) {
  lua_Number v;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  v = lua_tonumber(L, idx);
  if (!(v >= lo && v <= hi) || v != (lua_Number)(long long)v) return 0;
  *out = v;
  return 1;
}

long ldbx_check_ms(lua_State *L, int idx) {
  lua_Number v = 0;
  luaL_argcheck(L, ldbx_is_int_in(L, idx, 0, (lua_Number)INT32_MAX, &v), idx,
                "must be a non-negative integer (milliseconds, < 2^31)");
  return (long)v;
}

void ldbx_create_meta(lua_State *L, const char *name, const luaL_Reg *methods,
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
