#!/bin/sh
# CI check: the rockspec builds and installs with LuaRocks (offline, against Debian's
# lua-cjson), and the installed tree loads under Lua 5.4.
set -eu
cd "$(dirname "$0")/.."
# every Lua module and C source must be in the rockspec
for f in $(find lua -name '*.lua') csrc/*.c; do
  grep -q "\"$f\"" rockspec/dbxauth-scm-1.rockspec || { echo "rockspec: $f is not listed (python3 rockspec/sync.py)"; exit 1; }
done
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# luarocks builds in the source directory (it leaves dbxauth/core.so there): use a copy
src="$tree/src"
mkdir -p "$src"
cp -r csrc lua rockspec "$src"/
[ -d bin ] && cp -r bin "$src"/
# as the README says: rockspec/debian.lua declares apt's lua-cjson, so the dependency check passes
(cd "$src" && LUAROCKS_CONFIG=rockspec/debian.lua luarocks --lua-version 5.4 --tree "$tree" make \
  CURL_INCDIR="/usr/include/$multiarch" rockspec/dbxauth-scm-1.rockspec) >"$tree/build.log" 2>&1 \
  || { cat "$tree/build.log"; exit 1; }
if grep -q "Missing dependencies" "$tree/build.log"; then cat "$tree/build.log"; exit 1; fi
LUA_PATH_5_4="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua;;" \
LUA_CPATH_5_4="$tree/lib/lua/5.4/?.so;;" \
  lua5.4 -e 'local d = require "dbxauth"; local c = require "dbxauth.core"
    assert(package.searchpath("dbxauth.core", package.cpath):find("^'"$tree"'"), "core not from the rock tree")
    assert(c.b64url_encode("hi") == "aGk")
    print("rockspec: dbxauth " .. d.VERSION .. " installed and loaded from the LuaRocks tree")'
[ -x "$tree/bin/dbxauth" ] || [ ! -f bin/dbxauth ] || { echo "rockspec: bin/dbxauth not installed"; exit 1; }
