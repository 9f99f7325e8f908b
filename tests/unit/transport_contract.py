"""What every ``CommandTransport`` does: one abstract test class, subclassed once per transport.

- ``tests/unit/test_processor_loop_transport_contract.py``: ``MemoryTransport`` (no broker);
- ``tests/system/test_transport_contract.py``: ``KafkaTransport`` on the shared test stack.

A subclass provides the ``settings`` fixture (3 partitions per ledger topic, topics present) and
``new_transport``. A started transport is a group member whether it reads or not (librdkafka
joins in the background), so a test closes the transport that wrote its input before another
one reads it. Everything here goes through the protocol only, so what passes for the fake
is what the real broker does (decision 0031).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from processors.kafka_clients import FencedError, ProcessorKafkaError
from processors.processor_settings import ProcessorSettings, build_processor_settings
from processors.restore import RestoreError
from processors.transport import CommandRecord, CommandTransport, OutputRecord
from streamledger.errors import StreamLedgerError
from streamledger.settings import Settings

PARTITIONS = 3
READ_TIMEOUT_S = 30.0  # a real group join and fetch; the fake answers at once
READ_ATTEMPTS_MAX = 1_000
RESTORE_TIMEOUT_S = 2  # how long a state reader waits for an open transaction to end
HEADER = "contract.header"

OpenTransport = Callable[..., CommandTransport]


@dataclass
class Assignments:
    """What the assignment callbacks were called with, in order."""

    calls: list[tuple[str, list[int]]] = field(default_factory=list)

    def start(self, transport: CommandTransport) -> None:
        transport.start(
            lambda partitions: self.calls.append(("assign", partitions)),
            lambda partitions: self.calls.append(("revoke", partitions)),
            lambda partitions: self.calls.append(("lost", partitions)),
        )


def started(transport: CommandTransport) -> CommandTransport:
    Assignments().start(transport)
    return transport


def read(transport: CommandTransport, count: int) -> list[CommandRecord]:
    """Take batches until ``count`` records came (bounded)."""
    records: list[CommandRecord] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    for _ in range(READ_ATTEMPTS_MAX):
        if len(records) >= count or time.monotonic() > deadline:
            break
        records.extend(transport.take_batch(100, 0.2))
    return records


def committed(
    transport: CommandTransport, topic: str, partition: int, records: Sequence[OutputRecord]
) -> None:
    transport.begin()
    transport.produce_all(topic, partition, records)
    transport.commit()


def write_input(
    transport: CommandTransport, topic: str, partition: int, records: Sequence[OutputRecord]
) -> None:
    """``records`` committed by ``transport``, which then leaves the group."""
    started(transport)
    committed(transport, topic, partition, records)
    transport.close(flush_timeout_s=1)


def keys_and_values(records: Sequence[CommandRecord]) -> list[tuple[bytes | None, bytes | None]]:
    return [(record.key(), record.value()) for record in records]


class TransportContract:
    """The behaviours; ``Test…`` subclasses make pytest collect them."""

    @pytest.fixture
    def settings(self) -> Settings:
        raise NotImplementedError("a subclass provides the stack's settings")

    def new_transport(self, processor_settings: ProcessorSettings) -> CommandTransport:
        raise NotImplementedError

    def deliver(self, transport: CommandTransport) -> None:
        """Wait until what ``transport`` produced reached the broker (still uncommitted)."""

    @pytest.fixture
    def open_transport(self, settings: Settings) -> Iterator[OpenTransport]:
        opened: list[CommandTransport] = []

        def open_transport(instance_id: str = "0") -> CommandTransport:
            processor_settings = build_processor_settings(
                settings,
                instance_id=instance_id,
                metrics_port=0,
                limits={"restore_timeout_s": RESTORE_TIMEOUT_S, "session_timeout_ms": 6_000},
            )
            transport = self.new_transport(processor_settings)
            opened.append(transport)
            return transport

        yield open_transport
        for transport in opened:
            with contextlib.suppress(StreamLedgerError):
                transport.close(flush_timeout_s=1)

    @pytest.fixture
    def topics(self, settings: Settings) -> ProcessorSettings:
        return build_processor_settings(settings, instance_id="topics", metrics_port=0)

    # ------------------------------------------------------------------ behaviours

    def test_every_ledger_topic_has_the_same_partition_count(
        self, open_transport: OpenTransport, topics: ProcessorSettings
    ) -> None:
        assert open_transport().partition_count(topics.topics.all()) == PARTITIONS

    def test_a_sole_member_is_assigned_every_partition_inside_take_batch(
        self, open_transport: OpenTransport
    ) -> None:
        transport = open_transport()
        assignments = Assignments()
        assignments.start(transport)
        assert assignments.calls == []  # callbacks run only inside take_batch
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not assignments.calls and time.monotonic() < deadline:
            transport.take_batch(10, 0.2)
        assert assignments.calls == [("assign", [0, 1, 2])]

    def test_committed_records_are_read_in_order_with_rising_offsets(
        self, open_transport: OpenTransport, topics: ProcessorSettings
    ) -> None:
        records = [(b"k%d" % index, b"v%d" % index) for index in range(3)]
        write_input(open_transport("writer"), topics.topics.commands, 1, records)
        got = read(started(open_transport()), 3)
        assert keys_and_values(got) == records
        assert {record.partition() for record in got} == {1}
        offsets = [record.offset() or 0 for record in got]
        assert offsets == sorted(offsets) and len(set(offsets)) == 3

    def test_aborted_records_are_never_read(
        self, open_transport: OpenTransport, topics: ProcessorSettings
    ) -> None:
        writer = started(open_transport("writer"))
        writer.begin()
        writer.produce_all(topics.topics.commands, 0, [(b"k", b"aborted")])
        writer.abort()
        committed(writer, topics.topics.commands, 0, [(b"k", b"committed")])
        reader = writer.state_reader()
        try:
            snapshot = reader.read_partition([topics.topics.commands], 0, header_name=None)
        finally:
            reader.close()
        assert snapshot.records == {topics.topics.commands: {b"k": b"committed"}}
        writer.close(flush_timeout_s=1)
        assert keys_and_values(read(started(open_transport()), 1)) == [(b"k", b"committed")]

    def test_a_state_reader_refuses_while_a_transaction_is_open_on_its_partition(
        self, open_transport: OpenTransport, topics: ProcessorSettings
    ) -> None:
        writer = started(open_transport("writer"))
        writer.begin()
        writer.produce_all(topics.topics.balances, 2, [(b"k", b"open")])
        self.deliver(writer)
        reader = writer.state_reader()
        try:
            with pytest.raises(RestoreError):
                reader.read_partition([topics.topics.balances], 2, header_name=None)
            writer.commit()
            snapshot = reader.read_partition([topics.topics.balances], 2, header_name=None)
        finally:
            reader.close()
        assert snapshot.records[topics.topics.balances] == {b"k": b"open"}

    def test_the_state_reader_keeps_the_latest_value_and_header_per_key(
        self, open_transport: OpenTransport, topics: ProcessorSettings
    ) -> None:
        writer = started(open_transport("writer"))
        balances = topics.topics.balances
        writer.begin()
        writer.produce_all(
            balances,
            1,
            [(b"a", b"1"), (b"a", b"2"), (b"b", b"1"), (b"b", None), (b"c", b"1")],
            [None, [(HEADER, b"h2")], [(HEADER, b"h1")], None, None],
        )
        writer.produce(balances, 1, b"d", b"1", headers=[(HEADER, b"hd")], timestamp_ms=1_000)
        writer.produce_all(balances, 2, [(b"a", b"of 2")], [[(HEADER, b"h of 2")]])
        writer.commit()
        reader = writer.state_reader()
        try:
            snapshot = reader.read_partition([balances], 1, header_name=HEADER)
            # several partitions at once (one pass, decision 0124): each keeps its own records
            together = list(reader.read_partitions([balances], [0, 1, 2], header_name=HEADER))
        finally:
            reader.close()
        assert snapshot.partition == 1
        assert snapshot.records[balances] == {b"a": b"2", b"c": b"1", b"d": b"1"}
        assert snapshot.header_values[balances] == {b"a": b"h2", b"d": b"hd"}
        assert snapshot.records_read == 6
        assert [(s.partition, s.records_read) for s in together] == [(0, 0), (1, 6), (2, 1)]
        assert together[1].records == snapshot.records
        assert together[1].header_values == snapshot.header_values
        assert together[0].records == {balances: {}}
        assert together[2].records == {balances: {b"a": b"of 2"}}
        assert together[2].header_values == {balances: {b"a": b"h of 2"}}

    def test_a_new_producer_with_the_same_transactional_id_fences_the_old_one(
        self, open_transport: OpenTransport, topics: ProcessorSettings
    ) -> None:
        old = started(open_transport("same"))
        old.begin()
        old.produce_all(topics.topics.commands, 0, [(b"k", b"from the old one")])
        new = started(open_transport("same"))
        with pytest.raises(FencedError):
            old.send_offsets({})
            old.commit()
        committed(new, topics.topics.commands, 0, [(b"k", b"from the new one")])
        old.close(flush_timeout_s=0)
        new.close(flush_timeout_s=1)
        assert keys_and_values(read(started(open_transport("reader")), 1)) == [
            (b"k", b"from the new one")
        ]

    def test_a_second_begin_is_an_error(self, open_transport: OpenTransport) -> None:
        transport = started(open_transport())
        transport.begin()
        with pytest.raises(ProcessorKafkaError):
            transport.begin()
        transport.abort()

    def test_committed_offsets_are_where_the_next_member_starts_aborted_ones_are_not(
        self, open_transport: OpenTransport, topics: ProcessorSettings
    ) -> None:
        commands = topics.topics.commands
        records = [(b"k%d" % index, b"v%d" % index) for index in range(4)]
        write_input(open_transport("writer"), commands, 0, records)
        first = started(open_transport("first"))
        got = read(first, 4)
        second_offset = got[1].offset()
        assert second_offset is not None
        first.begin()
        first.send_offsets({0: second_offset + 1})
        first.commit()
        first.begin()
        first.send_offsets({0: (got[3].offset() or 0) + 1})
        first.abort()
        first.close(flush_timeout_s=1)
        assert keys_and_values(read(started(open_transport("second")), 2)) == records[2:]

    def test_seek_reads_again_from_the_given_offset(
        self, open_transport: OpenTransport, topics: ProcessorSettings
    ) -> None:
        records = [(b"k%d" % index, b"v%d" % index) for index in range(3)]
        write_input(open_transport("writer"), topics.topics.commands, 2, records)
        transport = started(open_transport())
        got = read(transport, 3)
        first_offset = got[0].offset()
        assert first_offset is not None
        transport.seek(2, first_offset)
        assert keys_and_values(read(transport, 3)) == records
