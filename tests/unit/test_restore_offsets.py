"""A restore never takes an unknown offset (-1, while leadership moves) for an empty partition:
reading nothing would start the partition's tenants over at sequence 1 (make chaos-ha saw it)."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processors import restore
from processors.restore import RestoreError, read_partitions, wait_until_stable


@dataclass
class Listed:
    offset: int


class FlakyAdmin:
    """Answers every listing with -1 for ``unknown_rounds`` rounds of three, then real offsets."""

    def __init__(self, unknown_rounds: int, earliest: int = 0, end: int = 40) -> None:
        self.calls = 0
        self.unknown_rounds = unknown_rounds
        self.earliest, self.end = earliest, end

    def list_offsets(self, requested: dict[TopicPartition, Any], **_: Any) -> dict[Any, Any]:
        self.calls += 1
        unknown = (self.calls - 1) // 3 < self.unknown_rounds
        first_of_three = self.calls % 3 == 1  # the EARLIEST query comes first in each round
        offset = -1 if unknown else (self.earliest if first_of_three else self.end)
        futures: dict[Any, Any] = {}
        for partition in requested:
            future: Future[Listed] = Future()
            future.set_result(Listed(offset))
            futures[partition] = future
        return futures


PARTITIONS = [TopicPartition("t.ledger.balances", 2), TopicPartition("t.ledger.outcomes", 2)]


def test_unknown_offsets_are_waited_out_not_read_as_empty() -> None:
    admin = FlakyAdmin(unknown_rounds=2)
    ends = wait_until_stable(admin, PARTITIONS, time.monotonic() + 30)  # type: ignore[arg-type]
    assert ends == {"t.ledger.balances": (0, 40), "t.ledger.outcomes": (0, 40)}
    assert admin.calls == 9  # two unknown rounds, then the real one


def test_offsets_still_unknown_at_the_deadline_stop_the_restore() -> None:
    admin = FlakyAdmin(unknown_rounds=1_000_000)
    with pytest.raises(RestoreError, match="no offsets known"):
        wait_until_stable(admin, PARTITIONS, time.monotonic() + 0.5)  # type: ignore[arg-type]


class FailingAdmin(FlakyAdmin):
    """Fails the first ``failing_calls`` listings with ``code``, then answers like FlakyAdmin."""

    def __init__(self, failing_calls: int, code: int) -> None:
        super().__init__(unknown_rounds=0)
        self.failing_calls, self.code, self.failed = failing_calls, code, 0

    def list_offsets(self, requested: dict[TopicPartition, Any], **options: Any) -> dict[Any, Any]:
        if self.failed >= self.failing_calls:
            return super().list_offsets(requested, **options)
        self.failed += 1
        futures: dict[Any, Any] = {}
        for partition in requested:
            future: Future[Listed] = Future()
            future.set_exception(KafkaException(KafkaError(self.code)))
            futures[partition] = future
        return futures


def test_a_listing_refused_while_leadership_moves_is_asked_again() -> None:
    # FENCED_LEADER_EPOCH is what the old leader answered in make chaos-ha; librdkafka does not
    # flag it retriable, and the processor exited instead of asking the new leader
    admin = FailingAdmin(failing_calls=3, code=KafkaError.FENCED_LEADER_EPOCH)
    ends = wait_until_stable(admin, PARTITIONS, time.monotonic() + 30)  # type: ignore[arg-type]
    assert ends == {"t.ledger.balances": (0, 40), "t.ledger.outcomes": (0, 40)}
    assert admin.failed == 3


def test_a_listing_error_that_is_not_a_failover_stops_the_restore_at_once() -> None:
    admin = FailingAdmin(failing_calls=1, code=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    started = time.monotonic()
    with pytest.raises(RestoreError, match="cannot list offsets"):
        wait_until_stable(admin, PARTITIONS, started + 30)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5


def test_a_failover_error_that_outlasts_the_deadline_stops_the_restore() -> None:
    admin = FailingAdmin(failing_calls=1_000_000, code=KafkaError.NOT_LEADER_FOR_PARTITION)
    with pytest.raises(RestoreError):
        wait_until_stable(admin, PARTITIONS, time.monotonic() + 0.5)  # type: ignore[arg-type]


def test_a_refused_listing_is_asked_again_through_a_renewed_admin_client() -> None:
    # the chaos test saw one admin client refused FENCED_LEADER_EPOCH for the whole restore
    # timeout (its leader epoch stayed stale); a new client has fresh metadata
    stale = FailingAdmin(failing_calls=1_000_000, code=KafkaError.FENCED_LEADER_EPOCH)
    fresh = FlakyAdmin(unknown_rounds=0)
    renewed: list[FlakyAdmin] = []

    def renew() -> Any:
        renewed.append(fresh)
        return fresh

    ends = wait_until_stable(
        stale,  # type: ignore[arg-type]
        PARTITIONS,
        time.monotonic() + 30,
        renew,
    )
    assert ends == {"t.ledger.balances": (0, 40), "t.ledger.outcomes": (0, 40)}
    assert renewed == [fresh] and stale.failed == 3


@dataclass
class EndOfPartition:
    """What the reader hands over at a partition's end (``_PARTITION_EOF``)."""

    topic_name: str
    at: int
    partition_number: int = 0

    def error(self) -> KafkaError:
        return KafkaError(KafkaError._PARTITION_EOF)

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_number

    def key(self) -> None:
        return None

    def offset(self) -> int:
        return self.at


