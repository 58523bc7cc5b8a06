"""The operator console: pages and a JSON API to watch and steer the drain,
served by ``run --http`` and by the ``console`` command."""
