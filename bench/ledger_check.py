"""The one correctness check every engine's output must pass (StreamLedger and the peers).

Expected: the command records as the engine read them from its input topic, folded through the
pure core (``ledger.step``, and ``ledger.step_tick`` for the processor's tick records), one
``LedgerState`` per input partition, in offset order, at each record's **broker** timestamp —
the same function every engine calls, so the check isolates the engine: lost, repeated or
reordered input shows up here. Found: the records on the engine's events and outcomes topics.

Why read the input back instead of folding the planned records: ``ledger.commands`` is a
``LogAppendTime`` topic, so the time every engine decides with is the broker's arrival stamp,
not the producer's planned timestamp; a pending transfer with a short timeout expires at another
point of a pre-filled topic than the plan says. And the processor appends tick records to the
same topic while it runs (``processors.ticks``), which expire pending transfers too. So the
fold reads the input partitions up to the engine group's committed offsets (what the engine
decided and committed), ticks included, with their timestamps.

A run passes when every stored outcome appears exactly once and equals the fold's (status,
reason, event sequences), and every event (tenant, sequence) appears exactly once with the
fold's type and idempotency key. The result lists the first differences as evidence.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

import ledger
from processors.partition_ledger import WIRE_FORMAT
from processors.ticks import is_tick
from schemas.codec import DecodeError, decode_command
from workloads.check_records import event_fields, outcome_fields

READ_TIMEOUT_S = 300.0
# A check's reads are not timed, only waited for (three per check, 12 checks per ``make bench``):
# each took ~1 s whatever its size (decision 0118). Half of it was librdkafka retrying the first
# offset query 500 ms later when the partitions' leader was not known yet at ``assign`` (the
# topic's metadata is now asked for first); the rest the last ``consume`` waiting out its
# timeout and the broker holding the last, empty fetch ``fetch.wait.max.ms`` (500 by default)
# before the end-of-partition markers. The loops end on the markers, not on a timeout.
READ_POLL_S = 0.05
READ_FETCH_WAIT_MS = 10
READ_METADATA_TIMEOUT_S = 30.0
EVIDENCE_MAX = 5
FOLD_BATCH_RECORDS = 1_000

ExpectedOutcome = tuple[str, str | None, tuple[int, ...]]


@dataclass
class Expected:
    outcomes: dict[tuple[str, str], ExpectedOutcome] = field(default_factory=dict)
    events: dict[tuple[str, int], tuple[str, str | None]] = field(default_factory=dict)


@dataclass
class CheckResult:
    passed: bool
    outcomes_found: int
    events_found: int
    evidence: list[str]

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        text = f"{verdict}: {self.outcomes_found} outcomes, {self.events_found} events"
        return text + ("; " + "; ".join(self.evidence) if self.evidence else "")


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One record of the engine's input topic as the broker stored it."""

    partition: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int  # the broker's (LogAppendTime): what the engine decided with


def expected_fold(records: list[InputRecord]) -> Expected:
    """The core's fold of the input records (``read_input``), per partition in offset order."""
    states: dict[int, ledger.LedgerState] = {}
    expected = Expected()
    for index, record in enumerate(records):
        state = states.setdefault(record.partition, ledger.LedgerState(wire_format=WIRE_FORMAT))
        decision = _step(state, record)
        if index % FOLD_BATCH_RECORDS == 0:  # batch boundaries never change a decision
            for each in states.values():
                each.commit()
        if decision is not None:
            _record(decision, expected)
    return expected


def _step(state: ledger.LedgerState, record: InputRecord) -> ledger.Decision | ledger.Ticked | None:
    """What the processor's loop does with one input record (``processors.loop``); None for a
    record it dead-letters (the bench's workloads have none)."""
    timestamp_us = record.timestamp_ms * 1000
    if record.value is None:
        return None
    if is_tick(record.key, record.value):
        return ledger.step_tick(state, timestamp_us)
    try:
        command = decode_command(record.value)
    except DecodeError:
        return None
    return ledger.step(state, command, timestamp_us)


def _record(decision: ledger.Decision | ledger.Ticked, expected: Expected) -> None:
    if not isinstance(decision, ledger.Ticked):
        stored = decision.stored_outcome
        if stored is not None:
            reason = None if stored.reason is None else stored.reason.value
            key = (stored.tenant_id, stored.idempotency_key)
            expected.outcomes[key] = (stored.status.value, reason, stored.event_sequences)
    for event in decision.events:
        expected.events[(event.tenant_id, event.sequence)] = (
            type(event).__name__,
            event.idempotency_key,
        )


