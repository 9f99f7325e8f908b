"""Running the real ``streamledger process`` as a child process, and reading what it wrote.

Everything here is bounded: each wait has a timeout and fails the test with what it saw.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from infra.topics import ledger_topic_names
from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from schemas.codec import decode_event, decode_outcome, decode_state, encode_command
from schemas.keys import command_key, partition_for
from schemas.model import GENESIS_HASH, AccountState, Command, Event, Outcome, TenantHead
from streamledger.settings import Settings
from tests.system.ledger_reference import ReferenceLedger
from workloads.processor_process import ProcessorProcess

READ_TIMEOUT_S = 60.0
POLL_S = 0.5
# Errors a watermark query gets while a new topic's partition leadership settles (the query's
# error carries no retriable flag, so the codes are named).
LEADERSHIP_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)


def produce_commands(settings: Settings, commands: list[Command]) -> None:
    """Write commands to ledger.commands, each on its tenant's partition, in order."""
    topic = ledger_topic_names(settings).commands
    producer = Producer(
        {**client_config(settings, ADMIN_PRINCIPAL), "enable.idempotence": True},
        logger=KAFKA_CLIENT_LOGGER,
    )
    for command in commands:
        key = command_key(command.tenant_id)
        producer.produce(
            topic, encode_command(command), key, partition=partition_for(key, settings.partitions)
        )
        producer.poll(0)
    assert producer.flush(READ_TIMEOUT_S) == 0, "commands not delivered in time"


def produce_raw(settings: Settings, partition: int, key: bytes, value: bytes) -> None:
    producer = Producer(client_config(settings, ADMIN_PRINCIPAL))
    producer.produce(
        ledger_topic_names(settings).commands,
        value,
        key,
        partition=partition,
        headers=[("origin", b"test")],
    )
    assert producer.flush(READ_TIMEOUT_S) == 0


def wait_until_consumed(
    settings: Settings, timeout_s: float, processes: list[ProcessorProcess] | None = None
) -> None:
    """Until the processor group's committed offsets reach the end of every command partition."""
    topic = ledger_topic_names(settings).commands
    consumer = _consumer(settings, f"{settings.topic_prefix}streamledger-processor")
    partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
    deadline = time.monotonic() + timeout_s
    ends = {p.partition: _high_watermark(consumer, p, deadline) for p in partitions}
    committed: dict[int, int] = {}
    try:
        while time.monotonic() < deadline:
            for tp in consumer.committed(partitions, timeout=10):
                committed[tp.partition] = tp.offset
            if all(end == 0 or committed.get(p, -1) >= end for p, end in ends.items()):
                return
            for process in processes or []:
                assert process.process.poll() is None, f"processor died:\n{process.log()}"
            time.sleep(POLL_S)
    finally:
        consumer.close()
    logs = "\n".join(p.log() for p in processes or [])
    raise AssertionError(
        f"not consumed in {timeout_s} s: committed {committed}, ends {ends}\n{logs}"
    )


def _high_watermark(consumer: Consumer, partition: TopicPartition, deadline: float) -> int:
    """The partition's high watermark, asked again while the broker answers with a retriable
    error (NOT_LEADER_FOR_PARTITION while a new topic's leadership settles under load)."""
    while True:
        try:
            return int(consumer.get_watermark_offsets(partition, timeout=10)[1])
        except KafkaException as exc:
            error = exc.args[0]
            if not isinstance(error, KafkaError) or not (
                error.retriable() or error.code() in LEADERSHIP_SETTLING
            ):
                raise
            if time.monotonic() >= deadline:
                raise AssertionError(f"no high watermark for {partition}: {error}") from exc
            time.sleep(POLL_S)


@dataclass
class TopicRecord:
    partition: int
    offset: int
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int = 0


def read_topic(settings: Settings, topic: str) -> list[TopicRecord]:
    """Every committed record of every partition of ``topic``, in offset order per partition."""
    consumer = _consumer(settings, f"test-reader-{uuid.uuid4().hex}")
    partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
    consumer.assign(partitions)
    pending = set(range(settings.partitions))
    records: list[TopicRecord] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while pending:
            assert time.monotonic() < deadline, f"{topic}: partitions {pending} not read in time"
            for message in consumer.consume(1000, POLL_S):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error.str()
                    pending.discard(message.partition() or 0)
                    continue
                records.append(
                    TopicRecord(
                        message.partition() or 0,
                        message.offset() or 0,
                        message.key() or b"",
                        message.value(),
                        _headers(message.headers()),
                        message.timestamp()[1],
                    )
                )
    finally:
        consumer.close()
    return records


