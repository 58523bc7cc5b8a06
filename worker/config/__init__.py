"""Settings: what the service is configured with, and where it reads it from (environment, TOML)."""
