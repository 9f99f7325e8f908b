"""Reconciliation figures (issue 20 §Benchmark): statement lines matched per second against a
ledger of ≥ 1M movements (target ≥ 20k lines/s), and the matcher's memory per open item.

    python -m bench.reconciliation_suite [--size small|full] [--repetitions 1] [--matchers 1]
                                         [--core-only] [--no-cache] [--check-cache DIRECTORY]

(``--core-only``: only the in-process figure below, no stack needed; to profile the core.)

The workload (``build_workload``, pure and seeded): ``tenants`` tenants, each with one
bank-mirror account ``bank`` and ``CUSTOMERS`` customer accounts. Every transfer is a deposit
(debit ``bank``, credit a customer) or a withdrawal (the other way), so every event makes one
movement on the mirror account; the events are built by the pure core (``ledger.step``, like
``bench.bench_projection.build_events``) over ``days`` days of ledger time, half of them with a
``metadata.external_ref``. The bank's side: one statement per tenant and day (its lines, then
its header, as ``statements import`` writes them), one line per mirror movement (with the
movement's end-to-end reference when it has one) except the perturbations: ``MISSING_SHARE`` of
the movements never booked, ``MISMATCHED_SHARE`` booked one minor unit higher, ``EXTRA_SHARE``
lines the ledger never booked. A last event per tenant (between two customers, a window later)
and a last statement header (covering a window past the last day) let every line and every
mirror movement close, so each of them ends in exactly one result.

Per repetition, on fresh topics (``fresh``: unique prefix, deleted at the end):

1. each tenant's opening statement header (an empty statement of the day before the first
   movement: the account was reconciled before) is produced, **the matcher as a user runs it**
   (a ``streamledger reconcile`` child process, default settings; ``--matchers N``: N of them in
   the one consumer group, as ``streamledger run --reconcilers N`` starts them, each owning
   some of the partitions; the bench first waits until the group is stable with all N holding
   their partitions, so no rebalance falls into the backlog) is started, and the bench waits
   until its group has committed those headers: every account is a mirror account before any
   event arrives (otherwise, on a backlog, the events may run more than
   ``movement_retention_days`` ahead of the first statement and their movements be forgotten);
2. the encoded events and statement records are produced (idempotent producer, lz4) at once,
   faster than the matcher reads: it works through a backlog; a consumer on
   ``ledger.reconciliation`` waits until every line and every mirror movement is in a result.
   Lines/s = lines decided / (last result's timestamp - first result's timestamp): the span
   from the first to the last result, the matcher's start-up and group join outside it. Also
   its input records/s over the same span and its peak RSS (VmHWM).
   The check: every line and every mirror movement in exactly one result;
3. **baseline**: a plain ``read_committed`` consumer reads both input topics from their start to
   their end (no decoding), records/s from its first to its last record.

**Memory per open item** (``open_item_bytes``), in this process: a ``Reconciler`` (the matcher's
core, default rules) is given ``open_items`` (``SIZES``) movements of one mirror account and,
separately, as many statement lines, none of which can match (distinct amounts, the other side
empty, no ledger time that closes them); ``tracemalloc``'s traced memory after minus before,
over the count: what the open-item state holds per item (the item, its indexes, the line id
remembered against re-imports), inputs not kept.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench import grants
from bench.cache_keys import sources_key
from bench.processor_suite import (
    REPO_ROOT,
    cpu_seconds,
    peak_rss_bytes,
    stop_process,
    wait_until_settled,
)
from bench.results import BenchRun, repetitions_at_most
from infra import topics
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from ledger import Accepted, LedgerState, step
from processors.partition_ledger import WIRE_FORMAT
from reconciliation.event_movements import event_movements
from reconciliation.matcher_settings import GROUP_ID_SUFFIX
from reconciliation.matching import (
    MICROSECONDS_PER_DAY,
    MatchingRules,
    Movement,
    Reconciler,
    ReconciliationResult,
    ReconciliationState,
    movements_of,
)
from reconciliation.records import decode, encode
from reconciliation.statement import Direction, Statement, StatementFormat, StatementLine
from reconciliation.topics import RECONCILIATION_TOPIC, STATEMENTS_TOPIC
from schemas.codec import encode_event
from schemas.keys import command_key, event_key, partition_for
from schemas.model import Event, OpenAccount, Transfer
from schemas.topics import EVENTS_TOPIC
from streamledger.settings import Settings, child_environment, load_settings, replace
from workloads.topics import delete_topics


@dataclass(frozen=True, slots=True)
class Shape:
    movements: int  # mirror-account movements (= transfers) in the ledger
    tenants: int
    days: int
    # of each side, for the memory per open item: a quarter of the items fills the state's
    # tables to the same share (powers of two), so the bytes per item are the same to ~1 %
    # (25,000: 710-719 and 954 bytes, 100,000: 717 and 958) in a quarter of the time: under
    # tracemalloc 100,000 of each took 10-25 s of the small bench (decision 0118)
    open_items: int = 100_000
    # ``make bench`` runs at most this many repetitions (None: ``--repetitions``; this module's
    # own ``--repetitions`` is taken as given). At full one repetition (1, then 2
    # matchers over the 1M-movement backlog, each with its raw read) is ~2.3 min of a quiet
    # machine (3.7 beside a CI run, ~9 at load 10); two keep a min and a max of every figure
    # (decision 0136)
    repetitions_max: int | None = None

    def repetitions(self, wanted: int) -> int:
        return repetitions_at_most(wanted, self.repetitions_max)


SIZES: Final = {
    "small": Shape(movements=50_000, tenants=20, days=10, open_items=25_000),
    "full": Shape(movements=1_000_000, tenants=100, days=30, repetitions_max=2),
}
SEED: Final = 47
PARTITIONS: Final = 4
CUSTOMERS: Final = 8
MIRROR_ACCOUNT: Final = "bank"
CURRENCY: Final = "EUR"
AMOUNT_MAX: Final = 1_000_000  # minor units; wide, so accidental sum matches stay rare
REFERENCE_SHARE: Final = 0.5  # transfers with metadata.external_ref (and the line's EndToEndId)
MISSING_SHARE: Final = 0.01
MISMATCHED_SHARE: Final = 0.005
EXTRA_SHARE: Final = 0.005
DATE_WINDOW_DAYS: Final = 2  # the matcher's default window: the closing tail is one window past
BASE_TIME_US: Final = 1_764_547_200_000_000  # 2025-12-01T00:00:00Z
ITEMS_PER_DAY: Final = 1_000  # open items of one account dated the same day (memory measurement)
PRODUCE_LINGER_MS: Final = 5
KAFKA_TIMEOUT_S: Final = 30.0
POLL_S: Final = 0.5  # the raw read's consume timeout (its clock starts after the first call)
# waits that are not a figure's clock (the openings committed, the results read until every
# item is in one: the figure is the results' own timestamps), polled finer: at POLL_S each run
# waited ~0.5 s more than it had to, twice, six runs per ``make bench`` (decision 0118)
WAIT_POLL_S: Final = 0.05
OPENING_TIMEOUT_S: Final = 120.0  # the matcher's start, group join and first batch
RESULTS_TIMEOUT_S: Final = 900.0  # the whole full-size backlog, with room
GROUP: Final = "reconciliation"
# the built workload, kept between runs (``cached_workload``): not under the bench's home,
# which ``python -m bench`` wipes at its start, nor in the repository (~460 MB at full), but
# beside the Kafka jars, in the home directory's cache that every checkout shares
CACHE_DIRECTORY: Final = Path.home() / ".cache" / "streamledger" / "bench-reconciliation"
WORKLOAD_SOURCE_DIRECTORIES: Final = ("ledger", "schemas", "reconciliation")
WORKLOAD_SOURCE_FILES: Final = ("processors/partition_ledger.py", "bench/reconciliation_suite.py")
WORKLOAD_SOURCE_SUFFIXES: Final = frozenset({".py", ".avsc", ".json"})
IN_PROCESS_RECORDS_MAX: Final = 200_000  # of the workload, in arrival order (~100k lines)
CORE_FIGURE: Final = "matcher work in process (decode, rules, result encoding), no Kafka"
LINES_FIGURE: Final = "statement lines matched/s (target >= 20k)"
INPUT_FIGURE: Final = "matcher input records/s (events + statement records)"
# make bench measures one matcher and the two of `streamledger run --reconcilers 2` (one per core)
MATCHER_COUNTS: Final = (1, 2)
# the matcher processes' CPU from the backlog's first record to the last result: what the wall
# clock figure is worth on a machine whose cores are shared
MATCHER_CPU_FIGURE: Final = "statement lines per matcher CPU-second (end to end, Kafka included)"
PEAK_FIGURE: Final = "matcher peak RSS (streamledger reconcile)"
RAW_FIGURE: Final = "raw read of ledger.events + ledger.statements"
RATIO_FIGURE: Final = "matcher input / raw read"


@dataclass(frozen=True, slots=True)
class InputRecord:
    topic: str  # unprefixed
    partition: int
    key: bytes
    value: bytes
    arrives_day: int  # events on their day; a statement the morning after the day it covers


@dataclass(slots=True)
class Workload:
    records: list[InputRecord]  # events first, then statements (both in time order)
    opening: list[InputRecord]  # each tenant's first statement header, produced before the rest
    lines: int
    mirror_movements: int
    events: int


# --------------------------------------------------------------------------- the workload


def build_events(shape: Shape, seed: int) -> list[Event]:
    """Openings, ``shape.movements`` deposits/withdrawals over ``shape.days``, then one closing
    event per tenant a window past the last day (no mirror movement)."""
    rng = random.Random(seed)
    state = LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=0)
    events: list[Event] = []
    clock = BASE_TIME_US
    tenants = [f"recon-{index:03d}" for index in range(shape.tenants)]
    accounts = [MIRROR_ACCOUNT, *(f"cust-{index}" for index in range(CUSTOMERS))]

    def run(command: OpenAccount | Transfer) -> None:
        decision = step(state, command, clock)
        state.commit()
        assert isinstance(decision, Accepted), decision.outcome
        events.extend(decision.events)

    for tenant in tenants:
        for account in accounts:
            clock += 1
            run(OpenAccount(tenant_id=tenant, idempotency_key=f"open-{account}",
                            submitted_at_us=clock, account_id=account, currency=CURRENCY,
                            asset_scale=2))  # fmt: skip
    step_us = shape.days * MICROSECONDS_PER_DAY // shape.movements
    for number in range(shape.movements):
        clock += step_us
        customer = f"cust-{rng.randrange(CUSTOMERS)}"
        deposit = rng.random() < 0.5
        key = f"tr-{number:08d}"
        reference = f"E2E-{number:08d}" if rng.random() < REFERENCE_SHARE else None
        run(Transfer(
            tenant_id=rng.choice(tenants), idempotency_key=key, submitted_at_us=clock,
            transfer_id=key, debit_account_id=MIRROR_ACCOUNT if deposit else customer,
            credit_account_id=customer if deposit else MIRROR_ACCOUNT,
            amount=rng.randint(1, AMOUNT_MAX), currency=CURRENCY,
            metadata=() if reference is None else (("external_ref", reference),),
        ))  # fmt: skip
    clock += (DATE_WINDOW_DAYS + 1) * MICROSECONDS_PER_DAY
    for tenant in tenants:
        clock += 1
        run(Transfer(tenant_id=tenant, idempotency_key="close", submitted_at_us=clock,
                     transfer_id="close", debit_account_id="cust-0", credit_account_id="cust-1",
                     amount=1, currency=CURRENCY))  # fmt: skip
    return events


def mirror_movements(events: list[Event]) -> Iterator[tuple[Event, Movement]]:
    """The mirror account's movement of each event, with its event."""
    for event in events:
        for movement in movements_of(event, "external_ref"):
            if movement.account_id == MIRROR_ACCOUNT:
                yield event, movement


