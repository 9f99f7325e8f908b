"""The supervisor's status line, from the children's ``/metrics`` endpoints.

Counters restart from zero when a child restarts, so ``CounterTotals`` keeps, per child and
counter, the last value seen and adds only what grew since (a value that went down means a new
process: all of it is new). Rates are the growth between two status lines over the time between
them. Lag is a gauge: the sum over the children that answered. The processors' lag can
instead come from ``lag_source`` (the group's committed offsets against the end of
``ledger.commands``, what ``streamledger run`` uses), which needs no child to answer.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from pipeline.supervisor import PROCESSOR_ROLE, PROJECTION_ROLE, Supervisor
from pipeline.topic_reader import committed_offsets, end_offsets, lag
from processors.processor_settings import GROUP_ID_SUFFIX
from streamledger.errors import StreamLedgerError
from streamledger.settings import Settings

SCRAPE_TIMEOUT_S = 1.0
LAG_TIMEOUT_S = 2.0  # the status line must not stall on a broker that is down
COMMANDS_CONSUMED = "streamledger_processor_commands_consumed_total"
EVENTS_PRODUCED = "streamledger_processor_events_produced_total"
DLQ_RECORDS = "streamledger_processor_dlq_records_total"
PROCESSOR_LAG = "streamledger_processor_consumer_lag_records"
EVENTS_PROJECTED = "streamledger_projection_events_applied_total"
PROJECTION_LAG = "streamledger_projection_consumer_lag_records"
COUNTERS = (COMMANDS_CONSUMED, EVENTS_PRODUCED, DLQ_RECORDS, EVENTS_PROJECTED)
GAUGES = (PROCESSOR_LAG, PROJECTION_LAG)


def scrape(url: str, *, timeout_s: float = SCRAPE_TIMEOUT_S) -> dict[str, float] | None:
    """Sum of each sample name's values at ``url``; None if the child did not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return sum_samples(text)


def sum_samples(text: str) -> dict[str, float]:
    """Prometheus text → {sample name: sum over all label sets}."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


@dataclass(slots=True)
class CounterTotals:
    """Counters summed over children and over each child's restarts."""

    last: dict[tuple[str, str], float] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)

    def observe(self, child: str, samples: dict[str, float]) -> None:
        for name in COUNTERS:
            if name not in samples:
                continue
            value = samples[name]
            previous = self.last.get((child, name), 0.0)
            grown = value - previous if value >= previous else value
            self.last[(child, name)] = value
            self.totals[name] = self.totals.get(name, 0.0) + grown

    def total(self, name: str) -> float:
        return self.totals.get(name, 0.0)


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    at: float
    commands: float
    events: float
    projected: float
    dlq: float
    processor_lag: float | None  # None: no processor answered
    projection_lag: float | None


class StatusReporter:
    """Scrapes the supervisor's children and formats one status line per interval."""

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        scraper: Callable[[str], dict[str, float] | None] = scrape,
        clock: Callable[[], float] = time.monotonic,
        lag_source: Callable[[], int | None] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.scraper = scraper
        self.lag_source = lag_source
        self.clock = clock
        self.counters = CounterTotals()
        self.previous: StatusSnapshot | None = None

    def snapshot(self) -> StatusSnapshot:
        lags: dict[str, list[float]] = {PROCESSOR_LAG: [], PROJECTION_LAG: []}
        for child in self.supervisor.children:
            url = child.spec.metrics_url
            if url is None or child.spec.role not in (PROCESSOR_ROLE, PROJECTION_ROLE):
                continue
            samples = self.scraper(url) if child.running else None
            if samples is None:
                continue
            self.counters.observe(child.spec.name, samples)
            for name in GAUGES:
                if name in samples:
                    lags[name].append(samples[name])
        processor_lag = sum(lags[PROCESSOR_LAG]) if lags[PROCESSOR_LAG] else None
        if self.lag_source is not None:
            from_offsets = self.lag_source()
            processor_lag = processor_lag if from_offsets is None else float(from_offsets)
        return StatusSnapshot(
            at=self.clock(),
            commands=self.counters.total(COMMANDS_CONSUMED),
            events=self.counters.total(EVENTS_PRODUCED),
            projected=self.counters.total(EVENTS_PROJECTED),
            dlq=self.counters.total(DLQ_RECORDS),
            processor_lag=processor_lag,
            projection_lag=sum(lags[PROJECTION_LAG]) if lags[PROJECTION_LAG] else None,
        )

    def line(self) -> str:
        current = self.snapshot()
        previous, self.previous = self.previous, current
        return format_line(current, previous, self.supervisor)


def rate(current: float, previous: float | None, seconds: float) -> float:
    if previous is None or seconds <= 0:
        return 0.0
    return max(current - previous, 0.0) / seconds


def lag_text(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def format_line(
    current: StatusSnapshot, previous: StatusSnapshot | None, supervisor: Supervisor
) -> str:
    seconds = current.at - previous.at if previous is not None else 0.0

    def per_second(pick: Callable[[StatusSnapshot], float]) -> str:
        earlier = None if previous is None else pick(previous)
        return f"{rate(pick(current), earlier, seconds):,.0f}/s"

    return " ".join(
        [
            time.strftime("%H:%M:%S"),
            f"commands {per_second(lambda s: s.commands)}",
            f"events {per_second(lambda s: s.events)}",
            f"projected {per_second(lambda s: s.projected)}",
            f"| lag commands {lag_text(current.processor_lag)}",
            f"events {lag_text(current.projection_lag)}",
            f"| dlq {current.dlq:,.0f}",
            f"| up {supervisor.running_count}/{len(supervisor.children)}",
            f"restarts {supervisor.restarts}",
        ]
    )


def metrics_urls(supervisor: Supervisor) -> Iterable[tuple[str, str]]:
    for child in supervisor.children:
        if child.spec.metrics_url is not None:
            yield child.spec.name, child.spec.metrics_url


def commands_lag_source(settings: Settings) -> Callable[[], int | None]:
    """Records the processor group has not committed yet on ``ledger.commands`` (None: unknown,
    e.g. while the broker restarts; the status line then shows ``?``)."""
    topic = settings.topic("ledger.commands")
    group = f"{settings.topic_prefix}{GROUP_ID_SUFFIX}"

    def read() -> int | None:
        try:
            return lag(
                committed_offsets(settings, group, topic, timeout_s=LAG_TIMEOUT_S),
                end_offsets(settings, topic, timeout_s=LAG_TIMEOUT_S),
            )
        except StreamLedgerError:
            return None

    return read
