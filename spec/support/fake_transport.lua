-- A scripted transport for specs that need no network: answers come from a list of
-- handlers, every request is recorded, and time only moves when the code sleeps or the
-- spec advances it.
local _M = {}

local T = {}
T.__index = T

-- routes: list of { method = "GET", url = "https://h/p" | pattern = "...", respond = fn(req) -> res | nil, err }
function _M.new(routes)
  return setmetatable({ routes = routes or {}, calls = {}, t = 1000000, slept = {} }, T)
end

function T:send(req)
  self.calls[#self.calls + 1] = req
  for _, r in ipairs(self.routes) do
    if (not r.method or r.method == req.method)
      and ((r.url and r.url == req.url) or (r.pattern and req.url:find(r.pattern))) then
      local res, err = r.respond(req, self)
      if res then
        res.headers = res.headers or {}
        res.body = res.body or ""
      end
      return res, err
    end
  end
  return { status = 404, headers = {}, body = '{"error_code":"ENDPOINT_NOT_FOUND","message":"no route"}' }
end

function T:sleep(s)
  self.slept[#self.slept + 1] = s
  self.t = self.t + s
end

function T:now()
  return self.t
end

function T:count(method, url_pattern)
  local n = 0
  for _, c in ipairs(self.calls) do
    if c.method == method and c.url:find(url_pattern) then n = n + 1 end
  end
  return n
end

return _M
