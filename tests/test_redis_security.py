"""Redis security, against real redis-server processes of the tests' own:
passwords never shown, a refused password fails at once, a least-privilege
ACL user runs the whole product, TLS with AUTH, the embedded server kept
private, and every Redis refusal an exit code instead of a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from typer.testing import CliRunner, Result

from tests.conftest import TIME_SCALE, make_settings
from worker.cli.app import (
    EXIT_CODES_HELP,
    EXIT_NO_REDIS,
    EXIT_OK,
    EXIT_REDIS_REFUSED,
    EXIT_USAGE,
    app,
)
from worker.errors import RedisCredentialsRefused, RedisUnavailable
from worker.logs import configure_logging, get_logger
from worker.pool.workers import run_pool
from worker.queue.producer import Producer
from worker.store.connection import (
    REQUIRED_ACL_RULES,
    acl_setuser_line,
    connect,
    redacted_url,
    redis_client,
    restart_watch,
)
from worker.store.embedded import EmbeddedRedis, free_port
from worker.store.keys import AccountKeys, accounts_key

ADMIN_PASSWORD = "admin-secret-7Hq2"
WORKER_USER = "ozp-worker"
WORKER_PASSWORD = "worker-secret-K9x4"
SECRET = "s3cret-Zq81"  # a password no output may ever show
PHONES_KEPT = ["9876500001", "9876500002", "9876500003"]
PHONE_UNKNOWN = "9876500099"  # not in the simulator's campaign: a dead letter
PHONE_DRAINED = "9876500004"


@dataclass
class RedisProcess:
    """A redis-server of the test's own, configured on its stdin (never argv)."""

    directory: Path
    config: list[str]
    port: int = field(default_factory=free_port)
    tls: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        listen = ["port 0", f"tls-port {self.port}"] if self.tls else [f"port {self.port}"]
        text = "\n".join(
            [*listen, "bind 127.0.0.1", f"dir {self.directory}", "logfile redis.log",
             'save ""', *self.config]
        )  # fmt: skip
        self.process = subprocess.Popen(
            ["redis-server", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdin is not None
        with self.process.stdin as stdin:
            stdin.write(text.encode() + b"\n")
        deadline = time.monotonic() + 10
        while True:
            assert self.process.poll() is None, (self.directory / "redis.log").read_text()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            assert time.monotonic() < deadline, "redis-server did not listen"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def url(self, userinfo: str = "", query: str = "") -> str:
        scheme = "rediss" if self.tls else "redis"
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}127.0.0.1:{self.port}/0{'?' + query if query else ''}"

    def admin(self, **tls: Any) -> SyncRedis:
        client = SyncRedis(
            port=self.port, password=ADMIN_PASSWORD, decode_responses=True, ssl=self.tls, **tls
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return client
            except Exception:  # noqa: BLE001 - loading, or TLS not up yet: try again
                assert time.monotonic() < deadline
                time.sleep(0.05)


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    started: list[RedisProcess] = []

    def start(*config: str, name: str = "redis", tls: bool = False) -> RedisProcess:
        server = RedisProcess(tmp_path / name, [f"requirepass {ADMIN_PASSWORD}", *config], tls=tls)
        if any(line.startswith("cluster-enabled") for line in config):
            server.port = cluster_port()
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def cluster_port() -> int:
    """A free port that leaves room for its cluster bus port, 10000 above."""
    while True:
        port = free_port()
        if port <= 55535:
            with socket.socket() as bus, contextlib.suppress(OSError):
                bus.bind(("127.0.0.1", port + 10000))
                return port


def product_env(url: str, prefix: str, **extra: str) -> dict[str, str | None]:
    cleared: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("OZP_", "OZONETEL_"))
    }
    return {**cleared, "REDIS_URL": url, "OZP_KEY_PREFIX": prefix, **extra}


