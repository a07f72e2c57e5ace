-- `dbxauth logout`, as `databricks auth logout` (cmd/auth/logout.go): the profile's cached
-- tokens out of ~/.databricks/token-cache.json, and with --delete the profile out of the
-- config file.
local host = require "dbxauth.host"
local profiles = require "dbxauth.profiles"
local tokencache = require "dbxauth.tokencache"
local util = require "dbxauth.cli.util"

local fail = util.fail

local function available(path)
  return table.concat(util.names(util.profiles(path) or {}), ", ")
end

-- The profile to log out of | nil, err.
local function target(ctx, opts, pos, path)
  if pos[1] and opts.given.profile then
    return fail('argument "' .. pos[1] .. '" cannot be combined with --profile. Use the --profile flag instead')
  end
  local name = pos[1] or opts.profile
  if pos[1] and not profiles.get(path, pos[1]) and util.looks_like_host(pos[1]) then
    return util.profile_for_host(path, pos[1])
  end
  if not name then
    if not util.interactive(ctx) then
      return fail("the command is being run in a non-interactive environment, please specify a profile using the "
        .. "PROFILE argument or --profile flag")
    end
    ctx.stderr("Select a profile to log out of (" .. available(path) .. "): ")
    name = (ctx.read_line() or ""):gsub("^%s+", ""):gsub("%s+$", "")
  end
  local values = profiles.get(path, name)
  if not values or name == "" or not (values.host or values.account_id) then
    return fail('profile "' .. name .. '" not found. Available profiles: ' .. available(path))
  end
  return name, values
end

-- The host key of a profile's login (`https://host`, or `<host>/oidc/accounts/<id>`).
local function host_key(values)
  local h = util.canonical(values.host)
  if not h then return nil end
  if host.is_account_url(h) and values.account_id and values.account_id ~= "" then
    return h .. "/oidc/accounts/" .. values.account_id
  end
  return h
end

-- The cache keys to delete: the profile's, and its host's unless another databricks-cli
-- profile logs in to the same host (and account).
local function cache_keys(path, name, values)
  local keys = { name }
  local key = host_key(values)
  if not key then return keys end
  for _, p in ipairs(util.profiles(path) or {}) do
    if p.name ~= name and p.values.auth_type == "databricks-cli" and host_key(p.values) == key then return keys end
  end
  keys[2] = key
  return keys
end

-- true to go on | false (declined) | nil, err
local function confirm(ctx, opts, path, name)
  if opts["auto-approve"] then return true end
  if not util.interactive(ctx) then
    return fail("please specify --auto-approve to skip confirmation in non-interactive mode")
  end
  local what = opts.delete and ("log out of and delete profile " .. name) or ("log out of profile " .. name)
  local lines = { "Warning: This will " .. what .. ".", "", "The following changes will be made:",
    "  - Delete any cached OAuth tokens for this profile" }
  if opts.delete then lines[#lines + 1] = "  - Remove profile " .. name .. " from " .. path end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "You will need to run databricks auth login to re-authenticate."
  ctx.stdout(table.concat(lines, "\n") .. "\n\n")
  ctx.stderr("Are you sure? [y/N]: ")
  local answer = (ctx.read_line() or ""):gsub("^%s+", ""):gsub("%s+$", ""):lower()
  return answer == "y" or answer == "yes"
end

local function run(ctx, opts, pos)
  local path, perr = util.path(ctx)
  if not path then return nil, perr end
  local name, values = target(ctx, opts, pos, path)
  if not name then return nil, values end
  values = values or profiles.get(path, name)
  local go, cerr = confirm(ctx, opts, path, name)
  if go == nil then return nil, cerr end
  if not go then
    ctx.stderr("Aborting logout... No changes were made.\n")
    return true
  end
  local removed = 0
  if values.auth_type == "databricks-cli" then
    local cache, err = tokencache.path(ctx.home)
    if not cache then return nil, err end
    removed, err = tokencache.remove(cache, cache_keys(path, name, values))
    if not removed then return nil, err end
  end
  if opts.delete then
    local ok, err = profiles.remove(path, name)
    if not ok then return nil, err end
    if profiles.default_profile(path) == name then
      ok, err = profiles.set_setting(path, "default_profile", nil)
      if not ok then return nil, err end
    end
  end
  local q = '"' .. name .. '"'
  if removed > 0 then
    ctx.stderr(opts.delete and ("Logged out of and deleted profile " .. q .. ".\n")
      or ("Logged out of profile " .. q .. ". Use --delete to also remove it from the config file.\n"))
  else
    ctx.stderr(opts.delete and ("Deleted profile " .. q .. " with no tokens to clear.\n")
      or ("No tokens to clear for profile " .. q .. ". Use --delete to remove it from the config file.\n"))
  end
  return true
end

return { run = run }
