"""The worker pool: one dispatcher per account, and settling each answer."""
