local apierror = require "dbxauth.apierror"

describe("apierror.parse_body", function()
  local cases = {
    { 404, '{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Cluster 1 does not exist"}', nil,
      { error_code = "RESOURCE_DOES_NOT_EXIST", message = "Cluster 1 does not exist" } },
    { 400, '{"error_code":1234,"message":"numeric code"}', nil, { error_code = "1234", message = "numeric code" } },
    { 401, '{"error":"invalid_client","error_description":"Client authentication failed"}', nil,
      { oauth_error = "invalid_client", message = "Client authentication failed (error code: invalid_client)" } },
    { 400, '{"error":"Bad thing"}', nil, { message = "Bad thing" } },
    { 404, '{"detail":"User not found","status":"404","scimType":"invalidValue"}', nil,
      { error_code = "SCIM_404", message = "invalidValue User not found" } },
    { 500, '{"detail":null,"status":"500"}', nil, { error_code = "SCIM_500", message = "SCIM API Internal Error" } },
    { 400, "INVALID_PARAMETER_VALUE: bad value", "text/plain",
      { error_code = "INVALID_PARAMETER_VALUE", message = "bad value" } },
    { 502, "<html><body><pre>upstream down</pre></body></html>", "text/html",
      { error_code = "BAD_GATEWAY", message = "upstream down" } },
    { 503, "<html><head><title>503 Service Temporarily Unavailable</title></head></html>", "text/html",
      { error_code = "SERVICE_UNAVAILABLE", message = "HTML error page: 503 Service Temporarily Unavailable" } },
    { 503, "", nil, { message = "Service Unavailable" } },
    { 500, "something odd", nil, { error_code = "UNKNOWN", message = "something odd" } },
  }
  for i, c in ipairs(cases) do
    it("case " .. i .. ": HTTP " .. c[1], function()
      local got = apierror.parse_body(c[1], c[2], c[3])
      for k, v in pairs(c[4]) do assert.equal(v, got[k], k) end
    end)
  end

  it("truncates long unstructured bodies", function()
    local got = apierror.parse_body(500, string.rep("x", 5000))
    assert.is_true(#got.message < 300)
  end)
end)

describe("apierror.from_response", function()
  it("classifies by status and error code, with hints", function()
    local e = apierror.from_response { status = 429, headers = { ["retry-after"] = "3" },
      body = '{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"slow down"}' }
    assert.equal("too_many_requests", e.code)
    assert.equal(429, e.status)
    assert.equal("3", e.retry_after)
    assert.equal("slow down", e.message)
    e = apierror.from_response { status = 400, body = '{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"x"}' }
    assert.equal("not_found", e.code)
    e = apierror.from_response { status = 401, body = "" }
    assert.equal("unauthenticated", e.code)
    assert.truthy(e.hint:find("databricks auth login", 1, true))
    assert.truthy(tostring(e):find("Unauthorized", 1, true))
  end)
end)

describe("apierror.retry_after", function()
  it("reads delta-seconds and HTTP-dates", function()
    assert.equal(5, apierror.retry_after("5", 0))
    assert.equal(5, apierror.retry_after(" 5 ", 0))
    local t = apierror.utc_epoch(2015, 10, 21, 7, 28, 0)
    assert.equal(784111777, apierror.utc_epoch(1994, 11, 6, 8, 49, 37))
    assert.equal(10, apierror.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t - 10))
    assert.equal(0, apierror.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t + 10))
    assert.is_nil(apierror.retry_after("soon", 0))
    assert.is_nil(apierror.retry_after(nil, 0))
  end)
end)

describe("apierror app bodies", function()
  it("keeps both the error and the message of {error, message}", function()
    local got = apierror.parse_body(403, '{"error":"permission_denied","message":"no CAN USE"}')
    assert.equal("permission_denied", got.error_code)
    assert.equal("no CAN USE", got.message)
  end)
end)
