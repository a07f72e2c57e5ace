-- The credential chain (decision D10): an ordered list of providers, each deciding from its
-- context alone whether it applies (the Go SDK's order, restricted to what dbxauth supports).
-- Adding an auth type is one file in providers/ plus one row here.
--
--   chain.resolve(session) -> creds | nil, err   (kept as session.creds)
--   chain.token(session, opts) -> token | nil, err
--
-- An explicit auth_type names one provider: only that one is tried, and its failure is the
-- answer. Otherwise the providers that apply are tried in order and the first that produces
-- credentials wins, as in the Go SDK (in GitHub Actions on Azure, github-oidc fails and
-- github-oidc-azure signs in); when none does, the first failure is the answer rather than Go's
-- "cannot configure" (a wrong client secret says so, as in the Python SDK).
local oauth = require "dbxauth.oauth"

local _M = {}

-- (The parentheses keep require's second result, the file name, out of the lists.)
_M.CHAIN = {
  require "dbxauth.providers.pat",
  require "dbxauth.providers.basic",
  require "dbxauth.providers.oauth_m2m",
  require "dbxauth.providers.databricks_cli",
  require "dbxauth.providers.metadata_service",
  require "dbxauth.providers.github_oidc",
  require "dbxauth.providers.azure_devops_oidc",
  require "dbxauth.providers.env_oidc",
  require "dbxauth.providers.file_oidc",
  require "dbxauth.providers.github_oidc_azure",
  require "dbxauth.providers.azure_msi",
  require "dbxauth.providers.azure_client_secret",
  (require "dbxauth.providers.azure_cli"),
  require "dbxauth.providers.google_credentials",
  (require "dbxauth.providers.google_id"),
}

-- Chosen only by auth_type: a browser must never open by surprise.
_M.ONLY_FORCED = {
  (require "dbxauth.providers.external_browser"),
}

_M.BY_NAME = {}
for _, p in ipairs(_M.CHAIN) do _M.BY_NAME[p.name] = p end
for _, p in ipairs(_M.ONLY_FORCED) do _M.BY_NAME[p.name] = p end

-- Auth types the SDKs know that need cloud-specific machinery dbxauth does not carry.
_M.FOREIGN = {}
for _, name in ipairs { "runtime", "runtime-oauth", "model-serving" } do
  _M.FOREIGN[name] = true
end

-- Environment variables that hold credentials without being attributes (a provider's
-- `secret_env`): masked in messages like the sensitive attributes (session:secrets).
_M.SECRET_ENV = {}
for _, p in ipairs(_M.CHAIN) do
  for _, name in ipairs(p.secret_env or {}) do _M.SECRET_ENV[#_M.SECRET_ENV + 1] = name end
end

function _M.names()
  local out = {}
  for i, p in ipairs(_M.CHAIN) do out[i] = p.name end
  for _, p in ipairs(_M.ONLY_FORCED) do out[#out + 1] = p.name end
  return out
end

local DOCS = "https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication"
local NO_CREDENTIALS = "default auth: cannot configure default credentials, please check " .. DOCS
  .. " to configure credentials for your preferred authentication method"

-- Returns creds; or nil, err; or false when the provider found out it does not apply after all
-- (the databricks CLI saying OAuth is not configured for this host).
local function try(s, p)
  s.trying = p.name   -- token requests made while configuring carry auth/<name>
  local creds, err = p.configure(s.ctx)
  if creds == false then return false end
  if creds then
    -- Dry run, as the SDKs do: a provider that cannot produce headers is reported now.
    local h
    h, err = creds.headers()
    if h then return creds end
  end
  local fields = { code = err.code, status = err.status, hint = err.hint, cause = err,
                   oauth_error = err.oauth_error, error_code = err.error_code }
  return nil, s:config_error("default auth: " .. p.name .. ": " .. err.message, fields)
end

local function use(s, p, creds)
  s.state.values.auth_type = p.name
  if not s.state.sources.auth_type then s.state.sources.auth_type = "resolved" end
  s.creds = creds
  return creds
end

local function forced(s, name)
  local p = _M.BY_NAME[name]
  if not p then
    if _M.FOREIGN[name] then
      return nil, s:config_error(name .. " auth: not supported by dbxauth", {
        hint = "dbxauth supports " .. table.concat(_M.names(), ", "),
      })
    end
    return nil, s:config_error('default auth: auth type "' .. name .. '" not found, please check '
      .. DOCS .. " for a list of supported auth types")
  end
  if not p.applies(s.ctx) then
    -- A provider that can say what is missing says it (Go's texts for azure-devops-oidc).
    local why = p.explain and p.explain(s.ctx)
    if why then
      return nil, s:config_error("default auth: " .. name .. ": " .. why.message, { hint = why.hint })
    end
    return nil, s:config_error(name .. " auth: not configured")
  end
  local creds, err = try(s, p)
  if creds == false then return nil, s:config_error(name .. " auth: not configured") end
  if not creds then return nil, err end
  return use(s, p, creds)
end

local function default_chain(s)
  local first
  for _, p in ipairs(_M.CHAIN) do
    if p.applies(s.ctx) then
      local creds, err = try(s, p)
      if creds then return use(s, p, creds) end
      if creds == nil then first = first or err end
    end
  end
  if first then return nil, first end
  return nil, s:config_error(NO_CREDENTIALS, {
    hint = "set host with a token, username and password, or client_id and client_secret "
      .. "(arguments, DATABRICKS_* environment variables or a ~/.databrickscfg profile)",
  })
end

-- cfg:token(): the credentials' token; opts.force_refresh fetches a new one first. Whatever
-- the provider keeps (a cache entry with its refresh token, a parsed response), the caller
-- gets one shape (oauth.public_token): normalised here, where every auth type passes.
function _M.token(s, opts)
  local creds, err = s:credentials()
  if not creds then return nil, err end
  local tok
  if opts and opts.force_refresh and creds.force_refresh then
    tok, err = creds.force_refresh()
  else
    if opts and opts.force_refresh and creds.source then creds.source:invalidate() end
    tok, err = creds.token()
  end
  if not tok then return nil, err end
  return oauth.public_token(tok)
end

function _M.resolve(s)
  local ok, err = s:prepare()
  if not ok then return nil, err end
  local name = s.state.values.auth_type
  if name then return forced(s, name) end
  return default_chain(s)
end

return _M
