"""The transactional processor loop: consume a batch → decode → decide → produce → commit.

One group consumer and one transactional producer per process. Each batch of commands becomes
exactly one Kafka transaction holding every output (events, outcomes, state records, outcome
tombstones, dead letters) and the input offsets, so a batch's effects are all visible or none is.
Outputs go to the input's partition number; a partition's state lives in memory, is rebuilt from
the compacted topics when the partition is assigned (``processors.restore``) and dropped when it
is revoked.

Failure handling, all bounded:
- abortable error → abort, drop the batch's staged state, seek back to the batch's first
  offsets (= the committed offsets), retry; more than ``commit_retries_max`` in a row → exit;
- fenced (another producer took our transactional id, or our group generation is gone) → drop
  every partition's state, build a new producer, restore the assigned partitions, seek to the
  committed offsets;
- SIGTERM / SIGINT → the open batch finishes (or aborts), the consumer leaves the group.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import threading
import time
from collections.abc import Iterable, Sequence

from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from processors import dead_letters
from processors.kafka_clients import (
    AbortableError,
    FencedError,
    check_partition_counts,
    classify,
    is_retriable,
    new_consumer,
    new_producer,
    take_batch,
)
from processors.metrics import ProcessorMetrics
from processors.partition_ledger import (
    OUTCOME_TIMES_HEADER,
    PartitionLedger,
    ReplyHeaders,
    restore_ledger,
)
from processors.processor_settings import ProcessorSettings
from processors.restore import admin_for, restore_consumer
from processors.routing import misrouting
from processors.ticks import TICK_KEY, TICK_VALUE, is_tick, partitions_to_tick
from schemas.codec import DecodeError, decode_command

LOGGER = logging.getLogger("streamledger.processor")
# Consumer lag asks the broker for each assigned partition's high watermark (cached offsets stay
# empty without statistics.interval.ms): at most once per interval, each query bounded.
LAG_UPDATE_INTERVAL_S = 5.0
LAG_QUERY_TIMEOUT_S = 1.0
PRODUCE_QUEUE_FULL_WAIT_S = 0.05
PRODUCE_QUEUE_FULL_RETRIES_MAX = 200  # 10 s of a full local queue is an outage, not load
# The processor allocates a few short-lived records per command and keeps a large live state:
# with CPython's default youngest-generation threshold (700 allocations) the collector runs every
# few commands and its older-generation passes walk the state. 10-15 % of the CPU per command
# in bench/bench_core.py (same run: 6.6k → 7.2-7.5k commands/s on the full path).
GC_THRESHOLDS = (50_000, 20, 100)  # (youngest, middle, oldest), see gc.set_threshold


def tune_garbage_collection() -> None:
    """Fewer collector passes for the processor's allocation pattern (process-wide)."""
    gc.set_threshold(*GC_THRESHOLDS)


