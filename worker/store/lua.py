"""Load the ``.lua`` files that sit beside the modules that use them.

Each script is read once and registered with ``register_script``, which
sends it by SHA (EVALSHA) and reloads it by itself after a NOSCRIPT.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def script_source(name: str) -> str:
    # ``name`` is the script's path under the package, e.g. ``"queue/fetch"``.
    path = resources.files("worker")
    for part in f"{name}.lua".split("/"):
        path = path.joinpath(part)
    return path.read_text(encoding="utf-8")


def register(redis: Redis, name: str) -> AsyncScript:
    return redis.register_script(script_source(name))
