"""The supervisor's status line, from the children's ``/metrics`` endpoints.

Counters restart from zero when a child restarts, so ``CounterTotals`` keeps, per child and
counter, the last value seen and adds only what grew since (a value that went down means a new
process: all of it is new). Rates are the growth between two status lines over the time between
them. Lag is a gauge: the sum over the children that answered. The processors' lag can
instead come from ``lag_source`` (the group's committed offsets against the end of
``ledger.commands``, what ``streamledger run`` uses), which needs no child to answer.

Counts an operator compares with a topic come from the topic, never from counters that restart
with a process: the DLQ figure is the number of committed records in ``ledger.commands.dlq``,
counted by reading it (``DeadLetterCount``; offsets alone would also count aborted records and
transaction markers). The line also shows the supervisor's view: children up (running and not
stalled), restarts, stalls, which child is being restarted after a stall, and which dependency
(Kafka, PostgreSQL) children are waiting for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline.dependencies import KAFKA
from pipeline.metrics_scrape import scrape
from pipeline.supervisor import PROCESSOR_ROLE, PROJECTION_ROLE, Supervisor
from pipeline.topic_reader import Offsets, committed_offsets, end_offsets, lag, records_between
from processors.processor_settings import GROUP_ID_SUFFIX
from schemas.topics import COMMANDS_DLQ_TOPIC, COMMANDS_TOPIC
from streamledger.errors import StreamLedgerError
from streamledger.settings import Settings

LAG_TIMEOUT_S = 2.0  # the status line must not stall on a broker that is down
COMMANDS_CONSUMED = "streamledger_processor_commands_consumed_total"
EVENTS_PRODUCED = "streamledger_processor_events_produced_total"
DLQ_RECORDS = "streamledger_processor_dlq_records_total"
PROCESSOR_LAG = "streamledger_processor_consumer_lag_records"
EVENTS_PROJECTED = "streamledger_projection_events_applied_total"
PROJECTION_LAG = "streamledger_projection_consumer_lag_records"
COUNTERS = (COMMANDS_CONSUMED, EVENTS_PRODUCED, DLQ_RECORDS, EVENTS_PROJECTED)
GAUGES = (PROCESSOR_LAG, PROJECTION_LAG)


@dataclass(frozen=True, slots=True)
class DeadLetterTally:
    """Committed records counted in the DLQ topic; ``complete`` once the count reached the end
    offsets taken at the last read."""

    records: int
    complete: bool


DLQ_READ_TIMEOUT_S = 2.0  # the status line must not stall on a broker that is down
DLQ_RECORDS_PER_READ_MAX = 100_000  # a huge DLQ is counted over several status lines


class DeadLetterCount:
    """The committed records of ``ledger.commands.dlq``, counted by reading the topic.

    Incremental: each ``read`` consumes (``read_committed``) only what was appended since the
    previous one, at most ``records_max`` records, bounded in time by ``timeout_s``. Records
    removed by retention (30 days) before the first read are not counted; the count is of the
    records this status line has seen in the topic."""

    def __init__(
        self,
        settings: Settings,
        *,
        records_max: int = DLQ_RECORDS_PER_READ_MAX,
        timeout_s: float = DLQ_READ_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic(COMMANDS_DLQ_TOPIC)
        self.records_max = records_max
        self.timeout_s = timeout_s
        self.positions: Offsets = {}
        self.records = 0
        self.counted_once = False

    def read(self) -> DeadLetterTally | None:
        """The count so far (None: nothing could be read yet, e.g. the broker is down)."""
        try:
            end = end_offsets(self.settings, self.topic, timeout_s=self.timeout_s)
            complete = self._count_until(end)
        except StreamLedgerError:
            return DeadLetterTally(self.records, False) if self.counted_once else None
        self.counted_once = True
        return DeadLetterTally(self.records, complete)

    def _count_until(self, end: Offsets) -> bool:
        records = records_between(
            self.settings, self.topic, self.positions, end, idle_s_max=self.timeout_s
        )
        read = 0
        try:
            for record in records:
                self.positions[record.partition] = record.offset + 1
                self.records += 1
                read += 1
                if read >= self.records_max:
                    return False
        finally:  # a generator: closing it closes its consumer at once
            getattr(records, "close", lambda: None)()
        # Aborted records and transaction markers up to the end offsets are not records.
        for partition, last in end.items():
            self.positions[partition] = max(self.positions.get(partition, 0), last)
        return True


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
    dlq_complete: bool = True  # False: the DLQ is still being counted (or could not be read)


class StatusReporter:
    """Scrapes the supervisor's children and formats one status line per interval."""

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        scraper: Callable[[str], dict[str, float] | None] = scrape,
        clock: Callable[[], float] = time.monotonic,
        lag_source: Callable[[], int | None] | None = None,
        dlq_source: Callable[[], DeadLetterTally | None] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.scraper = scraper
        self.lag_source = lag_source
        self.dlq_source = dlq_source  # None: the processors' DLQ counters (restart-proof sums)
        self.last_dlq: DeadLetterTally | None = None
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
        # While the supervisor knows Kafka is down, topic reads would only wait out their
        # timeouts and delay the line: show what is known instead.
        kafka_down = self.supervisor.dependencies is not None and (
            KAFKA in self.supervisor.dependencies.down()
        )
        if self.lag_source is not None:
            from_offsets = None if kafka_down else self.lag_source()
            processor_lag = processor_lag if from_offsets is None else float(from_offsets)
        dlq, dlq_complete = self.counters.total(DLQ_RECORDS), True
        if self.dlq_source is not None:
            tally = self.last_dlq if kafka_down else self.dlq_source()
            self.last_dlq = tally
            dlq, dlq_complete = (
                (float("nan"), False)
                if tally is None
                else (float(tally.records), tally.complete and not kafka_down)
            )
        return StatusSnapshot(
            at=self.clock(),
            commands=self.counters.total(COMMANDS_CONSUMED),
            events=self.counters.total(EVENTS_PRODUCED),
            projected=self.counters.total(EVENTS_PROJECTED),
            dlq=dlq,
            processor_lag=processor_lag,
            projection_lag=sum(lags[PROJECTION_LAG]) if lags[PROJECTION_LAG] else None,
            dlq_complete=dlq_complete,
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
            f"| dlq {dlq_text(current)}",
            f"| up {supervisor.up_count}/{len(supervisor.children)}",
            f"restarts {supervisor.restarts}",
            f"stalls {supervisor.stalls}",
            *supervisor_notes(supervisor),
        ]
    )


