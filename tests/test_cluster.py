"""Redis Cluster, against a real cluster of the tests' own: three primaries
and three replicas (``redis-server`` with ``cluster-enabled``, joined by
``redis-cli --cluster create``) on loopback, with passwords, the workers
running as the least-privilege ACL user.

The failover semantics of docs/guarantees.md ("Failover"), on a cluster:
accounts spread over the shards, each account's scripts on its own node; a
drain whose primary is killed (SIGKILL) while its replica lags, so that the
promoted node really lacks the last writes, ends with every job recorded
exactly once, every number deleted, no window over the limit, and the
limiter cooled down on the promoted node before it granted anything."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import RedisCluster

from tests.conftest import TIME_SCALE, Simulator, eventually, make_settings
from tests.failover import LAG_S, assert_the_failover_kept_its_promises
from tests.test_redis_security import (
    ADMIN_PASSWORD,
    SECRET,
    WORKER_PASSWORD,
    WORKER_USER,
    RedisProcess,
    cli,
    only_the_info_probe,
)
from worker.config.settings import AccountSettings, Settings
from worker.config.sources import load_settings
from worker.errors import ConfigError
from worker.limiter.permits import MICROS, Limiter
from worker.pool.workers import AccountExit, run_pool
from worker.queue.producer import Producer
from worker.simulator import parse_latency
from worker.store.cluster import ClusterRestartWatch, is_cluster
from worker.store.connection import (
    MAX_CONNECTIONS,
    acl_setuser_line,
    redacted_url,
    redis_client,
)
from worker.store.connection import restart_watch as watch_of
from worker.store.embedded import free_port
from worker.store.keys import AccountKeys

PREFIX = "ozpclus"

# ---- the settings and the client: no server needed ------------------------------


def test_cluster_mode_takes_any_node_url_and_says_what_is_missing() -> None:
    url = f"rediss://:{SECRET}@node-3:6379/0"
    loaded = load_settings({"OZP_REDIS_MODE": "cluster", "REDIS_URL": url})
    assert (loaded.redis_mode, loaded.redis_url) == ("cluster", url)
    assert SECRET not in repr(loaded)
    with pytest.raises(ConfigError, match="OZP_REDIS_MODE=cluster needs REDIS_URL") as caught:
        load_settings({"OZP_REDIS_MODE": "cluster"})
    assert "\n" not in str(caught.value)


async def test_a_cluster_client_has_a_restart_watch_per_node_and_no_database_but_0() -> None:
    port = free_port()  # nothing listens: building a client does no I/O
    client = redis_client(f"redis://:{SECRET}@127.0.0.1:{port}/0", "cluster")
    try:
        assert is_cluster(client)
        assert isinstance(watch_of(client), ClusterRestartWatch)
    finally:
        await client.aclose()
    with pytest.raises(ConfigError, match="REDIS_URL") as caught:
        redis_client(f"redis://:{SECRET}@127.0.0.1:{port}/3", "cluster")
    assert SECRET not in str(caught.value)
    assert "\n" not in str(caught.value)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    scheme=st.sampled_from(["redis://", "rediss://", "unix://", ""]),
    rest=st.text(max_size=40),
    query=st.dictionaries(
        st.sampled_from(
            ["db", "max_connections", "socket_timeout", "path", "ssl_cert_reqs", "x", "protocol"]
        ),
        st.text(max_size=8),
        max_size=3,
    ),
)
async def test_any_cluster_url_gives_a_client_or_one_config_error_without_the_password(
    scheme: str, rest: str, query: dict[str, str]
) -> None:
    url = f"{scheme}:{SECRET}@{rest}" + ("?" + urlencode(query) if query else "")
    try:
        client = redis_client(url, "cluster")
    except ConfigError as exc:
        # One line of its own (the URL as written is escaped where shown).
        assert "\n" not in str(exc).replace(redacted_url(url), "")
        assert SECRET not in str(exc)
        return
    # Building it did no I/O; the parts a command needs are all there.
    assert is_cluster(client)
    assert isinstance(watch_of(client), ClusterRestartWatch)
    await client.aclose()


# ---- a real cluster -------------------------------------------------------------------


def _require_cluster_tools() -> None:
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not on PATH: no Redis Cluster"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run this test", pytrace=False)
        pytest.skip(reason)


@dataclass
class Cluster:
    nodes: list[RedisProcess]

    def url(self, userinfo: str = f"{WORKER_USER}:{WORKER_PASSWORD}") -> str:
        return self.nodes[0].url(userinfo)

    def by_port(self, port: int) -> RedisProcess:
        return next(node for node in self.nodes if node.port == port)

    def primary_of(self, key: str) -> RedisProcess:
        """The node serving ``key``'s slot, as every live node sees it."""
        with self.live()[0].admin() as admin:
            slot = int(admin.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in admin.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return self.by_port(int(primary[1]))
        raise AssertionError(f"no node serves {key}")

    def replica_of(self, primary: RedisProcess) -> RedisProcess:
        with primary.admin() as admin:
            replicas = admin.info("replication")
        return self.by_port(int(replicas["slave0"]["port"]))

    def live(self) -> list[RedisProcess]:
        return [node for node in self.nodes if node.process is not None]


ClusterFactory = Callable[[], Awaitable[Cluster]]


@pytest.fixture
async def start_cluster(tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    _require_cluster_tools()
    started: list[RedisProcess] = []

    async def start() -> Cluster:
        rules = acl_setuser_line(WORKER_USER, WORKER_PASSWORD, PREFIX).removeprefix("ACL SETUSER ")
        for index in range(6):
            node = RedisProcess(
                tmp_path / f"node-{index}",
                [
                    "cluster-enabled yes", f"cluster-port {free_port()}",
                    "cluster-config-file nodes.conf", "cluster-node-timeout 1000",
                    f"requirepass {ADMIN_PASSWORD}", f"masterauth {ADMIN_PASSWORD}",
                    f"user {rules}", "appendonly no",
                ],
            )  # fmt: skip
            started.append(node.start())
        created = await asyncio.to_thread(
            subprocess.run,
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in started),
             "--cluster-replicas", "1", "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": ADMIN_PASSWORD},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-2000:]
        cluster = Cluster(started)

        async def everyone_agrees() -> bool:
            for node in started:
                with node.admin() as admin:
                    info = admin.execute_command("CLUSTER", "INFO")
                    if "cluster_state:ok" not in str(info):
                        return False
                    if admin.info("replication")["role"] == "slave" and (
                        admin.info("replication")["master_link_status"] != "up"
                    ):
                        return False
            return True

        await eventually(everyone_agrees, 60)
        return cluster

    yield start
    for node in reversed(started):
        node.stop()


