"""Redis Cluster: the client for ``OZP_REDIS_MODE=cluster``.

``REDIS_URL`` names any node (``redis://`` or ``rediss://``, database 0);
the client learns the rest of the cluster from it and follows the slots as
they move. Every key of an account carries the hash tag ``{account}``
(:mod:`worker.store.keys`), so each script and transaction of an account
runs on the one node holding that account's slot, and accounts spread over
the shards by their names.

Two things the plain client does for one server are done here per node:

- **The restart watch.** Each node has a :class:`RestartWatch` of its own
  (``run_id``, or ``CLIENT ID`` without INFO), all sharing the commands the
  limiters register. A node that becomes a primary after the client first
  learnt the cluster (a replica promoted by a failover) is a new server for
  the accounts whose slots it took: the first connection to it as a primary
  runs the cool-downs before any other command. Each cool-down runs where
  its account's slot lives; the other nodes answer MOVED, which is skipped.
- **Connections opened while a node was a replica** cannot carry an
  account's commands after its promotion: the client keeps no node object
  for replicas (it reads only from primaries) and asks for the slot map on
  the nodes named at start through objects of their own, so a promoted
  node's first data command opens a connection, which the watch sees.

And one bound: a process keeps at most ``max_connections`` commands in
flight at once, whatever its number of accounts, so no node ever sees more
connections from it than that, but for the one the client asks the slot map
on (redis-py's own cluster limit fails a command instead of waiting for a
connection).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.connection import Connection
from redis.cluster import PRIMARY

from worker.store.restarts import RestartWatch, address_of


class ClusterRestartWatch:
    """The restart watches of one cluster client's nodes, by address."""

    def __init__(self) -> None:
        self._commands: dict[str, tuple[Any, ...]] = {}
        self._nodes: dict[str, RestartWatch] = {}
        self._client: RedisCluster | None = None
        # The primaries when the client first knew the slot map, then every
        # node whose promotion was acted on.
        self._accepted: set[str] | None = None

    def attach(self, client: RedisCluster) -> None:
        self._client = client

    def on_restart(self, name: str, *command: Any) -> None:
        """Run ``command`` first on a connection to a restarted or promoted node."""
        self._commands[name] = command

    @property
    def restarts(self) -> int:
        return sum(watch.restarts for watch in self._nodes.values())

    def node(self, address: str) -> RestartWatch | None:
        return self._nodes.get(address)

    def is_primary(self, address: str) -> bool:
        """Whether the slot map the client holds now has ``address`` as a primary."""
        if self._client is None:
            return False
        node = self._client.nodes_manager.nodes_cache.get(address)
        return node is not None and node.server_type == PRIMARY

    async def on_connect(self, connection: Connection) -> None:
        address = address_of(connection)
        watch = self._nodes.get(address)
        if watch is None:
            watch = self._nodes[address] = RestartWatch(self._commands, cluster_node=True)
            # One refusal of INFO says the user may not ask it on any node:
            # each asking would only add a line to that node's ACL log.
            watch.info_refused = any(other.info_refused for other in self._nodes.values())
        primary = self.is_primary(address)
        if primary and address not in self._accepted_primaries():
            watch.new_server = "promoted"
        await watch.on_connect(connection)
        # Reached only once the commands, if any, succeeded.
        if primary:
            self._accepted_primaries().add(address)

    def _accepted_primaries(self) -> set[str]:
        if self._accepted is None:
            client = self._client
            primaries = [] if client is None else client.get_primaries()
            if not primaries:
                # The slot map is not known yet: the client's first question.
                return set()
            self._accepted = {node.name for node in primaries}
        return self._accepted


class BoundedRedisCluster(RedisCluster):
    """redis-py's cluster client, waiting for a free slot among
    :data:`MAX_CONNECTIONS` instead of opening connections without bound."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = asyncio.Semaphore(int(kwargs.get("max_connections", 100)))

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._in_flight:
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused there
        return _BoundedPipeline(self, transaction, self._in_flight)  # type: ignore[abstract]


class _BoundedPipeline(ClusterPipeline):
    """A pipeline counted as one command in flight: it holds at most one
    connection per node while it runs."""

    def __init__(
        self, client: RedisCluster, transaction: Any | None, in_flight: asyncio.Semaphore
    ) -> None:
        super().__init__(client, transaction)
        self._ozp_in_flight = in_flight

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with self._ozp_in_flight:
            return await super().execute(raise_on_error, allow_redirections)


def cluster_client(url: str, options: dict[str, Any], max_connections: int) -> Redis:
    """A cluster client with ``options`` for its nodes' connections.

    Typed as :class:`Redis`: the product calls only commands both clients
    have, routed by their keys here.
    """
    watch = ClusterRestartWatch()
    node_options = {k: v for k, v in options.items() if k != "redis_connect_func"}
    client = BoundedRedisCluster.from_url(url, max_connections=max_connections, **node_options)
    watch.attach(client)
    # redis-py's cluster client takes no connect hook of its own; like its own
    # maintenance-notification set-up, it goes into the options every node's
    # connections are made from, before any node has a connection.
    client.connection_kwargs["redis_connect_func"] = watch.on_connect
    for node in client.startup_nodes:
        node.connection_kwargs["redis_connect_func"] = watch.on_connect
    return cast(Redis, client)


def is_cluster(redis: Redis) -> bool:
    return isinstance(redis, RedisCluster)


def cluster_watch(redis: Redis) -> ClusterRestartWatch | None:
    connect_hook = getattr(redis, "connection_kwargs", {}).get("redis_connect_func")
    watch = getattr(connect_hook, "__self__", None)
    return watch if isinstance(watch, ClusterRestartWatch) else None
