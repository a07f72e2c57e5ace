-- LuaRocks build of dbxauth. On Debian (multiarch headers, lua-cjson from apt):
--   luarocks --lua-version 5.4 make --deps-mode=none \
--     CURL_INCDIR=/usr/include/x86_64-linux-gnu rockspec/dbxauth-scm-1.rockspec
rockspec_format = "3.0"
package = "dbxauth"
version = "scm-1"
source = { url = "git+https://example.invalid/dbxauth.git", branch = "main" }
description = {
  summary = "Databricks authentication for Lua: SDK-compatible configuration, PAT, basic and OAuth M2M",
  detailed = [[
Resolves a Databricks configuration exactly as the official SDKs and CLI do (explicit >
environment > ~/.databrickscfg), obtains credentials, and calls the Databricks REST API over
verified TLS with keep-alive and retries. C core on libcurl and OpenSSL.]],
  license = "Apache-2.0",
}
dependencies = { "lua >= 5.1", "lua-cjson" }
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    ["dbxauth.core"] = {
      sources = { "csrc/dbx_buf.c", "csrc/dbx_crypto.c", "csrc/dbx_easy.c", "csrc/dbx_encode.c", "csrc/dbx_file.c", "csrc/dbx_headers.c", "csrc/dbx_http.c", "csrc/dbx_listen.c", "csrc/dbx_multi.c", "csrc/dbx_req.c", "csrc/dbx_time.c", "csrc/dbx_xfer.c", "csrc/ldbx_core.c", "csrc/ldbx_file.c", "csrc/ldbx_http.c", "csrc/ldbx_listen.c", "csrc/ldbx_multi.c", "csrc/ldbx_req.c", "csrc/ldbx_util.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl", "ssl", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
    },
    ["dbxauth"] = "lua/dbxauth/init.lua",
    ["dbxauth.apierror"] = "lua/dbxauth/apierror.lua",
    ["dbxauth.apps"] = "lua/dbxauth/apps.lua",
    ["dbxauth.attributes"] = "lua/dbxauth/attributes.lua",
    ["dbxauth.azure"] = "lua/dbxauth/azure.lua",
    ["dbxauth.batch"] = "lua/dbxauth/batch.lua",
    ["dbxauth.cache"] = "lua/dbxauth/cache.lua",
    ["dbxauth.chain"] = "lua/dbxauth/chain.lua",
    ["dbxauth.cli"] = "lua/dbxauth/cli.lua",
    ["dbxauth.cli.args"] = "lua/dbxauth/cli/args.lua",
    ["dbxauth.cli.commands"] = "lua/dbxauth/cli/commands.lua",
    ["dbxauth.cli.describe"] = "lua/dbxauth/cli/describe.lua",
    ["dbxauth.cli.login"] = "lua/dbxauth/cli/login.lua",
    ["dbxauth.cli.logout"] = "lua/dbxauth/cli/logout.lua",
    ["dbxauth.cli.output"] = "lua/dbxauth/cli/output.lua",
    ["dbxauth.cli.profiles"] = "lua/dbxauth/cli/profiles.lua",
    ["dbxauth.cli.token"] = "lua/dbxauth/cli/token.lua",
    ["dbxauth.cli.util"] = "lua/dbxauth/cli/util.lua",
    ["dbxauth.config"] = "lua/dbxauth/config.lua",
    ["dbxauth.context"] = "lua/dbxauth/context.lua",
    ["dbxauth.discovery"] = "lua/dbxauth/discovery.lua",
    ["dbxauth.errors"] = "lua/dbxauth/errors.lua",
    ["dbxauth.google"] = "lua/dbxauth/google.lua",
    ["dbxauth.google_adc"] = "lua/dbxauth/google_adc.lua",
    ["dbxauth.headers"] = "lua/dbxauth/headers.lua",
    ["dbxauth.host"] = "lua/dbxauth/host.lua",
    ["dbxauth.http"] = "lua/dbxauth/http.lua",
    ["dbxauth.http1"] = "lua/dbxauth/http1.lua",
    ["dbxauth.httplog"] = "lua/dbxauth/httplog.lua",
    ["dbxauth.ini"] = "lua/dbxauth/ini.lua",
    ["dbxauth.nginx"] = "lua/dbxauth/nginx.lua",
    ["dbxauth.oauth"] = "lua/dbxauth/oauth.lua",
    ["dbxauth.profiles"] = "lua/dbxauth/profiles.lua",
    ["dbxauth.providers.azure_cli"] = "lua/dbxauth/providers/azure_cli.lua",
    ["dbxauth.providers.azure_client_secret"] = "lua/dbxauth/providers/azure_client_secret.lua",
    ["dbxauth.providers.azure_devops_oidc"] = "lua/dbxauth/providers/azure_devops_oidc.lua",
    ["dbxauth.providers.azure_msi"] = "lua/dbxauth/providers/azure_msi.lua",
    ["dbxauth.providers.basic"] = "lua/dbxauth/providers/basic.lua",
    ["dbxauth.providers.databricks_cli"] = "lua/dbxauth/providers/databricks_cli.lua",
    ["dbxauth.providers.env_oidc"] = "lua/dbxauth/providers/env_oidc.lua",
    ["dbxauth.providers.external_browser"] = "lua/dbxauth/providers/external_browser.lua",
    ["dbxauth.providers.file_oidc"] = "lua/dbxauth/providers/file_oidc.lua",
    ["dbxauth.providers.github_oidc"] = "lua/dbxauth/providers/github_oidc.lua",
    ["dbxauth.providers.github_oidc_azure"] = "lua/dbxauth/providers/github_oidc_azure.lua",
    ["dbxauth.providers.google_credentials"] = "lua/dbxauth/providers/google_credentials.lua",
    ["dbxauth.providers.google_id"] = "lua/dbxauth/providers/google_id.lua",
    ["dbxauth.providers.metadata_service"] = "lua/dbxauth/providers/metadata_service.lua",
    ["dbxauth.providers.oauth_m2m"] = "lua/dbxauth/providers/oauth_m2m.lua",
    ["dbxauth.providers.oidc"] = "lua/dbxauth/providers/oidc.lua",
    ["dbxauth.providers.pat"] = "lua/dbxauth/providers/pat.lua",
    ["dbxauth.redact"] = "lua/dbxauth/redact.lua",
    ["dbxauth.request"] = "lua/dbxauth/request.lua",
    ["dbxauth.session"] = "lua/dbxauth/session.lua",
    ["dbxauth.sharedtoken"] = "lua/dbxauth/sharedtoken.lua",
    ["dbxauth.subprocess"] = "lua/dbxauth/subprocess.lua",
    ["dbxauth.text"] = "lua/dbxauth/text.lua",
    ["dbxauth.tokencache"] = "lua/dbxauth/tokencache.lua",
    ["dbxauth.tokensource"] = "lua/dbxauth/tokensource.lua",
    ["dbxauth.transport"] = "lua/dbxauth/transport/init.lua",
    ["dbxauth.transport.curl"] = "lua/dbxauth/transport/curl.lua",
    ["dbxauth.transport.ngx"] = "lua/dbxauth/transport/ngx.lua",
    ["dbxauth.u2m"] = "lua/dbxauth/u2m.lua",
    ["dbxauth.url"] = "lua/dbxauth/url.lua",
    ["dbxauth.useragent"] = "lua/dbxauth/useragent.lua",
  },
  install = { bin = { dbxauth = "bin/dbxauth" } },
}
test = { type = "command", command = "make test" }
