-- core.rs256_sign / core.rs256_verify against the openssl command: signatures ours verify
-- with openssl and openssl's with ours; keys that must not be used are refused with a reason
-- that never quotes them, and a passphrase is never prompted for.
local core = require "dbxauth.core"
local files = require "spec.support.files"
local leakcheck = require "spec.support.leakcheck"

local dir
local q = files.q

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1 </dev/null")
  return ok == true or ok == 0
end

local function make(name, cmd)
  assert(sh(cmd), name)
  local s = assert(files.read(dir .. "/" .. name))
  if s:find("PRIVATE KEY", 1, true) then leakcheck.secret(s) end
  return s
end

local key, pub, cert, traditional, encrypted, ec, short

setup(function()
  local p = assert(io.popen("mktemp -d -t spec-rs256.XXXXXX"))
  dir = p:read("*l")
  p:close()
  local d = q(dir)
  key = make("key.pem", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. d .. "/key.pem")
  pub = make("pub.pem", "openssl pkey -in " .. d .. "/key.pem -pubout -out " .. d .. "/pub.pem")
  cert = make("cert.pem", "openssl req -new -x509 -key " .. d .. "/key.pem -subj /CN=test -days 1 -out "
    .. d .. "/cert.pem")
  traditional = make("trad.pem", "openssl rsa -in " .. d .. "/key.pem -traditional -out " .. d .. "/trad.pem")
  encrypted = make("enc.pem", "openssl pkey -in " .. d .. "/key.pem -aes256 -passout pass:secret-pass -out "
    .. d .. "/enc.pem")
  ec = make("ec.pem", "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. d .. "/ec.pem")
  short = make("short.pem", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out " .. d .. "/short.pem")
end)

teardown(function()
  if dir then sh("rm -rf " .. q(dir)) end
end)

describe("core.rs256_sign", function()
  it("signs what openssl verifies, with PKCS#8 and traditional keys alike", function()
    local data = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0"
    local sig = assert(core.rs256_sign(key, data))
    assert.equal(256, #sig)
    assert.equal(sig, assert(core.rs256_sign(traditional, data)))   -- PKCS#1 v1.5 is deterministic
    files.write(dir .. "/data", data)
    files.write(dir .. "/sig", sig)
    assert.is_true(sh("openssl dgst -sha256 -verify " .. q(dir .. "/pub.pem") .. " -signature "
      .. q(dir .. "/sig") .. " " .. q(dir .. "/data")))
    files.write(dir .. "/data", data .. "x")
    assert.is_false(sh("openssl dgst -sha256 -verify " .. q(dir .. "/pub.pem") .. " -signature "
      .. q(dir .. "/sig") .. " " .. q(dir .. "/data")))
  end)

  it("refuses an encrypted key without asking for its passphrase", function()
    local sig, err = core.rs256_sign(encrypted, "x")
    assert.is_nil(sig)
    assert.matches("without a passphrase", err)
  end)

  it("refuses keys that are not RSA of 2048 bits or more", function()
    local _, err = core.rs256_sign(ec, "x")
    assert.equal("the key is not an RSA key", err)
    _, err = core.rs256_sign(short, "x")
    assert.equal("the RSA key is shorter than 2048 bits", err)
    _, err = core.rs256_sign(pub, "x")
    assert.matches("not a PEM RSA private key", err)
  end)

  it("never quotes the key in its reasons", function()
    local body = key:match("\n([^\n]+)\n")
    for _, bad in ipairs { key:sub(1, 200), key:gsub("A", "*"), "", body } do
      local sig, err = core.rs256_sign(bad, "x")
      assert.is_nil(sig)
      assert.is_nil(err:find(body, 1, true))
      assert.is_true(#err < 100)
    end
  end)
end)

describe("core.rs256_verify", function()
  it("verifies openssl's signatures with a public key or a certificate", function()
    files.write(dir .. "/data", "payload")
    assert.is_true(sh("openssl dgst -sha256 -sign " .. q(dir .. "/key.pem") .. " -out " .. q(dir .. "/osig")
      .. " " .. q(dir .. "/data")))
    local sig = assert(files.read(dir .. "/osig"))
    assert.is_true(core.rs256_verify(pub, "payload", sig))
    assert.is_true(core.rs256_verify(cert, "payload", sig))
    assert.is_false(core.rs256_verify(pub, "payload!", sig))
    assert.is_false(core.rs256_verify(pub, "payload", sig:sub(2)))
    assert.is_false(core.rs256_verify(pub, "payload", ""))
  end)

  it("says when the key is not a public key", function()
    local ok, err = core.rs256_verify("not a key", "x", "y")
    assert.is_nil(ok)
    assert.equal("not a PEM public key or certificate", err)
  end)
end)