def cli(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


async def connect_and_close(url: str) -> None:
    redis = await connect(url)
    await redis.aclose()


def connections_received(admin: SyncRedis) -> int:
    return int(admin.info("stats")["total_connections_received"])


def worker_url(server: RedisProcess, query: str = "") -> str:
    return server.url(f"{WORKER_USER}:{WORKER_PASSWORD}", query)


def create_worker_user(admin: SyncRedis, prefix: str, broad: bool = False) -> str:
    """The README's ACL line (or its broader variant), for ``prefix``, run as is."""
    line = (
        f"ACL SETUSER {WORKER_USER} reset on >{WORKER_PASSWORD} ~{prefix}:* resetchannels "
        "+@all -@dangerous"
        if broad
        else acl_setuser_line(WORKER_USER, WORKER_PASSWORD, prefix)
    )
    assert admin.execute_command(*line.split()) == "OK"
    return line


# 1. A password is never shown ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://ozp:{SECRET}@db.internal:6379/0", "redis://ozp:***@db.internal:6379/0"),
        (f"rediss://ozp:{SECRET}@db.internal:6380", "rediss://ozp:***@db.internal:6380"),
        (f"redis://:{SECRET}@127.0.0.1:6379/2", "redis://:***@127.0.0.1:6379/2"),
        (f"redis://{SECRET}@h/0", "redis://***@h/0"),
        (f"redis://h/0?password={SECRET}", "redis://h/0?password=***"),
        (
            f"rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem&password={SECRET}&ssl_password={SECRET}",
            "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem&password=***&ssl_password=***",
        ),
        (f"redis://h/0?Pass%77ord={SECRET}", "redis://h/0?Pass%77ord=***"),
        (
            f"unix:///run/redis.sock?db=1&password={SECRET}",
            "unix:///run/redis.sock?db=1&password=***",
        ),
        (f"unix://ozp:{SECRET}@/run/redis.sock?db=1", "unix://ozp:***@/run/redis.sock?db=1"),
        # Malformed (an unescaped "/" in the password): over-redacted, never leaked.
        (f"redis://ozp:{SECRET}/x@h/0", "redis://ozp:***@h/0"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ],
)
def test_redacted_url_hides_every_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
    assert SECRET not in redacted_url(url)


@pytest.mark.parametrize(
    ("scheme", "userinfo", "query"),
    [
        ("redis", "", f"password={SECRET}"),
        ("redis", f"ozp:{SECRET}", ""),
        ("rediss", "", f"ssl_password={SECRET}&password={SECRET}"),
    ],
)
def test_the_unreachable_redis_error_shows_no_password(
    scheme: str, userinfo: str, query: str
) -> None:
    at = f"{userinfo}@" if userinfo else ""
    url = f"{scheme}://{at}127.0.0.1:{free_port()}/0{'?' + query if query else ''}"
    result = cli(product_env(url, "tq"), "status", "--json")
    assert result.exit_code == EXIT_NO_REDIS
    line = one_error_line(result)
    assert line.startswith(f"error: cannot reach Redis at {scheme}://")
    assert SECRET not in result.output


def test_a_url_parameter_redis_does_not_take_is_a_config_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?ssl_password={SECRET}"
    result = cli(product_env(url, "tq"), "status", "--json")
    assert result.exit_code == EXIT_USAGE
    assert "unexpected keyword argument 'ssl_password'" in one_error_line(result)
    assert SECRET not in result.output


def test_a_redis_password_is_redacted_from_log_lines(tmp_path: Path) -> None:
    stream = tmp_path / "log"
    with stream.open("w") as out:
        configure_logging(level="info", json=True, stream=out)
        redis_client(f"redis://127.0.0.1:9/0?password={SECRET}")
        get_logger("test").warning("careless", where=f"redis with {SECRET}")
    assert "careless" in stream.read_text()
    assert SECRET not in stream.read_text()


