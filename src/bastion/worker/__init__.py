"""Worker endpoints compatible with Arcade's worker protocol: /worker/health, /worker/tools, /worker/tools/invoke,
behind a shared-secret HS256 token."""
