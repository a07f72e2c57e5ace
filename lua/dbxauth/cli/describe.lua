-- `dbxauth describe` and `dbxauth env`, as `databricks auth describe` / `auth env`
-- (cmd/auth/describe.go, env.go; the SDK's config_auth_details.go for the JSON shape).
local config = require "dbxauth.config"
local output = require "dbxauth.cli.output"
local util = require "dbxauth.cli.util"
local verify = require("dbxauth.cli.profiles").verify

local obj = output.obj
local MASK = "********"

-- The auth types that use each auth group's attributes: an attribute of another group is
-- marked "not used for auth type X" (the SDK's auth_types tags).
local GROUP_TYPES = {
  pat = { pat = true }, basic = { basic = true },
  oauth = { ["oauth-m2m"] = true, ["databricks-cli"] = true, ["external-browser"] = true, ["github-oidc"] = true,
            ["azure-devops-oidc"] = true, ["env-oidc"] = true, ["file-oidc"] = true },
  azure = { ["azure-cli"] = true, ["azure-msi"] = true, ["azure-client-secret"] = true,
            ["github-oidc-azure"] = true },
  google = { ["google-credentials"] = true, ["google-id"] = true },
  ["file-oidc"] = { ["file-oidc"] = true }, ["env-oidc"] = { ["env-oidc"] = true },
  ["metadata-service"] = { ["metadata-service"] = true },
}

local BY_NAME = {}
for _, a in ipairs(config.ATTRIBUTES) do BY_NAME[a.name] = a end

local function source_of(d, a, opts)
  if a.name == "profile" and opts.given.profile then return obj("type", "flag", "name", "--profile") end
  if a.name == "host" and opts.given.host then return obj("type", "flag", "name", "--host") end
  if a.name == "databricks_cli_path" then return obj("type", "dynamic configuration") end
  if a.source == "env" then return obj("type", "environment variable", "name", a.env) end
  if a.source == "file" then return obj("type", "config file", "name", d.config_file) end
  return obj("type", "dynamic configuration")
end

local function value_of(cfg, a, sensitive)
  local v = a.value
  if a.sensitive then v = sensitive and cfg:get(a.name) or MASK end
  if type(v) == "table" then v = table.concat(v, ",") end
  return tostring(v)
end

-- name -> { value, source, auth_type_mismatch }, and the names in the SDK's order.
local function configuration(cfg, opts)
  local conf, order = {}, {}
  local d = cfg and cfg:describe() or { attributes = {} }
  local auth_type = cfg and cfg.auth_type
  for _, a in ipairs(d.attributes) do
    local group = BY_NAME[a.name] and BY_NAME[a.name].group
    local mismatch = group ~= nil and auth_type ~= nil and not (GROUP_TYPES[group] or {})[auth_type]
    conf[a.name] = obj("value", value_of(cfg, a, opts.sensitive), "source", source_of(d, a, opts),
      "auth_type_mismatch", mismatch)
  end
  if not conf.profile then
    conf.profile = obj("value", opts.profile or "default", "source", obj("type", "dynamic configuration"),
      "auth_type_mismatch", false)
  end
  for _, a in ipairs(config.ATTRIBUTES) do
    if conf[a.name] then order[#order + 1] = a.name end
  end
  return conf, order
end

-- status: { ok, err, username, account_id } after the CLI's calls: the current user of a
-- workspace (the workspace list when that fails and an account id is set), the workspace list
-- of an account (the current user when that fails).
local function check(cfg)
  if not cfg then return { ok = false } end
  local res, err = verify(cfg)
  if res then
    local body = not cfg:is_account() and res.json and res:json() or nil
    return { ok = true, username = type(body) == "table" and body.userName or nil,
             account_id = cfg:is_account() and cfg.account_id or nil }
  end
  return { ok = false, err = err }
end

local function err_text(err)
  if err == nil then return "" end
  return type(err) == "table" and err.message or tostring(err)
end

local function render_json(ctx, cfg, st, conf, order)
  local c = obj()
  local names = {}
  for _, n in ipairs(order) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do c:set(n, conf[n]) end
  local e
  if not st.ok then e = obj("error_code", st.err and st.err.error_code or nil, "message", err_text(st.err)) end
  ctx.stdout(output.json(obj("status", st.ok and "success" or "error", "error", e,
    "username", st.username, "account_id", st.account_id,
    "details", obj("auth_type", cfg and cfg.auth_type or "", "host", cfg and cfg.host or nil, "configuration", c))))
end

local function render_text(ctx, cfg, st, conf, order)
  local out = {}
  if st.ok then
    out[#out + 1] = "Host: " .. tostring(cfg.host)
    if st.account_id then out[#out + 1] = "Account ID: " .. st.account_id end
    if st.username then out[#out + 1] = "User: " .. st.username end
    out[#out + 1] = "Authenticated with: " .. tostring(cfg.auth_type)
  else
    out[#out + 1] = "Unable to authenticate: " .. err_text(st.err)
  end
  out[#out + 1] = "-----"
  out[#out + 1] = "Current configuration:"
  for _, n in ipairs(order) do
    local v = conf[n]
    local src, mismatch = v.vals.source, v.vals.auth_type_mismatch
    local line = "  " .. (mismatch and "~" or "✓") .. " " .. n .. ": " .. v.vals.value
    if src.vals.type ~= "dynamic configuration" then
      line = line .. " (from " .. (src.vals.name and (src.vals.name .. " ") or "") .. src.vals.type
        .. (mismatch and (", not used for auth type " .. tostring(cfg.auth_type)) or "") .. ")"
    end
    out[#out + 1] = line
  end
  ctx.stdout(table.concat(out, "\n") .. "\n")
end

local function run_describe(ctx, opts)
  local profile = opts.profile
  if opts.host and not profile and (ctx.getenv("DATABRICKS_CONFIG_PROFILE") or "") == "" then
    local path, perr = util.path(ctx)
    if not path then return nil, perr end
    local err
    profile, err = util.profile_for_host(path, opts.host)
    if not profile then return nil, err end
  end
  local cfg, cerr = util.config(ctx, { profile = profile, host = opts.host, account_id = opts["account-id"] })
  local st = cfg and check(cfg) or { ok = false, err = cerr }
  local conf, order = configuration(cfg, { given = opts.given, sensitive = opts.sensitive, profile = profile })
  if opts.output == "json" then
    render_json(ctx, cfg, st, conf, order)
  else
    render_text(ctx, cfg, st, conf, order)
  end
  return true   -- as the CLI: a failed authentication is output, not an exit status
end

-- Authenticate without a browser (external-browser: the cached login only).
local function authenticate(cfg)
  if cfg.auth_type == "external-browser" then
    local tok, err = cfg:cached_token()
    if tok then return true end
    if tok == false then return util.fail("external-browser auth: no cached login for this configuration") end
    return nil, err
  end
  return cfg:authenticate()
end

local function run_env(ctx, opts)
  ctx.stderr("Warning: 'databricks auth env' is deprecated and will be removed in a future release.\n")
  local profile = opts.profile
  if not profile and not opts.host then
    profile = "DEFAULT"
  elseif not profile then
    local path, perr = util.path(ctx)
    if not path then return nil, perr end
    local found = util.matching(path, util.canonical(opts.host))
    if #found > 1 then
      return util.fail(table.concat(util.names(found), " and ") .. " match " .. opts.host .. " in " .. path)
    end
    profile = found[1] and found[1].name
  end
  local cfg, cerr = util.config(ctx, { profile = profile, host = opts.host })
  if not cfg then return nil, cerr end
  local ok, aerr = authenticate(cfg)
  if not ok then return nil, aerr end
  local vars = {}
  for _, a in ipairs(config.ATTRIBUTES) do
    local v = cfg:get(a.name)
    if a.name == "host" then v = cfg.host end
    if v ~= nil and v ~= "" and type(v) ~= "table" then
      for _, env in ipairs(a.env or {}) do vars[env] = tostring(v) end
    end
  end
  local names = {}
  for k in pairs(vars) do names[#names + 1] = k end
  table.sort(names)
  local e = obj()
  for _, k in ipairs(names) do e:set(k, vars[k]) end
  ctx.stdout(output.json(obj("env", e)))
  return true
end

return { run = run_describe, env = run_env }
