-- User-to-machine OAuth (seeds 003, 004; notes §6.4, §6.5, §8; decisions D11, D16), over a
-- provider context (context.lua):
--   u2m.authorize_url(ctx, {redirect_uri, scopes, challenge, state})   manual PKCE, step 1
--   u2m.exchange_code(ctx, {code, verifier, redirect_uri})             manual PKCE, step 2
--   u2m.refresh(ctx, refresh_token)
--   u2m.login(ctx, {timeout, open, print_url, scopes, cache_keys, stderr, read})  the whole
--                      browser flow, tokens into the CLI's cache; with `read` (a function that
--                      returns a pasted line) the headless flow, with no listener at all
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
local LOGIN_TIMEOUT = 45
local MAX_WAIT_MS = 3600 * 1000   -- one listener wait; the login's deadline is kept in Lua

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

-- The callback port. The databricks-cli OAuth client accepts only the redirect URL
-- http://localhost:8020, so there is no fallback to other ports: a redirect to one is refused
-- by the server after the user has signed in. Another port only when oauth_callback_port says
-- so (with a client_id whose app accepts it, or a workspace set up for it).
-- port, explicit | nil, err
local function callback_port(ctx)
  local p = ctx.get("oauth_callback_port")
  if p == nil then return DEFAULT_PORT, false end
  if p < 1 or p > 65535 then
    return fail("config", "oauth_callback_port must be a port number from 1 to 65535, got " .. p, {
      hint = "set oauth_callback_port (DATABRICKS_OAUTH_CALLBACK_PORT) to a port your OAuth app accepts "
        .. "as redirect URL http://localhost:<port>, or unset it to use 8020" })
  end
  return p, true
end

local function port_in_use(ctx, port, explicit)
  local where = "port " .. port
  local src = ctx.source("oauth_callback_port")
  if explicit then
    where = where .. " (oauth_callback_port" .. (src == "env" and ", from DATABRICKS_OAUTH_CALLBACK_PORT"
      or src == "file" and ", from the profile" or "") .. ")"
  end
  local hint
  if explicit then
    hint = "stop the program listening on " .. where .. " (another login may be running; `lsof -i :" .. port
      .. "` shows it) and try again, or set oauth_callback_port to another port that the OAuth app "
      .. "accepts as redirect URL http://localhost:<port>"
  else
    hint = "the databricks-cli OAuth client accepts only the redirect URL http://localhost:8020, so no other "
      .. "port will do: stop the program listening on port 8020 (another `databricks auth login` or "
      .. "`dbxauth login` may be running; `lsof -i :8020` shows it) and try again. Only an OAuth app of your "
      .. "own can use another port: set client_id and oauth_callback_port to one of its redirect URLs"
  end
  return errors.new("port_in_use", "failed to listen on localhost:" .. port .. ": address already in use; "
    .. "the browser login needs " .. where .. " for its redirect to http://localhost:" .. port,
    { hint = hint, port = port })
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

-- "45 s", "5 min": for messages.
local function human(secs)
  if secs >= 120 and secs % 60 == 0 then return string.format("%d min", math.floor(secs / 60)) end
  return string.format("%g s", secs)
end

local function timed_out(timeout, refused)
  local message = "no browser login arrived in time (waited " .. human(timeout) .. ")"
  local hint = "finish the login in the browser within the time, or allow more: "
    .. "cfg:login{ timeout = <seconds> } or dbxauth login --timeout 10m"
  if refused > 0 then
    message = message .. "; " .. refused .. (refused == 1 and " callback" or " callbacks")
      .. " with another login's state " .. (refused == 1 and "was" or "were") .. " refused"
    hint = "a callback whose state does not match came from an older login or from another web page, "
      .. "not from this login; start the login again and finish it in the browser tab it opens"
  end
  return fail("timeout", message, { hint = hint })
end

local function answer_page(listener, status, title, text)
  -- the client may have gone away: nothing to do about that
  listener:respond(status, "text/html; charset=utf-8", page(title, text))
end

-- Wait for the browser's callback. Any web page can make the browser send a GET to localhost,
-- so a callback counts only with this login's state: others (with a code or an error) are
-- answered 400 and the login goes on waiting. Everything else gets 404.
local function await_callback(listener, state, timeout, now)
  local deadline = now() + timeout
  local refused = 0
  while true do
    local left = deadline - now()
    if left <= 0 then return timed_out(timeout, refused) end
    local req, code, msg = listener:wait(math.min(MAX_WAIT_MS, math.floor(left * 1000)))
    if not req then
      if code == "timeout" then return timed_out(timeout, refused) end
      if code == "io" then return fail("listen", "waiting for the browser login failed: " .. tostring(msg)) end
      -- bad_request: answered by the listener; interrupted: the interpreter's signal handling
      -- (Ctrl-C) has had its turn. Either way, wait on.
    else
      local q = req.query or {}
      if (q.code or q.error) and q.state ~= state then
        refused = refused + 1
        answer_page(listener, 400, "Login failed",
          "This callback does not belong to the login in progress, so it was ignored. "
          .. "If you started a login, finish it in the tab it opened, or start it again.")
      elseif q.error then
        local e = clean(q.error, 64)
        local desc = clean(q.error_description or "", 300)
        answer_page(listener, 400, title_case(e), desc ~= "" and desc or e)
        return fail("login_failed", e .. ": " .. desc, { oauth_error = e })
      elseif q.code then
        return q, function(ok_page)
          if ok_page then
            answer_page(listener, 200, "Authenticated", "You can close this tab and return to your terminal.")
          else
            answer_page(listener, 400, "Login failed",
              "The code could not be exchanged for a token; see your terminal.")
          end
        end
      else
        listener:respond(404, "text/plain; charset=utf-8", "not found")
      end
    end
  end
