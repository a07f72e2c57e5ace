-- dbxauth.config: every conformance case through config.resolve (what resolution decides:
-- resolve/validate errors, hosts, values, sources, profile pinning), plus the helpers.
local config = require("dbxauth.config")
local cases = require("spec.fixtures.conformance")

local UNSET = "<unset>"
local DEFAULT_AUTH = "default auth: cannot configure default credentials, please check "
  .. "https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication "
  .. "to configure credentials for your preferred authentication method"

local function env_of(t)
  t = t or {}
  return function(name) return t[name] end
end

local files = require "spec.support.files"
local write = files.write

-- One home directory for the whole file; each case writes its files and removes them after.
local HOME = files.tmpdir()

local function write_case_files(case)
  local written = {}
  local function put(rel, text)
    write(HOME .. "/" .. rel, text)
    written[#written + 1] = HOME .. "/" .. rel
  end
  if case.file then put(".databrickscfg", case.file) end
  for rel, text in pairs(case.profile_files or {}) do put(rel, text) end
  return written
end

local function substitute(v, home)
  if type(v) ~= "string" then return v end
  local p = home .. "/.databrickscfg"
  return (v:gsub("<P>", function() return p end):gsub("<HOME>", function() return home end))
end

local function deep_copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = deep_copy(v) end
  return out
end

local function expect_value(label, want, got, home)
  if want == UNSET then
    assert.is_nil(got, label .. " should be unset")
  else
    assert.same(substitute(want, home), got, label)
  end
end

-- Checks for a case whose resolution must succeed.
local function check_state(case, st, home)
  local want = case.want
  if want.host then assert.equals(want.host, st.values.host) end
  for k, v in pairs(want.values or {}) do expect_value("values." .. k, v, st.values[k], home) end
  for k, v in pairs(want.sources or {}) do assert.equals(v, st.sources[k], "sources." .. k) end
  if want.config_file then expect_value("config_file", want.config_file, st.config_file, home) end
  if want.profile_fallback then expect_value("profile_fallback", want.profile_fallback, st.profile_fallback, home) end
  if want.scopes then assert.same(want.scopes, config.scopes(st)) end
  local md = case.metadata or {}
  if want.cloud then assert.equals(want.cloud, config.cloud(st, md.cloud)) end
  if want.host_type then assert.equals(want.host_type, config.host_type(st, md.host_type)) end
end

local function run_case(case, home)
  local opts = deep_copy(case.opts or {})
  local st, err = config.resolve(opts, { getenv = env_of(case.env), home = home })
  assert.same(case.opts or {}, opts, "resolve must not modify opts")
  local want_err = case.want.error and substitute(case.want.error, home)
  if want_err and (want_err:find("^resolve: ") or want_err:find("^validate: ")) then
    assert.is_nil(st)
    assert.equals("config", err.code)
    assert.equals(want_err, err.message)
    return
  end
  assert.is_nil(err and err.message)
  check_state(case, st, home)
  if want_err and want_err:sub(1, #DEFAULT_AUTH) == DEFAULT_AUTH then
    -- The chain appends the suffix of the resolved state: check ours produces the exact text.
    assert.equals(want_err, config.with_suffix(DEFAULT_AUTH, st))
  elseif want_err and want_err:find("^default auth: ") then
    -- a provider's own failure: resolution is fine, the chain (chain_spec) gives that answer
    assert.is_nil(st.host_error)
  elseif want_err then
    assert.equals(want_err, st.host_error)
  else
    assert.is_nil(st.host_error)
  end
end

describe("conformance cases", function()
  it("are many, named uniquely", function()
    local seen = {}
    for _, c in ipairs(cases) do
      assert.is_nil(seen[c.name], "duplicate case name " .. c.name)
      seen[c.name] = true
      -- The chain spec runs every case end to end, so each must state its outcome.
      assert.is_true((c.want.error ~= nil) ~= (c.want.auth_type ~= nil), c.name .. ": error xor auth_type")
    end
    assert.is_true(#cases >= 70)
  end)

  for _, case in ipairs(cases) do
    it(case.name, function()
      local written = write_case_files(case)
      local ok, err = pcall(run_case, case, HOME)
      for _, path in ipairs(written) do os.remove(path) end
      if not ok then error(err, 0) end
    end)
  end

  teardown(function() os.execute("rm -rf " .. files.q(HOME)) end)
end)

describe("config.check_options", function()
  local check = config.check_options

  it("accepts every attribute with its type", function()
    assert.is_nil(check({ host = "h", skip_verify = true, rate_limit = 3, scopes = { "a" } }))
    assert.is_nil(check({ scopes = "a b", debug_headers = "True", http_timeout_seconds = "30" }))
    assert.is_nil(check({ token_audience = "a", audience = "a", databricks_id_token_filepath = "/p" }))
    assert.is_nil(check({ ca_file = "/ca.pem", max_response_bytes = 1048576 }))
    assert.is_nil(check({ host = "", rate_limit = "" }), "empty means unset")
    assert.is_nil(check(nil))
  end)

  it("names unknown attributes", function()
    assert.equals('unknown configuration attribute "hots"', check({ hots = "x" }))
    assert.equals('unknown configuration attribute "1"', check({ "x" }))
  end)

  it("allows extra names", function()
    assert.is_nil(check({ host = "h", transport = {} }, { transport = true }))
    assert.is_nil(check({ transport = {} }, { "transport" }))
  end)

  it("reports the wrong type", function()
    assert.equals('attribute "host" must be a string, got number', check({ host = 1 }))
    assert.equals('attribute "skip_verify" must be a boolean, got number', check({ skip_verify = 1 }))
    assert.equals('attribute "skip_verify" must be a boolean, got string "yes"', check({ skip_verify = "yes" }))
    assert.equals('attribute "rate_limit" must be an integer, got number 1.5', check({ rate_limit = 1.5 }))
    assert.equals('attribute "rate_limit" must be an integer, got string "1.5"', check({ rate_limit = "1.5" }))
    assert.equals('attribute "rate_limit" must be an integer, got boolean', check({ rate_limit = true }))
    assert.equals('attribute "scopes" must be a string or a list of strings, got number', check({ scopes = 1 }))
    assert.equals('attribute "scopes" must be a string or a list of strings, got a list containing a number',
      check({ scopes = { "a", 2 } }))
    assert.equals("options must be a table, got string", check("host"))
  end)

  it("reports in a stable order", function()
    assert.equals('unknown configuration attribute "aaa"', check({ zzz = 1, aaa = 1, host = 2 }))
  end)
end)

describe("config.resolve", function()
  local function resolve(opts, env)
    return config.resolve(opts, { getenv = env_of(env), home = "/nonexistent-dbxauth-home" })
  end

  it("raises on a wrongly typed option", function()
    assert.has_error(function() resolve({ host = 42 }) end,
      "bad argument #1 to 'resolve' (attribute \"host\" must be a string, got number)")
  end)

  it("ignores names that are not attributes", function()
    local st = assert(resolve({ host = "h", token = "t", transport = {} }))
    assert.equals("https://h", st.values.host)
  end)

  it("records the env var used, primary before alias", function()
    local st = assert(resolve({}, { DATABRICKS_OIDC_TOKEN_FILEPATH = "/a", DATABRICKS_OIDC_TOKEN_FILE = "/b",
                                    DATABRICKS_HOST = "h" }))
    assert.equals("/a", st.values.oidc_token_filepath)
    assert.equals("DATABRICKS_OIDC_TOKEN_FILEPATH", st.env_names.oidc_token_filepath)
    assert.equals("DATABRICKS_HOST", st.env_names.host)
  end)

  it("types explicit strings and numbers", function()
    local st = assert(resolve({ host = "h", skip_verify = "1", rate_limit = "7", http_timeout_seconds = 30.0 }))
    assert.is_true(st.values.skip_verify)
    assert.equals(7, st.values.rate_limit)
    assert.equals("30", tostring(st.values.http_timeout_seconds), "no float rendering of integers")
  end)

  it("reports a missing home only when it is needed", function()
    local st, err = config.resolve({}, { getenv = env_of({}), home = false })
    assert.is_nil(st)
    assert.equals("resolve: cannot find homedir: $HOME is not defined", err.message)
    assert(config.resolve({ config_file = "/nonexistent/x" }, { getenv = env_of({}), home = false }))
  end)

  it("keeps a host without hostname raw", function()
    local st = assert(resolve({ host = "https://:443", token = "t" }))
    assert.equals("https://:443", st.values.host)
    assert.equals("no host configured", st.host_error)
  end)
end)

describe("config messages", function()
  local function state(opts, env)
    return assert(config.resolve(opts, { getenv = env_of(env), home = "/nonexistent-dbxauth-home" }))
  end

  it("debug_suffix lists printed attributes in Go order and their env vars", function()
    local st = state({ username = "u" }, { DATABRICKS_HOST = "x", DATABRICKS_USERNAME = "e",
                                           DATABRICKS_RATE_LIMIT = "3" })
    assert.equals(". Config: host=https://x, username=u. Env: DATABRICKS_HOST, DATABRICKS_USERNAME",
      config.debug_suffix(st))
    assert.equals("", config.debug_suffix(state({})))
  end)

  it("with_suffix strips trailing dots first (Py texts end in '.')", function()
    local st = state({}, { DATABRICKS_TOKEN = "x" })
    assert.equals("default auth: x. Config: token=***. Env: DATABRICKS_TOKEN",
      config.with_suffix("default auth: x.", st))
    assert.equals("a", config.with_suffix("a..", state({})))
  end)

  it("never prints a sensitive value", function()
    local st = state({ token = "S3CR3T-1", password = "S3CR3T-2", client_secret = "S3CR3T-3",
                       google_credentials = "S3CR3T-4", azure_client_secret = "S3CR3T-5",
                       metadata_service_url = "http://S3CR3T-6/x", actions_id_token_request_token = "S3CR3T-7",
                       auth_type = "pat" })
    local s = config.debug_suffix(st)
    assert.is_nil(s:find("S3CR3T", 1, true), s)
  end)
end)

describe("config helpers", function()
  local function state(opts)
    return assert(config.resolve(opts, { getenv = env_of({}), home = "/nonexistent-dbxauth-home" }))
  end

  it("scopes returns a copy with the all-apis default", function()
    local st = state({ scopes = "b a" })
    local s = config.scopes(st)
    assert.same({ "a", "b" }, s)
    s[1] = "changed"
    assert.same({ "a", "b" }, config.scopes(st))
    assert.same({ "all-apis" }, config.scopes(state({})))
  end)

  it("host_type: metadata wins, case-insensitively; unknown values are ignored", function()
    local st = state({ host = "https://accounts.cloud.databricks.com" })
    assert.equals("account", config.host_type(st))
    assert.equals("unified", config.host_type(st, "UNIFIED"))
    assert.equals("account", config.host_type(st, "some_future_type"))
    assert.equals("workspace", config.host_type(state({ host = "https://w.cloud.databricks.com" })))
    assert.equals("workspace", config.host_type(state({})))
  end)

  it("cloud: resource id, then cloud attribute, then metadata, then DNS", function()
    assert.equals("GCP", config.cloud(state({ host = "https://x.cloud.databricks.com" }), "gcp"))
    assert.equals("AWS", config.cloud(state({ host = "https://x.gcp.databricks.com", cloud = "aws" }), "GCP"))
    assert.equals("Azure", config.cloud(state({ host = "https://x.azuredatabricks.net" }), "bogus"))
    assert.equals("AWS", config.cloud(state({})))
  end)
end)

describe("config.ATTRIBUTES", function()
  it("lists the Go declaration order for printed attributes", function()
    local printed = {}
    for _, a in ipairs(config.ATTRIBUTES) do
      if not a.internal then printed[#printed + 1] = a.label end
    end
    assert.same({ "host", "cluster_id", "warehouse_id", "serverless_compute_id", "metadata_service_url",
      "account_id", "workspace_id", "token", "username", "password", "profile", "config_file",
      "google_service_account", "google_credentials", "azure_workspace_resource_id", "azure_use_msi",
      "azure_client_secret", "azure_client_id", "azure_tenant_id", "actions_id_token_request_url",
      "actions_id_token_request_token", "azure_environment", "azure_login_app_id", "client_id", "client_secret",
      "databricks_cli_path", "databricks_id_token_filepath", "oidc_token_env" }, printed)
  end)

  it("maps aliases to one entry", function()
    assert.equals(config.BY_NAME.token_audience, config.BY_NAME.audience)
    assert.equals("oidc_token_filepath", config.BY_NAME.databricks_id_token_filepath.name)
    assert.same({ "DATABRICKS_OIDC_TOKEN_FILEPATH", "DATABRICKS_OIDC_TOKEN_FILE" },
      config.BY_NAME.oidc_token_filepath.env)
  end)

  it("gives every entry the documented fields", function()
    local types = { str = true, bool = true, int = true, list = true }
    for _, a in ipairs(config.ATTRIBUTES) do
      assert.is_string(a.name)
      assert.is_true(types[a.type], a.name)
      assert.is_table(a.env)
      assert.is_boolean(a.sensitive)
      assert.is_boolean(a.internal)
      assert.is_true(a.group == nil or not a.internal, a.name)
    end
  end)
end)
