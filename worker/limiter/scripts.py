"""Scripts that run another script's steps inside their own, in one call.

Some per-job steps also need the limiter or the rate chart: a fetch that
reserves the dispatcher's next permit, a settle that counts its request in
the chart. Calling ``limiter/acquire.lua`` or ``limiter/history.lua`` on its
own would cost each job another round trip to Redis, which on a busy
process is most of what a job costs (the system calls of a round trip, and
the client's work around them). So the standalone script is included, as
it is, as a local Lua function of ``(KEYS, ARGV)`` ahead of the script that
needs it: the same source, run in the same atomic step, and tested on its
own like any script.
"""

from __future__ import annotations

from functools import cache

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from worker.store.lua import script_source


def included(name: str, function: str) -> str:
    """The script ``name`` as ``local function <function>(KEYS, ARGV) ... end``.

    The function's parameters shadow the caller's ``KEYS`` and ``ARGV``, so
    the script runs unchanged on the keys and arguments it is given; its
    top-level ``return`` becomes the function's.
    """
    return f"local function {function}(KEYS, ARGV)\n{script_source(name)}\nend\n"


@cache
def composed_source(name: str, *parts: tuple[str, str]) -> str:
    """``name``'s source behind each (script, function name) of ``parts``."""
    return "".join(included(part, function) for part, function in parts) + script_source(name)


def register_composed(redis: Redis, name: str, *parts: tuple[str, str]) -> AsyncScript:
    """Register ``name`` with ``parts`` included; called by EVALSHA like any script."""
    return redis.register_script(composed_source(name, *parts))
