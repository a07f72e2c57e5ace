-- The `dbxauth` command, a drop-in for `databricks auth` (bin/dbxauth is a thin wrapper):
--   login, token, profiles, describe, env, logout, switch; `dbxauth <command> --help`.
-- Results go to stdout, messages and prompts to stderr; errors print `Error: <message>` and
-- exit 1, as the Databricks CLI (a Cobra program) does. Over the public API only.
--
--   local code = require("dbxauth.cli").main(args, { getenv =, home =, stdout = fn(s),
--     stderr = fn(s), read_line = fn() -> line | nil, tty = fn() -> bool })
local dbxauth = require "dbxauth"
local errors = require "dbxauth.errors"
local args = require "dbxauth.cli.args"
local commands = require "dbxauth.cli.commands"
local output = require "dbxauth.cli.output"

local _M = {}
_M.json, _M.obj = output.json, output.obj

local RUN = {
  login = function(...) return require("dbxauth.cli.login").run(...) end,
  token = function(...) return require("dbxauth.cli.token").run(...) end,
  profiles = function(...) return require("dbxauth.cli.profiles").run(...) end,
  switch = function(...) return require("dbxauth.cli.profiles").switch(...) end,
  describe = function(...) return require("dbxauth.cli.describe").run(...) end,
  env = function(...) return require("dbxauth.cli.describe").env(...) end,
  logout = function(...) return require("dbxauth.cli.logout").run(...) end,
}

local function report(ctx, err)
  if not errors.is(err) then err = errors.new("error", tostring(err)) end
  ctx.stderr("Error: " .. err.message .. "\n")
  if err.hint and err.hint ~= "" then ctx.stderr("hint: " .. err.hint .. "\n") end
  return 1
end

-- Both stdin and stderr are terminals (the shell's test, so no C is needed for it).
local function tty()
  local ok = os.execute("test -t 0 && test -t 2")
  return ok == true or ok == 0
end

local function default_ctx(ctx)
  ctx = ctx or {}
  local getenv = ctx.getenv or os.getenv
  return {
    getenv = getenv,
    home = ctx.home or getenv("HOME"),
    stdout = ctx.stdout or function(s) io.stdout:write(s); io.stdout:flush() end,
    stderr = ctx.stderr or function(s) io.stderr:write(s); io.stderr:flush() end,
    read_line = ctx.read_line or function() return io.stdin:read("*l") end,
    tty = ctx.tty or tty,
  }
end

local VALUE_FLAGS = { ["--profile"] = true, ["-p"] = true, ["--host"] = true, ["--account-id"] = true,
                      ["-o"] = true, ["--output"] = true }

-- The index of the command name: the first argument that is neither a flag nor a flag's value.
local function command_index(list)
  local i = 1
  while i <= #list do
    local a = list[i]
    if a == "--" then return nil end
    if a:sub(1, 1) ~= "-" then return i end
    if VALUE_FLAGS[a] then i = i + 1 end
    i = i + 1
  end
  return nil
end

local function top_level(ctx, list)
  for _, a in ipairs(list) do
    if a == "--version" or a == "-v" then
      ctx.stdout("dbxauth v" .. dbxauth.VERSION .. "\n")
      return 0
    end
  end
  local opts, err = args.parse({ name = "", positional = 0 }, list)
  if not opts and not err:find("^unknown command") then return report(ctx, err) end
  ctx.stdout(commands.TOP_USAGE)
  return 0
end

-- args: the command line after the program name. Returns the exit status.
function _M.main(list, ctx)
  ctx = default_ctx(ctx)
  local at = command_index(list)
  if not at then return top_level(ctx, list) end
  local name = list[at]
  local rest = {}
  for i, a in ipairs(list) do
    if i ~= at then rest[#rest + 1] = a end
  end
  if name == "help" then
    local c = commands.COMMANDS[rest[command_index(rest) or 0] or ""]
    ctx.stdout(c and c.usage or commands.TOP_USAGE)
    return 0
  end
  local cmd = commands.COMMANDS[name]
  if not cmd then
    ctx.stderr('Error: unknown command "' .. name .. '" for "dbxauth"\nRun \'dbxauth --help\' for usage.\n')
    return 1
  end
  local opts, pos = args.parse(cmd, rest)
  if not opts then return report(ctx, pos) end
  if opts.help then
    ctx.stdout(cmd.usage)
    return 0
  end
  if not opts.output then
    local env = ctx.getenv("DATABRICKS_OUTPUT_FORMAT")
    opts.output = (env and env:lower() == "json") and "json" or "text"
  end
  ctx.debug = opts.debug
  -- --debug brackets the run as the CLI's log does (no arguments: they may name hosts with
  -- user information); the library's request log goes through the logger in between.
  local function log(text)
    if ctx.debug then ctx.stderr(os.date("!%H:%M:%S") .. " Debug: " .. text .. "\n") end
  end
  log("start version=" .. dbxauth.VERSION .. " command=" .. name)
  local ok, err = RUN[name](ctx, opts, pos)
  local code = ok and 0 or report(ctx, err)
  log((code == 0 and "completed" or "failed") .. " execution exit_code=" .. code)
  return code
end

_M.COMMANDS = commands.ORDER
return _M
