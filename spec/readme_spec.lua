-- Every code block of the README that claims to run does, as a user would type it.
--
-- The fence's info string says what a block is:
--   ```lua            a complete program: run by the interpreter of this busted run (lua5.4 with
--                     build/5.4, or luajit with build/jit) with this checkout's lua/ on the path
--   ```sh             shell commands: run by `sh -e` in a scratch copy of this checkout
--   ```nginx          a complete nginx.conf: `nginx -t` with Debian's nginx and its Lua module
--   ```text           a message, not code
--   ```text output    what the block before it prints: compared with what it printed, the home
--                     directory written as /home/me: each of its lines must be a line of that
--                     output (which may have more, such as make's own)
--   ```lua fragment   a piece of a program (the API listing; steps with a browser in between):
--                     not run. They must stay few.
-- Blocks run in README order, sharing one home directory, as one user's session: what a user
-- has is stood in for by the environment, never by editing the text. ~/.databrickscfg has a
-- DEFAULT profile (the fake's service principal) and `dev` (a personal access token), both on
-- the fake workspace (spec/support/fake.lua); SSL_CERT_FILE is its CA; shell blocks also get
-- DATABRICKS_HOST (the fake), a BROWSER that follows the login's redirects like a browser would,
-- and, once the Install section's `make install` has run, the lines it printed (a user pastes
-- them into the shell). At the end the scratch copy's `git status` must be clean: nothing the
-- documented commands built is left untracked.
local fake = require "spec.support.fake"
local files = require "spec.support.files"

local q = files.q
local KINDS = { lua = true, sh = true, nginx = true, text = true, ["text output"] = true, ["lua fragment"] = true }
local MAX_FRAGMENTS = 2

local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

