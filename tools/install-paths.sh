#!/bin/sh
# Printed at the end of `make install`: what a shell (and nginx) needs to find dbxauth under
# PREFIX. Each interpreter is asked for its own default search path (with the variables that
# would change it removed), so nothing is printed for a prefix it already searches
# (/usr/local on Debian), and the exact lines for any other.
#   sh tools/install-paths.sh PREFIX LUA_VERSION(5.4|5.1) INTERPRETER
set -eu
prefix=$1 v=$2 lua=$3
share="$prefix/share/lua/$v" lib="$prefix/lib/lua/$v"
lpath="$share/?.lua;$share/?/init.lua"
cpath="$lib/?.so"
defaults=$(env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 \
  "$lua" -e 'io.write(package.path, "\n", package.cpath, "\n")' 2>/dev/null || true)
searched() {   # $1 = pattern list; true when every entry is on the interpreter's default path
  old_ifs=$IFS; IFS=';'
  for p in $1; do
    case ";$(echo "$defaults" | tr '\n' ';');" in *";$p;"*) ;; *) IFS=$old_ifs; return 1;; esac
  done
  IFS=$old_ifs
}
if [ "$v" = 5.4 ]; then pvar=LUA_PATH_5_4 cvar=LUA_CPATH_5_4 who="lua5.4"
else pvar=LUA_PATH cvar=LUA_CPATH who="LuaJIT (luajit)"; fi
if [ -n "$defaults" ] && searched "$lpath" && searched "$cpath"; then
  echo "dbxauth installed for $who in $prefix: on its default search path, nothing to set."
else
  echo "dbxauth installed for $who in $prefix. $prefix is not on its default search path; add to your shell:"
  echo "  export $pvar=\"$lpath;;\""
  echo "  export $cvar=\"$cpath;;\""
  if [ "$v" = 5.1 ]; then
    echo "and to nginx.conf (http block):"
    echo "  lua_package_path  \"$lpath;;\";"
    echo "  lua_package_cpath \"$cpath;;\";"
  fi
fi
if [ -f "$prefix/bin/dbxauth" ]; then
  case ":${PATH:-}:" in *":$prefix/bin:"*) ;; *) echo "The command is $prefix/bin/dbxauth (not on PATH: export PATH=\"$prefix/bin:\$PATH\")";; esac
fi