def read_input(
    connection: Mapping[str, str], topic: str, partitions: int, group_id: str
) -> list[InputRecord]:
    """The records of ``topic`` below ``group_id``'s committed offset of each partition (what
    the engine decided and committed), in offset order per partition, broker timestamps.

    ``connection`` (here and below): ``kafka_adapter.security.client_config`` of the reader."""
    ends = committed_offsets(connection, topic, partitions, group_id)
    pending = {partition for partition, end in ends.items() if end > 0}
    consumer = _reader(connection, topic)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
    records: list[InputRecord] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while pending:
            assert time.monotonic() < deadline, f"{topic}: partitions {pending} not read in time"
            for message in consumer.consume(10_000, READ_POLL_S):
                partition, offset = message.partition() or 0, message.offset() or 0
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error.str()
                    pending.discard(partition)
                    continue
                if offset >= ends[partition]:
                    pending.discard(partition)
                    continue
                _, timestamp_ms = message.timestamp()
                records.append(InputRecord(partition, message.key(), message.value(), timestamp_ms))
    finally:
        consumer.close()
    return records


def committed_offsets(
    connection: Mapping[str, str], topic: str, partitions: int, group_id: str
) -> dict[int, int]:
    """``group_id``'s committed position per partition of ``topic`` (0 where none)."""
    consumer = Consumer({**connection, "group.id": group_id})
    try:
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=30
        )
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in committed}


def read_values(connection: Mapping[str, str], topic: str, partitions: int) -> list[bytes | None]:
    """Every committed value of every partition of ``topic`` (read_committed)."""
    consumer = _reader(connection, topic)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    pending = set(range(partitions))
    values: list[bytes | None] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while pending:
            assert time.monotonic() < deadline, f"{topic}: partitions {pending} not read in time"
            for message in consumer.consume(10_000, READ_POLL_S):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error.str()
                    pending.discard(message.partition() or 0)
                    continue
                values.append(message.value())
    finally:
        consumer.close()
    return values


def _reader(connection: Mapping[str, str], topic: str) -> Consumer:
    """A read_committed reader of ``topic`` that knows its partitions' leaders before ``assign``
    (so the first offset query goes out at once, not on librdkafka's 500 ms retry)."""
    consumer = Consumer(
        {
            **connection,
            "group.id": f"bench-check-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": READ_FETCH_WAIT_MS,
        }
    )
    consumer.list_topics(topic, timeout=READ_METADATA_TIMEOUT_S)
    return consumer


def check(
    expected: Expected, event_values: list[bytes | None], outcome_values: list[bytes | None]
) -> CheckResult:
    """Every stored outcome and event against the fold. Each record is read whole and checked
    (``workloads.check_records``: the codec's fields, without building its model values)."""
    evidence: list[str] = []
    outcomes = [outcome_fields(v) for v in outcome_values if v is not None]
    counts = Counter(key for key, _ in outcomes)
    repeated = [key for key, count in counts.items() if count > 1]
    if repeated:
        evidence.append(f"{len(repeated)} outcomes written more than once, e.g. {repeated[:3]}")
    found_outcomes = dict(outcomes)
    _compare("outcome", expected.outcomes, found_outcomes, evidence)
    events = [event_fields(v) for v in event_values if v is not None]
    event_counts = Counter(key for key, _ in events)
    repeated_events = [key for key, count in event_counts.items() if count > 1]
    if repeated_events:
        evidence.append(
            f"{len(repeated_events)} events written more than once, e.g. {repeated_events[:3]}"
        )
    found_events = dict(events)
    _compare("event", expected.events, found_events, evidence)
    return CheckResult(not evidence, len(outcomes), len(events), evidence)


Key = TypeVar("Key", bound=Hashable)


def _compare(
    kind: str, expected: Mapping[Key, object], found: Mapping[Key, object], evidence: list[str]
) -> None:
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    differing = [key for key in expected if key in found and found[key] != expected[key]]
    if missing:
        evidence.append(f"{len(missing)} {kind}s missing, e.g. {missing[:EVIDENCE_MAX]}")
    if unexpected:
        evidence.append(f"{len(unexpected)} unexpected {kind}s, e.g. {unexpected[:EVIDENCE_MAX]}")
    if differing:
        key = differing[0]
        evidence.append(
            f"{len(differing)} {kind}s differ, e.g. {key}: {found[key]} != {expected[key]}"
        )
