"""The one correctness check every engine's output must pass (StreamLedger and the peers).

Expected: the commands folded through the pure core (``ledger.step``), one
``LedgerState`` per input partition, in partition order, at each record's timestamp — the same
function every engine calls, so the check isolates the engine: lost, repeated or reordered
input shows up here. Found: the records on the engine's events and outcomes topics.

A run passes when every stored outcome appears exactly once and equals the fold's (status,
reason, event sequences), and every event (tenant, sequence) appears exactly once with the
fold's type and idempotency key. The result lists the first differences as evidence.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

import ledger
from bench.workloads import Record
from processors.partition_ledger import WIRE_FORMAT
from schemas.codec import decode_event, decode_outcome

READ_TIMEOUT_S = 300.0
EVIDENCE_MAX = 5
FOLD_BATCH_RECORDS = 1_000

ExpectedOutcome = tuple[str, str | None, tuple[int, ...]]


@dataclass
class Expected:
    outcomes: dict[tuple[str, str], ExpectedOutcome] = field(default_factory=dict)
    events: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)


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


def expected_fold(records: list[Record]) -> Expected:
    states: dict[int, ledger.LedgerState] = {}
    expected = Expected()
    for index, record in enumerate(records):
        state = states.setdefault(record.partition, ledger.LedgerState(wire_format=WIRE_FORMAT))
        decision = ledger.step(state, record.command, record.timestamp_ms * 1000)
        if index % FOLD_BATCH_RECORDS == 0:  # batch boundaries never change a decision
            for each in states.values():
                each.commit()
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
    return expected


def read_values(bootstrap: str, topic: str, partitions: int) -> list[bytes | None]:
    """Every committed value of every partition of ``topic`` (read_committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-check-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    pending = set(range(partitions))
    values: list[bytes | None] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while pending:
            assert time.monotonic() < deadline, f"{topic}: partitions {pending} not read in time"
            for message in consumer.consume(10_000, 0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error.str()
                    pending.discard(message.partition() or 0)
                    continue
                values.append(message.value())
    finally:
        consumer.close()
    return values


def check(
    expected: Expected, event_values: list[bytes | None], outcome_values: list[bytes | None]
) -> CheckResult:
    evidence: list[str] = []
    outcomes = [decode_outcome(v) for v in outcome_values if v is not None]
    counts = Counter((o.tenant_id, o.idempotency_key) for o in outcomes)
    repeated = [key for key, count in counts.items() if count > 1]
    if repeated:
        evidence.append(f"{len(repeated)} outcomes written more than once, e.g. {repeated[:3]}")
    found_outcomes = {
        (o.tenant_id, o.idempotency_key): (
            o.status.value,
            None if o.reason is None else o.reason.value,
            o.event_sequences,
        )
        for o in outcomes
    }
    _compare("outcome", expected.outcomes, found_outcomes, evidence)
    events = [decode_event(v) for v in event_values if v is not None]
    event_counts = Counter((e.tenant_id, e.sequence) for e in events)
    repeated_events = [key for key, count in event_counts.items() if count > 1]
    if repeated_events:
        evidence.append(
            f"{len(repeated_events)} events written more than once, e.g. {repeated_events[:3]}"
        )
    found_events = {
        (e.tenant_id, e.sequence): (type(e).__name__, e.idempotency_key) for e in events
    }
    _compare("event", expected.events, found_events, evidence)
    return CheckResult(not evidence, len(outcomes), len(events), evidence)


def _compare(
    kind: str, expected: dict[object, object], found: dict[object, object], evidence: list[str]
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