def dlq_text(snapshot: StatusSnapshot) -> str:
    if math.isnan(snapshot.dlq):
        return "?"
    return f"{snapshot.dlq:,.0f}" + ("" if snapshot.dlq_complete else "+ (counting)")


def supervisor_notes(supervisor: Supervisor) -> list[str]:
    """``| stalled processor-1`` while a stalled child is being restarted; ``| waiting for kafka
    42 s (processor-0)`` while children wait for a dependency."""
    notes: list[str] = []
    stalled = supervisor.stalled_names()
    if stalled:
        notes.append(f"| stalled {', '.join(stalled)}")
    down = supervisor.dependencies.down() if supervisor.dependencies is not None else {}
    now = supervisor.clock()
    for dependency, children in supervisor.waiting().items():
        known = down.get(dependency)
        since = (
            "" if known is None or known.down_since is None else f" {now - known.down_since:.0f} s"
        )
        notes.append(f"| waiting for {dependency}{since} ({', '.join(children)})")
    return notes


def metrics_urls(supervisor: Supervisor) -> Iterable[tuple[str, str]]:
    for child in supervisor.children:
        if child.spec.metrics_url is not None:
            yield child.spec.name, child.spec.metrics_url


def commands_lag_source(settings: Settings) -> Callable[[], int | None]:
    """Records the processor group has not committed yet on ``ledger.commands`` (None: unknown,
    e.g. while the broker restarts; the status line then shows ``?``)."""
    topic = settings.topic(COMMANDS_TOPIC)
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


def dead_letter_source(settings: Settings) -> Callable[[], DeadLetterTally | None]:
    """The DLQ figure of the status line: committed records of ``ledger.commands.dlq``."""
    return DeadLetterCount(settings).read
