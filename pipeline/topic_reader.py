"""Bounded reads of the ledger topics for the demo and the catch-up waits: offsets and ranges.

Every read is ``read_committed`` and bounded: a range read stops at end offsets taken before it
started, and gives up with ``InfraError`` when the topic stops moving for ``idle_s_max``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from streamledger.errors import InfraError
from streamledger.settings import Settings

REQUEST_TIMEOUT_S = 30.0
CONSUME_BATCH_MAX = 10_000
CONSUME_TIMEOUT_S = 0.5
IDLE_S_MAX = 30.0
RETRY_INTERVAL_S = 0.25  # e.g. a partition whose leader is still being elected

Result = TypeVar("Result")

Offsets = dict[int, int]  # partition -> offset


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def offsets_consumer(settings: Settings, group: str | None = None) -> Consumer:
    return Consumer(
        {
            # an operator's tool: the stack's admin, unless --kafka-principal names another
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": group or f"streamledger-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        },
        logger=KAFKA_CLIENT_LOGGER,
    )


def partition_numbers(
    consumer: Consumer, topic: str, timeout_s: float = REQUEST_TIMEOUT_S
) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise InfraError(f"topic {topic} not found; run `streamledger infra up`")
    return sorted(metadata.partitions)


def retried(call: Callable[[], Result], doing: str, timeout_s: float = REQUEST_TIMEOUT_S) -> Result:
    """``call()``, retried on Kafka errors (a new topic's leaders, a restarting broker) for at
    most ``timeout_s``; then ``InfraError`` naming what it was doing."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise InfraError(f"{doing} failed for {timeout_s:g} s: {exc}") from exc
            time.sleep(RETRY_INTERVAL_S)


def end_offsets(settings: Settings, topic: str, *, timeout_s: float = REQUEST_TIMEOUT_S) -> Offsets:
    """The high watermark of every partition of ``topic`` now."""
    consumer = offsets_consumer(settings)

    def read() -> Offsets:
        return {
            number: consumer.get_watermark_offsets(
                TopicPartition(topic, number), timeout=timeout_s
            )[1]
            for number in partition_numbers(consumer, topic, timeout_s)
        }

    try:
        return retried(read, f"reading the end offsets of {topic}", timeout_s)
    finally:
        consumer.close()


def committed_offsets(
    settings: Settings, group: str, topic: str, *, timeout_s: float = REQUEST_TIMEOUT_S
) -> Offsets:
    """The offsets ``group`` committed on ``topic`` (-1: nothing committed yet)."""
    consumer = offsets_consumer(settings, group)

    def read() -> Offsets:
        numbers = partition_numbers(consumer, topic, timeout_s)
        partitions = [TopicPartition(topic, n) for n in numbers]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=timeout_s)}

    try:
        return retried(read, f"reading the offsets {group} committed on {topic}", timeout_s)
    finally:
        consumer.close()


def records_between(
    settings: Settings,
    topic: str,
    start: Offsets,
    end: Offsets,
    *,
    idle_s_max: float = IDLE_S_MAX,
) -> Iterator[TopicRecord]:
    """The committed records of ``topic`` from ``start`` (inclusive) to ``end`` (exclusive)."""
    pending = {p for p, last in end.items() if last > start.get(p, 0)}
    if not pending:
        return
    consumer = offsets_consumer(settings)
    try:
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in sorted(pending)])
        idle_since = time.monotonic()
        while pending:
            records = consumer.consume(CONSUME_BATCH_MAX, CONSUME_TIMEOUT_S)
            if records:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_s_max:
                raise InfraError(f"{topic} stopped before its end offsets {end}")
            for record in records:
                partition, offset, error = record.partition(), record.offset(), record.error()
                if partition is None or offset is None or partition not in pending:
                    continue
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise InfraError(f"reading {topic}: {error}")
                    if offset >= end[partition]:
                        pending.discard(partition)
                    continue
                if offset >= end[partition]:
                    pending.discard(partition)
                    continue
                yield TopicRecord(
                    partition, offset, record.key() or b"", record.value(), headers_of(record)
                )
    finally:
        consumer.close()


def headers_of(record: object) -> tuple[tuple[str, bytes], ...]:
    raw = getattr(record, "headers", lambda: None)() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
    return tuple(
        (str(key), value.encode() if isinstance(value, str) else (value or b""))
        for key, value in pairs
    )


def lag(committed: Offsets, end: Offsets) -> int:
    """Records between a group's committed offsets and the end offsets, over all partitions."""
    return sum(max(last - max(committed.get(p, 0), 0), 0) for p, last in end.items())
