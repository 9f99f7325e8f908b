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

Kafka is reached only through a ``CommandTransport`` (``processors.transport``, decision 0031):
``KafkaTransport`` in production, ``MemoryTransport`` in the loop's unit tests. Offsets only move
forward: sending a partition's input position at or below the one this owner last committed
there would decide committed commands a second time, and stops the process
(``InvariantViolationError``).
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import threading
import time
from collections.abc import Iterable, Sequence

from processors import dead_letters
from processors.kafka_clients import (
    AbortableError,
    FencedError,
    KafkaTransport,
    ProcessorKafkaError,
)
from processors.metrics import ProcessorMetrics
from processors.partition_ledger import (
    OUTCOME_TIMES_HEADER,
    PartitionLedger,
    ReplyHeaders,
    ledger_from_snapshot,
)
from processors.processor_settings import ProcessorSettings
from processors.routing import misrouting
from processors.ticks import is_tick, partitions_to_tick
from processors.transport import CommandRecord, CommandTransport
from schemas.codec import DecodeError, decode_command
from schemas.signing_keys import decode_signing_key_command, is_signing_key_command
from streamledger.errors import InvariantViolationError

LOGGER = logging.getLogger("streamledger.processor")
# Consumer lag from the client's cached high watermarks (``KafkaTransport.consumer_lag``).
LAG_UPDATE_INTERVAL_S = 5.0
# The processor allocates a few short-lived records per command and keeps a large live state:
# with CPython's default youngest-generation threshold (700 allocations) the collector runs every
# few commands and its older-generation passes walk the state. 10-15 % of the CPU per command
# in bench/bench_core.py (same run: 6.6k → 7.2-7.5k commands/s on the full path).
GC_THRESHOLDS = (50_000, 20, 100)  # (youngest, middle, oldest), see gc.set_threshold
# The loop re-arms its watchdog at most this often: each re-arm starts faulthandler's watchdog
# thread afresh (40 µs of wall time quiet, ~0.2 ms loaded, per loop turn: ~7 commands a turn at
# 500/s). The watchdog then fires between stall_timeout_s - 1 and stall_timeout_s after the loop
# last moved, which stall_timeout_s's bound (it exceeds the slowest step) allows.
WATCHDOG_REARM_INTERVAL_S = 1.0


def tune_garbage_collection() -> None:
    """Fewer collector passes for the processor's allocation pattern (process-wide)."""
    gc.set_threshold(*GC_THRESHOLDS)