def _accounts_on_every_primary(cluster: Cluster, count_each: int = 1) -> list[str]:
    """Account names whose slots sit on each primary in turn."""
    found: dict[int, list[str]] = {}
    index = 0
    while len(found) < 3 or any(len(names) < count_each for names in found.values()):
        name = f"acct{index}"
        index += 1
        port = cluster.primary_of(AccountKeys(PREFIX, name).limiter).port
        names = found.setdefault(port, [])
        if len(names) < count_each:
            names.append(name)
    return [name for names in found.values() for name in names]


def _settings(url: str, sims: dict[str, Simulator], **changes: Any) -> Settings:
    template = make_settings(url, PREFIX, {"redis_mode": "cluster", **changes})
    base = template.account()
    accounts = {
        name: AccountSettings(**{**base.__dict__, "name": name, "base_url": sim.url})
        for name, sim in sims.items()
    }
    settings = Settings(**{**template.__dict__, "accounts": accounts})
    settings.validate()
    return settings


async def _connections_from_us(cluster: Cluster) -> dict[int, int]:
    """Connections each primary holds from the worker user."""
    counts = {}
    for node in cluster.live():
        with node.admin() as admin:
            clients = admin.client_list()
            counts[node.port] = sum(1 for c in clients if c.get("user") == WORKER_USER)
    return counts