# 2. A refused password fails at once ------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        ("", ""),  # none at all: NOAUTH
        (f":{SECRET}", ""),  # wrong password: WRONGPASS
        (f"nobody:{SECRET}", ""),  # no such user
        ("", f"password={SECRET}"),  # wrong, in the query
    ],
    ids=["none", "wrong", "no-such-user", "wrong-in-query"],
)
def test_a_refused_password_exits_3_at_once_after_one_connection(
    start_redis: Callable[..., RedisProcess], credentials: tuple[str, str]
) -> None:
    server = start_redis()
    admin = server.admin()
    before = connections_received(admin)
    result = cli(product_env(server.url(*credentials), "tq"), "status", "--json")
    assert result.exit_code == EXIT_NO_REDIS
    line = one_error_line(result)
    assert "refused the credentials" in line
    assert SECRET not in result.output
    # One connection: the refusal is not retried as if the network failed.
    assert connections_received(admin) - before == 1
    admin.close()


async def test_connect_raises_credentials_refused(
    start_redis: Callable[..., RedisProcess],
) -> None:
    server = start_redis()
    with pytest.raises(RedisCredentialsRefused) as refused:
        await connect(server.url(f":{SECRET}"))
    assert isinstance(refused.value, RedisUnavailable)
    assert SECRET not in str(refused.value)
    redis = await connect(server.url(f":{ADMIN_PASSWORD}"))
    await redis.aclose()


# 3. A least-privilege ACL user ------------------------------------------------


