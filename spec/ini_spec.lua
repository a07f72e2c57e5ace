-- dbxauth.ini: the go-ini dialect (notes §2.5, D4), one quirk per row.
local ini = require("dbxauth.ini")

local HERE = "spec/fixtures/"

local function read_fixture(name)
  local f = assert(io.open(HERE .. name .. ".databrickscfg", "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

-- { name, text, section, key, want } : value of section[key] after parsing text.
local VALUES = {
  { "trimmed key and value", "[s]\n   key   =    v a l   \n", "s", "key", "v a l" },
  { "colon separator", "[s]\nhost: https://h\n", "s", "host", "https://h" },
  { "first delimiter wins (=)", "[s]\nk = a:b\n", "s", "k", "a:b" },
  { "first delimiter wins (:)", "[s]\nurl: http://x?a=b\n", "s", "url", "http://x?a=b" },
  { "empty value", "[s]\nk =\n", "s", "k", "" },
  { "inline # after a space", "[s]\nk = v # comment\n", "s", "k", "v" },
  { "inline ; after a space", "[s]\nk = v ; comment\n", "s", "k", "v" },
  { "# without space is data", "[s]\nk = a#b\n", "s", "k", "a#b" },
  { "; without space is data", "[s]\nk = a;b\n", "s", "k", "a;b" },
  { "' #' is looked for before ' ;'", "[s]\nk = x ;y #z\n", "s", "k", "x ;y" },
  { "tab before # is not a comment", "[s]\nk = v\t# c\n", "s", "k", "v\t# c" },
  { "double quotes stripped", '[s]\nk = "a b"\n', "s", "k", "a b" },
  { "single quotes stripped", "[s]\nk = 'a b'\n", "s", "k", "a b" },
  { "quotes stripped after the comment", '[s]\nk = "%Y#X$Z" # comment\n', "s", "k", "%Y#X$Z" },
  { "wider comment gap still strips quotes", '[s]\nk = "v"   # comment\n', "s", "k", "v" },
  { "inner same quote keeps quotes", '[s]\nk = "a"b"\n', "s", "k", '"a"b"' },
  { "mismatched quotes kept", "[s]\nk = \"a'\n", "s", "k", "\"a'" },
  { "' #' inside quotes still cuts (go-ini)", '[s]\nk = "a # b"\n', "s", "k", '"a' },
  { "triple quotes are raw", '[s]\nk = """x = y # z"""\n', "s", "k", "x = y # z" },
  { "triple quotes span lines", '[s]\nk = """one\ntwo"""\nnext = 1\n', "s", "k", "one\ntwo" },
  { "backticks are raw", "[s]\nk = `a ; b`\n", "s", "k", "a ; b" },
  { "continuation joins trimmed lines", "[s]\nk = ab\\\n   cd\\\n ef\nnext = 1\n", "s", "k", "abcdef" },
  { "continuation keeps the space before \\", "[s]\nk = a \\\nb\n", "s", "k", "a b" },
  { "continuation skips comment handling", "[s]\nk = a\\\nb # c\n", "s", "k", "ab # c" },
  { "continuation ends at a blank line", "[s]\nk = a\\\n\nnext = 1\n", "s", "next", "1" },
  { "continuation at end of input", "[s]\nk = a\\", "s", "k", "a" },
  { "last duplicate key wins", "[s]\nk = 1\nk = 2\n", "s", "k", "2" },
  { "keys are case-sensitive", "[s]\nKey = 1\nkey = 2\n", "s", "Key", "1" },
  { "keys before a section go to DEFAULT", "k = v\n[s]\n", "DEFAULT", "k", "v" },
  { "duplicate sections merge", "[s]\na = 1\n[t]\n[s]\nb = 2\n", "s", "a", "1" },
  { "indented lines are ordinary", "[s]\n   k = v\n", "s", "k", "v" },
  { "CRLF line ends", "[s]\r\nk = v\r\n", "s", "k", "v" },
  { "UTF-8 BOM skipped", "\239\187\191[s]\nk = v\n", "s", "k", "v" },
  { "section header trailing comment", "[s] # note\nk = v\n", "s", "k", "v" },
  { "section names are not trimmed", "[ s ]\nk = v\n", " s ", "k", "v" },
  { "quoted key may hold a delimiter", '[s]\n"a=b" = v\n', "s", "a=b", "v" },
  { "% is literal", "[s]\nk = 100%s\n", "s", "k", "100%s" },
  { "last line without newline", "[s]\nk = v", "s", "k", "v" },
}

describe("ini.parse values", function()
  for _, row in ipairs(VALUES) do
    local name, text, section, key, want = row[1], row[2], row[3], row[4], row[5]
    it(name, function()
      local sections = assert(ini.parse(text))
      assert.is_table(sections[section], "section " .. section)
      assert.equals(want, sections[section][key])
    end)
  end
end)

-- { name, text, want message (path "cfg") }
local ERRORS = {
  { "line without delimiter", "[s]\nk = v\nsecret-looking-token-value\n",
    "cfg: line 3: key-value delimiter not found" },
  { "empty key name", "[s]\n= v\n", "cfg: line 2: empty key name" },
  { "unclosed section header", "[s\nk = v\n", "cfg: line 1: unclosed section header" },
  { "empty section name", "[]\nk = v\n", "cfg: line 1: empty section name" },
  { "unclosed key quote", '[s]\n"k = v\n', "cfg: line 2: missing closing key quote" },
  { "unclosed raw value", '[s]\nk = """abc\nmore\n', 'cfg: line 2: missing closing """ value quote' },
}

describe("ini.parse errors", function()
  for _, row in ipairs(ERRORS) do
    it(row[1], function()
      local sections, err = ini.parse(row[2], "cfg")
      assert.is_nil(sections)
      assert.equals(row[3], err)
    end)
  end

  it("never echo the offending line", function()
    local _, err = ini.parse("[s]\ndapi0123456789abcdef\n", "cfg")
    assert.is_nil(err:find("dapi", 1, true))
  end)

  it("omit the path when none is given", function()
    local _, err = ini.parse("oops\n")
    assert.equals("line 1: key-value delimiter not found", err)
  end)

  it("raise for a non-string text", function()
    assert.has_error(function() ini.parse(nil) end, "bad argument #1 to 'parse' (string expected, got nil)")
  end)
end)

describe("ini.parse structure", function()
  it("lists sections in file order, once", function()
    local s = assert(ini.parse("top = 1\n[b]\nx = 1\n[a]\n[b]\ny = 2\n[__settings__]\n"))
    assert.same({ "DEFAULT", "b", "a", "__settings__" }, s.__order)
    assert.same({ x = "1", y = "2" }, s.b)
    assert.same({}, s.a)
  end)

  it("has no sections for an empty or comment-only file", function()
    local s = assert(ini.parse("; comment\n# another\n\n   \n"))
    assert.same({ __order = {} }, s)
  end)

  it("keeps a [__order] section from clobbering the order list", function()
    local s = assert(ini.parse("[__order]\nk = v\n[a]\n"))
    assert.same({ "a" }, s.__order)
  end)

  it("reads the Go SDK's testdata file", function()
    local s = assert(ini.parse(read_fixture("go_default")))
    assert.equals("https://dbc-XXXXXXXX-YYYY.cloud.databricks.com/", s.DEFAULT.host)
    assert.equals("829374", s.DEFAULT.debug_truncate)
    local names = { "password-with-double-quotes", "password-with-single-quotes", "password-without-quotes" }
    for _, name in ipairs(names) do
      assert.equals("%Y#X$Z", s[name].password, name)
    end
    assert.equals("DEFAULT", s.__order[1])
    assert.equals("pat.with.dot", s.__order[10])
  end)

  it("reads a file without a final newline", function()
    local s = assert(ini.parse(read_fixture("corrupt")))
    assert.equals("https://dbc-XXXXXXXX-YYYY.cloud.databricks.com/", s.notoken.host)
    assert.is_nil(s.DEFAULT)
  end)

  it("keeps the quotes-free Azure resource id", function()
    local s = assert(ini.parse(read_fixture("azure")))
    assert.equals("/a/b/c", s.msi.azure_workspace_resource_id)
    assert.equals("true", s.msi.azure_use_msi)
  end)
end)
