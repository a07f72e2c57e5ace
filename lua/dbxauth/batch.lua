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

-- The message for a key of list that is not 1..n, or nil.
local function other_key(list, n)
  for k in pairs(list) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      return "a list of request tables expected (found key " .. tostring(k) .. ")"
    end
  end
end

-- nil, or why the arguments are wrong and which one (programming errors: the facade raises);
-- fine: nil, nil, the items' json encoded (i -> string; nil when none has json).
-- kind "app": items are app_request tables.
function _M.check(list, opts, kind)
  if type(list) ~= "table" then return "table expected, got " .. type(list), 1 end
  local n = #list
  -- A key other than 1..n is reported before any item. n keys and items 1..n that all pass
  -- mean there is none: the full look at the keys only when the count differs or an item fails.
  local count = 0
  for _ in next, list do count = count + 1 end
  local bad_key = count ~= n and other_key(list, n)
  if bad_key then return bad_key, 1 end
  local extra_keys = kind == "app" and apps.EXTRA_KEYS or nil
  local jsons
  for i = 1, n do
    local r = list[i]
    local bad, json = request.check(r, extra_keys)
    if not bad and kind == "app" and (r.app == nil) == (r.url == nil) then
      bad = "give app = <name> or url = <https url>"
    end
    if bad then return other_key(list, n) or "item " .. i .. ": " .. bad, 1 end
    if json then
      jsons = jsons or {}
      jsons[i] = json
    end
  end
  if opts == nil then return nil, nil, jsons end
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
  return nil, nil, jsons
end

local function cancelled(timeout, what)
  return errors.new("timeout", string.format("the batch's timeout (%g s) ran out before this request %s",
    timeout, what), { reason = "cancelled", hint = CANCELLED_HINT })
end

local SLASH = string.byte("/")
local METHODS = request.METHODS
local Response = request.Response

-- The headers request.call sends for a request without headers or json of its own (the
-- defaults, the extra ones, the User-Agent; Authorization set by the caller): one table that
-- every such item of a batch shares, as the transports only read headers.
local function plain_headers(s, extra)
  local h = { Accept = "application/json", ["User-Agent"] = s:user_agent() }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

-- r as request.call builds it (the path check, headers over the defaults, json, query), to base;
-- `shared` (plain_headers) for the items it fits; urls: base .. path by path, for the batch.
local function build(s, base, r, authorization, extra, shared, urls, json)
  local path = r.path
  if path:byte(1) ~= SLASH then
    return nil, errors.new("invalid_request", 'path must start with "/" (got "' .. path .. '")')
  end
  local h, body = shared, r.body
  if r.headers ~= nil or r.json ~= nil or not shared then
    local herr
    h, herr = request.merge_headers(r.headers, authorization, extra)
    if not h then return nil, herr end
    if r.json ~= nil then
      body = json or cjson.encode(r.json)
      h["Content-Type"] = h["Content-Type"] or "application/json"
    end
    h["User-Agent"] = h["User-Agent"] or s:user_agent()
  end
  local url = urls[path]
  if not url then
    url = base .. path
    urls[path] = url
  end
  local query = r.query
  if query and next(query) then
    url = url .. (path:find("?", 1, true) and "&" or "?") .. request.encode_query(query)
  end
  local m = r.method
  if m == nil then m = "GET" else m = METHODS[m] or m:upper() end
  return { method = m, url = url, headers = h, body = body, timeout = r.timeout or s.api_timeout }
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

