-- OAuth as data: functions here build request tables and read response tables. No I/O, no
-- clock (callers pass `now`), no globals, so every flow is testable without a network and the
-- same logic runs over libcurl or nginx cosockets.
local core = require "dbxauth.core"
local cjson = require "cjson.safe"
local errors = require "dbxauth.errors"
local apierror = require "dbxauth.apierror"
local headers = require "dbxauth.headers"
local urls = require "dbxauth.url"

local _M = {}

local FORM = "application/x-www-form-urlencoded"

-- Form bodies with sorted keys, as Go's url.Values.Encode does: stable bytes on the wire.
function _M.form(fields)
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = core.form_encode(k) .. "=" .. core.form_encode(tostring(fields[k]))
  end
  return table.concat(parts, "&")
end

function _M.scope_string(scopes)
  return table.concat(scopes, " ")
end

-- A form POST to a token endpoint; every grant is one of these.
local function form_post(url, fields)
  return {
    method = "POST",
    url = url,
    headers = { ["Content-Type"] = FORM, Accept = "application/json" },
    body = _M.form(fields),
  }
end

local function trim_slash(s)
  return (s:gsub("/+$", ""))
end

---------------------------------------------------------------------------------------------
-- Endpoints

-- Host metadata (notes §5.1): GET {host}/.well-known/databricks-config, unauthenticated.
function _M.metadata_request(host)
  return { method = "GET", url = host .. "/.well-known/databricks-config",
           headers = { Accept = "application/json" } }
end

-- Returns the document's fields, or nil when the host does not serve one (any failure:
-- metadata is best effort).
function _M.parse_metadata(res)
  if not res or res.status ~= 200 then return nil end
  local doc = cjson.decode(res.body or "")
  if type(doc) ~= "table" then return nil end
  local md = {}
  for _, k in ipairs { "oidc_endpoint", "account_id", "workspace_id", "cloud", "host_type" } do
    local v = doc[k]
    if type(v) == "number" then v = string.format("%d", v) end
    if type(v) == "string" and v ~= "" then md[k] = v end
  end
  local aud = doc.token_federation_default_oidc_audiences
  if type(aud) == "table" and type(aud[1]) == "string" and aud[1] ~= "" then
    md.default_audience = aud[1]
  end
  return md
end

-- The OIDC root named by host metadata, with the account placeholder filled in; nil when it
-- needs an account id we do not have.
function _M.oidc_root(md, account_id)
  local root = md and md.oidc_endpoint
  if not root then return nil end
  if root:find("{account_id}", 1, true) then
    if not account_id then return nil end
    root = root:gsub("{account_id}", (account_id:gsub("%%", "%%%%")))
  end
  return trim_slash(root)
end

-- Databricks OIDC roots serve /v1/authorize and /v1/token below them (workspace
-- {host}/oidc, account {host}/oidc/accounts/{id}); knowing the root saves the discovery
-- round trip.
function _M.endpoints_from_root(root)
  return { authorization_endpoint = root .. "/v1/authorize", token_endpoint = root .. "/v1/token" }
end

function _M.account_root(host, account_id)
  return host .. "/oidc/accounts/" .. account_id
end

function _M.workspace_discovery_url(host)
  return host .. "/oidc/.well-known/oauth-authorization-server"
end

function _M.discovery_request(url)
  return { method = "GET", url = url, headers = { Accept = "application/json" } }
end

