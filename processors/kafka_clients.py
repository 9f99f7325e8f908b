"""The processor's Kafka clients, their configuration, and Kafka errors in the project's terms.

One group consumer (read_committed, manual commits through the producer's transaction) and one
transactional producer per process, behind ``KafkaTransport`` (the loop's ``CommandTransport``,
``processors.transport``). librdkafka's errors are sorted here into the three cases the loop acts
on, and never leave this module as anything else::

    StreamLedgerError
    └── ProcessorKafkaError        an error the loop cannot handle by itself (exit non-zero)
        ├── AbortableError         abort the transaction, rewind, retry the batch (bounded)
        └── FencedError            this producer or group member is outdated: rebuild, restore
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from kafka_adapter.batches import take_batch
from kafka_adapter.security import label_of_config, refused
from processors.processor_settings import ABORT_RETRIES_MAX, ProcessorSettings
from processors.restore import (
    PartitionSnapshot,
    admin_for,
    read_partitions,
    restore_consumer,
)
from processors.ticks import TICK_KEY, TICK_VALUE
from processors.transport import (
    AssignmentCallback,
    CommandRecord,
    Headers,
    OutputRecord,
    StateReader,
)
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
# The markers of a small transaction take ~1-3 ms: 2 ms instead of 5 cut 300 back-to-back small
# transactions from 5.4-8.6 to 4.5-5.2 ms each (mean, p50 6.6 -> 3.6), load 8-9 (decision 0109).
PRODUCER_RETRY_BACKOFF_MS = 2
CONSUMER_FETCH_BYTES_MAX = 8 * 1024 * 1024
PRODUCE_QUEUE_FULL_WAIT_S = 0.05
PRODUCE_QUEUE_FULL_RETRIES_MAX = 200  # 10 s of a full local queue is an outage, not load
LAG_QUERY_TIMEOUT_S = 1.0  # the committed-offset query of consumer_lag (idle partitions)
COOPERATIVE = "cooperative-sticky"  # a rebalance moves (and restores) only moved partitions
TICK_FLUSH_TIMEOUT_S = 1.0  # the most a tick (or a shutdown) waits for its delivery


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
        **processor_settings.kafka_connection,
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
        **processor_settings.kafka_connection,
        "transactional.id": processor_settings.transactional_id,
        "transaction.timeout.ms": processor_settings.transaction_timeout_ms,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": PRODUCER_LINGER_MS,
        "retry.backoff.ms": PRODUCER_RETRY_BACKOFF_MS,
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


def new_tick_producer(processor_settings: ProcessorSettings) -> Producer:
    """A plain idempotent producer for tick records (``processors.ticks``).

    Not the transactional one: a transaction's commit marker takes an offset of its own, and a
    marker after the last record of ``ledger.commands`` would leave the committed input offset
    one short of the partition's end for good (lag that never drains, a demo that never sees
    "consumed"). A tick needs no atomicity with anything."""
    return Producer(
        {
            **processor_settings.kafka_connection,
            "enable.idempotence": True,
            "linger.ms": 0,
        },
        logger=KAFKA_LOGGER,
    )


def check_partition_counts(
    admin: AdminClient, topics: tuple[str, ...], timeout_s: float, *, principal: str = "User:?"
) -> int:
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
    for topic, description in metadata.topics.items():
        refusal = refused(principal, f"access to topic {topic}", description.error)
        if topic in topics and refusal is not None:
            raise refusal
    missing = [topic for topic, count in counts.items() if count is None]
    if missing:
        # A listing of every topic leaves out the ones the principal may not describe.
        unseen = "" if principal.endswith(":ANONYMOUS") else f", or {principal} may not see them"
        raise TopicError(
            f"refusing to run: missing topics {', '.join(missing)} (run: streamledger topics apply"
            f"{unseen})"
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


class KafkaTransport:
    """The loop's ``CommandTransport`` over confluent-kafka (one instance per processor)."""

    def __init__(self, processor_settings: ProcessorSettings) -> None:
        self.settings = processor_settings
        self.topic = processor_settings.topics.commands
        self.admin = admin_for(processor_settings)
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None
        self.tick_producer: Producer | None = None  # created on the first tick
        self.restore_reader: Consumer | None = None  # made at start(), kept (state_reader)

    def partition_count(self, topics: Sequence[str]) -> int:
        return check_partition_counts(
            self.admin,
            tuple(topics),
            self.settings.request_timeout_s,
            principal=label_of_config(self.settings.kafka_connection),
        )

    def start(
        self,
        on_assign: AssignmentCallback,
        on_revoke: AssignmentCallback,
        on_lost: AssignmentCallback,
    ) -> None:
        self.producer = new_producer(self.settings)  # fences our previous incarnation
        # connects while the group is joined: a reader made at assignment waited ~14 ms for its
        # first connection before any restore request (decision 0124)
        self.restore_reader = restore_consumer(self.settings)
        self.consumer = new_consumer(self.settings)
        self.consumer.subscribe(
            [self.topic],
            on_assign=_partitions_of(on_assign),
            on_revoke=_partitions_of(on_revoke),
            on_lost=_partitions_of(on_lost),
        )

    def take_batch(self, records_max: int, first_wait_s: float) -> Sequence[CommandRecord]:
        return take_batch(self._consumer(), records_max, first_wait_s)

    def seek(self, partition: int, offset: int) -> None:
        try:
            self._consumer().seek(TopicPartition(self.topic, partition, offset))
        except KafkaException as exc:
            raise classify(exc, f"seeking partition {partition}") from exc

    def begin(self) -> None:
        try:
            self._producer().begin_transaction()
        except KafkaException as exc:
            raise classify(exc, "begin_transaction") from exc

    def produce_all(
        self,
        topic: str,
        partition: int,
        records: Sequence[OutputRecord],
        headers: Sequence[Headers | None] | None = None,
    ) -> None:
        # The per-record path is one call (this runs per output record); only a full local
        # queue or an error takes the slow path, for the rest of the list.
        produce = self._producer().produce
        if headers is None:
            for index, (key, value) in enumerate(records):
                try:
                    produce(topic, value, key, partition)
                except (BufferError, KafkaException):
                    self._produce_slowly(topic, partition, records[index:], None)
                    return
            return
        for index, ((key, value), record_headers) in enumerate(zip(records, headers, strict=True)):
            try:
                produce(topic, value, key, partition, headers=record_headers)
            except (BufferError, KafkaException):
                self._produce_slowly(topic, partition, records[index:], headers[index:])
                return

    def _produce_slowly(
        self,
        topic: str,
        partition: int,
        records: Sequence[OutputRecord],
        headers: Sequence[Headers | None] | None,
    ) -> None:
        for index, (key, value) in enumerate(records):
            record_headers = None if headers is None else headers[index]
            self.produce(topic, partition, key, value, headers=record_headers)

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
        producer = self._producer()
        for _ in range(PRODUCE_QUEUE_FULL_RETRIES_MAX):
            try:
                producer.produce(
                    topic, value, key, partition, headers=headers, timestamp=timestamp_ms
                )
                return
            except BufferError:
                producer.poll(PRODUCE_QUEUE_FULL_WAIT_S)  # let librdkafka drain its queue
            except KafkaException as exc:
                raise classify(exc, f"producing to {topic}") from exc
        raise AbortableError(f"producer queue stayed full while producing to {topic}")

    def send_offsets(self, positions: Mapping[int, int]) -> None:
        offsets = [TopicPartition(self.topic, p, offset) for p, offset in positions.items()]
        metadata = self._consumer().consumer_group_metadata()
        producer = self._producer()
        self._with_retries(
            "send_offsets_to_transaction",
            lambda: producer.send_offsets_to_transaction(
                offsets, metadata, self.settings.request_timeout_s
            ),
            self.settings.commit_retries_max,
        )

    def commit(self) -> None:
        producer = self._producer()
        timeout_s = self.settings.transaction_timeout_ms / 1000
        self._with_retries(
            "commit_transaction",
            lambda: producer.commit_transaction(timeout_s),
            self.settings.commit_retries_max,
        )

    def _with_retries(self, doing: str, call: Callable[[], None], retries_max: int) -> None:
        for attempt in range(retries_max + 1):
            try:
                call()
                return
            except KafkaException as exc:
                if is_retriable(exc) and attempt < retries_max:
                    KAFKA_LOGGER.warning("%s: retriable error, retrying: %s", doing, exc)
                    continue  # librdkafka allows retrying the same call after a retriable error
                raise classify(exc, doing) from exc

    def abort(self) -> None:
        # A retriable error (a timeout while the broker restarts: "retry call to resume") is
        # asked again, ABORT_RETRIES_MAX times (the watchdog's bound counts them:
        # ``check_relations``); before, the processor exited on the first one and the
        # supervisor restarted it (the chaos test, seed 202, in CI).
        producer = self._producer()
        timeout_s = self.settings.transaction_timeout_ms / 1000
        self._with_retries(
            "abort_transaction", lambda: producer.abort_transaction(timeout_s), ABORT_RETRIES_MAX
        )

    def state_reader(self) -> StateReader:
        """A restore through the reader made at ``start`` (connected by the first assignment),
        which the transport keeps and closes; its ``close`` leaves the reader open."""
        if self.restore_reader is None:
            self.restore_reader = restore_consumer(self.settings)
        return KafkaStateReader(self.restore_reader, self.admin, self.settings, closes_reader=False)

    def consumer_lag(self) -> dict[int, int]:
        """High watermark - position per assigned partition, from what the client knows.

        The high watermark is librdkafka's cached one, which every fetch response updates (also
        for a partition with nothing new): asking the broker instead (``cached=False``) queues
        a ListOffsets request behind the consumer's long-polling fetch on the same connection,
        ~0.15-0.5 s per partition, and that stalled the loop every ``LAG_UPDATE_INTERVAL_S``
        (1.8 s of a 7.8 s bench run, bench/README.md 2026-12-06)."""
        if self.consumer is None:
            return {}
        consumer = self.consumer
        try:
            positions = consumer.position(consumer.assignment())
            # Nothing consumed yet since the assignment (an idle partition): its committed
            # offset is where the next transaction would start.
            unknown = [tp for tp in positions if tp.offset < 0]
            if unknown:
                committed = consumer.committed(unknown, timeout=LAG_QUERY_TIMEOUT_S)
                positions = [tp for tp in positions if tp.offset >= 0] + committed
        except KafkaException as exc:  # monitoring only: try again next interval
            KAFKA_LOGGER.debug("positions for the lag: %s", exc)
            return {}
        lag: dict[int, int] = {}
        for tp in positions:
            if tp.offset < 0:  # no committed offset either: nothing to measure from
                continue
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException as exc:  # monitoring only: try again next interval
                KAFKA_LOGGER.debug("high watermark of partition %s: %s", tp.partition, exc)
                continue
            if high >= 0:  # not fetched yet: unknown until the first fetch response
                lag[tp.partition] = max(0, high - tp.offset)
        return lag

    def append_ticks(self, partitions: Sequence[int], timestamp_ms: int) -> None:
        if self.tick_producer is None:
            self.tick_producer = new_tick_producer(self.settings)
        try:
            self.tick_producer.poll(0)  # serve earlier delivery reports first
            undelivered = len(self.tick_producer)
            for partition in partitions:
                self.tick_producer.produce(
                    self.topic,
                    TICK_VALUE,
                    TICK_KEY,
                    partition,
                    timestamp=timestamp_ms,
                    on_delivery=_tick_delivered,
                )
        except (BufferError, KafkaException) as exc:
            raise ProcessorKafkaError(f"producing tick records: {exc}") from exc
        # Not waited for: the loop (and a SIGTERM) must not wait on the broker for a tick. A
        # flush here cost a round trip (~0.1 s) each expiry_tick_interval_ms while deadlines
        # passed (bench/README.md 2026-12-06). Undelivered ticks stay queued and go out when
        # the broker answers; one more is harmless.
        if undelivered:
            KAFKA_LOGGER.warning("%d tick records not delivered yet (still queued)", undelivered)

    def close(self, *, flush_timeout_s: float) -> None:
        if self.tick_producer is not None:
            self.tick_producer.flush(min(flush_timeout_s, TICK_FLUSH_TIMEOUT_S))
            self.tick_producer = None
        if self.producer is not None:
            try:
                self.producer.flush(flush_timeout_s)
            except KafkaException as exc:  # a fenced producer raises its fatal error here
                KAFKA_LOGGER.warning("closing the producer: %s", exc)
            self.producer = None
        if self.consumer is not None:
            self.consumer.close()  # leaves the group: the partitions move at once
            self.consumer = None
        if self.restore_reader is not None:
            self.restore_reader.close()
            self.restore_reader = None

    def _producer(self) -> Producer:
        assert self.producer is not None, "start() first"
        return self.producer

    def _consumer(self) -> Consumer:
        assert self.consumer is not None, "start() first"
        return self.consumer