def statement_line(movement: Movement, number: int, day: int, amount: int) -> StatementLine:
    sha = _sha(movement.tenant_id, day)
    return StatementLine(
        tenant_id=movement.tenant_id, account_id=MIRROR_ACCOUNT,
        line_id=f"{MIRROR_ACCOUNT}/ref/BNK-{number:08d}", file_sha256=sha,
        statement_id=f"STMT-{day}", line_number=number, amount=amount, currency=CURRENCY,
        direction=movement.direction, reversal=False, booking_date_days=day,
        value_date_days=day, bank_reference=f"BNK-{number:08d}", entry_reference=None,
        end_to_end_reference=movement.external_reference, counterparty_name=None,
        counterparty_account=None, remittance_information=None,
    )  # fmt: skip


def statement_header(tenant: str, first_day: int, last_day: int, lines: int) -> Statement:
    return Statement(
        tenant_id=tenant, account_id=MIRROR_ACCOUNT, file_sha256=_sha(tenant, last_day),
        format=StatementFormat.CAMT053, statement_id=f"STMT-{last_day}", currency=CURRENCY,
        opening_balance=None, closing_balance=None, from_date_days=first_day,
        to_date_days=last_day, line_count=lines, new_line_count=lines, entries_not_booked=0,
        imported_at_us=BASE_TIME_US,
    )  # fmt: skip


