"""``/readyz``'s active checks: the dependencies as they are NOW, not as the last request saw them.

Readiness used to be the producer's last broker error (cleared only by a delivery, so after a
broker restart the API stayed unready until some POST got through) and a ``SELECT 1`` on a pooled
connection (stale after a PostgreSQL restart). Now each probe asks the dependency itself, bounded
by ``readiness_timeout_ms`` and kept for ``readiness_cache_ms`` so a burst of probes (several
load balancers, Kubernetes) costs one request per interval (decision 0022):

- **broker**: a metadata request for ``ledger.commands`` on an admin client of its own; ready
  when the broker answers and every partition of the topic has a leader (``BrokerMetadata``);
- **database**: ``ApiReader.ping`` — ``SELECT 1`` through the pool; if that fails, a direct
  connection decides whether PostgreSQL is down or only the pool is stale (broken connections
  after a restart, reconnection backing off after an outage), and a stale pool is replaced, so
  the first check after PostgreSQL is back says so.

Each is wrapped in a ``CachedProbe`` (single flight, answer kept ``cache_s``).

``topic_problem`` is the pure part: metadata in, the reason it is not usable (or None) out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import KafkaException

from kafka_adapter.admin import admin_client, kafka_error_text
from kafka_adapter.security import API_PRINCIPAL
from schemas.topics import COMMANDS_TOPIC
from streamledger.settings import Settings

NOT_CHECKED: Final = "not checked yet"
# librdkafka refuses a connection set-up timeout under 1 s; the request itself is bounded by
# the (possibly shorter) readiness timeout.
CLIENT_SOCKET_TIMEOUT_S_MIN: Final = 1.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    problem: str | None  # why not ok, in one line
    checked_at_s: float  # time.monotonic() of the answer


def topic_problem(topic: str, metadata: Any) -> str | None:
    """Why ``topic`` cannot take records now according to ``metadata`` (a ``list_topics``
    answer), or None: missing, in error, without partitions, or a partition without a leader."""
    description = metadata.topics.get(topic)
    if description is None:
        return f"topic {topic} is missing"
    if description.error is not None:
        return f"topic {topic}: {description.error}"
    if not description.partitions:
        return f"topic {topic} has no partitions"
    leaderless = sorted(
        number
        for number, partition in description.partitions.items()
        if partition.leader < 0 or partition.error is not None
    )
    if leaderless:
        return f"topic {topic}: no leader for partitions {leaderless[:8]}"
    return None


class CachedProbe:
    """One check of a dependency (``ask``: None when fine, else why not), asked at most once per
    ``cache_s``; concurrent callers share the request in flight (single flight)."""

    def __init__(self, ask: Callable[[], Awaitable[str | None]], *, cache_s: float) -> None:
        self.ask = ask
        self.cache_s = cache_s
        self._lock = asyncio.Lock()
        self._last = ProbeResult(False, NOT_CHECKED, -math.inf)

    async def check(self) -> ProbeResult:
        async with self._lock:
            if time.monotonic() - self._last.checked_at_s < self.cache_s:
                return self._last
            problem = await self.ask()
            self._last = ProbeResult(problem is None, problem, time.monotonic())
            return self._last


class BrokerMetadata:
    """Can a command be produced now? A metadata request for ``ledger.commands``, bounded."""

    def __init__(self, settings: Settings, *, timeout_s: float) -> None:
        self.topic = settings.topic(COMMANDS_TOPIC)
        self.timeout_s = timeout_s
        self._client = admin_client(
            settings, timeout_s=max(timeout_s, CLIENT_SOCKET_TIMEOUT_S_MIN), principal=API_PRINCIPAL
        )

    async def ask(self) -> str | None:
        return await asyncio.to_thread(self._ask)

    def _ask(self) -> str | None:
        try:
            metadata = self._client.list_topics(self.topic, timeout=self.timeout_s)
        except KafkaException as exc:
            return f"broker unreachable within {self.timeout_s:g} s: {kafka_error_text(exc)}"
        return topic_problem(self.topic, metadata)