class KafkaStateReader:
    """A group-less read_committed consumer for restores (``processors.restore``)."""

    def __init__(
        self,
        reader: Consumer,
        admin: AdminClient,
        processor_settings: ProcessorSettings,
        *,
        closes_reader: bool = True,
    ) -> None:
        self.reader = reader
        self.closes_reader = closes_reader  # False: the reader is its transport's, kept open
        self.admin = admin
        self.processor_settings = processor_settings
        self.timeout_s = processor_settings.restore_timeout_s
        # whose metadata the reader has (``read_partition``): one restore's, asked again by the
        # next (a kept reader's cached metadata can have expired by then)
        self.known_topics: set[str] = set()

    def read_partition(
        self, topics: Sequence[str], partition: int, *, header_name: str | None
    ) -> PartitionSnapshot:
        """``read_partitions`` of one partition: its one snapshot."""
        (snapshot,) = self.read_partitions(topics, [partition], header_name=header_name)
        return snapshot

    def read_partitions(
        self, topics: Sequence[str], partitions: Sequence[int], *, header_name: str | None
    ) -> Iterator[PartitionSnapshot]:
        return read_partitions(
            self.reader,
            self.admin,
            topics=topics,
            partitions=partitions,
            timeout_s=self.timeout_s,
            header_name=header_name,
            renew_admin=self._renew_admin,
            known_topics=self.known_topics,
        )

    def _renew_admin(self) -> AdminClient:
        """A new admin client (fresh metadata) after a listing refused while leadership moved."""
        self.admin = admin_for(self.processor_settings)
        return self.admin

    def close(self) -> None:
        if self.closes_reader:
            self.reader.close()


def _tick_delivered(error: KafkaError | None, message: Message) -> None:
    if error is not None:  # the next interval appends another tick
        KAFKA_LOGGER.warning("tick record to partition %s: %s", message.partition(), error.str())


def _partitions_of(
    callback: AssignmentCallback,
) -> Callable[[Consumer, list[TopicPartition]], None]:
    """A confluent-kafka rebalance callback calling ``callback`` with partition numbers."""

    def rebalanced(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        callback([tp.partition for tp in partitions])

    return rebalanced