def _to(statement: Statement) -> int:
    assert statement.to_date_days is not None
    return statement.to_date_days


def _sha(tenant: str, day: int) -> str:
    return hashlib.sha256(f"{tenant}/{day}".encode()).hexdigest()


def build_statements(events: list[Event], seed: int) -> list[Statement | StatementLine]:
    """Per tenant and day, the bank's lines then the header; the closing headers last."""
    rng = random.Random(seed)
    by_day: dict[tuple[int, str], list[StatementLine]] = {}
    number = 0
    last_day = 0
    for _, movement in mirror_movements(events):
        day = movement.date_days
        last_day = max(last_day, day)
        chance = rng.random()
        if chance < MISSING_SHARE:
            continue
        lines = by_day.setdefault((day, movement.tenant_id), [])
        number += 1
        if chance < MISSING_SHARE + MISMATCHED_SHARE:
            lines.append(statement_line(movement, number, day, movement.amount + 1))
        else:
            lines.append(statement_line(movement, number, day, movement.amount))
        if rng.random() < EXTRA_SHARE:
            number += 1
            extra = Movement(
                tenant_id=movement.tenant_id,
                account_id=MIRROR_ACCOUNT,
                movement_id="",
                amount=rng.randint(1, AMOUNT_MAX),
                direction=Direction.CREDIT,
                date_days=day,
                external_reference=None,
            )
            lines.append(statement_line(extra, number, day, extra.amount))
    tenants = sorted({event.tenant_id for event in events})
    first_day = min(day for day, _ in by_day)
    # a mirror account from the start: its statements were imported before (decision 0054 keeps
    # movements of accounts without any statement only movement_retention_days)
    records: list[Statement | StatementLine] = [
        statement_header(tenant, first_day - 1, first_day - 1, 0) for tenant in tenants
    ]
    for (day, tenant), lines in sorted(by_day.items()):
        records += [*lines, statement_header(tenant, day, day, len(lines))]
    closing_day = last_day + DATE_WINDOW_DAYS + 1
    records += [statement_header(tenant, closing_day, closing_day, 0) for tenant in tenants]
    return records


