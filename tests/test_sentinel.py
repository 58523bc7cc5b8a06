"""Redis behind Sentinel, against real processes of the tests' own: a primary,
one replica and three Sentinels on loopback, with passwords everywhere and
the workers running as the least-privilege ACL user (no INFO).

The failover semantics of docs/guarantees.md ("Failover"), tested as
invariants: a promotion is noticed as a new server and the limiter cools
down on it, whichever signal is available; a drain killed under its primary
(SIGKILL), with the replica lagging so that the promoted server really lacks
the last writes, still ends with every job recorded exactly once, every
number deleted at the vendor, and no window over the limit; a job whose
enqueue was acknowledged but lost is queued again by the same id; and a
planned switch done as the deployment guide says loses no write."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.conftest import TIME_SCALE, Simulator, eventually, make_settings
from tests.failover import LAG_S, assert_the_failover_kept_its_promises
from tests.test_redis_security import (
    ADMIN_PASSWORD,
    SECRET,
    WORKER_PASSWORD,
    WORKER_USER,
    Certificates,
    RedisProcess,
    make_certificates,
)
from worker.config.sources import load_settings
from worker.errors import ConfigError, RedisCredentialsRefused, RedisUnavailable
from worker.limiter.permits import MICROS, Limiter
from worker.pool.workers import AccountExit, run_pool
from worker.queue.jobs import make_job
from worker.queue.lanes import Queue
from worker.queue.producer import Producer
from worker.simulator import parse_latency
from worker.store.connection import acl_setuser_line, connect, redacted_url, redis_client
from worker.store.connection import restart_watch as watch_of
from worker.store.embedded import free_port
from worker.store.keys import AccountKeys
from worker.store.sentinel import DEFAULT_SENTINEL_PORT, PRIMARY_CHECK_S, parse_sentinel_url

SERVICE = "ozp-main"
SENTINEL_PASSWORD = "sentinel-secret-R5m8"
PREFIX = "ozpsent"

# ---- the URL, the settings, the client: no server needed -----------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"redis+sentinel://:{SECRET}@h1:26379,h2:26380/{SERVICE}/0",
            f"redis+sentinel://:***@h1:26379,h2:26380/{SERVICE}/0",
        ),
        (
            f"rediss+sentinel://ozp:{SECRET}@h1,h2/{SERVICE}/2"
            f"?sentinel_password={SECRET}&ssl_ca_certs=/etc/ca.pem",
            f"rediss+sentinel://ozp:***@h1,h2/{SERVICE}/2"
            "?sentinel_password=***&ssl_ca_certs=/etc/ca.pem",
        ),
        (
            f"redis+sentinel://h1/{SERVICE}?sentinel_username=s&sentinel_password={SECRET}",
            f"redis+sentinel://h1/{SERVICE}?sentinel_username=s&sentinel_password=***",
        ),
        (f"redis+sentinel://:{SECRET}/x@h1/{SERVICE}", f"redis+sentinel://:***@h1/{SERVICE}"),
    ],
)
def test_redacted_url_hides_every_password_of_a_sentinel_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
    assert SECRET not in redacted_url(url)


def test_a_sentinel_url_names_the_sentinels_the_service_and_both_credentials() -> None:
    target = parse_sentinel_url(
        f"rediss+sentinel://ozp:p%40ss@10.0.0.1:26380,sentinel-b,[::1]:26381/{SERVICE}/3"
        "?sentinel_username=watch&sentinel_password=s%26p&ssl_ca_certs=/etc/ca.pem"
    )
    assert target.sentinels == (
        ("10.0.0.1", 26380),
        ("sentinel-b", DEFAULT_SENTINEL_PORT),
        ("::1", 26381),
    )
    assert (target.service, target.tls) == (SERVICE, True)
    assert target.server == {
        "username": "ozp",
        "password": "p@ss",
        "db": 3,
        "ssl_ca_certs": "/etc/ca.pem",
    }
    assert target.sentinel == {
        "username": "watch",
        "password": "s&p",
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
    }
    assert parse_sentinel_url(f"redis+sentinel://h/{SERVICE}").server == {"db": 0}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"redis+sentinel://:{SECRET}@h1/", "no service name"),
        (f"redis+sentinel://:{SECRET}@h1", "no service name"),
        (f"redis+sentinel://:{SECRET}@h1/{SERVICE}/zero", r"/SERVICE/DB \(a number\)"),
        (f"redis+sentinel://:{SECRET}@h1/{SERVICE}/0/1", r"/SERVICE/DB \(a number\)"),
        (f"redis+sentinel://:{SECRET}@h1:0/{SERVICE}", "port must be a number"),
        (f"redis+sentinel://:{SECRET}@h1:x/{SERVICE}", "port must be a number"),
        (f"redis+sentinel://:{SECRET}@h1:\u0663/{SERVICE}", "port must be a number"),
        (f"redis+sentinel://:{SECRET}@h1,,h2/{SERVICE}", "address is empty"),
        (f"redis+sentinel://:{SECRET}@h1/{SERVICE}?ssl_password={SECRET}", "ssl_password"),
    ],
)
def test_a_malformed_sentinel_url_is_one_config_error_without_the_password(
    url: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        redis_client(url)
    assert "\n" not in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OZP_REDIS_MODE": "cluster"}, "OZP_REDIS_MODE=cluster needs REDIS_URL=redis://"),
        (
            {"OZP_REDIS_MODE": "cluster", "REDIS_URL": f"redis+sentinel://:{SECRET}@h/{SERVICE}"},
            "REDIS_URL names Sentinels: set OZP_REDIS_MODE=sentinel",
        ),
        (
            {"OZP_REDIS_MODE": "cluster", "REDIS_URL": f"unix:///tmp/{SECRET}.sock"},
            "REDIS_URL must start with redis:// or rediss:// when OZP_REDIS_MODE=cluster",
        ),
        (
            {"OZP_REDIS_MODE": "Sentinel"},
            "OZP_REDIS_MODE must be standalone, sentinel or cluster",
        ),
        ({"OZP_REDIS_MODE": "sentinel"}, "OZP_REDIS_MODE=sentinel needs REDIS_URL"),
        (
            {"OZP_REDIS_MODE": "sentinel", "REDIS_URL": f"redis://:{SECRET}@h:6379/0"},
            "REDIS_URL must start with redis\\+sentinel:// or rediss\\+sentinel:// when",
        ),
        (
            {"REDIS_URL": f"redis+sentinel://:{SECRET}@h/{SERVICE}"},
            "REDIS_URL names Sentinels: set OZP_REDIS_MODE=sentinel",
        ),
        ({"REDIS_URL": f"http://:{SECRET}@h/0"}, "REDIS_URL must start with redis://"),
    ],
)
def test_the_mode_and_the_url_scheme_must_agree(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(environ)
    assert "\n" not in str(caught.value)
    assert SECRET not in str(caught.value)


def test_sentinel_mode_takes_a_sentinel_url_from_the_environment_or_the_file(
    tmp_path: Path,
) -> None:
    url = f"rediss+sentinel://:{SECRET}@h1,h2/{SERVICE}/0"
    loaded = load_settings({"OZP_REDIS_MODE": "sentinel", "REDIS_URL": url})
    assert (loaded.redis_mode, loaded.redis_url) == ("sentinel", url)
    assert load_settings({}).redis_mode == "standalone"
    toml = tmp_path / "ozp.toml"
    toml.write_text(f'redis_mode = "sentinel"\nredis_url = "{url}"\n')
    assert load_settings({"OZP_CONFIG": str(toml)}).redis_mode == "sentinel"
    assert SECRET not in repr(loaded)


async def test_a_sentinel_client_has_the_options_and_the_restart_watch_of_any_client() -> None:
    port = free_port()  # nothing listens: building a client does no I/O
    standalone = redis_client(f"redis://:{SECRET}@127.0.0.1:{port}/4")
    sentinel = redis_client(f"redis+sentinel://:{SECRET}@127.0.0.1:{port}/{SERVICE}/4")
    try:
        mine, theirs = (
            client.connection_pool.connection_kwargs for client in (sentinel, standalone)
        )
        for option in (
            "decode_responses", "encoding_errors", "socket_timeout", "socket_connect_timeout",
            "health_check_interval", "retry", "retry_on_error", "password", "db",
        ):  # fmt: skip
            assert mine[option] == theirs[option], option
        assert watch_of(sentinel) is not None
        assert watch_of(sentinel) is not watch_of(standalone)
    finally:
        await sentinel.aclose()
        await standalone.aclose()


async def test_a_new_server_is_known_only_once_its_commands_ran(
    redis_url: str, key_prefix: str
) -> None:
    """A command of the restart watch that fails (a dropped connection, a
    refusal) leaves the next connection to find the server new again,
    instead of skipping the cool-down."""
    redis = redis_client(redis_url)
    watch = watch_of(redis)
    assert watch is not None
    runs = f"{key_prefix}:{{a}}:runs"
    fails_first = (
        "if redis.call('INCR', KEYS[1]) == 1 then return redis.error_reply('not yet') end return 0"
    )
    watch.on_restart("once", "EVAL", fails_first, 1, runs)
    watch.run_id = "the server before this one"
    try:
        with pytest.raises(ResponseError, match="not yet"):
            await redis.ping()
        assert watch.restarts == 0
        await redis.ping()
        assert watch.restarts == 1
        assert await redis.get(runs) == "2"
        await redis.ping()
        assert await redis.get(runs) == "2"
    finally:
        await redis.aclose()


# ---- real Sentinels ------------------------------------------------------------------


def _require_sentinel() -> None:
    """redis-server on PATH; skipped without it, but a failure under CI."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not on PATH, so no Sentinel (redis-server --sentinel)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run this test", pytrace=False)
        pytest.skip(reason)


