"""What ``make chaos-ha`` measures while it breaks things: a probe thread and the pure arithmetic.

``Probe`` samples the running pipeline every ``PROBE_INTERVAL_S``, each look bounded by a short
timeout, and never raises (a failed look is a sample that says "no answer"):

- ``processed``: the processors' committed offsets on ``ledger.commands``, summed (Kafka);
- ``projected``: the projection's stored offsets on ``ledger.events``, summed (PostgreSQL, through
  the DSN that names both servers, so it follows a promotion);
- ``head_age_s``: now minus the newest ``last_effective_at`` of any tenant in PostgreSQL. A
  command's effective time is the broker's append time (decision 0026), so under a steady feed
  this is the end-to-end latency of the newest projected command; its p99 over a fault window is
  the figure ``docs/availability.md`` reports;
- ``api_ok``: one balance read through the HTTP API with a tenant's key answered (200 or 404),
  not 5xx, refused or timed out.

``window_figures`` turns the samples of one fault's window into its figures: the longest time with
no committed progress (end to end: the projected offsets did not move), the longest stretch of
failing API reads, and the p99 head age.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from projections.store import LIVE_SCHEMA
from streamledger.settings import Settings

PROBE_INTERVAL_S: Final = 0.25
LOOK_TIMEOUT_S: Final = 1.0
CONNECT_TIMEOUT_S: Final = 1  # libpq's connect_timeout is whole seconds, per host
SAMPLES_MAX: Final = 200_000  # ~14 h at 4 a second: the probe never grows without bound
SELECT_PROGRESS: Final = (
    f"SELECT (SELECT coalesce(sum(next_offset), 0) FROM {LIVE_SCHEMA}.projection_offsets),"
    f" (SELECT extract(epoch FROM max(last_effective_at)) FROM {LIVE_SCHEMA}.tenant_heads)"
)


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float  # time.monotonic()
    processed: int | None  # None: Kafka did not answer
    projected: int | None  # None: PostgreSQL did not answer
    head_age_s: float | None
    api_ok: bool


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """One fault's window: the longest stalls and the p99 head age, in seconds."""

    seconds: float
    processing_stall_s: float  # processors committed nothing on ledger.commands
    committed_stall_s: float  # end to end: the projection committed nothing to PostgreSQL
    api_failing_s: float  # longest stretch of failing API reads
    head_age_p99_s: float | None

    def line(self) -> str:
        p99 = f"{self.head_age_p99_s:.1f} s" if self.head_age_p99_s is not None else "n/a"
        return (
            f"window {self.seconds:.0f} s: no committed progress {self.committed_stall_s:.1f} s"
            f" (processors {self.processing_stall_s:.1f} s), API reads failing"
            f" {self.api_failing_s:.1f} s, end-to-end p99 {p99}"
        )


def longest_stall(points: list[tuple[float, int | None]], start_s: float, end_s: float) -> float:
    """The longest time in a window [start_s, end_s] between two increases of the value (None =
    no answer, which is no increase). An interval counts whole from the last increase before
    ``start_s``: the fault is what kept the value still."""
    last_rise: float | None = None
    value: int | None = None
    best = 0.0
    for at_s, current in points:
        if at_s > end_s:
            break
        if current is None or (value is not None and current <= value):
            continue
        if at_s >= start_s:
            best = max(best, at_s - (last_rise if last_rise is not None else start_s))
        value, last_rise = current, at_s
    return max(best, end_s - (last_rise if last_rise is not None else start_s))


def longest_failing(samples: list[Sample], start_s: float, end_s: float) -> float:
    best = 0.0
    failing_since: float | None = None
    for sample in samples:
        if not start_s <= sample.at_s <= end_s:
            continue
        if sample.api_ok:
            if failing_since is not None:
                best = max(best, sample.at_s - failing_since)
            failing_since = None
        elif failing_since is None:
            failing_since = sample.at_s
    if failing_since is not None:
        best = max(best, end_s - failing_since)
    return best


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def window_figures(samples: list[Sample], start_s: float, end_s: float) -> WindowFigures:
    inside = [sample for sample in samples if start_s <= sample.at_s <= end_s]
    ages = [sample.head_age_s for sample in inside if sample.head_age_s is not None]
    return WindowFigures(
        seconds=end_s - start_s,
        processing_stall_s=longest_stall(
            [(sample.at_s, sample.processed) for sample in samples], start_s, end_s
        ),
        committed_stall_s=longest_stall(
            [(sample.at_s, sample.projected) for sample in samples], start_s, end_s
        ),
        api_failing_s=longest_failing(samples, start_s, end_s),
        head_age_p99_s=percentile(ages, 0.99),
    )


@dataclass(slots=True)
class Probe:
    """Samples the pipeline in a thread until ``stop``; see the module docstring."""

    settings: Settings  # the run's topics and database
    group: str  # the processors' consumer group
    api_url: str  # a balance read, e.g. http://127.0.0.1:36080/v1/accounts/A/balance
    api_token: str
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _connection: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ha-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(LOOK_TIMEOUT_S * 10)

    def _run(self) -> None:
        consumer = Consumer(
            {
                **client_config(self.settings, ADMIN_PRINCIPAL),
                "group.id": self.group,
                "enable.auto.commit": False,
                "socket.timeout.ms": int(LOOK_TIMEOUT_S * 1000),
            },
            logger=KAFKA_CLIENT_LOGGER,
        )
        topic = self.settings.topic("ledger.commands")
        partitions = [TopicPartition(topic, n) for n in range(self.settings.partitions)]
        try:
            while not self._stop.wait(PROBE_INTERVAL_S) and len(self.samples) < SAMPLES_MAX:
                self.samples.append(self._look(consumer, partitions))
        finally:
            consumer.close()
            if self._connection is not None:
                self._connection.close()

    def _look(self, consumer: Consumer, partitions: list[TopicPartition]) -> Sample:
        at_s = time.monotonic()
        processed: int | None
        try:
            committed = consumer.committed(partitions, timeout=LOOK_TIMEOUT_S)
            processed = sum(max(tp.offset, 0) for tp in committed)
        except KafkaException:
            processed = None
        projected, head_age_s = self._projection()
        return Sample(at_s, processed, projected, head_age_s, self._api_ok())

    def _projection(self) -> tuple[int | None, float | None]:
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    self.settings.database_dsn,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    options=f"-c statement_timeout={int(LOOK_TIMEOUT_S * 1000)}",
                )
            row = self._connection.execute(SELECT_PROGRESS).fetchone()
        except psycopg.Error:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            return None, None
        assert row is not None
        head = float(row[1]) if row[1] is not None else None
        return int(row[0]), (time.time() - head) if head is not None else None

    def _api_ok(self) -> bool:
        request = urllib.request.Request(  # always http://127.0.0.1
            self.api_url, headers={"Authorization": f"Bearer {self.api_token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=LOOK_TIMEOUT_S) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 404  # served: the account is not projected yet
        except (OSError, urllib.error.URLError):
            return False
