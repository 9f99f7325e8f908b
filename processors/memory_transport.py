"""An in-memory ``CommandTransport``: the loop's Kafka, with partitions as lists (decision 0031).

It passes the same contract tests as ``KafkaTransport`` (``tests/unit/transport_contract.py``)
and lets unit tests drive the real ``Processor`` through what a broker does to it:

- a transaction's records and offsets are buffered in the producer and reach the log only at
  commit, so every reader is read_committed; an aborted transaction leaves only unreadable
  slots (offset gaps, as Kafka's aborted records and markers do), a commit one marker slot;
- ``start`` bumps the transactional id's epoch: the older producer with that id is fenced (its
  open transaction is dropped, every later transactional call raises ``FencedError``);
- a state reader refuses (``RestoreError``) while any producer's transaction is open on a
  partition it reads, as ``processors.restore`` does once its timeout passes;
- the group spreads the commands partitions over its members in join order; assignment
  callbacks run only inside ``take_batch``, revokes before assigns (cooperative);
- injected failures: ``MemoryBroker.fail`` (the Nth call of an operation raises the given
  error: an ``AbortableError`` leaves the transaction abortable only, a ``FencedError`` fences
  the producer for good), ``revoke_during_next_batch`` and ``lose_during_next_batch``.

Nothing here is thread-safe: one test thread drives the loop; ``on_idle`` lets it stop the loop
once there is nothing left to read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from processors.kafka_clients import AbortableError, FencedError, ProcessorKafkaError
from processors.processor_settings import ProcessorSettings
from processors.restore import PartitionSnapshot, RestoreError
from processors.ticks import TICK_KEY, TICK_VALUE
from processors.transport import (
    AssignmentCallback,
    CommandRecord,
    Headers,
    OutputRecord,
    StateReader,
)
from streamledger.errors import TopicError

Operation = Literal["begin", "produce", "send_offsets", "commit", "abort", "append_ticks"]
CREATE_TIME = 1  # confluent_kafka.TIMESTAMP_CREATE_TIME


class MemoryRecord:
    """A committed record, with the methods of ``confluent_kafka.Message`` the loop reads."""

    __slots__ = ("_headers", "_key", "_offset", "_partition", "_timestamp_ms", "_topic", "_value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        timestamp_ms: int,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers = key, value, headers
        self._timestamp_ms = timestamp_ms

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Headers | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return CREATE_TIME, self._timestamp_ms

    def __repr__(self) -> str:
        return f"MemoryRecord({self._topic}[{self._partition}]@{self._offset} {self._key!r})"


@dataclass(slots=True)
class _Fault:
    """Calls ``first_call..last_call`` of ``operation`` (counted since the broker began) run
    ``action`` and then raise ``error``, when given."""

    operation: Operation
    first_call: int
    last_call: int
    error: ProcessorKafkaError | None
    action: Callable[[], None] | None = None


@dataclass(slots=True)
class _Pending:
    """One produced record waiting in an open transaction."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    timestamp_ms: int