end

-- Headless login (`dbxauth login --no-browser`, over SSH): no listener. The user opens the
-- authorize URL in any browser; the redirect to http://localhost:<port> then fails to load
-- there, and the user pastes the URL from the address bar (or just its code). The same PKCE
-- and state checks as the loopback flow: a pasted URL must carry this login's state.
local function pasted(line)
  line = tostring(line or ""):gsub("^%s+", ""):gsub("%s+$", "")
  if line == "" then return nil end
  local query = line:match("%?([^#]*)") or (line:find("=", 1, true) and line)
  if not query then return { code = line }, false end
  return core.parse_query(query), true
end

local function paste_login(ctx, opts, say, port)
  local ep, err = ctx.endpoints()
  if not ep then return nil, err end
  local pkce, state = oauth.pkce(core.random), oauth.new_state(core.random)
  local redirect_uri = "http://localhost:" .. port
  local id, secret = client(ctx)
  say("Open this URL in a browser (on any machine) and sign in:\n" .. oauth.authorize_url {
    authorization_endpoint = ep.authorization_endpoint, client_id = id, redirect_uri = redirect_uri,
    scopes = login_scopes(ctx, opts.scopes), state = state, challenge = pkce.challenge } .. "\n"
    .. "The browser then goes to " .. redirect_uri .. "/?code=... (the page may not load). Paste that "
    .. "whole URL from the address bar, or just its code, here:\n")
  local q, is_url = pasted(opts.read())
  if not q then
    return fail("login_failed", "no redirect URL or code was pasted", { hint = "run the login again and paste "
      .. "the URL the browser ended on (" .. redirect_uri .. "/?code=...&state=...)" })
  end
  if q.error then
    return fail("login_failed", clean(q.error, 64) .. ": " .. clean(q.error_description or "", 300),
      { oauth_error = clean(q.error, 64) })
  end
  if is_url and q.state ~= state then
    return fail("state_mismatch", "the pasted URL does not belong to this login (its state does not match)",
      { hint = "paste the URL of the browser tab this login's link opened, or run the login again" })
  end
  if type(q.code) ~= "string" or not q.code:find("^[%w%-%._~%%+/=]+$") or #q.code > 4096 then
    return fail("login_failed", "the pasted text has no authorization code",
      { hint = "paste the whole URL the browser ended on (" .. redirect_uri .. "/?code=...&state=...)" })
  end
  local tok
  tok, err = ctx.token_request(oauth.code_exchange_request { token_endpoint = ep.token_endpoint, code = q.code,
    verifier = pkce.verifier, redirect_uri = redirect_uri, client_id = id, client_secret = secret },
    "authorization code exchange")
  if not tok then return nil, code_error(err) end
  return store(ctx, tok, opts.cache_keys)
end

function _M.login(ctx, opts)
  opts = opts or {}
  local _, cerr = _M.cache_path(ctx)   -- nowhere to keep the tokens: fail before the browser opens
  if cerr then return nil, cerr end
  local say = opts.stderr or function(text) io.stderr:write(text) end
  local timeout = opts.timeout or LOGIN_TIMEOUT
  -- the port first: when it is taken, fail before any request and before a browser opens
  local port, explicit = callback_port(ctx)
  if not port then return nil, explicit end
  if opts.read then return paste_login(ctx, opts, say, port) end
  local listener, lcode, lmsg = core.listen { ports = { port } }
  if not listener then
    if lcode == "port_busy" then return nil, port_in_use(ctx, port, explicit) end
    return fail("listen", lmsg or lcode)
  end
  local ep, err = ctx.endpoints()
  if ep and not ep.authorization_endpoint then
    ep, err = nil, errors.new("oauth", "the OIDC configuration of " .. tostring(ctx.get("host"))
      .. " has no authorization endpoint")
  end
  if not ep then listener:close(); return nil, err end
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
    say("Please continue the authentication process in your browser:\n" .. url .. "\n")
  end
  say("Waiting up to " .. human(timeout) .. " for the browser to come back to " .. redirect_uri
    .. " (press Ctrl-C to cancel)\n")
  local now = function() return core.now() end
  -- An error inside (Ctrl-C's "interrupted!") must not leave the port taken until the next GC.
  local ok, q, answer = pcall(await_callback, listener, state, timeout, now)
  if not ok then listener:close(); error(q, 0) end
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
