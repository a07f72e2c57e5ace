-- dbxauth.core files: mkdir, write_atomic, read_file, lock, stat, getpid - the primitives
-- under the CLI token cache (~/.databricks/token-cache.json, dir 0700, file 0600, atomic
-- replace, flock around read-modify-write). Cross-process behaviour is checked with child
-- interpreters of the same kind as the one running the specs.
local core = require "dbxauth.core"
local files = require "spec.support.files"

local IS54 = _VERSION == "Lua 5.4"
local q = files.q
local LUA = IS54 and "lua5.4" or "luajit"
local function oct(s) return tonumber(s, 8) end

-- Output and exit status of a shell command (5.1 and 5.4 report them differently).
local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

-- absolute: some children run elsewhere
local CPATH = run("pwd"):gsub("%s+$", "") .. (IS54 and "/build/5.4/?.so" or "/build/jit/?.so")

-- A child interpreter running `code` with dbxauth.core loadable; `prefix` is shell run first.
local function child(code, prefix)
  return (prefix or "") .. " " .. LUA .. " -e " .. q("package.cpath = " .. string.format("%q", CPATH)
    .. " .. ';' .. package.cpath; local core = require 'dbxauth.core'; " .. code)
end

local function listdir(dir)
  local out, names = run("ls -A " .. q(dir)), {}
  for name in out:gmatch("[^\n]+") do names[#names + 1] = name end
  table.sort(names)
  return names
end

local function wait_for(path, secs)
  local deadline = core.now() + (secs or 10)
  while not files.read(path) do
    assert(core.now() < deadline, "timed out waiting for " .. path)
    core.sleep(0.01)
  end
  return files.read(path)
end

local IS_ROOT = run("id -u"):match("^%s*0%s*$") ~= nil

describe("core.mkdir", function()
  it("creates a directory with exactly the mode asked for (umask does not apply)", function()
    local base = files.tmpdir()
    assert.is_true(core.mkdir(base .. "/d700", oct"700"))
    assert.same({ type = "dir", mode = oct"700" }, {
      type = core.stat(base .. "/d700").type, mode = core.stat(base .. "/d700").mode })
    assert.is_true(core.mkdir(base .. "/d777", oct"777"))
    assert.equal(oct"777", core.stat(base .. "/d777").mode)
  end)

  it("succeeds on an existing directory and leaves its mode alone", function()
    local base = files.tmpdir()
    assert(os.execute("mkdir " .. q(base .. "/d") .. " && chmod 0755 " .. q(base .. "/d")))
    assert.is_true(core.mkdir(base .. "/d", oct"700"))
    assert.equal(oct"755", core.stat(base .. "/d").mode)
    assert(os.execute("ln -s d " .. q(base .. "/link")))
    assert.is_true(core.mkdir(base .. "/link", oct"700"))
  end)

  it("fails on an existing non-directory and on a missing parent", function()
    local base = files.tmpdir()
    files.write(base .. "/f", "x")
    local ok, code, msg = core.mkdir(base .. "/f", oct"700")
    assert.is_nil(ok)
    assert.equal("exists", code)
    assert.equal("mkdir " .. base .. "/f: exists and is not a directory", msg)
    ok, code, msg = core.mkdir(base .. "/no/such", oct"700")
    assert.is_nil(ok)
    assert.equal("not_found", code)
    assert.equal("mkdir " .. base .. "/no/such: No such file or directory", msg)
  end)
end)

describe("core.write_atomic", function()
  it("writes the file with the mode set before any data, and no temp file remains", function()
    local dir = files.tmpdir()
    assert.is_true(core.mkdir(dir .. "/.databricks", oct"700"))
    local path = dir .. "/.databricks/token-cache.json"
    assert.is_true(core.write_atomic(path, '{"version": 1, "tokens": {}}', oct"600"))
    assert.equal('{"version": 1, "tokens": {}}', files.read(path))
    local st = core.stat(path)
    assert.equal("file", st.type)
    assert.equal(oct"600", st.mode)
    assert.equal(28, st.size)
    assert.same({ "token-cache.json" }, listdir(dir .. "/.databricks"))
  end)

  it("replaces content and mode, binary data included", function()
    local dir = files.tmpdir()
    local path = dir .. "/f"
    files.write(path, string.rep("old", 1000))
    local data = "a\0b\255\n" .. string.rep("z", 70000)
    assert.is_true(core.write_atomic(path, data, oct"644"))
    assert.equal(data, files.read(path))
    assert.equal(oct"644", core.stat(path).mode)
    assert.is_true(core.write_atomic(path, "", oct"600"))
    assert.equal("", files.read(path))
    assert.equal(oct"600", core.stat(path).mode)
    assert.same({ "f" }, listdir(dir))
  end)

  it("works with a relative path", function()
    local dir = files.tmpdir()
    local out, rc = run("cd " .. q(dir) .. " && " .. child("print(core.write_atomic('rel', 'r', 384))"))
    assert.equal(0, rc, out)
    assert.equal("true\n", out)
    assert.equal("r", files.read(dir .. "/rel"))
    assert.same({ "rel" }, listdir(dir))
  end)

  it("readers see the old or the new file, never a mix", function()
    local dir = files.tmpdir()
    local path = dir .. "/shared"
    local A, B = string.rep("a", 200000), string.rep("b", 200000)
    assert(core.write_atomic(path, A, oct"600"))
    local done = dir .. "/reader.out"
    os.execute(child(([[
      local seen, bad, A, B = {}, 0, (%q):rep(200000), (%q):rep(200000)
      -- Until both versions were seen (and enough reads made), not a fixed count: under
      -- load the writer may get few turns while the reader runs.
      local reads, deadline = 0, os.time() + 60
      while reads < 1500 or not (seen.a and seen.b) do
        local f = io.open(%q, "rb"); local s = f:read("*a"); f:close()
        if s == A then seen.a = true elseif s == B then seen.b = true else bad = bad + 1 end
        reads = reads + 1
        if os.time() > deadline then break end
      end
      local f = io.open(%q .. ".part", "w")
      f:write(bad, " ", tostring(seen.a), " ", tostring(seen.b)); f:close()
      os.rename(%q .. ".part", %q)
    ]]):format("a", "b", path, done, done, done)) .. " >/dev/null 2>&1 &")
    local i = 0
    while not files.read(done) do
      i = i + 1
      assert(core.write_atomic(path, i % 2 == 0 and A or B, oct"600"))
    end
    assert.is_true(i >= 2, "writer made " .. i .. " writes")
    local bad, seen_a, seen_b = files.read(done):match("^(%d+) (%a+) (%a+)$")
    assert.equal("0", bad)
    assert.equal("true", seen_a)
    assert.equal("true", seen_b)
    assert.same({ "reader.out", "shared" }, listdir(dir))
  end)

  it("fails cleanly when the directory is missing", function()
    local dir = files.tmpdir()
    local ok, code, msg = core.write_atomic(dir .. "/none/f", "x", oct"600")
    assert.is_nil(ok)
    assert.equal("not_found", code)
    assert.equal("create temp file for " .. dir .. "/none/f: No such file or directory", msg)
    assert.same({}, listdir(dir))
  end)

  it("removes the temp file when the rename fails", function()
    local dir = files.tmpdir()
    files.write(dir .. "/target/inside", "x")            -- target is a non-empty directory
    local ok, code, msg = core.write_atomic(dir .. "/target", "data", oct"600")
    assert.is_nil(ok)
    assert.equal("io", code)
    assert.equal("rename temp file onto " .. dir .. "/target: Is a directory", msg)
    assert.same({ "target" }, listdir(dir))
    assert.same({ "inside" }, listdir(dir .. "/target"))
  end)

  it("removes the temp file when a write fails half way, and keeps the old content", function()
    local dir = files.tmpdir()
    local path = dir .. "/f"
    files.write(path, "old")
    -- a 1-block file size limit: the write fails with EFBIG (SIGXFSZ ignored)
    local out, rc = run(child(("print(core.write_atomic(%q, ('x'):rep(100000), 384))"):format(path),
      "trap '' XFSZ; ulimit -f 1;"))
    assert.equal(0, rc, out)
    assert.equal("nil\tio\twrite " .. path .. ": File too large\n", out)
    assert.equal("old", files.read(path))
    assert.same({ "f" }, listdir(dir))
  end)

  it("leaves nothing behind in a read-only directory", function()
    local dir = files.tmpdir()
    assert(os.execute("chmod 0555 " .. q(dir)))
    local ok, code, msg = core.write_atomic(dir .. "/f", "x", oct"600")
    if IS_ROOT then                                       -- root is not bound by the mode bits
      assert.is_true(ok, msg)
      assert.same({ "f" }, listdir(dir))
    else
      assert.is_nil(ok)
      assert.equal("io", code)
      assert.equal("create temp file for " .. dir .. "/f: Permission denied", msg)
      assert.same({}, listdir(dir))
    end
    os.execute("chmod 0755 " .. q(dir))
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() core.write_atomic("", "x", 384) end)
    assert.has_error(function() core.write_atomic("/tmp/a\0b", "x", 384) end)
    assert.has_error(function() core.write_atomic("/tmp/x", nil, 384) end)
    assert.has_error(function() core.write_atomic("/tmp/x", "x", oct"10000") end)
    assert.has_error(function() core.write_atomic("/tmp/x", "x", -1) end)
    assert.has_error(function() core.write_atomic("/tmp/x", "x") end)
    assert.has_error(function() core.mkdir("/tmp/x", 0.5) end)
  end)
end)

