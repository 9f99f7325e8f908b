"""The processor's Kafka clients, their configuration, and Kafka errors in the project's terms.

One group consumer (read_committed, manual commits through the producer's transaction) and one
transactional producer per process. librdkafka's errors are sorted here into the three cases the
loop acts on::

    StreamLedgerError
    └── ProcessorKafkaError        an error the loop cannot handle by itself (exit non-zero)
        ├── AbortableError         abort the transaction, rewind, retry the batch (bounded)
        └── FencedError            this producer or group member is outdated: rebuild, restore
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from processors.processor_settings import ProcessorSettings
from streamledger.errors import StreamLedgerError, TopicError

KAFKA_LOGGER = logging.getLogger("streamledger.processor.kafka")
# A transaction of batch_records_max commands holds a few output records per command.
PRODUCER_QUEUE_RECORDS_MAX = 1_000_000
PRODUCER_LINGER_MS = 5  # a batch is flushed by commit anyway; this only groups sends
CONSUMER_FETCH_BYTES_MAX = 8 * 1024 * 1024
COOPERATIVE = "cooperative-sticky"  # a rebalance moves (and restores) only moved partitions


class ProcessorKafkaError(StreamLedgerError):
    """A Kafka error the processor cannot recover from by itself."""


class AbortableError(ProcessorKafkaError):
    """The open transaction must be aborted; the batch can be retried."""


class FencedError(ProcessorKafkaError):
    """Another producer took our transactional id, or our group generation is gone."""


def classify(exc: KafkaException, doing: str) -> ProcessorKafkaError:
    """The project's exception for a confluent-kafka error raised while ``doing``."""
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    text = f"{doing}: {error.str() if error is not None else exc}"
    if error is None:
        return ProcessorKafkaError(text)
    if error.code() in (KafkaError._FENCED, KafkaError.INVALID_PRODUCER_EPOCH) or error.fatal():
        return FencedError(text)
    if error.txn_requires_abort():
        return AbortableError(text)
    return ProcessorKafkaError(text)


def is_retriable(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return error is not None and bool(error.retriable())


def consumer_config(processor_settings: ProcessorSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": processor_settings.bootstrap_servers,
        "group.id": processor_settings.group_id,
        "client.id": processor_settings.transactional_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,  # offsets are committed inside each transaction
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": COOPERATIVE,
        "session.timeout.ms": processor_settings.session_timeout_ms,
        "heartbeat.interval.ms": max(100, processor_settings.session_timeout_ms // 5),
        "max.poll.interval.ms": processor_settings.max_poll_interval_ms,
        "max.partition.fetch.bytes": CONSUMER_FETCH_BYTES_MAX,
    }


def producer_config(processor_settings: ProcessorSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": processor_settings.bootstrap_servers,
        "transactional.id": processor_settings.transactional_id,
        "transaction.timeout.ms": processor_settings.transaction_timeout_ms,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": PRODUCER_LINGER_MS,
        "queue.buffering.max.messages": PRODUCER_QUEUE_RECORDS_MAX,
        "compression.type": "lz4",
    }


def new_consumer(processor_settings: ProcessorSettings) -> Consumer:
    return Consumer(consumer_config(processor_settings), logger=KAFKA_LOGGER)


def new_producer(processor_settings: ProcessorSettings) -> Producer:
    """A transactional producer, initialised: this fences our previous incarnation."""
    producer = Producer(producer_config(processor_settings), logger=KAFKA_LOGGER)
    try:
        producer.init_transactions(processor_settings.request_timeout_s)
    except KafkaException as exc:
        raise classify(exc, "init_transactions") from exc
    return producer


def check_partition_counts(admin: AdminClient, topics: tuple[str, ...], timeout_s: float) -> int:
    """The common partition count of ``topics``; ``TopicError`` naming them otherwise.

    Outputs go to the input's partition number, so every ledger topic must have as many
    partitions as ``ledger.commands``.
    """
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise classify(exc, "listing topics") from exc
    counts: Mapping[str, int | None] = {
        topic: len(metadata.topics[topic].partitions)
        if topic in metadata.topics and metadata.topics[topic].error is None
        else None
        for topic in topics
    }
    missing = [topic for topic, count in counts.items() if count is None]
    if missing:
        raise TopicError(
            f"refusing to run: missing topics {', '.join(missing)} (run: streamledger topics apply)"
        )
    distinct = {count for count in counts.values()}
    if len(distinct) != 1:
        listed = ", ".join(f"{topic}={count}" for topic, count in counts.items())
        raise TopicError(
            f"refusing to run: ledger topics need the same partition count, found {listed}"
        )
    count = distinct.pop()
    assert count is not None
    return count
