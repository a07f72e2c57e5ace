-- Google service accounts (notes cloud-auth §7, §8), shared by the google-credentials and
-- google-id providers: reading a service-account key, the RS256-signed JWT assertion and the
-- jwt-bearer grant Google's libraries send, the token responses, and the credentials that put
-- an ID token in Authorization and, when it can be had, the service account's access token in
-- X-Databricks-GCP-SA-Access-Token (both SDKs send it on every host and carry on without it).
-- Requests are built here; providers send them through their ctx. Messages never quote the key
-- or google_credentials' value (a path or the key itself).
local cjson = require "cjson.safe"
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local headers = require "dbxauth.headers"
local oauth = require "dbxauth.oauth"
local redact = require "dbxauth.redact"
local tokensource = require "dbxauth.tokensource"
local urls = require "dbxauth.url"

local _M = {}

_M.TOKEN_URI = "https://oauth2.googleapis.com/token"
_M.JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_M.CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
-- The scopes of the SA access token (G google.CredentialsFromJSON, P GcpScopes).
_M.SA_SCOPES = { _M.CLOUD_PLATFORM, "https://www.googleapis.com/auth/compute" }
_M.SA_HEADER = "X-Databricks-GCP-SA-Access-Token"
local LIFETIME = 3600            -- of an assertion: google-auth's _DEFAULT_TOKEN_LIFETIME_SECS
local MAX_KEY_FILE = 1024 * 1024

local READ = "could not read GoogleCredentials. Make sure the file exists, or the JSON content is valid: "
local KEY_HINT = "google_credentials (GOOGLE_CREDENTIALS) is a service account's JSON key, or the path "
  .. "of the file that holds it (IAM > Service accounts > Keys > Add key > JSON in the Google Cloud console)"

local function fail(message, hint)
  return nil, errors.new("google_credentials", message, { hint = hint or KEY_HINT })
end

-- A short, printable rendering of a value from the key file (its `type`), for messages.
local function shown(v)
  v = tostring(v):sub(1, 40):gsub("[^%w%-_. ]", "?")
  return '"' .. v .. '"'
end

-- The key's JSON text: a file when one exists at `value` (G os.Stat, P os.path.isfile), else
-- `value` itself. | nil, err
function _M.read_credentials(value)
  if not value:find("%z") and core.stat(value) then
    -- (the OS's message would quote the path: google_credentials is a secret)
    local data, code = core.read_file(value, MAX_KEY_FILE)
    if data then return data end
    if code == "too_large" then return fail(READ .. "the file is larger than 1 MiB") end
    return fail(READ .. "the file cannot be read (" .. tostring(code) .. ")")
  end
  return value
end

-- A service-account key { client_email, private_key, private_key_id, token_uri } from its JSON
-- text. `prefix` starts messages about the content; `hint` replaces the google_credentials one.
-- | nil, err
function _M.parse_key(text, prefix, hint)
  local function bad(message, why)
    return nil, errors.new("google_credentials", message, { hint = why or hint or KEY_HINT })
  end
  local doc = cjson.decode(text)
  if type(doc) ~= "table" then
    if text:find("^%s*[{%[]") then return bad(READ .. "the JSON content is not valid") end
    return bad(READ .. "google_credentials is neither the path of an existing file nor JSON")
  end
  if doc.type ~= "service_account" then
    local t = doc.type == nil and "no type" or "type " .. shown(doc.type)
    return bad(prefix .. "unsupported credentials " .. t .. ": google_credentials must be a "
      .. 'service account key ("type": "service_account")')
  end
  for _, field in ipairs { "client_email", "private_key" } do
    if type(doc[field]) ~= "string" or doc[field] == "" then
      return bad(prefix .. "the service account key has no " .. field)
    end
  end
  local kid = doc.private_key_id
  if kid ~= nil and (type(kid) ~= "string" or not kid:find("^[%w%-_.]*$")) then
    return bad(prefix .. "the service account key's private_key_id is not a key id")
  end
  local token_uri = doc.token_uri
  if token_uri == nil or token_uri == "" then token_uri = _M.TOKEN_URI end
  if type(token_uri) ~= "string" or not urls.parse(token_uri) then
    return bad(prefix .. "the service account key's token_uri is not a URL")
  end
  if urls.plain_http_off_loopback(token_uri) then
    return bad(prefix .. "the service account key's token_uri must use https://",
      "plain HTTP would send the signed assertion unencrypted")
  end
  return { client_email = doc.client_email, private_key = doc.private_key,
           private_key_id = kid ~= "" and kid or nil, token_uri = token_uri }
end

local function b64json(t)
  return core.b64url_encode(assert(cjson.encode(t)))
end

-- The JWT assertion of Google's jwt-bearer grant: header { alg RS256, typ JWT, kid }, claims
-- iss = the service account, aud = the token URI, iat, exp = iat + 1 h, plus `claims`
-- (target_audience for an ID token, scope for an access token). | nil, err
function _M.assertion(key, claims, now)
  local iat = math.floor(now)
  local payload = { iss = key.client_email, aud = key.token_uri, iat = iat, exp = iat + LIFETIME }
  for k, v in pairs(claims) do payload[k] = v end
  local input = b64json { alg = "RS256", typ = "JWT", kid = key.private_key_id } .. "." .. b64json(payload)
  local sig, msg = core.rs256_sign(key.private_key, input)
  if not sig then
    return fail("cannot sign with the service account key: " .. msg,
      "private_key must be the PEM RSA key of the JSON key file, as Google issued it")
  end
  return input .. "." .. core.b64url_encode(sig)
end

-- The token request for `claims`, to the key's token URI. | nil, err
function _M.jwt_grant_request(key, claims, now)
  local jwt, err = _M.assertion(key, claims, now)
  if not jwt then return nil, err end
  return {
    method = "POST", url = key.token_uri,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Accept = "application/json" },
    body = oauth.form { grant_type = _M.JWT_BEARER, assertion = jwt },
  }