@contextlib.contextmanager
def simulator(tmp_path: Path) -> Iterator[str]:
    """``python -m worker simulate`` holding PHONES_KEPT in campaign ``spring``."""
    campaigns = tmp_path / "campaigns.json"
    campaigns.write_text(json.dumps({"spring": [*PHONES_KEPT, PHONE_DRAINED]}))
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "simulate", "--port", "0", "--campaigns", str(campaigns)],
        env={k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ozonetel simulator listening on http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def granted_commands() -> set[str]:
    return {
        word.removeprefix("+")
        for part in REQUIRED_ACL_RULES
        for word in part.split()
        if word.startswith("+") and not word.startswith("+@")
    }


def dry_run(admin: SyncRedis, *command: str) -> str:
    """ACL DRYRUN of the worker user, with as many dummy arguments as the command wants."""
    for extra in range(8):
        try:
            return str(
                admin.execute_command("ACL", "DRYRUN", WORKER_USER, *command, *["x"] * extra)
            )
        except ResponseError as exc:
            if "wrong number of arguments" not in str(exc):
                raise
    raise AssertionError(f"no arity fits {command}")


def only_the_info_probe(admin: SyncRedis) -> bool:
    """True if the server refused nothing but each client's one INFO probe."""
    return all(
        (entry["reason"], entry["object"]) == ("command", "info") for entry in admin.acl_log()
    )


def test_the_acl_grants_no_dangerous_command(start_redis: Callable[..., RedisProcess]) -> None:
    admin = start_redis().admin()
    create_worker_user(admin, "ozp")
    dangerous = [str(name) for name in admin.acl_cat("dangerous")]
    assert "info" in dangerous and "keys" in dangerous and "client|list" in dangerous
    assert not granted_commands() & set(dangerous)
    for command in dangerous:
        assert dry_run(admin, *command.split("|")) != "OK", command
    assert dry_run(admin, "client", "id") == "OK"
    admin.close()


@pytest.mark.parametrize("broad", [False, True], ids=["listed", "all-but-dangerous"])
def test_a_least_privilege_acl_user_runs_the_whole_product(
    start_redis: Callable[..., RedisProcess], tmp_path: Path, broad: bool
) -> None:
    prefix = "ozpacl"
    server = start_redis()
    admin = server.admin()
    create_worker_user(admin, prefix, broad)
    env = product_env(worker_url(server), prefix)
    keys = AccountKeys(prefix, "default")

    with simulator(tmp_path) as base_url:
        sim_env = {
            **env,
            "OZONETEL_BASE_URL": base_url,
            "OZONETEL_USERNAME": "demo",
            "OZONETEL_API_KEY": "demo-key",
        }
        for phone in (PHONES_KEPT[0], PHONES_KEPT[1], PHONE_UNKNOWN):
            queued = cli(env, "enqueue", "--campaign", "spring", "--phone", phone)
            assert queued.exit_code == EXIT_OK, queued.output
        rows = tmp_path / "rows.csv"
        rows.write_text(f"campaign,phone\nspring,{PHONES_KEPT[2]}\nspring,{PHONES_KEPT[0]}\n")
        imported = cli(env, "import", str(rows))
        assert imported.exit_code == EXIT_OK, imported.output

        ran = cli(sim_env, "run", "--until-empty", "--concurrency", "2")
        assert ran.exit_code == EXIT_OK, ran.output

        results = json_lines(cli(env, "results", "--json", "--limit", "0").stdout)
        assert Counter(r["outcome"] for r in results) == {"deleted": 3, "dead": 1}
        letters = json_lines(cli(env, "dlq", "list", "--json").stdout)
        assert [letter["reason"] for letter in letters] == ["no_record"]

        replayed = cli(env, "dlq", "replay", "--reason", "no_record")
        assert replayed.exit_code == EXIT_OK, replayed.output
        again = cli(sim_env, "run", "--until-empty")
        assert again.exit_code == EXIT_OK, again.output

        drained_file = tmp_path / "drain.csv"
        drained_file.write_text(f"campaign,phone\nspring,{PHONE_DRAINED}\n")
        report = tmp_path / "report"
        drained = cli(sim_env, "drain", str(drained_file), "--report", str(report))
        assert drained.exit_code == EXIT_OK, drained.output
        assert PHONE_DRAINED[-3:] in (report / "outcomes.csv").read_text()

    for command in (
        ("status", "--json"),
        ("pause", "--reason", "maintenance"),
        ("resume",),
        ("token", "status", "--json"),
        ("dlq", "purge", "--reason", "no_record", "--yes"),
    ):
        done = cli(env, *command)
        assert done.exit_code == EXIT_OK, (command, done.output)
    status = json.loads(cli(env, "status", "--json").stdout)["accounts"]["default"]
    assert (status["done"], status["dead"]) == (4, 2)

    # Nothing was refused, not even inside a script that would swallow it:
    # only the restart watch's INFO, once per client, before it falls back.
    assert only_the_info_probe(admin)
    assert admin.smembers(accounts_key(prefix)) == {"default"}
    assert admin.xlen(keys.dlq) == 0

    # And the user is as narrow as it claims: no INFO, no other keys.
    with SyncRedis.from_url(worker_url(server)) as user:
        with pytest.raises(NoPermissionError):
            user.info()
        with pytest.raises(NoPermissionError):
            user.set("someone-else:key", "x")
    admin.close()


async def test_without_info_a_restart_is_noticed_through_client_ids(
    start_redis: Callable[..., RedisProcess],
) -> None:
    prefix = "ozprestart"
    rules = acl_setuser_line(WORKER_USER, WORKER_PASSWORD, prefix).removeprefix("ACL SETUSER ")
    # In the configuration, so that the user is there again after the restart.
    server = start_redis(f"user {rules}")
    # Other clients came and went before ours: its numbers are not the first.
    for _ in range(40):
        socket.create_connection(("127.0.0.1", server.port)).close()
    redis = redis_client(worker_url(server))
    watch = restart_watch(redis)
    assert watch is not None
    marker = f"{prefix}:{{default}}:restarted"
    watch.on_restart("mark", "HINCRBY", marker, "runs", 1)
    stream = f"{prefix}:{{default}}:nothing"

    async def many_connections_at_once() -> None:
        # Blocking reads hold their connections, so the pool opens 30 at once.
        await asyncio.gather(*(redis.xread({stream: "$"}, block=200) for _ in range(30)))

    try:
        await many_connections_at_once()
        assert watch.info_refused
        assert watch.highest_client_id > 40
        assert watch.restarts == 0

        server.stop()
        server.start()
        await many_connections_at_once()  # every pooled connection reconnects
        assert watch.restarts == 1
        assert await redis.hget(marker, "runs") == "1"

        await many_connections_at_once()
        assert watch.restarts == 1
    finally:
        await redis.aclose()


# 4. Redis refusals: a line and an exit code -----------------------------------


def _cluster_refusing_the_key(start: Callable[..., RedisProcess]) -> RedisProcess:
    """A cluster node that knows another node holds every slot: MOVED."""
    cluster = ["cluster-enabled yes", "cluster-config-file nodes.conf", "appendonly no"]
    holder = start(*cluster, name="holder")
    node = start(*cluster, name="node")
    holder_admin, node_admin = holder.admin(), node.admin()
    holder_admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    node_admin.execute_command("CLUSTER", "MEET", "127.0.0.1", holder.port)
    deadline = time.monotonic() + 20
    # A master turns writable some seconds after it started, once it knows
    # who holds the slots.
    while node_admin.cluster("INFO")["cluster_state"] != "ok":
        assert time.monotonic() < deadline, "the cluster did not meet"
        time.sleep(0.1)
    holder_admin.close()
    node_admin.close()
    return node


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("no-permission", "NoPermissionError"),
        ("out-of-memory", "OutOfMemoryError"),
        ("read-only", "ReadOnlyError"),
        ("cluster-down", "ClusterDownError"),
        ("moved", "MovedError"),
    ],
)
def test_a_redis_refusal_exits_5_with_one_line(
    start_redis: Callable[..., RedisProcess], kind: str, error: str
) -> None:
    url_of: Callable[[RedisProcess], str] = lambda server: server.url(f":{ADMIN_PASSWORD}")  # noqa: E731
    if kind == "no-permission":
        server = start_redis()
        admin = server.admin()
        create_worker_user(admin, "another-prefix")
        admin.close()
        url_of = worker_url
    elif kind == "out-of-memory":
        server = start_redis("maxmemory 1", "maxmemory-policy noeviction")
    elif kind == "read-only":
        server = start_redis(f"replicaof 127.0.0.1 {free_port()}")
    elif kind == "cluster-down":
        server = start_redis("cluster-enabled yes", "cluster-config-file nodes.conf")
    else:
        server = _cluster_refusing_the_key(start_redis)
    result = cli(
        product_env(url_of(server), "ozp"),
        "enqueue",
        "--campaign",
        "spring",
        "--phone",
        PHONES_KEPT[0],
    )
    assert result.exit_code == EXIT_REDIS_REFUSED, result.output
    line = one_error_line(result)
    assert error in line or kind == "no-permission"
    if kind == "no-permission":
        assert "lacks a permission" in line and "ACL" in line
    assert ADMIN_PASSWORD not in result.output and WORKER_PASSWORD not in result.output


