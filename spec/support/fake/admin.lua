-- Admin API of the fake workspace, under /__fake/ (no auth; only spec/support/fake.lua calls it).
--   GET  /__fake/ping               -> {"ok":true}
--   POST /__fake/reset              -> settings to defaults, faults cleared, counters/tokens/last flushed
--   GET  /__fake/settings           -> effective settings
--   POST /__fake/settings  {..}     -> merge into settings; answers the effective settings
--   POST /__fake/faults    {..}     -> append one fault (see fake.lua ws:fault)
--   DELETE /__fake/faults           -> clear faults
--   GET  /__fake/counters           -> {"counters":{"METHOD path":n,...,"total":n}} (zeros absent)
--   GET  /__fake/last?path=/p       -> {"request":{method,path,query,headers,body,protocol[,app]}} or {}
--   GET  /__fake/concurrency        -> {"now":n,"max":n}: requests in flight, most at once since reset
--                                      (counted while the count_concurrency setting is on)
--   POST /__fake/apps {name,fields} -> add an app / merge fields (JSON null removes a field;
--                                      fields = null deletes the app); {"app":{...}} or {}
--   POST /__fake/app_permission {name,identities} -> CAN USE list (absent: everyone)
--   POST /__fake/idp_token {iss,sub,aud,ttl} -> {"token":"<jwt>"}
--   POST /__fake/revoke_refresh_tokens -> every refresh token issued so far stops working
local common = require "spec.support.fake.common"
local idp = require "spec.support.fake.idp"
local oauth = require "spec.support.fake.oauth"
local cjson = require "cjson.safe"

local ngx = ngx
local M = {}

local function bump_version()
  common.dict:incr("ver", 1, 0)
end

local function read_json()
  local v = common.decode(common.body())
  if type(v) ~= "table" then return nil end
  return v
end

local function bad(msg) return common.json(400, { error = msg }) end

local function effective_settings()
  common.refresh()
  return common.settings()
end

function M.reset()
  common.counters:flush_all(); common.counters:flush_expired()
  common.tokens:flush_all(); common.tokens:flush_expired()
  common.last:flush_all(); common.last:flush_expired()
  local d = common.dict
  local ver = d:get("ver") or 0
  d:flush_all(); d:flush_expired()
  d:set("ver", ver + 1)
end

local handlers = {}

handlers["GET ping"] = function()
  return common.json(200, { ok = true, pid = ngx.worker.pid() })
end

handlers["POST reset"] = function()
  M.reset()
  return common.json(200, { ok = true })
end

handlers["GET settings"] = function()
  return common.json(200, effective_settings())
end

handlers["POST settings"] = function()
  local patch = read_json()
  if not patch then return bad("settings: JSON object expected") end
  local d = common.dict
  local cur = common.decode(d:get("settings") or "null")
  if type(cur) ~= "table" then cur = {} end
  for k, v in pairs(patch) do cur[k] = v end
  d:set("settings", common.encode(cur))
  bump_version()
  return common.json(200, effective_settings())
end

handlers["POST faults"] = function()
  local f = read_json()
  if not f or type(f.path) ~= "string" then return bad("fault: JSON object with a path expected") end
  local d = common.dict
  f.id = d:incr("fault_seq", 1, 0)
  f.count = tonumber(f.count) or 1
  if f.count >= 0 then d:set("fault_left:" .. f.id, f.count) end
  local list = common.decode(d:get("faults") or "null")
  if type(list) ~= "table" then list = {} end
  list[#list + 1] = f
  d:set("faults", common.encode(list))
  bump_version()
  return common.json(200, { ok = true, id = f.id })
end

handlers["DELETE faults"] = function()
  common.dict:delete("faults")
  bump_version()
  return common.json(200, { ok = true })
end

handlers["GET concurrency"] = function()
  local d = common.dict
  return common.json(200, { now = d:get("inflight") or 0, max = d:get("inflight_max") or 0 })
end

handlers["GET counters"] = function()
  local c = common.counters
  local out = {}
  for _, k in ipairs(c:get_keys(0)) do out[k] = c:get(k) end
  return common.json(200, { counters = out })
end

-- Decode a record written by app.lua:
-- "<len>:<method><len>:<args><len>:<body><len>:<protocol><header block>".
local function decode_last(path, rec)
  local fields, pos = {}, 1
  for i = 1, 4 do
    local len, after = rec:match("^(%d+):()", pos)
    len = tonumber(len)
    fields[i] = rec:sub(after, after + len - 1)
    pos = after + len
  end
  local headers = {}
  for name, value in rec:sub(pos):gmatch("([^:\r\n]+):[ \t]*([^\r\n]*)") do
    name = name:lower()
    value = value:gsub("[ \t]+$", "")
    headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
  end
  local app = headers.host and headers.host:lower():match("^([^:]+)%.apps%.localhost")
  app = app and app:match("^(.+)%-" .. tostring(common.config.workspace_id) .. "$") or app
  return { method = fields[1], path = path, query = fields[2], body = fields[3], protocol = fields[4],
           headers = headers, app = app }
end

handlers["GET last"] = function()
  local path = ngx.req.get_uri_args().path
  local rec = type(path) == "string" and common.last:get(path)
  if not rec then return common.send(200, "{}") end
  return common.json(200, { request = decode_last(path, rec) })
end

handlers["POST apps"] = function()
  local req = read_json()
  if not req or type(req.name) ~= "string" or not req.name:match("^[%w%-]+$") then
    return bad("apps: JSON object with a name (letters, digits, -) expected")
  end
  local d = common.dict
  local store = common.decode(d:get("apps") or "null")
  if type(store) ~= "table" then store = common.default_apps() end
  local fields, name = req.fields, req.name
  if fields == cjson.null then
    store[name] = nil
  elseif type(fields) == "table" then
    local app = store[name] or common.new_app(name)
    for k, v in pairs(fields) do
      if v == cjson.null then app[k] = nil else app[k] = v end
    end
    -- as the Apps API does: effective scopes follow user_api_scopes unless given
    if fields.user_api_scopes ~= nil and fields.effective_user_api_scopes == nil then
      app.effective_user_api_scopes = common.effective_scopes(app.user_api_scopes)
    end
    store[name] = app
  end
  d:set("apps", common.encode(store))
  bump_version()
  if store[name] == nil then return common.send(200, "{}") end
  return common.json(200, { app = store[name] })
end

handlers["POST app_permission"] = function()
  local req = read_json()
  if not req or type(req.name) ~= "string" then return bad("app_permission: JSON object with a name expected") end
  local d = common.dict
  local perms = common.decode(d:get("app_perms") or "null")
  if type(perms) ~= "table" then perms = {} end
  perms[req.name] = type(req.identities) == "table" and req.identities or nil
  d:set("app_perms", common.encode(perms))
  bump_version()
  return common.json(200, { ok = true })
end

handlers["POST idp_token"] = function()
  local req = read_json()
  if not req then return bad("idp_token: JSON object expected") end
  return common.json(200, { token = idp.issue(req) })
end

handlers["POST revoke_refresh_tokens"] = function()
  oauth.revoke_refresh_tokens()
  return common.json(200, { ok = true })
end

function M.handle(name)
  local h = handlers[ngx.req.get_method() .. " " .. name]
  if not h then
    return common.json(404, { error = "unknown admin endpoint " .. ngx.req.get_method() .. " /__fake/" .. name })
  end
  return h()
end

return M
