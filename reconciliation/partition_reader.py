"""Reading one partition of a topic to a known end, read_committed, without a consumer group.

The importer reads what was imported before (``ledger.statements``) and the account's terms
(``ledger.balances``); the matcher rebuilds its open items after an assignment from its inputs up
to its committed offsets and from the results written before. All reads are bounded by a
deadline; Kafka errors leave as ``InfraError``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER, kafka_error_text
from streamledger.errors import InfraError

CONSUME_RECORDS_MAX: Final = 10_000
CONSUME_WAIT_S: Final = 0.1
LATEST: Final = OffsetSpec.latest()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def committed_end(connection: dict[str, str], topic: str, partition: int, timeout_s: float) -> int:
    """The partition's last stable offset: what a read_committed reader can reach now."""
    admin = AdminClient(dict(connection), logger=KAFKA_CLIENT_LOGGER)
    futures = admin.list_offsets(
        {TopicPartition(topic, partition): LATEST},
        isolation_level=IsolationLevel.READ_COMMITTED,
        request_timeout=timeout_s,
    )
    try:
        return int(next(iter(futures.values())).result(timeout=timeout_s).offset)
    except (KafkaException, TimeoutError) as exc:
        raise InfraError(
            f"listing the end of {topic}[{partition}]: {kafka_error_text(exc)}"
        ) from exc


def read_partition(
    connection: dict[str, str],
    topic: str,
    partition: int,
    *,
    timeout_s: float,
    end_offset: int | None = None,
) -> list[PartitionRecord]:
    """Every committed record of ``topic[partition]`` below ``end_offset`` (default: its last
    stable offset now), in offset order."""
    end = (
        committed_end(connection, topic, partition, timeout_s) if end_offset is None else end_offset
    )
    if end <= 0:
        return []
    consumer = Consumer(
        {
            **connection,
            "group.id": f"streamledger-reader-{uuid.uuid4().hex}",  # required, never joined
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    try:
        return _read_to(consumer, topic, partition, end, time.monotonic() + timeout_s)
    finally:
        consumer.close()


def _read_to(
    consumer: Consumer, topic: str, partition: int, end: int, deadline: float
) -> list[PartitionRecord]:
    consumer.assign([TopicPartition(topic, partition, 0)])
    records: list[PartitionRecord] = []
    while time.monotonic() < deadline:
        for message in consumer.consume(CONSUME_RECORDS_MAX, CONSUME_WAIT_S):
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise InfraError(f"reading {topic}[{partition}]: {error.str()}")
            offset = message.offset()
            if error is None and offset is not None and offset < end:
                records.append(
                    PartitionRecord(
                        offset=offset,
                        key=message.key(),
                        value=message.value(),
                        timestamp_ms=message.timestamp()[1],
                    )
                )
        (position,) = consumer.position([TopicPartition(topic, partition)])
        if position.offset >= end:
            return records
    raise InfraError(f"{topic}[{partition}] not read to offset {end} within the timeout")