class MemoryBroker:
    """The topics, the consumer groups' committed offsets and the transactional ids' epochs."""

    def __init__(
        self,
        topics: Sequence[str],
        partitions: int,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        assert partitions >= 1
        # topic -> partition -> slots; None = a slot no reader sees (a marker, an aborted record)
        self.logs: dict[str, list[list[MemoryRecord | None]]] = {
            topic: [[] for _ in range(partitions)] for topic in topics
        }
        self.partitions = partitions
        self.clock_ms = clock_ms
        self.committed_offsets: dict[tuple[str, str, int], int] = {}  # (group, topic, partition)
        self.epochs: dict[str, int] = {}  # transactional id -> current producer epoch
        # transactional id -> the (topic, partition)s its open transaction wrote to
        self.open_transactions: dict[str, set[tuple[str, int]]] = {}
        self.members: dict[str, list[MemoryTransport]] = {}  # group id -> members, join order
        self.faults: list[_Fault] = []
        self.calls: dict[str, int] = {}  # operation -> calls so far, from every producer

    # ------------------------------------------------------------------ for tests

    def fail(
        self, operation: Operation, *, nth: int = 1, times: int = 1, error: ProcessorKafkaError
    ) -> None:
        """The ``nth`` call of ``operation`` from now on (from any producer) and the
        ``times - 1`` calls after it raise ``error``; for ``produce`` each record is a call."""
        assert nth >= 1 and times >= 1
        first = self.calls.get(operation, 0) + nth
        self.faults.append(_Fault(operation, first, first + times - 1, error))

    def before_call(self, operation: Operation, nth: int, action: Callable[[], None]) -> None:
        """Run ``action`` (e.g. ``fence``, a revoke) just before the ``nth`` call of
        ``operation`` from now on."""
        first = self.calls.get(operation, 0) + nth
        self.faults.append(_Fault(operation, first, first, None, action))

    def fence(self, transactional_id: str) -> None:
        """What a new producer with ``transactional_id`` does to the current one."""
        self.init_transactions(transactional_id)

    def records(self, topic: str, partition: int | None = None) -> list[MemoryRecord]:
        """The committed records of ``topic`` (one partition, or all in partition order)."""
        partitions = range(self.partitions) if partition is None else [partition]
        return [r for p in partitions for r in self.logs[topic][p] if r is not None]

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers | None = None,
        timestamp_ms: int = 0,
    ) -> int:
        """A committed record written outside any transaction (an idempotent producer's);
        returns its offset."""
        log = self.logs[topic][partition]
        log.append(
            MemoryRecord(
                topic,
                partition,
                len(log),
                key=key,
                value=value,
                headers=headers,
                timestamp_ms=timestamp_ms or self.clock_ms(),
            )
        )
        return len(log) - 1

    def committed(self, group_id: str, topic: str) -> dict[int, int]:
        """The group's committed position per partition of ``topic``."""
        return {
            p: o for (g, t, p), o in self.committed_offsets.items() if (g, t) == (group_id, topic)
        }

    # ------------------------------------------------------------------ for transports

    def check_fault(self, operation: Operation) -> ProcessorKafkaError | None:
        """Count one call of ``operation``; the error it must raise, if any."""
        call = self.calls[operation] = self.calls.get(operation, 0) + 1
        error = None
        for fault in [f for f in self.faults if f.operation == operation]:
            if not fault.first_call <= call <= fault.last_call:
                continue
            if call == fault.last_call:
                self.faults.remove(fault)
            if fault.action is not None:
                fault.action()
            error = error or fault.error
        return error

    def init_transactions(self, transactional_id: str) -> int:
        """A new epoch for ``transactional_id``; its open transaction is aborted."""
        self.open_transactions.pop(transactional_id, None)
        self.epochs[transactional_id] = self.epochs.get(transactional_id, 0) + 1
        return self.epochs[transactional_id]

    def write_transaction(
        self,
        pending: Sequence[_Pending],
        offsets: Mapping[tuple[str, str, int], int],
        *,
        committed: bool,
    ) -> None:
        """Commit (append the records, then a marker per partition) or abort (unreadable
        slots in their place, then a marker)."""
        touched: list[tuple[str, int]] = []
        for record in pending:
            log = self.logs[record.topic][record.partition]
            if committed:
                timestamp_ms = record.timestamp_ms or self.clock_ms()
                log.append(
                    MemoryRecord(
                        record.topic,
                        record.partition,
                        len(log),
                        key=record.key,
                        value=record.value,
                        headers=record.headers,
                        timestamp_ms=timestamp_ms,
                    )
                )
            else:
                log.append(None)
            if (record.topic, record.partition) not in touched:
                touched.append((record.topic, record.partition))
        for topic, partition in touched:
            self.logs[topic][partition].append(None)  # the transaction marker
        if committed:
            self.committed_offsets.update(offsets)

    def join(self, member: MemoryTransport) -> None:
        self.members.setdefault(member.group_id, []).append(member)
        self.rebalance(member.group_id)

    def leave(self, member: MemoryTransport) -> None:
        self.members[member.group_id].remove(member)
        self.rebalance(member.group_id)

    def rebalance(self, group_id: str) -> None:
        """Spread the partitions over the members in join order; a partition moves only once
        its owner has revoked it (cooperative)."""
        members = self.members.get(group_id, [])
        if not members:
            return
        target: dict[int, set[int]] = {id(m): set() for m in members}
        for partition in range(self.partitions):
            target[id(members[partition % len(members)])].add(partition)
        owned = {p for m in members for p in m.owned}
        for member in members:
            wanted = target[id(member)]
            member.pending_revoke = sorted(member.owned - wanted)
            member.pending_assign = sorted(wanted - member.owned - owned)


@dataclass(slots=True)
class _Transaction:
    epoch: int
    pending: list[_Pending] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)
    must_abort: ProcessorKafkaError | None = None


