"""This process's own metrics: what it sent, waited for, refunded and finished.

Counted in memory and served by ``run --http`` at ``/metrics``; every series
is this process's share, so ``sum`` across replicas gives the fleet's total
and a restart is an ordinary counter reset, never a counter going down.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from worker.metrics.catalog import (
    ANSWER_5XX,
    ANSWER_429,
    ANSWER_UNCLASSIFIED,
    ANSWERS,
    GENERATION_RESULTS,
    OUTCOME_REASONS,
    PERMIT_RESULTS,
    PERMIT_WAIT_SECONDS_BUCKETS,
    REQUEST_SECONDS_BUCKETS,
    family,
)
from worker.store.restarts import Reconnects
from worker.vendor.outcomes import Answer, Classification, answer_row

# The process's own registry, not the library's global one: nothing that
# imports prometheus_client elsewhere can add series to our exposition.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)


def _counter(name: str) -> Counter:
    spec = family(name)
    return Counter(spec.name, spec.help, spec.labels, registry=REGISTRY)


def _histogram(name: str, buckets: tuple[float, ...]) -> Histogram:
    spec = family(name)
    return Histogram(spec.name, spec.help, spec.labels, registry=REGISTRY, buckets=buckets)


REQUESTS = _counter("ozp_requests_total")
REQUEST_SECONDS = _histogram("ozp_request_duration_seconds", REQUEST_SECONDS_BUCKETS)
PERMIT_WAIT_SECONDS = _histogram("ozp_permit_wait_seconds", PERMIT_WAIT_SECONDS_BUCKETS)
PERMITS = _counter("ozp_permits_total")
TOKEN_GENERATIONS = _counter("ozp_token_generations_total")
RECLAIMED = _counter("ozp_reclaimed_jobs_total")
REDIS_RECONNECTS = _counter("ozp_redis_reconnects_total")
OUTCOMES = _counter("ozp_outcomes_total")


def prepare_account(account: str) -> None:
    """Create every series of an account at zero, so ``rate`` and ``increase``
    see the first event, and dashboards show zeros rather than gaps."""
    for answer in ANSWERS:
        REQUESTS.labels(account, answer)
    REQUEST_SECONDS.labels(account)
    PERMIT_WAIT_SECONDS.labels(account)
    for result in PERMIT_RESULTS:
        PERMITS.labels(account, result)
    for result in GENERATION_RESULTS:
        TOKEN_GENERATIONS.labels(account, result)
    RECLAIMED.labels(account)
    for outcome, reason in OUTCOME_REASONS:
        OUTCOMES.labels(account, outcome, reason)


def answer_class(answer: Answer, verdict: Classification) -> str:
    """The ``answer`` label of a delete's answer: its table row's outcome, or
    what the answer was instead of a row."""
    if answer_row(answer) is not None:
        return verdict.outcome.value
    if answer.http_status == 429:
        return ANSWER_429
    if answer.http_status >= 500:
        return ANSWER_5XX
    return ANSWER_UNCLASSIFIED


def exposition() -> bytes:
    return generate_latest(REGISTRY)


Reconnects.listeners.append(REDIS_RECONNECTS.inc)
