std = "max"
max_line_length = 120
codes = true
self = false   -- methods keep `self` even when they do not use it
exclude_files = { "build/", "lua_modules/", "lua_modules_jit/", ".luarocks/" }
files["spec/"] = { std = "+busted" }
files["spec/support/fake/"] = { std = "ngx_lua" }
files["lua/dbxauth/transport/ngx.lua"] = { std = "ngx_lua" }
files["lua/dbxauth/nginx.lua"] = { std = "ngx_lua" }
files["spec/support/nginx_gw.lua"] = { std = "+ngx_lua" }   -- also serves handlers inside nginx