@dataclass
class SentinelProcess:
    """``redis-server --sentinel``, from a configuration file it may rewrite."""

    directory: Path
    config: list[str]
    port: int = field(default_factory=free_port)
    tls: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        listen = ["port 0", f"tls-port {self.port}"] if self.tls else [f"port {self.port}"]
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [*listen, "bind 127.0.0.1", f"dir {self.directory}", "logfile sentinel.log",
                 *self.config]
            ) + "\n"
        )  # fmt: skip
        conf.chmod(0o600)
        self.process = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                log = self.directory / "sentinel.log"
                reason = log.read_text() if log.exists() else "no log"
                if os.environ.get("CI"):
                    pytest.fail(f"redis-server --sentinel would not start: {reason}")
                pytest.skip(f"redis-server --sentinel is not available here: {reason[-300:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            assert time.monotonic() < deadline, "redis-server --sentinel did not listen"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class Deployment:
    """A primary, one replica and three Sentinels (quorum 2), all with passwords."""

    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[SentinelProcess]
    tls: dict[str, str]

    def url(self, userinfo: str, query: str = "") -> str:
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        extra = f"&{query}" if query else ""
        return f"{scheme}://{userinfo}@{hosts}/{SERVICE}/0?sentinel_password={SENTINEL_PASSWORD}{extra}"

    def worker_url(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.tls.items())
        return self.url(f"{WORKER_USER}:{WORKER_PASSWORD}", query)

    def admin(self, server: RedisProcess) -> Redis:
        return Redis(
            port=server.port, password=ADMIN_PASSWORD, decode_responses=True,
            ssl=bool(self.tls), **self._client_tls(),
        )  # fmt: skip

    def sentinel_admin(self, index: int = 0) -> Redis:
        return Redis(
            port=self.sentinels[index].port, password=SENTINEL_PASSWORD, decode_responses=True,
            ssl=bool(self.tls), **self._client_tls(),
        )  # fmt: skip

    def _client_tls(self) -> dict[str, str]:
        return {"ssl_ca_certs": self.tls["ssl_ca_certs"]} if self.tls else {}

    async def primary_ports(self) -> set[int]:
        """The primary's port according to each Sentinel that answers (two
        during a failover, until the last Sentinel hears of it)."""
        ports = set()
        for index in range(len(self.sentinels)):
            async with self.sentinel_admin(index) as sentinel:
                with contextlib.suppress(RedisConnectionError):
                    _, port = await sentinel.sentinel_get_master_addr_by_name(SERVICE)
                    ports.add(int(port))
        return ports

    async def wait_for_primary(self, port: int, timeout_s: float = 30.0) -> None:
        """Until every Sentinel names ``port`` as the primary's."""

        async def promoted() -> bool:
            return await self.primary_ports() == {port}

        await eventually(promoted, timeout_s)


DeploymentFactory = Callable[..., Awaitable[Deployment]]


@pytest.fixture
async def start_deployment(tmp_path: Path) -> AsyncIterator[DeploymentFactory]:
    _require_sentinel()
    started: list[RedisProcess | SentinelProcess] = []

    async def start(certificates: Certificates | None = None) -> Deployment:
        tls_server: list[str] = []
        tls_client: dict[str, str] = {}
        if certificates is not None:
            tls_server = [
                f"tls-cert-file {certificates.cert}", f"tls-key-file {certificates.key}",
                f"tls-ca-cert-file {certificates.ca}", "tls-auth-clients no",
                "tls-replication yes",
            ]  # fmt: skip
            tls_client = {"ssl_ca_certs": str(certificates.ca)}
        rules = acl_setuser_line(WORKER_USER, WORKER_PASSWORD, PREFIX).removeprefix("ACL SETUSER ")
        # The same on both, since ACL users are not replicated; masterauth on
        # both, since either may become the other's replica.
        data = [
            f"requirepass {ADMIN_PASSWORD}", f"masterauth {ADMIN_PASSWORD}", f"user {rules}",
            "appendonly no", *tls_server,
        ]  # fmt: skip
        primary = RedisProcess(tmp_path / "primary", data, tls=bool(tls_server)).start()
        started.append(primary)
        replica = RedisProcess(
            tmp_path / "replica",
            [*data, f"replicaof 127.0.0.1 {primary.port}"],
            tls=bool(tls_server),
        ).start()
        started.append(replica)
        sentinels = []
        for index in range(3):
            sentinel = SentinelProcess(
                tmp_path / f"sentinel-{index}",
                [
                    f"requirepass {SENTINEL_PASSWORD}",
                    f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2",
                    f"sentinel auth-pass {SERVICE} {ADMIN_PASSWORD}",
                    f"sentinel down-after-milliseconds {SERVICE} 1000",
                    f"sentinel failover-timeout {SERVICE} 5000",
                    *tls_server,
                ],
                tls=bool(tls_server),
            )
            started.append(sentinel.start())
            sentinels.append(sentinel)
        deployment = Deployment(primary, replica, sentinels, tls_client)

        async def everyone_knows_everyone() -> bool:
            for index in range(3):
                async with deployment.sentinel_admin(index) as admin:
                    state = await admin.sentinel_master(SERVICE)
                    if (state["num-other-sentinels"], state["num-slaves"]) != (2, 1):
                        return False
            async with deployment.admin(replica) as admin:
                return (await admin.info("replication"))["master_link_status"] == "up"

        await eventually(everyone_knows_everyone, 30)
        return deployment

    yield start
    for process in reversed(started):
        process.stop()


def _pid(server: RedisProcess) -> int:
    assert server.process is not None
    return server.process.pid


# ---- a promotion is a new server: the limiter cools down ---------------------------


@pytest.mark.slow
async def test_a_promotion_is_noticed_as_a_new_server_with_or_without_info(
    start_deployment: DeploymentFactory,
) -> None:
    """With INFO the run_id changes; without it, the replica's own connection
    numbers are already past the primary's, so CLIENT ID alone would miss
    the promotion: the new address tells, for both. A demoted primary takes
    writes until the Sentinels reconfigure it; the client leaves it within
    PRIMARY_CHECK_S."""
    deployment = await start_deployment()
    window_s = 3.0
    settings = make_settings(
        deployment.worker_url(), PREFIX, {"redis_mode": "sentinel"}, rate_limit=5,
        rate_window_s=window_s,
    )  # fmt: skip
    clients = {
        "acl": redis_client(deployment.worker_url()),
        "admin": redis_client(deployment.url(f":{ADMIN_PASSWORD}")),
    }
    # Separate accounts: one client's cool-down must not pass for the other's.
    limiters = {
        name: Limiter(client, AccountKeys(PREFIX, name), settings.account())
        for name, client in clients.items()
    }
    try:
        for limiter in limiters.values():
            for _ in range(5):
                await limiter.acquire()
        acl = watch_of(clients["acl"])
        assert acl is not None and acl.info_refused and acl.restarts == 0
        for _ in range(acl.highest_client_id + 50):
            socket.create_connection(("127.0.0.1", deployment.replica.port)).close()
        async with deployment.admin(deployment.replica) as replica:
            assert int(await replica.client_id()) > acl.highest_client_id

        async with deployment.sentinel_admin() as sentinel:
            await sentinel.sentinel_failover(SERVICE)
        await deployment.wait_for_primary(deployment.replica.port)
        # The demoted primary still takes writes for some seconds; a client
        # asks the Sentinels again within this long.
        await asyncio.sleep(PRIMARY_CHECK_S)

        for name, limiter in limiters.items():
            after = await limiter.acquire()
            # Five grants may have gone out just before: nothing more for a window.
            assert after.slot_us - after.granted_at_us >= (window_s - 0.1) * MICROS, name
            watch = watch_of(clients[name])
            assert watch is not None and watch.restarts == 1, name
            assert watch.address == f"127.0.0.1:{deployment.replica.port}"
        # With INFO, the new server's own run_id is known too.
        async with deployment.admin(deployment.replica) as promoted:
            run_id = (await promoted.info("server"))["run_id"]
        assert watch_of(clients["admin"]).run_id == run_id  # type: ignore[union-attr]
    finally:
        for client in clients.values():
            await client.aclose()


# ---- a drain through a failover that lost the last writes ----------------------------

PHONES = [f"98450{i:05d}" for i in range(300)]
# Queued in the moments the replica missed, through the Python API, each
# acknowledged to its producer by the primary that then died.
LATE_PHONES = [f"98451{i:05d}" for i in range(5)]


@pytest.mark.slow
async def test_a_drain_survives_a_failover_that_lost_the_last_writes(
    start_deployment: DeploymentFactory, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={"c": {*PHONES, *LATE_PHONES}},
        time_scale=TIME_SCALE,
        latency=parse_latency("uniform:0,100"),
        seed=11,
    )
    deployment = await start_deployment()
    url = deployment.worker_url()
    # A settling write is retried for half the visibility timeout: longer
    # than a failover here, as it must be in production.
    settings = make_settings(
        url, PREFIX, {"redis_mode": "sentinel", "visibility_timeout_s": 10.0},
        base_url=sim.url,
    )  # fmt: skip
    keys = AccountKeys(PREFIX, "default")
    redis = redis_client(url)
    producer = Producer.from_url(url, key_prefix=PREFIX)
    watch = watch_of(redis)
    assert watch is not None
    marker = f"{PREFIX}:{{default}}:promoted"
    watch.on_restart("mark", "HINCRBY", marker, "runs", 1)
    primary_admin = deployment.admin(deployment.primary)
    replica_admin = deployment.admin(deployment.replica)
    try:
        await Queue(redis, keys).enqueue_many(make_job("c", p) for p in PHONES)
        run = asyncio.create_task(
            asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 120)
        )

        async def a_third_done() -> bool:
            assert not run.done()
            return int(await redis.xlen(keys.results)) >= len(PHONES) // 3

        await eventually(a_third_done)

        # The replica stops hearing from the primary, which goes on working
        # for LAG_S: what it does then is what a lagging replica would miss.
        os.kill(_pid(deployment.replica), signal.SIGSTOP)
        try:
            await primary_admin.client_kill_filter(_type="replica")
            receipts = [
                await producer.enqueue("c", phone, job_id=f"late-{phone}") for phone in LATE_PHONES
            ]
            await asyncio.sleep(LAG_S)
            written = int((await primary_admin.info("replication"))["master_repl_offset"])
            assert deployment.primary.process is not None
            deployment.primary.process.kill()
            deployment.primary.process.wait()
        finally:
            os.kill(_pid(deployment.replica), signal.SIGCONT)
        replicated = int((await replica_admin.info("replication"))["master_repl_offset"])
        assert replicated < written, "the replica lost nothing: the test proves less"
        assert not any(receipt.duplicate for receipt in receipts)

        await deployment.wait_for_primary(deployment.replica.port)
        # Acknowledged, then lost with the primary: the same id again is
        # queued, not a duplicate.
        again = [
            await producer.enqueue("c", phone, job_id=f"late-{phone}") for phone in LATE_PHONES
        ]
        assert not any(receipt.duplicate for receipt in again)

        assert await run == {"default": AccountExit.EMPTY}
        # The late jobs, should the first run have ended before they came back.
        assert await run_pool(settings, redis, asyncio.Event(), until_empty=True) == {
            "default": AccountExit.EMPTY
        }

        # The promotion was noticed without INFO, and acted on at the new primary.
        assert watch.info_refused and watch.restarts >= 1
        assert int(await redis.hget(marker, "runs") or 0) >= 1

        await assert_the_failover_kept_its_promises(
            redis, keys, sim, settings.account().rate_limit, [*PHONES, *LATE_PHONES]
        )
    finally:
        await primary_admin.aclose()
        await replica_admin.aclose()
        await producer.close()
        await redis.aclose()