end

-- Every token a Google flow hands out is built here (the leak check registers them).
function _M.token(value, expiry)
  return oauth.token { access_token = value, token_type = "Bearer", expiry = expiry }
end

local function invalid(what, why)
  return nil, errors.new("invalid_response", what .. " failed: " .. why, {
    hint = "the answer is not what Google sends; check the key's token_uri and the network path" })
end

-- A JWT that can go into a header, and its expiry (an ID token lives as its `exp` says).
local function id_token(what, value)
  if type(value) ~= "string" or value == "" or not value:find("^[%w%-_.=]+$") then
    return invalid(what, "the response has no usable ID token")
  end
  local exp = oauth.jwt_expiry(value)
  if not exp then return invalid(what, "the ID token has no expiry (exp)") end
  return _M.token(value, exp)
end

local function decode(res, what)
  if res.status < 200 or res.status > 299 then
    local err = require("dbxauth.apierror").from_response(res)
    err.message = what .. " failed: " .. err.message
    return nil, err
  end
  local doc = cjson.decode(res.body or "")
  if type(doc) ~= "table" then return invalid(what, "the response is not JSON") end
  return doc
end

-- The jwt-bearer grant's answer for target_audience: { id_token } (google-auth's
-- id_token_jwt_grant; the expiry is the JWT's).
function _M.id_token_response(res, what)
  local doc, err = decode(res, what)
  if not doc then return nil, err end
  return id_token(what, doc.id_token)
end

-- IAM Credentials generateIdToken: { token }.
function _M.iam_id_token(res, what)
  local doc, err = decode(res, what)
  if not doc then return nil, err end
  return id_token(what, doc.token)
end

-- RFC 3339 UTC time ("2026-01-02T03:04:05Z", fractions allowed) as epoch seconds, or nil.
function _M.rfc3339(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)%.?%d*Z$")
  if not y then return nil end
  return require("dbxauth.apierror").utc_epoch(tonumber(y), tonumber(mo), tonumber(d),
    tonumber(h), tonumber(mi), tonumber(sec))
end

-- IAM Credentials generateAccessToken: { accessToken, expireTime }.
function _M.iam_access_token(res, what)
  local doc, err = decode(res, what)
  if not doc then return nil, err end
  local value = doc.accessToken
  if type(value) ~= "string" or value == "" or headers.check("Authorization", "Bearer " .. value) then
    return invalid(what, "the response has no usable accessToken")
  end
  local exp = _M.rfc3339(doc.expireTime)
  if not exp then return invalid(what, "the response has no expireTime") end
  return _M.token(value, exp)
end

-- A JSON POST to an IAM Credentials method, with the source credential's access token.
function _M.iam_request(base, account, method, body, source_token)
  return {
    method = "POST",
    url = base .. "/v1/projects/-/serviceAccounts/" .. core.url_encode(account) .. ":" .. method,
    headers = { Authorization = headers.authorization(source_token), Accept = "application/json",
                ["Content-Type"] = "application/json" },
    body = assert(cjson.encode(body)),
  }
end

-- Send a token service request (ctx.send_token: the token retry policy) and parse the answer
-- with `parse(res, what)`. The server's text in an error is outside text: it may echo the
-- assertion or bearer token it was sent, or a secret of the configuration. | token | nil, err
function _M.exchange(ctx, req, parse, what)
  local res, err = ctx.send_token(req)
  if not res then return nil, err end
  local tok
  tok, err = parse(res, what)
  if tok then return tok end
  if res.gave_up then err.message = err.message .. " (" .. res.gave_up .. ")" end
  err.message, err.hint = ctx.redact(err.message), err.hint and ctx.redact(err.hint)
  return nil, redact.error(err, redact.of_request(req))
end

-- Credentials over two token sources: the ID token in Authorization (required), the SA access
-- token in X-Databricks-GCP-SA-Access-Token when it can be had. A failed SA token is not tried
-- again for tokensource.COOLDOWN seconds: requests go out without it meanwhile (the SDKs warn
-- and skip the header).
function _M.credentials(id_source, sa_source, now)
  local creds = tokensource.credentials(id_source)
  creds.authorization = nil   -- the SA header goes with every request: headers() is the answer
  local skip_until = -math.huge
  local last, authorization
  creds.headers = function()
    local tok, err = id_source:token()
    if not tok then return nil, err end
    if tok ~= last then last, authorization = tok, headers.authorization(tok) end
    local sa
    if now() >= skip_until then
      sa = sa_source:token()
      if not sa then skip_until = now() + tokensource.COOLDOWN end
    end
    return { Authorization = authorization, [_M.SA_HEADER] = sa and sa.access_token or nil }
  end
  return creds
end

return _M