@pytest.mark.slow
async def test_accounts_spread_over_the_shards_drain_with_one_record_per_job(
    start_cluster: ClusterFactory, simulator_factory: Any
) -> None:
    cluster = await start_cluster()
    names = _accounts_on_every_primary(cluster, count_each=2)
    phones = {name: [f"98{i:02d}{j:06d}" for j in range(40)] for i, name in enumerate(names)}
    sims: dict[str, Simulator] = {
        name: await simulator_factory(
            campaigns={"c": set(phones[name])},
            time_scale=TIME_SCALE,
            latency=parse_latency("uniform:0,40"),
            seed=3,
        )
        for name in names
    }
    url = cluster.url()
    settings = _settings(url, sims)
    redis = redis_client(url, "cluster")
    try:
        for name in names:
            producer = Producer(redis, account=name, key_prefix=PREFIX)
            for phone in phones[name]:
                assert not (await producer.enqueue("c", phone)).duplicate
        # Each account's keys live together, on the primary its name hashes to.
        primaries = {cluster.primary_of(AccountKeys(PREFIX, name).limiter).port for name in names}
        assert len(primaries) == 3
        for name in names:
            keys = AccountKeys(PREFIX, name)
            home = cluster.primary_of(keys.limiter)
            for key in (keys.bulk, keys.results, keys.pending, keys.token, keys.stats):
                assert cluster.primary_of(key) is home

        exits = await asyncio.wait_for(
            run_pool(settings, redis, asyncio.Event(), until_empty=True), 120
        )
        assert exits == dict.fromkeys(names, AccountExit.EMPTY)
        for name in names:
            keys = AccountKeys(PREFIX, name)
            records = [fields for _, fields in await redis.xrange(keys.results)]
            assert Counter(f["phone"] for f in records) == Counter(phones[name]), name
            assert {f["outcome"] for f in records} == {"deleted"}, name
            report = await sims[name].inspect()
            assert report["violations"] == 0, name
            assert (await sims[name].campaigns())["c"] == [], name
        # The operator's commands see every shard: status counts each
        # account where it lives; pause and resume reach the account's node.
        env: dict[str, str | None] = {
            "OZP_REDIS_MODE": "cluster", "REDIS_URL": url, "OZP_KEY_PREFIX": PREFIX,
            "OZP_USERNAME": "demo", "OZP_API_KEY": "demo-key", "OZP_CONFIG": None,
        }  # fmt: skip
        status = await asyncio.to_thread(cli, env, "status", "--json")
        assert status.exit_code == 0, status.output
        shown = json.loads(status.stdout)["accounts"]
        for name in names:
            assert shown[name]["done"] == len(phones[name]), name
            assert shown[name]["state"] == "running", name
        paused = await asyncio.to_thread(cli, env, "pause", "--reason", "t")
        assert paused.exit_code == 0, paused.output
        assert await redis.get(AccountKeys(PREFIX, "default").paused) == "t"
        resumed = await asyncio.to_thread(cli, env, "resume")
        assert resumed.exit_code == 0, resumed.output
        assert not await redis.exists(AccountKeys(PREFIX, "default").paused)
        # Twice as many blocking reads at once as the bound: they take turns
        # instead of opening a connection each (or failing for want of one).
        nothing = f"{PREFIX}:{{{names[0]}}}:nothing"
        reads = [redis.xread({nothing: "$"}, block=200) for _ in range(2 * MAX_CONNECTIONS)]
        assert not any(await asyncio.gather(*reads))
        # However many accounts, a process holds a bounded number of
        # connections on each node; and the ACL user was refused nothing but
        # the INFO probe of the restart watch.
        for port, held in (await _connections_from_us(cluster)).items():
            # The node named in the URL also keeps the connection the
            # client asks the slot map on, outside the node's own pool.
            slot_map = 1 if port == cluster.nodes[0].port else 0
            assert held <= MAX_CONNECTIONS + slot_map, port
        for node in cluster.live():
            with node.admin() as admin:
                assert only_the_info_probe(admin), (node.port, admin.acl_log())
    finally:
        await redis.aclose()


PHONES = [f"98460{i:05d}" for i in range(240)]
LATE_PHONES = [f"98461{i:05d}" for i in range(5)]


def _pid(node: RedisProcess) -> int:
    assert node.process is not None
    return node.process.pid


