"""Prometheus metrics, in two kinds: per-process series that every worker
serves (safe to ``sum`` across replicas) and account-wide series that the
``exporter`` command reads from Redis (served once, so sums stay true)."""
