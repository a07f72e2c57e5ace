-- User-to-machine OAuth (seeds 003, 004; notes §6.4, §6.5, §8; decisions D11, D16), over a
-- provider context (context.lua):
--   u2m.authorize_url(ctx, {redirect_uri, scopes, challenge, state})   manual PKCE, step 1
--   u2m.exchange_code(ctx, {code, verifier, redirect_uri})             manual PKCE, step 2
--   u2m.refresh(ctx, refresh_token)
--   u2m.login(ctx, {timeout, open, print_url, scopes, cache_keys})     the whole browser flow,
--                                                                      tokens into the CLI's cache
--   u2m.cached_token(ctx, {force_refresh})  the cached login, refreshed as needed
-- The external-browser and databricks-cli providers share the cache logic.
local core = require "dbxauth.core"
local config = require "dbxauth.config"
local errors = require "dbxauth.errors"
local oauth = require "dbxauth.oauth"
local tokencache = require "dbxauth.tokencache"
local tokensource = require "dbxauth.tokensource"

local _M = {}

local CLI_CLIENT_ID = "databricks-cli"
local DEFAULT_PORT = 8020
local FALLBACK_LAST = 8040
local LOGIN_TIMEOUT = 45

local function fail(code, message, fields)
  return nil, errors.new(code, message, fields)
end

