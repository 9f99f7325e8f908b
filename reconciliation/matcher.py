"""``streamledger reconcile``: the matcher's transactional loop around the pure core.

One group consumer (its own group, ``{prefix}streamledger-reconciler``, range assignment so a
partition number of ``ledger.statements`` and ``ledger.events`` goes to the same instance) and one
transactional producer (``{prefix}streamledger-reconciler-{instance}``). Each batch:

    consume → decode → core (``Reconciler`` per partition) → produce results to the input's
    partition of ``ledger.reconciliation`` → send the input offsets → commit

so a batch's results and the offsets that produced them are visible together or not at all.
On assignment a partition's open items are rebuilt (``_restore``): every result written before
is read back, then the inputs below the committed offsets are replayed without deciding anything
(an item already decided stays decided), merged by record time as they first arrived. On any
Kafka error inside a batch the transaction is aborted and every owned partition is rebuilt from
the committed offsets: a result is never written twice, never lost.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Iterable
from typing import Final

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER, kafka_error_text
from kafka_adapter.security import RECONCILER_PRINCIPAL, client_config
from reconciliation.event_movements import event_movements
from reconciliation.manual_refusal import ManualRefusal, manual_refusal
from reconciliation.matcher_settings import MatcherSettings
from reconciliation.matching import (
    ManualMatch,
    ManualUnmatch,
    Reconciler,
    ReconciliationResult,
)
from reconciliation.metrics import ReconcilerMetrics
from reconciliation.partition_reader import PartitionRecord, read_partition
from reconciliation.records import ReconciliationRecord, decode, encode
from reconciliation.statement import Statement, StatementLine
from reconciliation.topics import RECONCILIATION_TOPIC, STATEMENTS_TOPIC, ensure_topics
from schemas.keys import command_key
from schemas.topics import EVENTS_TOPIC
from streamledger.errors import InfraError, InvariantViolationError
from streamledger.settings import Settings

LOGGER = logging.getLogger("streamledger.reconciler")
OFFSET_UNSET: Final = 0  # a partition without a committed offset starts at its beginning
KAFKA_TIMEOUT_S: Final = 30.0
METRICS_INTERVAL_S: Final = 1.0  # open items are counted at most this often (a scan)


class Matcher:
    def __init__(
        self,
        settings: Settings,
        matcher_settings: MatcherSettings,
        metrics: ReconcilerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = ReconcilerMetrics() if metrics is None else metrics
        self._metrics_observed_at = 0.0
        self.matcher_settings = matcher_settings
        self.connection = client_config(settings, RECONCILER_PRINCIPAL)
        self.statements_topic = settings.topic(STATEMENTS_TOPIC)
        self.events_topic = settings.topic(EVENTS_TOPIC)
        self.results_topic = settings.topic(RECONCILIATION_TOPIC)
        self.reconcilers: dict[int, Reconciler] = {}
        self.results_written = 0
        self._refusals: list[ManualRefusal] = []  # of the record _apply just read (decision 0107)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    # ----------------------------------------------------------------------- the loop

    def run(self, stop: threading.Event) -> None:
        ensure_topics(self.settings)
        self._start_clients()
        try:
            while not stop.is_set():
                self.metrics.heartbeat()
                messages = self.consumer.consume(
                    self.matcher_settings.batch_records_max,
                    self.matcher_settings.batch_wait_ms / 1000,
                )
                if messages:
                    self._process_batch(messages)
        finally:
            self.consumer.close()
            self.producer.flush(KAFKA_TIMEOUT_S)

    def _process_batch(self, messages: list[Message]) -> None:
        positions: dict[tuple[str, int], int] = {}
        results: list[tuple[int, ReconciliationRecord]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise InfraError(f"consumer: {error.str()}")
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            positions[(topic, partition)] = offset + 1
            decided = self._apply(topic, partition, offset, message, restoring=False)
            results.extend((partition, result) for result in decided)
            results.extend((partition, refusal) for refusal in self._refusals)
            self._refusals.clear()
        try:
            self.producer.begin_transaction()
            for partition, result in results:
                self.producer.produce(
                    self.results_topic,
                    value=encode(result),
                    key=command_key(result.tenant_id),
                    partition=partition,
                )
            offsets = [
                TopicPartition(topic, partition, offset)
                for (topic, partition), offset in sorted(positions.items())
            ]
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), KAFKA_TIMEOUT_S
            )
            self.producer.commit_transaction(KAFKA_TIMEOUT_S)  # results and offsets together
        except KafkaException as exc:
            self._abort_and_rebuild(exc)
            return
        self.results_written += len(results)
        self.metrics.committed(
            [result for _, result in results if isinstance(result, ReconciliationResult)]
        )
        if time.monotonic() - self._metrics_observed_at >= METRICS_INTERVAL_S:
            self._metrics_observed_at = time.monotonic()
            self.metrics.observe(list(self.reconcilers.values()))

    def _apply(
        self,
        topic: str,
        partition: int,
        offset: int,
        message: Message | PartitionRecord,
        *,
        restoring: bool,
    ) -> list[ReconciliationResult]:
        """One input record through the partition's core."""
        value = message.value() if isinstance(message, Message) else message.value
        at_ms = message.timestamp()[1] if isinstance(message, Message) else message.timestamp_ms
        if value is None:
            return []
        reconciler = self.reconcilers[partition]
        at_us = at_ms * 1000
        if topic == self.events_topic:
            event = event_movements(value, self.matcher_settings.external_reference_key)
            decided: list[ReconciliationResult] = []
            for movement in event.movements:
                decided += reconciler.add_movement(movement, offset, at_us, restoring=restoring)
            decided += reconciler.advance_ledger_time(
                event.tenant_id, event.effective_at_us, at_us, restoring=restoring
            )
            return decided
        record = decode(value)
        if isinstance(record, StatementLine):
            return reconciler.add_line(record, offset, at_us, restoring=restoring)
        if isinstance(record, Statement):
            return reconciler.add_statement(record, at_us, restoring=restoring)
        if isinstance(record, ManualMatch | ManualUnmatch):
            manual = (
                reconciler.add_manual_match(record, at_us, restoring=restoring)
                if isinstance(record, ManualMatch)
                else reconciler.add_manual_unmatch(record, at_us, restoring=restoring)
            )
            if isinstance(manual, str):
                LOGGER.warning(
                    "%s[%d]@%d: %s by %s refused: %s",
                    topic, partition, offset, type(record).__name__, record.actor, manual,
                )  # fmt: skip
                self.metrics.manual_refused.inc()
                self._refusals.append(
                    manual_refusal(
                        type(record).__name__,
                        (record.tenant_id, record.account_id, record.actor,
                         record.line_ids, record.movement_ids),
                        request_id=f"{partition}:{offset}",
                        reason=manual,
                        refused_at_us=at_us,
                    )
                )  # fmt: skip
                return []
            return manual
        raise InvariantViolationError(f"{topic}[{partition}]@{offset}: a {type(record).__name__}")

    # ----------------------------------------------------------------------- state

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        self.metrics.set_ready(False)
        consumer.assign(self._restore(numbers))  # from the committed offsets, state rebuilt
        self.metrics.set_ready(True)
        self.metrics.observe(list(self.reconcilers.values()))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.reconcilers.pop(tp.partition, None)

    def _restore(self, partitions: Iterable[int]) -> list[TopicPartition]:
        """Rebuild each partition's open items; the input positions to continue from."""
        positions: list[TopicPartition] = []
        for partition in partitions:
            committed = self._committed(partition)
            reconciler = Reconciler(self.matcher_settings.rules())
            self.reconcilers[partition] = reconciler
            timeout_s = self.matcher_settings.restore_timeout_s
            for record in read_partition(
                self.connection, self.results_topic, partition, timeout_s=timeout_s
            ):
                if record.value is not None:
                    result = decode(record.value)
                    if isinstance(result, ManualRefusal):
                        continue  # decides nothing (decision 0107)
                    assert isinstance(result, ReconciliationResult), result
                    reconciler.remember_decided(result)
            inputs = [
                [
                    (record.timestamp_ms, order, record.offset, topic, record)
                    for record in read_partition(
                        self.connection,
                        topic,
                        partition,
                        timeout_s=timeout_s,
                        end_offset=committed[topic],
                    )
                ]
                for order, topic in enumerate((self.statements_topic, self.events_topic))
            ]
            for _, _, offset, topic, record in heapq.merge(*inputs, key=lambda item: item[:3]):
                self._apply(topic, partition, offset, record, restoring=True)
            positions += [TopicPartition(t, partition, offset) for t, offset in committed.items()]
            LOGGER.info("partition %d restored: %d open items", partition, reconciler.open_items)
        return positions

    def _committed(self, partition: int) -> dict[str, int]:
        wanted = [
            TopicPartition(self.statements_topic, partition),
            TopicPartition(self.events_topic, partition),
        ]
        try:
            found = self.consumer.committed(wanted, timeout=KAFKA_TIMEOUT_S)
        except KafkaException as exc:
            raise InfraError(f"reading committed offsets: {kafka_error_text(exc)}") from exc
        return {tp.topic: max(tp.offset, OFFSET_UNSET) for tp in found}

    def _abort_and_rebuild(self, cause: KafkaException) -> None:
        LOGGER.warning("batch aborted (%s): rebuilding from the committed offsets", cause)
        try:
            self.producer.abort_transaction(KAFKA_TIMEOUT_S)
        except KafkaException as exc:
            raise InfraError(f"aborting a batch failed: {kafka_error_text(exc)}") from exc
        for position in self._restore(sorted(self.reconcilers)):
            self.consumer.seek(position)

    # ----------------------------------------------------------------------- clients

    def _start_clients(self) -> None:
        prefix = self.settings.topic_prefix
        self._producer = Producer(
            {
                **self.connection,
                "transactional.id": self.matcher_settings.transactional_id(prefix),
                "transaction.timeout.ms": self.matcher_settings.transaction_timeout_ms,
                "enable.idempotence": True,
                "acks": "all",
            },
            logger=KAFKA_CLIENT_LOGGER,
        )
        try:
            self._producer.init_transactions(KAFKA_TIMEOUT_S)  # fences our previous incarnation
        except KafkaException as exc:
            raise InfraError(f"init_transactions: {kafka_error_text(exc)}") from exc
        self._consumer = Consumer(
            {
                **self.connection,
                "group.id": self.matcher_settings.group_id(prefix),
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",  # co-partitioned inputs together
                "session.timeout.ms": self.matcher_settings.session_timeout_ms,
                "heartbeat.interval.ms": max(100, self.matcher_settings.session_timeout_ms // 5),
            },
            logger=KAFKA_CLIENT_LOGGER,
        )
        self._consumer.subscribe(
            [self.statements_topic, self.events_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )

    @property
    def consumer(self) -> Consumer:
        assert self._consumer is not None
        return self._consumer

    @property
    def producer(self) -> Producer:
        assert self._producer is not None
        return self._producer