def build_workload(shape: Shape, seed: int, partitions: int = PARTITIONS) -> Workload:
    events = build_events(shape, seed)
    statements = build_statements(events, seed + 1)
    records = [
        InputRecord(
            EVENTS_TOPIC,
            partition_for(command_key(event.tenant_id), partitions),
            event_key(event.tenant_id, event.sequence),
            encode_event(event),
            event.effective_at_us // MICROSECONDS_PER_DAY,
        )
        for event in events
    ]
    records += [
        InputRecord(
            STATEMENTS_TOPIC,
            partition_for(command_key(record.tenant_id), partitions),
            command_key(record.tenant_id),
            encode(record),
            1 + (record.booking_date_days if isinstance(record, StatementLine) else _to(record)),
        )
        for record in statements
    ]
    lines = sum(1 for record in statements if isinstance(record, StatementLine))
    movements = sum(1 for _ in mirror_movements(events))
    # build_statements puts each tenant's opening header first
    first, after = len(events), len(events) + shape.tenants
    opening, backlog = records[first:after], records[:first] + records[after:]
    return Workload(backlog, opening, lines=lines, mirror_movements=movements, events=len(events))


def workload_sources() -> list[Path]:
    """The files whose code decides the workload's bytes: the core that builds the events, the
    contract that encodes them, the reconciliation records and this module."""
    found = [REPO_ROOT / name for name in WORKLOAD_SOURCE_FILES]
    for directory in WORKLOAD_SOURCE_DIRECTORIES:
        found += [
            path
            for path in (REPO_ROOT / directory).rglob("*")
            if path.suffix in WORKLOAD_SOURCE_SUFFIXES and "__pycache__" not in path.parts
        ]
    return sorted(found)


