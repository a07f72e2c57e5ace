-- Concurrent REST calls (issue 12): cfg:request_all and cfg:app_request_all.
--
--   batch.check(list, opts, kind)        -> nil | why, argument number   (the facade raises)
--   batch.request_all(s, list, opts)     -> responses, errs, failed
--   batch.app_request_all(s, list, opts) -> responses, errs, failed
--
-- responses[i] is what cfg:request (cfg:app_request) returns for list[i], or false; errs[i] its
-- error object, or false; failed counts the errors. Order follows the input, and a failing item
-- never fails another. Every item goes by the single call's rules: the same request building and
-- checks, the same error objects redacted the same way, 429/503 retried with backoff for
-- idempotent methods (or retry = true) within the retry budget, each item on its own schedule;
-- for cfg:request_all one token for all (the configuration's, as of each round), and a 401 for an
-- OAuth token refreshes it once for the batch and repeats the items it rejected.
--
-- The batch goes in rounds. A round sends the items that are due through the transport's
-- send_all (libcurl multi, HTTP/2 multiplexed where offered; light threads on cosockets in
-- nginx; one by one over a transport without send_all), at most opts.concurrency (8) in flight;
-- an item to be retried waits for a later round, when its backoff is over. opts.timeout bounds
-- the whole batch: what is unfinished then fails with code "timeout" (reason "cancelled").
local apps = require "dbxauth.apps"
local errors = require "dbxauth.errors"
local headers = require "dbxauth.headers"
local http = require "dbxauth.http"
local request = require "dbxauth.request"
local cjson = require "cjson.safe"

local _M = {}

local DEFAULT_CONCURRENCY = 8
local MAX_CONCURRENCY = 256
local OPTIONS = { concurrency = true, timeout = true }
local CANCELLED_HINT = "the batch took longer than its timeout (opts.timeout); raise it, or send fewer requests "
  .. "or more at once (opts.concurrency)"

-- nil, or why the arguments are wrong and which one (programming errors: the facade raises).
-- kind "app": items are app_request tables.
function _M.check(list, opts, kind)
  if type(list) ~= "table" then return "table expected, got " .. type(list), 1 end
  local n = #list
  for k in pairs(list) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      return "a list of request tables expected (found key " .. tostring(k) .. ")", 1
    end
  end
  for i = 1, n do
    local r = list[i]
    local bad = request.check(r, kind == "app" and apps.EXTRA_KEYS or nil)
    if not bad and kind == "app" and (r.app == nil) == (r.url == nil) then
      bad = "give app = <name> or url = <https url>"
    end
    if bad then return "item " .. i .. ": " .. bad, 1 end
  end
  if opts == nil then return nil end
  if type(opts) ~= "table" then return "table expected, got " .. type(opts), 2 end
  for k in pairs(opts) do
    if not OPTIONS[k] then return 'unknown option "' .. tostring(k) .. '"', 2 end
  end
  local c, t = opts.concurrency, opts.timeout
  if c ~= nil and (type(c) ~= "number" or c < 1 or c > MAX_CONCURRENCY or c % 1 ~= 0) then
    return "concurrency must be an integer from 1 to " .. MAX_CONCURRENCY, 2
  end
  if t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0) then
    return "timeout must be a positive number of seconds", 2
  end
  return nil
end

local function cancelled(timeout, what)
  return errors.new("timeout", string.format("the batch's timeout (%g s) ran out before this request %s",
    timeout, what), { reason = "cancelled", hint = CANCELLED_HINT })
end

-- r as request.call builds it (the path check, headers over the defaults, json, query), to base.
local function build(s, base, r, authorization, extra)
  if r.path:sub(1, 1) ~= "/" then
    return nil, errors.new("invalid_request", 'path must start with "/" (got "' .. r.path .. '")')
  end
  local h, herr = request.merge_headers(r.headers, authorization, extra)
  if not h then return nil, herr end
  local body = r.body
  if r.json ~= nil then
    body = cjson.encode(r.json)
    h["Content-Type"] = h["Content-Type"] or "application/json"
  end
  local url = base .. r.path
  if r.query and next(r.query) then
    url = url .. (r.path:find("?", 1, true) and "&" or "?") .. request.encode_query(r.query)
  end
  h["User-Agent"] = h["User-Agent"] or s:user_agent()
  return { method = (r.method or "GET"):upper(), url = url, headers = h, body = body, timeout = s:timeout(r.timeout) }