# ---- TLS and AUTH to the Sentinels and the servers ------------------------------------


@pytest.mark.slow
async def test_tls_and_passwords_and_a_planned_failover_that_loses_nothing(
    start_deployment: DeploymentFactory, tmp_path: Path
) -> None:
    """TLS to the Sentinels and the servers, passwords for both; the held
    write, refused by the demoted primary, is resent by the client's own
    retries and lands on the new primary, not on the old address."""
    (tmp_path / "tls").mkdir()
    certificates = make_certificates(tmp_path / "tls")
    deployment = await start_deployment(certificates)
    url = deployment.worker_url()
    assert url.startswith("rediss+sentinel://")
    assert make_settings(url, PREFIX, {"redis_mode": "sentinel"}).redis_mode == "sentinel"
    redis = await connect(url)
    producer = Producer(redis, key_prefix=PREFIX)
    old = deployment.admin(deployment.primary)
    new = deployment.admin(deployment.replica)
    try:
        assert not (await producer.enqueue("spring", "9876500001", job_id="tls-1")).duplicate

        # The planned switch of deploy/README.md: hold the writes, let the
        # replica catch up, promote it, demote the old primary, release the
        # writes, which it now refuses and the clients send again to the new one.
        await old.client_pause(30_000, all=False)
        held = asyncio.create_task(producer.enqueue("spring", "9876500002", job_id="tls-2"))

        async def caught_up() -> bool:
            offsets = [
                (await admin.info("replication"))["master_repl_offset"] for admin in (old, new)
            ]
            return offsets[0] == offsets[1]

        await eventually(caught_up)
        await asyncio.sleep(0.2)
        assert not held.done(), "the write was not held"
        async with deployment.sentinel_admin() as sentinel:
            await sentinel.sentinel_failover(SERVICE)
        await deployment.wait_for_primary(deployment.replica.port)
        await old.replicaof("127.0.0.1", deployment.replica.port)
        await old.client_unpause()

        # Sent while the writes were held, it was refused by the old primary
        # and written to the new one, over TLS, as the same user.
        assert not (await held).duplicate
        for job_id in ("tls-1", "tls-2"):
            assert await new.exists(f"{PREFIX}:{{default}}:job:{job_id}"), job_id
        assert (await producer.enqueue("spring", "9876500001", job_id="tls-1")).duplicate
        watch = watch_of(redis)
        assert watch is not None and watch.restarts == 1
        assert watch.address == f"127.0.0.1:{deployment.replica.port}"
    finally:
        await old.aclose()
        await new.aclose()
        await redis.aclose()

    wrong = url.replace(f"sentinel_password={SENTINEL_PASSWORD}", f"sentinel_password={SECRET}")
    with pytest.raises(RedisCredentialsRefused, match="a Sentinel refused") as refused:
        await connect(wrong)
    assert SECRET not in str(refused.value)
    wrong = url.replace(f":{WORKER_PASSWORD}@", f":{SECRET}@")
    with pytest.raises(RedisCredentialsRefused) as refused:
        await connect(wrong)
    assert SECRET not in str(refused.value)
    untrusted = url.replace(str(certificates.ca), str(certificates.other_ca))
    with pytest.raises(RedisUnavailable, match="certificate verify failed"):
        await connect(untrusted)
