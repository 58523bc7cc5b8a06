"""The HTTP API: producers' endpoints, operations endpoints, limits and request parsing."""
