-- dbxauth.host: §3 examples (Go fixHostIfNeeded, URL host-type rule, DNS cloud detection).
local host = require("dbxauth.host")

-- { raw, canonical, promoted workspace_id, promoted account_id }
local NORMALIZE = {
  { "x", "https://x" },
  { "https://x.com/", "https://x.com" },
  { "https://x.com/?o=123", "https://x.com", "123" },
  { "https://x.com/?o=abc", "https://x.com" },
  { "http://localhost:8080/p", "http://localhost:8080" },
  { "abc.def.ghi/", "https://abc.def.ghi" },
  { "abc.def.ghi:443", "https://abc.def.ghi:443" },
  { "https://abc.def.ghi:443", "https://abc.def.ghi:443" },
  { "localhost:8080/path?x=1", "https://localhost:8080" },
  { "HTTPS://Mixed.Case.com/p", "https://Mixed.Case.com" },
  { "https://x.com/a/b#frag", "https://x.com" },
  { "https://x.com#?o=1", "https://x.com" },
  { "http://[::1]:8080/x", "http://[::1]:8080" },
  { "https://x.com?workspace_id=12345", "https://x.com", "12345" },
  { "https://x.com/?o=abc&workspace_id=12", "https://x.com", "12" },
  { "https://x.com/?o=1&o=2", "https://x.com", "1" },
  { "https://x.com/?w=&o=5", "https://x.com", "5" },
  { "https://x.com/?w=7a99b43c-b46c-432b-b0a7-814217701909&o=1", "https://x.com",
    "7a99b43c-b46c-432b-b0a7-814217701909" },
  { "https://x.com/?a=abc", "https://x.com", nil, "abc" },
  { "https://x.com/?account_id=def", "https://x.com", nil, "def" },
  { "https://x.com/?account_id=def&a=abc", "https://x.com", nil, "abc" },
  { "https://x.com/?a=a%20b+c", "https://x.com", nil, "a b c" },
  { "https://x.com/?o=1;a=b", "https://x.com" },
}

describe("host.normalize", function()
  for _, row in ipairs(NORMALIZE) do
    it(row[1], function()
      local canonical, promoted = host.normalize(row[1])
      assert.equals(row[2], canonical)
      assert.equals(row[3], promoted.workspace_id)
      assert.equals(row[4], promoted.account_id)
    end)
  end

  for _, raw in ipairs({ "https://user:pw@x.com/", "https://a.com@evil.com", "http://user@:80/",
                         "https://a%2e.com" }) do
    it("refuses userinfo and percent-encoding in " .. raw, function()
      local canonical, err = host.normalize(raw)
      assert.is_nil(canonical)
      assert.matches("^invalid host: ", err)
    end)
  end

  for _, raw in ipairs({ "", "https://:443", "https://" }) do
    it("reports no host for " .. (raw == "" and "empty" or raw), function()
      local canonical, err = host.normalize(raw)
      assert.is_nil(canonical)
      assert.equals("no host configured", err)
    end)
  end

  it("reports no host for a non-string", function()
    assert.same({ nil, "no host configured" }, { host.normalize(nil) })
  end)
end)

describe("host.is_account_url", function()
  local ROWS = {
    { "https://accounts.cloud.databricks.com", true },
    { "accounts.cloud.databricks.com", true },
    { "https://accounts-dod.cloud.databricks.us", true },
    { "https://accounts.azuredatabricks.net", true },
    { "https://accounts.gcp.databricks.com", true },
    { "http://accounts.cloud.databricks.com", false },
    { "https://my-workspace.cloud.databricks.us", false },
    { "https://unified.cloud.databricks.com", false },
    { "https://myaccounts.cloud.databricks.com", false },
  }
  for _, row in ipairs(ROWS) do
    it(row[1], function() assert.equals(row[2], host.is_account_url(row[1])) end)
  end

  it("is false without a host", function()
    assert.is_false(host.is_account_url(nil))
  end)
end)

describe("host.cloud", function()
  local ROWS = {
    { "https://x.dev.databricks.com", "AWS" },
    { "https://x.staging.cloud.databricks.com", "AWS" },
    { "https://x.cloud.databricks.us", "AWS" },
    { "https://dbc-1.cloud.databricks.com", "AWS" },
    { "https://adb-1.dev.azuredatabricks.net", "Azure" },
    { "https://adb-1.staging.azuredatabricks.net", "Azure" },
    { "https://adb-1.2.azuredatabricks.net", "Azure" },
    { "https://x.databricks.azure.us", "Azure" },
    { "https://x.databricks.azure.cn", "Azure" },
    { "https://1.dev.gcp.databricks.com", "GCP" },
    { "https://1.staging.gcp.databricks.com", "GCP" },
    { "https://123.4.gcp.databricks.com", "GCP" },
    { "https://example.com", "AWS" },
    { "https://adb-1.2.azuredatabricks.net:443", "AWS" },
  }
  for _, row in ipairs(ROWS) do
    it(row[1], function() assert.equals(row[2], host.cloud(row[1])) end)
  end

  it("defaults to AWS without a host", function()
    assert.equals("AWS", host.cloud(nil))
  end)

  it("gives the Azure environment and login app", function()
    local env = host.environment("https://x.databricks.azure.cn")
    assert.equals("CHINA", env.azure_environment)
    assert.equals("2ff814a6-3304-4ab8-85cb-cd0e6f879c1d", env.azure_login_app_id)
    assert.equals("62a912ac-b58e-4c1d-89ea-b2dbfc7358fc",
      host.environment("https://adb-1.dev.azuredatabricks.net").azure_login_app_id)
  end)
end)
