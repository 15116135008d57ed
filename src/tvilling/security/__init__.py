"""Security: identities (OpenID Connect, API tokens), role permissions on every route, the audit chain."""
