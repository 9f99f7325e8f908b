"""The processor loop's view of Kafka: one transactional producer plus one group consumer.

``processors.loop`` talks only to a ``CommandTransport``. Two implementations pass the same
contract tests (``tests/unit/transport_contract.py``, decision 0031):

- ``processors.kafka_clients.KafkaTransport``: confluent-kafka, the production one;
- ``processors.memory_transport.MemoryTransport``: partitions as lists, for unit tests of the
  loop (transactions, fencing, rebalances and injected failures without a broker).

Errors leave a transport only as the project's own (``ProcessorKafkaError`` and below, see
``processors.kafka_clients``; ``RestoreError`` from a state reader). A transport calls the
assignment callbacks only from inside ``take_batch``, so never while a transaction is open.

Hot path: ``produce_all`` takes a partition's whole list of records for one topic, so the loop
makes one call per (topic, partition) per batch and the per-record loop stays inside the adapter
(the same one ``Producer.produce`` call per record as before the seam).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from processors.restore import PartitionSnapshot

Headers = list[tuple[str, str | bytes | None]]
RecordHeaders = Headers | dict[str, str | bytes | None]
OutputRecord = tuple[bytes, bytes | None]  # key, value (None = tombstone)
AssignmentCallback = Callable[[list[int]], None]  # the partitions of the subscribed topic


class RecordError(Protocol):
    """What a consumed record's error says (``confluent_kafka.KafkaError`` is one)."""

    def str(self) -> builtins.str: ...


class CommandRecord(Protocol):
    """A consumed record; ``confluent_kafka.Message`` is one, handed over without a copy."""

    def error(self) -> RecordError | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...  # (timestamp type, milliseconds)
    def headers(self) -> RecordHeaders | None: ...


class StateReader(Protocol):
    """Reads a partition's compacted state topics back (``processors.restore``)."""

    def read_partition(
        self, topics: Sequence[str], partition: int, *, header_name: str | None
    ) -> PartitionSnapshot:
        """The latest committed value per key, once no transaction is open on them; raises
        ``RestoreError`` when that does not happen within the restore timeout."""
        ...

    def read_partitions(
        self, topics: Sequence[str], partitions: Sequence[int], *, header_name: str | None
    ) -> Iterator[PartitionSnapshot]:
        """``read_partition`` of each of ``partitions``, in order, yielded as they are read
        (several may be read in one pass: decision 0124)."""
        ...

    def close(self) -> None: ...


class CommandTransport(Protocol):
    """What the loop needs of Kafka, and nothing more."""

    def partition_count(self, topics: Sequence[str]) -> int:
        """The common partition count of ``topics``; ``TopicError`` when they differ."""
        ...

    def start(
        self,
        on_assign: AssignmentCallback,
        on_revoke: AssignmentCallback,
        on_lost: AssignmentCallback,
    ) -> None:
        """A new producer (this fences every older one with our transactional id) and a new
        group member subscribed to the commands topic."""
        ...

    def take_batch(self, records_max: int, first_wait_s: float) -> Sequence[CommandRecord]:
        """What was fetched already (at most ``records_max``), else what arrives first within
        ``first_wait_s`` (``kafka_clients.take_batch``). Runs the assignment callbacks."""
        ...

    def seek(self, partition: int, offset: int) -> None:
        """The next ``take_batch`` reads ``partition`` from ``offset``."""
        ...

    def begin(self) -> None: ...

    def produce_all(
        self,
        topic: str,
        partition: int,
        records: Sequence[OutputRecord],
        headers: Sequence[Headers | None] | None = None,
    ) -> None:
        """Produce ``records`` in order into the open transaction, record ``i`` with
        ``headers[i]`` when given."""
        ...

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
        """One record (a dead letter, a tick); ``timestamp_ms`` 0 = the producer's clock."""
        ...

    def send_offsets(self, positions: Mapping[int, int]) -> None:
        """Add the next offset to read per commands partition to the open transaction."""
        ...

    def append_ticks(self, partitions: Sequence[int], timestamp_ms: int) -> None:
        """Append a tick record (``processors.ticks``) to each of ``partitions`` of the commands
        topic **outside any transaction** (a plain idempotent producer), and wait for them: a
        transaction's commit marker would sit after the last command record and keep the
        committed input offset one short of the partition's end for good."""
        ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def state_reader(self) -> StateReader: ...

    def consumer_lag(self) -> dict[int, int]:
        """Records behind the end, per assigned partition (best effort: monitoring only)."""
        ...

    def close(self, *, flush_timeout_s: float) -> None:
        """Drop the producer and leave the group; ``start`` may follow."""
        ...
