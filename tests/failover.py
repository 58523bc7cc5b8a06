"""What a drain through a lossy failover must end with, on Sentinel and on
Cluster alike (docs/guarantees.md, "Failover")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from redis.asyncio import Redis

from tests.conftest import Simulator
from worker.store.keys import AccountKeys

# How long the replica lags behind when its primary dies: the writes of
# that time are what the promoted server lacks.
LAG_S = 0.3


async def assert_the_failover_kept_its_promises(
    redis: Redis, keys: AccountKeys, sim: Simulator, rate_limit: int, phones: Sequence[str]
) -> None:
    """Every job one record, every number deleted, none over the limit."""
    records = [fields for _, fields in await redis.xrange(keys.results)]
    assert Counter(f["phone"] for f in records) == Counter(phones)
    # Deleted at the vendor, all of them: nothing lost.
    assert (await sim.campaigns())["c"] == []
    # A job whose fetch and record were both lost was sent again as new,
    # and the vendor's "No Record Found" for it reads as a dead letter:
    # the documented cost of a lost write, never another reason.
    for fields in records:
        assert fields["outcome"] in ("deleted", "already_deleted", "dead"), fields
        if fields["outcome"] == "dead":
            assert fields.get("reason") == "no_record", fields
    report = await sim.inspect()
    assert report["violations"] == 0
    assert report["max_in_window"] <= rate_limit