def test_the_help_names_exit_code_5() -> None:
    assert "5 Redis refused a command" in EXIT_CODES_HELP


# 5. The embedded Redis ----------------------------------------------------------


def test_the_embedded_redis_wants_a_password_and_keeps_its_files_private(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    earlier = state / "appendonly.aof"  # as an earlier version left it
    earlier.write_text("")
    earlier.chmod(0o644)
    loose = os.umask(0)  # the worst a caller could have
    try:
        server = EmbeddedRedis(state, persist=True).start()
    finally:
        os.umask(loose)
    try:
        assert server.password in server.url
        with pytest.raises(AuthenticationError):
            SyncRedis(port=server.port).ping()
        with SyncRedis.from_url(server.url) as client:
            client.set("ozp:{default}:token", "bearer-token")
            client.execute_command("BGREWRITEAOF")
        assert server.pid is not None
        assert server.password.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert server.password not in redacted_url(server.url)
        asyncio.run(connect_and_close(server.url))
    finally:
        server.stop()

    with pytest.raises(RedisUnavailable) as unreachable:
        asyncio.run(connect_and_close(server.url))
    assert server.password not in str(unreachable.value)
    assert state.stat().st_mode & 0o777 == 0o700
    files = list(state.rglob("*"))
    # The earlier file may have been taken into appendonlydir as its base and
    # removed by the rewrite, or not yet: either way, what is left is private.
    assert {p.name for p in files} >= {"redis.log", "appendonlydir"}
    assert any(p.parent.name == "appendonlydir" and ".aof" in p.name for p in files)
    for path in files:
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)