def workload_key(shape: Shape, seed: int, partitions: int) -> str:
    """What a cached workload is valid for: the shape, seed and partitions, the Python version
    (pickle, random) and every source of ``workload_sources``."""
    parameters = (shape, seed, partitions, sys.version_info[:2])
    return sources_key(parameters, workload_sources(), REPO_ROOT)


def cached_workload(
    shape: Shape, seed: int, partitions: int = PARTITIONS, directory: Path = CACHE_DIRECTORY
) -> tuple[Workload, bool]:
    """``build_workload``'s result, from ``directory`` when it was built before from the same
    sources (``workload_key``), else built and stored there; and whether it was read from
    there. At full the build is ~105 s of a quiet machine through the pure core, the read ~5 s
    (decision 0141). One file per shape is kept: an older key's is removed."""
    stem = f"reconciliation-{shape.movements}-{seed}-{partitions}"
    path = directory / f"{stem}-{workload_key(shape, seed, partitions)}.pickle"
    if path.exists():
        with path.open("rb") as stored:
            records, opening, lines, movements, events = pickle.load(stored)
        return Workload(
            [InputRecord(*record) for record in records],
            [InputRecord(*record) for record in opening],
            lines=lines,
            mirror_movements=movements,
            events=events,
        ), True
    workload = build_workload(shape, seed, partitions)
    directory.mkdir(parents=True, exist_ok=True)
    for older in directory.glob(f"{stem}-*.pickle"):
        older.unlink(missing_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    # plain tuples, not the classes: pickled from ``python -m`` they would be ``__main__``'s
    stored_as = (
        [astuple_of(record) for record in workload.records],
        [astuple_of(record) for record in workload.opening],
        workload.lines,
        workload.mirror_movements,
        workload.events,
    )
    with partial.open("wb") as stored:
        pickle.dump(stored_as, stored, protocol=pickle.HIGHEST_PROTOCOL)
    partial.replace(path)
    return workload, False


def astuple_of(record: InputRecord) -> tuple[str, int, bytes, bytes, int]:
    return record.topic, record.partition, record.key, record.value, record.arrives_day


# --------------------------------------------------------------------------- the runs


def fresh(settings: Settings, partitions: int) -> Settings:
    scoped = replace(settings, topic_prefix=grants.prefix("r"), partitions=partitions)
    grants.apply_topics(scoped)  # the reconciliation topics too
    return scoped


def drop(settings: Settings) -> None:
    delete_topics(settings, [*topics.declared_topic_names(settings)])


def produce(settings: Settings, records: list[InputRecord]) -> None:
    producer = Producer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": PRODUCE_LINGER_MS,
            "compression.type": "lz4",
        }
    )
    for record in records:
        while True:
            try:
                producer.produce(settings.topic(record.topic), key=record.key,
                                 value=record.value, partition=record.partition)  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let deliveries drain it
        producer.poll(0)
    assert producer.flush(KAFKA_TIMEOUT_S * 4) == 0, "records not delivered"


def consumer_for(settings: Settings, group: str) -> Consumer:
    return Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )


def raw_read_rate(settings: Settings, total: int) -> float:
    """Records/s of a plain consumer over both input topics, first to last record."""
    consumer = consumer_for(settings, f"{settings.topic_prefix}bench-raw-read")
    names = (settings.topic(EVENTS_TOPIC), settings.topic(STATEMENTS_TOPIC))
    consumer.assign([TopicPartition(name, partition, OFFSET_BEGINNING)
                     for name in names for partition in range(settings.partitions)])  # fmt: skip
    read, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + RESULTS_TIMEOUT_S
    try:
        while read < total:
            assert time.monotonic() < deadline, f"raw read: {read} of {total} records"
            for message in consumer.consume(10_000, POLL_S):
                if message.error() is None:
                    read += 1
            first = first or time.monotonic()
            last = time.monotonic()
    finally:
        consumer.close()
    return (read - 1) / max(last - first, 1e-9)


def spawn_matcher(settings: Settings, log_path: Path, instance: int) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = ["reconcile", "--metrics-port=0", f"--instance-id=bench{instance}"]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamledger.cli", *command],
            env=child_environment(settings), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )  # fmt: skip


