"""Noticing that a client talks to another Redis server process than before.

A restart, or a replica promoted by a failover, may lack the last writes
(AOF syncs once a second; replication is asynchronous), so the commands
registered with :class:`RestartWatch` (the limiters' cool-downs) run on the
first connection to the new server before anything else does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from redis.asyncio.connection import Connection
from redis.exceptions import AskError, MovedError, ResponseError

from worker.logs import get_logger

log = get_logger(__name__)


class RestartWatch:
    """Notices that the client now talks to another Redis server process (a
    restart, or a replica promoted in a failover), and reacts before any command.

    Three signals, each enough on its own:

    - the server's address changed: only a Sentinel-managed client moves,
      and only to another server (a promoted replica);
    - ``run_id`` from ``INFO server``, new with every server process, the
      exact signal;
    - for a user refused INFO (it is @dangerous in ACL terms), the
      connection's ``CLIENT ID``, which any user may ask: a server numbers
      its connections from 1 up and never reuses a number, so a connection
      numbered below one this client already had cannot be on the same
      server process.

    The last one's blind spot: a new server that has already accepted more
    connections than the old one had before our last one (a young server
    restarted under a large fleet) passes for the old one. A promoted replica
    counts its own connections, which have nothing to do with the old
    primary's; the address catches that case. Grant INFO where the policy
    allows, for the exact signal.

    Connections set up at the same time are numbered in the order the
    server accepted them, not in the order their set-ups finish: a later
    one may report its number first. So a number is compared with the
    highest known when this connection's own set-up (AUTH, the client
    name, CLIENT ID) starts, once its socket is open: a connection the
    server accepted after this one would have had to finish all of those
    round trips before this one started its first.

    The check and the commands run one connection at a time, and the new
    server is taken as known only once its commands succeeded: no other
    connection of this client reaches the new server before the commands
    did, and one that failed half-way leaves the next to find it new again.
    """

    def __init__(
        self, commands: dict[str, tuple[Any, ...]] | None = None, *, cluster_node: bool = False
    ) -> None:
        self.run_id: str | None = None
        self.address: str | None = None
        self.highest_client_id = 0
        self.info_refused = False
        self.restarts = 0
        # Shared by the watches of one cluster client's nodes.
        self._commands: dict[str, tuple[Any, ...]] = {} if commands is None else commands
        # A cluster node holds some accounts' slots only: a command for
        # another's is answered MOVED there, and runs on its own node.
        self._cluster_node = cluster_node
        # Set by a cluster client's watch for a node promoted since the
        # client started: the next connection's commands run whatever the
        # node's own signals say, and clear it once they succeeded.
        self.new_server: str | None = None
        self._checking = asyncio.Lock()

    def on_restart(self, name: str, *command: Any) -> None:
        """Run ``command`` first on a connection to a restarted server."""
        self._commands[name] = command

    async def on_connect(self, connection: Connection) -> None:
        seen = (self.highest_client_id, self.restarts)
        await connection.on_connect()
        Reconnects.connected()
        async with self._checking:
            known = (self.run_id, self.address, self.highest_client_id)
            restarted = await self._restarted(connection, seen)
            signal = self.new_server or restarted
            if signal is None:
                return
            try:
                for command in self._commands.values():
                    await connection.send_command(*command)
                    try:
                        await connection.read_response()
                    except (MovedError, AskError):
                        if not self._cluster_node:
                            raise
            except BaseException:
                self.run_id, self.address, self.highest_client_id = known
                raise
            self.new_server = None
            self.restarts += 1
            log.warning("redis.restarted", signal=signal, actions=sorted(self._commands))

    async def _restarted(self, connection: Connection, seen: tuple[int, int]) -> str | None:
        """Which signal says this connection is on another server, if any."""
        address = address_of(connection)
        moved = self.address is not None and address != self.address
        self.address = address
        if not self.info_refused:
            await connection.send_command("INFO", "server")
            try:
                info = str(await connection.read_response())
            except ResponseError:
                # NOPERM for a user without @dangerous (or a proxy that
                # hides INFO): ask once, not on every connection, since
                # each refusal also lands in the server's ACL LOG.
                self.info_refused = True
                log.debug("redis.restart_watch", signal="client_id", why="INFO refused")
            else:
                changed = self._run_id_changed(info)
                return "address" if moved else "run_id" if changed else None
        await connection.send_command("CLIENT", "ID")
        client_id = int(await connection.read_response())
        highest_before, restarts_before = seen
        if moved:
            # Another server's numbers: compare later connections with them.
            self.highest_client_id = client_id
            return "address"
        # After a restart every pooled connection reconnects at once; the
        # first to finish reports it, the others are on the same new server.
        if client_id < highest_before and self.restarts == restarts_before:
            self.highest_client_id = client_id
            return "client_id"
        self.highest_client_id = max(self.highest_client_id, client_id)
        return None

    def _run_id_changed(self, info: str) -> bool:
        run_id = next(
            (
                line.partition(":")[2].strip()
                for line in info.splitlines()
                if line.startswith("run_id:")
            ),
            "",
        )
        changed = self.run_id is not None and run_id != self.run_id
        self.run_id = run_id
        return changed


def address_of(connection: Connection) -> str:
    """Where the connection went: host and port, or a Unix socket's path."""
    path = getattr(connection, "path", None)
    if path:
        return str(path)
    return f"{getattr(connection, 'host', '')}:{getattr(connection, 'port', '')}"


class Reconnects:
    """Redis coming back after a connection of this process failed.

    A failure is noted where the client judges whether to retry it (every
    connection error and timeout passes there, retried or not); the next
    connection that completes its set-up is a reconnect, announced to each
    listener (the ``ozp_redis_reconnects_total`` counter), however many
    calls failed meanwhile. After a restart, each pooled connection found
    dead on its next use may count once more.
    """

    lost = False
    listeners: ClassVar[list[Callable[[], None]]] = []

    @classmethod
    def failed(cls) -> None:
        cls.lost = True

    @classmethod
    def connected(cls) -> None:
        if cls.lost:
            cls.lost = False
            for listener in cls.listeners:
                listener()