describe("core.read_file", function()
  it("reads whole files, binary and empty ones included", function()
    local dir = files.tmpdir()
    local data = "\0\1\2" .. string.rep("y", 300000)
    files.write(dir .. "/bin", data)
    files.write(dir .. "/empty", "")
    assert.equal(data, core.read_file(dir .. "/bin", #data))
    assert.equal(data, core.read_file(dir .. "/bin"))
    assert.equal("", core.read_file(dir .. "/empty", 0))
  end)

  it("enforces max_bytes, also for files whose size is not known up front", function()
    local dir = files.tmpdir()
    files.write(dir .. "/f", "12345")
    assert.equal("12345", core.read_file(dir .. "/f", 5))
    local s, code, msg = core.read_file(dir .. "/f", 4)
    assert.is_nil(s)
    assert.equal("too_large", code)
    assert.equal("read " .. dir .. "/f: larger than 4 bytes", msg)
    -- /proc reports size 0
    local status = assert(core.read_file("/proc/self/status", 1000000))
    assert.matches("^Name:", status)
    assert.equal("too_large", select(2, core.read_file("/proc/self/status", 10)))
  end)

  it("reports missing files, directories and unreadable paths", function()
    local dir = files.tmpdir()
    local s, code, msg = core.read_file(dir .. "/missing", 10)
    assert.is_nil(s)
    assert.equal("not_found", code)
    assert.equal("read " .. dir .. "/missing: No such file or directory", msg)
    s, code, msg = core.read_file(dir, 10)
    assert.is_nil(s)
    assert.equal("io", code)
    assert.equal("read " .. dir .. ": Is a directory", msg)
    files.write(dir .. "/file", "x")
    s, code, msg = core.read_file(dir .. "/file/below", 10)
    assert.is_nil(s)
    assert.equal("io", code)
    assert.equal("read " .. dir .. "/file/below: Not a directory", msg)
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() core.read_file() end)
    assert.has_error(function() core.read_file("") end)
    assert.has_error(function() core.read_file("/etc/hostname", -1) end)
    assert.has_error(function() core.read_file("/etc/hostname", 1.5) end)
  end)
end)

describe("core.lock", function()
  it("creates the lock file 0600 and excludes a second holder until unlocked", function()
    local dir = files.tmpdir()
    local path = dir .. "/token-cache.json.lock"
    local a = assert(core.lock(path, 0))
    assert.equal("dbxauth.lock (held)", tostring(a))
    assert.equal(oct"600", core.stat(path).mode)
    local t0 = core.now()
    local b, code, msg = core.lock(path, 150)          -- another open file description
    local dt = core.now() - t0
    assert.is_nil(b)
    assert.equal("timeout", code)
    assert.equal("lock " .. path .. ": still held by someone else after 150 ms", msg)
    assert.is_true(dt >= 0.14 and dt < 2, tostring(dt))
    assert.is_true(a:unlock())
    assert.is_true(a:unlock())
    assert.equal("dbxauth.lock (released)", tostring(a))
    b = assert(core.lock(path, 0))
    b:unlock()
    assert.same({ "token-cache.json.lock" }, listdir(dir))  -- the lock file stays
  end)

  it("excludes another process, and a process that exits releases its lock", function()
    local dir = files.tmpdir()
    local path, held = dir .. "/l", dir .. "/held"
    -- the child takes the lock, says so, holds it for 0.7 s and exits without unlocking
    os.execute(child(("local l = assert(core.lock(%q, 5000)); io.open(%q, 'w'):close(); core.sleep(0.7)")
      :format(path, held)) .. " >/dev/null 2>&1 &")
    wait_for(held)
    local l, code = core.lock(path, 100)
    assert.is_nil(l)
    assert.equal("timeout", code)
    local t0 = core.now()
    l = assert(core.lock(path, 5000))
    assert.is_true(core.now() - t0 > 0.2)
    -- and the other way round: while we hold it, a child times out
    local out, rc = run(child(("print(core.lock(%q, 200))"):format(path)))
    assert.equal(0, rc, out)
    assert.equal("nil\ttimeout\tlock " .. path .. ": still held by someone else after 200 ms\n", out)
    l:unlock()
    out = run(child(("print(tostring(core.lock(%q, 200)))"):format(path)))
    assert.equal("dbxauth.lock (held)\n", out)
  end)

  it("is released by the garbage collector and by <close>", function()
    local path = files.tmpdir() .. "/l"
    local weak = setmetatable({}, { __mode = "k" })
    local l = assert(core.lock(path, 0))
    local mt = getmetatable(l)
    assert.equal("dbxauth.lock", mt.__name)
    if IS54 then assert.equal(mt.__gc, mt.__close) else assert.is_nil(mt.__close) end
    weak[l] = true
    l = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
    l = assert(core.lock(path, 0))
    mt.__gc(l)
    mt.__gc(l)
    assert.equal("dbxauth.lock (released)", tostring(l))
    if IS54 then
      local f = assert(load([[
        local core, path = ...
        do local l <close> = assert(core.lock(path, 0)) end
        return core.lock(path, 0)
      ]]))
      assert.equal("dbxauth.lock (held)", tostring(f(core, path)))
    end
  end)

  it("uses a close-on-exec descriptor: a child process does not inherit the lock", function()
    local path = files.tmpdir() .. "/l"
    local l = assert(core.lock(path, 0))
    local out = run("ls -l /proc/self/fd/ | grep -c " .. q(path) .. " || true")
    assert.equal("0\n", out)
    l:unlock()
  end)

  it("fails with io when the lock file cannot be created", function()
    local dir = files.tmpdir()
    local l, code, msg = core.lock(dir .. "/no/l", 100)
    assert.is_nil(l)
    assert.equal("io", code)
    assert.equal("lock " .. dir .. "/no/l: No such file or directory", msg)
    assert.has_error(function() core.lock(dir .. "/l", -1) end)
    assert.has_error(function() core.lock(dir .. "/l") end)
  end)
end)

describe("core.lock and what is at its path", function()
  it("refuses a symlink there, dangling or not, and creates nothing through it", function()
    local dir = files.tmpdir()
    files.write(dir .. "/victim", "keep")
    for _, target in ipairs { dir .. "/victim", dir .. "/not-there" } do
      assert(os.execute("rm -f " .. q(dir .. "/l") .. " && ln -s " .. q(target) .. " " .. q(dir .. "/l")))
      local l, code, msg = core.lock(dir .. "/l", 0)
      assert.is_nil(l)
      assert.equal("io", code)
      assert.equal("lock " .. dir .. "/l: is a symbolic link, which dbxauth does not follow; remove it", msg)
    end
    assert.is_nil(core.stat(dir .. "/not-there"))
    assert.equal("keep", files.read(dir .. "/victim"))
  end)

  it("refuses a FIFO or a directory there without hanging", function()
    local dir = files.tmpdir()
    assert(os.execute("mkfifo " .. q(dir .. "/fifo") .. " && mkdir " .. q(dir .. "/d")))
    for _, name in ipairs { "fifo", "d" } do
      local l, code, msg = core.lock(dir .. "/" .. name, 0)
      assert.is_nil(l)
      assert.equal("io", code)
      assert.matches("^lock " .. (dir .. "/" .. name):gsub("%p", "%%%0") .. ": ", msg)
    end
  end)
end)

describe("core.private_dir", function()
  it("creates the directory 0700 whatever the umask", function()
    local base = files.tmpdir()
    local out, rc = run("umask 0 && " .. child(("print(core.private_dir(%q))"):format(base .. "/a")))
    assert.equal(0, rc, out)
    assert.equal("true\n", out)
    assert.equal(oct"700", core.stat(base .. "/a").mode)
  end)

  it("sets an existing directory of ours to 0700, also through a symlink", function()
    local base = files.tmpdir()
    assert(os.execute("mkdir " .. q(base .. "/d") .. " && chmod 0777 " .. q(base .. "/d")))
    assert.is_true(core.private_dir(base .. "/d"))
    assert.equal(oct"700", core.stat(base .. "/d").mode)
    assert(os.execute("mkdir " .. q(base .. "/real") .. " && chmod 0755 " .. q(base .. "/real")
      .. " && ln -s real " .. q(base .. "/link")))
    assert.is_true(core.private_dir(base .. "/link"))
    assert.equal(oct"700", core.stat(base .. "/real").mode)
  end)

  it("refuses a directory others may write into that is not ours, and reports what exists", function()
    local base = files.tmpdir()
    local foreign = "/tmp"                              -- root's, 1777: never changed by a non-root user
    if IS_ROOT then
      foreign = base .. "/foreign"
      assert(os.execute("mkdir " .. q(foreign) .. " && chown nobody " .. q(foreign) .. " && chmod 0775 " .. q(foreign)))
    end
    local mode = core.stat(foreign).mode
    local ok, code, msg = core.private_dir(foreign)
    assert.is_nil(ok)
    assert.equal("insecure", code)
    assert.matches("^" .. foreign:gsub("%p", "%%%0") .. " is writable by its group", msg)
    assert.matches("cannot be made private: it belongs to another user$", msg)
    assert.equal(mode, core.stat(foreign).mode)
    if IS_ROOT then                                     -- only readable by others: accepted as it is
      assert(os.execute("chmod 0755 " .. q(foreign)))
      assert.is_true(core.private_dir(foreign))
      assert.equal(oct"755", core.stat(foreign).mode)
    end
    files.write(base .. "/f", "x")
    ok, code = core.private_dir(base .. "/f")
    assert.is_nil(ok)
    assert.equal("exists", code)
    ok, code = core.private_dir(base .. "/no/such")
    assert.is_nil(ok)
    assert.equal("not_found", code)
  end)
end)

describe("core.clean_temps", function()
  it("removes only write_atomic's temp files of that path that are old enough", function()
    local dir = files.tmpdir()
    local path = dir .. "/token-cache.json"
    files.write(path, "{}")
    for _, name in ipairs { ".token-cache.json-Ab12Cd.tmp", ".token-cache.json-zz99ZZ.tmp",
                            ".token-cache.json-Ab12C.tmp", ".token-cache.json-Ab12Cd.tmpx",
                            ".other.json-Ab12Cd.tmp", "token-cache.json-Ab12Cd.tmp" } do
      files.write(dir .. "/" .. name, "tokens")
    end
    assert(os.execute("touch -d '-2 minutes' " .. q(dir .. "/.token-cache.json-Ab12Cd.tmp")))
    assert(os.execute("mkdir " .. q(dir .. "/.token-cache.json-Dir000.tmp")
      .. " && ln -s " .. q(path) .. " " .. q(dir .. "/.token-cache.json-Lnk000.tmp")))
    assert.equal(1, core.clean_temps(path, 60))        -- the old one only
    assert.is_nil(files.read(dir .. "/.token-cache.json-Ab12Cd.tmp"))
    assert.equal(1, core.clean_temps(path))            -- max_age 0: the fresh one too
    assert.same({ ".other.json-Ab12Cd.tmp", ".token-cache.json-Ab12C.tmp", ".token-cache.json-Ab12Cd.tmpx",
                  ".token-cache.json-Dir000.tmp", ".token-cache.json-Lnk000.tmp", "token-cache.json",
                  "token-cache.json-Ab12Cd.tmp" }, listdir(dir))
    assert.equal("{}", files.read(path))                -- the link's target is untouched
    assert.equal(0, core.clean_temps(path))
  end)

  it("reports a missing directory and raises on bad arguments", function()
    local dir = files.tmpdir()
    local n, code = core.clean_temps(dir .. "/none/f")
    assert.is_nil(n)
    assert.equal("not_found", code)
    assert.has_error(function() core.clean_temps(dir .. "/f", -1) end)
    assert.has_error(function() core.clean_temps(dir .. "/f", 0 / 0) end)
    assert.has_error(function() core.clean_temps("") end)
  end)
end)

describe("core.stat and core.getpid", function()
  it("describes files, directories and others", function()
    local dir = files.tmpdir()
    files.write(dir .. "/f", "hello")
    assert(os.execute("chmod 0640 " .. q(dir .. "/f")))
    local uid = tonumber((run("id -u")))
    local st = assert(core.stat(dir .. "/f"))
    assert.equal("file", st.type)
    assert.equal(oct"640", st.mode)
    assert.equal(5, st.size)
    assert.equal(uid, st.uid)
    assert.is_true(math.abs(st.mtime - core.now()) < 60)
    if IS54 then assert.equal("integer", math.type(st.size)) end
    assert.equal("dir", core.stat(dir).type)
    assert.equal("other", core.stat("/dev/null").type)
    local none, code, msg = core.stat(dir .. "/none")
    assert.is_nil(none)
    assert.equal("not_found", code)
    assert.equal("stat " .. dir .. "/none: No such file or directory", msg)
  end)

  it("getpid is this process", function()
    assert.equal(tonumber((run("echo $PPID"))), core.getpid())
  end)
end)
