local oauth = require "dbxauth.oauth"
local core = require "dbxauth.core"

describe("oauth request builders", function()
  it("builds the client credentials request as the Go SDK does (notes case 51)", function()
    local req = oauth.client_credentials_request { token_endpoint = "https://a/oidc/v1/token",
      client_id = "b", client_secret = "c", scopes = { "all-apis" } }
    assert.equal("POST", req.method)
    assert.equal("https://a/oidc/v1/token", req.url)
    assert.equal("Basic Yjpj", req.headers.Authorization)
    assert.equal("application/x-www-form-urlencoded", req.headers["Content-Type"])
    assert.equal("grant_type=client_credentials&scope=all-apis", req.body)
  end)

  it("space-joins scopes, form-encoded (notes case 54)", function()
    local req = oauth.client_credentials_request { token_endpoint = "https://a/t", client_id = "b",
      client_secret = "c", scopes = { "clusters", "jobs:read", "mlflow:read" } }
    assert.equal("grant_type=client_credentials&scope=clusters+jobs%3Aread+mlflow%3Aread", req.body)
  end)

  it("form-encodes client id and secret before Basic encoding (RFC 6749 2.3.1)", function()
    local h = oauth.basic_client_auth("id with space", "s:e/c")
    assert.equal("Basic " .. core.b64_encode("id+with+space:s%3Ae%2Fc"), h)
  end)

  it("sorts form keys", function()
    assert.equal("a=1&b=x+y&c=%26", oauth.form { c = "&", a = 1, b = "x y" })
  end)
end)

describe("oauth.parse_token_response", function()
  it("computes expiry from expires_in and normalises the type", function()
    local tok = oauth.parse_token_response({ status = 200, headers = {},
      body = '{"access_token":"abc","token_type":"bearer","expires_in":3600,"scope":"all-apis offline_access"}' },
      1000)
    assert.equal("abc", tok.access_token)
    assert.equal("Bearer", tok.token_type)
    assert.equal(4600, tok.expiry)
    assert.same({ "all-apis", "offline_access" }, tok.scopes)
    assert.not_matches("abc", tostring(tok))
  end)

  it("keeps unusual token types and defaults an empty one to Bearer (notes case 51)", function()
    local tok = oauth.parse_token_response({ status = 200, body = '{"token_type":"Some","access_token":"cde"}' }, 0)
    assert.equal("Some", tok.token_type)
    assert.is_nil(tok.expiry)
    tok = oauth.parse_token_response({ status = 200, body = '{"access_token":"cde"}' }, 0)
    assert.equal("Bearer", tok.token_type)
  end)

  it("falls back to the JWT exp claim", function()
    local jwt = core.b64url_encode('{"alg":"none"}') .. "." .. core.b64url_encode('{"exp":1999999999}') .. ".sig"
    local tok = oauth.parse_token_response({ status = 200, body = '{"access_token":"' .. jwt .. '"}' }, 0)
    assert.equal(1999999999, tok.expiry)
  end)

  it("reports OAuth errors with their description", function()
    local tok, err = oauth.parse_token_response({ status = 401, headers = {},
      body = '{"error":"invalid_client","error_description":"Client authentication failed"}' }, 0, "m2m")
    assert.is_nil(tok)
    assert.equal("unauthenticated", err.code)
    assert.equal("invalid_client", err.oauth_error)
    assert.equal(401, err.status)
    assert.equal("m2m failed: Client authentication failed (error code: invalid_client)", err.message)
  end)

  it("does not echo a non-JSON body", function()
    local tok, err = oauth.parse_token_response({ status = 200, headers = {}, body = "secret-ish garbage" }, 0)
    assert.is_nil(tok)
    assert.equal("oauth", err.code)
    assert.not_matches("garbage", err.message)
    assert.matches("non%-JSON", err.message)
  end)

  it("rejects a response without access_token", function()
    local _, err = oauth.parse_token_response({ status = 200, body = '{"token_type":"Bearer"}' }, 0)
    assert.matches("no access_token", err.message)
  end)
end)

describe("oauth metadata and endpoints", function()
  it("reads host metadata (notes cases 48-50)", function()
    local md = oauth.parse_metadata { status = 200, body = '{"oidc_endpoint":"https://h/oidc","account_id":"A",'
      .. '"workspace_id":123,"cloud":"AWS","token_federation_default_oidc_audiences":["aud1","aud2"]}' }
    assert.same({ oidc_endpoint = "https://h/oidc", account_id = "A", workspace_id = "123", cloud = "AWS",
      default_audience = "aud1" }, md)
    assert.is_nil(oauth.parse_metadata { status = 404, body = "" })
    assert.is_nil(oauth.parse_metadata { status = 200, body = "not json" })
    assert.is_nil(oauth.parse_metadata(nil))
  end)

  it("fills the account placeholder of the OIDC root", function()
    local md = { oidc_endpoint = "https://h/oidc/accounts/{account_id}/" }
    assert.equal("https://h/oidc/accounts/A%1", oauth.oidc_root(md, "A%1"))
    assert.is_nil(oauth.oidc_root(md, nil))
    assert.same({ authorization_endpoint = "https://h/oidc/v1/authorize", token_endpoint = "https://h/oidc/v1/token" },
      oauth.endpoints_from_root(oauth.oidc_root({ oidc_endpoint = "https://h/oidc" })))
  end)

  it("builds account endpoints (notes case 46)", function()
    local ep = oauth.endpoints_from_root(oauth.account_root("https://accounts.cloud.databricks.com", "abc"))
    assert.equal("https://accounts.cloud.databricks.com/oidc/accounts/abc/v1/authorize", ep.authorization_endpoint)
    assert.equal("https://accounts.cloud.databricks.com/oidc/accounts/abc/v1/token", ep.token_endpoint)
  end)

  it("parses discovery documents", function()
    local ep = oauth.parse_discovery { status = 200, body = '{"authorization_endpoint":"a","token_endpoint":"t"}' }
    assert.equal("t", ep.token_endpoint)
    local _, err = oauth.parse_discovery { status = 404, headers = {}, body = "" }
    assert.equal(404, err.status)
  end)
end)
