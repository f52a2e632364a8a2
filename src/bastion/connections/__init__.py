"""Connected accounts: third-party accounts (Slack, GitHub, Google, ...) a user connects so that tools can act
for them there, asked for by URL elicitation when a tool first needs one (docs/connections.md)."""
