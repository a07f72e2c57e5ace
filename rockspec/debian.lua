-- LuaRocks configuration for building dbxauth on Debian/Ubuntu from this checkout:
--   LUAROCKS_CONFIG=rockspec/debian.lua luarocks --lua-version 5.4 make --local rockspec/dbxauth-scm-1.rockspec
-- (LUAROCKS_CONFIG replaces your ~/.luarocks/config-5.x.lua for that one command; the system's
-- /etc/luarocks/config-5.x.lua is still read.)
variables = {
  -- Debian keeps curl/curl.h in the multiarch include directory, which LuaRocks does not search.
  CURL_INCDIR = "/usr/include/x86_64-linux-gnu",   -- aarch64-linux-gnu on arm64 (gcc -print-multiarch)
}
-- Debian's lua-cjson package (apt) provides cjson for 5.1 (LuaJIT) and 5.4, but it is not a rock:
-- without this line LuaRocks wants to download the rock, or, with --deps-mode=none, ends with
-- "Missing dependencies for dbxauth scm-1: lua-cjson (not installed)".
rocks_provided = { ["lua-cjson"] = "2.1.0-1" }
