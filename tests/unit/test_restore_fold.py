"""What a restore keeps of the records it reads (``processors.restore._keep_latest``): the latest
value per key, a tombstone removes the key, and the named header of the key's latest record, if
it carries one, however the client hands the headers over (decision 0091 reads the processor's
one header without a call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError

from processors.restore import RestoreError, _keep_latest, _Latest

HEADER = "streamledger.outcome.times"
TOPIC = "t.ledger.outcomes"


@dataclass
class Record:
    """The accessors of a consumed ``confluent_kafka.Message`` that the fold uses."""

    key_bytes: bytes | None
    value_bytes: bytes | None
    header_list: list[tuple[str, Any]] | None = None
    at: int = 0
    failure: KafkaError | None = None
    topic_name: str | None = TOPIC
    partition_number: int | None = 0

    def error(self) -> KafkaError | None:
        return self.failure

    def topic(self) -> str | None:
        return self.topic_name

    def partition(self) -> int | None:
        return self.partition_number

    def key(self) -> bytes | None:
        return self.key_bytes

    def value(self) -> bytes | None:
        return self.value_bytes

    def headers(self) -> list[tuple[str, Any]] | None:
        return self.header_list

    def offset(self) -> int:
        return self.at


def _fold(records: list[Record], end: int = 10) -> tuple[Folded, set[tuple[str, int]], int]:
    latest = _Latest.empty([TOPIC], [0], HEADER)
    pending = {(TOPIC, 0)}
    read = _keep_latest(records, {(TOPIC, 0): (0, end)}, latest, pending)  # type: ignore[arg-type]
    return Folded(latest.values[TOPIC, 0], latest.header_values[TOPIC, 0]), pending, read


@dataclass
class Folded:
    """What the fold kept of partition 0 of ``TOPIC``."""

    values: dict[bytes, bytes]
    header_values: dict[bytes, bytes]


def test_the_latest_value_and_its_header_are_kept() -> None:
    latest, pending, read = _fold(
        [
            Record(b"a", b"1", [(HEADER, b"t1")]),
            Record(b"b", b"2", [("other", b"x"), (HEADER, b"t2")]),
            Record(b"a", b"3", [(HEADER, b"t3")]),
        ]
    )
    assert read == 3 and pending == {(TOPIC, 0)}
    assert latest.values == {b"a": b"3", b"b": b"2"}
    assert latest.header_values == {b"a": b"t3", b"b": b"t2"}


def test_a_later_record_without_the_header_drops_it() -> None:
    latest, _, _ = _fold(
        [
            Record(b"a", b"1", [(HEADER, b"t1")]),
            Record(b"a", b"2", None),
            Record(b"b", b"1", [(HEADER, b"t1")]),
            Record(b"b", b"2", [("other", b"x")]),
            Record(b"c", b"1", [(HEADER, b"t1")]),
            Record(b"c", b"2", [(HEADER, "not bytes")]),
        ]
    )
    assert latest.values == {b"a": b"2", b"b": b"2", b"c": b"2"}
    assert latest.header_values == {}


def test_a_tombstone_removes_the_key_and_its_header() -> None:
    latest, _, read = _fold([Record(b"a", b"1", [(HEADER, b"t1")]), Record(b"a", None)])
    assert read == 2
    assert latest.values == {} and latest.header_values == {}


def test_the_end_of_the_partition_at_the_stable_end_ends_the_topic() -> None:
    end_of_partition = KafkaError(KafkaError._PARTITION_EOF)
    _, pending, read = _fold([Record(None, None, at=10, failure=end_of_partition)])
    assert pending == set() and read == 0
    with pytest.raises(RestoreError, match="expected 10"):
        _fold([Record(None, None, at=9, failure=end_of_partition)])


def test_a_record_without_a_key_stops_the_restore() -> None:
    with pytest.raises(RestoreError, match="without a key"):
        _fold([Record(None, b"1")])


def test_an_error_of_the_client_stops_the_restore() -> None:
    # no topic or partition: the client's own error (a broker unreachable), not a partition's;
    # its error text comes as the value
    transport = KafkaError(KafkaError._TRANSPORT)
    failure = Record(None, b"text", failure=transport, topic_name=None, partition_number=None)
    with pytest.raises(RestoreError, match=r"reading None\[None\]"):
        _fold([failure])
    with pytest.raises(RestoreError, match=r"reading t.ledger.outcomes\[0\]"):
        _fold([Record(None, b"text", failure=transport)])


def test_records_of_two_topic_partitions_in_runs_go_to_their_own() -> None:
    """One pass reads several topic partitions (decision 0124): each record goes to its own
    dicts and count, however the runs alternate; headers handed over as a dict are read too."""
    other = "t.ledger.balances"
    latest = _Latest.empty([TOPIC, other], [0, 1], HEADER)
    records = [
        Record(b"a", b"1", [(HEADER, b"t1")]),
        Record(b"a", b"2", {HEADER: b"t2"}, partition_number=1),  # type: ignore[arg-type]
        Record(b"s", b"x", None, topic_name=other),
        Record(b"b", b"3", [(HEADER, b"t3")]),
        Record(b"s", b"y", None, topic_name=other),
        Record(b"a", None, partition_number=1),
    ]
    ends = {(topic, partition): (0, 10) for topic in (TOPIC, other) for partition in (0, 1)}
    read = _keep_latest(records, ends, latest, set(ends))  # type: ignore[arg-type]
    assert read == 6
    assert latest.values[TOPIC, 0] == {b"a": b"1", b"b": b"3"}
    assert latest.header_values[TOPIC, 0] == {b"a": b"t1", b"b": b"t3"}
    assert latest.values[TOPIC, 1] == {} and latest.header_values[TOPIC, 1] == {}
    assert latest.values[other, 0] == {b"s": b"y"} and latest.header_values[other, 0] == {}
    assert latest.records_read == {(TOPIC, 0): 2, (TOPIC, 1): 2, (other, 0): 2, (other, 1): 0}
