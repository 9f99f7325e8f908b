"""``streamledger verify``: reconcile the log with itself and with PostgreSQL, per tenant.

Reads ``ledger.events`` (read_committed) from the beginning to the end offsets taken at start and
checks, per tenant:

- gapless sequences: 1, 2, 3, … in log order, no gap, no repeat;
- the hash chain: each ``prev_hash`` is the previous event's ``hash`` (``GENESIS_HASH`` first)
  and each ``hash`` is ``SHA-256(prev_hash + event_canonical_bytes(event))``;
- the balances each event carries equal a fold of the events' amounts (so a re-hashed event with
  a changed amount is caught even at the end of the chain);
- per currency, the sum of all account balances (posted and pending) is zero;
- PostgreSQL's ``ledger.balances`` equal the fold (missing, extra or different rows).

The audit itself is pure (``TenantAudit.observe``); only ``read_log`` and ``read_database`` do I/O.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from projections.sink import EVENTS_TOPIC, consumer_config
from projections.store import ProjectionDatabaseError
from schemas.codec import DecodeError, decode_event, event_canonical_bytes
from schemas.model import (
    GENESIS_HASH,
    AccountOpened,
    Event,
    PendingPosted,
    TransferPending,
    TransferPosted,
)
from streamledger.errors import InfraError
from streamledger.settings import Settings

READ_TIMEOUT_S = 1.0
READ_IDLE_S_MAX = 30.0
READ_BATCH = 10_000
WATERMARK_TIMEOUT_S = 30

SELECT_BALANCES = (
    "SELECT tenant_id, account_id, debits_posted, credits_posted, debits_pending,"
    " credits_pending FROM ledger.balances"
)

Counters = tuple[int, int, int, int]  # debits_posted, credits_posted, debits_pending, ...


@dataclass(slots=True)
class TenantAudit:
    """Everything verify learns about one tenant from the log."""

    tenant_id: str
    events: int = 0
    last_sequence: int = 0
    last_hash: bytes = GENESIS_HASH
    currencies: dict[str, str] = field(default_factory=dict)  # account -> currency
    balances: dict[str, Counters] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def observe(self, event: Event, where: str) -> None:
        self.events += 1
        if event.sequence != self.last_sequence + 1:
            kind = "repeat" if event.sequence <= self.last_sequence else "gap"
            self.problems.append(
                f"sequence {kind}: {event.sequence} after {self.last_sequence} at {where}"
            )
        if event.prev_hash != self.last_hash:
            self.problems.append(f"hash chain broken: sequence {event.sequence} at {where}")
        digest = hashlib.sha256(event.prev_hash + event_canonical_bytes(event)).digest()
        if digest != event.hash:
            self.problems.append(f"hash mismatch: sequence {event.sequence} at {where}")
        self.last_sequence = max(self.last_sequence, event.sequence)
        self.last_hash = event.hash
        self.fold(event, where)

    def fold(self, event: Event, where: str) -> None:
        if isinstance(event, AccountOpened):
            self.currencies[event.account_id] = event.currency
            self.balances[event.account_id] = (0, 0, 0, 0)
            expected = {event.account_id: (0, 0, 0, 0)}
        else:
            posted, pending = movement(event)
            debit = self.balances.get(event.debit_account_id, (0, 0, 0, 0))
            credit = self.balances.get(event.credit_account_id, (0, 0, 0, 0))
            expected = {
                event.debit_account_id: (debit[0] + posted, debit[1], debit[2] + pending, debit[3]),
                event.credit_account_id: (
                    credit[0],
                    credit[1] + posted,
                    credit[2],
                    credit[3] + pending,
                ),
            }
        carried = {
            b.account_id: (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
            for b in event.balances
        }
        for account_id, counters in expected.items():
            if carried.get(account_id) != counters:
                self.problems.append(
                    f"balances after sequence {event.sequence} at {where}: account "
                    f"{account_id!r} carries {carried.get(account_id)}, the fold gives {counters}"
                )
            self.balances[account_id] = counters

    def check_sums(self) -> None:
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for account_id, (dp, cp, dq, cq) in self.balances.items():
            currency = self.currencies.get(account_id, "?")
            sums[currency][0] += cp - dp
            sums[currency][1] += cq - dq
        for currency, (posted, pending) in sorted(sums.items()):
            if posted or pending:
                self.problems.append(
                    f"{currency}: balances sum to {posted} posted, {pending} pending (not zero)"
                )

    def check_database(self, stored: dict[str, Counters]) -> None:
        for account_id in sorted(set(stored) | set(self.balances)):
            want, got = self.balances.get(account_id), stored.get(account_id)
            if want != got:
                self.problems.append(
                    f"PostgreSQL balance of {account_id!r} is {got}, the log's fold gives {want}"
                )


def movement(event: Event) -> tuple[int, int]:
    """(posted, pending) change an event makes on both of its accounts' own side."""
    if isinstance(event, TransferPosted):
        return event.amount, 0
    if isinstance(event, TransferPending):
        return 0, event.amount
    if isinstance(event, PendingPosted):
        return event.amount, -event.pending_amount
    assert not isinstance(event, AccountOpened)
    return 0, -event.amount