class MemoryTransport:
    """A ``CommandTransport`` on a ``MemoryBroker``: one producer plus one group member."""

    def __init__(
        self,
        broker: MemoryBroker,
        processor_settings: ProcessorSettings,
        *,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.topic = processor_settings.topics.commands
        self.group_id = processor_settings.group_id
        self.transactional_id = processor_settings.transactional_id
        self.on_idle = on_idle  # called by a take_batch that finds nothing to do
        self.epoch: int | None = None  # None = not started (or closed)
        self.fenced = False
        self.joined = False
        self.transaction: _Transaction | None = None
        self.owned: set[int] = set()
        self.positions: dict[int, int] = {}
        self.pending_revoke: list[int] = []
        self.pending_assign: list[int] = []
        self.revoke_mid_batch: list[int] = []  # revoked right after the next batch is fetched
        self.lose_mid_batch = False  # ... and reported through on_lost
        self._callbacks: tuple[AssignmentCallback, AssignmentCallback, AssignmentCallback] | None
        self._callbacks = None

    def partition_count(self, topics: Sequence[str]) -> int:
        missing = [topic for topic in topics if topic not in self.broker.logs]
        if missing:
            raise TopicError(f"refusing to run: missing topics {', '.join(missing)}")
        return self.broker.partitions

    def start(
        self,
        on_assign: AssignmentCallback,
        on_revoke: AssignmentCallback,
        on_lost: AssignmentCallback,
    ) -> None:
        self.epoch = self.broker.init_transactions(self.transactional_id)
        self.fenced = False
        self.transaction = None
        self._callbacks = (on_assign, on_revoke, on_lost)
        self.joined = True  # subscribed: librdkafka joins in the background, polled or not
        self.broker.join(self)

    # ------------------------------------------------------------------ consuming

    def take_batch(self, records_max: int, first_wait_s: float) -> Sequence[CommandRecord]:
        assert records_max >= 1
        delivered = self._deliver_rebalance()
        records = self._fetch(records_max)
        if self.revoke_mid_batch:
            delivered = True
            self._revoke_now()
        if not records and not delivered and self.on_idle is not None:
            self.on_idle()
        return records

    def _deliver_rebalance(self) -> bool:
        on_assign, on_revoke, _ = self._started_callbacks()
        delivered = False
        if self.pending_revoke:
            revoked, self.pending_revoke = self.pending_revoke, []
            self._drop(revoked)
            on_revoke(revoked)
            delivered = True
            self.broker.rebalance(self.group_id)
        if self.pending_assign:
            assigned, self.pending_assign = self.pending_assign, []
            committed = self.broker.committed(self.group_id, self.topic)
            for partition in assigned:
                self.owned.add(partition)
                self.positions[partition] = committed.get(partition, 0)  # earliest
            on_assign(assigned)
            delivered = True
        return delivered

    def _revoke_now(self) -> None:
        _, on_revoke, on_lost = self._started_callbacks()
        revoked = sorted(self.owned.intersection(self.revoke_mid_batch))
        self.revoke_mid_batch = []
        self._drop(revoked)
        (on_lost if self.lose_mid_batch else on_revoke)(revoked)
        self.lose_mid_batch = False
        self.broker.rebalance(self.group_id)  # the partitions come back at a later take_batch

    def _drop(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            self.owned.discard(partition)
            self.positions.pop(partition, None)

    def _fetch(self, records_max: int) -> list[MemoryRecord]:
        records: list[MemoryRecord] = []
        for partition in sorted(self.owned):
            log = self.broker.logs[self.topic][partition]
            position = self.positions[partition]
            while position < len(log) and len(records) < records_max:
                slot = log[position]
                position += 1
                if slot is not None:
                    records.append(slot)
            self.positions[partition] = position
        return records

    def seek(self, partition: int, offset: int) -> None:
        if partition not in self.owned:
            raise ProcessorKafkaError(f"seeking partition {partition}: not assigned")
        self.positions[partition] = offset

    def consumer_lag(self) -> dict[int, int]:
        logs = self.broker.logs[self.topic]
        return {p: len(logs[p]) - position for p, position in self.positions.items()}

    # ------------------------------------------------------------------ the transaction

    def begin(self) -> None:
        self._check_producer("begin")
        if self.transaction is not None:
            raise ProcessorKafkaError("begin_transaction: a transaction is already open")
        assert self.epoch is not None
        self.transaction = _Transaction(self.epoch)

    def produce_all(
        self,
        topic: str,
        partition: int,
        records: Sequence[OutputRecord],
        headers: Sequence[Headers | None] | None = None,
    ) -> None:
        for index, (key, value) in enumerate(records):
            self.produce(
                topic, partition, key, value, headers=None if headers is None else headers[index]
            )

    def produce(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        transaction = self._open_transaction("produce")
        if topic not in self.broker.logs or not 0 <= partition < self.broker.partitions:
            raise ProcessorKafkaError(f"producing to {topic}[{partition}]: unknown partition")
        transaction.pending.append(_Pending(topic, partition, key, value, headers, timestamp_ms))
        self.broker.open_transactions.setdefault(self.transactional_id, set()).add(
            (topic, partition)
        )

    def send_offsets(self, positions: Mapping[int, int]) -> None:
        self._open_transaction("send_offsets").offsets.update(positions)

    def append_ticks(self, partitions: Sequence[int], timestamp_ms: int) -> None:
        error = self.broker.check_fault("append_ticks")
        if error is not None:
            raise error
        for partition in partitions:
            self.broker.append(
                self.topic, partition, TICK_KEY, TICK_VALUE, timestamp_ms=timestamp_ms
            )

    def commit(self) -> None:
        transaction = self._open_transaction("commit")
        offsets = {(self.group_id, self.topic, p): o for p, o in transaction.offsets.items()}
        self.broker.write_transaction(transaction.pending, offsets, committed=True)
        self.broker.open_transactions.pop(self.transactional_id, None)
        self.transaction = None

    def abort(self) -> None:
        self._check_producer("abort")
        transaction, self.transaction = self.transaction, None
        if transaction is None:
            return
        self.broker.write_transaction(transaction.pending, {}, committed=False)
        self.broker.open_transactions.pop(self.transactional_id, None)

    def _open_transaction(self, operation: Operation) -> _Transaction:
        self._check_producer(operation)
        transaction = self.transaction
        if transaction is None:
            raise ProcessorKafkaError(f"{operation}: no transaction is open")
        if transaction.must_abort is not None:
            raise AbortableError(f"{operation}: abort first ({transaction.must_abort})")
        return transaction

    def _check_producer(self, operation: Operation) -> None:
        """Raise what the broker would: fenced, or an injected failure (which then sticks)."""
        if self.epoch is None:
            raise ProcessorKafkaError(f"{operation}: the transport is not started")
        error = self.broker.check_fault(operation)  # runs an injected action first
        if self.fenced or self.broker.epochs[self.transactional_id] != self.epoch:
            self.fenced = True
            self.transaction = None
            raise FencedError(f"{operation}: a newer producer has {self.transactional_id!r}")
        if error is None:
            return
        if isinstance(error, FencedError):
            self.fenced = True
            self.transaction = None
        elif isinstance(error, AbortableError) and self.transaction is not None:
            self.transaction.must_abort = error
        raise error

    # ------------------------------------------------------------------ the rest

    def state_reader(self) -> StateReader:
        return MemoryStateReader(self.broker)

    def close(self, *, flush_timeout_s: float) -> None:
        # An open transaction stays open on the broker until the next producer with our
        # transactional id starts (as a killed process's does until the restart fences it).
        self.transaction = None
        self.epoch = None
        if self.joined:
            self.joined = False
            self.broker.leave(self)
        self._drop(sorted(self.owned))
        self.pending_revoke, self.pending_assign = [], []

    def _started_callbacks(
        self,
    ) -> tuple[AssignmentCallback, AssignmentCallback, AssignmentCallback]:
        assert self._callbacks is not None and self.epoch is not None, "start() first"
        return self._callbacks


class MemoryStateReader:
    """``processors.restore.read_partitions`` over a ``MemoryBroker``."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker

    def read_partition(
        self, topics: Sequence[str], partition: int, *, header_name: str | None
    ) -> PartitionSnapshot:
        for written in self.broker.open_transactions.values():
            open_topics = [topic for topic in topics if (topic, partition) in written]
            if open_topics:
                raise RestoreError(
                    f"partition {partition}: a previous owner's transaction is still open on"
                    f" {', '.join(open_topics)}"
                )
        latest: dict[str, dict[bytes, bytes]] = {topic: {} for topic in topics}
        header_values: dict[str, dict[bytes, bytes]] = {topic: {} for topic in topics}
        records_read = 0
        for topic in topics:
            for record in self.broker.records(topic, partition):
                records_read += 1
                _keep_latest(record, latest[topic], header_values[topic], header_name)
        return PartitionSnapshot(partition, latest, header_values, records_read, 0.0)

    def read_partitions(
        self, topics: Sequence[str], partitions: Sequence[int], *, header_name: str | None
    ) -> Iterator[PartitionSnapshot]:
        for partition in partitions:
            yield self.read_partition(topics, partition, header_name=header_name)

    def close(self) -> None:
        pass


def _keep_latest(
    record: MemoryRecord,
    values: dict[bytes, bytes],
    header_values: dict[bytes, bytes],
    header_name: str | None,
) -> None:
    key, value = record.key(), record.value()
    if key is None:
        raise RestoreError(f"{record.topic()}: a record without a key at {record.offset()}")
    header_values.pop(key, None)
    if value is None:
        values.pop(key, None)  # a tombstone removes its key
        return
    values[key] = value
    for name, header in record.headers() or ():
        if name == header_name and isinstance(header, bytes):
            header_values[key] = header
