"""A real Prometheus scraping two worker replicas and the exporter.

The README's queries, asked of Prometheus after a drain by two worker
processes, give the true totals: every job finished counted once (not once
per replica), and the backlog as Redis holds it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.fleet import FLEET_LIMIT, FLEET_TIME_SCALE, Fleet, SimProcess, sim_report, worker_env
from tests.fleet import write_campaigns as write_campaigns_file
from worker.accounts.control import pause_account
from worker.queue.lanes import Queue
from worker.queue.producer import Producer
from worker.store.keys import AccountKeys

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"
CAMPAIGN = "c"
DELETABLE = [f"98450{n:05d}" for n in range(30)]
MISSING = [f"70000{n:05d}" for n in range(6)]
LATER = [f"98460{n:05d}" for n in range(7)]

# The queries the README documents, and what each must answer here.
JOBS_FINISHED = "sum(ozp_outcomes_total)"
JOBS_FINISHED_BY_OUTCOME = "sum by (outcome) (ozp_outcomes_total)"
BACKLOG = "sum by (account) (ozp_queue_jobs)"
REQUESTS_BY_ANSWER = "sum by (answer) (ozp_requests_total)"
LIVE_WORKERS = "sum by (account) (ozp_workers)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (Debian package prometheus)")
        pytest.skip("needs prometheus (Debian package prometheus)")
    return binary


CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: workers
    static_configs:
      - targets: [{workers}]
  - job_name: exporter
    static_configs:
      - targets: ["127.0.0.1:{exporter}"]
"""


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimProcess]:
    campaigns = write_campaigns_file(tmp_path / "campaigns.json", {CAMPAIGN: [*DELETABLE, *LATER]})
    process = await SimProcess.start(
        campaigns, "--time-scale", str(FLEET_TIME_SCALE), "--rate-limit", str(FLEET_LIMIT)
    )
    yield process
    await process.stop()


async def query(session: aiohttp.ClientSession, base: str, promql: str) -> dict[str, float]:
    """An instant query's samples, keyed by their labels' values joined by ','."""
    async with session.get(f"{base}/api/v1/query", params={"query": promql}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return {
        ",".join(item["metric"].values()): float(item["value"][1])
        for item in body["data"]["result"]
    }


async def test_summed_over_two_replicas_the_documented_queries_give_the_truth(
    redis: Redis, redis_url: str, key_prefix: str, sim: SimProcess, tmp_path: Path
) -> None:
    binary = prometheus_binary()
    readme = README.read_text()
    for documented in (JOBS_FINISHED, JOBS_FINISHED_BY_OUTCOME, BACKLOG, REQUESTS_BY_ANSWER):
        assert documented in readme, documented

    keys = AccountKeys(key_prefix, "default")
    producer = Producer(redis, key_prefix=key_prefix)
    await producer.enqueue_many([(CAMPAIGN, phone) for phone in [*DELETABLE, *MISSING]])
    ports = [free_port(), free_port()]
    exporter_port, prometheus_port = free_port(), free_port()
    env = worker_env(redis_url, key_prefix, sim.url)
    fleet = Fleet(env, tmp_path)
    exporter_log = (tmp_path / "exporter.log").open("wb")
    exporter = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "exporter", "--http", f"127.0.0.1:{exporter_port}",
        env=env, stdout=exporter_log, stderr=exporter_log,
    )  # fmt: skip
    config = tmp_path / "prometheus.yml"
    targets = ", ".join(f'"127.0.0.1:{port}"' for port in ports)
    config.write_text(CONFIG.format(workers=targets, exporter=exporter_port))
    prometheus_log = (tmp_path / "prometheus.log").open("wb")
    prometheus = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        stdout=prometheus_log,
        stderr=prometheus_log,
    )
    base = f"http://127.0.0.1:{prometheus_port}"
    try:
        for port in ports:
            await fleet.start(1, args=("--http", f"127.0.0.1:{port}"))

        async def drained() -> bool:
            counts = await Queue(redis, keys).counts()
            finished = sum(int(v) for v in (await redis.hgetall(keys.stats)).values())
            return counts.outstanding == 0 and finished == len(DELETABLE) + len(MISSING)

        await until(drained, 90, fleet)
        # A backlog that stays: the account paused, then seven more jobs.
        await pause_account(redis, keys, "the test holds these")
        await producer.enqueue_many([(CAMPAIGN, phone) for phone in LATER])

        async with aiohttp.ClientSession() as session:
            wanted = {
                JOBS_FINISHED: {"": 36.0},
                JOBS_FINISHED_BY_OUTCOME: {"deleted": 30.0, "already_deleted": 0.0, "dead": 6.0},
                BACKLOG: {"default": 7.0},
                LIVE_WORKERS: {"default": 2.0},
                'count(up{job="workers"} == 1)': {"": 2.0},
            }

            async def prometheus_agrees() -> bool:
                try:
                    answers = {q: await query(session, base, q) for q in wanted}
                except aiohttp.ClientError:
                    return False  # not listening yet
                return answers == wanted

            await until(prometheus_agrees, 60, fleet)
            answers = await query(session, base, REQUESTS_BY_ANSWER)
            sent = [r for r in (await sim_report(sim.url))["requests"] if r["endpoint"] == "delete"]
            assert sum(answers.values()) == len(sent) == 36
            assert answers["deleted"] == 30 and answers["not_found"] == 6
            # Each replica's share is its own: together they are the whole.
            shares = await query(session, base, "sum by (instance) (ozp_outcomes_total)")
            assert len(shares) == 2 and sum(shares.values()) == 36
    finally:
        await fleet.stop_all()
        for process in (exporter, prometheus):
            if process.returncode is None:
                process.terminate()
            await process.wait()
        exporter_log.close()
        prometheus_log.close()


async def until(check: object, timeout_s: float, fleet: Fleet) -> None:
    """Poll ``check`` until true; on timeout fail with the workers' logs."""
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{check.__name__} not met in {timeout_s} s\n{fleet.logs()[-3000:]}"
            )
        await asyncio.sleep(0.25)
