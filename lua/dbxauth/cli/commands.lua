-- The `dbxauth` commands' usage texts and flags; cli.lua adds each command's run function.
local _M = {}

_M.TOP_USAGE = [[
Usage: dbxauth <command> [flags]

Databricks authentication from the command line, compatible with the Databricks CLI: logins are
kept in ~/.databricks/token-cache.json and profiles in ~/.databrickscfg.

Commands:
  login      Log in to a workspace or account in the browser and save a profile
  token      Print the cached OAuth access token (JSON, as `databricks auth token`)
  profiles   List the profiles of the config file and check them
  describe   Show the resolved configuration and where each value came from

Run `dbxauth <command> --help` for a command's flags.
]]

_M.COMMANDS = {}
_M.ORDER = { "login", "token", "profiles", "describe" }

_M.COMMANDS.login = {
  usage = [[
Usage: dbxauth login [HOST] [flags]

Log in to a Databricks workspace or account in the browser (OAuth U2M with PKCE, the CLI's
client `databricks-cli`), store the tokens in ~/.databricks/token-cache.json and save the
profile in ~/.databrickscfg (or $DATABRICKS_CONFIG_FILE) with auth_type = databricks-cli.
The browser is opened with $BROWSER (%s = the URL), xdg-open or open, and the URL is printed on
stderr (to open it elsewhere). The redirect comes back to http://localhost:8020 (the only one the
databricks-cli client accepts; $DATABRICKS_OAUTH_CALLBACK_PORT for an OAuth app of your own);
press Ctrl-C to cancel. Prints {"profile": ..., "host": ...} on stdout.

Flags:
  --host URL          workspace or account console URL (default: the profile's host)
  --profile NAME      profile to save (default: ACCOUNT-<account id>, else the host's first label)
  --account-id ID     account id, required for account consoles (https://accounts.…)
  --scopes LIST       OAuth scopes, comma- or space-separated (default all-apis)
  --timeout DURATION  how long to wait for the browser: seconds, or 90s / 5m / 1h (default 5m)
  -h, --help          show this help
]],
  flags = { host = "string", profile = "string", ["account-id"] = "string", scopes = "string",
            timeout = "string" },
  positional = 1,
}

_M.COMMANDS.token = {
  usage = [[
Usage: dbxauth token [HOST|PROFILE] [flags]

Print the OAuth access token of a login (dbxauth login or databricks auth login) from
~/.databricks/token-cache.json, refreshed when it has less than 5 minutes left, as JSON exactly
like `databricks auth token`: access_token, token_type, expiry (RFC 3339), expires_in (after a
refresh). Without --profile/--host: $DATABRICKS_HOST, then $DATABRICKS_CONFIG_PROFILE, then
[__settings__] default_profile.

Flags:
  --profile NAME      profile whose login to use
  --host URL          workspace or account console URL
  --account-id ID     account id (account consoles)
  --force-refresh     refresh the token even when it is still valid
  -h, --help          show this help
]],
  flags = { profile = "string", host = "string", ["account-id"] = "string", ["force-refresh"] = "bool" },
  positional = 1,
}

_M.COMMANDS.profiles = {
  usage = [[
Usage: dbxauth profiles [flags]

List the profiles of ~/.databrickscfg (or $DATABRICKS_CONFIG_FILE) as JSON:
{"profiles": [{"name", "host", "account_id", "auth_type", "valid"}]}. A profile is valid when
dbxauth can get credentials for it (this may refresh tokens; it never opens a browser).

Flags:
  --skip-validate     do not check the profiles (no "valid" field)
  -h, --help          show this help
]],
  flags = { ["skip-validate"] = "bool" },
  positional = 0,
}

_M.COMMANDS.describe = {
  usage = [[
Usage: dbxauth describe [flags]

Resolve the configuration as the SDKs do (flags, then DATABRICKS_* environment variables, then
the profile) and print every attribute that is set with its source (explicit, env, file,
metadata, resolved) and environment variable, secrets as ***, plus the auth type found (or the
error that stopped it) as JSON.

Flags:
  --profile NAME      profile to describe
  --host URL          host to describe
  -h, --help          show this help
]],
  flags = { profile = "string", host = "string" },
  positional = 0,
}

return _M
