"""Every Redis key name. Nothing else in the package builds a key string.

All keys of one account share the hash tag ``{account}`` so that the Lua
scripts and MULTI blocks that touch several of them work on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Lane = Literal["urgent", "bulk", "retry"]
# Producers queue on urgent or bulk; retries and dead-letter replays run on
# their own lane, so that their share of the allowance can be capped.
# Every lane that holds jobs, in the order fetch looks at them.
LANES: tuple[Lane, ...] = ("urgent", "retry", "bulk")

# The consumer group every worker process joins, on both lanes.
CONSUMER_GROUP = "workers"


def accounts_key(prefix: str) -> str:
    """The set of account names that have ever had work, for `status`."""
    return f"{prefix}:accounts"


@dataclass(frozen=True)
class AccountKeys:
    prefix: str
    account: str

    @property
    def _base(self) -> str:
        return f"{self.prefix}:{{{self.account}}}"

    def lane(self, lane: Lane) -> str:
        return f"{self._base}:q:{lane}"

    @property
    def urgent(self) -> str:
        return self.lane("urgent")

    @property
    def bulk(self) -> str:
        return self.lane("bulk")

    @property
    def retry(self) -> str:
        return self.lane("retry")

    @property
    def retry_grants(self) -> str:
        """Sorted set of permits spent on the retry lane (server µs): its share."""
        return f"{self._base}:limiter:retries"

    @property
    def delayed(self) -> str:
        """Sorted set of jobs waiting for a retry, scored by due time (server ms)."""
        return f"{self._base}:delayed"

    @property
    def pending(self) -> str:
        """Set of digests of (campaign, phone) queued or in flight: the de-duplication."""
        return f"{self._base}:pending"

    @property
    def limiter(self) -> str:
        """Sorted set of granted slots (server µs), members are permit ids."""
        return f"{self._base}:limiter"

    @property
    def cooldown(self) -> str:
        """Server µs before which no permit is granted (after `rate limited`)."""
        return f"{self._base}:limiter:cooldown"

    @property
    def rate_minutes(self) -> str:
        """Hash: minute index (permit slot // 60 s) -> requests sent in it; the last hour."""
        return f"{self._base}:rate:minutes"

    @property
    def token(self) -> str:
        """Hash: the current token, its expiry and its generation number."""
        return f"{self._base}:token"

    @property
    def token_lock(self) -> str:
        return f"{self._base}:token:lock"

    @property
    def token_generations(self) -> str:
        """Sorted set of token generation times (server ms): the budget."""
        return f"{self._base}:token:generations"

    @property
    def results(self) -> str:
        return f"{self._base}:results"

    @property
    def dlq(self) -> str:
        return f"{self._base}:dlq"

    @property
    def dlq_reasons(self) -> str:
        """Hash: dead-letter reason -> letters held with it, kept exact with the stream."""
        return f"{self._base}:dlq:reasons"

    @property
    def workers(self) -> str:
        """Sorted set: worker (consumer name) -> ms, Redis clock, until which it counts alive."""
        return f"{self._base}:workers"

    @property
    def stats(self) -> str:
        """Hash of counters: deleted, already_deleted, dead."""
        return f"{self._base}:stats"

    @property
    def paused(self) -> str:
        """Present while an operator paused dispatch; the value is the reason."""
        return f"{self._base}:paused"

    @property
    def halted(self) -> str:
        """Present while the account is halted by a credential error; value is the reason."""
        return f"{self._base}:halted"

    @property
    def token_wait(self) -> str:
        """Present, with a TTL, while the token budget is spent; value is the reason."""
        return f"{self._base}:token:wait"

    @property
    def actions(self) -> str:
        """List of operators' actions (JSON objects), newest first, capped."""
        return f"{self._base}:actions"

    @property
    def drains(self) -> str:
        """Set of the tags of drains that published their progress, for the console."""
        return f"{self._base}:drains"

    def drain(self, tag: str) -> str:
        """Hash of one ``drain`` of one file: its progress, for resuming."""
        return f"{self._base}:drain:{tag}"

    def job(self, job_id: str) -> str:
        """Hash of one job's state: attempts sent, terminal outcome. Expires."""
        return f"{self._base}:job:{job_id}"
