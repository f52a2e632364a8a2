"""The protected-resource side: who may call /mcp. Metadata (RFC 9728), bearer tokens, challenges."""
