-- The `dbxauth` commands: names, one-line descriptions (the README's command table says the
-- same, a spec compares them), usage lines, flags and help texts. The run functions live in
-- cli/login.lua, cli/token.lua, cli/profiles.lua, cli/describe.lua and cli/logout.lua.
local _M = {}

_M.ORDER = { "login", "token", "profiles", "describe", "env", "logout", "switch" }

_M.GLOBAL_FLAGS = [[
Global Flags:
      --account-id string   Databricks Account ID
      --debug               log requests and responses to stderr (secrets redacted)
      --host string         Databricks Host
  -o, --output type         output type: text or json (default from DATABRICKS_OUTPUT_FORMAT, else text)
  -p, --profile string      ~/.databrickscfg profile
  -h, --help                help for the command
]]

local C = {}
_M.COMMANDS = C

C.login = {
  short = "Log in to a workspace or account and save the profile",
  use = "dbxauth login [PROFILE] [flags]",
  positional = 1,
  flags = { timeout = "string", scopes = "string", ["no-browser"] = "bool", ["configure-cluster"] = "bool",
            ["configure-serverless"] = "bool", ["skip-workspace"] = "bool" },
  long = [[
OAuth U2M login (PKCE, the CLI's client databricks-cli) as `databricks auth login`: the tokens go
to ~/.databricks/token-cache.json, the profile to ~/.databrickscfg (or DATABRICKS_CONFIG_FILE)
with auth_type = databricks-cli. The browser is opened with $BROWSER (%s = the URL), xdg-open
or open, and the URL is printed on stderr; it comes back to http://localhost:8020
(DATABRICKS_OAUTH_CALLBACK_PORT for an OAuth app of your own). Ctrl-C cancels.
--no-browser (SSH, headless): print the URL, open it in any browser, then paste here the URL the
browser ends on (http://localhost:8020/?code=...&state=...) or just its code; no listener.
The profile name is asked for on a terminal (default: ACCOUNT-<account id>, else the host's
first label); without a terminal and --profile the login is cached under the host only and no
profile is saved, as the CLI does. -o json prints {"profile", "host"}.]],
  flag_help = [[
      --configure-cluster      not supported by dbxauth (refused)
      --configure-serverless   save serverless_compute_id = auto
      --no-browser             headless login: paste the redirect URL (or the code) on stdin
      --scopes string          comma-separated OAuth scopes (default all-apis)
      --skip-workspace         account-level profile (dbxauth never selects a workspace)
      --timeout duration       how long to wait for the browser (default 1h0m0s)
]],
}

C.token = {
  short = "Print the OAuth access token of a login",
  use = "dbxauth token [PROFILE] [flags]",
  positional = 1,
  flags = { timeout = "string", ["force-refresh"] = "bool" },
  long = [[
The access token of a U2M login (dbxauth login or databricks auth login) from
~/.databricks/token-cache.json, refreshed when it is expired or has under 5 minutes left.
JSON as `databricks auth token` (access_token, token_type, expiry, expires_in); -o text on the
command line prints the bare token. Without a profile or host: DATABRICKS_CONFIG_PROFILE,
DATABRICKS_HOST, [__settings__] default_profile, then a [DEFAULT] with a host.]],
  flag_help = [[
      --force-refresh      refresh the token even when it is still valid
      --timeout duration   how long a refresh may take (default 1h0m0s)
]],
}

C.profiles = {
  short = "List the profiles of ~/.databrickscfg and check them",
  use = "dbxauth profiles [flags]",
  positional = 0,
  flags = { ["skip-validate"] = "bool" },
  long = [[
Every profile with a host or account id, as `databricks auth profiles`: a table (Name, Host,
Valid) or, with -o json, {"profiles": [{name, host, account_id, cloud, auth_type, valid,
default}]}. Valid means an API call succeeded within 5 s: the current user (SCIM Me) on a
workspace, the workspace list on an account. Never opens a browser; ignores DATABRICKS_*.]],
  flag_help = [[
      --skip-validate   no API calls (valid is false)
]],
}

C.describe = {
  short = "Show the user, the auth type and where every attribute came from",
  use = "dbxauth describe [flags]",
  positional = 0,
  flags = { sensitive = "bool" },
  long = [[
Authenticates as the SDKs do (flags, DATABRICKS_* variables, the profile), calls the API (the
current user; the workspace list for an account) and prints the host, the user, the auth type
and every attribute with its source, as `databricks auth describe`. Exit status 0 even when
authentication fails (the output says why). Secrets print as ******** unless --sensitive.]],
  flag_help = [[
      --sensitive   include sensitive values (tokens, secrets, passwords) in the output
]],
}

C.env = {
  short = "Print the environment variables of a profile",
  use = "dbxauth env [flags]",
  positional = 0,
  flags = {},
  long = [[
The DATABRICKS_* variables (and ARM_*, GOOGLE_CREDENTIALS) of every attribute the profile sets,
as JSON {"env": {...}}, like `databricks auth env` (deprecated there: a warning goes to stderr).
The profile is --profile, else the one profile whose host is --host, else DEFAULT.
Secrets are printed in clear: this is for `export`ing them.]],
  flag_help = "",
}

C.logout = {
  short = "Remove the cached tokens of a profile",
  use = "dbxauth logout [PROFILE] [flags]",
  positional = 1,
  flags = { ["auto-approve"] = "bool", delete = "bool" },
  long = [[
Deletes the cached OAuth tokens of a databricks-cli profile from ~/.databricks/token-cache.json
(the profile's entry and its host's, unless another profile uses that host), as
`databricks auth logout`. --delete also removes the profile from ~/.databrickscfg (comments and
other sections stay). Asks for confirmation on a terminal; elsewhere --auto-approve is needed.]],
  flag_help = [[
      --auto-approve   do not ask for confirmation
      --delete         also remove the profile from the config file
]],
}

C.switch = {
  short = "Set the default profile",
  use = "dbxauth switch --profile NAME",
  positional = 0,
  flags = {},
  long = [[
Writes [__settings__] default_profile = NAME in ~/.databrickscfg, as `databricks auth switch`;
`token` and `profiles` use it.]],
  flag_help = "",
}

for name, c in pairs(C) do
  c.name = name
  c.usage = c.short .. "\n\n" .. c.long .. "\n\nUsage:\n  " .. c.use .. "\n\nFlags:\n" .. c.flag_help
    .. "\n" .. _M.GLOBAL_FLAGS
end

local lines = {}
for _, name in ipairs(_M.ORDER) do
  lines[#lines + 1] = string.format("  %-10s %s", name, C[name].short)
end

_M.TOP_USAGE = "dbxauth: Databricks authentication from the command line, a drop-in for `databricks auth`.\n"
  .. "Logins are kept in ~/.databricks/token-cache.json, profiles in ~/.databrickscfg.\n\n"
  .. "Usage:\n  dbxauth [command]\n\nAvailable Commands:\n" .. table.concat(lines, "\n") .. "\n\n"
  .. "Flags:\n  -h, --help      help for dbxauth\n  -v, --version   version for dbxauth\n\n"
  .. 'Use "dbxauth [command] --help" for more information about a command.\n'

return _M