-- { { kind, code, line }, ... } in README order
local function blocks(text)
  local list, cur = {}, nil
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line == "```" then
        list[#list + 1] = cur
        cur = nil
      else
        cur.code = cur.code .. line .. "\n"
      end
    else
      local info = line:match("^```(.*)$")
      if info then cur = { kind = info, code = "", line = n } end
    end
  end
  assert(cur == nil, "README: a code block is not closed")
  return list
end

local README = assert(files.read("README.md"))
local BLOCKS = blocks(README)

describe("the README's code blocks", function()
  it("are all marked, with few fragments", function()
    local unknown, fragments = {}, 0
    for _, b in ipairs(BLOCKS) do
      if not KINDS[b.kind] then unknown[#unknown + 1] = ("line %d: ```%s"):format(b.line, b.kind) end
      if b.kind:find("fragment", 1, true) then fragments = fragments + 1 end
    end
    assert.same({}, unknown)
    assert.is_true(fragments <= MAX_FRAGMENTS, fragments .. " fragments")
  end)

  local ws, scratch, home
  local shell_vars = {}     -- what the user's shell has gained (make install's lines)
  local is_jit = type(rawget(_G, "jit")) == "table"
  local lua = is_jit and "luajit" or "lua5.4"

  setup(function()
    ws = fake.start()
    ws:set { localhost_app = "my-app" }
    -- a scratch copy: this checkout's files (committed or not, as git would add them), the build
    scratch = files.tmpdir()
    home = files.tmpdir()
    local out, rc = run("{ git ls-files -co --exclude-standard -z; printf 'build\\0'; }"
      .. " | tar --null -T - -cf - | tar -xf - -C " .. q(scratch)
      .. " && cd " .. q(scratch) .. " && git init -q && git add -A"
      .. " && git -c user.name=readme -c user.email=readme@example.invalid commit -qm copy")
    assert(rc == 0, out)
    files.write(home .. "/.databrickscfg", table.concat({
      "[DEFAULT]", "host = " .. ws.url, "client_id = " .. ws.creds.client_id,
      "client_secret = " .. ws.creds.client_secret, "",
      "[dev]", "host = " .. ws.url, "token = " .. ws.creds.pat, "" }, "\n"))
  end)

  teardown(function()
    if ws then ws:stop() end
    if scratch then run("rm -rf " .. q(scratch) .. " " .. q(home)) end
  end)

  local function base_env()
    return { "env -i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"), "HOME=" .. q(home),
             "SSL_CERT_FILE=" .. q(ws.ca_file), "TERM=dumb" }
  end

  local RUNNERS = {}

  function RUNNERS.lua(b)
    local file = home .. "/.readme-block.lua"
    files.write(file, b.code)
    local env = base_env()
    local tree = is_jit and "jit" or "5.4"
    local pv, cv = is_jit and "LUA_PATH" or "LUA_PATH_5_4", is_jit and "LUA_CPATH" or "LUA_CPATH_5_4"
    env[#env + 1] = pv .. "=" .. q(scratch .. "/lua/?.lua;" .. scratch .. "/lua/?/init.lua;;")
    env[#env + 1] = cv .. "=" .. q(scratch .. "/build/" .. tree .. "/?.so;;")
    local out, rc = run("cd / && " .. table.concat(env, " ") .. " " .. lua .. " " .. q(file))
    os.remove(file)
    return out, rc
  end

  function RUNNERS.sh(b)
    local env = base_env()
    for _, kv in ipairs(shell_vars) do env[#env + 1] = kv end
    env[#env + 1] = "DATABRICKS_HOST=" .. q(ws.url)
    -- a browser: follows the authorize redirects to the login's loopback listener
    env[#env + 1] = "BROWSER=" .. q("curl -s -o /dev/null -L --max-time 20 --cacert " .. q(ws.ca_file) .. " %s")
    local file = home .. "/.readme-block.sh"
    files.write(file, b.code)
    local out, rc = run("cd " .. q(scratch) .. " && " .. table.concat(env, " ") .. " sh -e " .. q(file))
    os.remove(file)
    -- the lines `make install` prints go into the shell of the blocks after it
    if b.code:find("make install", 1, true) then
      for name, value in out:gmatch('export ([%w_]+)="([^"\n]*)"') do
        if name == "PATH" then value = value:gsub("%$PATH$", os.getenv("PATH") or "/usr/bin:/bin") end
        for i = #shell_vars, 1, -1 do
          if shell_vars[i]:match("^" .. name .. "=") then table.remove(shell_vars, i) end
        end
        shell_vars[#shell_vars + 1] = name .. "=" .. q(value)
      end
    end
    return out, rc
  end

  function RUNNERS.nginx(b)
    local dir = files.tmpdir()
    files.write(dir .. "/nginx.conf", b.code)
    assert(run("mkdir -p " .. q(dir .. "/logs")))
    local out, rc = run("nginx -t -q -p " .. q(dir .. "/") .. " -c " .. q(dir .. "/nginx.conf") .. " -e logs/error.log")
    run("rm -rf " .. q(dir))
    return out, rc
  end

  local last_out   -- output of the block run last
  for _, b in ipairs(BLOCKS) do
    local runner = RUNNERS[b.kind]
    if runner then
      local first = b.code:match("^[^\n]*")
      it(("runs the %s block at line %d (%s)"):format(b.kind, b.line, first), function()
        last_out = nil
        local out, rc = runner(b)
        if os.getenv("README_SPEC_SHOW") then print(out) end
        assert(rc == 0, ("README line %d, exit status %s:\n%s"):format(b.line, tostring(rc), out))
        last_out = out
      end)
    elseif b.kind == "text output" then
      it(("shows what the block before line %d prints"):format(b.line), function()
        assert(last_out, "the block before it did not run")
        local got = {}
        for line in last_out:gsub(home:gsub("%p", "%%%0"), "/home/me"):gmatch("[^\n]+") do got[line] = true end
        local missing = {}
        for line in b.code:gmatch("[^\n]+") do
          if not got[line] then missing[#missing + 1] = line end
        end
        assert.same({}, missing)
      end)
    end
  end

  it("leaves nothing untracked in the checkout", function()
    local out, rc = run("cd " .. q(scratch) .. " && git status --porcelain")
    assert.equal(0, rc, out)
    assert.equal("", out)
  end)
end)