def test_the_embedded_password_is_redacted_from_log_lines(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "unstarted", persist=False)
    stream = tmp_path / "log"
    with stream.open("w") as out:
        configure_logging(level="info", json=True, stream=out)
        get_logger("test").warning("careless", url=server.url)
    assert "careless" in stream.read_text()
    assert server.password not in stream.read_text()


# 6. TLS with AUTH and an ACL user -------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate it signed for 127.0.0.1, and a CA that signed nothing."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the test certificates")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "other-ca"):
        openssl(directory, "req", "-x509", *curve, "-keyout", f"{name}.key", "-out",
                f"{name}.pem", "-days", "2", "-subj", f"/CN=ozp test {name}")  # fmt: skip
    openssl(directory, "req", *curve, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl(directory, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "server.ext")  # fmt: skip
    return Certificates(
        directory / "ca.pem", directory / "other-ca.pem", directory / "server.pem",
        directory / "server.key",
    )  # fmt: skip


def test_cli_and_producer_work_over_tls_with_an_acl_user(
    start_redis: Callable[..., RedisProcess], certificates: Certificates
) -> None:
    prefix = "ozptls"
    server = start_redis(
        f"tls-cert-file {certificates.cert}",
        f"tls-key-file {certificates.key}",
        f"tls-ca-cert-file {certificates.ca}",
        "tls-auth-clients no",
        tls=True,
    )
    admin = server.admin(ssl_ca_certs=str(certificates.ca))
    create_worker_user(admin, prefix)
    url = worker_url(server, f"ssl_ca_certs={certificates.ca}")
    assert url.startswith("rediss://")
    env = product_env(url, prefix)

    queued = cli(env, "enqueue", "--campaign", "spring", "--phone", PHONES_KEPT[0])
    assert queued.exit_code == EXIT_OK, queued.output

    async def produce() -> bool:
        async with Producer.from_url(url, key_prefix=prefix) as producer:
            receipt = await producer.enqueue("spring", PHONES_KEPT[1])
            return receipt.duplicate

    assert asyncio.run(produce()) is False
    status = cli(env, "status", "--json")
    assert status.exit_code == EXIT_OK, status.output
    assert json.loads(status.stdout)["accounts"]["default"]["queued"]["bulk"] == 2
    assert only_the_info_probe(admin)

    untrusted = cli(
        product_env(worker_url(server, f"ssl_ca_certs={certificates.other_ca}"), prefix),
        "status",
    )
    assert untrusted.exit_code == EXIT_NO_REDIS
    assert "certificate verify failed" in one_error_line(untrusted)
    assert WORKER_PASSWORD not in untrusted.output
    admin.close()


# Replies that are not UTF-8 -----------------------------------------------------


async def test_bytes_that_are_not_utf8_read_as_text_and_write_back_unchanged(
    redis_url: str, key_prefix: str
) -> None:
    source, copy = f"{key_prefix}:{{a}}:raw", f"{key_prefix}:{{a}}:copy"
    with SyncRedis.from_url(redis_url) as raw:
        raw.xadd(source, {b"name": b"\xff\xfe"})
        redis = redis_client(redis_url)
        try:
            [(_, fields)] = await redis.xrange(source)
            assert isinstance(fields["name"], str)
            await redis.xadd(copy, fields)
        finally:
            await redis.aclose()
        [(_, written)] = raw.xrange(copy)
    assert written == {b"name": b"\xff\xfe"}


async def test_a_password_revoked_under_a_running_pool_stops_it_instead_of_waiting(
    start_redis: Callable[..., RedisProcess], simulator_factory: Any
) -> None:
    """Waiting out a Redis outage is right; waiting out refused credentials
    is a pool that hangs forever while the operator sees nothing."""
    sim = await simulator_factory(time_scale=TIME_SCALE)
    server = start_redis()
    admin = server.admin()
    prefix = "revoked"
    create_worker_user(admin, prefix)
    url = worker_url(server)
    settings = make_settings(url, prefix, base_url=sim.url)
    redis = redis_client(url)
    try:
        producer = Producer(redis, key_prefix=prefix)
        await producer.enqueue_many([("spring_sale", f"98450{i:05d}") for i in range(300)])
        stopping = asyncio.Event()
        pool = asyncio.create_task(run_pool(settings, redis, stopping, until_empty=True))
        deadline = time.monotonic() + 30
        while int(admin.xlen(AccountKeys(prefix, "default").results)) < 3:
            assert time.monotonic() < deadline and not pool.done()
            await asyncio.sleep(0.05)
        admin.execute_command("ACL", "SETUSER", WORKER_USER, "resetpass", ">another-password-1")
        admin.execute_command("CLIENT", "KILL", "USER", WORKER_USER)
        with pytest.raises(AuthenticationError):
            await asyncio.wait_for(pool, 60)
        assert not stopping.is_set()
    finally:
        await redis.aclose()


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            url, timeout=5
        ) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)
    except OSError:
        return None


