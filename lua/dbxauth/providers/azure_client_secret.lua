-- azure-client-secret (notes cloud-auth §2, G auth_azure_client_secret.go): an Entra ID service
-- principal's client id and secret, client credentials at the v1 endpoint of its tenant. Two
-- tokens, each cached and refreshed ahead on its own: one for the Azure Databricks login app
-- (Authorization) and one for the service-management endpoint
-- (X-Databricks-Azure-SP-Management-Token, which Azure Databricks needs to add a service
-- principal to a workspace on first use). Every refresh is a new client-credentials call.
--
-- Applies on Azure hosts (or when auth_type names it) with azure_client_id, azure_client_secret
-- and a host (or azure_workspace_resource_id: the host then comes from Azure Resource Manager).
-- The Go SDK also needs azure_tenant_id; like the Python SDK, dbxauth discovers it from the
-- workspace's /aad/auth redirect when it is unset.
local azure = require "dbxauth.azure"

local NAME = "azure-client-secret"

return {
  name = NAME,
  applies = function(ctx)
    return ctx.get("azure_client_id") ~= nil and ctx.get("azure_client_secret") ~= nil
      and (ctx.get("host") ~= nil or ctx.get("azure_workspace_resource_id") ~= nil) and azure.applies(ctx, NAME)
  end,
  configure = function(ctx)
    local env, err = azure.environment(ctx)
    if not env then return nil, err end
    local tenant
    tenant, err = azure.tenant(ctx)
    if not tenant then return nil, err end
    local function fetch_for(resource)
      return function()
        local req = azure.token_request(env, tenant, {
          grant_type = "client_credentials",
          client_id = ctx.get("azure_client_id"),
          client_secret = ctx.get("azure_client_secret"),
          resource = resource,
        })
        return ctx.token_request(req, "Entra ID token request", azure.parse)
      end
    end
    local ok
    ok, err = azure.ensure_host(ctx, env, fetch_for(env.arm))
    if not ok then return nil, err end
    return azure.credentials(ctx, { primary = fetch_for(env.login_app_id), management = fetch_for(env.sm) })
  end,
}