@dataclass(frozen=True, slots=True)
class VerifyReport:
    audits: dict[str, TenantAudit]
    log_problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.log_problems and all(not a.problems for a in self.audits.values())

    def lines(self) -> Iterator[str]:
        for problem in self.log_problems:
            yield f"log: {problem}"
        for tenant_id in sorted(self.audits):
            audit = self.audits[tenant_id]
            state = "ok" if not audit.problems else f"{len(audit.problems)} difference(s)"
            yield (
                f"tenant {tenant_id}: {audit.events} events, "
                f"last sequence {audit.last_sequence}: {state}"
            )
            for problem in audit.problems:
                yield f"  - {problem}"


def verify(settings: Settings, *, group: str) -> VerifyReport:
    audits: dict[str, TenantAudit] = {}
    log_problems: list[str] = []
    for where, value in read_log(settings, group=group):
        try:
            event = decode_event(value)
        except DecodeError as exc:
            log_problems.append(f"{where} is not a ledger event: {exc}")
            continue
        audit = audits.setdefault(event.tenant_id, TenantAudit(event.tenant_id))
        audit.observe(event, where)
    stored = read_database(settings)
    for tenant_id in sorted(set(stored) - set(audits)):
        audits[tenant_id] = TenantAudit(tenant_id)
    for tenant_id, audit in audits.items():
        audit.check_sums()
        audit.check_database(stored.get(tenant_id, {}))
    return VerifyReport(audits, tuple(log_problems))


def read_log(settings: Settings, *, group: str) -> Iterator[tuple[str, bytes]]:
    """(``topic[partition]@offset``, value) of every committed record up to the end offsets."""
    topic = settings.topic(EVENTS_TOPIC)
    consumer = Consumer(consumer_config(settings, group, partition_eof=True))
    try:
        metadata = consumer.list_topics(topic, timeout=WATERMARK_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise InfraError(f"topic {topic} not found")
        ends = {}
        for partition in sorted(metadata.partitions):
            tp = TopicPartition(topic, partition)
            ends[partition] = consumer.get_watermark_offsets(tp, timeout=WATERMARK_TIMEOUT_S)[1]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        yield from read_until(consumer, topic, ends)
    finally:
        consumer.close()


def read_until(consumer: Consumer, topic: str, ends: dict[int, int]) -> Iterator[tuple[str, bytes]]:
    """Records until every partition reported its end at or past the end offsets taken at start
    (read_committed: the position alone never passes a trailing transaction marker)."""
    pending = {partition for partition, end in ends.items() if end > 0}
    idle_since = time.monotonic()
    while pending:
        records = consumer.consume(num_messages=READ_BATCH, timeout=READ_TIMEOUT_S)
        if records:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > READ_IDLE_S_MAX:
            raise InfraError(f"verify: {topic} stopped before its end offsets {ends}")
        for record in records:
            partition, offset, error = record.partition(), record.offset(), record.error()
            if partition is None or offset is None:
                continue
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise InfraError(f"reading {topic}: {error}")
                if offset >= ends[partition]:
                    pending.discard(partition)
                continue
            value = record.value()
            if value is not None and offset < ends[partition]:
                yield f"{topic}[{partition}]@{offset}", value


def read_database(settings: Settings) -> dict[str, dict[str, Counters]]:
    stored: dict[str, dict[str, Counters]] = defaultdict(dict)
    try:
        with (
            psycopg.connect(settings.database_dsn, autocommit=True) as conn,
            conn.transaction(),
        ):
            rows: list[Any] = conn.execute(SELECT_BALANCES).fetchall()
    except psycopg.OperationalError as exc:
        raise ProjectionDatabaseError(f"verify cannot read PostgreSQL: {exc}") from exc
    for tenant_id, account_id, dp, cp, dq, cq in rows:
        stored[tenant_id][account_id] = (dp, cp, dq, cq)
    return stored
