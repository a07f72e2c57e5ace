-- github-oidc (notes §6.7): in GitHub Actions (ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN set),
-- the workflow's ID token for our audience is fetched from GitHub and exchanged.
local core = require "dbxauth.core"
local cjson = require "cjson.safe"
local errors = require "dbxauth.errors"
local oidc = require "dbxauth.providers.oidc"

-- The request URL without its query, for messages.
local function shown(url)
  return (url:gsub("[?#].*$", ""))
end

local function id_token(ctx, audience)
  local url = ctx.get("actions_id_token_request_url")
  if not url:match("^https://") then
    return nil, errors.new("config", "ACTIONS_ID_TOKEN_REQUEST_URL must be https (got " .. shown(url) .. ")")
  end
  local req = {
    method = "GET",
    url = url .. (url:find("?", 1, true) and "&" or "?") .. "audience=" .. core.url_encode(audience),
    headers = { Authorization = "Bearer " .. ctx.get("actions_id_token_request_token"),
                Accept = "application/json" },
  }
  local res, err = ctx.send(req)
  local what = "failed to request ID token from " .. shown(url) .. ": "
  if not res then return nil, errors.wrap(what, err) end
  if res.status ~= 200 then
    return nil, errors.new("oauth", what .. "HTTP " .. res.status, { status = res.status })
  end
  local doc = cjson.decode(res.body or "")
  if type(doc) ~= "table" or type(doc.value) ~= "string" or doc.value == "" then
    return nil, errors.new("oauth", what .. "the response has no ID token (value)")
  end
  return doc.value
end

return {
  name = "github-oidc",
  applies = function(ctx)
    return ctx.get("host") ~= nil and ctx.get("actions_id_token_request_url") ~= nil
      and ctx.get("actions_id_token_request_token") ~= nil
  end,
  configure = function(ctx)
    return oidc.credentials(ctx, function(audience) return id_token(ctx, audience) end)
  end,
}
