-- dbxauth.text: trimming outside input (config files, ID-token files, server bodies).
local text = require "dbxauth.text"

describe("text", function()
  local cases = {   -- input, trim, ltrim, rtrim
    { "", "", "", "" },
    { "   ", "", "", "" },
    { "a", "a", "a", "a" },
    { " \t a b \r\n", "a b", "a b \r\n", " \t a b" },
    { "a          b", "a          b", "a          b", "a          b" },
  }
  for i, c in ipairs(cases) do
    it("case " .. i, function()
      assert.equal(c[2], text.trim(c[1]))
      assert.equal(c[3], text.ltrim(c[1]))
      assert.equal(c[4], text.rtrim(c[1]))
    end)
  end

  it("handles a megabyte of inner and trailing blanks (a hostile ID-token file)", function()
    local s = "x" .. (" "):rep(1024 * 1024) .. "y" .. (" "):rep(1024 * 1024)
    assert.equal(#s - 1024 * 1024, #text.rtrim(s))
    assert.equal(#s - 1024 * 1024, #text.trim(s))
    assert.equal(#s, #text.ltrim(s))
  end)
end)