end

-- One round's requests, in order: the transport's send_all, or its send one by one.
local function send_all(t, reqs, concurrency, timeout)
  if t.send_all then return t:send_all(reqs, { concurrency = concurrency, timeout = timeout }) end
  local rs, es = {}, {}
  local deadline = timeout and t:now() + timeout
  for k = 1, #reqs do
    if deadline and t:now() >= deadline then
      rs[k], es[k] = false, cancelled(timeout, "was sent")
    else
      local res, err = t:send(reqs[k])
      rs[k], es[k] = res or false, err or false
    end
  end
  return rs, es
end

-- Items whose turn has come, in input order; sleeps until the first one's when none is due yet.
-- waiting: item -> when. Items that could only be retried after the deadline fail here.
local function next_round(t, waiting, deadline, timeout, errs)
  while true do
    local first
    for i, at in pairs(waiting) do
      if deadline and at >= deadline then
        errs[i] = cancelled(timeout, "could be retried")
        waiting[i] = nil
      elseif not first or at < first then
        first = at
      end
    end
    if not first then return {} end
    local now = t:now()
    if first > now then t:sleep(first - now) end
    now = t:now()
    local due = {}
    for i, at in pairs(waiting) do
      if at <= now then
        due[#due + 1] = i
        waiting[i] = nil
      end
    end
    if #due > 0 then
      table.sort(due)
      return due
    end
  end
end

-- The loop both calls share. kind: round() -> true | nil, err (before each round);
-- prepare(i, st) -> req | nil, err; unauthorized(i, st, res) -> true to repeat at once;
-- finish(i, st, res) -> response | false, err | false; failed(err) -> err.
local function run(s, list, opts, kind)
  local n = #list
  local responses, errs = {}, {}
  for i = 1, n do responses[i], errs[i] = false, false end
  local t = s:get_transport()
  local timeout = opts and opts.timeout
  local concurrency = opts and opts.concurrency or DEFAULT_CONCURRENCY
  local deadline = timeout and t:now() + timeout
  local states, waiting, due = {}, {}, {}
  for i = 1, n do due[i] = i end
  while #due > 0 do
    local ok, rerr = kind.round()
    local reqs, idx = {}, {}
    for _, i in ipairs(due) do
      local req, err
      if ok then
        local st = states[i]
        if not st then
          local r = list[i]
          st = { attempt = 0, policy = s:retry_policy("api", r.retry), method = (r.method or "GET"):upper() }
          states[i] = st
        end
        req, err = kind.prepare(i, st)
        if req and not st.start then
          st.start = t:now()
          st.allowed = http.retry_allowed(req, st.policy)
        end
      end
      if req then
        reqs[#reqs + 1], idx[#idx + 1] = req, i
      else
        errs[i] = err or rerr
      end
    end
    local left = deadline and deadline - t:now()
    local rs, es
    if left and left <= 0 then
      rs, es = {}, {}
      for k = 1, #reqs do rs[k], es[k] = false, cancelled(timeout, "was sent") end
    elseif #reqs > 0 then
      rs, es = send_all(t, reqs, concurrency, left)
    end
    due = {}
    for k, i in ipairs(idx) do
      local st = states[i]
      local res, err = rs[k] or nil, es[k] or nil
      st.attempt = st.attempt + 1
      local delay = http.next_attempt(t, st.policy, st.allowed, st.attempt, st.start, res, err)
      if delay then
        waiting[i] = t:now() + delay
      elseif res and kind.unauthorized(i, st, res) then
        due[#due + 1] = i
      elseif res then
        responses[i], errs[i] = kind.finish(i, st, res)
      else
        errs[i] = kind.failed(err)
      end
    end
    if #due == 0 then due = next_round(t, waiting, deadline, timeout, errs) end
  end
  local failed = 0
  for i = 1, n do
    if errs[i] then failed = failed + 1 end
  end
  return responses, errs, failed
end

local function is_2xx(res)
  return res.status >= 200 and res.status <= 299
end

-- cfg:request_all: the configuration's credentials and host, the workspace id header on workspace
-- hosts, 2xx responses only (as request.api).
function _M.request_all(s, list, opts)
  local creds, cerr = s:credentials()
  local v = s.values
  local extra
  if creds and v.workspace_id and not s:is_account() then
    extra = { ["X-Databricks-Workspace-Id"] = v.workspace_id }
  end
  local auth          -- this round's Authorization value: one token for every item of the round
  local gen = 0       -- bumped when the 401 refresh happened
  local kind = {}

  function kind.round()
    if not creds then return nil, cerr end
    local h, err = creds.headers()
    if not h then return nil, err end
    auth = h.Authorization
    return true
  end

  function kind.prepare(i, st)
    if not st.req then
      local req, err = build(s, v.host, list[i], auth, extra)
      if not req then return nil, err end
      st.req = req
    end
    st.req.headers.Authorization, st.auth, st.gen = auth, auth, gen
    return st.req
  end

  -- An OAuth token we believed valid was rejected (revoked, or clocks apart): a new one, once for
  -- the batch, and the idempotent items it rejected once more (request.api's rule, per item).
  function kind.unauthorized(_, st, res)
    if res.status ~= 401 or not creds.source or not st.allowed or st.reauthed then return false end
    if st.gen == gen then
      if gen > 0 then return false end      -- the refreshed token was rejected too
      creds.source:invalidate()
      gen = gen + 1
    end
    st.reauthed = true
    return true
  end

  function kind.finish(i, st, res)
    setmetatable(res, request.Response)
    if is_2xx(res) then return res, false end
    -- The server's message is outside text: it may quote the credential it was sent.
    return false, s:redact(request.status_error(res, st.method, list[i].path),
      { headers = { Authorization = st.auth } })
  end

  function kind.failed(err) return err end

  return run(s, list, opts, kind)
end

local function scopes_key(scopes)
  if type(scopes) ~= "table" then return tostring(scopes) end
  local parts = {}
  for k, x in ipairs(scopes) do parts[k] = tostring(x) end
  return table.concat(parts, "\2")
end

-- cfg:app_request_all: app_request's steps for each item (target, token, scope check), each app's
-- lookup and token fetched once for the batch however many items call it.
function _M.app_request_all(s, list, opts)
  local targets = {}    -- "app|url|audience|scopes" -> { base, app, authorization } | { err = }
  local kind = {}

  local function target(r)
    local key = table.concat({ r.app or "", r.url or "", r.audience or "", scopes_key(r.scopes) }, "\1")
    local hit = targets[key]
    if hit then return hit end
    local base, app = apps.target(s, r)
    if not base then
      hit = { err = app }
    else
      local tok, err = apps.app_token(s, { app = r.app, audience = r.audience, scopes = r.scopes })
      err = err or (tok and apps.scope_error(app, tok.scopes))
      hit = err and { err = err } or { base = base, app = app, authorization = headers.authorization(tok) }
    end
    targets[key] = hit
    return hit
  end

  function kind.round() return true end

  function kind.prepare(i, st)
    if st.req then return st.req end
    local r = list[i]
    local tg = target(r)
    if tg.err then return nil, tg.err end
    local req, err = build(s, tg.base, r, tg.authorization)
    if not req then return nil, err end
    st.req, st.auth, st.app, st.base = req, tg.authorization, tg.app, tg.base
    return req
  end

  function kind.unauthorized() return false end

  function kind.finish(i, st, res)
    setmetatable(res, request.Response)
    if is_2xx(res) then return res, false end
    return false, s:redact(apps.app_error(s, res, list[i], st.app, st.base),
      { headers = { Authorization = st.auth } })
  end

  function kind.failed(err)
    if err.code == "network" then err.hint = apps.NETWORK_HINT end
    return err
  end

  return run(s, list, opts, kind)
end

return _M
