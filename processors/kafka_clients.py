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
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from processors.processor_settings import ProcessorSettings
from streamledger.errors import StreamLedgerError, TopicError

KAFKA_LOGGER = logging.getLogger("streamledger.processor.kafka")
# A transaction of batch_records_max commands holds a few output records per command.
PRODUCER_QUEUE_RECORDS_MAX = 1_000_000
# commit_transaction waits for lingering records, so a long linger adds to every commit; the
# batch's records are produced in one burst and group into requests without it (decision 0017).
PRODUCER_LINGER_MS = 1
# The first retry of a transactional request that the coordinator answers with
# CONCURRENT_TRANSACTIONS (AddOffsetsToTxn right after the previous commit, while its markers
# are still being written). librdkafka's default of 100 ms made every transaction last at least
# ~100 ms; later retries back off exponentially up to retry.backoff.max.ms (decision 0017).
PRODUCER_RETRY_BACKOFF_MS = 5
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
        "retry.backoff.ms": PRODUCER_RETRY_BACKOFF_MS,
        "queue.buffering.max.messages": PRODUCER_QUEUE_RECORDS_MAX,
        "compression.type": "lz4",
    }


class BatchSource(Protocol):
    """The part of ``confluent_kafka.Consumer`` that ``take_batch`` uses (tests fake it)."""

    def consume(self, num_messages: int, timeout: float) -> list[Message]: ...


def take_batch(source: BatchSource, records_max: int, first_wait_s: float) -> list[Message]:
    """Every record already fetched (at most ``records_max``) without waiting; when there is
    none, the first to arrive within ``first_wait_s`` and the records fetched with it.

    ``Consumer.consume(n, timeout)`` returns only once it has ``n`` records or the timeout has
    passed, so asking for a full batch with a wait holds every record of a partial batch for
    the whole timeout. Taken this way a batch is whatever arrived while the caller was busy
    with the previous one: large under load, one record when idle, never an added wait
    (decision 0017)."""
    assert records_max >= 1
    records = source.consume(records_max, 0)
    if records:
        return records
    first = source.consume(1, first_wait_s)
    if not first or records_max == 1:
        return first
    return first + source.consume(records_max - 1, 0)


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
