"""What the KEDA ScaledObject reads is each lane's real backlog, under real workers.

KEDA's redis-streams scaler picks its Redis command from the trigger's
metadata (``pkg/scalers/redis_streams_scaler.go``): no ``consumerGroup``
reads XLEN; a ``consumerGroup`` reads XPENDING's count, or, with a non-zero
``lagCount``, the group's ``lag`` from XINFO GROUPS (NULL read as -1, a
stream that does not exist as 0, a group that does not exist as XLEN).
:class:`ScalerRead` does the same from the manifest itself, with the stream
names it holds, so a wrong mode or a wrong name fails here.

The product deletes a job's entry (XACK then XDEL) in the step that records
its outcome, so a lane's XLEN must equal, at every instant, the jobs waiting
in it (after the group's last-delivered id) plus the jobs held from it (the
group's pending entries), and the jobs of that lane with no record yet. The
group's lag cannot serve: it reads NULL while a lane drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from tests.conftest import make_settings
from tests.fleet import FLEET_LIMIT, FLEET_TIME_SCALE, Fleet, SimProcess, worker_env
from worker.config.settings import DEFAULT_ACCOUNT, DEFAULT_KEY_PREFIX
from worker.queue.jobs import from_fields, make_job
from worker.queue.lanes import Delivery, Queue
from worker.results.records import Record, Recorder
from worker.store.keys import CONSUMER_GROUP, LANES, AccountKeys, Lane

K8S = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
ACCOUNT = "default"
CAMPAIGN = "c"

Mode = Literal["xlen", "xpending", "lag"]


@dataclass(frozen=True)
class ScalerRead:
    """One redis-streams trigger: the Redis command KEDA runs for it, and the value."""

    stream: str
    mode: Mode
    group: str

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], prefix: str) -> ScalerRead:
        """KEDA's choice of mode; the manifest's key prefix replaced by the test's."""
        group = metadata.get("consumerGroup", "")
        mode: Mode = "xlen"
        if group:
            mode = "lag" if int(metadata.get("lagCount", "0")) != 0 else "xpending"
        manifest_prefix = _config().get("OZP_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        stream = metadata["stream"]
        if stream.startswith(f"{manifest_prefix}:"):
            stream = f"{prefix}:{stream.removeprefix(f'{manifest_prefix}:')}"
        return cls(stream, mode, group)

    def queue(self, pipe: Pipeline) -> int:
        """Queue the commands KEDA would send; how many replies they make."""
        if self.mode == "xpending":
            pipe.xpending(self.stream, self.group)
            return 1
        if self.mode == "lag":
            pipe.xinfo_groups(self.stream)
            pipe.xlen(self.stream)
            return 2
        pipe.xlen(self.stream)
        return 1

    def value(self, replies: Sequence[Any]) -> int:
        if self.mode == "lag" and isinstance(replies[0], ResponseError):
            return 0  # KEDA's reading of "no such key"
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        assert not failed, f"{self}: KEDA's read fails, the HPA gets no metric: {failed}"
        if self.mode == "xpending":
            return int(replies[0]["pending"])
        if self.mode == "lag":
            groups = replies[0]
            for group in groups:
                if group["name"] == self.group:
                    # KEDA's Redis client reads a NULL lag as -1.
                    return -1 if group["lag"] is None else int(group["lag"])
            return int(replies[1])
        return int(replies[0])

    async def read(self, redis: Redis) -> int:
        async with redis.pipeline(transaction=False) as pipe:
            self.queue(pipe)
            return self.value(await pipe.execute(raise_on_error=False))


def _config() -> dict[str, str]:
    (configmap,) = yaml.safe_load_all((K8S / "configmap.yaml").read_text())
    return dict(configmap["data"])


def _scaled_object() -> dict[str, Any]:
    (scaled,) = yaml.safe_load_all((K8S / "keda-scaledobject.yaml").read_text())
    assert scaled["kind"] == "ScaledObject"
    return dict(scaled)


def manifest_reads(prefix: str) -> dict[Lane, ScalerRead]:
    """The ScaledObject's triggers, by the lane their stream names; one per lane."""
    assert _config().get("OZP_ACCOUNT", DEFAULT_ACCOUNT) == ACCOUNT
    reads: dict[Lane, ScalerRead] = {}
    for trigger in _scaled_object()["spec"]["triggers"]:
        assert trigger["type"] == "redis-streams", trigger
        read = ScalerRead.from_metadata(trigger["metadata"], prefix)
        lane = read.stream.rpartition(":")[2]
        assert lane in LANES and lane not in reads, f"{read.stream}: not one trigger per lane"
        reads[lane] = read
    assert sorted(reads) == sorted(LANES), f"lanes without a trigger: {set(LANES) - set(reads)}"
    return reads


def _entry_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


async def hand_out(redis: Redis, keys: AccountKeys, consumer: str, count: int) -> list[Delivery]:
    """Hand bulk jobs to ``consumer`` as a worker's fetch does (XREADGROUP ``>``)."""
    reply: Any = await redis.xreadgroup(CONSUMER_GROUP, consumer, {keys.bulk: ">"}, count=count)
    ((_, entries),) = reply
    return [Delivery("bulk", i, fields, from_fields(fields, i)) for i, fields in entries]


@dataclass(frozen=True)
class LaneSample:
    scaler: int  # what KEDA reads for the lane's trigger
    waiting: int  # entries after the group's last-delivered id
    held: int  # the group's pending entries: delivered, not yet recorded
    lag: int | None  # XINFO GROUPS lag, None when Redis reports NULL
    job_ids: frozenset[str] = field(repr=False)  # the jobs the lane's entries name


@dataclass(frozen=True)
class Sample:
    lanes: dict[Lane, LaneSample]
    finished: frozenset[str]  # job ids with a terminal record
    scheduled: frozenset[str]  # job ids waiting in the delayed set for their retry


async def sample(redis: Redis, keys: AccountKeys, reads: Mapping[Lane, ScalerRead]) -> Sample:
    """The scaler's reads and the true state, in one MULTI: one instant."""
    async with redis.pipeline(transaction=True) as pipe:
        counts = {lane: reads[lane].queue(pipe) for lane in LANES}
        for lane in LANES:
            pipe.xinfo_groups(keys.lane(lane))
            pipe.xpending(keys.lane(lane), CONSUMER_GROUP)
            pipe.xrange(keys.lane(lane))
        pipe.xrange(keys.results)
        pipe.zrange(keys.delayed, 0, -1)
        replies = list(await pipe.execute(raise_on_error=False))
    scaler: dict[Lane, int] = {}
    for lane in LANES:
        scaler[lane] = reads[lane].value(replies[: counts[lane]])
        del replies[: counts[lane]]
    lanes: dict[Lane, LaneSample] = {}
    for lane in LANES:
        groups, pending, entries = replies[:3]
        del replies[:3]
        (group,) = [g for g in groups if g["name"] == CONSUMER_GROUP]
        last = _entry_id(group["last-delivered-id"])
        lanes[lane] = LaneSample(
            scaler=scaler[lane],
            waiting=sum(1 for entry_id, _ in entries if _entry_id(entry_id) > last),
            held=int(pending["pending"]),
            lag=group["lag"],
            job_ids=frozenset(fields["id"] for _, fields in entries),
        )
    results, delayed = replies
    return Sample(
        lanes=lanes,
        finished=frozenset(fields["job_id"] for _, fields in results),
        scheduled=frozenset(json.loads(member)["job"] for member in delayed),
    )


async def test_the_manifest_scales_on_xlen_and_uses_only_settings_that_act_above_two() -> None:
    scaled = _scaled_object()["spec"]
    reads = manifest_reads(DEFAULT_KEY_PREFIX)
    assert {read.mode for read in reads.values()} == {"xlen"}
    minimum, maximum = scaled["minReplicaCount"], scaled["maxReplicaCount"]
    assert 2 <= minimum < maximum
    # Scale-to-zero settings act only with a floor of zero.
    assert "cooldownPeriod" not in scaled and "idleReplicaCount" not in scaled
    for trigger in scaled["triggers"]:
        assert not any(name.startswith("activation") for name in trigger["metadata"])
        assert trigger.get("metricType", "AverageValue") == "AverageValue"
        assert int(trigger["metadata"]["streamLength"]) > 0
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0
    for direction in ("scaleUp", "scaleDown"):
        for policy in behavior[direction]["policies"]:
            assert policy["type"] in ("Pods", "Percent") and policy["value"] > 0
            assert 0 < policy["periodSeconds"] <= 1800


async def test_lag_reads_null_while_jobs_wait_and_xlen_counts_them_exactly(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    """The state built step by step, the job recorded by the product's own script."""
    keys = AccountKeys(key_prefix, ACCOUNT)
    queue = Queue(redis, keys)
    await queue.ensure_groups()
    reads = manifest_reads(key_prefix)
    bulk = reads["bulk"]
    as_lag = ScalerRead(keys.bulk, "lag", CONSUMER_GROUP)
    as_pending = ScalerRead(keys.bulk, "xpending", CONSUMER_GROUP)
    await queue.enqueue_many(make_job(CAMPAIGN, f"98450{i:05d}") for i in range(3))
    deliveries = await hand_out(redis, keys, "w1", 3)
    assert len(deliveries) == 3
    recorder = Recorder(redis, keys, make_settings(redis_url, key_prefix))
    assert await recorder.record(deliveries[-1], Record("deleted", "Deleted Successfully", 1))

    # The newest delivered job is done, two are in flight, none waits.
    (group,) = await redis.xinfo_groups(keys.bulk)
    assert (group["pending"], group["lag"]) == (2, 0)
    assert await bulk.read(redis) == 2
    assert await as_lag.read(redis) == 0  # lag mode: nothing to do, two in flight

    # One more job waits behind them: Redis can no longer count the lag.
    await queue.enqueue(make_job(CAMPAIGN, "9845100000"))
    (group,) = await redis.xinfo_groups(keys.bulk)
    assert (group["pending"], group["lag"]) == (2, None)
    assert await as_lag.read(redis) == -1  # what KEDA feeds the HPA in lag mode
    assert await as_pending.read(redis) == 2  # the waiting job is not counted
    counts = await queue.counts()
    assert await bulk.read(redis) == 3 == counts.bulk + counts.in_flight
    for lane in ("urgent", "retry"):
        assert await reads[lane].read(redis) == 0


@pytest.mark.slow
async def test_the_scalers_reading_is_each_lanes_outstanding_jobs_under_real_workers(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    urgent_phones = [f"98460{i:05d}" for i in range(30)]
    bulk_phones = [f"98470{i:05d}" for i in range(70)]
    campaigns = tmp_path / "campaigns.json"
    campaigns.write_text(json.dumps({CAMPAIGN: [*urgent_phones, *bulk_phones]}))
    # Requests take 0.1 to 0.9 s: with two processes of four tasks, several
    # are in flight at every moment of the drain.
    sim = await SimProcess.start(
        campaigns,
        "--time-scale", str(FLEET_TIME_SCALE),
        "--rate-limit", str(FLEET_LIMIT),
        "--latency", "uniform:100,900",
        "--seed", "7",
    )  # fmt: skip
    keys = AccountKeys(key_prefix, ACCOUNT)
    queue = Queue(redis, keys)
    await queue.ensure_groups()
    reads = manifest_reads(key_prefix)
    urgent = await queue.enqueue_many((make_job(CAMPAIGN, p) for p in urgent_phones), "urgent")
    bulk = await queue.enqueue_many(make_job(CAMPAIGN, p) for p in bulk_phones)
    lane_jobs: dict[Lane, frozenset[str]] = {
        "urgent": frozenset(urgent.queued),
        "bulk": frozenset(bulk.queued),
    }
    every_job = lane_jobs["urgent"] | lane_jobs["bulk"]
    assert len(every_job) == 100
    # A slow worker of the same group (this test) holds the oldest bulk job
    # until every other bulk job has been handed out: the request that hangs
    # up to its timeout, or the process that died, of any long drain. Not
    # taken over meanwhile: the visibility timeout outlasts the run.
    slow: Delivery | None
    (slow,) = await hand_out(redis, keys, "slow-worker", 1)
    recorder = Recorder(redis, keys, make_settings(redis_url, key_prefix))
    env = worker_env(redis_url, key_prefix, sim.url, OZP_VISIBILITY_TIMEOUT_S="60")
    fleet = Fleet(env, tmp_path)
    samples: list[Sample] = []
    try:
        samples.append(await sample(redis, keys, reads))
        await fleet.start(2)
        # Past the deadline the samples taken so far still say what went wrong.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(40):
                while any(process.returncode is None for process in fleet.processes):
                    taken = await sample(redis, keys, reads)
                    samples.append(taken)
                    if slow is not None and taken.lanes["bulk"].waiting == 0:
                        done = Record("deleted", "Deleted Successfully", 1)
                        assert await recorder.record(slow, done)
                        slow = None
                    await asyncio.sleep(0.01)
        samples.append(await sample(redis, keys, reads))
    finally:
        exits = [process.returncode for process in fleet.processes]
        await fleet.stop_all()
        await sim.stop()

    for index, taken in enumerate(samples):
        moved_to_retry = taken.scheduled | taken.lanes["retry"].job_ids
        for lane, seen in taken.lanes.items():
            where = f"sample {index} of {len(samples)}, {lane}: {seen}"
            assert seen.scaler >= 0, where
            # The group's view: waiting plus held.
            assert seen.scaler == seen.waiting + seen.held, where
            if lane in lane_jobs:
                # The jobs' view: queued on the lane, not yet recorded nor
                # moved to the retry lane.
                outstanding = lane_jobs[lane] - taken.finished - moved_to_retry
                assert seen.scaler == len(outstanding), where
        in_lanes = sum(seen.scaler for seen in taken.lanes.values())
        assert in_lanes + len(taken.scheduled) == len(every_job - taken.finished), index

    # It was a drain under load: the workers had jobs in flight with others
    # waiting behind them, on both lanes, and the reading went down to zero.
    for lane in lane_jobs:
        slow_held = 1 if lane == "bulk" else 0
        assert any(s.lanes[lane].held > slow_held and s.lanes[lane].waiting for s in samples)
    assert max(s.lanes["bulk"].scaler for s in samples) == len(lane_jobs["bulk"])
    final = samples[-1]
    assert {lane: seen.scaler for lane, seen in final.lanes.items()} == dict.fromkeys(LANES, 0)
    assert final.finished == every_job
    assert exits == [0, 0], fleet.logs()[-3000:]

    # Meanwhile the group's lag, which lag mode would have read, was NULL
    # (-1 to KEDA) while jobs were outstanding on the lane: whenever the
    # newest job handed out was done before the next one was (each time the
    # workers waited for permits), with an older one still held.
    blind = [
        (index, lane, seen)
        for index, taken in enumerate(samples)
        for lane, seen in taken.lanes.items()
        if seen.lag is None and seen.scaler > 0
    ]
    assert blind, "lag never read NULL during the drain"