-- An endpoint named by a document (discovery, host metadata) must be on the same origin as
-- the document that named it: credentials go there, so a document must not be able to send
-- them to another host or over plain HTTP. Returns nil or an error.
function _M.check_endpoint(what, endpoint, doc_url, source)
  local where = urls.origin(endpoint)
  local home = urls.origin(doc_url)
  local hint = "check host (and discovery_url): Databricks serves its OAuth endpoints on the host itself"
  if not where then
    return errors.new("invalid_response", source .. " names a " .. what .. " that is not a plain https URL (no "
      .. "user:password@, blanks or control characters); refusing to use it", { hint = hint })
  end
  if where == home then return nil end
  local shown = where:gsub(":443$", ""):gsub(":80$", "")
  if where:sub(1, 7) == "http://" and home and home:sub(1, 8) == "https://" then
    return errors.new("invalid_response", source .. " names a plain-HTTP " .. what .. " (" .. shown
      .. "); refusing to send credentials unencrypted", { hint = hint })
  end
  return errors.new("invalid_response", source .. " names a " .. what .. " on another host (" .. shown
    .. "); refusing to send credentials there", { hint = hint })
end

-- url: where the document came from; its endpoints must be on that origin.
function _M.parse_discovery(res, url)
  if res.status < 200 or res.status > 299 then
    return nil, apierror.from_response(res)
  end
  local doc = cjson.decode(res.body or "")
  if type(doc) ~= "table" or type(doc.token_endpoint) ~= "string" or doc.token_endpoint == "" then
    return nil, errors.new("oauth", "the OIDC discovery document has no token_endpoint")
  end
  local auth = doc.authorization_endpoint
  if auth ~= nil and type(auth) ~= "string" then
    return nil, errors.new("oauth", "the OIDC discovery document's authorization_endpoint is not a string")
  end
  if url then
    local err = _M.check_endpoint("token endpoint", doc.token_endpoint, url, "the OIDC discovery document")
      or (auth and _M.check_endpoint("authorization endpoint", auth, url, "the OIDC discovery document"))
    if err then return nil, err end
  end
  return { authorization_endpoint = auth, token_endpoint = doc.token_endpoint }
end

---------------------------------------------------------------------------------------------
-- Token requests

-- RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding (Go does this;
-- identical to plain Basic for the UUID ids and alphanumeric secrets Databricks issues).
function _M.basic_client_auth(client_id, client_secret)
  return "Basic " .. core.b64_encode(core.form_encode(client_id) .. ":" .. core.form_encode(client_secret))
end

function _M.client_credentials_request(p)
  local req = form_post(p.token_endpoint, { grant_type = "client_credentials", scope = _M.scope_string(p.scopes) })
  req.headers.Authorization = _M.basic_client_auth(p.client_id, p.client_secret)
  return req
end

_M.TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
_M.TYPE_PAT = "urn:databricks:params:oauth:token-type:personal-access-token"
_M.TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
_M.TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"

-- RFC 8693 token exchange (notes §6.6). p = { token_endpoint, subject_token,
-- subject_token_type, scopes, audience?, client_id?, requested_token_type? }. No client
-- authentication: the subject token is the credential.
function _M.token_exchange_request(p)
  return form_post(p.token_endpoint, {
    grant_type = _M.TOKEN_EXCHANGE,
    subject_token = p.subject_token,
    subject_token_type = p.subject_token_type,
    scope = _M.scope_string(p.scopes),
    audience = p.audience,
    client_id = p.client_id,
    requested_token_type = p.requested_token_type,
  })
end