-- The loop both calls share. kind: round() -> true | nil, err (before each round; kind.gen names
-- the token the round sends); build(i) -> req | nil, err (an item's first send); resend(st) -> req
-- (the same request again, with this round's token); unauthorized(st, res) -> true to repeat at
-- once; finish(i, st, res) -> false, err (a final non-2xx); failed(err) -> err. An item gets a
-- state (st) only once its first outcome is not a 2xx: the common case costs a request table.
local function run(s, list, opts, kind)
  local n = #list
  local responses, errs = {}, {}
  for i = 1, n do responses[i], errs[i] = false, false end
  local t = s:get_transport()
  local timeout = opts and opts.timeout
  local concurrency = opts and opts.concurrency or DEFAULT_CONCURRENCY
  local deadline = timeout and t:now() + timeout
  local states, waiting, policies = {}, {}, {}
  local due                 -- the items of this round; nil: every item (the first round)
  repeat
    local ok, rerr = kind.round()
    local reqs, idx, count = {}, {}, 0
    local started, gen = t:now(), kind.gen
    for k = 1, due and #due or n do
      local i = due and due[k] or k
      local req, err
      if ok then
        local st = states[i]
        if st then
          req = kind.resend(st)
          st.gen = gen
        else
          req, err = kind.build(i)
        end
      end
      if req then
        count = count + 1
        reqs[count], idx[count] = req, i
      else
        errs[i] = err or rerr
      end
    end
    local left = deadline and deadline - t:now()
    local rs, es
    if left and left <= 0 then
      rs, es = {}, {}
      for k = 1, count do rs[k], es[k] = false, cancelled(timeout, "was sent") end
    elseif count > 0 then
      rs, es = send_all(t, reqs, concurrency, left)
    end
    due = {}
    for k = 1, count do
      local i = idx[k]
      local res, err = rs[k] or nil, es[k] or nil
      local st = states[i]
      local status = res and res.status
      if status and status >= 200 and status <= 299 then
        res.attempts = st and st.attempt + 1 or 1
        responses[i] = setmetatable(res, Response)
      else
        if not st then
          local req, retry = reqs[k], list[i].retry
          local key = retry == nil and 1 or retry and 2 or 3
          local policy = policies[key]
          if not policy then
            policy = s:retry_policy("api", retry)
            policies[key] = policy
          end
          st = { req = req, attempt = 0, policy = policy, start = started, gen = gen, method = req.method,
                 auth = req.headers.Authorization, allowed = http.retry_allowed(req, policy) }
          states[i] = st
        end
        st.attempt = st.attempt + 1
        local delay = http.next_attempt(t, st.policy, st.allowed, st.attempt, st.start, res, err)
        if delay then
          waiting[i] = t:now() + delay
        elseif res and kind.unauthorized(st, res) then
          due[#due + 1] = i
        elseif res then
          responses[i], errs[i] = kind.finish(i, st, setmetatable(res, Response))
        else
          errs[i] = kind.failed(err)
        end
      end
    end
    if #due == 0 then due = next_round(t, waiting, deadline, timeout, errs) end
  until #due == 0
  local failed = 0
  for i = 1, n do
    if errs[i] then failed = failed + 1 end
  end
  return responses, errs, failed
end

-- cfg:request_all: the configuration's credentials and host, the workspace id header on workspace
-- hosts, 2xx responses only (as request.api).
function _M.request_all(s, list, opts, jsons)
  local creds, cerr = s:credentials()
  local v = s.values
  local extra
  if creds and v.workspace_id and not s:is_account() then
    extra = { ["X-Databricks-Workspace-Id"] = v.workspace_id }
  end
  local auth          -- this round's Authorization value: one token for every item of the round
  local shared        -- plain_headers, this round's token in it
  local cred, round_extra  -- this round's credential headers; extra with those besides Authorization
  local kind = { gen = 0 }   -- gen: bumped when the 401 refresh happened

  function kind.round()
    if not creds then return nil, cerr end
    local h, err = creds.headers()
    if not h then return nil, err end
    auth, cred = h.Authorization, h
    local e = request.with_credential(h, extra)
    if not shared or e ~= round_extra then shared = plain_headers(s, e) end
    round_extra = e
    shared.Authorization = auth
    return true
  end

  local urls = {}
  function kind.build(i)
    return build(s, v.host, list[i], auth, round_extra, shared, urls, jsons and jsons[i])
  end

  function kind.resend(st)
    local req = st.req
    if req.headers ~= shared then
      for name, value in pairs(cred) do req.headers[name] = value end
    end
    st.auth = auth
    return req
  end

  -- An OAuth token we believed valid was rejected (revoked, or clocks apart): a new one, once for
  -- the batch, and the idempotent items it rejected once more (request.api's rule, per item).
  function kind.unauthorized(st, res)
    if res.status ~= 401 or not creds.source or not st.allowed or st.reauthed then return false end
    if st.gen == kind.gen then
      if kind.gen > 0 then return false end      -- the refreshed token was rejected too
      creds.source:invalidate()
      kind.gen = kind.gen + 1
    end
    st.reauthed = true
    return true
  end

  function kind.finish(i, st, res)
    -- The server's message is outside text: it may quote the credential it was sent.
    local sent = { Authorization = st.auth }
    for name, value in pairs(cred) do
      if name ~= "Authorization" then sent[name] = value end
    end
    return false, s:redact(request.status_error(res, st.method, list[i].path), { headers = sent })
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
function _M.app_request_all(s, list, opts, jsons)
  local targets = {}    -- "app|url|audience|scopes" -> { base, app, authorization } | { err = }
  local kind = { gen = 0 }

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
      if err then
        hit = { err = err }
      else
        hit = { base = base, app = app, authorization = headers.authorization(tok), shared = plain_headers(s),
                urls = {} }
        hit.shared.Authorization = hit.authorization
      end
    end
    targets[key] = hit
    return hit
  end

  function kind.round() return true end

  function kind.build(i)
    local r = list[i]
    local tg = target(r)
    if tg.err then return nil, tg.err end
    return build(s, tg.base, r, tg.authorization, nil, tg.shared, tg.urls, jsons and jsons[i])
  end

  function kind.resend(st) return st.req end

  function kind.unauthorized() return false end

  function kind.finish(i, st, res)
    local r = list[i]
    local tg = target(r)
    return false, s:redact(apps.app_error(s, res, r, tg.app, tg.base), { headers = { Authorization = st.auth } })
  end

  function kind.failed(err)
    if err.code == "network" then err.hint = apps.NETWORK_HINT end
    return err
  end

  return run(s, list, opts, kind)
end

return _M