class Processor:
    """The loop and the state of the partitions this process owns."""

    def __init__(
        self,
        processor_settings: ProcessorSettings,
        metrics: ProcessorMetrics,
        transport: CommandTransport | None = None,
    ) -> None:
        self.settings = processor_settings
        self.metrics = metrics
        self.topics = processor_settings.topics
        self.transport = KafkaTransport(processor_settings) if transport is None else transport
        self.ledgers: dict[int, PartitionLedger] = {}
        # per owned partition, the input position this owner last committed (offsets only move
        # forward); dropped with the partition
        self.committed_positions: dict[int, int] = {}
        self._lag_updated_at = 0.0
        self.partition_count = 0  # of every ledger topic; set by check_topics
        self._last_tick_us: dict[int, int] = {}
        self._watchdog_armed_at = float("-inf")  # time.monotonic() of the last re-arm

    # ------------------------------------------------------------------ the loop

    def check_topics(self) -> None:
        """Refuse to run unless every ledger topic has the same partition count."""
        self.partition_count = self.transport.partition_count(self.topics.all())

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set. Raises on an error it cannot handle.

        Call ``check_topics`` first."""
        self._arm_watchdog(self.settings.stall_timeout_s)
        self._start_clients()
        aborts_in_a_row = 0
        try:
            while not stop.is_set():
                self.metrics.loop_heartbeat()
                self._keep_watchdog_armed()
                # At the loop's own pace: whatever arrived during the last commit (decision 0017).
                messages = self.transport.take_batch(
                    self.settings.batch_records_max, self.settings.batch_interval_ms / 1000
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

    def _keep_watchdog_armed(self) -> None:
        """Re-arm the watchdog for ``stall_timeout_s`` unless that was done within the last
        ``WATCHDOG_REARM_INTERVAL_S``."""
        now = time.monotonic()
        if now - self._watchdog_armed_at >= WATCHDOG_REARM_INTERVAL_S:
            self._arm_watchdog(self.settings.stall_timeout_s)
            self._watchdog_armed_at = now

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
        # a new producer fences our previous incarnation; the new member joins the group
        self.transport.start(self._on_assign, self._on_revoke, self._on_lost)

    def _process_batch(self, messages: Sequence[CommandRecord]) -> None:
        self.transport.begin()
        positions: dict[int, int] = {}
        consumed: dict[int, int] = {}
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
            consumed[partition] = consumed.get(partition, 0) + 1
            self._decide_one(message, partition, touched)
        for partition in touched:
            self._produce_outputs(partition, self.ledgers[partition])
        self.metrics.commands_consumed.inc(len(messages))
        for partition, count in consumed.items():
            self.metrics.partition_commands_consumed.labels(str(partition)).inc(count)
        self.metrics.batch_size.observe(len(messages))
        # Commit order: (1) every output record of the batch was produced into the open
        # transaction above; (2) the input positions join that same transaction, each past the
        # last one committed; (3) commit makes outputs and positions visible together. A crash
        # before (3) aborts all of it and the next owner re-reads the batch from the committed
        # offsets.
        started = time.perf_counter()
        self._check_offsets_move_forward(positions)
        self.transport.send_offsets(positions)
        self.transport.commit()
        self.committed_positions.update(positions)
        self.metrics.commit_latency.observe(time.perf_counter() - started)
        self.metrics.transactions.inc()
        for partition in touched:
            self.ledgers[partition].commit()  # the staged state is now the committed state

    def _check_offsets_move_forward(self, positions: dict[int, int]) -> None:
        """Stop before committing a position at or below the last one committed: the batch
        would hold commands whose outputs are committed already (like Quix Streams'
        ``InvalidStoredOffset``)."""
        for partition, position in positions.items():
            last = self.committed_positions.get(partition)
            if last is not None and position <= last:
                raise InvariantViolationError(
                    f"{self.topics.commands}[{partition}]: offset {position} would be committed"
                    f" after offset {last}; offsets only move forward"
                )

    def _decide_one(self, message: CommandRecord, partition: int, touched: set[int]) -> None:
        value, key = message.value(), message.key()
        _, timestamp_ms = message.timestamp()
        if value is None:
            self._dead_letter(message, dead_letters.KIND_MISSING_VALUE, "the value is null")
            return
        if is_tick(key, value):
            self.ledgers[partition].tick(timestamp_ms * 1000)
            touched.add(partition)
            return
        book = self.ledgers[partition]
        if book.signatures is not None and is_signing_key_command(value):
            self._decide_signing_key(message, value, partition, timestamp_ms * 1000)
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
        book.decide(command, timestamp_ms * 1000, offset, value, message.headers())
        touched.add(partition)

    def _decide_signing_key(
        self, message: CommandRecord, value: bytes, partition: int, timestamp_us: int
    ) -> None:
        """A signing-key registry command (decision 0084): decoded, routed and decided like a
        ledger command, by the registry instead of the core."""
        try:
            command = decode_signing_key_command(value)
        except DecodeError as exc:
            self._dead_letter(message, exc.kind, str(exc))
            return
        wrong = misrouting(message.key(), partition, command.tenant_id, self.partition_count)
        if wrong is not None:
            self._dead_letter(
                message, wrong.kind, wrong.message, expected_partition=wrong.expected_partition
            )
            return
        offset = message.offset()
        assert offset is not None
        self.ledgers[partition].decide_signing_key(
            command, value, message.headers(), timestamp_us, offset
        )

    # ------------------------------------------------------------------ producing

    def _produce_outputs(self, partition: int, ledger: PartitionLedger) -> None:
        """One ``produce_all`` per topic: the per-record loop is the transport's."""
        outputs = ledger.staged_outputs()
        produce_all = self.transport.produce_all
        produce_all(self.topics.events, partition, outputs.events)
        # outcomes carry their times in a header, so a restore need not decode them
        outcome_headers: list[ReplyHeaders | None] = [
            None if times is None else [(OUTCOME_TIMES_HEADER, times)]
            for times in outputs.outcome_times
        ]
        produce_all(self.topics.outcomes, partition, outputs.outcomes, outcome_headers)
        produce_all(self.topics.balances, partition, outputs.states)
        produce_all(self.topics.replies, partition, outputs.replies, outputs.reply_headers)
        if outputs.notifications:
            produce_all(self.topics.notifications, partition, outputs.notifications)
        outputs.count_into(self.metrics)

    def _dead_letter(
        self, message: CommandRecord, kind: str, text: str, *, expected_partition: int | None = None
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
        self.transport.produce(
            self.topics.commands_dlq,
            partition,
            letter.key,
            letter.value,
            headers=list(letter.headers),
            timestamp_ms=letter.timestamp_ms,
        )
        self.metrics.dlq_records.labels(kind).inc()
        LOGGER.warning(
            "dead letter: %s[%d]@%d: %s: %s",
            self.topics.commands,
            partition,
            offset,
            kind,
            text,
        )

    # ------------------------------------------------------------------ failures

    def _abort_and_rewind(self, messages: Sequence[CommandRecord], cause: Exception) -> None:
        """Abort, forget the batch's staged state, seek back to the batch's first offsets."""
        LOGGER.warning("aborting the transaction: %s", cause)
        self.metrics.aborts.labels("abortable_error").inc()
        self.transport.abort()
        for ledger in self.ledgers.values():
            ledger.abort()
        first: dict[int, int] = {}
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if message.error() is None and partition is not None and offset is not None:
                first.setdefault(partition, offset)
        for partition, offset in first.items():
            try:
                self.transport.seek(partition, offset)
            except ProcessorKafkaError as exc:  # no longer ours: the coming rebalance revokes it
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

    def _on_assign(self, partitions: list[int]) -> None:
        self._restore(partitions)

    def _on_revoke(self, partitions: list[int]) -> None:
        # The transport runs this only inside take_batch, so no transaction is open here.
        for partition in partitions:
            self.ledgers.pop(partition, None)
            self.committed_positions.pop(partition, None)
            with contextlib.suppress(KeyError):  # no lag was reported for it yet
                self.metrics.consumer_lag.remove(str(partition))
        self._report_assignment()
        LOGGER.info("revoked partitions %s", sorted(partitions))

    def _on_lost(self, partitions: list[int]) -> None:
        # Our group membership expired (a long pause): another member may own them already.
        LOGGER.warning("lost partitions %s", sorted(partitions))
        self._on_revoke(partitions)

    def _restore(self, partitions: Iterable[int]) -> None:
        self.metrics.ready = False
        reader = self.transport.state_reader()
        try:
            self._arm_watchdog(self.settings.stall_timeout_s)  # each read pass is bounded
            self.metrics.loop_heartbeat()
            # small partitions are read together, in one pass (decision 0124)
            for snapshot in reader.read_partitions(
                (self.topics.balances, self.topics.outcomes),
                sorted(partitions),
                header_name=OUTCOME_TIMES_HEADER,
            ):
                self.ledgers[snapshot.partition] = ledger_from_snapshot(snapshot, self.settings)
                self.metrics.restore_duration.observe(snapshot.duration_s)
                self.metrics.restore_records.inc(snapshot.records_read)
                self._arm_watchdog(self.settings.stall_timeout_s)
                self.metrics.loop_heartbeat()
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

        Written outside any transaction (``CommandTransport.append_ticks``), between batches; a
        failure is only logged: the next interval tries again, and the log stays the only
        input."""
        if not self.ledgers:
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
            # the timestamp is kept only if the topic is CreateTime (ours is LogAppendTime)
            self.transport.append_ticks(due, now_us // 1000)
        except ProcessorKafkaError as exc:
            LOGGER.warning("tick records for partitions %s: %s", due, exc)
            return
        for partition in due:
            self._last_tick_us[partition] = now_us
        self.metrics.ticks.inc(len(due))

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_updated_at < LAG_UPDATE_INTERVAL_S:
            return
        self._lag_updated_at = now
        for partition, lag in self.transport.consumer_lag().items():
            self.metrics.consumer_lag.labels(str(partition)).set(lag)

    def _close_clients(self, *, flush_timeout_s: float) -> None:
        self.transport.close(flush_timeout_s=flush_timeout_s)
        self.ledgers.clear()
        self.committed_positions.clear()
        self._report_assignment()