def _headers(
    headers: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None,
) -> list[tuple[str, bytes]]:
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs]


def _consumer(settings: Settings, group_id: str) -> Consumer:
    return Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )


# --------------------------------------------------------------------------- comparison


def assert_outputs_match(settings: Settings, reference: ReferenceLedger) -> None:
    """Events, outcomes and balances on the topics equal the reference fold, exactly once each."""
    names = ledger_topic_names(settings)
    _assert_outcomes(read_topic(settings, names.outcomes), reference)
    _assert_events(read_topic(settings, names.events), reference)
    _assert_balances(read_topic(settings, names.balances), reference)


def _assert_outcomes(records: list[TopicRecord], reference: ReferenceLedger) -> None:
    per_key = Counter(record.key for record in records)
    repeated = [key for key, count in per_key.items() if count != 1]
    assert not repeated, f"outcomes written more than once: {repeated[:5]}"
    outcomes: dict[tuple[str, str], Outcome] = {}
    for record in records:
        assert record.value is not None, "no tombstone expected within retention"
        outcome = decode_outcome(record.value)
        outcomes[(outcome.tenant_id, outcome.idempotency_key)] = outcome
    assert set(outcomes) == set(reference.outcomes), (
        f"missing {sorted(set(reference.outcomes) - set(outcomes))[:5]},"
        f" unexpected {sorted(set(outcomes) - set(reference.outcomes))[:5]}"
    )
    for key, expected in reference.outcomes.items():
        found = outcomes[key]
        reason = None if found.reason is None else found.reason.value
        assert (found.status.value, reason, found.event_sequences) == (
            expected.status,
            expected.reason,
            expected.sequences,
        ), f"{key}: found {found}, expected {expected}"


def _assert_events(records: list[TopicRecord], reference: ReferenceLedger) -> None:
    events = [decode_event(r.value) for r in records if r.value is not None]
    assert len(events) == len(records), "no tombstone may ever hit ledger.events"
    by_tenant: dict[str, list[Event]] = {}
    for event in events:  # offset order per partition = sequence order per tenant
        by_tenant.setdefault(event.tenant_id, []).append(event)
    for tenant_id, tenant_events in by_tenant.items():
        sequences = [event.sequence for event in tenant_events]
        assert sequences == list(range(1, len(sequences) + 1)), f"{tenant_id}: gap or duplicate"
        previous = GENESIS_HASH
        for event in tenant_events:
            assert event.prev_hash == previous, f"{tenant_id}#{event.sequence}: broken hash chain"
            previous = event.hash
    expected = {(e.tenant_id, e.sequence): e for e in reference.events}
    assert len(events) == len(expected), f"{len(events)} events, expected {len(expected)}"
    for event in events:
        want = expected[(event.tenant_id, event.sequence)]
        balances = {
            b.account_id: (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
            for b in event.balances
        }
        found = (type(event).__name__, event.idempotency_key, getattr(event, "amount", None))
        assert found == (want.kind, want.idempotency_key, want.amount), f"{event} vs {want}"
        assert balances == want.balances, f"{event.tenant_id}#{event.sequence} balances"


def _assert_balances(records: list[TopicRecord], reference: ReferenceLedger) -> None:
    latest: dict[bytes, bytes] = {}
    for record in records:
        assert record.value is not None
        latest[record.key] = record.value
    accounts: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    heads: dict[str, int] = {}
    for value in latest.values():
        state = decode_state(value)
        if isinstance(state, AccountState):
            accounts[(state.tenant_id, state.account_id)] = (
                state.debits_posted,
                state.credits_posted,
                state.debits_pending,
                state.credits_pending,
            )
        elif isinstance(state, TenantHead):
            heads[state.tenant_id] = state.last_sequence
    expected_accounts = {
        (tenant_id, name): account.counters()
        for tenant_id, tenant in reference.tenants.items()
        for name, account in tenant.accounts.items()
    }
    assert accounts == expected_accounts
    assert heads == {t: tenant.sequence for t, tenant in reference.tenants.items()}
