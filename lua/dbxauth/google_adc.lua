-- Google application default credentials (ADC), the source identity of google-id (notes
-- cloud-auth §8), found the way Google's libraries look for them:
--   1. GOOGLE_APPLICATION_CREDENTIALS: a service-account key (jwt-bearer grant) or an
--      authorized_user file (refresh-token grant), which must exist;
--   2. gcloud's well-known file, $CLOUDSDK_CONFIG or ~/.config/gcloud, then
--      application_default_credentials.json (what `gcloud auth application-default login` writes);
--   3. the GCE metadata server: GCE_METADATA_HOST when set, else 169.254.169.254, asked with
--      `Metadata-Flavor: Google` over plain HTTP (only to that link-local address, the
--      metadata.google.internal name, or loopback).
-- The result is a token source of cloud-platform access tokens.
--
--   adc.find(ctx) -> { source = tokensource, kind = "file" | "metadata" } | nil, err
local cjson = require "cjson.safe"
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local google = require "dbxauth.google"
local oauth = require "dbxauth.oauth"
local tokensource = require "dbxauth.tokensource"
local urls = require "dbxauth.url"

local _M = {}

local METADATA_IP = "169.254.169.254"
local METADATA_HOSTS = { [METADATA_IP] = true, ["metadata.google.internal"] = true, metadata = true }
local PROBE_TIMEOUT = 3        -- off GCE the default address does not answer: do not wait long
local WELL_KNOWN = "application_default_credentials.json"
local MAX_FILE = 1024 * 1024
_M.NOT_FOUND = "google: could not find default credentials. See "
  .. "https://cloud.google.com/docs/authentication/external/set-up-adc for more information"

local function fail(message, hint)
  return nil, errors.new("google_credentials", message, { hint = hint })
end

local function getenv(ctx, name)
  local v = ctx.getenv(name)
  if v == "" then return nil end
  return v
end

-- A refresh-token grant for an authorized_user file (gcloud's user login).
local function authorized_user(ctx, doc)
  for _, f in ipairs { "client_id", "client_secret", "refresh_token" } do
    if type(doc[f]) ~= "string" or doc[f] == "" then
      return fail("the application default credentials (authorized_user) have no " .. f)
    end
  end
  local uri = type(doc.token_uri) == "string" and doc.token_uri ~= "" and doc.token_uri or google.TOKEN_URI
  if not urls.parse(uri) or urls.plain_http_off_loopback(uri) then
    return fail("the application default credentials' token_uri is not an https:// URL")
  end
  return function()
    return ctx.token_request({
      method = "POST", url = uri,
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Accept = "application/json" },
      body = oauth.form { grant_type = "refresh_token", client_id = doc.client_id,
                          client_secret = doc.client_secret, refresh_token = doc.refresh_token },
    }, "application default credentials token request")
  end
end

-- A jwt-bearer grant for a service-account key file.
local function service_account(ctx, text)
  local key, err = google.parse_key(text, "application default credentials: ",
    "the file must be a service account's JSON key as the Google Cloud console issued it")
  if not key then return nil, err end
  return function()
    local req, rerr = google.jwt_grant_request(key, { scope = google.CLOUD_PLATFORM }, ctx.now())
    if not req then return nil, rerr end
    return ctx.token_request(req, "application default credentials token request")
  end
end

local function from_file(ctx, path, what)
  local text, code = core.read_file(path, MAX_FILE)
  if not text then
    return fail(what .. " cannot be read (" .. tostring(code) .. ")",
      "point GOOGLE_APPLICATION_CREDENTIALS at a readable JSON key file, or run "
        .. "`gcloud auth application-default login`")
  end
  local doc = cjson.decode(text)
  if type(doc) ~= "table" then return fail(what .. " is not valid JSON") end
  if doc.type == "service_account" then return service_account(ctx, text) end
  if doc.type == "authorized_user" then return authorized_user(ctx, doc) end
  return fail(what .. ": unsupported credentials type (dbxauth reads service_account and "
    .. "authorized_user files)", "use a service account key, `gcloud auth application-default login`, "
    .. "or run on Google Cloud with the metadata server")
end

-- The metadata server's base URL, or nil, err for an address plain HTTP must not go to.
local function metadata_base(ctx)
  local host = getenv(ctx, "GCE_METADATA_HOST")
  if not host then return "http://" .. METADATA_IP, true end
  local base = "http://" .. host
  local p = urls.parse(base)
  if not p or p.target ~= "/" and p.target ~= "" then
    return fail("GCE_METADATA_HOST must be a host[:port] (got a value that is not one)")
  end
  if not (METADATA_HOSTS[p.host] or urls.is_loopback_host(p.host)) then
    return fail("GCE_METADATA_HOST must name the metadata server (" .. METADATA_IP
      .. ", metadata.google.internal) or a loopback address",
      "the token travels over plain HTTP: it must not leave the machine")
  end
  return base, false
end

local function from_metadata(ctx)
  local base, default = metadata_base(ctx)
  if not base then return nil, default end
  local url = base .. "/computeMetadata/v1/instance/service-accounts/default/token?scopes="
    .. core.url_encode(google.CLOUD_PLATFORM)
  return function()
    local res, err = ctx.send { method = "GET", url = url, timeout = default and PROBE_TIMEOUT or nil,
                                headers = { ["Metadata-Flavor"] = "Google", Accept = "application/json" } }
    if not res then
      if default then
        return nil, errors.new("google_credentials", _M.NOT_FOUND .. " (no metadata server at "
          .. METADATA_IP .. ": " .. tostring(err.message) .. ")", { cause = err })
      end
      return nil, err
    end
    return oauth.parse_token_response(res, ctx.now(), "metadata server token request")
  end
end

function _M.find(ctx)
  local fetch, err
  local kind = "file"
  local path = getenv(ctx, "GOOGLE_APPLICATION_CREDENTIALS")
  if path then
    if not core.stat(path) then
      return fail("google: error getting credentials using GOOGLE_APPLICATION_CREDENTIALS environment "
        .. "variable: the file does not exist", "point GOOGLE_APPLICATION_CREDENTIALS at a JSON key file")
    end
    fetch, err = from_file(ctx, path, "the GOOGLE_APPLICATION_CREDENTIALS file")
  else
    local dir = getenv(ctx, "CLOUDSDK_CONFIG") or (ctx.home and (ctx.home .. "/.config/gcloud"))
    local well_known = dir and (dir .. "/" .. WELL_KNOWN)
    if well_known and core.stat(well_known) then
      fetch, err = from_file(ctx, well_known, "gcloud's " .. WELL_KNOWN)
    else
      kind = "metadata"
      fetch, err = from_metadata(ctx)
    end
  end
  if not fetch then return nil, err end
  return { kind = kind, source = tokensource.new { fetch = fetch, now = ctx.now } }
end

return _M
