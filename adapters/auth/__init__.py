"""Authentication and authorization adapters: API keys, OIDC bearer tokens, RFC 9728 metadata."""
