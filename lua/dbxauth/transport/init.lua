-- Which transport a configuration uses when the caller did not hand it one.
-- opts: { ca_file, skip_verify, max_body, resolve }
--
-- Inside nginx (the `ngx` global with cosockets exists) it is always the cosocket transport,
-- never libcurl: libcurl would block the whole worker, and a worker calling itself through it
-- deadlocks. The cosocket transport checks the phase on every send, so a configuration created
-- in init_by_lua* or init_worker_by_lua* still works once it is used from a request handler
-- or a timer; used where cosockets do not exist (init, init_worker, log, header_filter, ...)
-- send fails at once with "cosockets are not available in the <phase> phase; ...".
-- Everywhere else: libcurl.
local _M = {}

-- true when running inside nginx's Lua VM (not in a plain interpreter, nor in an
-- ngx.run_worker_thread VM, which has no cosockets)
function _M.in_nginx()
  local n = rawget(_G, "ngx")
  return type(n) == "table" and type(n.get_phase) == "function" and type(n.socket) == "table"
    and type(n.socket.tcp) == "function"
end

function _M.default(opts)
  if _M.in_nginx() then
    return require("dbxauth.transport.ngx").new(opts)
  end
  return require("dbxauth.transport.curl").new(opts)
end

-- The clock of the transport default(opts) makes (no opts.clock), as a plain function: the
-- provider context reads it directly, before that transport even exists.
function _M.default_now()
  if _M.in_nginx() then return require("dbxauth.transport.ngx").now_function end
  return require("dbxauth.transport.curl").now_function
end

return _M
