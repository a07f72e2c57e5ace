-- Seed 004's manual OAuth U2M steps, one by one: generate a PKCE verifier and challenge,
-- open the authorization URL, paste the code from the redirect, exchange it, refresh.
--
--   DATABRICKS_HOST=https://<workspace> lua5.4 examples/manual_pkce.lua
-- (account level: DATABRICKS_HOST=https://accounts.cloud.databricks.com DATABRICKS_ACCOUNT_ID=...)
local dbxauth = require "dbxauth"

local function fail(what, err)
  io.stderr:write(what, ": ", tostring(err), "\n")
  os.exit(1)
end

local cfg, err = dbxauth.config { auth_type = "external-browser" }
if not cfg then fail("configuration", err) end

-- Step 1: verifier (86 characters, kept secret) and its S256 challenge.
local pkce = dbxauth.pkce()
print("code challenge: " .. pkce.challenge)

-- Step 2: the authorization URL (scopes all-apis and offline_access, state generated).
local redirect_uri = "http://localhost:8020"
local url, state = cfg:authorize_url { redirect_uri = redirect_uri, challenge = pkce.challenge }
if not url then fail("authorization URL", state) end
print("open this URL in a browser and sign in:\n" .. url)
print("then paste the full URL the browser was redirected to (it fails to load; that is fine):")
local redirected = io.read("l") or ""
local query = redirected:match("%?(.*)$") or ""
local params = require("dbxauth.core").parse_query(query) or {}
if params.error then fail("authorization", params.error .. ": " .. tostring(params.error_description)) end
if params.state ~= state then fail("authorization", "state mismatch: the redirect is not from this login") end

-- Step 3: exchange the code with the verifier.
local tok
tok, err = cfg:exchange_code { code = params.code or "", verifier = pkce.verifier, redirect_uri = redirect_uri }
if not tok then fail("code exchange", err) end
print("access token obtained: " .. tostring(tok))

-- Step 4: refresh it.
if tok.refresh_token then
  local again
  again, err = cfg:refresh { refresh_token = tok.refresh_token }
  if not again then fail("refresh", err) end
  print("refreshed: " .. tostring(again))
end