class Processor:
    """The loop and the state of the partitions this process owns."""

    def __init__(self, processor_settings: ProcessorSettings, metrics: ProcessorMetrics) -> None:
        self.settings = processor_settings
        self.metrics = metrics
        self.topics = processor_settings.topics
        self.ledgers: dict[int, PartitionLedger] = {}
        self.admin = admin_for(processor_settings)
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self._lag_updated_at = 0.0
        self.partition_count = 0  # of every ledger topic; set by check_topics
        self._last_tick_us: dict[int, int] = {}

    # ------------------------------------------------------------------ the loop

    def check_topics(self) -> None:
        """Refuse to run unless every ledger topic has the same partition count."""
        self.partition_count = check_partition_counts(
            self.admin, self.topics.all(), self.settings.request_timeout_s
        )

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set. Raises on an error it cannot handle.

        Call ``check_topics`` first."""
        self._arm_watchdog(self.settings.stall_timeout_s)
        self._start_clients()
        aborts_in_a_row = 0
        try:
            while not stop.is_set():
                self.metrics.loop_heartbeat()
                self._arm_watchdog(self.settings.stall_timeout_s)
                # At the loop's own pace: whatever arrived during the last commit (decision 0017).
                messages = take_batch(
                    self._consumer(),
                    self.settings.batch_records_max,
                    self.settings.batch_interval_ms / 1000,
                )
                try:
                    if messages:
                        self._process_batch(messages)
                    aborts_in_a_row = 0
                except AbortableError as exc:
                    aborts_in_a_row += 1
                    if aborts_in_a_row > self.settings.commit_retries_max:
                        raise
                    self._abort_and_rewind(messages, exc)
                except FencedError as exc:
                    self._rebuild_after_fencing(exc)
                self._tick_idle_partitions()
                self._update_lag()
        finally:
            self._arm_watchdog(self.settings.shutdown_timeout_s + self.settings.stall_timeout_s)
            self._close_clients(flush_timeout_s=self.settings.shutdown_timeout_s)
            faulthandler.cancel_dump_traceback_later()

    @staticmethod
    def _arm_watchdog(timeout_s: int) -> None:
        """Exit if the next step does not finish within ``timeout_s``.

        Every client call here is bounded, but a librdkafka call that blocks past its own
        timeout (seen once in the chaos suite after a broker restart) would stall the partitions
        this member owns while its heartbeats keep them assigned. Then the only safe move is the
        one the design already survives: crash. faulthandler's watchdog thread needs no GIL; it
        prints every thread's stack to stderr (the log says where it hung) and exits with status
        1, the supervisor restarts us, and the restart fences this incarnation and aborts its
        open transaction."""
        faulthandler.dump_traceback_later(timeout_s, exit=True)

    def _start_clients(self) -> None:
        self.producer = new_producer(self.settings)  # fences our previous incarnation
        self.consumer = new_consumer(self.settings)
        self.consumer.subscribe(
            [self.topics.commands],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _process_batch(self, messages: Sequence[Message]) -> None:
        self._begin()
        positions: dict[int, int] = {}
        touched: set[int] = set()
        for message in messages:
            error = message.error()
            if error is not None:
                LOGGER.warning("consumer: %s", error.str())
                continue
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None  # set on every fetched record
            if partition not in self.ledgers:
                continue  # revoked or lost since it was fetched; its new owner reads it
            positions[partition] = offset + 1
            self._decide_one(message, partition, touched)
        for partition in touched:
            self._produce_outputs(partition, self.ledgers[partition])
        self.metrics.commands_consumed.inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        # Commit order: (1) every output record of the batch was produced into the open
        # transaction above; (2) the input positions join that same transaction; (3) commit
        # makes outputs and positions visible together. A crash before (3) aborts all of it
        # and the next owner re-reads the batch from the committed offsets.
        started = time.perf_counter()
        offsets = [TopicPartition(self.topics.commands, p, o) for p, o in positions.items()]
        self._send_offsets(offsets)
        self._commit()
        self.metrics.commit_latency.observe(time.perf_counter() - started)
        self.metrics.transactions.inc()
        for partition in touched:
            self.ledgers[partition].confirm()  # the staged state is now the committed state

    def _decide_one(self, message: Message, partition: int, touched: set[int]) -> None:
        value, key = message.value(), message.key()
        _, timestamp_ms = message.timestamp()
        if value is None:
            self._dead_letter(message, dead_letters.KIND_MISSING_VALUE, "the value is null")
            return
        if is_tick(key, value):
            self.ledgers[partition].tick(timestamp_ms * 1000)
            touched.add(partition)
            return
        try:
            command = decode_command(value)
        except DecodeError as exc:
            self._dead_letter(message, exc.kind, str(exc))
            return
        # Routing (decision 0026): only the partition murmur2 gives a tenant decides for it;
        # anything else would start a second chain for the tenant on another partition.
        wrong = misrouting(key, partition, command.tenant_id, self.partition_count)
        if wrong is not None:
            self._dead_letter(
                message, wrong.kind, wrong.message, expected_partition=wrong.expected_partition
            )
            return
        offset = message.offset()
        assert offset is not None
        self.ledgers[partition].decide(command, timestamp_ms * 1000, offset)
        touched.add(partition)

    # ------------------------------------------------------------------ producing

    def _produce_outputs(self, partition: int, ledger: PartitionLedger) -> None:
        outputs = ledger.staged_outputs()
        self._produce_all(self.topics.events, outputs.events, partition)
        # outcomes carry their times in a header, so a restore need not decode them
        outcome_headers: list[ReplyHeaders | None] = [
            None if times is None else [(OUTCOME_TIMES_HEADER, times)]
            for times in outputs.outcome_times
        ]
        self._produce_with_headers(
            self.topics.outcomes, outputs.outcomes, outcome_headers, partition
        )
        self._produce_all(self.topics.balances, outputs.states, partition)
        self._produce_with_headers(
            self.topics.replies, outputs.replies, outputs.reply_headers, partition
        )
        outputs.count_into(self.metrics)

    def _produce_with_headers(
        self,
        topic: str,
        records: Sequence[tuple[bytes, bytes | None]],
        headers: Sequence[ReplyHeaders | None],
        partition: int,
    ) -> None:
        """Like ``_produce_all``, each record with its own headers."""
        produce = self._producer().produce
        for index, ((key, value), record_headers) in enumerate(zip(records, headers, strict=True)):
            try:
                produce(topic, value, key, partition, headers=record_headers)
            except (BufferError, KafkaException):  # the slow path, for the rest of the batch
                for (later_key, later_value), later_headers in zip(
                    records[index:], headers[index:], strict=True
                ):
                    self._produce(topic, later_key, later_value, partition, later_headers)
                return

    def _produce_all(
        self, topic: str, records: Sequence[tuple[bytes, bytes | None]], partition: int
    ) -> None:
        """Produce records in order; the per-record path is one call (this runs per output
        record), and only a full local queue or an error takes the slow path."""
        produce = self._producer().produce
        for index, (key, value) in enumerate(records):
            try:
                produce(topic, value, key, partition)
            except (BufferError, KafkaException):
                for later_key, later_value in records[index:]:
                    self._produce(topic, later_key, later_value, partition)
                return

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        partition: int,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        producer = self._producer()
        for _ in range(PRODUCE_QUEUE_FULL_RETRIES_MAX):
            try:
                producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:
                producer.poll(PRODUCE_QUEUE_FULL_WAIT_S)  # let librdkafka drain its queue
            except KafkaException as exc:
                raise classify(exc, f"producing to {topic}") from exc
        raise AbortableError(f"producer queue stayed full while producing to {topic}")

    def _dead_letter(
        self, message: Message, kind: str, text: str, *, expected_partition: int | None = None
    ) -> None:
        _, timestamp_ms = message.timestamp()
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        headers = message.headers()
        letter = dead_letters.dead_letter(
            kind=kind,
            message=text,
            topic=self.topics.commands,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            key=message.key(),
            value=message.value(),
            original_headers=list(headers.items()) if isinstance(headers, dict) else headers,
            expected_partition=expected_partition,
        )
        try:
            self._producer().produce(
                self.topics.commands_dlq,
                letter.value,
                letter.key,
                partition,
                headers=list(letter.headers),
                timestamp=letter.timestamp_ms,
            )
        except KafkaException as exc:
            raise classify(exc, "producing a dead letter") from exc
        self.metrics.dlq_records.labels(kind).inc()
        LOGGER.warning(
            "dead letter: %s[%d]@%d: %s: %s",
            self.topics.commands,
            partition,
            offset,
            kind,
            text,
        )

    # ------------------------------------------------------------------ transactions

    def _begin(self) -> None:
        try:
            self._producer().begin_transaction()
        except KafkaException as exc:
            raise classify(exc, "begin_transaction") from exc

    def _send_offsets(self, offsets: list[TopicPartition]) -> None:
        metadata = self._consumer().consumer_group_metadata()
        self._with_retries(
            "send_offsets_to_transaction",
            lambda: self._producer().send_offsets_to_transaction(
                offsets, metadata, self.settings.request_timeout_s
            ),
        )

    def _commit(self) -> None:
        timeout_s = self.settings.transaction_timeout_ms / 1000
        self._with_retries(
            "commit_transaction", lambda: self._producer().commit_transaction(timeout_s)
        )

    def _with_retries(self, doing: str, call: object) -> None:
        assert callable(call)
        for attempt in range(self.settings.commit_retries_max + 1):
            try:
                call()
                return
            except KafkaException as exc:
                if is_retriable(exc) and attempt < self.settings.commit_retries_max:
                    LOGGER.warning("%s: retriable error, retrying: %s", doing, exc)
                    continue  # librdkafka allows retrying the same call after a retriable error
                raise classify(exc, doing) from exc

    def _abort_and_rewind(self, messages: Sequence[Message], cause: Exception) -> None:
        """Abort, forget the batch's staged state, seek back to the batch's first offsets."""
        LOGGER.warning("aborting the transaction: %s", cause)
        self.metrics.aborts.labels("abortable_error").inc()
        try:
            self._producer().abort_transaction(self.settings.transaction_timeout_ms / 1000)
        except KafkaException as exc:
            raise classify(exc, "abort_transaction") from exc
        for ledger in self.ledgers.values():
            ledger.rollback()
        first: dict[int, int] = {}
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if message.error() is None and partition is not None and offset is not None:
                first.setdefault(partition, offset)
        for partition, offset in first.items():
            try:
                self._consumer().seek(TopicPartition(self.topics.commands, partition, offset))
            except KafkaException as exc:  # no longer ours: the coming rebalance revokes it
                LOGGER.warning("cannot rewind partition %d: %s", partition, exc)

    def _rebuild_after_fencing(self, cause: Exception) -> None:
        """Drop all state and both clients; the rejoin assigns and restores partitions afresh.

        A fenced process cannot tell which of its partitions are still its own, so it leaves
        the group (dropping every partition's state) and joins again as a new member."""
        LOGGER.error("fenced, rebuilding the clients and the state: %s", cause)
        self.metrics.producer_rebuilds.inc()
        self.metrics.aborts.labels("fenced").inc()
        self._close_clients(flush_timeout_s=0)
        self._start_clients()

    # ------------------------------------------------------------------ assignment

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._restore([tp.partition for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The loop never calls consume() with a transaction open, so nothing is in flight here.
        for tp in partitions:
            self.ledgers.pop(tp.partition, None)
            with contextlib.suppress(KeyError):  # no lag was reported for it yet
                self.metrics.consumer_lag.remove(str(tp.partition))
        self._report_assignment()
        LOGGER.info("revoked partitions %s", sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Our group membership expired (a long pause): another member may own them already.
        LOGGER.warning("lost partitions %s", sorted(tp.partition for tp in partitions))
        self._on_revoke(consumer, partitions)

    def _restore(self, partitions: Iterable[int]) -> None:
        self.metrics.ready = False
        reader = restore_consumer(self.settings)
        try:
            for partition in sorted(partitions):
                self._arm_watchdog(self.settings.stall_timeout_s)  # each restore is bounded
                self.metrics.loop_heartbeat()
                ledger, snapshot = restore_ledger(reader, self.admin, self.settings, partition)
                self.ledgers[partition] = ledger
                self.metrics.restore_duration.observe(snapshot.duration_s)
                self.metrics.restore_records.inc(snapshot.records_read)
        finally:
            reader.close()
        self._report_assignment()

    def _report_assignment(self) -> None:
        self.metrics.assigned_partitions.set(len(self.ledgers))
        self.metrics.live_idempotency_keys.set(
            sum(ledger.live_idempotency_keys() for ledger in self.ledgers.values())
        )
        self.metrics.ready = bool(self.ledgers)

    # ------------------------------------------------------------------ upkeep

    def _tick_idle_partitions(self) -> None:
        """Append a tick record to each owned partition whose earliest pending deadline has
        passed by the wall clock (``processors.ticks``): the tick, once read back like any
        command record, expires what is due, so expiry needs no other tenant's traffic.

        Its own short transaction between batches (nothing else is open here); a failure is
        only logged: the next interval tries again, and the log stays the only input."""
        if not self.ledgers or self.producer is None:
            return
        now_us = int(time.time() * 1_000_000)  # the shell may read the clock; the core never
        due = partitions_to_tick(
            {partition: ledger.next_deadline_us() for partition, ledger in self.ledgers.items()},
            self._last_tick_us,
            now_us=now_us,
            interval_us=self.settings.expiry_tick_interval_ms * 1000,
        )
        if not due:
            return
        try:
            self.producer.begin_transaction()
            for partition in due:
                self.producer.produce(
                    self.topics.commands,
                    TICK_VALUE,
                    TICK_KEY,
                    partition,
                    timestamp=now_us // 1000,  # kept only if the topic is CreateTime
                )
            self.producer.commit_transaction(self.settings.transaction_timeout_ms / 1000)
        except KafkaException as exc:
            LOGGER.warning("tick records for partitions %s: %s", due, exc)
            with contextlib.suppress(KafkaException):
                self.producer.abort_transaction(self.settings.transaction_timeout_ms / 1000)
            return
        for partition in due:
            self._last_tick_us[partition] = now_us
        self.metrics.ticks.inc(len(due))

    def _update_lag(self) -> None:
        now = time.monotonic()
        if self.consumer is None or now - self._lag_updated_at < LAG_UPDATE_INTERVAL_S:
            return
        self._lag_updated_at = now
        positions = self.consumer.position(self.consumer.assignment())
        # Nothing consumed yet since the assignment (an idle partition): its committed offset
        # is where the next transaction would start.
        unknown = [tp for tp in positions if tp.offset < 0]
        if unknown:
            try:
                committed = self.consumer.committed(unknown, timeout=LAG_QUERY_TIMEOUT_S)
            except KafkaException as exc:  # monitoring only: try again next interval
                LOGGER.debug("committed offsets for the lag: %s", exc)
                committed = []
            positions = [tp for tp in positions if tp.offset >= 0] + committed
        for tp in positions:
            if tp.offset < 0:  # no committed offset either: nothing to measure from
                continue
            try:
                _, high = self.consumer.get_watermark_offsets(
                    tp, timeout=LAG_QUERY_TIMEOUT_S, cached=False
                )
            except KafkaException as exc:  # monitoring only: try again next interval
                LOGGER.debug("high watermark of partition %s: %s", tp.partition, exc)
                continue
            if high >= 0:
                self.metrics.consumer_lag.labels(str(tp.partition)).set(max(0, high - tp.offset))

    def _close_clients(self, *, flush_timeout_s: float) -> None:
        if self.producer is not None:
            self.producer.flush(flush_timeout_s)
            self.producer = None
        if self.consumer is not None:
            self.consumer.close()  # leaves the group: the partitions move at once
            self.consumer = None
        self.ledgers.clear()
        self._report_assignment()

    def _producer(self) -> Producer:
        assert self.producer is not None
        return self.producer

    def _consumer(self) -> Consumer:
        assert self.consumer is not None
        return self.consumer
