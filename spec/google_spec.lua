-- google-credentials and google-id end to end, through the public API, against the fake
-- workspace's Google stand-ins (spec/support/fake/google.lua): a token endpoint that verifies
-- the RS256 assertion against the key's public half, IAM Credentials, the GCE metadata server,
-- and a workspace that takes the ID token and, on account hosts, checks the SA access token.
local cjson = require "cjson"
local core = require "dbxauth.core"
local curl = require "dbxauth.transport.curl"
local dbxauth = require "dbxauth"
local fake = require "spec.support.fake"
local files = require "spec.support.files"
local keys = require "spec.support.google_keys"
local leakcheck = require "spec.support.leakcheck"

local SA_HEADER = "x-databricks-gcp-sa-access-token"
local TARGET = "target-sa@fake-project.iam.gserviceaccount.com"
local HELP = "Running 'gcloud auth application-default login' may help"
local METADATA_EMAIL = "vm-default@fake-project.iam.gserviceaccount.com"

local ws, sa, other
local token_uri

local function jwt_part(jwt, i)
  local parts = {}
  for p in jwt:gmatch("[^.]+") do parts[#parts + 1] = p end
  return cjson.decode(core.b64url_decode(parts[i]))
end

local function form(body)
  return core.parse_query(body)
end

-- A configuration against the fake: GCP by DATABRICKS_CLOUD unless env says otherwise.
local function config(opts, env, extra)
  opts.ca_file = opts.ca_file or ws.ca_file
  env = env or {}
  if env.DATABRICKS_CLOUD == nil then env.DATABRICKS_CLOUD = "GCP" end
  if env.DATABRICKS_CLOUD == false then env.DATABRICKS_CLOUD = nil end
  local ctx = { env = env, home = (extra and extra.home) or files.tmpdir() }
  return assert(dbxauth.config(opts, ctx))
end

local function account_config(opts, env)
  opts.host = ws.account_url
  opts.account_id = ws.creds.account_id
  opts.transport = curl.new { ca_file = ws.ca_file, resolve = ws.resolve }
  return config(opts, env)
end

setup(function()
  ws = fake.start()
  sa = keys.get("sa-one")
  other = keys.get("sa-other")
  token_uri = ws.url .. "/__google/token"
end)

teardown(function()
  if ws then ws:stop() end
end)

before_each(function()
  dbxauth.clear_caches()   -- host metadata is cached per process; some specs change it
  ws:reset()
  ws:set { google_keys = keys.settings { sa } }
end)

describe("google-credentials", function()
  it("signs in with an inline key: ID token for the host, SA token beside it", function()
    local cfg = config { host = ws.url, google_credentials = keys.json(sa, token_uri) }
    local res = assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    assert.equal(sa.email, res:json().userName)
    assert.equal("google-credentials", cfg.auth_type)
    local me = ws:last("/api/2.0/preview/scim/v2/Me")
    local jwt = me.headers.authorization:match("^Bearer (.+)$")
    assert.equal(ws.url, jwt_part(jwt, 2).aud)
    assert.matches("^ya29%.fake%-", me.headers[SA_HEADER])
    local c = ws:counters()
    assert.equal(1, c["google id_token"])
    assert.equal(1, c["google access_token " .. sa.email])
    -- cached: another call asks Google for nothing
    assert(cfg:request { path = "/api/2.0/clusters/list" })
    assert.equal(2, ws:counters()["POST /__google/token"])
  end)

  it("sends Google's claim set in an assertion the key's public half verifies", function()
    local cfg = config { host = ws.url, google_credentials = keys.json(sa, token_uri) }
    assert(cfg:authenticate())
    local body = form(ws:last("/__google/token").body)
    assert.equal("urn:ietf:params:oauth:grant-type:jwt-bearer", body.grant_type)
    local h = jwt_part(body.assertion, 1)
    assert.same({ alg = "RS256", typ = "JWT", kid = sa.kid }, h)
    local claims = jwt_part(body.assertion, 2)
    assert.equal(sa.email, claims.iss)
    assert.equal(token_uri, claims.aud)
    assert.equal(3600, claims.exp - claims.iat)
    assert.is_true(math.abs(claims.iat - os.time()) < 120)
    assert.equal("https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/compute",
      claims.scope)   -- the last grant is the SA access token's
    local input, sig = body.assertion:match("^(.+)%.([^.]+)$")
    assert.is_true(core.rs256_verify(sa.public_key, input, core.b64url_decode(sig)))
    assert.is_false(core.rs256_verify(other.public_key, input, core.b64url_decode(sig)))
  end)

  it("reads the key from a file when google_credentials is a path", function()
    local dir = files.tmpdir()
    files.write(dir .. "/key.json", keys.json(sa, token_uri))
    local cfg = config({ host = ws.url }, { GOOGLE_CREDENTIALS = dir .. "/key.json" })
    assert.equal(sa.email, assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" }):json().userName)
  end)

  it("hands out both headers from authenticate, and the ID token from token()", function()
    local cfg = config { host = ws.url, google_credentials = keys.json(sa, token_uri) }
    local h = assert(cfg:authenticate())
    assert.matches("^Bearer [%w_-]+%.[%w_-]+%.[%w_-]+$", h.Authorization)
    assert.matches("^ya29%.", h["X-Databricks-GCP-SA-Access-Token"])
    local tok = assert(cfg:token())
    assert.equal(h.Authorization, "Bearer " .. tok.access_token)
    assert.is_true(tok.expiry > os.time() + 3000)
  end)

  it("carries the SA header on every request of a batch", function()
    local cfg = config { host = ws.url, google_credentials = keys.json(sa, token_uri) }
    local rs, errs = cfg:request_all { { path = "/api/2.0/clusters/list" }, { path = "/api/2.0/fake/echo" } }
    assert.is_truthy(rs[1] and rs[2], tostring(errs[1] or errs[2]))
    assert.matches("^ya29%.", rs[2]:json().headers[SA_HEADER])
  end)

  it("replaces a caller's X-Databricks-GCP-SA-Access-Token with its own", function()
    local cfg = config { host = ws.url, google_credentials = keys.json(sa, token_uri) }
    local res = assert(cfg:request { path = "/api/2.0/fake/echo",
                                     headers = { ["x-databricks-gcp-sa-access-token"] = "caller-value" } })
    local got = res:json().headers[SA_HEADER]
    assert.matches("^ya29%.", got)
  end)

  it("calls the account API with the SA access token", function()
    local cfg = account_config { google_credentials = keys.json(sa, token_uri) }
    local res = assert(cfg:request { path = "/api/2.0/accounts/" .. ws.creds.account_id .. "/workspaces" })
    assert.equal("fake-workspace", res:json()[1].workspace_name)
    local jwt = ws:last("/api/2.0/accounts/" .. ws.creds.account_id .. "/workspaces").headers.authorization
    assert.equal(ws.account_url, jwt_part(jwt:match("^Bearer (.+)$"), 2).aud)
  end)

  it("goes on without the SA token when Google refuses it (the account API then says so)", function()
    ws:set { google_deny_access_tokens = true }
    local cfg = config { host = ws.url, google_credentials = keys.json(sa, token_uri) }
    assert(cfg:request { path = "/api/2.0/clusters/list" })
    assert.is_nil(ws:last("/api/2.0/clusters/list").headers[SA_HEADER])
    local before = ws:counters()["POST /__google/token"]
    assert(cfg:request { path = "/api/2.0/clusters/list" })   -- not asked again at once
    assert.equal(before, ws:counters()["POST /__google/token"])
    local acct = account_config { google_credentials = keys.json(sa, token_uri) }
    local _, err = acct:request { path = "/api/2.0/accounts/" .. ws.creds.account_id .. "/workspaces" }
    assert.equal("unauthenticated", err.code)
    assert.matches("X%-Databricks%-GCP%-SA%-Access%-Token", err.message)
  end)

  describe("applies on GCP only, unless auth_type names it", function()
    it("is skipped on a host whose metadata says AWS", function()
      local cfg = config({ host = ws.url, google_credentials = keys.json(sa, token_uri) },
        { DATABRICKS_CLOUD = false })
      local _, err = cfg:authenticate()
      assert.matches("cannot configure default credentials", err.message)
      assert.is_nil(ws:counters()["POST /__google/token"])
    end)

    it("applies when host metadata says GCP", function()
      ws:set { cloud = "GCP" }
      local cfg = config({ host = ws.url, google_credentials = keys.json(sa, token_uri) },
        { DATABRICKS_CLOUD = false })
      assert(cfg:authenticate())
      assert.equal("google-credentials", cfg.auth_type)
    end)

    it("applies anywhere when forced", function()
      local cfg = config({ host = ws.url, google_credentials = keys.json(sa, token_uri),
                           auth_type = "google-credentials" }, { DATABRICKS_CLOUD = false })
      assert(cfg:authenticate())
    end)

    it("conflicts with a PAT, as the SDKs' auth groups do", function()
      local cfg, err = dbxauth.config({ host = ws.url, token = ws.creds.pat, ca_file = ws.ca_file,
        google_credentials = keys.json(sa, token_uri) }, { env = { DATABRICKS_CLOUD = "GCP" } })
      if cfg then cfg, err = cfg:authenticate() end
      assert.is_nil(cfg)
      assert.matches("more than one authorization method configured: google and pat", err.message)
    end)
  end)

  describe("failures", function()
    local function fails(opts, env)
      opts.host = opts.host or ws.url
      local cfg = config(opts, env)
      local h, err = cfg:authenticate()
      assert.is_nil(h)
      return err
    end

    it("says so for JSON that is not valid", function()
      local err = fails { google_credentials = '{"type": "service_account", "private_key": ' }
      assert.equal("google_credentials", err.code)
      assert.matches("could not read GoogleCredentials. Make sure the file exists, or the JSON content is valid",
        err.message, 1, true)
      assert.matches("not valid", err.message)
    end)

    it("says so for a path where no file is, without quoting the value", function()
      local err = fails { google_credentials = "/nonexistent/dir/key.json" }
      assert.equal("google_credentials", err.code)
      assert.matches("neither the path of an existing file nor JSON", err.message)
      assert.is_nil(err.message:find("/nonexistent", 1, true))
    end)

    it("refuses a key of another type", function()
      local err = fails { google_credentials = '{"type":"authorized_user","client_id":"x"}' }
      assert.matches('could not obtain OIDC token from JSON: unsupported credentials type "authorized_user"',
        err.message, 1, true)
    end)

    it("refuses a private key that is not an RSA PEM, without quoting it", function()
      local err = fails { google_credentials = keys.json(sa, token_uri, { private_key = "MIIBOgIBAAJBAKj34GkxFhD9" }) }
      assert.equal("google_credentials", err.code)
      assert.matches("cannot sign with the service account key", err.message)
      assert.is_nil(err.message:find("MIIBOgIBAAJBAKj34GkxFhD9", 1, true))
    end)

    it("refuses a plain-http token_uri off loopback", function()
      local err = fails { google_credentials = keys.json(sa, "http://oauth2.example.com/token") }
      assert.matches("token_uri must use https://", err.message)
    end)

    it("reports the token endpoint rejecting the signature", function()
      ws:set { google_keys = { [sa.email] = { kid = sa.kid, public_key = other.public_key } } }
      local err = fails { google_credentials = keys.json(sa, token_uri) }
      assert.equal("bad_request", err.code)
      assert.equal("invalid_grant", err.oauth_error)
      assert.matches("default auth: google%-credentials: could not obtain OIDC token from JSON: ", err.message)
      assert.matches("Invalid JWT Signature.", err.message, 1, true)
    end)

    it("reports a key id the token endpoint does not know", function()
      local err = fails { google_credentials = keys.json(sa, token_uri, { private_key_id = "0000" }) }
      assert.matches("Invalid JWT Signature.", err.message, 1, true)
    end)
  end)
end)

describe("google-id", function()
  local function env_for(e)
    e = e or {}
    e.DBXAUTH_GOOGLE_IAM_URL = e.DBXAUTH_GOOGLE_IAM_URL or (ws.url .. "/__google/iam")
    return e
  end

  local function metadata_env(e)
    e = env_for(e)
    e.GCE_METADATA_HOST = e.GCE_METADATA_HOST or ("127.0.0.1:" .. ws.http_port)
    return e
  end

  it("impersonates the service account with the metadata server's identity", function()
    ws:set { google_impersonators = { [TARGET] = { METADATA_EMAIL } } }
    local cfg = config({ host = ws.url, google_service_account = TARGET }, metadata_env())
    local res = assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    assert.equal(TARGET, res:json().userName)
    assert.equal("google-id", cfg.auth_type)
    local md = ws:last("/computeMetadata/v1/instance/service-accounts/default/token")
    assert.equal("Google", md.headers["metadata-flavor"])
    local id = ws:last("/__google/iam/v1/projects/-/serviceAccounts/" .. TARGET .. ":generateIdToken")
    assert.same({ audience = ws.url, includeEmail = true }, cjson.decode(id.body))
    assert.matches("^Bearer ya29%.", id.headers.authorization)
    local at = ws:last("/__google/iam/v1/projects/-/serviceAccounts/" .. TARGET .. ":generateAccessToken")
    assert.same({ scope = { "https://www.googleapis.com/auth/cloud-platform",
                            "https://www.googleapis.com/auth/compute" }, lifetime = "3600s" }, cjson.decode(at.body))
    assert.matches("^ya29%.", ws:last("/api/2.0/preview/scim/v2/Me").headers[SA_HEADER])
    local jwt = ws:last("/api/2.0/preview/scim/v2/Me").headers.authorization:match("^Bearer (.+)$")
    assert.equal(TARGET, jwt_part(jwt, 2).email)
    -- one metadata token serves both IAM calls
    assert.equal(1, ws:counters()["GET /computeMetadata/v1/instance/service-accounts/default/token"])
  end)

  it("uses a GOOGLE_APPLICATION_CREDENTIALS service account key as the source", function()
    ws:set { google_impersonators = { [TARGET] = { sa.email } } }
    local dir = files.tmpdir()
    files.write(dir .. "/adc.json", keys.json(sa, token_uri))
    local cfg = config({ host = ws.url, google_service_account = TARGET },
      env_for { GOOGLE_APPLICATION_CREDENTIALS = dir .. "/adc.json" })
    assert.equal(TARGET, assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" }):json().userName)
    local claims = jwt_part(form(ws:last("/__google/token").body).assertion, 2)
    assert.equal("https://www.googleapis.com/auth/cloud-platform", claims.scope)
    assert.is_nil(ws:counters()["GET /computeMetadata/v1/instance/service-accounts/default/token"])
  end)

  it("uses gcloud's application default login (authorized_user) from the home directory", function()
    local user = { client_id = "fake-gcloud-client.apps.googleusercontent.com", client_secret = "fake-gcloud-secret-77",
                   refresh_token = "1//fake-gcloud-refresh-token-88", email = "dev@example.com" }
    leakcheck.secret(user.client_secret); leakcheck.secret(user.refresh_token)
    ws:set { google_user = user, google_impersonators = { [TARGET] = { user.email } } }
    local home = files.tmpdir()
    files.write(home .. "/.config/gcloud/application_default_credentials.json", cjson.encode {
      type = "authorized_user", client_id = user.client_id, client_secret = user.client_secret,
      refresh_token = user.refresh_token, token_uri = token_uri })
    local cfg = config({ host = ws.url, google_service_account = TARGET }, env_for(), { home = home })
    assert.equal(TARGET, assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" }):json().userName)
    assert.equal("refresh_token", form(ws:last("/__google/token").body).grant_type)
  end)

  it("calls the account API with the impersonated SA access token", function()
    ws:set { google_impersonators = { [TARGET] = { METADATA_EMAIL } } }
    local cfg = account_config({ google_service_account = TARGET }, metadata_env())
    assert(cfg:request { path = "/api/2.0/accounts/" .. ws.creds.account_id .. "/workspaces" })
  end)

  it("is skipped off GCP, applies when forced", function()
    ws:set { google_impersonators = { [TARGET] = { METADATA_EMAIL } } }
    local cfg = config({ host = ws.url, google_service_account = TARGET }, metadata_env { DATABRICKS_CLOUD = false })
    local _, err = cfg:authenticate()
    assert.matches("cannot configure default credentials", err.message)
    cfg = config({ host = ws.url, google_service_account = TARGET, auth_type = "google-id" },
      metadata_env { DATABRICKS_CLOUD = false })
    assert(cfg:authenticate())
  end)

  it("comes after google-credentials in the chain", function()
    local cfg = config({ host = ws.url, google_service_account = TARGET,
                         google_credentials = keys.json(sa, token_uri) }, metadata_env())
    assert(cfg:authenticate())
    assert.equal("google-credentials", cfg.auth_type)
  end)

  describe("failures", function()
    it("reports IAM's 403 with the SDK's advice", function()
      local cfg = config({ host = ws.url, google_service_account = TARGET }, metadata_env())
      local _, err = cfg:authenticate()
      assert.equal("permission_denied", err.code)
      assert.equal(403, err.status)
      assert.matches("default auth: google-id: could not obtain OIDC token. ", err.message, 1, true)
      assert.matches("Permission 'iam.serviceAccounts.getOpenIdToken' denied", err.message, 1, true)
      assert.matches(HELP, err.message, 1, true)
      assert.matches("roles/iam.serviceAccountTokenCreator", err.hint, 1, true)
    end)

    it("says where the missing GOOGLE_APPLICATION_CREDENTIALS file should be", function()
      local cfg = config({ host = ws.url, google_service_account = TARGET },
        env_for { GOOGLE_APPLICATION_CREDENTIALS = "/nonexistent/adc.json" })
      local _, err = cfg:authenticate()
      assert.equal("google_credentials", err.code)
      assert.matches("GOOGLE_APPLICATION_CREDENTIALS", err.message)
      assert.matches(HELP, err.message, 1, true)
    end)

    it("does not send a token over plain HTTP to a metadata host off the machine", function()
      local cfg = config({ host = ws.url, google_service_account = TARGET },
        metadata_env { GCE_METADATA_HOST = "metadata.example.com" })
      local _, err = cfg:authenticate()
      assert.equal("google_credentials", err.code)
      assert.matches("GCE_METADATA_HOST must name the metadata server", err.message)
    end)

    it("refuses a plain-http IAM URL off loopback", function()
      local cfg = config({ host = ws.url, google_service_account = TARGET },
        metadata_env { DBXAUTH_GOOGLE_IAM_URL = "http://iam.example.com" })
      local _, err = cfg:authenticate()
      assert.equal("config", err.code)
      assert.matches("DBXAUTH_GOOGLE_IAM_URL must be an https:// base URL", err.message)
    end)

    it("reports a metadata server that refuses the request", function()
      ws:fault { path = "/computeMetadata/v1/instance/service-accounts/default/token", kind = "body",
                 status = 404, body = "Not Found", content_type = "text/html" }
      local cfg = config({ host = ws.url, google_service_account = TARGET }, metadata_env())
      local _, err = cfg:authenticate()
      assert.equal("not_found", err.code)
      assert.matches("metadata server token request failed", err.message)
      assert.matches(HELP, err.message, 1, true)
    end)
  end)
end)