@dataclass(slots=True)
class Outcome:
    lines: int = 0
    movements: int = 0
    lines_matched: int = 0
    first_ms: int = 0
    last_ms: int = 0
    twice: int = 0  # items decided more than once: must stay 0


def collect_results(settings: Settings, workload: Workload, alive: Callable[[], bool]) -> Outcome:
    """Read ``ledger.reconciliation`` until every line and mirror movement is decided."""
    consumer = consumer_for(settings, f"{settings.topic_prefix}bench-results")
    consumer.assign([TopicPartition(settings.topic(RECONCILIATION_TOPIC), partition,
                                    OFFSET_BEGINNING)
                     for partition in range(settings.partitions)])  # fmt: skip
    outcome = Outcome()
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + RESULTS_TIMEOUT_S
    try:
        while outcome.lines < workload.lines or outcome.movements < workload.mirror_movements:
            assert alive(), "the matcher exited"
            assert time.monotonic() < deadline, f"results so far: {outcome}"
            for message in consumer.consume(10_000, WAIT_POLL_S):
                value = message.value()
                if message.error() is not None or value is None:
                    continue
                result = decode(value)
                assert isinstance(result, ReconciliationResult), result
                count(outcome, seen, result, message.timestamp()[1])
    finally:
        consumer.close()
    return outcome


def count(
    outcome: Outcome, seen: set[tuple[str, str]], result: ReconciliationResult, at_ms: int
) -> None:
    identities = [("line", f"{result.tenant_id}/{line}") for line in result.line_ids]
    identities += [("movement", f"{result.tenant_id}/{m}") for m in result.movement_ids]
    for identity in identities:
        outcome.twice += identity in seen
        seen.add(identity)
    outcome.lines += len(result.line_ids)
    outcome.movements += len(result.movement_ids)
    if result.state is ReconciliationState.MATCHED:
        outcome.lines_matched += len(result.line_ids)
    outcome.first_ms = min(outcome.first_ms or at_ms, at_ms)
    outcome.last_ms = max(outcome.last_ms, at_ms)


def wait_for_openings(
    settings: Settings, count: int, alive: Callable[[], bool], timeout_s: float
) -> None:
    """Until the matcher's group has committed the ``count`` opening headers: every account is
    a mirror account before the first event (as in a deployment that imported statements
    before), so no movement is kept only ``movement_retention_days`` whatever the fetch order."""
    consumer = consumer_for(settings, f"{settings.topic_prefix}{GROUP_ID_SUFFIX}")
    wanted = [TopicPartition(settings.topic(STATEMENTS_TOPIC), partition)
              for partition in range(settings.partitions)]  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            assert alive(), "the matcher exited"
            assert time.monotonic() < deadline, "the matcher did not read the openings"
            found = consumer.committed(wanted, timeout=KAFKA_TIMEOUT_S)
            if sum(max(tp.offset, 0) for tp in found) >= count:
                return
            time.sleep(WAIT_POLL_S)
    finally:
        consumer.close()


def with_matchers(figure: str, matchers: int) -> str:
    """A figure's name with the number of matcher processes that made it (one group)."""
    plural = "" if matchers == 1 else "es"
    return f"{figure}, {matchers} matcher process{plural}"


