-- Sending with retries, over any transport (decision D17):
--   * API calls: 429 and 503 are retried for idempotent methods (POST/PATCH only when the caller
--     says retry = true), linear backoff min(attempt, 10) s + 50-750 ms jitter;
--   * token requests: 429, 502, 503, 504 retried, exponential full-jitter backoff 1 s .. 60 s;
--   * Retry-After (seconds or HTTP-date) raises the delay; a refused or reset connection before
--     anything was sent is retried; TLS failures, timeouts and other 4xx never are;
--   * everything bounded by the retry budget (retry_timeout_seconds, 300 s; 60 s for tokens).
local apierror = require "dbxauth.apierror"

local _M = {}

local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true }
local API_STATUS = { [429] = true, [503] = true }
local TOKEN_STATUS = { [429] = true, [502] = true, [503] = true, [504] = true }

local function api_backoff(attempt)
  return math.min(attempt, 10) + 0.05 + math.random() * 0.7
end

local function token_backoff(attempt)
  return math.random() * math.min(2 ^ (attempt - 1), 60)
end

-- policy: { kind = "api"|"token", retry = bool|nil, budget = seconds, now = fn|nil }
-- now: the configuration's clock (for Retry-After dates); the transport's when absent.
function _M.retry_allowed(req, policy)
  if policy.kind == "token" then return true end
  if policy.retry ~= nil then return policy.retry and true or false end
  return IDEMPOTENT[req.method or "GET"] == true
end

local function retryable_status(policy, status)
  if policy.kind == "token" then return TOKEN_STATUS[status] end
  return API_STATUS[status]
end

local function backoff(policy, attempt)
  return policy.kind == "token" and token_backoff(attempt) or api_backoff(attempt)
end

-- After attempt number `attempt` of a request first sent at `start` (transport:now()): the
-- seconds to wait before the next attempt, or nil when this outcome is the final one. res.attempts
-- counts tries; when the budget ran out on a retryable status, res.gave_up is set so the caller can
-- say so (an error's message says it). Used by send, and by batch.lua for each of its requests.
function _M.next_attempt(transport, policy, allowed, attempt, start, res, err)
  local delay
  if res then
    res.attempts = attempt
    if not (allowed and retryable_status(policy, res.status)) then return nil end
    delay = backoff(policy, attempt)
    local ra = apierror.retry_after(res.headers and res.headers["retry-after"],
      policy.now and policy.now() or transport:now())
    if ra and ra > delay then delay = ra end
  else
    err.attempts = attempt
    if not (allowed and err.retryable) then return nil end
    delay = backoff(policy, attempt)
  end
  local elapsed = transport:now() - start
  if elapsed + delay > policy.budget then
    if res then
      res.gave_up = string.format("gave up after %d attempts: retrying again would exceed the %d s retry budget",
        attempt, policy.budget)
    else
      err.message = err.message .. string.format(" (gave up after %d attempts)", attempt)
    end
    return nil
  end
  return delay
end

-- After the first attempt (sent at `start`, its outcome res, err): the retries, as send makes
-- them. For callers that send the first attempt themselves (Session:send_api).
function _M.resume(transport, req, policy, start, res, err)
  local allowed = _M.retry_allowed(req, policy)
  local attempt = 1
  while true do
    local delay = _M.next_attempt(transport, policy, allowed, attempt, start, res, err)
    if not delay then
      if res then return res end
      return nil, err
    end
    transport:sleep(delay)
    attempt = attempt + 1
    res, err = transport:send(req)
  end
end

-- Returns the final response (any status) or nil, err. res.attempts counts tries; when the
-- budget ran out on a retryable status, res.gave_up is set so the caller can say so.
function _M.send(transport, req, policy)
  local start = transport:now()
  local res, err = transport:send(req)
  return _M.resume(transport, req, policy, start, res, err)
end

-- Statuses an API request may be retried on: any other response is final after one attempt.
_M.API_STATUS = API_STATUS

return _M