def test_run_started_before_its_redis_waits_for_it_alive_but_not_ready(
    tmp_path: Path,
) -> None:
    """A pod started during a Redis outage must not crash-loop: it serves
    /healthz at once, /readyz only once Redis answers, and then works."""
    redis_port, http_port = free_port(), free_port()
    server = RedisProcess(tmp_path / "late", [f"requirepass {ADMIN_PASSWORD}"], port=redis_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))}
    env.update(
        REDIS_URL=server.url(f"default:{ADMIN_PASSWORD}"),
        OZP_KEY_PREFIX="late",
        OZONETEL_API_KEY="demo-key",
        OZONETEL_USERNAME="demo",
        OZONETEL_AUTH_MODE="apikey",
        OZONETEL_BASE_URL="http://127.0.0.1:9",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker", "--log-level", "warning", "run", "--http",
         f"127.0.0.1:{http_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 30
        while _get_status(f"{base}/healthz") != 200:
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() < deadline, "never alive"
            time.sleep(0.1)
        assert _get_status(f"{base}/readyz") == 503
        assert worker.poll() is None
        server.start()
        deadline = time.monotonic() + 30
        while _get_status(f"{base}/readyz") != 200:
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        # And it went on to start its pool: the consumer group exists.
        admin = server.admin()
        deadline = time.monotonic() + 30
        while not admin.exists(AccountKeys("late", "default").bulk):
            assert time.monotonic() < deadline, "the pool never started"
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        _, log = worker.communicate()
        assert ADMIN_PASSWORD not in log
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        server.stop()


def test_run_does_not_wait_for_credentials_that_are_refused(
    start_redis: Callable[..., RedisProcess],
) -> None:
    server = start_redis()
    env = product_env(
        server.url("default:not-the-password"),
        "tq",
        OZONETEL_API_KEY="demo-key",
        OZONETEL_USERNAME="demo",
        OZONETEL_AUTH_MODE="apikey",
        OZONETEL_BASE_URL="http://127.0.0.1:9",
    )
    result = cli(env, "run")
    assert result.exit_code == EXIT_NO_REDIS
    assert "refused the credentials" in one_error_line(result)
    assert "not-the-password" not in result.output