-- The CLI's cache keys for a configuration (notes §8.2): the profile, then the host key.
function _M.cache_keys(ctx)
  local host = ctx.get("host")
  local host_key = host
  if host and ctx.is_account() and ctx.get("account_id") then
    host_key = host .. "/oidc/accounts/" .. ctx.get("account_id")
  end
  local keys = {}
  if ctx.get("profile") then keys[#keys + 1] = ctx.get("profile") end
  if host_key then keys[#keys + 1] = host_key end
  return keys
end

-- path | nil, err (no home directory)
function _M.cache_path(ctx)
  return tokencache.path(ctx.home)
end

local function client(ctx)
  local id = ctx.get("client_id")
  if id then return id, ctx.get("client_secret") end
  return CLI_CLIENT_ID, nil
end

-- `databricks auth login --profile p` (or --host/--account-id), for messages.
function _M.login_command(ctx)
  if ctx.get("profile") then return "databricks auth login --profile " .. ctx.get("profile") end
  local cmd = "databricks auth login --host " .. tostring(ctx.get("host"))
  if ctx.is_account() and ctx.get("account_id") then cmd = cmd .. " --account-id " .. ctx.get("account_id") end
  return cmd
end

-- `dbxauth login --profile p` (or --host/--account-id), for hints.
local function dbxauth_login_command(ctx)
  if ctx.get("profile") then return "dbxauth login --profile " .. ctx.get("profile") end
  local cmd = "dbxauth login --host " .. tostring(ctx.get("host"))
  if ctx.is_account() and ctx.get("account_id") then cmd = cmd .. " --account-id " .. ctx.get("account_id") end
  return cmd
end

local function invalid_refresh_error(ctx, cause)
  return errors.new("invalid_refresh_token",
    "A new access token could not be retrieved because the refresh token is invalid. "
    .. "To reauthenticate, run the following command:\n  $ " .. _M.login_command(ctx), {
      hint = "or log in with dbxauth: " .. dbxauth_login_command(ctx),
      status = cause and cause.status, oauth_error = cause and cause.oauth_error,
    })
end

-- A code exchange the server refused as invalid_grant: the code was used already, expired
-- (codes are single use and short-lived), or belongs to another redirect or verifier.
local function code_error(err)
  if err.oauth_error == "invalid_grant" then
    err.hint = "the authorization code was already used, has expired, or does not match this login's "
      .. "redirect_uri and verifier: start the login again (cfg:login, or a new authorize_url)"
  end
  return err
end

-- Refresh with a refresh token (notes §6.5); the new token keeps the old refresh token when
-- the server sends none.
function _M.refresh(ctx, refresh_token)
  local ep, err = ctx.endpoints()
  if not ep then return nil, err end
  local id, secret = client(ctx)
  local tok
  tok, err = ctx.token_request(oauth.refresh_request { token_endpoint = ep.token_endpoint,
    refresh_token = refresh_token, client_id = id, client_secret = secret }, "refresh token request")
  if not tok then
    if oauth.invalid_refresh(err) then return nil, invalid_refresh_error(ctx, err) end
    return nil, err
  end
  tok.refresh_token = tok.refresh_token or refresh_token
  return tok
end

local function store(ctx, tok, extra_keys)
  local keys = _M.cache_keys(ctx)
  for _, k in ipairs(extra_keys or {}) do keys[#keys + 1] = k end
  local path, err = _M.cache_path(ctx)
  if not path then return nil, err end
  local ok
  ok, err = tokencache.put(path, keys, tok, ctx.now())
  if not ok then return nil, err end
  return tok
end

-- Why a cached token needs a refresh: "expired" (a refresh must succeed), "soon" (the CLI's
-- rule: less than 5 minutes left; on failure the token is still good), or nil.
local function refresh_need(tok, now)
  if not tokensource.fresh(tok, now) then return "expired" end
  if tok.expiry and tok.refresh_token and tok.expiry - now < tokensource.CLI_REFRESH_AHEAD then return "soon" end
  return nil
end

-- With the cache locked: the entry as it is now, refreshed if it still needs it.
local function refresh_locked(ctx, path, keys, seen, need, now)
  local cur, err = tokencache.lookup(path, keys)
  if not cur then return cur, err end
  -- Another process refreshed while we waited for the lock (also what a forced refresh wants).
  if cur.access_token ~= seen.access_token and not refresh_need(cur, now) then return cur end
  if need ~= "force" then
    need = refresh_need(cur, now)
    if not need then return cur end
  end
  if not cur.refresh_token then
    if need ~= "expired" then return cur end
    return nil, errors.new("unauthenticated", "cached token has no refresh token", {
      hint = "log in again: " .. _M.login_command(ctx) .. " (or dbxauth login)",
    })
  end
  local tok
  tok, err = _M.refresh(ctx, cur.refresh_token)
  if not tok then
    if need == "soon" then return cur end     -- like the CLI: keep the still-valid token
    return nil, err
  end
  local ok, werr = tokencache.put_locked(path, _M.cache_keys(ctx), tok, now)
  if not ok then return nil, werr end
  return tok
end

-- The cached token for this configuration: a valid one as it is, an expired one refreshed
-- (and written back). Returns token | nil, err | false (no usable entry).
-- opts.force_refresh: refresh even when the cached token is still valid.
--
-- Refreshes happen under the cache's lock, after reading the cache again: of N processes that
-- find the login due at once, one sends the refresh grant and the others use its token. That
-- matters twice over with refresh tokens that rotate: the others would otherwise spend a
-- refresh token the server no longer accepts, and overwrite the winner's with an error.
-- A refresh ahead of expiry does not wait for a busy lock; an expired token waits for it.
function _M.cached_token(ctx, opts)
  local path, err = _M.cache_path(ctx)
  if not path then return nil, err end
  local keys = _M.cache_keys(ctx)
  local tok
  tok, err = tokencache.lookup(path, keys)
  if not tok then return tok, err end
  local now = ctx.now()
  local need = (opts and opts.force_refresh) and "force" or refresh_need(tok, now)
  if not need then return tok end
  local res, rerr = tokencache.locked(path, function() return refresh_locked(ctx, path, keys, tok, need, now) end,
    need == "soon" and { wait = 0 } or nil)
  if res == nil and need == "soon" then return tok end   -- e.g. the lock is busy: refreshing already
  return res, rerr
end

---------------------------------------------------------------------------------------------
-- The browser flow

local function ports(ctx)
  local fixed = ctx.get("oauth_callback_port")
  if fixed then return { fixed } end
  local list = {}
  for p = DEFAULT_PORT, FALLBACK_LAST do list[#list + 1] = p end
  return list
end

local function login_scopes(ctx, scopes)
  local list = scopes and config.parse_scopes(scopes) or ctx.scopes()
  if ctx.get("disable_oauth_refresh_token") then return list end
  local out = { "offline_access" }
  for _, s in ipairs(list) do
    if s ~= "offline_access" then out[#out + 1] = s end
  end
  return out
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function succeeded(ok)
  return ok == true or ok == 0
end

-- BROWSER (with %s standing for the URL, as Python's webbrowser reads it), else xdg-open or
-- open when installed. Started in the background; returns false when there is nothing to
-- start, so the caller prints the URL instead.
local function open_browser(url, getenv)
  local cmd
  local browser = getenv("BROWSER")
  if browser and browser ~= "" then
    if browser:find("%s", 1, true) then
      cmd = browser:gsub("%%s", (shell_quote(url):gsub("%%", "%%%%")))
    else
      cmd = browser .. " " .. shell_quote(url)
    end
  else
    for _, opener in ipairs { "xdg-open", "open" } do
      if succeeded(os.execute("command -v " .. opener .. " >/dev/null 2>&1")) then
        cmd = opener .. " " .. shell_quote(url)
        break
      end
    end
  end
  if not cmd then return false end
  return succeeded(os.execute("(" .. cmd .. ") >/dev/null 2>&1 </dev/null &"))
end

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function page(title, text)
  return "<!doctype html><html><head><meta charset=\"utf-8\"><title>" .. html_escape(title)
    .. "</title><style>body{font-family:sans-serif;margin:4em auto;max-width:40em}</style></head><body><h1>"
    .. html_escape(title) .. "</h1><p>" .. html_escape(text) .. "</p></body></html>"
end

-- Text from the browser's callback, as it may appear in a message: printable and bounded.
local function clean(s, max)
  s = tostring(s):gsub("[%c\127-\255]", "?")
  if #s > max then s = s:sub(1, max) .. "..." end
  return s
end

local function title_case(s)
  return (s:gsub("_", " "):gsub("(%a)([%w]*)", function(a, b) return a:upper() .. b end))
end

-- Wait for the browser's callback; answers everything else with 404.
local function await_callback(listener, state, deadline, now)
  while true do
    local left = deadline - now()
    if left <= 0 then return fail("timeout", "no browser login arrived in time") end
    local req, code = listener:wait(math.floor(left * 1000))
    if not req then
      if code == "timeout" then return fail("timeout", "no browser login arrived in time") end
    else
      local q = req.query or {}
      if q.error and q.state ~= state then
        -- any web page can send a GET to localhost: an error without our state is not the login's
        listener:respond(400, "text/html; charset=utf-8", page("Login failed",
          "This callback does not belong to the login in progress."))
      elseif q.error then
        local e = clean(q.error, 64)
        local desc = clean(q.error_description or "", 300)
        listener:respond(400, "text/html; charset=utf-8", page(title_case(e), desc ~= "" and desc or e))
        return fail("login_failed", e .. ": " .. desc, { oauth_error = e })
      elseif q.code and q.state then
        if q.state ~= state then
          listener:respond(400, "text/html; charset=utf-8", page("Login failed",
            "The login could not be verified (state mismatch). Start the login again."))
          return fail("state_mismatch", "state mismatch in 3-legged-OAuth flow", {
            hint = "the callback did not come from the login this process started; run the login again",
          })
        end
        return q, function(ok_page) listener:respond(ok_page and 200 or 400, "text/html; charset=utf-8",
          ok_page and page("Authenticated", "You can close this tab and return to your terminal.")
          or page("Login failed", "The code could not be exchanged for a token; see your terminal.")) end
      else
        listener:respond(404, "text/plain; charset=utf-8", "not found")
      end
    end
  end
end

function _M.login(ctx, opts)
  opts = opts or {}
  local _, err = _M.cache_path(ctx)   -- nowhere to keep the tokens: fail before the browser opens
  if err then return nil, err end
  local ep
  ep, err = ctx.endpoints()
  if not ep then return nil, err end
  if not ep.authorization_endpoint then
    return fail("oauth", "the OIDC configuration of " .. tostring(ctx.get("host")) .. " has no authorization endpoint")
  end
  local listener, lcode, lmsg = core.listen { ports = ports(ctx) }
  if not listener then
    return fail(lcode == "port_busy" and "port_busy" or "listen", lmsg or lcode, {
      hint = "another login may be running; free port " .. DEFAULT_PORT .. " (or the ones up to "
        .. FALLBACK_LAST .. ") or set oauth_callback_port",
    })
  end
  local pkce = oauth.pkce(core.random)
  local state = oauth.new_state(core.random)
  local redirect_uri = "http://localhost:" .. listener:port()
  local id, secret = client(ctx)
  local url = oauth.authorize_url { authorization_endpoint = ep.authorization_endpoint, client_id = id,
    redirect_uri = redirect_uri, scopes = login_scopes(ctx, opts.scopes), state = state, challenge = pkce.challenge }
  local opened
  if opts.open then
    opened = opts.open(url) ~= false
  else
    opened = open_browser(url, ctx.getenv)
  end
  if not opened or opts.print_url then
    io.stderr:write("Please continue the authentication process in your browser:\n", url, "\n")
  end
  local now = function() return core.now() end
  local q, answer = await_callback(listener, state, now() + (opts.timeout or LOGIN_TIMEOUT), now)
  if not q then listener:close(); return nil, answer end
  local tok
  tok, err = ctx.token_request(oauth.code_exchange_request { token_endpoint = ep.token_endpoint, code = q.code,
    verifier = pkce.verifier, redirect_uri = redirect_uri, client_id = id, client_secret = secret },
    "authorization code exchange")
  answer(tok ~= nil)
  listener:close()
  if not tok then return nil, code_error(err) end
  return store(ctx, tok, opts.cache_keys)
end

---------------------------------------------------------------------------------------------
-- Manual PKCE (seed 004)

function _M.pkce()
  return oauth.pkce(core.random)
end

-- url, state | nil, err. p = { redirect_uri, challenge, scopes?, state? }
function _M.authorize_url(ctx, p)
  local ep, err = ctx.endpoints()
  if not ep then return nil, err end
  local state = p.state or oauth.new_state(core.random)
  local id = client(ctx)
  return oauth.authorize_url { authorization_endpoint = ep.authorization_endpoint, client_id = id,
    redirect_uri = p.redirect_uri, scopes = login_scopes(ctx, p.scopes), state = state,
    challenge = p.challenge }, state
end

-- p = { code, verifier, redirect_uri }
function _M.exchange_code(ctx, p)
  if not oauth.valid_verifier(p.verifier) then
    return fail("invalid_request", "the PKCE verifier must be 43 to 128 characters from A-Z a-z 0-9 - . _ ~")
  end
  local ep, err = ctx.endpoints()
  if not ep then return nil, err end
  local id, secret = client(ctx)
  local tok
  tok, err = ctx.token_request(oauth.code_exchange_request { token_endpoint = ep.token_endpoint, code = p.code,
    verifier = p.verifier, redirect_uri = p.redirect_uri, client_id = id, client_secret = secret },
    "authorization code exchange")
  if not tok then return nil, code_error(err) end
  return tok
end

return _M