---------------------------------------------------------------------------------------------
-- Authorization code with PKCE (notes §6.4, §6.5; seed 004's manual steps)

local Pkce = {}
Pkce.__index = Pkce
Pkce.__name = "dbxauth.pkce"
Pkce.__tostring = function(p)
  return "dbxauth.pkce(method=S256, challenge=" .. p.challenge .. ", verifier=***)"
end

-- A verifier of 64 random bytes, base64url (86 characters from the unreserved set, within
-- RFC 7636's 43..128) and its S256 challenge.
function _M.pkce(random)
  local bytes = assert(random(64))
  local verifier = core.b64url_encode(bytes)
  return setmetatable({ verifier = verifier, challenge = _M.challenge(verifier), method = "S256" }, Pkce)
end

function _M.challenge(verifier)
  return core.b64url_encode(core.sha256(verifier))
end

function _M.valid_verifier(v)
  return type(v) == "string" and #v >= 43 and #v <= 128 and not v:find("[^%w%-%._~]")
end

function _M.new_state(random)
  return core.b64url_encode(assert(random(16)))
end

-- The browser URL; query keys sorted as Go emits them.
function _M.authorize_url(p)
  local q = {
    client_id = p.client_id,
    code_challenge = p.challenge,
    code_challenge_method = "S256",
    redirect_uri = p.redirect_uri,
    response_type = "code",
    scope = _M.scope_string(p.scopes),
    state = p.state,
  }
  local sep = p.authorization_endpoint:find("?", 1, true) and "&" or "?"
  return p.authorization_endpoint .. sep .. _M.form(q)
end

-- Public clients (databricks-cli) put client_id in the body; a confidential client adds its
-- secret there too, as the Python SDK does.
function _M.code_exchange_request(p)
  return form_post(p.token_endpoint, {
    grant_type = "authorization_code",
    code = p.code,
    code_verifier = p.verifier,
    redirect_uri = p.redirect_uri,
    client_id = p.client_id,
    client_secret = p.client_secret,
  })
end

function _M.refresh_request(p)
  return form_post(p.token_endpoint, {
    grant_type = "refresh_token",
    refresh_token = p.refresh_token,
    client_id = p.client_id,
    client_secret = p.client_secret,
  })
end

-- D16: the refresh token itself was rejected (re-login needed), not a passing failure.
function _M.invalid_refresh(err)
  if type(err) ~= "table" then return false end
  if err.oauth_error == "invalid_grant" then return true end
  return type(err.message) == "string" and err.message:find("Refresh token is invalid", 1, true) ~= nil
end

-- The `exp` claim of a JWT access token, used when the response has no expires_in (D14).
function _M.jwt_expiry(token)
  local payload = token:match("^[%w_-]+%.([%w_-]+)%.[%w_-]*$")
  if not payload then return nil end
  local json = core.b64url_decode(payload)
  local claims = json and cjson.decode(json)
  local exp = type(claims) == "table" and claims.exp
  -- a finite, positive time: an `exp` of 1e999 must not make a token live forever
  if type(exp) == "number" and exp == exp and exp > 0 and exp < 2 ^ 53 then return math.floor(exp) end
  return nil
end

-- RFC 6750 b64token is stricter; tokens seen in practice (JWTs, dapi..., opaque) are all
-- visible ASCII. Anything else (CR/LF, blanks, NUL, non-ASCII) would end up in a header.
local function bad_token(s)
  return type(s) ~= "string" or s == "" or s:find("[^\33-\126]") ~= nil
end

local MAX_INT32 = 2147483647

-- expires_in as Go's oauth2 reads it: a JSON number or a string holding one, integral, at
-- most int64 (capped to int32, as Go does); absent or null is nil. We refuse negative values
-- too (Go would keep an already-expired token and fetch again on every call).
-- Returns seconds | nil, or false when the value is invalid.
local function expires_in_of(v)
  if v == nil or v == cjson.null then return nil end
  local n
  if type(v) == "number" then
    n = v
  elseif type(v) == "string" and v:match("^%s*[+-]?%d+%s*$") then
    n = tonumber(v)
  else
    return false
  end
  if n ~= n or n < 0 or n >= 2 ^ 63 or math.floor(n) ~= n then return false end
  if n > MAX_INT32 then n = MAX_INT32 end
  return n
end

local function split_scopes(s)
  local out = {}
  if type(s) == "string" then
    for w in s:gmatch("%S+") do out[#out + 1] = w end
  end
  return out
end

local Token = {}
Token.__index = Token
Token.__name = "dbxauth.token"
Token.__tostring = function(t)
  local parts = { t.token_type or "Bearer" }
  if t.expiry then parts[#parts + 1] = "expiry=" .. string.format("%.0f", t.expiry) end
  if t.scopes and #t.scopes > 0 then parts[#parts + 1] = "scopes=" .. table.concat(t.scopes, " ") end
  return "dbxauth.token(" .. table.concat(parts, ", ") .. ", access_token=***)"
end
_M.Token = Token

-- A token table whose tostring never shows the secret.
function _M.token(t)
  return setmetatable(t, Token)
end

-- The token a caller is handed (cfg:token, cfg:app_token, cfg:exchange): one shape for every
-- auth type - access_token, token_type, expiry (nil: it does not expire), scopes (nil when
-- unknown) - with the masked tostring. A new table: the refresh token and bookkeeping fields
-- (issued_at, ...) stay with the token source and the token cache, and nothing the caller does
-- to it reaches them.
function _M.public_token(tok)
  local scopes
  if type(tok.scopes) == "table" and #tok.scopes > 0 then
    scopes = {}
    for i, s in ipairs(tok.scopes) do scopes[i] = s end
  end
  return setmetatable({ access_token = tok.access_token, token_type = headers.scheme(tok.token_type),
                        expiry = tok.expiry, scopes = scopes }, Token)
end

-- Read a token endpoint response (any grant). `what` names the flow for messages.
function _M.parse_token_response(res, now, what)
  what = what or "token request"
  if res.status < 200 or res.status > 299 then
    local err = apierror.from_response(res)
    err.message = what .. " failed: " .. err.message
    return nil, err
  end
  local doc = cjson.decode(res.body or "")
  if type(doc) ~= "table" then
    -- The body is not echoed: it came from a token endpoint and could hold anything.
    return nil, errors.new("oauth", what .. " failed: the token endpoint returned a non-JSON response ("
      .. string.format("%d", #(res.body or "")) .. " bytes, HTTP " .. res.status .. ")",
      { status = res.status, hint = "check that host points at a Databricks workspace or account console" })
  end
  if type(doc.access_token) ~= "string" or doc.access_token == "" then
    if type(doc.error) == "string" then
      return nil, apierror.from_response({ status = res.status, body = res.body, headers = res.headers })
    end
    return nil, errors.new("oauth", what .. " failed: the response has no access_token", { status = res.status })
  end
  -- What the token endpoint said is checked before any of it is used: the token goes into an
  -- Authorization header, its lifetime decides how long it is reused. Messages never quote it.
  local function invalid(field, why)
    return nil, errors.new("oauth", what .. " failed: the token endpoint returned " .. why, {
      status = res.status, field = field,
      hint = "the token endpoint's answer is not a usable OAuth token response; check that host points at a "
        .. "Databricks workspace or account console",
    })
  end
  if bad_token(doc.access_token) then
    return invalid("access_token", "an access_token with characters a token cannot have (blanks, control "
      .. "or non-ASCII characters)")
  end
  local rt = doc.refresh_token
  if rt == cjson.null or rt == "" then rt = nil end
  if rt ~= nil and bad_token(rt) then
    return invalid("refresh_token", "a refresh_token that is not a string of visible ASCII characters")
  end
  local tt = doc.token_type
  if tt == cjson.null then tt = nil end
  if tt ~= nil and (type(tt) ~= "string" or (tt ~= "" and not headers.is_token(tt))) then
    return invalid("token_type", "a token_type that is not an HTTP authentication scheme name")
  end
  local expiry
  local expires_in = expires_in_of(doc.expires_in)
  if expires_in == false then
    return invalid("expires_in", "an expires_in that is not a whole, non-negative number of seconds")
  end
  if expires_in and expires_in > 0 then
    expiry = math.floor(now + expires_in)
  else
    expiry = _M.jwt_expiry(doc.access_token)
  end
  return _M.token {
    access_token = doc.access_token,
    token_type = headers.scheme(tt),
    refresh_token = rt,
    expiry = expiry,
    issued_at = now,
    scopes = split_scopes(doc.scope),
  }
end

return _M
