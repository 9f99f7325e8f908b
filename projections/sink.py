"""``streamledger project``: ledger.events → PostgreSQL, exactly once, in batches.

The loop, top to bottom:

    consume up to batch_records_max records (waiting at most batch_interval_ms)
    → decode (an undecodable event is corrupt state: stop)
    → plan the rows (pure, ``projections.batch``)
    → one DB transaction: check positions + tenant heads, write rows, store next offsets
    → commit the same offsets to Kafka

Commit order: PostgreSQL first, Kafka second. The database transaction is the source of truth
(rows and offsets commit together); Kafka's committed offsets are only for lag monitoring. A
crash between the two leaves Kafka's offsets behind, which is harmless: on assignment this
process seeks to the offsets stored in PostgreSQL, never to Kafka's.

Lag: ``ledger.events`` is written in transactions, so the last records of a partition are commit
markers the consumer never returns; ``high watermark - positions[p]`` would stay at the number of
markers when caught up. The consumer therefore reports end-of-partition (``end_reached``, the
offset past the markers) and the lag is measured from the larger of the two.

Positions: ``positions[p]`` is the offset this process consumed partition ``p`` from, which the
``projection_offsets`` row must still hold when the batch commits. If it does not (a rebalance
gave the partition to someone else who wrote, or a rebuild swapped a new generation in), the
batch is dropped and every assigned partition is re-seeked to the stored offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from projections.batch import plan_batch
from projections.metrics import ProjectionMetrics
from projections.settings import ProjectionSettings
from projections.store import (
    LIVE_SCHEMA,
    BatchTarget,
    PositionMovedError,
    ProjectionDatabaseError,
    prepare_session,
    read_offsets,
    write_batch,
)
from schemas.codec import DecodeError, decode_event
from schemas.model import Event
from streamledger.errors import InfraError, InvariantViolationError
from streamledger.settings import Settings

LOG = logging.getLogger(__name__)
EVENTS_TOPIC = "ledger.events"
CONSUMER_CLOSE_TIMEOUT_S = 10


@dataclass(slots=True)
class BatchOutcome:
    """What one pass of the loop did (for tests, the rebuild and the benchmark)."""

    events: int = 0
    partitions: dict[int, int] = field(default_factory=dict)  # partition -> next offset


def connect_writer(settings: Settings, projection: ProjectionSettings) -> psycopg.Connection[Any]:
    """The projection's own connection: autocommit, explicit transactions only."""
    try:
        connection = psycopg.connect(
            settings.database_dsn,
            autocommit=True,
            options=f"-c statement_timeout={projection.statement_timeout_ms}",
            application_name="streamledger-projection",
        )
        prepare_session(connection)
        return connection
    except psycopg.Error as exc:
        raise ProjectionDatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc


def consumer_config(
    settings: Settings,
    group: str,
    *,
    partition_eof: bool = False,
    session_timeout_ms: int = ProjectionSettings().session_timeout_ms,
) -> dict[str, object]:
    """``partition_eof``: report reaching the end of a partition (read_committed: past the last
    transaction marker, which the consumer position alone never passes)."""
    return {
        "enable.partition.eof": partition_eof,
        "session.timeout.ms": session_timeout_ms,
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "client.id": "streamledger-projection",
    }