def run_once(run: BenchRun, settings: Settings, workload: Workload, matchers: int = 1) -> None:
    scoped = fresh(settings, PARTITIONS)
    try:
        produce(scoped, workload.opening)
        logs = REPO_ROOT / ".bench-logs"
        processes = [
            spawn_matcher(scoped, logs / f"matcher-{scoped.topic_prefix}{number}.log", number)
            for number in range(matchers)
        ]
        peak = 0
        try:

            def alive() -> bool:
                nonlocal peak
                peak = max([peak, *(peak_rss_bytes(process.pid) for process in processes)])
                return all(process.poll() is None for process in processes)

            if matchers > 1:  # every matcher holds its partitions before the backlog: no rebalance
                group = f"{scoped.topic_prefix}{GROUP_ID_SUFFIX}"
                wait_until_settled(scoped, group, matchers, 2 * PARTITIONS, processes)
            wait_for_openings(scoped, len(workload.opening), alive, OPENING_TIMEOUT_S)
            cpu_before_s = sum(cpu_seconds(process.pid) for process in processes)
            produce(scoped, workload.records)  # faster than the matcher: a backlog at once
            outcome = collect_results(scoped, workload, alive)
            matcher_cpu_s = sum(cpu_seconds(process.pid) for process in processes) - cpu_before_s
        finally:
            for process in processes:
                stop_process(process)
        raw = raw_read_rate(scoped, len(workload.records) + len(workload.opening))
    finally:
        drop(scoped)
    span_s = max(outcome.last_ms - outcome.first_ms, 1) / 1000
    correct = (
        outcome.twice == 0
        and outcome.lines == workload.lines
        and outcome.movements == workload.mirror_movements
    )
    figure = run.add(
        GROUP, with_matchers(LINES_FIGURE, matchers), "lines/s", outcome.lines / span_s
    )
    figure.correct = correct if figure.correct in (None, True) else False
    run.add(
        GROUP, with_matchers(INPUT_FIGURE, matchers), "records/s", len(workload.records) / span_s
    )
    run.add(
        GROUP,
        with_matchers(MATCHER_CPU_FIGURE, matchers),
        "lines/CPU-s",
        outcome.lines / max(matcher_cpu_s, 1e-9),
    )
    run.add("limits", RAW_FIGURE, "records/s", raw)
    run.add(
        "ratio", with_matchers(RATIO_FIGURE, matchers), "x", len(workload.records) / span_s / raw
    )
    run.add("memory", with_matchers(PEAK_FIGURE, matchers), "MiB", peak / 2**20)
    run.add(GROUP, "lines matched (share)", "%", 100 * outcome.lines_matched / workload.lines)
    if not correct:
        run.findings.append(f"reconciliation: {outcome} for {workload.lines} lines,"
                            f" {workload.mirror_movements} mirror movements")  # fmt: skip


# --------------------------------------------------------------------------- in process


def core_lines_per_cpu_s(workload: Workload, records_max: int) -> float:
    """Statement lines per CPU-second of the matcher's own work without Kafka: what
    ``Matcher._apply`` does per input record (decode, movements, the rules, ledger time) and the
    encoding of every result, on the first ``records_max`` records in arrival order (a day's
    statement the next morning, before that day's events), one ``Reconciler`` per partition."""
    arrival = sorted(
        workload.records,
        key=lambda record: (record.arrives_day, record.topic != STATEMENTS_TOPIC),
    )[:records_max]
    reconcilers = [Reconciler(MatchingRules()) for _ in range(PARTITIONS)]
    offsets: dict[tuple[str, int], int] = {}
    lines = 0
    started = time.process_time()
    for record in arrival:
        position = (record.topic, record.partition)
        offset = offsets[position] = offsets.get(position, -1) + 1
        reconciler = reconcilers[record.partition]
        if record.topic == EVENTS_TOPIC:
            event = event_movements(record.value, "external_ref")
            results = []
            for movement in event.movements:
                results += reconciler.add_movement(movement, offset, 0)
            results += reconciler.advance_ledger_time(event.tenant_id, event.effective_at_us, 0)
        else:
            decoded = decode(record.value)
            if isinstance(decoded, StatementLine):
                lines += 1
                results = reconciler.add_line(decoded, offset, 0)
            else:
                assert isinstance(decoded, Statement)
                results = reconciler.add_statement(decoded, 0)
        for result in results:
            encode(result)
    return lines / (time.process_time() - started)


# --------------------------------------------------------------------------- memory


def open_item_bytes(count: int) -> tuple[float, float]:
    """Traced bytes per open movement and per open line of the matcher's core state."""
    rules = MatchingRules()
    per_item = []
    for side in ("movement", "line"):
        reconciler = Reconciler(rules)
        reconciler.add_statement(statement_header("memory", 0, 0, 0), 0)  # a mirror account
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for number in range(count):
            movement = Movement(
                tenant_id="memory",
                account_id=MIRROR_ACCOUNT,
                movement_id=f"{uuid.UUID(int=number)}#0",
                amount=number + 1,
                direction=Direction.CREDIT,
                date_days=20_000 + number // ITEMS_PER_DAY,
                external_reference=f"E2E-{number:08d}",
            )
            if side == "movement":
                reconciler.add_movement(movement, number, 0)
            else:
                reconciler.add_line(statement_line(movement, number, movement.date_days,
                                                   movement.amount), number, 0)  # fmt: skip
        del movement
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert reconciler.open_items == count
        per_item.append((after - before) / count)
    return per_item[0], per_item[1]