@pytest.mark.slow
async def test_a_drain_survives_a_primary_killed_after_its_replica_fell_behind(
    start_cluster: ClusterFactory, simulator_factory: Any
) -> None:
    cluster = await start_cluster()
    sim: Simulator = await simulator_factory(
        campaigns={"c": {*PHONES, *LATE_PHONES}}, time_scale=TIME_SCALE,
        latency=parse_latency("uniform:0,100"), seed=13,
    )  # fmt: skip
    url = cluster.url()
    settings = _settings(url, {"default": sim}, visibility_timeout_s=10.0)
    keys = AccountKeys(PREFIX, "default")
    primary = cluster.primary_of(keys.limiter)
    replica = cluster.replica_of(primary)
    redis = redis_client(url, "cluster")
    producer = Producer.from_url(url, key_prefix=PREFIX, redis_mode="cluster")
    watch = watch_of(redis)
    assert isinstance(watch, ClusterRestartWatch)
    # A marker in the account's slot: counted where the cool-downs run, and
    # answered MOVED (skipped) by the nodes that do not hold the account.
    marker = f"{PREFIX}:{{default}}:promoted"
    watch.on_restart("mark", "HINCRBY", marker, "runs", 1)
    try:
        for phone in PHONES:
            await producer.enqueue("c", phone)
        run = asyncio.create_task(
            asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 150)
        )

        async def a_third_done() -> bool:
            assert not run.done()
            return int(await redis.xlen(keys.results)) >= len(PHONES) // 3

        await eventually(a_third_done)

        with primary.admin() as primary_admin, replica.admin() as replica_admin:
            os.kill(_pid(replica), signal.SIGSTOP)
            try:
                primary_admin.client_kill_filter(_type="replica")
                receipts = [
                    await producer.enqueue("c", phone, job_id=f"late-{phone}")
                    for phone in LATE_PHONES
                ]
                await asyncio.sleep(LAG_S)
                written = int(primary_admin.info("replication")["master_repl_offset"])
                assert primary.process is not None
                primary.process.kill()
                primary.process.wait()
                primary.process = None
            finally:
                os.kill(_pid(replica), signal.SIGCONT)
            replicated = int(replica_admin.info("replication")["master_repl_offset"])
            assert replicated < written, "the replica lost nothing: the test proves less"
            assert not any(receipt.duplicate for receipt in receipts)

            async def promoted() -> bool:
                return str(replica_admin.info("replication")["role"]) == "master"

            await eventually(promoted, 60)

        # Acknowledged, then lost with the primary: the same id is queued again.
        again = [
            await producer.enqueue("c", phone, job_id=f"late-{phone}") for phone in LATE_PHONES
        ]
        assert not any(receipt.duplicate for receipt in again)

        assert await run == {"default": AccountExit.EMPTY}
        assert await run_pool(settings, redis, asyncio.Event(), until_empty=True) == {
            "default": AccountExit.EMPTY
        }

        # The promotion was acted on at the promoted node, once, before it
        # served the account.
        node_watch = watch.node(f"127.0.0.1:{replica.port}")
        assert node_watch is not None and node_watch.restarts >= 1
        assert int(await redis.hget(marker, "runs") or 0) >= 1

        await assert_the_failover_kept_its_promises(
            redis, keys, sim, settings.account().rate_limit, [*PHONES, *LATE_PHONES]
        )
    finally:
        await producer.close()
        await redis.aclose()


@pytest.mark.slow
async def test_a_replica_named_in_the_url_and_promoted_by_hand_is_a_new_server(
    start_cluster: ClusterFactory,
) -> None:
    """The client first asks a replica for the slot map, so it holds a
    connection to it opened while it was not a primary; promoted (a planned
    CLUSTER FAILOVER), it must still count as a new server: the limiter
    cools down there before it grants anything."""
    cluster = await start_cluster()
    keys = AccountKeys(PREFIX, "default")
    old = cluster.primary_of(keys.limiter)
    replica = cluster.replica_of(old)
    window_s = 3.0
    settings = make_settings(
        replica.url(f"{WORKER_USER}:{WORKER_PASSWORD}"), PREFIX, {"redis_mode": "cluster"},
        rate_limit=5, rate_window_s=window_s,
    )  # fmt: skip
    redis = redis_client(replica.url(f"{WORKER_USER}:{WORKER_PASSWORD}"), "cluster")
    watch = watch_of(redis)
    assert isinstance(watch, ClusterRestartWatch)
    limiter = Limiter(redis, keys, settings.account())
    try:
        for _ in range(5):
            await limiter.acquire()
        # Only primaries get node objects: whatever the client opened to the
        # replica (the slot map, asked of the URL's node) serves no account.
        nodes = cast(RedisCluster, redis).nodes_manager.nodes_cache
        assert f"127.0.0.1:{replica.port}" not in nodes
        assert watch.restarts == 0
        with replica.admin() as admin:
            admin.execute_command("CLUSTER", "FAILOVER")

            async def promoted() -> bool:
                return str(admin.info("replication")["role"]) == "master"

            await eventually(promoted, 30)
        after = await limiter.acquire()
        # Five grants may have gone out just before: nothing for a window.
        assert after.slot_us - after.granted_at_us >= (window_s - 0.1) * MICROS
        node = watch.node(f"127.0.0.1:{replica.port}")
        assert node is not None and node.restarts == 1
        assert watch.restarts == 1
    finally:
        await redis.aclose()