class ProjectionSink:
    """Projects ``ledger.events`` into one schema generation. Not thread-safe; one per process.

    ``subscribe=True`` joins the consumer group (the live projection); ``False`` assigns every
    partition itself (a rebuild, which must see the whole log).
    """

    def __init__(
        self,
        settings: Settings,
        projection: ProjectionSettings,
        *,
        schema: str = LIVE_SCHEMA,
        subscribe: bool = True,
        metrics: ProjectionMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.projection = projection
        self.target = BatchTarget(schema, projection.projection_name, settings.topic(EVENTS_TOPIC))
        self.subscribe = subscribe
        self.metrics = metrics or ProjectionMetrics()
        self.positions: dict[int, int] = {}
        self.end_reached: dict[int, int] = {}  # partition -> offset of the last end-of-partition
        self.connection = connect_writer(settings, projection)
        group = projection.consumer_group if subscribe else f"{projection.consumer_group}-{schema}"
        config = consumer_config(
            settings,
            group,
            partition_eof=True,  # the rebuild's stop condition and the lag (module docstring)
            session_timeout_ms=projection.session_timeout_ms,
        )
        self.consumer = Consumer(config)
        self.consumer_started = False

    # ----------------------------------------------------------------- assignment

    def start(self) -> None:
        if self.consumer_started:
            return
        self.consumer_started = True
        if self.subscribe:
            self.consumer.subscribe(
                [self.target.topic], on_assign=self.on_assign, on_revoke=self.on_revoke
            )
            return
        metadata = self.consumer.list_topics(self.target.topic, timeout=30)
        topic = metadata.topics.get(self.target.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise InfraError(f"topic {self.target.topic} not found")
        partitions = [TopicPartition(self.target.topic, p) for p in sorted(topic.partitions)]
        self.on_assign(self.consumer, partitions)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Seek to the offsets stored in PostgreSQL, not to Kafka's committed offsets."""
        stored = read_offsets(self.connection, self.target)
        for partition in partitions:
            offset = stored.get(partition.partition)
            partition.offset = OFFSET_BEGINNING if offset is None else offset
            self.positions[partition.partition] = 0 if offset is None else offset
            self.end_reached.pop(partition.partition, None)
        consumer.assign(partitions)
        self.metrics.set_assigned(len(self.positions))
        LOG.info("assigned %s at %s", self.target.topic, self.positions)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            self.positions.pop(partition.partition, None)
            self.end_reached.pop(partition.partition, None)
        consumer.unassign()
        self.metrics.set_assigned(len(self.positions))

    def reseek(self) -> None:
        """The stored offsets moved under us: continue from what PostgreSQL holds."""
        self.metrics.position_resets.labels(self.target.schema).inc()
        stored = read_offsets(self.connection, self.target)
        for partition in list(self.positions):
            offset = stored.get(partition, 0)
            self.consumer.seek(TopicPartition(self.target.topic, partition, offset))
            self.positions[partition] = offset
            self.end_reached.pop(partition, None)
        LOG.warning("re-seeked %s to the stored offsets %s", self.target.topic, self.positions)

    # ----------------------------------------------------------------- the loop

    def run(self, stop: threading.Event, *, until: Callable[[], bool] | None = None) -> None:
        """Project until ``stop`` is set (or ``until()`` is true after a pass)."""
        self.start()
        while not stop.is_set():
            self.run_once()
            if until is not None and until():
                return

    def run_once(self) -> BatchOutcome:
        """One batch: consume, decode, plan, write with offsets, commit offsets to Kafka."""
        records = self.consumer.consume(
            num_messages=self.projection.batch_records_max,
            timeout=self.projection.batch_interval_ms / 1000,
        )
        events, consumed_from, next_offsets = self.decode(records)
        outcome = BatchOutcome()
        if events:
            try:
                self.write(events, consumed_from, next_offsets)
            except PositionMovedError as exc:
                LOG.warning("%s", exc)
                self.reseek()
                return outcome
            outcome = BatchOutcome(events=len(events), partitions=dict(next_offsets))
        self.observe_lag()
        return outcome

    def decode(
        self, records: Sequence[Message]
    ) -> tuple[list[Event], dict[int, int], dict[int, int]]:
        events: list[Event] = []
        consumed_from: dict[int, int] = {}
        next_offsets: dict[int, int] = {}
        for record in records:
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self.note_end(record)
                    continue
                raise InfraError(f"consuming {self.target.topic}: {error}")
            partition, offset, value = record.partition(), record.offset(), record.value()
            if partition is None or offset is None or value is None:
                raise InvariantViolationError(f"{self.target.topic}: a record without a value")
            position = self.positions.get(partition)
            if position is None or offset < next_offsets.get(partition, position):
                continue  # fetched before a revoke or a seek; PostgreSQL decides, not us
            try:
                events.append(decode_event(value))
            except DecodeError as exc:
                raise InvariantViolationError(
                    f"{self.target.topic}[{partition}]@{offset} is not a ledger event: {exc}"
                ) from exc
            consumed_from.setdefault(partition, position)
            next_offsets[partition] = offset + 1
        return events, consumed_from, next_offsets

    def note_end(self, record: Message) -> None:
        partition, offset = record.partition(), record.offset()
        if partition is not None and offset is not None:
            self.end_reached[partition] = offset

    def write(
        self, events: list[Event], consumed_from: dict[int, int], next_offsets: dict[int, int]
    ) -> None:
        plan = plan_batch(events)
        started = time.perf_counter()
        try:
            write_batch(
                self.connection,
                self.target,
                plan,
                consumed_from=consumed_from,
                next_offsets=next_offsets,
            )
        except psycopg.errors.UniqueViolation as exc:
            raise InvariantViolationError(
                f"projection {self.target.schema}: a row already exists: {exc}"
            ) from exc
        except psycopg.OperationalError as exc:
            raise ProjectionDatabaseError(f"PostgreSQL failed during a batch: {exc}") from exc
        if self.subscribe:  # the live projection: commit time minus each event's submit time
            self.metrics.observe_freshness(events, time.time())
        schema = self.target.schema
        self.metrics.transaction_seconds.labels(schema).observe(time.perf_counter() - started)
        self.metrics.batch_size.labels(schema).observe(len(events))
        self.metrics.events_applied.labels(schema).inc(len(events))
        self.positions.update(next_offsets)
        if plan.last_effective_at_us:
            lag_s = time.time() - plan.last_effective_at_us / 1_000_000
            self.metrics.lag_seconds.labels(schema).set(max(lag_s, 0.0))
        if self.subscribe:
            # After the DB commit, for lag monitoring only (see the module docstring).
            offsets = [TopicPartition(self.target.topic, p, o) for p, o in next_offsets.items()]
            self.consumer.commit(offsets=offsets, asynchronous=True)

    def observe_lag(self) -> None:
        """High watermark minus how far this consumer has read, past the commit markers once it
        reported the end of the partition (0 when caught up)."""
        for partition, position in self.positions.items():
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.target.topic, partition), cached=True
            )
            if high >= 0:
                read_up_to = max(position, self.end_reached.get(partition, -1))
                lag = max(high - read_up_to, 0)
                self.metrics.lag_records.labels(self.target.schema, str(partition)).set(lag)

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.connection.close()