def run_reconciliation(
    run: BenchRun,
    settings: Settings,
    *,
    size: str,
    repetitions: int,
    matcher_counts: tuple[int, ...] = MATCHER_COUNTS,
    say: Callable[[str], None] = print,
    cache: bool = True,
) -> None:
    shape = SIZES[size]
    started = time.monotonic()
    if cache:
        workload, from_cache = cached_workload(shape, SEED)
    else:
        workload, from_cache = build_workload(shape, SEED), False
    built_s = time.monotonic() - started
    how = f"read from {CACHE_DIRECTORY.name}" if from_cache else "built"
    say(
        f"reconciliation: {workload.events:,} events ({workload.mirror_movements:,} mirror"
        f" movements), {workload.lines:,} lines {how} in {built_s:.0f} s"
    )
    run.sizes.update(
        reconciliation_movements=workload.mirror_movements,
        reconciliation_lines=workload.lines,
        reconciliation_tenants=shape.tenants,
    )
    for _ in range(repetitions):
        for matchers in matcher_counts:
            run_once(run, settings, workload, matchers)
        lines_per_cpu_s = core_lines_per_cpu_s(workload, IN_PROCESS_RECORDS_MAX)
        run.add(GROUP, CORE_FIGURE, "lines/CPU-s", lines_per_cpu_s)
    movement_bytes, line_bytes = open_item_bytes(shape.open_items)
    run.add("memory", "matcher state per open movement (tracemalloc)", "bytes", movement_bytes)
    run.add("memory", "matcher state per open line (tracemalloc)", "bytes", line_bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reconciliation_suite",
        description="statement lines matched/s against a >= 1M-movement ledger; memory per item",
    )
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument(
        "--matchers",
        type=int,
        action="append",
        help="matcher processes in the one group (as streamledger run --reconcilers N); repeat"
        f" it to measure several counts (default: {', '.join(map(str, MATCHER_COUNTS))})",
    )
    parser.add_argument(
        "--core-only",
        action="store_true",
        help="only the matcher's work in process (no Kafka, no stack): lines/CPU-s, for"
        " profiling (python -m cProfile -m bench.reconciliation_suite --core-only)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help=f"build the workload even if {CACHE_DIRECTORY.name}/ holds it from the same sources",
    )
    parser.add_argument(
        "--check-cache",
        metavar="DIRECTORY",
        type=Path,
        help="only build the workload, store it in DIRECTORY (or read it from there: the same"
        " sources), and compare it with a fresh build; exit 1 if they differ. No stack needed",
    )
    arguments = parser.parse_args(argv)
    if any(count < 1 for count in arguments.matchers or ()):
        parser.error("--matchers must be at least 1")
    shape = SIZES[arguments.size]
    if arguments.check_cache is not None:
        cached, from_cache = cached_workload(shape, SEED, directory=arguments.check_cache)
        same = cached == build_workload(shape, SEED)
        print(f"workload {'read from' if from_cache else 'stored in'} {arguments.check_cache}:"
              f" {'the same as' if same else 'DIFFERENT from'} a fresh build")  # fmt: skip
        return 0 if same else 1
    if arguments.core_only:
        if arguments.no_cache:
            workload = build_workload(shape, SEED)
        else:
            workload = cached_workload(shape, SEED)[0]
        rates = [
            core_lines_per_cpu_s(workload, IN_PROCESS_RECORDS_MAX)
            for _ in range(arguments.repetitions)
        ]
        print(f"{CORE_FIGURE}: median {statistics.median(rates):,.0f} lines/CPU-s")
        return 0
    counts = tuple(arguments.matchers or MATCHER_COUNTS)
    run = BenchRun(size=arguments.size, seed=SEED, repetitions=arguments.repetitions)
    run_reconciliation(run, load_settings(), size=arguments.size,
                       repetitions=arguments.repetitions, matcher_counts=counts,
                       cache=not arguments.no_cache)  # fmt: skip
    for matchers in counts:
        figure = run.find(GROUP, with_matchers(LINES_FIGURE, matchers))
        if figure is not None and figure.values:
            print(f"lines/s with {matchers}: median {statistics.median(figure.values):,.0f}"
                  " (target 20,000)")  # fmt: skip
    run.report(with_matchers(RATIO_FIGURE, counts[0]), "matcher input / raw read")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