class EmptyTopicsReader:
    """A restore reader over partitions that hold only their end; counts metadata requests."""

    def __init__(self) -> None:
        self.metadata_requests: list[str] = []
        self.assigned: list[TopicPartition] = []

    def list_topics(self, topic: str, timeout: float) -> None:
        self.metadata_requests.append(topic)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def consume(self, records_max: int, timeout_s: float) -> list[EndOfPartition]:
        ends = [
            EndOfPartition(partition.topic, 40, partition.partition) for partition in self.assigned
        ]
        self.assigned = []
        return ends

    def unassign(self) -> None:
        self.assigned = []


def test_a_reader_asks_for_each_topics_metadata_once_across_partitions() -> None:
    # two metadata round trips a partition were part of a restore's fixed cost (decision 0112)
    reader, known_topics = EmptyTopicsReader(), set[str]()
    for partition in (0, 1, 2):
        (snapshot,) = read_partitions(
            reader,  # type: ignore[arg-type]
            FlakyAdmin(unknown_rounds=0),  # type: ignore[arg-type]
            topics=("t.ledger.balances", "t.ledger.outcomes"),
            partitions=[partition],
            timeout_s=30,
            known_topics=known_topics,
        )
        assert snapshot.records_read == 0
    assert reader.metadata_requests == ["t.ledger.balances", "t.ledger.outcomes"]
    (snapshot,) = read_partitions(
        reader,  # type: ignore[arg-type]
        FlakyAdmin(unknown_rounds=0),  # type: ignore[arg-type]
        topics=("t.ledger.balances",),
        partitions=[3],
        timeout_s=30,
    )
    assert snapshot.records_read == 0
    assert reader.metadata_requests[2:] == ["t.ledger.balances"]  # no set: asked every time


@dataclass
class Stored:
    """A record of one of ``OnePassReader``'s partitions."""

    topic_name: str
    partition_number: int
    at: int

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_number

    def key(self) -> bytes:
        return b"key-%d" % (self.at % 2)

    def value(self) -> bytes:
        return b"%s/%d/%d" % (self.topic_name.encode(), self.partition_number, self.at)

    def headers(self) -> None:
        return None

    def offset(self) -> int:
        return self.at


class OnePassReader(EmptyTopicsReader):
    """Hands over 3 records of every assigned partition, interleaved across them, then the
    partitions' ends; records each ``assign``."""

    def __init__(self) -> None:
        super().__init__()
        self.assignments: list[list[tuple[str, int]]] = []

    def assign(self, partitions: list[TopicPartition]) -> None:
        super().assign(partitions)
        self.assignments.append([(tp.topic, tp.partition) for tp in partitions])

    def consume(self, records_max: int, timeout_s: float) -> list[Any]:
        stored = [Stored(tp.topic, tp.partition, at) for at in range(3) for tp in self.assigned]
        return stored + super().consume(records_max, timeout_s)


def test_small_partitions_are_read_in_one_pass_and_kept_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each partition read apart paid a listing, a first fetch and an end-of-partition fetch
    # (decision 0124); read together, every partition still gets only its own records
    monkeypatch.setattr(restore, "RESTORE_PASS_RECORDS_MAX", 2 * 2 * 40)  # two partitions
    reader = OnePassReader()
    topics = ("t.ledger.balances", "t.ledger.outcomes")
    snapshots = list(
        read_partitions(
            reader,  # type: ignore[arg-type]
            FlakyAdmin(unknown_rounds=0),  # type: ignore[arg-type]
            topics=topics,
            partitions=[1, 4, 7],
            timeout_s=30,
        )
    )
    assert [snapshot.partition for snapshot in snapshots] == [1, 4, 7]
    assert reader.assignments == [
        [(topic, partition) for partition in (1, 4) for topic in topics],
        [(topic, 7) for topic in topics],
    ]
    for snapshot in snapshots:
        assert snapshot.records_read == 6
        for topic in topics:
            prefix = f"{topic}/{snapshot.partition}/".encode()
            assert snapshot.records[topic] == {b"key-0": prefix + b"2", b"key-1": prefix + b"1"}
