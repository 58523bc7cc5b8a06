"""Every metric the service exposes: name, type, help and labels, in one place.

Two scopes, kept apart so that no query can count a fact twice:

- ``process``: what this process did (requests, permits, outcomes it
  recorded). Served by every ``run --http``; ``sum`` across replicas is the
  fleet's total, and a replica's restart is an ordinary counter reset.
- ``account``: what Redis holds (backlog, dead letters, token, state). Served
  only by the ``exporter`` command, one instance per Redis, so a ``sum`` over
  every scraped target still counts each job once.

The dashboards, the alert rules and their tests check their queries against
this catalog; a metric that is not here does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from worker.vendor.outcomes import DEAD_REASONS, Outcome

Kind = Literal["counter", "gauge", "histogram"]
Scope = Literal["process", "account"]


@dataclass(frozen=True)
class Family:
    name: str  # as exposed: counters end in _total
    kind: Kind
    scope: Scope
    help: str
    labels: tuple[str, ...]


# The vendor's answer to a delete, as a class: a row of the outcome table
# (the Outcome it maps to), or what came instead of a row.
ANSWER_429 = "429"
ANSWER_5XX = "5xx"
ANSWER_UNCLASSIFIED = "unclassified"  # a body the tables do not hold
ANSWER_TIMEOUT = "timeout"  # no answer within the request timeout
ANSWER_TRANSPORT = "transport_error"  # the connection failed
ANSWER_DROPPED = "dropped"  # not written in time, so never sent (permit refunded)
TABLE_ANSWERS = tuple(o.value for o in Outcome if o is not Outcome.ISSUED)
ANSWERS = (
    *TABLE_ANSWERS,
    ANSWER_429,
    ANSWER_5XX,
    ANSWER_UNCLASSIFIED,
    ANSWER_TIMEOUT,
    ANSWER_TRANSPORT,
    ANSWER_DROPPED,
)

# What became of a permit. Every permit ends as exactly one of these.
PERMIT_USED = "used"  # a request was sent on it
PERMIT_REFUNDED = "refunded"  # given back unused: no job, paused, stopping, not sendable
PERMIT_LATE = "late"  # its slot had passed by more than the tolerance: given back
PERMIT_RESULTS = (PERMIT_USED, PERMIT_REFUNDED, PERMIT_LATE)

# A token generation asked of the vendor by this process.
GENERATION_ISSUED = "issued"
GENERATION_REFUSED = "refused"  # credentials refused: the account halts
GENERATION_FAILED = "failed"  # no token this time (transient answer, transport failure)
GENERATION_RESULTS = (GENERATION_ISSUED, GENERATION_REFUSED, GENERATION_FAILED)

# Terminal outcomes, and the reason label they carry ("" unless dead).
OUTCOMES = ("deleted", "already_deleted", "dead")
OUTCOME_REASONS: tuple[tuple[str, str], ...] = (
    ("deleted", ""),
    ("already_deleted", ""),
    *(("dead", reason) for reason in DEAD_REASONS),
)

# Where an account's jobs are: waiting in a lane, scheduled for a retry, or held.
QUEUE_LANES = ("urgent", "bulk", "retry", "delayed", "in_flight")
# Lanes whose oldest job has an age: the three streams and the jobs held.
AGED_LANES = ("urgent", "bulk", "retry", "in_flight")
# An account is in exactly one of these states; halted wins over paused,
# paused over waiting for a token.
ACCOUNT_STATES = ("running", "paused", "halted", "waiting_token")

REQUEST_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PERMIT_WAIT_SECONDS_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)

FAMILIES: tuple[Family, ...] = (
    # Per process.
    Family("ozp_requests_total", "counter", "process",
           "Delete requests this process sent, by the class of the vendor's answer.",
           ("account", "answer")),
    Family("ozp_request_duration_seconds", "histogram", "process",
           "Time from writing a delete request to its answer (or to giving up).",
           ("account",)),
    Family("ozp_permit_wait_seconds", "histogram", "process",
           "Time from asking the limiter for a permit to the permit's slot.",
           ("account",)),
    Family("ozp_permits_total", "counter", "process",
           "Limiter permits this process took, by what became of them.",
           ("account", "result")),
    Family("ozp_token_generations_total", "counter", "process",
           "Token generations this process asked of the vendor, by result.",
           ("account", "result")),
    Family("ozp_reclaimed_jobs_total", "counter", "process",
           "Jobs this process took over from a worker that went silent.",
           ("account",)),
    Family("ozp_redis_reconnects_total", "counter", "process",
           "Connections to Redis this process re-established after one failed.",
           ()),
    Family("ozp_outcomes_total", "counter", "process",
           "Jobs this process finished, by terminal outcome and dead-letter reason.",
           ("account", "outcome", "reason")),
    # Account-wide, from Redis, served by the exporter.
    Family("ozp_redis_up", "gauge", "account",
           "1 if the exporter read Redis at this scrape, else 0.",
           ()),
    Family("ozp_queue_jobs", "gauge", "account",
           "Jobs without a terminal record, by where they are.",
           ("account", "lane")),
    Family("ozp_oldest_job_age_seconds", "gauge", "account",
           "Age of the oldest job in a lane, since it entered the lane (0 when empty).",
           ("account", "lane")),
    Family("ozp_dead_letters", "gauge", "account",
           "Dead letters held, by reason.",
           ("account", "reason")),
    Family("ozp_eta_seconds", "gauge", "account",
           "Time to send the backlog at the account's allowed rate (0 when idle).",
           ("account",)),
    Family("ozp_allowance_used_ratio", "gauge", "account",
           "Permits granted in the last rate window over the limit (never above 1).",
           ("account",)),
    Family("ozp_rate_limit", "gauge", "account",
           "Requests the vendor allows per rate window.",
           ("account",)),
    Family("ozp_account_state", "gauge", "account",
           "1 for the account's current state, 0 for the others.",
           ("account", "state")),
    Family("ozp_token_expiry_seconds", "gauge", "account",
           "Seconds until the account's token expires (negative once expired).",
           ("account",)),
    Family("ozp_token_budget_used", "gauge", "account",
           "Tokens generated within the budget window.",
           ("account",)),
    Family("ozp_token_budget", "gauge", "account",
           "Tokens the vendor allows per budget window (OZP_TOKEN_BUDGET).",
           ("account",)),
    Family("ozp_workers", "gauge", "account",
           "Worker processes alive for the account (heartbeat within its period).",
           ("account",)),
)  # fmt: skip

BY_NAME = {family.name: family for family in FAMILIES}


def family(name: str) -> Family:
    return BY_NAME[name]
