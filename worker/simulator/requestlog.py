"""The request log: every arrival at a vendor endpoint, as the simulator saw it.

Tests and demos read it (``GET /_sim/requests``) to judge a client by what the
server received. It never holds an API key or a token.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from worker.simulator.faults import FaultName

Endpoint = Literal["delete", "token"]


class KeyIds:
    """Short, non-secret names for API keys, so the log can tell keys apart.

    A configured key is named after its account (``acct:demo``); any other
    key gets ``unknown-N`` in order of first sight. The key itself is never
    shown, not even hashed: a short key would be easy to guess from a hash.
    """

    def __init__(self, account_of_key: dict[str, str]) -> None:
        self._names = {key: f"acct:{user}" for key, user in account_of_key.items()}
        self._unknown = 0

    def name(self, api_key: str | None) -> str | None:
        if api_key is None:
            return None
        found = self._names.get(api_key)
        if found is None:
            self._unknown += 1
            found = self._names[api_key] = f"unknown-{self._unknown}"
        return found


@dataclass(slots=True)
class RequestRecord:
    """One arrival at a vendor endpoint.

    Created the moment the handler starts (so a hung or dropped request is
    visible at once) and completed when the answer is decided. ``status`` is
    None while undecided and for a dropped connection, where nothing was
    sent; ``message`` is then the vendor's answer that was lost, which tells
    whether the delete happened.
    """

    t: float
    mono: float
    endpoint: Endpoint
    api_key_id: str | None
    status: int | None = None
    message: str | None = None
    campaign: str | None = None
    phone: str | None = None
    fault: FaultName | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "t": self.t,
            "mono": self.mono,
            "endpoint": self.endpoint,
            "api_key_id": self.api_key_id,
            "status": self.status,
            "message": self.message,
            "campaign": self.campaign,
            "phone": self.phone,
            "fault": self.fault,
        }


class RequestLog:
    """The arrivals, newest last, plus exact counters that survive the log's cap."""

    def __init__(self, limit: int) -> None:
        self.records: deque[RequestRecord] = deque(maxlen=limit)
        self.violations = 0  # arrivals answered "Max limit exceeded"
        self.max_in_window = 0  # the most arrivals of one key seen in one window
        self.generations = 0  # tokens issued, through either endpoint

    def arrive(self, record: RequestRecord) -> RequestRecord:
        self.records.append(record)
        return record

    def note_window(self, count: int) -> None:
        self.max_in_window = max(self.max_in_window, count)

    def reset(self) -> None:
        """Forget the log and its counters; the vendor's own state is not touched."""
        self.records.clear()
        self.violations = 0
        self.max_in_window = 0
        self.generations = 0
